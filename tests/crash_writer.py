"""Child process for the crash tests: writes batches and prints each acknowledged one.

Usage: python crash_writer.py DATA_DIR FIRST_BATCH
Each batch ``b`` puts items ``{"pk": partition_key(b), "sk": i}`` for i < size(b): all in
one partition, so one WAL record. Every third batch has a 2048-byte partition key, stored
compacted (key format 2), so replay after a kill covers long keys too. A line "ack b" is printed (and flushed) after the call
returns, i.e. after the write was acknowledged under sync="always".
"""

import sys

from engine import Engine, TableAlreadyExistsException


def batch_size(batch: int) -> int:
    return 1 + batch % 17


def partition_key(batch: int) -> str:
    name = f"b{batch}"
    return name + "~" * (2048 - len(name)) if batch % 3 == 0 else name


def batch_of(partition_key: str) -> int:
    return int(partition_key[1:].rstrip("~"))


def main() -> None:
    data_dir, first = sys.argv[1], int(sys.argv[2])
    engine = Engine.open(data_dir, wal_segment_bytes=1 << 15)
    try:
        engine.create_table("Crash", partition_key=("pk", "S"), sort_key=("sk", "N"),
                            partitions=3, sync="always")
    except TableAlreadyExistsException:
        pass
    table = engine.table("Crash")
    print("ready", flush=True)
    batch = first
    while True:
        items = [{"pk": partition_key(batch), "sk": i, "pad": "x" * (batch % 300)} for i in range(batch_size(batch))]
        if batch % 5 == 0:
            table.put_item(items[0])
            table.batch_write(puts=items[1:])
        else:
            table.batch_write(puts=items)
        if batch % 7 == 0 and batch > first:
            table.delete_item({"pk": partition_key(batch - 1), "sk": 0})
            print(f"del {batch - 1}", flush=True)
        print(f"ack {batch}", flush=True)
        batch += 1


if __name__ == "__main__":
    main()

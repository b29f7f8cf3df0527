"""Child process for tests/test_index_crash.py: writes to a table with one LSI and two
GSIs (and, in ``backfill`` mode, builds a third GSI online meanwhile) until SIGKILLed.

Usage: index_crash_child.py DATA_DIR MODE FIRST_OP   (MODE: write | backfill)

Operation ``n`` touches key ``k{n % KEYS}``: a delete when ``n % 7 == 0``, an update when
``n % 3 == 1``, else a put; ``ack n`` is printed (flushed) once it returned, under
sync="always", so an acknowledged operation is durable.
"""

from __future__ import annotations

import faulthandler
import sys
import threading

from engine import Engine, TableAlreadyExistsException

KEYS = 50
TABLE = "IndexCrash"
LSI = {"name": "byRank", "key_schema": [("pk", "S"), ("rank", "N")], "projection": "KEYS_ONLY"}
GSI_A = {"name": "byGroup", "key_schema": [("grp", "S"), ("v", "N")], "projection": "ALL"}
GSI_B = {"name": "byTag", "key_schema": [("tag", "S")],
         "projection": {"type": "INCLUDE", "non_key_attributes": ["v"]}}
ONLINE = {"name": "byOnline", "key_schema": [("tag", "S"), ("v", "N")], "projection": "KEYS_ONLY"}
BULK_ITEMS = 6000  # items under bulk keys, so a backfill takes long enough to be killed


def op_kind(n: int) -> str:
    if n % 7 == 0:
        return "delete"
    return "update" if n % 3 == 1 else "put"


def item_for(n: int) -> dict:
    item = {"pk": f"k{n % KEYS}", "sk": 0, "v": n}
    if n % 11:
        item["rank"] = n % 11
    if n % 4:
        item["grp"] = f"g{n % 4}"
    if n % 5:
        item["tag"] = ("x", "y")[n % 2]
    return item


def create(engine: Engine) -> None:
    try:
        engine.create_table(TABLE, ("pk", "S"), ("sk", "N"), partitions=3, sync="always",
                            local_indexes=[LSI], global_indexes=[GSI_A, GSI_B])
    except TableAlreadyExistsException:
        return
    table = engine.table(TABLE)
    for start in range(0, BULK_ITEMS, 500):
        table.batch_write(puts=[{"pk": f"bulk{i % 97}", "sk": i, "v": i, "tag": "b",
                                 "grp": "bulk", "rank": i % 5}
                                for i in range(start, start + 500)])


def run_op(table, n: int) -> None:
    kind = op_kind(n)
    item = item_for(n)
    if kind == "delete":
        table.delete_item({"pk": item["pk"], "sk": 0})
    elif kind == "update":
        sets = ", ".join(f"#{name} = :{name}" for name in item if name not in ("pk", "sk"))
        removes = [name for name in ("rank", "grp", "tag") if name not in item]
        expression = f"SET {sets}" + (f" REMOVE {', '.join('#' + n for n in removes)}"
                                      if removes else "")
        names = {f"#{name}": name for name in [*item, *removes] if name not in ("pk", "sk")}
        values = {f":{name}": value for name, value in item.items() if name not in ("pk", "sk")}
        table.update_item({"pk": item["pk"], "sk": 0}, expression, names=names, values=values)
    else:
        table.put_item(item)


def main() -> None:
    # A hang (a deadlock) ends the child with every thread's stack on stderr, so the
    # test fails with the cause instead of waiting forever for a line.
    faulthandler.dump_traceback_later(120, exit=True)
    data_dir, mode, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # A paced backfill (sleeping 3x each batch's time) lasts long enough on any machine
    # for the test's kill, at most 50 ms after "backfilling", to land in the middle of it.
    engine = Engine.open(data_dir, wal_segment_bytes=1 << 15, map_size_bytes=1 << 28,
                         index_backfill_pace=3 if mode == "backfill" else 0)
    create(engine)
    table = engine.table(TABLE)
    lock = threading.Lock()

    def writer() -> None:
        n = first
        while True:
            run_op(table, n)
            with lock:
                sys.stdout.write(f"ack {n}\n")
                sys.stdout.flush()
            n += 1

    thread = threading.Thread(target=writer, daemon=True)
    print("ready", flush=True)
    thread.start()
    if mode == "backfill":
        names = [g["name"] for g in engine.describe_table(TABLE).get("global_indexes", [])]
        if "byOnline" not in names:
            engine.create_global_index(TABLE, ONLINE)
        with lock:
            sys.stdout.write("backfilling\n")
            sys.stdout.flush()
    thread.join()


if __name__ == "__main__":
    main()

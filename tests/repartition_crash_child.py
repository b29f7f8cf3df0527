"""Child process for test_repartition's crash tests.

Usage: repartition_crash_child.py DATA_DIR OP ARG... with TESSERA_REPARTITION_CRASH_AT set.
Writes items from a thread (printing ``ack <pk> <sk> <version>`` once each put returns),
runs the repartitioning, which SIGKILLs this process at the hook point.
"""

from __future__ import annotations

import sys
import threading
import time

from engine import Engine


def main() -> None:
    data_dir, op, *args = sys.argv[1:]
    engine = Engine.open(data_dir, wal_segment_bytes=1 << 16, map_size_bytes=1 << 30)
    table = engine.table("Repart")
    lock = threading.Lock()

    def writer() -> None:
        version = 0
        while True:
            version += 1
            for sk in range(0, 400, 7):
                pk = f"k{sk % 13}"
                table.put_item({"pk": pk, "sk": sk, "v": version})
                with lock:
                    sys.stdout.write(f"ack {pk} {sk} {version}\n")
                    sys.stdout.flush()

    threading.Thread(target=writer, daemon=True).start()
    print("ready", flush=True)
    time.sleep(0.05)
    if op == "split":
        engine.split_partition("Repart", args[0])
    elif op == "merge":
        engine.merge_partitions("Repart", args[0], args[1])
    elif op == "move":
        engine.move_partition("Repart", args[0], args[1])
    time.sleep(0.05)
    print("finished", flush=True)  # the hook did not fire: the test fails on this


if __name__ == "__main__":
    main()

"""``tessera demo``: create a table, load items with a progress bar, read them back, time it.

It locks the data directory like any other owner (a running server on the same ``--data``
makes it exit 3 naming the server's PID) and never deletes a table it did not create in
this run: an existing ``--table`` is an error unless ``--replace`` is given.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from tqdm import tqdm

from engine import Engine, TableAlreadyExistsException
from engine.cli.main import UsageError
from engine.dirlock import DirectoryLock

BATCH = 500


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "demo", help="load a sample table and time gets, a query and a scan",
        description="Create a table under DATA, load ITEMS items with a progress bar, run "
        "gets, a query and a scan, and print timings and the partition layout.",
    )
    parser.add_argument("--data", default="./data", help="data directory (default ./data)")
    parser.add_argument("--items", type=int, default=100_000, help="items to load (default 100000)")
    parser.add_argument("--partitions", type=int, default=4, help="hash partitions (default 4)")
    parser.add_argument("--table", default="Demo", help="table name (default Demo)")
    parser.add_argument("--replace", action="store_true",
                        help="delete and recreate --table if it exists (default: refuse)")
    parser.set_defaults(handler=run)


def _timed(label: str, count: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    print(f"{label:<28} {count:>9,} in {elapsed:7.3f} s  ({count / elapsed:>12,.0f}/s)")


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    rng = random.Random(42)
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data {data} is not a directory")
    with DirectoryLock(data), Engine.open(data) as engine:
        name = args.table
        try:
            engine.create_table(name, partition_key=("user", "S"), sort_key=("seq", "N"),
                                partitions=args.partitions)
        except TableAlreadyExistsException:
            if not args.replace:
                raise TableAlreadyExistsException(
                    f"table {name} already exists in {data}; the demo deletes only tables it "
                    "created: pass --replace to delete and recreate it, or --table NAME"
                ) from None
            engine.delete_table(name)
            engine.create_table(name, partition_key=("user", "S"), sort_key=("seq", "N"),
                                partitions=args.partitions)
        table = engine.table(name)
        users = max(1, args.items // 100)
        started = time.perf_counter()
        with tqdm(total=args.items, unit="item", desc="loading") as bar:
            for first in range(0, args.items, BATCH):
                batch = [
                    {"user": f"user-{n % users:06d}", "seq": n // users,
                     "payload": rng.randbytes(64), "tags": {"a", "b"}, "score": rng.randint(0, 10**6)}
                    for n in range(first, min(first + BATCH, args.items))
                ]
                table.batch_write(puts=batch)
                bar.update(len(batch))
        _timed("batch_write", args.items, started)

        gets = min(args.items, 20_000)
        started = time.perf_counter()
        for _ in range(gets):
            n = rng.randrange(args.items)
            assert table.get_item({"user": f"user-{n % users:06d}", "seq": n // users}) is not None
        _timed("get_item (random)", gets, started)

        started = time.perf_counter()
        items, _ = table.query("user-000007", (">=", 10), limit=50)
        _timed("query (one user, >= 10)", len(items), started)

        started = time.perf_counter()
        scanned = sum(1 for _ in table.iter_items())
        _timed("full scan", scanned, started)

        description = engine.describe_table(name)
        print(f"\ntable {name}: {description['item_count']:,} items, "
              f"{description['size_bytes'] / 2**20:.1f} MiB in {description['partitions']} partitions")
        for interval in description["partition_map"]:
            end = interval["end"] or "+inf"
            print(f"  {interval['partition_id']}: [{interval['start'] or '-inf'}, {end})")
    return 0

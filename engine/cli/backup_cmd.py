"""``tessera backup create TABLE NAME``: back up a table of a local engine, with a progress bar.

Opens the engine under ``--data`` (the only process that may have it open), starts an
on-demand backup (SPEC §6) to ``--store`` (default: the engine's own ``backups``
directory beside the data directory), shows a progress bar on stderr until the backup is
AVAILABLE or FAILED, and prints the final description as JSON on stdout.

Exit codes: 0 AVAILABLE, 1 FAILED (the reason is printed) or any engine error, 2 usage,
3 the data directory is in use by another process (stop it, or back up through it).

The progress bar counts partitions, each moving through its phases (export, package,
verify, upload); it reaches 100% and "N done" when the backup is AVAILABLE.
(``tessera backups …``, plural, is the offline tool that reads a store with no engine.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm import tqdm

from engine import Engine
from engine.dirlock import DirectoryLock
from engine.store import open_store

POLL_SECONDS = 0.2

#: How far through its backup a partition is at the start of each phase (the phase's
#: own bytes_done/bytes_total fill the gap to the next one).
_PHASE_START = {"pending": 0.0, "exporting": 0.05, "packaging": 0.35, "verifying": 0.55,
                "uploading": 0.75, "done": 1.0}
_PHASE_SPAN = {"uploading": 0.25}


def add_parser(commands) -> None:
    backup = commands.add_parser(
        "backup", help="create a backup of a table in a local engine",
        description="Operations on a local engine's backups (for backups already in a store, "
        "with no engine, see 'tessera backups').",
    )
    actions = backup.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser(
        "create", help="back up TABLE as NAME and wait until it is AVAILABLE or FAILED",
        description="Start an on-demand backup of TABLE named NAME, show its progress on "
        "stderr and print the result as JSON. Exit 0 if AVAILABLE, 1 if FAILED.",
    )
    create.add_argument("table", metavar="TABLE")
    create.add_argument("name", metavar="NAME", help="backup name (3-255 of [A-Za-z0-9_.-])")
    create.add_argument("--data", default="./data", help="engine data directory (default ./data)")
    create.add_argument("--store", default=None,
                        help="backup store: a directory, file://DIR or s3://BUCKET/PREFIX "
                        "(default: 'backups' beside the data directory)")
    create.add_argument("--endpoint-url", default=None,
                        help="S3 endpoint for an s3:// store (MinIO, Ceph RGW, ...)")
    create.add_argument("--parallelism", type=int, default=2,
                        help="partitions backed up at once (default 2)")
    create.add_argument("--timeout", type=float, default=24 * 3600.0,
                        help="give up waiting after this many seconds (default a day)")
    create.add_argument("--no-progress", action="store_true", help="no progress bar")
    create.set_defaults(handler=run_create)


def partition_fraction(partition: dict) -> float:
    """0..1: how far one partition (a ``describe_backup`` entry) is through its backup."""
    phase = partition.get("phase", "pending")
    start = _PHASE_START.get(phase, 0.0)
    span = _PHASE_SPAN.get(phase, 0.0)
    total = partition.get("bytes_total") or 0
    if span and total:
        start += span * min(1.0, partition.get("bytes_done", 0) / total)
    return start


def run_create(args: argparse.Namespace) -> int:
    store = None
    if args.store is not None:
        store = open_store(args.store, **({"endpoint_url": args.endpoint_url}
                                          if args.endpoint_url else {}))
    try:
        with DirectoryLock(args.data), Engine.open(args.data, backup_store=store,
                                                   backup_parallelism=args.parallelism) as engine:
            started = engine.create_backup(args.table, args.name)
            backup_id = started["backup_id"]
            print(f"backup {backup_id} of table {args.table} to {engine.backup_store.url}",
                  file=sys.stderr)
            final = _follow(engine, backup_id, args.timeout, show=not args.no_progress)
    finally:
        if store is not None:
            store.close()
    print(json.dumps(final, indent=2, sort_keys=True, default=str))
    if final["status"] == "AVAILABLE":
        print(f"AVAILABLE: {final['item_count']} items, {final['size_bytes']} bytes",
              file=sys.stderr)
        return 0
    if final["status"] == "CREATING":
        print(f"still CREATING after {args.timeout:g} s; it resumes the next time the engine "
              "opens", file=sys.stderr)
        return 1
    print(f"{final['status']}: {final.get('failure_reason')}", file=sys.stderr)
    return 1


def _follow(engine: Engine, backup_id: str, timeout: float, *, show: bool) -> dict:
    """Poll ``describe_backup`` until the backup leaves CREATING; a bar on stderr meanwhile."""
    deadline = time.monotonic() + timeout
    with tqdm(total=None, unit="partition", file=sys.stderr, disable=not show,
              bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} partitions [{elapsed}{postfix}]",
              dynamic_ncols=True) as bar:
        while True:
            described = engine.describe_backup(backup_id)
            partitions = described.get("partitions") or []
            if partitions:
                bar.total = len(partitions)
                bar.n = sum(partition_fraction(p) for p in partitions)
                phases: dict[str, int] = {}
                for partition in partitions:
                    phases[partition["phase"]] = phases.get(partition["phase"], 0) + 1
                uploaded_mib = described.get("bytes_done", 0) / (1 << 20)
                bar.set_postfix_str(
                    ", ".join(f"{count} {phase}" for phase, count in sorted(phases.items()))
                    + f", {uploaded_mib:.1f} MiB uploaded", refresh=False)
                bar.refresh()
            if described["status"] != "CREATING":
                if described["status"] == "AVAILABLE" and bar.total:
                    bar.n = bar.total
                    bar.set_postfix_str(f"{int(bar.total)} done", refresh=False)
                    bar.refresh()
                return described
            if time.monotonic() >= deadline:
                return described
            time.sleep(POLL_SECONDS)

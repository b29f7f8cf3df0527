"""``tessera backups``: list, describe, verify, restore, export, copy and delete backups
straight from a store, with no engine or server running (logic in engine.backup.offline).

Exit codes: 0 ok, 1 the operation failed (a bad partition, a FAILED restore, a missing
backup; the message says which), 2 bad usage (including a store that does not exist or
cannot be used — nothing is created to look in it), 3 the restore's data directory is in
use by another process. Failures are one line (engine.cli.main), a JSON error under --json.

Progress bars (stderr, on a terminal) measure the work and reach 100% when it is done:
verify counts each partition's download and then its check (inflate, CRC32C, logical
walk); restore counts the download, each partition's import and check, and the
repartitioning of a restore into another layout, as phases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.backup import offline
from engine.cli.main import EXIT_CODES_HELP, UsageError
from engine.errors import StoreError
from engine.store import ObjectStore, open_store

DEFAULT_STORE = "./backups"

_STORE_HELP = (
    "where the backups are: a directory, file:///abs/dir or s3://bucket/prefix (default: "
    f"$TESSERA_BACKUP_STORE, else {DEFAULT_STORE}). S3 credentials come from the usual AWS "
    "environment variables and config files"
)

_EPILOG = """\
examples:
  tessera backups ls --store s3://my-bucket/tessera --endpoint-url http://127.0.0.1:9000
  tessera backups verify 01732260000000-1a2b3c4d-local --store ./backups
  tessera backups restore ID --data ./data --table Music-restored --partitions 8
  tessera backups export ID --format jsonl --output music.jsonl
  tessera backups copy ID --store ./backups --to s3://dr-bucket/tessera

exit codes: 0 ok, 1 the operation failed (the message names the backup and partition),
2 bad usage (including a store that does not exist), 3 the data directory is in use."""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "backups", help="list, verify, restore, export, copy or delete backups in a store",
        description="Work on backups straight from their object store, with no engine "
        "running. A backup is a directory (or S3 prefix) named by its id holding "
        "manifest.json and one partitions/<id>.tar.zst object per partition.",
        epilog=_EPILOG + "\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=description,
                                 epilog=_EPILOG.split("\n\n")[-1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--store", default=os.environ.get("TESSERA_BACKUP_STORE", DEFAULT_STORE),
                         help=_STORE_HELP)
        sub.add_argument("--endpoint-url", default=None,
                         help="S3 endpoint for an s3:// store (MinIO, Ceph RGW, a test server)")
        sub.add_argument("--json", action="store_true",
                         help="print machine-readable JSON on stdout instead of text")
        sub.add_argument("--no-progress", action="store_true",
                         help="no progress bars (they go to stderr, and only on a terminal)")
        return sub

    ls = action("ls", "list the backups in the store",
                "List every backup (every ID/manifest.json) in the store, oldest first.")
    ls.add_argument("--table", help="only backups of this table")
    ls.add_argument("--since", type=_parse_time, help="created at or after (ISO 8601 or Unix seconds)")
    ls.add_argument("--until", type=_parse_time, help="created at or before (ISO 8601 or Unix seconds)")
    ls.set_defaults(handler=run_ls)

    describe = action("describe", "show one backup and its partitions",
                      "Show a backup's table, schema, size and every partition object.")
    describe.add_argument("backup_id", metavar="ID")
    describe.set_defaults(handler=run_describe)

    verify = action("verify", "download and check every partition of a backup",
                    "Download every partition object and check it: size and CRC32C of the "
                    "object, the archive's structure, data.mdb's CRC32C, then the items' "
                    "count and logical checksum. Every partition is reported; exit 1 if any "
                    "fails.")
    verify.add_argument("backup_id", metavar="ID")
    verify.add_argument("--parallelism", type=int, default=offline.DEFAULT_PARALLELISM,
                        help="partitions checked at once (default %(default)s)")
    verify.set_defaults(handler=run_verify)

    restore = action("restore", "restore a backup into a new table of a data directory",
                     "Restore into a new table under DATA (an engine data directory, created "
                     "if needed; stop any server using it first). Every partition is "
                     "checked before and after import; the table is ACTIVE only if all are.")
    restore.add_argument("backup_id", metavar="ID")
    restore.add_argument("--data", required=True, type=Path, help="engine data directory")
    restore.add_argument("--table", required=True, help="name of the new table")
    restore.add_argument("--partitions", type=int,
                         help="repartition into N partitions (default: the backup's layout)")
    restore.add_argument("--sync", choices=("always", "batch", "none"),
                         help="WAL sync policy of the new table (default: the backup's)")
    for kind in ("global", "local"):
        restore.add_argument(
            f"--{kind}-indexes", metavar="JSON",
            help=f"the restored table's {kind} secondary indexes instead of the backed-up "
                 "ones: a JSON list (or @FILE holding one) of {\"name\", \"key_schema\": "
                 "[[attr, S|N|B], ...], \"projection\": ALL|KEYS_ONLY|{\"type\": INCLUDE, "
                 "\"non_key_attributes\": [...]}}; [] drops them all (default: as backed up)")
    restore.set_defaults(handler=run_restore)

    export = action("export", "write every item of a backup as DynamoDB JSON lines",
                    "Write every item, in the table's key order, as one DynamoDB JSON object "
                    "per line ({\"attr\": {\"S\": \"...\"}}), as the AWS CLI prints items.")
    export.add_argument("backup_id", metavar="ID")
    export.add_argument("--format", choices=("jsonl",), default="jsonl",
                        help="output format (only jsonl for now)")
    export.add_argument("--output", "-o", type=Path, help="output file (default stdout)")
    export.set_defaults(handler=run_export)

    copy = action("copy", "copy a backup to another store under the same id",
                  "Copy every object (server-side when both stores are the same S3 bucket), "
                  "check each, and write the manifest last: the copy is a backup only when "
                  "complete.")
    copy.add_argument("backup_id", metavar="ID")
    copy.add_argument("--to", required=True, dest="destination", help="destination store URL")
    copy.add_argument("--to-endpoint-url", default=None,
                      help="S3 endpoint of the destination (default: --endpoint-url)")
    copy.set_defaults(handler=run_copy)

    delete = action("delete", "delete a backup from the store",
                    "Delete the manifest (from then on it is not a backup), then every object. "
                    "This cannot see an engine using the backup: delete through the engine "
                    "while one runs.")
    delete.add_argument("backup_id", metavar="ID")
    delete.set_defaults(handler=run_delete)


#: Shares of a restore's work per phase: download, then import + check of each partition,
#: then (into another layout only) copying the key ranges into the new partitions.
_RESTORE_SHARES = {False: (0.5, 0.5, 0.0), True: (0.3, 0.3, 0.4)}


def restore_fraction(state: dict, repartitioning: bool) -> float:
    """0..1 of a restore's work from its progress (engine.backup.restore.RestoreProgress):
    1.0 only once its phase is ``done``."""
    if state.get("phase") == "done":
        return 1.0
    download, check, repartition = _RESTORE_SHARES[repartitioning]
    fraction = download * min(1.0, state.get("bytes_done", 0) / max(1, state.get("bytes_total")
                                                                     or 1))
    fraction += check * min(1.0, state.get("partitions_done", 0)
                            / max(1, state.get("partitions_total") or 1))
    # The range copy reports no count: its phase shows it began, "done" that it ended.
    return min(fraction, 1.0 - repartition if repartition else 0.99)


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-22T06:00:00Z) or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _open(url: str, endpoint_url: str | None, *, must_exist: bool = True) -> ObjectStore:
    """Open the store at ``url``; a local one must already be a directory unless
    ``must_exist`` is false (a copy's destination), since opening creates it."""
    if not url.startswith("s3://") and must_exist and "://" not in url.replace("file://", ""):
        path = Path(url[len("file://"):] if url.startswith("file://") else url)
        if not path.exists():
            raise UsageError(f"no backup store at {path}: the directory does not exist "
                             "(check --store or $TESSERA_BACKUP_STORE)")
        if not path.is_dir():
            raise UsageError(f"--store {path} is not a directory")
    try:
        return open_store(url, endpoint_url=endpoint_url) if url.startswith("s3://") \
            else open_store(url)
    except (ValueError, StoreError) as err:
        raise UsageError(str(err)) from err


def _bar(args: argparse.Namespace, total: int | None, unit: str, desc: str) -> tqdm:
    return tqdm(total=total, unit=unit, unit_scale=unit != "%", desc=desc, file=sys.stderr,
                disable=True if args.no_progress else None, leave=False)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _with_store(handler):
    """Open ``--store`` (UsageError, exit 2, if unusable) around the handler; the handler's
    errors are reported by engine.cli.main."""
    def run(args: argparse.Namespace) -> int:
        with _open(args.store, args.endpoint_url) as store:
            try:
                return handler(args, store)
            except StoreError as err:
                if _no_such_bucket(err):  # the S3 form of a store that does not exist
                    raise UsageError(f"no backup store at {args.store}: {err.message}") from err
                raise
    run.__doc__ = handler.__doc__
    return run


def _no_such_bucket(err: BaseException | None) -> bool:
    while err is not None:
        response = getattr(err, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
            return True
        err = err.__cause__
    return False


@_with_store
def run_ls(args: argparse.Namespace, store: ObjectStore) -> int:
    backups = offline.list_backups(store, table=args.table, since=args.since, until=args.until)
    if args.json:
        _print_json(backups)
        return 0
    if not backups:
        print(f"no backups in {store.url}")
        return 0
    print(f"{'BACKUP ID':<34} {'TABLE':<20} {'CREATED (UTC)':<20} {'ITEMS':>10} "
          f"{'SIZE':>10} PARTS STATUS")
    for b in backups:
        if b["status"] != "AVAILABLE":
            print(f"{b['backup_id']:<34} {'?':<20} {'-':<20} {'':>10} {'':>10} {'':>5} "
                  f"{b['status']}: {b.get('error')}")
            continue
        print(f"{b['backup_id']:<34} {b['table_name']:<20} {_when(b['created_at']):<20} "
              f"{b['item_count']:>10,} {_size(b['size_bytes']):>10} {b['partitions']:>5} "
              f"{b['status']}")
    return 0


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@_with_store
def run_describe(args: argparse.Namespace, store: ObjectStore) -> int:
    info = offline.describe_backup(store, args.backup_id)
    if args.json:
        _print_json(info)
        return 0
    schema = ", ".join(f"{name} ({kind})" for name, kind in info["key_schema"])
    print(f"backup     {info['backup_id']} ({info['backup_name']}), {info['status']}")
    key_format = info["settings"].get("key_format", 1)  # engine.keys: 2 takes DynamoDB's sizes
    print(f"table      {info['table_name']}  key: {schema}  {info['partitioning']} partitioning"
          f"  key format {key_format}")
    print(f"created    {_when(info['created_at'])}  completed {_when(info['completed_at'])}")
    print(f"contents   {info['item_count']:,} items, {_size(info['size_bytes'])} stored, "
          f"{info['partitions']} partitions")
    print(f"store      {info['store']}")
    for p in info["partition_details"]:
        end = p["interval_end"] or "+inf"
        print(f"  {p['partition_id']}: [{p['interval_start'] or '-inf'}, {end})  "
              f"{p['item_count']:,} items  {_size(p['object_size_bytes'])}  lsn {p['backup_lsn']}")
    return 0


@_with_store
def run_verify(args: argparse.Namespace, store: ObjectStore) -> int:
    manifest = offline.describe_backup(store, args.backup_id)
    # Work = each object's bytes (download) + its data.mdb's bytes (inflate and check,
    # counted when the partition's result is in): the bar ends at 100% with the last.
    checked = {p["partition_id"]: p["data_size_bytes"] or 0
               for p in manifest["partition_details"]}
    total = manifest["size_bytes"] + sum(checked.values())
    with _bar(args, total, "B", "verifying (download, check)") as bar:
        results = offline.verify_backup(
            store, args.backup_id, parallelism=args.parallelism, on_bytes=bar.update,
            on_result=lambda result: bar.update(checked.get(result.partition_id, 0)))
        bar.n = total  # a partition that failed to download counts as done too
        bar.refresh()
    failed = [r for r in results if not r.ok]
    if args.json:
        _print_json({"backup_id": args.backup_id, "ok": not failed,
                     "partitions": [{"partition_id": r.partition_id, "status": r.status,
                                     "message": r.message, "object": r.source_name,
                                     "item_count": r.item_count} for r in results]})
    else:
        for r in results:
            print(f"{r.partition_id}: {r.status.upper()}  {r.message}")
        if failed:
            print(f"FAILED: {len(failed)} of {len(results)} partitions: "
                  f"{', '.join(r.partition_id for r in failed)}")
        else:
            print(f"OK: all {len(results)} partitions verified")
    return 1 if failed else 0


def _index_overrides(args: argparse.Namespace, key_schema: list) -> dict:
    """``--global-indexes`` / ``--local-indexes`` as restore_table keyword arguments,
    checked against the backup's key schema before --data is touched (UsageError, exit 2,
    naming what is wrong)."""
    from engine.errors import ValidationException
    from engine.indexes.restore import check_overrides

    overrides: dict[str, Any] = {}
    for kind in ("global", "local"):
        text = getattr(args, f"{kind}_indexes", None)
        if text is None:
            continue
        option = f"--{kind}-indexes"
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text()
            except OSError as err:
                raise UsageError(f"{option}: cannot read {text[1:]}: "
                                 f"{err.strerror or err}") from err
        try:
            value = json.loads(text)
        except ValueError as err:
            raise UsageError(f"{option} is not valid JSON: {err}") from err
        if not isinstance(value, list):
            raise UsageError(f"{option} must be a JSON list of index definitions")
        overrides[f"{kind}_indexes"] = value
    if overrides:
        try:
            check_overrides(key_schema, overrides.get("local_indexes"),
                            overrides.get("global_indexes"))
        except ValidationException as err:
            raise UsageError(f"index overrides: {err.message}") from err
    return overrides


@_with_store
def run_restore(args: argparse.Namespace, store: ObjectStore) -> int:
    from engine.dirlock import DirectoryLock

    if args.partitions is not None and args.partitions < 1:
        raise UsageError("--partitions must be at least 1")
    if args.data.exists() and not args.data.is_dir():
        raise UsageError(f"--data {args.data} is not a directory")
    # A missing or corrupt backup, too little space, a bomb: refused before touching --data.
    manifest = offline.check_restorable(store, args.backup_id, args.data)
    overrides = _index_overrides(args, manifest.key_schema)
    try:
        lock = DirectoryLock(args.data).acquire()  # no other process may have it open
    except OSError as err:
        raise UsageError(f"cannot use --data {args.data}: {err.strerror or err}") from err
    try:
        with _bar(args, 100, "%", "restoring") as bar:
            def progress(state: dict) -> None:
                bar.n = round(100 * restore_fraction(state, args.partitions is not None), 1)
                bar.set_postfix_str(f"{state.get('phase')}, {state.get('partitions_done')}/"
                                    f"{state.get('partitions_total')} partitions",
                                    refresh=False)
                bar.refresh()

            description = offline.restore_backup(store, args.backup_id, args.data, args.table,
                                                 partitions=args.partitions, sync=args.sync,
                                                 on_progress=progress, checked=True,
                                                 **overrides)
            if description["status"] == "ACTIVE":
                bar.n = 100
                bar.set_postfix_str("done", refresh=False)
                bar.refresh()
    finally:
        lock.release()
    if args.json:
        _print_json(description)
    elif description["status"] == "ACTIVE":
        print(f"restored backup {args.backup_id} into table {args.table} under {args.data}: "
              f"{description['item_count']:,} items in {description['partitions']} partitions")
    else:
        print(f"restore of backup {args.backup_id} into {args.table} is "
              f"{description['status']}: {description.get('failure_reason')}", file=sys.stderr)
    return 0 if description["status"] == "ACTIVE" else 1


@_with_store
def run_export(args: argparse.Namespace, store: ObjectStore) -> int:
    info = offline.describe_backup(store, args.backup_id)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        with _bar(args, info["item_count"], "item", "exporting") as bar:
            count = offline.export_jsonl(store, args.backup_id, out,
                                         on_item=lambda: bar.update(1))
    finally:
        if args.output:
            out.close()
    summary = {"backup_id": args.backup_id, "items": count,
               "output": str(args.output) if args.output else "-"}
    if args.json and args.output:
        _print_json(summary)
    elif args.output:
        print(f"exported {count:,} items of backup {args.backup_id} to {args.output}")
    return 0


@_with_store
def run_copy(args: argparse.Namespace, store: ObjectStore) -> int:
    destination = _open(args.destination, args.to_endpoint_url or args.endpoint_url,
                        must_exist=False)
    with destination:
        size = offline.describe_backup(store, args.backup_id)["size_bytes"]
        with _bar(args, size, "B", "copying") as bar:
            result = offline.copy_backup(store, destination, args.backup_id, on_bytes=bar.update)
    if args.json:
        _print_json(result)
    else:
        print(f"copied backup {args.backup_id} to {result['store']}: "
              f"{result['partitions']} partitions, {_size(result['size_bytes'])}, AVAILABLE")
    return 0


@_with_store
def run_delete(args: argparse.Namespace, store: ObjectStore) -> int:
    removed = offline.delete_backup(store, args.backup_id)
    if args.json:
        _print_json({"backup_id": args.backup_id, "deleted_objects": removed})
    else:
        print(f"deleted backup {args.backup_id}: {removed} objects from {store.url}")
    return 0

"""Backups straight from a store, with no engine running (SPEC §8 "Offline").

What the ``tessera backups`` command does, as functions: list, describe, verify, restore,
export, copy and delete. A backup is what has a manifest: ``{backup_id}/manifest.json``
(objects without one are an unfinished or deleted backup and are not listed).

Nothing is written on the strength of a manifest's word alone: before a restore, verify
or export inflates anything, the declared ``data.mdb`` sizes must fit the target volume's
free space with a margin (``check_free_space``), no size may exceed what its object could
inflate to (``engine.backup.manifest.ZSTD_MAX_RATIO``), and the start of each object is
streamed (a few KiB) to check that its ``data.mdb`` begins with LMDB meta pages whose last
page accounts for the declared size (``check_object_head``): a zero-filled "bomb" that
inflates to gigabytes is refused on its first page, not after it filled the disk.

These functions know nothing of an engine's catalog, so they cannot see whether a
running engine is restoring or copying a backup: ``delete_backup`` here deletes
regardless (stop the engine, or delete through it, when that matters).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from ..errors import (
    BackupNotFoundException,
    ChecksumMismatchError,
    CorruptionError,
    ObjectNotFoundError,
    ValidationException,
)
from ..store import ObjectStore
from ..volumes import check_free_space
from . import tar_stream
from .copy import copy_backup_objects
from .logical import ITEMS_DB, open_readonly
from .manifest import (
    MAX_MANIFEST_BYTES,
    BackupManifest,
    PartitionManifest,
    check_inflatable,
    manifest_key,
)
from .package import DATA_MEMBER, MANIFEST_MEMBER
from .restore_manager import read_manifest as _read_manifest
from .unpack import unpack_partition
from .verify import VerifyResult, verify_partition_object

_MANIFEST_KEY_RE = re.compile(r"^([^/]+)/manifest\.json$")
DEFAULT_PARALLELISM = 4

ByteCallback = Callable[[int], None]

# LMDB's meta pages (lmdb.h, MDB_meta after the 16-byte page header on 64-bit builds):
# the first two pages of data.mdb; the one with the larger txnid is current.
_LMDB_MAGIC = 0xBEEFC0DE
_LMDB_DATA_VERSION = 1
_META_MAGIC_VERSION = struct.Struct("<II")  # at byte 16 of the page
_META_PAGE_SIZE_OFFSET = 40  # mm_dbs[FREE_DBI].md_pad holds the page size
_META_LAST_PAGE_TXNID = struct.Struct("<QQ")  # mm_last_pg, mm_txnid at byte 136
_META_LAST_PAGE_OFFSET = 136
_META_BYTES = 152
_MAX_IN_ARCHIVE_MANIFEST_BYTES = 1 << 20


def check_object_head(store: ObjectStore, entry: PartitionManifest) -> None:
    """Stream the start of ``entry``'s object (its ``partition.json`` and the first two
    pages of ``data.mdb``) and raise :class:`CorruptionError` if ``data.mdb`` is not an
    LMDB file or declares more bytes than its meta page says are in use ((last page + 1)
    x page size, which is exactly a compacted copy's size). Anything else odd about the
    object (format, missing object) is left to the full unpack, which names it."""
    import zstandard

    key = entry.object_key or ""

    def fail(message: str) -> CorruptionError:
        return CorruptionError(f"partition object {key}: {message}; refused before "
                               "inflating it", partition=entry.partition_id, path=key)

    try:
        with store.open_reader(key) as raw, \
                zstandard.ZstdDecompressor().stream_reader(raw, read_size=64 << 10) as inflated:
            tar = tar_stream.TarReader(inflated)
            first = tar.next_header()
            if first is None or first.name != MANIFEST_MEMBER \
                    or first.size > _MAX_IN_ARCHIVE_MANIFEST_BYTES:
                return
            tar.read_exact(first.size)
            tar.skip_padding(first.size)
            data = tar.next_header()
            if data is None or data.name != DATA_MEMBER:
                return
            if data.size < _META_BYTES:
                raise fail(f"{DATA_MEMBER} is {data.size} bytes, too short for LMDB")
            meta0 = tar.read_exact(_META_BYTES)
            magic, version = _META_MAGIC_VERSION.unpack_from(meta0, 16)
            if magic != _LMDB_MAGIC or version != _LMDB_DATA_VERSION:
                raise fail(f"{DATA_MEMBER} does not start with an LMDB meta page (magic "
                           f"{magic:#010x}, version {version})")
            page_size = struct.unpack_from("<I", meta0, _META_PAGE_SIZE_OFFSET)[0]
            if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
                raise fail(f"{DATA_MEMBER}'s meta page names page size {page_size}")
            if data.size < page_size + _META_BYTES:
                raise fail(f"{DATA_MEMBER} is {data.size} bytes, shorter than its two "
                           f"meta pages of {page_size} bytes")
            tar.read_exact(page_size - _META_BYTES)
            meta1 = tar.read_exact(_META_BYTES)
    except (zstandard.ZstdError, tar_stream.TarFormatError, ObjectNotFoundError,
            ChecksumMismatchError):
        return  # the full unpack or download reports these, naming the problem
    metas = [_META_LAST_PAGE_TXNID.unpack_from(meta, _META_LAST_PAGE_OFFSET)
             for meta in (meta0, meta1)]
    last_page, _ = max(metas, key=lambda m: m[1])
    in_use = (last_page + 1) * page_size
    if (entry.data_size_bytes or 0) > in_use:
        raise fail(f"the manifest declares {entry.data_size_bytes:,} bytes of {DATA_MEMBER} "
                   f"but its LMDB meta page accounts for {in_use:,} (last page {last_page} "
                   f"of {page_size} bytes)")


def check_restorable(store: ObjectStore, backup_id: str, data_dir: Path) -> BackupManifest:
    """Everything a restore checks before it writes a byte under ``data_dir``: the
    manifest (bounded parse, inflatable sizes), the volume's free space, and each
    object's head (:func:`check_object_head`). Returns the manifest."""
    manifest = read_manifest(store, backup_id)
    check_free_space(sum(p.data_size_bytes or 0 for p in manifest.partitions), data_dir,
                     f"restoring backup {backup_id}")
    for entry in manifest.partitions:
        check_object_head(store, entry)
    return manifest


def _largest_partitions_bytes(manifest: BackupManifest, count: int) -> int:
    """Scratch space of ``count`` partitions at once: each object and its data.mdb."""
    sizes = sorted(((p.data_size_bytes or 0) + (p.object_size_bytes or 0)
                    for p in manifest.partitions), reverse=True)
    return sum(sizes[:max(1, count)])


def read_manifest(store: ObjectStore, backup_id: str) -> BackupManifest:
    """The backup's manifest, checked as the offline tools need it: parsed with bounds
    (engine.backup.manifest) and every declared data size inflatable from its object.
    An oversized manifest object is refused from its size, before it is read."""
    try:
        key = manifest_key("", backup_id)
        size = store.head(key).size
    except (ObjectNotFoundError, ValidationException, ValueError):
        pass  # _read_manifest reports a missing backup or a bad id, naming it
    else:
        _check_manifest_size(size, f"{store.url}/{key}")
    manifest = _read_manifest(store, backup_id)
    check_inflatable(manifest, f"{store.url}/{manifest_key('', backup_id)}")
    return manifest


def _check_manifest_size(size: int | None, source: str) -> None:
    if size is not None and size > MAX_MANIFEST_BYTES:
        raise CorruptionError(f"manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES} "
                              "a manifest can be; not read", path=source)


def summary(manifest: BackupManifest) -> dict[str, Any]:
    """The one-line facts about a backup (what ``ls`` prints)."""
    return {
        "backup_id": manifest.backup_id,
        "backup_name": manifest.backup_name,
        "table_name": manifest.table_name,
        "region": manifest.region,
        "status": "AVAILABLE",
        "created_at": manifest.created_at,
        "completed_at": manifest.completed_at,
        "item_count": manifest.item_count,
        "size_bytes": manifest.size_bytes,
        "partitions": len(manifest.partitions),
    }


def list_backups(store: ObjectStore, *, table: str | None = None, since: float | None = None,
                 until: float | None = None) -> list[dict[str, Any]]:
    """Every backup in ``store``, oldest first, filtered by table and creation time.

    A manifest that does not parse is listed with status ``CORRUPT`` and the reason.
    """
    backups = []
    for info in store.list(""):
        match = _MANIFEST_KEY_RE.match(info.key)
        if match is None:
            continue
        try:
            _check_manifest_size(info.size, f"{store.url}/{info.key}")
            entry = summary(read_manifest(store, match.group(1)))
        except CorruptionError as err:
            entry = {"backup_id": match.group(1), "status": "CORRUPT", "error": str(err),
                     "table_name": None, "created_at": None}
        if table is not None and entry["table_name"] != table:
            continue
        created = entry["created_at"]
        if since is not None and (created is None or created < since):
            continue
        if until is not None and (created is None or created > until):
            continue
        backups.append(entry)
    return sorted(backups, key=lambda b: (b["created_at"] or 0, b["backup_id"]))


def describe_backup(store: ObjectStore, backup_id: str) -> dict[str, Any]:
    """The summary plus schema, settings and every partition's facts."""
    manifest = read_manifest(store, backup_id)
    return {
        **summary(manifest),
        "store": store.url,
        "table_id": manifest.table_id,
        "key_schema": manifest.key_schema,
        "partitioning": manifest.partitioning,
        "settings": manifest.settings,
        "format_version": manifest.format_version,
        "partition_details": [
            {"partition_id": p.partition_id, "interval_start": p.interval_start,
             "interval_end": p.interval_end, "backup_lsn": p.backup_lsn,
             "item_count": p.item_count, "object_key": p.object_key,
             "object_size_bytes": p.object_size_bytes, "object_crc32c": p.object_crc32c,
             "data_size_bytes": p.data_size_bytes, "logical_checksum": p.logical_checksum}
            for p in manifest.partitions
        ],
    }


def _download(store: ObjectStore, entry: PartitionManifest, work_dir: Path,
              on_bytes: ByteCallback | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{entry.partition_id}-", dir=work_dir)) / "object"
    assert entry.object_key is not None
    store.download(entry.object_key, str(path), progress=on_bytes)
    return path


def verify_backup(store: ObjectStore, backup_id: str, *, work_dir: Path | None = None,
                  parallelism: int = DEFAULT_PARALLELISM,
                  on_bytes: ByteCallback | None = None,
                  on_result: Callable[[VerifyResult], None] | None = None) -> list[VerifyResult]:
    """Download and check every partition (both checksums); one result per partition,
    in manifest order — every bad partition is reported, not just the first."""
    manifest = read_manifest(store, backup_id)
    check_free_space(_largest_partitions_bytes(manifest, parallelism),
                     Path(work_dir or tempfile.gettempdir()),
                     f"verifying backup {backup_id} ({parallelism} partitions at once)")
    scratch = Path(tempfile.mkdtemp(prefix="tessera-verify-", dir=work_dir))

    def check(entry: PartitionManifest) -> VerifyResult:
        key = entry.object_key or ""
        try:
            check_object_head(store, entry)
            path = _download(store, entry, scratch, on_bytes)
        except CorruptionError as err:
            result = VerifyResult("corrupt", f"partition {entry.partition_id}: {err.message}",
                                  key, entry.partition_id)
        except ObjectNotFoundError:
            result = VerifyResult("missing", f"partition {entry.partition_id}: object {key} "
                                  "does not exist", key, entry.partition_id)
        except ChecksumMismatchError as err:
            result = VerifyResult("checksum_mismatch", f"partition {entry.partition_id}: {err}",
                                  key, entry.partition_id)
        else:
            try:
                result = verify_partition_object(path, entry, work_dir=path.parent,
                                                 source_name=key)
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
        if on_result is not None:
            on_result(result)
        return result

    try:
        with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="verify") as pool:
            return list(pool.map(check, manifest.partitions))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def restore_backup(store: ObjectStore, backup_id: str, data_dir: Path, table_name: str, *,
                   partitions: int | None = None, sync: str | None = None,
                   on_progress: Callable[[dict], None] | None = None,
                   timeout: float = 24 * 3600.0, checked: bool = False,
                   global_indexes: Sequence[dict] | None = None,
                   local_indexes: Sequence[dict] | None = None) -> dict[str, Any]:
    """Restore into a new table of the engine data directory ``data_dir`` (created if
    needed; no other process may have it open). Returns the table's description
    (ACTIVE, or FAILED with ``failure_reason``). :func:`check_restorable` runs first
    unless the caller already ran it (``checked``). ``global_indexes`` /
    ``local_indexes``: the restored table's secondary indexes instead of the backed-up
    ones (``Engine.restore_table``'s overrides: None keeps the backed-up set)."""
    from ..engine import Engine  # late: engine imports this package

    # BackupNotFoundException, CorruptionError or too little space before touching data_dir.
    if not checked:
        check_restorable(store, backup_id, data_dir)
    with Engine.open(data_dir) as engine:
        engine.restore_table(backup_id, table_name, partitions=partitions, sync=sync,
                             store=store, global_indexes=global_indexes,
                             local_indexes=local_indexes)
        deadline = time.monotonic() + timeout
        while True:
            description = engine.wait_for_table(table_name, timeout=0.5)
            if on_progress is not None and description.get("restore", {}).get("progress"):
                on_progress(description["restore"]["progress"])
            if description["status"] != "CREATING" or time.monotonic() > deadline:
                return description


def iter_backup_items(store: ObjectStore, backup_id: str, *, work_dir: Path | None = None,
                      on_bytes: ByteCallback | None = None) -> Iterator[bytes]:
    """Every item's encoded value, partition by partition in key order (the table's scan
    order), each partition checked physically before it is read."""
    manifest = read_manifest(store, backup_id)
    check_free_space(_largest_partitions_bytes(manifest, 1),
                     Path(work_dir or tempfile.gettempdir()), f"exporting backup {backup_id}")
    scratch = Path(tempfile.mkdtemp(prefix="tessera-export-", dir=work_dir))
    try:
        for entry in manifest.partitions:
            check_object_head(store, entry)
            try:
                path = _download(store, entry, scratch, on_bytes)
            except (ObjectNotFoundError, ChecksumMismatchError) as err:
                raise CorruptionError(f"export of backup {backup_id}: {err}",
                                      partition=entry.partition_id,
                                      path=entry.object_key) from err
            env_dir = path.parent / "env"
            with open(path, "rb") as source:
                unpack_partition(source, env_dir, entry, source_name=entry.object_key or "",
                                 fsync=False)
            path.unlink()
            env = open_readonly(env_dir)
            try:
                items = env.open_db(ITEMS_DB, create=False)
                with env.begin(db=items, buffers=False) as txn:
                    for _, value in txn.cursor().iternext(keys=True, values=True):
                        yield value
            finally:
                env.close()
                shutil.rmtree(path.parent, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def export_jsonl(store: ObjectStore, backup_id: str, out: TextIO, *,
                 work_dir: Path | None = None, on_bytes: ByteCallback | None = None,
                 on_item: Callable[[], None] | None = None) -> int:
    """Write every item as DynamoDB JSON (``{"attr": {"S": "..."}}``), one per line;
    returns the item count."""
    from ..attrvalue import serialize_item
    from ..table import decode_item

    count = 0
    for raw in iter_backup_items(store, backup_id, work_dir=work_dir, on_bytes=on_bytes):
        out.write(json.dumps(serialize_item(decode_item(raw)), ensure_ascii=False,
                             separators=(",", ":")))
        out.write("\n")
        count += 1
        if on_item is not None:
            on_item()
    return count


def copy_backup(source: ObjectStore, destination: ObjectStore, backup_id: str, *,
                parallelism: int = DEFAULT_PARALLELISM,
                on_bytes: ByteCallback | None = None) -> dict[str, Any]:
    """Copy a backup to ``destination`` under the same id (manifest last); returns the
    destination's summary."""
    manifest = read_manifest(source, backup_id)
    copy_backup_objects(source, destination, manifest, parallelism=parallelism,
                        on_bytes=on_bytes)
    return {**summary(read_manifest(destination, backup_id)), "store": destination.url}


def delete_backup(store: ObjectStore, backup_id: str) -> int:
    """Delete the manifest first (from then on it is not a backup), then the objects;
    returns how many objects went. A prefix with objects but no manifest (an unfinished
    backup) is cleaned up too; an id with nothing stored → BackupNotFoundException."""
    if "/" in backup_id or not backup_id:
        raise BackupNotFoundException(f"Backup not found: {backup_id!r}")
    key = manifest_key("", backup_id)
    had_manifest = store.exists(key)
    store.delete(key)
    removed = store.delete_prefix(f"{backup_id}/")
    if not had_manifest and removed == 0:
        raise BackupNotFoundException(f"Backup not found: {backup_id} (nothing under "
                                      f"{backup_id}/ in {store.url})")
    return removed + int(had_manifest)

"""Restore one backup into a new table directory (SPEC §8): the per-partition worker and
the layout planner, with no catalog — the engine (``engine.backup.restore_manager``) and
the offline tools both drive it.

Every partition object is downloaded in parallel (``ObjectStore.download``: parallel
ranged GETs on S3, verified against the store's CRC32C), its size and CRC32C checked
against the backup manifest, then re-inflated by
:func:`~engine.backup.unpack.unpack_partition` (which refuses hostile tar entries and
checks ``data.mdb`` against the in-archive manifest *before* LMDB sees it). After import
the items are re-read: ``applied_lsn``, item count and logical checksum must equal the
manifest's.

Two layouts:

* **same layout** (the target map equals the backup's intervals): each ``data.mdb`` is
  unpacked straight into ``<table>/<pid>/lmdb/`` — the fast path, no item is rewritten;
* **repartition** (another partition count or explicit split points): the objects are
  unpacked into a scratch area, then every target partition is written from the source
  partitions that intersect its interval, in key order (``append`` puts). Every item
  lands in exactly one target because the target intervals cover the key space with no
  gap or overlap (``PartitionMap`` checks it); the SHA-256 over all target items in key
  order must equal the one over all source items, and the counts must match.

Nothing is written outside ``table_dir``. A run that finds an interrupted run's work
there keeps its finished same-layout partitions and removes everything else
(:meth:`RestoreJob._clear_unfinished`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from .._rangecopy import RangeCopy
from ..errors import (
    ChecksumMismatchError,
    CorruptionError,
    ObjectNotFoundError,
    StorageError,
    StorageFullError,
    ValidationException,
)
from ..indexes.restore import read_index_meta
from ..keys import KeySchema
from ..layout import initial_boundaries
from ..partition import DEFAULT_MAP_SIZE
from ..partition_map import PartitionInterval, PartitionMap, build_map
from ..store import ObjectStore
from ..volumes import fsync_dir
from .checksums import CrcCountingReader
from .logical import (
    LENGTH_PREFIXES,
    logical_checksum,
    logical_checksum_of_dirs,
    open_readonly,
    read_applied_lsn,
)
from .manifest import BackupManifest, PartitionManifest, crc32c_hex
from .package import DATA_MEMBER, crc_file
from .unpack import MANIFEST_MEMBER, unpack_partition

WORK_DIR_NAME = ".restore-work"
ITEMS_PER_TXN = 50_000  # items per LMDB write transaction when repartitioning
DEFAULT_RESTORE_PARALLELISM = 4


class RestoreCancelled(Exception):
    """The restore was asked to stop (engine shutdown); it resumes on the next open."""


# ----------------------------------------------------------------------- the layout


def source_map(manifest: BackupManifest) -> PartitionMap:
    """The backup's own partition map (same partition ids and intervals)."""
    return PartitionMap(
        PartitionInterval(entry.partition_id, bytes.fromhex(entry.interval_start),
                          None if entry.interval_end is None else bytes.fromhex(entry.interval_end))
        for entry in manifest.partitions
    )


def plan_partition_map(
    manifest: BackupManifest,
    partitions: int | None = None,
    split_points: Sequence[Any] | None = None,
) -> PartitionMap:
    """The target table's map: the backup's own layout unless ``partitions`` or
    ``split_points`` (range partitioning: partition-key values) ask for another.

    Boundaries are chosen as ``create_table`` chooses them, so a restore into N
    partitions lays the table out exactly like a new N-partition table.
    """
    original = source_map(manifest)
    if partitions is None and split_points is None:
        return original
    schema = KeySchema.from_json(manifest.key_schema, manifest.partitioning,
                                 manifest.settings.get("key_format", 1))
    if split_points is not None:
        split_points = list(split_points)
        if partitions is not None and partitions != len(split_points) + 1:
            raise ValidationException(
                f"partitions={partitions} does not match {len(split_points)} split points "
                f"({len(split_points) + 1} partitions); give one or the other")
        partitions = len(split_points) + 1
    boundaries = initial_boundaries(schema, partitions, split_points)  # as create_table
    planned = build_map([f"p{index:04d}" for index in range(len(boundaries))], boundaries)
    if _same_intervals(planned, original):
        return original  # e.g. the same hash partition count: keep the fast path
    return planned


def _same_intervals(a: PartitionMap, b: PartitionMap) -> bool:
    return [(i.start, i.end) for i in a] == [(i.start, i.end) for i in b]


# ----------------------------------------------------------------------- digests


def ordered_digest(sources: Iterable[tuple[lmdb.Environment, Any]],
                   each: list[tuple[int, str]] | None = None) -> tuple[int, str]:
    """``(item_count, sha256)`` over the items of several environments, one after the
    other, in the logical checksum's format. For a table's partitions in map order this is
    the table's logical content: equal for any partition layout of the same items (and
    equal to :func:`~engine.backup.logical.logical_checksum` for one partition).

    Same technique as ``logical_checksum``: precomputed length prefixes, 4096-item joined
    chunks hashed on a helper thread (``hashlib`` releases the GIL on large updates).
    ``each``, if given, receives every environment's own ``(item_count, sha256)`` too
    (from the same pass).
    """
    digest = hashlib.sha256()
    chunks: queue.SimpleQueue[tuple[bytes, Any] | None] = queue.SimpleQueue()

    def hash_chunks() -> None:
        while (entry := chunks.get()) is not None:
            chunk, own = entry
            digest.update(chunk)
            if own is not None:
                own.update(chunk)

    hasher = threading.Thread(target=hash_chunks, name="ordered-digest", daemon=True)
    hasher.start()
    count = 0
    prefixes = LENGTH_PREFIXES
    try:
        for env, db in sources:
            own = hashlib.sha256() if each is not None else None
            own_count = count
            parts: list[bytes] = []
            extend = parts.extend
            with env.begin(db=db, buffers=False) as txn:
                for key, value in txn.cursor().iternext(keys=True, values=True):
                    size = len(value)
                    extend((prefixes[len(key)], key,
                            prefixes[size] if size < 65536 else size.to_bytes(4, "big"), value))
                    if len(parts) >= 16384:
                        count += 4096
                        chunks.put((b"".join(parts), own))
                        parts.clear()
            count += len(parts) // 4
            chunks.put((b"".join(parts), own))
            if each is not None:
                done = threading.Event()
                chunks.put((b"", _Signal(done)))
                done.wait()
                each.append((count - own_count, own.hexdigest()))
    finally:
        chunks.put(None)
        hasher.join()
    return count, digest.hexdigest()


class _Signal:
    """Queued after an environment's last chunk: set once the hasher has reached it."""

    def __init__(self, event: threading.Event) -> None:
        self.update = lambda _chunk: event.set()


def table_logical_checksum(table) -> tuple[int, str]:
    """:func:`ordered_digest` over an open :class:`~engine.table.Table`'s partitions."""
    return ordered_digest((p.env, p.items_db) for p in table.partitions)


# ----------------------------------------------------------------------- the job


@dataclass
class RestoreProgress:
    """What a restore has done so far (shown by ``describe_backup`` and the tools)."""

    partitions_total: int
    bytes_total: int
    partitions_done: int = 0
    bytes_done: int = 0
    partitions_kept: int = 0  # imported and checked before an interruption, not redone
    phase: str = "downloading"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count

    def partition_done(self) -> None:
        with self._lock:
            self.partitions_done += 1

    def to_json(self) -> dict:
        return {"phase": self.phase, "partitions_done": self.partitions_done,
                "partitions_total": self.partitions_total, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "partitions_kept": self.partitions_kept}


class RestoreJob:
    """Restore ``manifest`` from ``store`` into ``table_dir`` laid out as ``target_map``.

    ``run()`` raises :class:`~engine.errors.CorruptionError` naming the partition and
    object on any bad data (after removing everything it wrote), or
    :class:`RestoreCancelled` if ``cancel()`` was called.
    """

    def __init__(
        self,
        store: ObjectStore,
        manifest: BackupManifest,
        table_dir: Path,
        target_map: PartitionMap,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        parallelism: int = DEFAULT_RESTORE_PARALLELISM,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.table_dir = Path(table_dir)
        self.target_map = target_map
        self.map_size = map_size
        self.parallelism = max(1, parallelism)
        self.fast_path = _same_intervals(target_map, source_map(manifest))
        self.progress = RestoreProgress(
            partitions_total=len(manifest.partitions),
            bytes_total=sum(p.object_size_bytes or 0 for p in manifest.partitions))
        self._on_bytes = on_bytes
        self._cancel = threading.Event()
        self.index_meta: dict | None = None  # set by run(): the backed-up index definitions

    def cancel(self) -> None:
        self._cancel.set()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise RestoreCancelled("restore cancelled")

    # -- the steps --------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        """Do the restore; returns ``{target partition id: item_count}``."""
        work = self.table_dir / WORK_DIR_NAME
        try:
            pending = self._clear_unfinished()
            work.mkdir(parents=True)
            with ThreadPoolExecutor(self.parallelism, thread_name_prefix="restore") as pool:
                list(pool.map(self._fetch_partition, pending))
            if self.fast_path:
                # Fast-path partition ids are the backup's, which are the target map's.
                results = {entry.partition_id: entry.item_count or 0
                           for entry in self.manifest.partitions}
            else:
                self.progress.phase = "repartitioning"
                results = self._repartition(work)
            # The backed-up index definitions (engine.indexes.restore): every partition
            # environment stores the same ones.
            first = self.manifest.partitions[0].partition_id
            self.index_meta = read_index_meta(
                self.table_dir / first / "lmdb" if self.fast_path else work / "src" / first)
            shutil.rmtree(work, ignore_errors=True)
            self.progress.phase = "done"
            return results
        except RestoreCancelled:
            raise  # shutdown: the next open resumes, keeping what is finished
        except BaseException:
            shutil.rmtree(self.table_dir, ignore_errors=True)
            raise

    def _clear_unfinished(self) -> list[PartitionManifest]:
        """Remove what an interrupted run left unfinished; the partitions still to do.

        Same layout: a partition whose ``restored-from.json`` names this very object, and
        whose ``data.mdb`` still has the manifest's size and CRC32C, is kept — that file
        is renamed into place only after the partition's ``data.mdb`` was synced and
        passed the logical check, then its directory is synced. Anything
        else (a partial partition, the scratch area, a repartition's targets, which all
        depend on every source) is removed and redone.
        """
        kept: set[str] = set()
        if self.table_dir.is_dir():
            if self.fast_path:
                kept = {entry.partition_id for entry in self.manifest.partitions
                        if self._finished_before(entry)}
            for child in self.table_dir.iterdir():
                if child.name not in kept:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        pending = []
        for entry in self.manifest.partitions:
            if entry.partition_id in kept:
                self.progress.add_bytes(entry.object_size_bytes or 0)
                self.progress.partition_done()
                self.progress.partitions_kept += 1
            else:
                pending.append(entry)
        return pending

    def _finished_before(self, entry: PartitionManifest) -> bool:
        marker = self.table_dir / entry.partition_id / "restored-from.json"
        try:
            found = PartitionManifest.from_json(marker.read_bytes(), str(marker),
                                                mode="in_archive")
        except (OSError, ValueError, CorruptionError):
            return False
        if not (found.backup_id == entry.backup_id
                and found.partition_id == entry.partition_id
                and found.data_crc32c == entry.data_crc32c
                and found.logical_checksum == entry.logical_checksum):
            return False
        # The bytes may have suffered while the process was down: take the CRC32C again
        # (a read at disk speed; the logical check already passed on these very bytes).
        try:
            with open(self.table_dir / entry.partition_id / "lmdb" / DATA_MEMBER, "rb",
                      buffering=0) as data_file:
                size, crc = crc_file(data_file)
        except OSError:
            return False
        return size == entry.data_size_bytes and crc32c_hex(crc) == entry.data_crc32c

    def _fail(self, entry: PartitionManifest, message: str) -> CorruptionError:
        return CorruptionError(f"restore of backup {self.manifest.backup_id}: {message}",
                               partition=entry.partition_id, path=entry.object_key)

    def _fetch_partition(self, entry: PartitionManifest) -> None:
        self._check_cancel()
        work = self.table_dir / WORK_DIR_NAME
        object_path = work / f"{entry.partition_id}.tar.zst"
        key = entry.object_key
        assert key is not None  # "complete" manifests have every object field

        def count(increment: int) -> None:
            self.progress.add_bytes(increment)
            if self._on_bytes is not None:
                self._on_bytes(increment)

        try:
            self.store.download(key, str(object_path), progress=count)
        except ObjectNotFoundError as err:
            raise self._fail(entry, "the partition object is missing from the store") from err
        except ChecksumMismatchError as err:
            raise self._fail(entry, f"the stored object does not match its checksum: {err}") from err
        self._check_cancel()
        if self.fast_path:
            dest = self.table_dir / entry.partition_id / "lmdb"
        else:
            dest = work / "src" / entry.partition_id
        with open(object_path, "rb") as raw:
            reader = CrcCountingReader(raw)
            # Physical checks first (SPEC §8): the object as stored, then data.mdb inside.
            unpack_partition(reader, dest, entry, source_name=key, fsync=self.fast_path)
            reader.drain()
        object_path.unlink()
        if reader.size_bytes != entry.object_size_bytes or reader.crc32c_hex != entry.object_crc32c:
            shutil.rmtree(dest, ignore_errors=True)
            raise self._fail(entry, f"the object is {reader.size_bytes} bytes with CRC32C "
                             f"{reader.crc32c_hex}; the manifest says {entry.object_size_bytes} "
                             f"bytes with CRC32C {entry.object_crc32c}")
        if self.fast_path:
            self._check_logical(entry, dest)
            # Provenance beside, not inside, the environment. Renamed (and its directory
            # synced) only now, so it also marks the partition finished for a resumed
            # restore (_clear_unfinished).
            os.replace(dest / MANIFEST_MEMBER, dest.parent / "restored-from.json")
            fsync_dir(dest.parent)
        # else: checked in _repartition, in the same pass as the whole-table digest
        self.progress.partition_done()

    def _check_logical(self, entry: PartitionManifest, env_dir: Path) -> None:
        """The logical check after import (SPEC §8): LSN, item count and checksum."""
        try:
            env = open_readonly(env_dir)
        except lmdb.Error as err:
            raise self._fail(entry, f"LMDB cannot open the imported data.mdb: {err}") from err
        try:
            applied_lsn = read_applied_lsn(env)
        except lmdb.Error as err:
            raise self._fail(entry, f"reading the imported data.mdb failed: {err}") from err
        finally:
            env.close()
        try:
            item_count, digest = logical_checksum(env_dir)  # closed: walked in C
        except CorruptionError as err:
            raise self._fail(entry, f"reading the imported data.mdb failed: {err}") from err
        if applied_lsn != entry.backup_lsn:
            raise self._fail(entry, f"imported data is at applied_lsn {applied_lsn}, the "
                             f"manifest says backup_lsn {entry.backup_lsn}")
        if item_count != entry.item_count or digest != entry.logical_checksum:
            raise self._fail(entry, f"imported data holds {item_count} items with logical "
                             f"checksum {digest}; the manifest says {entry.item_count} items "
                             f"with {entry.logical_checksum}")

    def _repartition(self, work: Path) -> dict[str, int]:
        sources = source_map(self.manifest)

        def build(target: PartitionInterval) -> tuple[str, int]:
            self._check_cancel()
            return target.partition_id, self._write_target(
                target, [(work / "src" / s.partition_id, s)
                         for s in sources.intersecting(target.start, target.end)])

        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="restore-split") as pool:
            results = dict(pool.map(build, self.target_map))
        for entry in self.manifest.partitions:  # the logical check (SPEC §8), cheap part
            env = open_readonly(work / "src" / entry.partition_id)
            try:
                applied_lsn = read_applied_lsn(env)
            finally:
                env.close()
            if applied_lsn != entry.backup_lsn:
                raise self._fail(entry, f"imported data is at applied_lsn {applied_lsn}, "
                                 f"the manifest says backup_lsn {entry.backup_lsn}")
        # Both digests walk closed environments in C without the GIL: side by side.
        each: list[tuple[int, str]] = []
        with ThreadPoolExecutor(2, thread_name_prefix="restore-digest") as pool:
            expected_future = pool.submit(
                logical_checksum_of_dirs, [work / "src" / i.partition_id for i in sources], each)
            found_future = pool.submit(
                logical_checksum_of_dirs,
                [self.table_dir / i.partition_id / "lmdb" for i in self.target_map])
            expected = expected_future.result()
            found = found_future.result()
        for entry, (item_count, digest) in zip(self.manifest.partitions, each, strict=True):
            if item_count != entry.item_count or digest != entry.logical_checksum:
                raise self._fail(entry, f"imported data holds {item_count} items with "
                                 f"logical checksum {digest}; the manifest says "
                                 f"{entry.item_count} items with {entry.logical_checksum}")
        if found != expected or expected[0] != self.manifest.item_count:
            raise CorruptionError(
                f"restore of backup {self.manifest.backup_id}: the repartitioned table holds "
                f"{found[0]} items with checksum {found[1]}, the backup {expected[0]} items "
                f"with {expected[1]} (manifest item_count {self.manifest.item_count})",
                path=str(self.table_dir))
        return results

    def _write_target(self, target: PartitionInterval,
                      sources: list[tuple[Path, PartitionInterval]]) -> int:
        """Write the target's items from the intersecting sources; returns how many.

        In C without the GIL (``engine._rangecopy``), one write transaction per
        ``ITEMS_PER_TXN`` items, checking for cancellation between them.
        """
        directory = self.table_dir / target.partition_id / "lmdb"
        directory.mkdir(parents=True)
        copier = RangeCopy(directory, self.map_size)
        written = 0
        try:
            for source_dir, source in sources:
                # Bound the range only where the source reaches past the target.
                reaches_past = target.end is not None and (source.end is None
                                                           or source.end > target.end)
                copier.open_source(source_dir, target.start,
                                   target.end if reaches_past else None)
                while True:
                    self._check_cancel()
                    consumed = copier.step(ITEMS_PER_TXN)
                    written += consumed
                    if consumed < ITEMS_PER_TXN:
                        break
            copier.finish()
            fsync_dir(directory)  # the new data.mdb's directory entry, as unpacking does
            return written
        except StorageFullError:
            raise  # not the backup's fault: the message says to raise map_size_bytes
        except (StorageError, CorruptionError) as err:
            raise CorruptionError(f"restore of backup {self.manifest.backup_id}: writing "
                                  f"partition {target.partition_id} failed: {err}",
                                  partition=target.partition_id, path=str(directory)) from err
        finally:
            copier.close()

"""A local directory as an object store: the embedded default (SPEC §9).

Layout: the object ``a/b/c`` is the plain file ``ROOT/a/b/c`` (so an operator can read a
backup with ``ls``, ``zstd`` and ``tar``). Next to it, ``ROOT/a/b/.tessera-meta-c.json``
records the size, CRC32C and MD5 computed at ``put`` time. Files and directories whose
name starts with ``.tessera-`` (temp files, sidecars) belong to the store and never appear
in ``list``; keys may not use such names.

Writes are atomic in the Litestream manner (``file/replica_client.go``): write a temp file
in the target directory, fsync it, rename it over the key, then write the sidecar the same
way and fsync the directory. The data file is the truth: if a crash leaves a sidecar whose
size does not match the data file (or none), ``head`` recomputes the checksums from the
data. A sidecar with the right size but a different CRC32C means the data changed after
it was written, and reads report ``ChecksumMismatchError``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

from engine.errors import ChecksumMismatchError, ObjectNotFoundError, StoreError
from engine.store.base import (
    RESERVED_SEGMENT_PREFIX,
    MiB,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    VerifyingReader,
    as_stream,
    closed_error,
    format_crc32c,
    parse_crc32c,
    resolve_range,
    validate_key,
    validate_prefix,
)

_TEMP_PREFIX = RESERVED_SEGMENT_PREFIX + "tmp-"
_META_PREFIX = RESERVED_SEGMENT_PREFIX + "meta-"
_META_SUFFIX = ".json"
_COPY_CHUNK_BYTES = 1 * MiB


def _fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file_atomically(directory: str, final_path: str, payload: bytes) -> None:
    temp_path = os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        with open(temp_path, "xb") as temp_file:
            temp_file.write(payload)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_path, final_path)
    except BaseException:
        _unlink_quietly(temp_path)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _mtime(st: os.stat_result) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(st.st_mtime, tz=_dt.timezone.utc)


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created if missing). Safe across threads."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._closed = False
        self._lock = threading.Lock()  # guards only _closed
        try:
            os.makedirs(self._root, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the store directory {self._root}: {err}") from err

    # -- helpers ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return "file://" + self._root

    @property
    def root(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error(self.url)

    def _path(self, key: str) -> str:
        validate_key(key)
        return os.path.join(self._root, *key.split("/"))

    @staticmethod
    def _sidecar_path(path: str) -> str:
        directory, name = os.path.split(path)
        return os.path.join(directory, f"{_META_PREFIX}{name}{_META_SUFFIX}")

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"no object {key!r} in {self.url}")

    def _open_object(self, key: str) -> tuple[BinaryIO, os.stat_result]:
        path = self._path(key)
        try:
            handle = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise self._not_found(key) from err
        except OSError as err:
            raise StoreError(f"cannot open {path} for object {self._where(key)}: {err}") from err
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            handle.close()
            raise self._not_found(key)
        return handle, st

    def _info_for(
        self, key: str, path: str, st: os.stat_result, handle: BinaryIO | None
    ) -> ObjectInfo:
        """Checksums from the sidecar when it describes this file, else recomputed."""
        meta: dict[str, object] = {}
        try:
            with open(self._sidecar_path(path), "rb") as sidecar:
                meta = json.loads(sidecar.read())
        except (OSError, ValueError):
            meta = {}
        if meta.get("size") == st.st_size and parse_crc32c(meta.get("crc32c")) is not None:  # type: ignore[arg-type]
            crc = parse_crc32c(meta.get("crc32c"))  # type: ignore[arg-type]
            md5 = meta.get("md5") if isinstance(meta.get("md5"), str) else None
        else:
            # No sidecar, or one left by a crash between the data rename and the sidecar
            # rename: the data file is the truth, so checksum it.
            crc, md5 = self._checksum_file(path, handle)
        return ObjectInfo(key=key, size=st.st_size, crc32c=crc, md5=md5, last_modified=_mtime(st))

    @staticmethod
    def _checksum_file(path: str, handle: BinaryIO | None) -> tuple[int, str]:
        crc = google_crc32c.Checksum()
        md5 = hashlib.md5()
        owned = handle is None
        source = open(path, "rb") if handle is None else handle
        try:
            position = source.tell()
            source.seek(0)
            while chunk := source.read(_COPY_CHUNK_BYTES):
                crc.update(chunk)
                md5.update(chunk)
            source.seek(position)
        finally:
            if owned:
                source.close()
        return int.from_bytes(crc.digest(), "big"), md5.hexdigest()

    # -- the interface ----------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | bytes,
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        self._check_open()
        path = self._path(key)
        directory = os.path.dirname(path)
        stream = as_stream(source)
        temp_path = os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            temp_file = self._create_temp(directory, temp_path)
        except OSError as err:
            raise StoreError(f"cannot write object {self._where(key)}: {err}") from err
        try:
            crc = google_crc32c.Checksum()
            md5 = hashlib.md5()
            length = 0
            with temp_file:
                while chunk := stream.read(_COPY_CHUNK_BYTES):
                    temp_file.write(chunk)
                    crc.update(chunk)
                    md5.update(chunk)
                    length += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                temp_file.flush()
                os.fsync(temp_file.fileno())
                st = os.fstat(temp_file.fileno())
            actual_crc = int.from_bytes(crc.digest(), "big")
            if size is not None and length != size:
                raise ChecksumMismatchError(
                    f"put {self._where(key)}: read {length} bytes from the source but "
                    f"size={size} was declared; nothing was stored"
                )
            if crc32c is not None and actual_crc != crc32c:
                raise ChecksumMismatchError(
                    f"put {self._where(key)}: CRC32C of the {length} bytes read is "
                    f"{format_crc32c(actual_crc)}, expected {format_crc32c(crc32c)}; the source "
                    "changed or is corrupt; nothing was stored"
                )
            os.replace(temp_path, path)
        except BaseException as err:
            _unlink_quietly(temp_path)
            if isinstance(err, OSError):
                raise StoreError(f"cannot write object {self._where(key)}: {err}") from err
            raise
        md5_hex = md5.hexdigest()
        self._record_checksums(key, directory, path, length, actual_crc, md5_hex)
        return ObjectInfo(
            key=key, size=length, crc32c=actual_crc, md5=md5_hex, last_modified=_mtime(st)
        )

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Hard-link ``path`` in as the object when it is on the store's filesystem.

        No copy: the file is linked under a temp name, fsynced, read once for its CRC32C
        (checked against ``crc32c``/``size`` like :meth:`put`), then renamed over the key.
        The MD5 is not computed (``md5`` is ``None``). On another filesystem, or where hard
        links are not supported, falls back to copying through :meth:`put`.
        """
        self._check_open()
        dest = self._path(key)
        directory = os.path.dirname(dest)
        temp_path = os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            os.makedirs(directory, exist_ok=True)
            os.link(path, temp_path)
        except OSError:  # EXDEV, EPERM, no link support, a racing delete: copy instead
            return super().put_file(key, path, size=size, crc32c=crc32c, progress=progress)
        try:
            checksum = google_crc32c.Checksum()
            length = 0
            with open(temp_path, "rb", buffering=0) as linked:
                os.fsync(linked.fileno())  # cheap if the writer synced it already
                st = os.fstat(linked.fileno())
                while chunk := linked.read(8 * _COPY_CHUNK_BYTES):
                    checksum.update(chunk)
                    length += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            actual_crc = int.from_bytes(checksum.digest(), "big")
            if (size is not None and length != size) or (
                crc32c is not None and actual_crc != crc32c
            ):
                raise ChecksumMismatchError(
                    f"put {self._where(key)} from {os.fspath(path)}: the file is {length} bytes "
                    f"with CRC32C {format_crc32c(actual_crc)}, expected size={size} and CRC32C "
                    f"{format_crc32c(crc32c) if crc32c is not None else 'any'}; nothing was stored"
                )
            os.replace(temp_path, dest)
        except BaseException as err:
            _unlink_quietly(temp_path)
            if isinstance(err, OSError):
                raise StoreError(f"cannot write object {self._where(key)}: {err}") from err
            raise
        self._record_checksums(key, directory, dest, length, actual_crc, None)
        return ObjectInfo(key=key, size=length, crc32c=actual_crc, last_modified=_mtime(st))

    def _record_checksums(self, key: str, directory: str, path: str, length: int,
                          crc: int, md5_hex: str | None) -> None:
        """Write the object's sidecar (size, CRC32C, MD5) atomically, then sync the directory."""
        try:
            meta = {"size": length, "crc32c": format_crc32c(crc), "md5": md5_hex}
            _write_file_atomically(
                directory, self._sidecar_path(path), json.dumps(meta).encode("ascii")
            )
            _fsync_directory(directory)
        except OSError as err:
            raise StoreError(
                f"stored {self._where(key)} but could not record its checksums: {err}"
            ) from err

    @staticmethod
    def _create_temp(directory: str, temp_path: str) -> BinaryIO:
        # A concurrent delete may remove the (empty) directory between makedirs and open.
        for attempt in range(3):
            os.makedirs(directory, exist_ok=True)
            try:
                return open(temp_path, "xb")
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        self._check_open()
        handle, st = self._open_object(key)
        with handle:
            first, stop = resolve_range(start, end, st.st_size)
            if first == 0 and stop == st.st_size:
                with self._reader(key, handle, st) as reader:
                    return reader.read()
            handle.seek(first)
            data = handle.read(stop - first)
        if len(data) != stop - first:
            raise ChecksumMismatchError(
                f"get {self._where(key)}: read {len(data)} bytes of [{first}, {stop}); "
                "the file was truncated while reading"
            )
        return data

    def _reader(self, key: str, handle: BinaryIO, st: os.stat_result) -> BinaryIO:
        info = self._info_for(key, self._path(key), st, handle)
        raw = VerifyingReader(
            handle.read,
            handle.close,
            where=f"read of {self._where(key)}",
            expected_size=st.st_size,
            expected_crc32c=info.crc32c,
        )
        return io.BufferedReader(raw, buffer_size=_COPY_CHUNK_BYTES)  # type: ignore[return-value]

    def open_reader(self, key: str) -> BinaryIO:
        self._check_open()
        handle, st = self._open_object(key)
        try:
            return self._reader(key, handle, st)
        except BaseException:
            handle.close()
            raise

    def download(
        self, key: str, dest_path: str, *, progress: ProgressCallback | None = None
    ) -> ObjectInfo:
        self._check_open()
        dest_path = os.path.abspath(os.fspath(dest_path))
        dest_dir = os.path.dirname(dest_path)
        with self.open_reader(key) as reader:
            info = self.head(key)
            os.makedirs(dest_dir, exist_ok=True)
            temp_path = os.path.join(dest_dir, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
            try:
                with open(temp_path, "xb") as temp_file:
                    while chunk := reader.read(_COPY_CHUNK_BYTES):
                        temp_file.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
                    temp_file.flush()
                    os.fsync(temp_file.fileno())
                os.replace(temp_path, dest_path)
            except BaseException as err:
                _unlink_quietly(temp_path)
                if isinstance(err, OSError):
                    raise StoreError(
                        f"download of {self._where(key)} to {dest_path} failed: {err}"
                    ) from err
                raise
        _fsync_directory(dest_dir)
        return info

    def head(self, key: str) -> ObjectInfo:
        self._check_open()
        handle, st = self._open_object(key)
        with handle:
            return self._info_for(key, self._path(key), st, handle)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check_open()
        validate_prefix(prefix)
        found: list[tuple[str, os.stat_result]] = []
        for key, path in self._walk(prefix):
            try:
                st = os.stat(path)
            except OSError:
                continue  # deleted while listing
            if stat.S_ISREG(st.st_mode):
                found.append((key, st))
        found.sort(key=lambda item: item[0])  # code-point order == S3's UTF-8 byte order
        for key, st in found:
            yield ObjectInfo(key=key, size=st.st_size, last_modified=_mtime(st))

    def _walk(self, prefix: str, *, reserved: bool = False) -> Iterator[tuple[str, str]]:
        """(key, path) of files under the directory that holds ``prefix``'s matches.

        With ``reserved=True``, yields the store's own files instead (key = relative path).
        """
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = os.path.join(self._root, *base.split("/")) if base else self._root
        for directory, subdirs, files in os.walk(top):
            if not reserved:
                subdirs[:] = [d for d in subdirs if not d.startswith(RESERVED_SEGMENT_PREFIX)]
            relative = os.path.relpath(directory, self._root)
            relative = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for name in files:
                if name.startswith(RESERVED_SEGMENT_PREFIX) != reserved:
                    continue
                key = relative + name
                if key.startswith(prefix):
                    yield key, os.path.join(directory, name)

    def delete(self, key: str) -> None:
        self._check_open()
        path = self._path(key)
        try:
            if os.path.isdir(path):
                return
            os.unlink(path)
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            return
        except OSError as err:
            raise StoreError(f"cannot delete {self._where(key)}: {err}") from err
        _unlink_quietly(self._sidecar_path(path))
        self._remove_empty_parents(os.path.dirname(path))

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        if prefix.endswith("/"):
            # The directory belongs to the prefix: also sweep temp files left by crashed
            # puts and orphaned sidecars, so deleting a backup leaves no directory behind.
            for _, path in list(self._walk(prefix, reserved=True)):
                _unlink_quietly(path)
                self._remove_empty_parents(os.path.dirname(path))
        return count

    def _remove_empty_parents(self, directory: str) -> None:
        while directory != self._root and directory.startswith(self._root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return  # not empty (or gone): stop
            directory = os.path.dirname(directory)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._check_open()
        validate_key(dst_key)
        info = self.head(src_key)
        with self.open_reader(src_key) as reader:
            return self.put(dst_key, reader, size=info.size, crc32c=info.crc32c)

    def close(self) -> None:
        with self._lock:
            self._closed = True

"""The object-store interface (SPEC §9) that backup, restore, copy and the offline tools share.

One small interface, modelled on Litestream's ``ReplicaClient`` and pgBackRest's storage
drivers: every backend honours the error contract written in the method docstrings, and
helpers are written once against :class:`ObjectStore`, never per backend.

Keys are ``/``-separated relative paths (``backups/<id>/p-0003.tar.zst``). The same key
rules apply to every backend (see :func:`validate_key`), so a key that works on a local
directory also works on S3 and back.

Checksums: every ``put`` computes the whole-object CRC32C (Castagnoli, as S3's
``x-amz-checksum-crc32c``) while streaming and stores it with the object, so ``head``
returns it without trusting a server's checksum support. Reads verify against it:
``open_reader`` at end of stream and ``download`` before the file is renamed into place.
"""

from __future__ import annotations

import abc
import base64
import datetime as _dt
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import google_crc32c

from engine.errors import ChecksumMismatchError, ObjectNotFoundError, StoreError

#: Called with the number of bytes newly transferred (an increment, like boto3's
#: ``Callback``); the increments of one call add up to the object's size.
ProgressCallback = Callable[[int], None]

#: Path segments starting with this are reserved for a backend's own files (the local
#: store's temp files and metadata sidecars) and are refused in keys.
RESERVED_SEGMENT_PREFIX = ".tessera-"

MiB = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    ``crc32c`` is the whole-object CRC32C recorded at ``put`` time (``None`` when the
    object was not written through this interface or its metadata was lost, and always
    ``None`` in ``list`` results — use ``head``). ``md5`` is the whole-object MD5 as hex
    where known (single-part uploads, local files). ``etag`` is the server's ETag (S3) or
    ``None``.
    """

    key: str
    size: int
    crc32c: int | None = None
    md5: str | None = None
    etag: str | None = None
    last_modified: _dt.datetime | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise ``ValueError``.

    A key is a non-empty relative ``/``-separated path: no leading ``/``, no empty, ``.``
    or ``..`` segments, no backslash or NUL, and no segment starting with
    :data:`RESERVED_SEGMENT_PREFIX`.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key must be a non-empty string, got {key!r}")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"object key {key!r} contains a backslash or NUL")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} is absolute; keys are relative to the store")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"object key {key!r} has an empty, '.' or '..' segment; use a plain relative key"
            )
        if segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise ValueError(
                f"object key {key!r}: segments starting with {RESERVED_SEGMENT_PREFIX!r} are reserved"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can select keys (``""`` selects all), else raise ``ValueError``.

    A prefix is a string prefix of keys, as in S3 (``"a/b"`` matches ``"a/bc"``); it may
    end with ``/`` or in the middle of a segment, but may not contain ``..``/``.``/empty
    segments before its last one.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {prefix!r}")
    if not prefix:
        return prefix
    if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise ValueError(f"prefix {prefix!r} is absolute or contains a backslash or NUL")
    complete_segments = prefix.split("/")[:-1]
    if any(segment in ("", ".", "..") for segment in complete_segments):
        raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' segment")
    return prefix


def resolve_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Clip ``[start, end)`` to an object of ``size`` bytes, like a Python slice."""
    if start < 0 or (end is not None and end < 0):
        raise ValueError(f"byte range [{start}, {end}) must not be negative")
    stop = size if end is None else min(end, size)
    start = min(start, size)
    return start, max(start, stop)


def crc32c_to_base64(crc: int) -> str:
    """S3's encoding of a CRC32C: base64 of the 4-byte big-endian value."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


_CRC32C_POLY_REVERSED = 0x82F63B78


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    row = 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[row]) for row in range(32)]


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32C of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)`` (zlib's
    ``crc32_combine`` with the Castagnoli polynomial): O(log len2), no data needed."""
    if len2 <= 0:
        return crc1
    odd = [_CRC32C_POLY_REVERSED] + [1 << bit for bit in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first round: one zero byte
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def format_crc32c(crc: int) -> str:
    """The form stored in object metadata: 8 lower-case hex digits."""
    return f"{crc:08x}"


def parse_crc32c(text: str | None) -> int | None:
    """Inverse of :func:`format_crc32c`; ``None`` for missing or malformed metadata."""
    if not text:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return value if 0 <= value <= 0xFFFFFFFF else None


def read_full(source: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes from ``source``, fewer only at end of stream.

    Pipes and sockets may return short reads; this loops until the part is full.
    """
    first = source.read(size)
    if first is None:
        first = b""
    if len(first) == size or not first:
        return bytes(first)
    chunks = [first]
    remaining = size - len(first)
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def as_stream(source: BinaryIO | bytes | bytearray | memoryview) -> BinaryIO:
    """Accept bytes-like objects wherever a readable binary stream is expected."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    return source


def seekable_remaining(source: BinaryIO) -> int | None:
    """Bytes left from the current position of a seekable stream, else ``None``."""
    try:
        if not source.seekable():
            return None
        position = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return end - position


def crc32c_of_stream(source: BinaryIO, chunk_bytes: int = 4 * MiB) -> tuple[int, int]:
    """CRC32C and length of a seekable stream from its position; the position is restored."""
    position = source.tell()
    checksum = google_crc32c.Checksum()
    length = 0
    while chunk := source.read(chunk_bytes):
        checksum.update(chunk)
        length += len(chunk)
    source.seek(position)
    return int.from_bytes(checksum.digest(), "big"), length


class VerifyingReader(io.RawIOBase):
    """A raw reader that computes CRC32C as bytes pass and checks it at end of stream.

    Raises :class:`ChecksumMismatchError` from the ``read`` that reaches end of stream if
    the length or the CRC32C differs from what the store recorded at ``put`` time.
    """

    def __init__(
        self,
        raw_read: Callable[[int], bytes],
        close_raw: Callable[[], None],
        *,
        where: str,
        expected_size: int,
        expected_crc32c: int | None,
    ) -> None:
        super().__init__()
        self._raw_read = raw_read
        self._close_raw = close_raw
        self._where = where
        self._expected_size = expected_size
        self._expected_crc32c = expected_crc32c
        self._checksum = google_crc32c.Checksum()
        self._length = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._raw_read(len(view))
        if not data:
            self._verify()
            return 0
        view[: len(data)] = data
        self._checksum.update(data)
        self._length += len(data)
        return len(data)

    def _verify(self) -> None:
        if self._verified:
            return
        self._verified = True
        if self._length != self._expected_size:
            raise ChecksumMismatchError(
                f"{self._where}: read {self._length} bytes but the object is "
                f"{self._expected_size} bytes; the object was truncated or replaced while reading"
            )
        actual = int.from_bytes(self._checksum.digest(), "big")
        if self._expected_crc32c is not None and actual != self._expected_crc32c:
            raise ChecksumMismatchError(
                f"{self._where}: CRC32C of the bytes read is {format_crc32c(actual)}, the store "
                f"recorded {format_crc32c(self._expected_crc32c)}; the stored object is corrupt"
            )

    def close(self) -> None:
        if not self.closed:
            try:
                self._close_raw()
            finally:
                super().close()


class ObjectStore(abc.ABC):
    """A flat namespace of immutable-once-written objects addressed by key.

    Error contract, shared by every backend:

    - a missing object → :class:`~engine.errors.ObjectNotFoundError` (also a ``KeyError``);
    - bytes that do not match their checksum or declared size →
      :class:`~engine.errors.ChecksumMismatchError`, and a failed ``put`` leaves nothing
      visible under its key;
    - anything else that fails after the backend's retries → :class:`~engine.errors.StoreError`
      naming the store URL, the key and the underlying error;
    - an invalid key → ``ValueError`` (see :func:`validate_key`).

    Stores are safe to use from several threads at once. ``close()`` is idempotent; any
    other call after it raises ``StoreError``.
    """

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where the store lives: ``file:///abs/dir`` or ``s3://bucket/prefix``."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        source: BinaryIO | bytes,
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Store the bytes of ``source`` (read from its current position to EOF) under ``key``.

        The object appears atomically: readers see the old object (or none) until the new
        one is complete. CRC32C and MD5 are computed while streaming; if ``crc32c`` is
        given and the streamed bytes do not match it, or ``size`` is given and a different
        number of bytes was read, raises ``ChecksumMismatchError`` and nothing is left
        visible under ``key`` (an older object under the same key is kept). ``progress`` is
        called from the calling thread with byte increments that add up to the size.
        Returns the stored object's info, with ``crc32c`` set.
        """

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """:meth:`put` the contents of the local file ``path``; same contract and errors.

        The caller promises not to modify ``path`` afterwards (it may delete it): a
        backend may take the file over instead of copying it (LocalStore hard-links it
        when it is on the same filesystem). This default streams it through :meth:`put`.
        """
        with open(path, "rb") as source:
            return self.put(key, source, size=size, crc32c=crc32c, progress=progress)

    @abc.abstractmethod
    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """Return bytes ``[start, end)`` of the object (``end=None``: to the end).

        The range is clipped to the object like a Python slice (a start past the end gives
        ``b""``); negative bounds raise ``ValueError``. A whole-object read is verified
        against the stored CRC32C (``ChecksumMismatchError``). Missing key →
        ``ObjectNotFoundError``.
        """

    @abc.abstractmethod
    def open_reader(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; close it when done.

        Missing key → ``ObjectNotFoundError`` at open. The stream checks length and CRC32C
        when it reaches the end and raises ``ChecksumMismatchError`` from that ``read``.
        """

    @abc.abstractmethod
    def download(
        self, key: str, dest_path: str, *, progress: ProgressCallback | None = None
    ) -> ObjectInfo:
        """Copy the object to the local file ``dest_path`` (replaced atomically).

        Large objects are fetched with parallel ranged reads where the backend supports it.
        The file is verified against the stored CRC32C before it is renamed into place;
        on mismatch raises ``ChecksumMismatchError`` and ``dest_path`` is left untouched.
        Missing key → ``ObjectNotFoundError``.
        """

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return the object's info (size, CRC32C, …). Missing key → ``ObjectNotFoundError``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, sorted by key.

        ``prefix`` is a plain string prefix as in S3. ``crc32c`` is ``None`` in the
        results (use ``head``); a backend's own temp and metadata files never appear.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object. A missing key is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; return how many.

        An empty prefix is refused (``ValueError``) so a typo cannot empty a store.
        """
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix; refusing to empty the store")
        validate_prefix(prefix)
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def exists(self, key: str) -> bool:
        """True if an object is stored under ``key``."""
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    @abc.abstractmethod
    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Copy an object within the store (server-side where possible), keeping its CRC32C.

        Missing ``src_key`` → ``ObjectNotFoundError``. Returns the new object's info.
        """

    def same_bucket_as(self, other: ObjectStore) -> bool:
        """True when :meth:`copy_object_from` can copy ``other``'s objects here server-side
        (S3: both on one endpoint and bucket, prefixes aside). By default never."""
        return False

    def copy_object_from(self, source: ObjectStore, key: str) -> ObjectInfo:
        """Copy ``source``'s object ``key`` here under the same key, server-side, keeping
        its CRC32C; only for a ``source`` this store is :meth:`same_bucket_as`.

        Otherwise ``ValueError`` (stream it with ``open_reader`` and ``put`` instead).
        Missing ``key`` → ``ObjectNotFoundError``; a copy whose size or CRC32C differs from
        the source's → ``ChecksumMismatchError``. Returns the new object's info.
        """
        raise ValueError(f"{self.url} cannot copy server-side from {source.url}; "
                         "stream the object instead")

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and threads. Idempotent."""


def closed_error(url: str) -> StoreError:
    return StoreError(f"object store {url} is closed; open a new one with open_store()")

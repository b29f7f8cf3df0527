"""The minimum of tar needed to write and strictly read a partition object, streaming.

Writing: headers come from :meth:`tarfile.TarInfo.tobuf` in PAX format (plain ustar for
our names and sizes under 8 GiB; an extended header carries larger sizes), data follows
in 512-byte blocks, and the end-of-archive marker is padded to a 10 KiB record exactly
as :mod:`tarfile` does — so ``tar -x``, ``tarfile`` and ``bsdtar`` all read the objects.
We write the bytes ourselves rather than through ``tarfile.open(mode="w|")`` to copy
``data.mdb`` in large chunks with the checksums riding along.

Reading: :class:`TarReader` parses headers with :meth:`tarfile.TarInfo.frombuf` (header
checksum included) and PAX records itself, hands member data out in bounded chunks, and
never seeks, so it works on a decompressing stream. It reports what each member *is*;
refusing the wrong ones is the caller's policy (``engine.backup.unpack``).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar's default record, as tarfile pads
_MAX_PAX_HEADER_BYTES = 64 << 10
_PAX_KEYS_APPLIED = {"path", "size", "linkpath"}
# Metadata a hand-made archive (GNU tar --format=posix) may add; harmless to ignore.
_PAX_KEYS_IGNORED = {"mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment"}


class TarFormatError(Exception):
    """The tar stream is malformed; the caller adds object and partition context."""


def padding(size: int) -> bytes:
    """Zero bytes that complete the last 512-byte block of ``size`` data bytes."""
    return b"\0" * (-size % BLOCK)


def regular_file_header(name: str, size: int, mtime: int) -> bytes:
    """The header block(s) of a regular file owned by root, mode 0644."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, given the archive's size so far."""
    size = offset + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-size % RECORD))


@dataclass(frozen=True)
class MemberHeader:
    name: str
    type: bytes  # tarfile.REGTYPE, SYMTYPE, ...
    size: int
    linkname: str
    offset: int  # where the header starts in the tar stream


class TarReader:
    """Sequential, non-seeking tar reader over a file-like ``read`` of uncompressed bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.offset = 0  # bytes of the tar stream consumed so far

    def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or :class:`TarFormatError` if the stream ends first."""
        chunks = []
        remaining = size
        while remaining:
            chunk = self._stream.read(remaining)
            if not chunk:
                raise TarFormatError(
                    f"tar stream ends at offset {self.offset + size - remaining}, "
                    f"{remaining} bytes short of what its headers promise (truncated)")
            chunks.append(chunk)
            remaining -= len(chunk)
        self.offset += size
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def next_header(self) -> MemberHeader | None:
        """The next member's header, or None at the end-of-archive zero block."""
        start = self.offset
        block = self.read_exact(BLOCK)
        if block.count(0) == BLOCK:
            return None
        info = self._parse(block, start)
        pax: dict[str, str] = {}
        if info.type == tarfile.XHDTYPE:
            if info.size > _MAX_PAX_HEADER_BYTES:
                raise TarFormatError(f"PAX header at offset {start} is {info.size} bytes, "
                                     f"over the {_MAX_PAX_HEADER_BYTES}-byte limit")
            pax = _parse_pax(self.read_exact(info.size), start)
            self.skip_padding(info.size)
            block = self.read_exact(BLOCK)
            if block.count(0) == BLOCK:
                raise TarFormatError(f"PAX header at offset {start} precedes the end "
                                     "of the archive")
            info = self._parse(block, start)
        size = info.size
        if "size" in pax:
            if not pax["size"].isdigit():
                raise TarFormatError(f"PAX size {pax['size']!r} at offset {start}")
            size = int(pax["size"])
        return MemberHeader(
            name=pax.get("path", info.name),
            type=info.type,
            size=size,
            linkname=pax.get("linkpath", info.linkname),
            offset=start,
        )

    def iter_data(self, size: int, chunk_size: int) -> Iterator[bytes]:
        """The member's ``size`` data bytes in chunks, then its block padding skipped."""
        remaining = size
        while remaining:
            chunk = self.read_exact(min(chunk_size, remaining))
            remaining -= len(chunk)
            yield chunk
        self.skip_padding(size)

    def skip_padding(self, size: int) -> None:
        self.read_exact(-size % BLOCK)

    @staticmethod
    def _parse(block: bytes, offset: int) -> tarfile.TarInfo:
        try:
            return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            raise TarFormatError(f"bad tar header at offset {offset}: {err}") from err


def _parse_pax(data: bytes, offset: int) -> dict[str, str]:
    """PAX extended header records ``"%d %s=%s\\n"``; keys we do not understand are refused.

    Unknown keys (``GNU.sparse.*``, ``hdrcharset``, ...) could change what the member
    means, so rather than guess we stop.
    """
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].count(0) == len(data) - pos:
            break  # NUL padding some writers leave at the end
        space = data.find(b" ", pos)
        length_text = data[pos:space] if space > pos else b""
        if not length_text.isdigit():
            raise TarFormatError(f"malformed PAX record at offset {offset}+{pos}")
        length = int(length_text)
        record = data[pos:pos + length]
        if length <= space - pos or len(record) != length or not record.endswith(b"\n"):
            raise TarFormatError(f"malformed PAX record at offset {offset}+{pos}")
        key, sep, value = record[space - pos + 1:-1].partition(b"=")
        if not sep:
            raise TarFormatError(f"malformed PAX record at offset {offset}+{pos}")
        try:
            key_text, value_text = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TarFormatError(f"PAX record at offset {offset}+{pos} is not UTF-8") from err
        if key_text in _PAX_KEYS_APPLIED:
            records[key_text] = value_text
        elif key_text not in _PAX_KEYS_IGNORED:
            raise TarFormatError(f"unsupported PAX key {key_text!r} at offset {offset}")
        pos += length
    return records

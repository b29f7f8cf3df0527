"""Follow the structure of one zstd frame as its bytes stream past.

Why: ``zstandard``'s ``stream_reader`` returns a clean end-of-stream when its input simply
stops, even in the middle of a frame (a truncated object would look complete if the tar
inside happened to end in time), and it does not say where the frame ended (bytes
appended after it go unnoticed or surface as an unrelated error). Block headers carry
their sizes, so reading them costs a few operations per 128 KiB block and tells us
exactly where the frame ends: the object must be one complete frame and nothing else.

Format: RFC 8878 §3.1.1 (frame header, 3-byte block headers, optional 4-byte checksum).
"""

from __future__ import annotations

from typing import BinaryIO

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BLOCK_RESERVED = 3

_HEADER, _BLOCK_HEADER, _BODY, _CHECKSUM, _DONE, _INVALID = range(6)


class ZstdFrameTracker:
    """A read-through wrapper over the compressed source that walks one zstd frame.

    After the source is read to its end: ``complete`` says the frame ended,
    ``trailing_bytes`` counts bytes after it, ``problem`` describes a malformed header,
    ``offset`` is the number of bytes read so far.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.offset = 0
        self.frame_end: int | None = None
        self.trailing_bytes = 0
        self.problem: str | None = None
        self._state = _HEADER
        self._pending = bytearray()
        self._skip = 0
        self._last_block = False
        self._has_checksum = False
        self._header_len = 5  # magic + frame header descriptor, grown once we see the FHD
        self.eof = False

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if not isinstance(data, bytes):
            data = bytes(data)
        if data:
            self._consume(data)
        elif size != 0:
            self.eof = True
        return data

    def describe_state(self) -> str:
        """Where in the frame the stream stopped, for error messages."""
        return {
            _HEADER: "inside the frame header",
            _BLOCK_HEADER: "at a block boundary before the last block",
            _BODY: "inside a block",
            _CHECKSUM: "inside the frame checksum",
            _DONE: "after the end of the frame",
            _INVALID: f"at a malformed frame ({self.problem})",
        }[self._state]

    # -- the state machine ----------------------------------------------------------

    def _consume(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DONE:
                if self.frame_end is None:
                    self.frame_end = self.offset + pos
                self.trailing_bytes += end - pos
                break
            if state == _INVALID:
                break
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                if not self._skip:
                    self._after_skip()
                continue
            need = self._header_len if state == _HEADER else 3
            take = min(need - len(self._pending), end - pos)
            self._pending += data[pos:pos + take]
            pos += take
            if len(self._pending) < need:
                continue
            if state == _HEADER:
                self._frame_header()
            else:
                self._block_header(self.offset + pos - 3)
        if self._state == _DONE and self.frame_end is None:
            self.frame_end = self.offset + end
        self.offset += end

    def _frame_header(self) -> None:
        header = self._pending
        if len(header) == 5:  # magic + descriptor: now we know the full header length
            if bytes(header[:4]) != ZSTD_MAGIC:
                self._fail(f"not a zstd frame (magic {bytes(header[:4]).hex()})")
                return
            descriptor = header[4]
            if descriptor & 0x08:
                self._fail("reserved bit set in the frame header descriptor")
                return
            fcs_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
            self._has_checksum = bool(descriptor & 0x04)
            dict_id_len = (0, 1, 2, 4)[descriptor & 0x03]
            fcs_len = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
            self._header_len = 5 + (0 if single_segment else 1) + dict_id_len + fcs_len
            if self._header_len > 5:
                return  # keep accumulating the rest of the header
        self._pending.clear()
        self._state = _BLOCK_HEADER

    def _block_header(self, header_offset: int) -> None:
        value = int.from_bytes(self._pending, "little")
        self._pending.clear()
        self._last_block = bool(value & 1)
        block_type, block_size = (value >> 1) & 3, value >> 3
        if block_type == _BLOCK_RESERVED:
            self._fail(f"reserved block type in the block header at offset {header_offset}")
            return
        self._skip = 1 if block_type == 1 else block_size  # RLE blocks store one byte
        self._state = _BODY
        if not self._skip:
            self._after_skip()

    def _after_skip(self) -> None:
        if self._state == _BODY and self._last_block and self._has_checksum:
            self._state, self._skip = _CHECKSUM, 4
        elif self._state == _BODY and not self._last_block:
            self._state = _BLOCK_HEADER
        else:
            self._state = _DONE

    def _fail(self, problem: str) -> None:
        self.problem = problem
        self._state = _INVALID

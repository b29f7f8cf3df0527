# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""WAL record framing, CRC32C and the batch payload codec (SPEC §4).

CRC32C
------
``crc32c(data, crc=0)`` is CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial
value and final xor 0xFFFFFFFF), the same function as ``google_crc32c.value`` and
``crcmod.predefined.mkCrcFun('crc-32c')``. Chaining works the usual way:
``crc32c(b, crc32c(a)) == crc32c(a + b)``. On x86-64 the SSE4.2 ``crc32`` instruction is
used when the CPU has it (checked once at import, ``HARDWARE_CRC`` says which); otherwise a
table-driven slice-by-8 loop. Buffers of 64 KiB or more are checksummed without the GIL.

Record framing (all integers little-endian)
-------------------------------------------
::

    offset 0   u32  payload_len      (at most MAX_PAYLOAD = 1 GiB)
    offset 4   u64  lsn
    offset 12  u32  crc              CRC32C over bytes [0, 12) of the header + the payload
    offset 16  payload_len bytes of payload

``HEADER_SIZE = 16``. A segment is a plain concatenation of records, LSNs strictly
increasing by exactly 1. The writer appends whole records and never recycles segment files
(the tail after the last record is either the end of the file or zero bytes from
preallocation).

How ``scan_records`` classifies the tail
----------------------------------------
It walks records from ``start`` and stops at the first record that is not good. It returns
``(records, good_end, problem)``: ``records`` is the list of ``(lsn, payload)`` of the good
records, ``good_end`` the offset just past the last good one (so the offset of the bad
record when there is one), and ``problem``:

* ``None`` -- the buffer ends exactly at a record boundary.
* ``"torn"`` -- what an interrupted append leaves behind, safe to cut off:
    - the remaining bytes are all zero (a preallocated / zero-filled tail), or fewer than
      a header;
    - a complete header whose ``payload_len`` runs past the end of the buffer (the CRC
      cannot be checked), unless the damage is provably a corrupted length field, see
      below;
    - a complete-length record with a bad CRC that is followed only by zero bytes (or by
      nothing) *and* whose own last byte is zero: a partial write into preallocated space
      (a correct prefix, then zeros) looks exactly like this.
* ``"corrupt"`` -- damage an interrupted append cannot produce:
    - a complete record with a bad CRC followed by any non-zero byte, or whose last byte is
      non-zero (a torn write into zeros would end in a zero byte);
    - a CRC-valid record whose LSN is not the previous LSN + 1 (or, for the first record,
      not ``expect_lsn`` when that is given);
    - ``payload_len`` > 1 GiB (``frame_record`` refuses such payloads, and a partially
      written header, being a prefix of the right bytes followed by zeros, can only make
      the length smaller) -- even when it runs past the end;
    - a length field provably corrupted: the record becomes CRC-valid with a different
      length that ends either exactly at the end of the buffer or exactly where a CRC-valid
      record with the next LSN starts. This turns a flipped byte in any length field
      (except in the last record when a preallocated zero tail follows it) into
      ``"corrupt"`` instead of ``"torn"``.
  A kill -9 mid-append leaves a prefix of the intended bytes (possibly followed by
  preallocated zeros), so it always yields ``"torn"``, except with probability ~2^-32 per
  crash (a CRC collision in the length-field check). A single flipped byte inside a complete
  record that is not the last always yields ``"corrupt"`` with ``good_end`` at that record.
  A damaged *last* record is indistinguishable from a torn append when its final byte is
  zero and only zeros (or nothing) follow it; that case is reported as ``"torn"``.

Batch payload (one WAL record = one atomic batch on one partition)
------------------------------------------------------------------
::

    varint n_ops
    n_ops times:  u8 opcode | varint key_len | key | (PUT only) varint value_len | value

Opcodes: ``OP_PUT = 1``, ``OP_DELETE = 2``. Varints are unsigned LEB128 (at most 10 bytes,
value < 2^64). ``decode_ops`` raises ``ValueError`` on an unknown opcode, truncation,
overlong varints or trailing bytes.
"""

# One job per part, one extension module: the parts share the CRC's tables and its
# hardware switch, and engine.wal / engine.partition import them all from here.
include "walframe_crc.pxi"
include "walframe_records.pxi"
include "walframe_ops.pxi"

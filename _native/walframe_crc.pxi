# The CRC32C part of engine._walframe (included by walframe.pyx; the C is crc32c.h).
# Framing and scanning use the same tables and the same hardware switch, so the three
# parts stay one extension module: ``_use_hardware_crc(False)`` in a test reaches them all.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t

cdef extern from "crc32c.h":
    void tw_init(int allow_hw)
    void tw_set_hw(int on)
    int tw_get_hw()
    uint32_t tw_crc32c(uint32_t crc, const uint8_t *p, size_t n) nogil
    uint32_t tw_crc_raw(uint32_t c, const uint8_t *p, size_t n) nogil

tw_init(1)

cdef Py_ssize_t _NOGIL_THRESHOLD = 65536  # 64 KiB


def _hardware_crc():
    """True when the SSE4.2 instruction computes CRC32C (the slice-by-8 table otherwise)."""
    return bool(tw_get_hw())


def _use_hardware_crc(bint on):
    """Force the table implementation (``False``) or re-enable the CPU one (tests only)."""
    tw_set_hw(1 if on else 0)


HARDWARE_CRC = _hardware_crc()


def crc32c(data, crc=0):
    """CRC-32C of ``data`` (bytes-like), continuing from ``crc`` (a previous result)."""
    cdef Py_buffer view
    cdef uint32_t c
    cdef unsigned long long start = crc
    if start > 0xFFFFFFFF:
        raise ValueError(f"crc must be a 32-bit unsigned value, got {crc}")
    c = <uint32_t>start
    if type(data) is bytes:
        if PyBytes_GET_SIZE(data) < _NOGIL_THRESHOLD:
            return tw_crc32c(c, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len >= _NOGIL_THRESHOLD:
            with nogil:
                c = tw_crc32c(c, <const uint8_t *>view.buf, view.len)
        else:
            c = tw_crc32c(c, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return c


/* Walking the records of a WAL segment and classifying its tail (SPEC §4): the rules are
   written out in engine._walframe's module docstring ("How scan_records classifies the
   tail"); tw_scan implements them, tw_length_field_damaged the "length field provably
   corrupted" case. Needs crc32c.h's tw_init to have run. */
#ifndef TESSERA_WALSCAN_H
#define TESSERA_WALSCAN_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "crc32c.h"

#define TW_HEADER 16
#define TW_MAX_PAYLOAD ((uint64_t)1 << 30)
enum { TW_OK = 0, TW_TORN = 1, TW_CORRUPT = 2, TW_NOMEM = -1 };

/* A good record: its payload is `len` bytes at offset `off` of the buffer. */
typedef struct { size_t off; uint32_t len; uint64_t lsn; } tw_rec;

static int tw_all_zero(const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { if (*p++) return 0; n--; }
    while (n >= 8) { uint64_t v; memcpy(&v, p, 8); if (v) return 0; p += 8; n -= 8; }
    while (n--) if (*p++) return 0;
    return 1;
}

/* CRC of the record at `pos` as if its payload were `len` bytes long. */
static uint32_t tw_record_crc(const uint8_t *b, size_t pos, uint32_t len) {
    uint8_t head[12];
    memcpy(head, b + pos, 12);
    tw_st32(head, len);
    uint32_t c = tw_crc_raw(0xFFFFFFFFu, head, 12);
    c = tw_crc_raw(c, b + pos + TW_HEADER, len);
    return ~c;
}

static int tw_record_valid(const uint8_t *b, size_t n, size_t q) {
    if (n - q < TW_HEADER) return 0;
    uint32_t len = tw_ld32(b + q);
    if ((uint64_t)len > TW_MAX_PAYLOAD || len > n - q - TW_HEADER) return 0;
    return tw_record_crc(b, q, len) == tw_ld32(b + q + 12);
}

/* Is the record at `pos` provably intact except for its length field? */
static int tw_length_field_damaged(const uint8_t *b, size_t n, size_t pos) {
    uint64_t lsn = tw_ld64(b + pos + 4);
    uint32_t want = tw_ld32(b + pos + 12);
    size_t whole = n - pos - TW_HEADER;
    if ((uint64_t)whole <= TW_MAX_PAYLOAD && tw_ld32(b + pos) != (uint32_t)whole &&
        tw_record_crc(b, pos, (uint32_t)whole) == want)
        return 1;
    if (n - pos < 2 * TW_HEADER) return 0;
    uint64_t next = lsn + 1;
    for (size_t q = pos + TW_HEADER; q + TW_HEADER <= n; q++) {
        if (tw_ld64(b + q + 4) != next) continue;
        size_t len = q - pos - TW_HEADER;
        if ((uint64_t)len > TW_MAX_PAYLOAD) break;
        if (tw_record_valid(b, n, q) && tw_record_crc(b, pos, (uint32_t)len) == want)
            return 1;
    }
    return 0;
}

/* Walk the n bytes at b from pos. On return *out (malloc'ed, the caller frees it) holds
   the *nout good records and *good_end the offset just past the last one; the result is
   TW_OK, TW_TORN or TW_CORRUPT, or TW_NOMEM with nothing allocated. */
static int tw_scan(const uint8_t *b, size_t n, size_t pos, int have_expect, uint64_t expect,
                   tw_rec **out, size_t *nout, size_t *good_end) {
    size_t cap = 0, cnt = 0;
    tw_rec *recs = NULL;
    int problem = TW_OK;
    uint64_t prev = 0;
    for (;;) {
        size_t rem = n - pos;
        if (rem == 0) { problem = TW_OK; break; }
        if (rem < TW_HEADER || tw_all_zero(b + pos, rem)) { problem = TW_TORN; break; }
        uint32_t len = tw_ld32(b + pos);
        uint64_t lsn = tw_ld64(b + pos + 4);
        uint32_t stored = tw_ld32(b + pos + 12);
        if ((uint64_t)len > TW_MAX_PAYLOAD) { problem = TW_CORRUPT; break; }
        if (len > rem - TW_HEADER) {
            problem = tw_length_field_damaged(b, n, pos) ? TW_CORRUPT : TW_TORN;
            break;
        }
        size_t end = pos + TW_HEADER + len;
        if (tw_record_crc(b, pos, len) != stored) {
            if (end < n && !tw_all_zero(b + end, n - end)) problem = TW_CORRUPT;
            else if (b[end - 1] != 0) problem = TW_CORRUPT;
            else if (tw_length_field_damaged(b, n, pos)) problem = TW_CORRUPT;
            else problem = TW_TORN;
            break;
        }
        if (cnt > 0) { if (lsn != prev + 1) { problem = TW_CORRUPT; break; } }
        else if (have_expect && lsn != expect) { problem = TW_CORRUPT; break; }
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            tw_rec *nr = (tw_rec *)realloc(recs, ncap * sizeof(tw_rec));
            if (!nr) { free(recs); return TW_NOMEM; }
            recs = nr; cap = ncap;
        }
        recs[cnt].off = pos + TW_HEADER; recs[cnt].len = len; recs[cnt].lsn = lsn;
        cnt++;
        prev = lsn;
        pos = end;
    }
    *out = recs; *nout = cnt; *good_end = pos;
    return problem;
}

#endif

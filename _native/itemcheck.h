/* The checksums of a stored item (engine._itemcodec's module docstring has the format):

       version 2:  0x02 | body | u32le CRC32C(0x02 | body) | u32le CRC32C(0x02 | body | key)
       version 1:  0x01 | body                            (written before checksums; unchecked)

   ti_check classifies a stored value: TI_V2 (both checksums hold; with key == NULL only
   the first, which covers every value byte), TI_V1, or a negative TI_* code saying what
   is wrong. *body_end receives the offset where the body ends (n - 8 for version 2, n for
   version 1). The second checksum continues the first one's register over the key, so a
   keyed check costs one pass over the value plus one over the key.

   Needs crc32c.h's tw_init to have run in the including module (each module including
   crc32c.h has its own tables and hardware switch). */
#ifndef TESSERA_ITEMCHECK_H
#define TESSERA_ITEMCHECK_H

#include <stdint.h>
#include <stddef.h>

#include "byteorder.h"
#include "crc32c.h"

#define TI_VERSION_1 0x01
#define TI_VERSION_2 0x02
#define TI_TRAILER 8
enum {
    TI_V2 = 2, TI_V1 = 1,
    TI_EMPTY = -1,          /* no bytes at all */
    TI_BAD_VERSION = -2,    /* first byte is neither 1 nor 2 */
    TI_TOO_SHORT = -3,      /* version 2 shorter than version byte + count + trailer */
    TI_BAD_VALUE_CRC = -4,  /* the value's own checksum fails */
    TI_BAD_KEY_CRC = -5     /* the value is intact but was not stored under this key */
};

/* The two checksums a version-2 value of `n_body` bytes (version byte included) carries. */
static inline void ti_checksums(const uint8_t *key, size_t key_len, const uint8_t *v,
                                size_t n_body, uint32_t *value_crc, uint32_t *keyed_crc) {
    uint32_t c = tw_crc_raw(0xFFFFFFFFu, v, n_body);
    *value_crc = ~c;
    *keyed_crc = ~tw_crc_raw(c, key, key_len);
}

static inline int ti_check(const uint8_t *key, size_t key_len, const uint8_t *v, size_t n,
                           size_t *body_end, uint32_t *stored, uint32_t *computed) {
    *body_end = n;
    if (n == 0) return TI_EMPTY;
    if (v[0] == TI_VERSION_1) return TI_V1;
    if (v[0] != TI_VERSION_2) return TI_BAD_VERSION;
    if (n < 2 + TI_TRAILER) return TI_TOO_SHORT;
    size_t m = n - TI_TRAILER;
    uint32_t c = tw_crc_raw(0xFFFFFFFFu, v, m);
    *stored = tw_ld32(v + m);
    *computed = ~c;
    if (*computed != *stored) return TI_BAD_VALUE_CRC;
    if (key != NULL) {
        *stored = tw_ld32(v + m + 4);
        *computed = ~tw_crc_raw(c, key, key_len);
        if (*computed != *stored) return TI_BAD_KEY_CRC;
    }
    *body_end = m;
    return TI_V2;
}

#endif

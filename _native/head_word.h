/* One word of a name's first bytes, for engine._itemcodec's attribute-name caches: two
   names compare a word at a time instead of in a byte loop (see _slot_holds). */
#ifndef TESSERA_HEAD_WORD_H
#define TESSERA_HEAD_WORD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The first min(n, 8) bytes at p, zero-padded, as one word; p must have 8 readable
   bytes. Equal to memcpy'ing those bytes into a zeroed word, on either byte order. */
static inline uint64_t tk_head(const uint8_t *p, size_t n) {
    uint64_t w;
    memcpy(&w, p, 8);
    if (n >= 8) return w;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return n ? w & ~(~0ULL >> (8 * n)) : 0;
#else
    return w & ((1ULL << (8 * n)) - 1);
#endif
}

#endif

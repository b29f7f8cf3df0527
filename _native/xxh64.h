/* XXH64 (the xxHash specification), the partition hash of engine._keycodec.hash64
   (SPEC §3): stable forever, so written out here rather than taken from a library whose
   version could change it. Explicit little-endian reads: the same value on any CPU. */
#ifndef TESSERA_XXH64_H
#define TESSERA_XXH64_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define TK_P1 11400714785074694791ULL
#define TK_P2 14029467366897019727ULL
#define TK_P3 1609587929392839161ULL
#define TK_P4 9650029242287828579ULL
#define TK_P5 2870177450012600261ULL
static inline uint64_t tk_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t tk_rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t tk_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t tk_round(uint64_t acc, uint64_t input) {
    acc += input * TK_P2; acc = tk_rotl(acc, 31); acc *= TK_P1; return acc;
}
static inline uint64_t tk_merge(uint64_t acc, uint64_t val) {
    val = tk_round(0, val); acc ^= val; acc = acc * TK_P1 + TK_P4; return acc;
}
/* XXH64 (xxHash specification), seed 0 by our convention; explicit little-endian reads. */
static uint64_t tk_xxh64(const uint8_t *p, size_t len, uint64_t seed) {
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const uint8_t *limit = end - 32;
        uint64_t v1 = seed + TK_P1 + TK_P2, v2 = seed + TK_P2, v3 = seed, v4 = seed - TK_P1;
        do {
            v1 = tk_round(v1, tk_rd64(p)); v2 = tk_round(v2, tk_rd64(p + 8));
            v3 = tk_round(v3, tk_rd64(p + 16)); v4 = tk_round(v4, tk_rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = tk_rotl(v1, 1) + tk_rotl(v2, 7) + tk_rotl(v3, 12) + tk_rotl(v4, 18);
        h = tk_merge(h, v1); h = tk_merge(h, v2); h = tk_merge(h, v3); h = tk_merge(h, v4);
    } else {
        h = seed + TK_P5;
    }
    h += (uint64_t)len;
    while (p + 8 <= end) { h ^= tk_round(0, tk_rd64(p)); h = tk_rotl(h, 27) * TK_P1 + TK_P4; p += 8; }
    if (p + 4 <= end) { h ^= (uint64_t)tk_rd32(p) * TK_P1; h = tk_rotl(h, 23) * TK_P2 + TK_P3; p += 4; }
    while (p < end) { h ^= (uint64_t)(*p) * TK_P5; h = tk_rotl(h, 11) * TK_P1; p++; }
    h ^= h >> 33; h *= TK_P2; h ^= h >> 29; h *= TK_P3; h ^= h >> 32;
    return h;
}

#endif

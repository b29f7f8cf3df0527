/* Little-endian loads and stores of the WAL's integers (SPEC §4), byte by byte so they
   are right on either byte order and at any alignment; compilers turn each into one
   move where the CPU allows it. */
#ifndef TESSERA_BYTEORDER_H
#define TESSERA_BYTEORDER_H

#include <stdint.h>

static inline uint32_t tw_ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t tw_ld64(const uint8_t *p) {
    return (uint64_t)tw_ld32(p) | ((uint64_t)tw_ld32(p + 4) << 32);
}
static inline void tw_st32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void tw_st64(uint8_t *p, uint64_t v) {
    tw_st32(p, (uint32_t)v); tw_st32(p + 4, (uint32_t)(v >> 32));
}

#endif

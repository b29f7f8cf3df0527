/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as engine._walframe.crc32c
   documents it: the SSE4.2 crc32 instruction on x86-64 CPUs that have it (checked once,
   by tw_init), a table-driven slice-by-8 loop otherwise. Everything here is static: each
   module including it (walframe.pyx; itemcodec.pyx and logicalsum.pyx through
   itemcheck.h) has its own tables and hardware choice and calls tw_init once. */
#ifndef TESSERA_CRC32C_H
#define TESSERA_CRC32C_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "byteorder.h"

static uint32_t tw_crc_table[8][256];
static int tw_have_hw = 0;

static void tw_crc_init_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
        tw_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = tw_crc_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = tw_crc_table[0][c & 0xff] ^ (c >> 8);
            tw_crc_table[t][i] = c;
        }
    }
}

/* Slice-by-8 on the raw (pre-inverted) register. */
static uint32_t tw_crc_sw(uint32_t c, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { c = tw_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo = c ^ tw_ld32(p);
        uint32_t hi = tw_ld32(p + 4);
        c = tw_crc_table[7][lo & 0xff] ^ tw_crc_table[6][(lo >> 8) & 0xff] ^
            tw_crc_table[5][(lo >> 16) & 0xff] ^ tw_crc_table[4][lo >> 24] ^
            tw_crc_table[3][hi & 0xff] ^ tw_crc_table[2][(hi >> 8) & 0xff] ^
            tw_crc_table[1][(hi >> 16) & 0xff] ^ tw_crc_table[0][hi >> 24];
        p += 8; n -= 8;
    }
    while (n--) c = tw_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TW_HAVE_X86 1
__attribute__((target("sse4.2")))
static uint32_t tw_crc_hw(uint32_t c, const uint8_t *p, size_t n) {
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) { c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++); n--; }
    /* One dependent stream: ~8 bytes per 3 cycles (crc32q latency), plenty here. */
    while (n >= 32) {
        uint64_t a, b, d, e;
        memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&d, p + 16, 8); memcpy(&e, p + 24, 8);
        c64 = __builtin_ia32_crc32di(c64, a);
        c64 = __builtin_ia32_crc32di(c64, b);
        c64 = __builtin_ia32_crc32di(c64, d);
        c64 = __builtin_ia32_crc32di(c64, e);
        p += 32; n -= 32;
    }
    while (n >= 8) { uint64_t a; memcpy(&a, p, 8); c64 = __builtin_ia32_crc32di(c64, a); p += 8; n -= 8; }
    while (n--) c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
    return (uint32_t)c64;
}
static int tw_detect_hw(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
#else
#define TW_HAVE_X86 0
static uint32_t tw_crc_hw(uint32_t c, const uint8_t *p, size_t n) { return tw_crc_sw(c, p, n); }
static int tw_detect_hw(void) { return 0; }
#endif

/* Raw register update: callers pass ~crc in and take ~result out. */
static inline uint32_t tw_crc_raw(uint32_t c, const uint8_t *p, size_t n) {
    return tw_have_hw ? tw_crc_hw(c, p, n) : tw_crc_sw(c, p, n);
}
static inline uint32_t tw_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    return ~tw_crc_raw(~crc, p, n);
}
static void tw_init(int allow_hw) {
    tw_crc_init_tables();
    tw_have_hw = allow_hw ? tw_detect_hw() : 0;
}
static void tw_set_hw(int on) { tw_have_hw = on ? tw_detect_hw() : 0; }
static int tw_get_hw(void) { return tw_have_hw; }

#endif

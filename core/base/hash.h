/*
 * hash — the one string hash of the core's tables (router, rooms, the
 * per-address table): FNV-1a, short and good enough for keys an operator
 * or a plugin chooses. Owns nothing.
 */
#ifndef SB_HASH_H
#define SB_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t sb_hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

#endif

/*
 * table — the one hash table of the core: an open-addressing set of item
 * pointers, each slot keeping its item's hash beside it.
 *
 * It serves every keyed lookup of the core (client ids, rooms, addresses,
 * event routes). Linear probing keeps a lookup in one array; removal shifts
 * the following entries back instead of leaving tombstones, so a table that
 * sees millions of adds and removes never degrades, and a grow rehashes
 * nothing (the hash is kept). The load stays at most 3/4.
 *
 * Owns only its slot array: items belong to the caller, who also defines
 * what a key is (the `eq` function compares an item with a key). The table
 * never calls anything but `eq`, and only during a lookup or a removal.
 */
#ifndef SB_TABLE_H
#define SB_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_table_slot {
    uint64_t hash;
    void *item; /* NULL: an empty slot */
} sb_table_slot;

typedef struct sb_table {
    sb_table_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
} sb_table;

/* Whether `item` has the key `key` (whatever the caller's keys are). */
typedef bool (*sb_table_eq)(const void *item, const void *key);

/* Mixes a 64-bit integer key (such as a sequential id) so that neighbours
 * do not land in neighbouring slots. */
static inline uint64_t sb_table_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* The item with this hash and key, or NULL. Inline so that the hot lookups
 * (every message finds its route) compare keys without an indirect call. */
static inline void *sb_table_find(const sb_table *t, uint64_t hash,
                                  sb_table_eq eq, const void *key)
{
    if (!t->count)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const sb_table_slot *s = &t->slots[i];
        if (!s->item)
            return NULL;
        if (s->hash == hash && eq(s->item, key))
            return s->item;
    }
}

/* Adds an item (not NULL) under `hash`; the caller has made sure that no
 * item with its key is present. 0, or -1 when out of memory (the table is
 * then unchanged). */
int sb_table_add(sb_table *t, uint64_t hash, void *item);

/* Removes the item with this hash and key and returns it (the caller frees
 * it), or NULL when there is none. */
void *sb_table_remove(sb_table *t, uint64_t hash, sb_table_eq eq,
                      const void *key);

/* Removes every item for which `pred` returns true and returns how many.
 * `pred` may free an item it returns true for (the table never touches it
 * again); it may be asked twice about an item it kept, and must answer the
 * same. */
size_t sb_table_remove_if(sb_table *t, bool (*pred)(void *item, void *ctx),
                          void *ctx);

/* Iteration: `*pos` starts at 0; returns the next item, or NULL at the end.
 * Adding or removing during an iteration may skip or repeat items: collect
 * first, then change. */
void *sb_table_next(const sb_table *t, size_t *pos);

/* Frees the slot array (never the items) and empties the table. */
void sb_table_free(sb_table *t);

#endif

/*
 * slotset — a set of small integers (plugin instances' per-client slots),
 * a word of bits for the first 64 and grown words after.
 *
 * Knows nothing of plugins: the connections keep one per client, the
 * plugin host decides what the numbers mean.
 */
#ifndef SB_SLOTSET_H
#define SB_SLOTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The plugin instances that know of one client, by per-client slot (which
 * stays with an instance across reloads and is never reused): those whose
 * connect hook accepted it, those without a connect hook when every hook
 * accepted it, and those told of it by a reload (resume). Their disconnect
 * hooks get it; nobody else's. Kept in each client; empty is
 * all zeroes. */
typedef struct sb_slot_set {
    uint64_t low;   /* slots 0..63 */
    uint64_t *high; /* slots 64 and up, 64 per word; NULL when none */
    size_t nhigh;
} sb_slot_set;

bool sb_slot_set_has(const sb_slot_set *set, size_t slot);
/* Adds (on) or removes a slot. 0, or -1 when out of memory. */
int sb_slot_set_put(sb_slot_set *set, size_t slot, bool on);
void sb_slot_set_free(sb_slot_set *set);

#endif

/*
 * table — see table.h. Linear probing with backward-shift deletion: when an
 * entry leaves, each entry after it in the same run moves into the hole
 * unless its home slot lies between the hole and where it sits, so every
 * probe sequence stays unbroken without tombstones.
 */
#include "table.h"

#include <stdlib.h>

#define SB_TABLE_MIN_CAP 16

static void place(sb_table_slot *slots, size_t cap, uint64_t hash, void *item)
{
    size_t mask = cap - 1;
    size_t i = (size_t)hash & mask;
    while (slots[i].item)
        i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].item = item;
}

static int grow(sb_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : SB_TABLE_MIN_CAP;
    sb_table_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].item)
            place(slots, cap, t->slots[i].hash, t->slots[i].item);
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

int sb_table_add(sb_table *t, uint64_t hash, void *item)
{
    if (!item)
        return -1;
    if ((t->count + 1) * 4 > t->cap * 3 && grow(t) < 0)
        return -1;
    place(t->slots, t->cap, hash, item);
    t->count++;
    return 0;
}

/* Empties slot i and closes the gap behind it. */
static void remove_at(sb_table *t, size_t i)
{
    size_t mask = t->cap - 1;
    t->slots[i] = (sb_table_slot){0, NULL};
    t->count--;
    for (size_t j = (i + 1) & mask; t->slots[j].item; j = (j + 1) & mask) {
        size_t home = (size_t)t->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            t->slots[j] = (sb_table_slot){0, NULL};
            i = j;
        }
    }
}

void *sb_table_remove(sb_table *t, uint64_t hash, sb_table_eq eq,
                      const void *key)
{
    if (!t->count)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        void *item = t->slots[i].item;
        if (!item)
            return NULL;
        if (t->slots[i].hash == hash && eq(item, key)) {
            remove_at(t, i);
            return item;
        }
    }
}

size_t sb_table_remove_if(sb_table *t, bool (*pred)(void *item, void *ctx),
                          void *ctx)
{
    /* After a removal at i the slot is looked at again: an entry from
     * further on may have moved into it. Entries not yet looked at only
     * move back as far as the hole at i, never before it, so none is
     * missed; an entry that wrapped around from the array's start may be
     * met twice, and is kept both times. */
    size_t removed = 0;
    for (size_t i = 0; i < t->cap;) {
        void *item = t->slots[i].item;
        if (item && pred(item, ctx)) {
            remove_at(t, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

void *sb_table_next(const sb_table *t, size_t *pos)
{
    while (*pos < t->cap) {
        void *item = t->slots[(*pos)++].item;
        if (item)
            return item;
    }
    return NULL;
}

void sb_table_free(sb_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

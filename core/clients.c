/*
 * clients — linear probing keyed by a mixed id; removal shifts the following
 * entries back (no tombstones), so a table that sees millions of connects
 * and disconnects never degrades.
 */
#include "clients.h"

#include <stdlib.h>

#include "client.h"

static size_t slot_of(uint64_t id, size_t cap)
{
    /* Ids are sequential: mix them so neighbours do not cluster. */
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

static int grow(sb_client_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    sb_client **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        sb_client *c = t->slots[i];
        if (!c)
            continue;
        size_t j = slot_of(c->id, cap);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = c;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

int sb_clients_add(sb_client_table *t, sb_client *c)
{
    if ((t->count + 1) * 4 > t->cap * 3 && grow(t) < 0)
        return -1;
    size_t i = slot_of(c->id, t->cap);
    while (t->slots[i])
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = c;
    t->count++;
    return 0;
}

sb_client *sb_clients_find(const sb_client_table *t, uint64_t id)
{
    if (!t->cap || !id)
        return NULL;
    for (size_t i = slot_of(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
        sb_client *c = t->slots[i];
        if (!c || c->id == id)
            return c;
    }
}

void sb_clients_remove(sb_client_table *t, uint64_t id)
{
    if (!t->cap)
        return;
    size_t mask = t->cap - 1;
    size_t i = slot_of(id, t->cap);
    while (t->slots[i] && t->slots[i]->id != id)
        i = (i + 1) & mask;
    if (!t->slots[i])
        return;
    t->slots[i] = NULL;
    t->count--;
    /* Backward-shift: move each following entry into the hole when its
     * home slot does not lie between the hole and where it sits. */
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_of(t->slots[j]->id, t->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

void sb_clients_free(sb_client_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

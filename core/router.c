/*
 * router — an open-addressing hash table keyed by event name (FNV-1a).
 *
 * Event tables are small and read on every message, so the table favours a
 * short probe sequence in one array over pointer chasing. Removal leaves
 * tombstones (owner == NULL, event freed and set to a sentinel) that are
 * reclaimed when the table is rebuilt.
 */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

static char tombstone_mark;
#define TOMBSTONE (&tombstone_mark)

void sb_router_init(sb_router *r)
{
    memset(r, 0, sizeof(*r));
}

void sb_router_free(sb_router *r)
{
    for (size_t i = 0; i < r->cap; i++)
        if (r->slots[i].event && r->slots[i].event != TOMBSTONE)
            free(r->slots[i].event);
    free(r->slots);
    memset(r, 0, sizeof(*r));
}

static int rebuild(sb_router *r, size_t cap)
{
    sb_route *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < r->cap; i++) {
        sb_route *old = &r->slots[i];
        if (!old->event || old->event == TOMBSTONE)
            continue;
        size_t j = old->hash & (cap - 1);
        while (slots[j].event)
            j = (j + 1) & (cap - 1);
        slots[j] = *old;
    }
    free(r->slots);
    r->slots = slots;
    r->cap = cap;
    r->tombstones = 0;
    return 0;
}

const sb_route *sb_router_find(const sb_router *r, const char *event,
                               size_t len)
{
    if (r->cap == 0)
        return NULL;
    uint32_t h = sb_hash_bytes(event, len);
    size_t i = h & (r->cap - 1);
    for (;;) {
        const sb_route *s = &r->slots[i];
        if (!s->event)
            return NULL;
        if (s->event != TOMBSTONE && s->hash == h && s->event_len == len &&
            memcmp(s->event, event, len) == 0)
            return s;
        i = (i + 1) & (r->cap - 1);
    }
}

int sb_router_add(sb_router *r, const char *event, sb_plugin *owner,
                  sb_event_fn fn, void *udata, const sb_route **existing)
{
    if (!event || !*event || !fn)
        return SB_ERR_INVALID;
    size_t len = strlen(event);
    const sb_route *found = sb_router_find(r, event, len);
    if (found) {
        if (existing)
            *existing = found;
        return SB_ERR_EXISTS;
    }
    /* Keep the load (live + tombstones) under 1/2 so probes stay short. */
    if ((r->count + r->tombstones + 1) * 2 > r->cap) {
        size_t cap = r->cap ? r->cap : 16;
        while ((r->count + 1) * 2 > cap)
            cap *= 2;
        if (rebuild(r, cap) < 0)
            return SB_ERR_NOMEM;
    }
    char *copy = strdup(event);
    if (!copy)
        return SB_ERR_NOMEM;
    uint32_t h = sb_hash_bytes(event, len);
    size_t i = h & (r->cap - 1);
    while (r->slots[i].event && r->slots[i].event != TOMBSTONE)
        i = (i + 1) & (r->cap - 1);
    if (r->slots[i].event == TOMBSTONE)
        r->tombstones--;
    r->slots[i] = (sb_route){copy, len, h, owner, fn, udata, {0}};
    r->count++;
    return SB_OK;
}

size_t sb_router_remove_owner(sb_router *r, const sb_plugin *owner)
{
    size_t removed = 0;
    for (size_t i = 0; i < r->cap; i++) {
        sb_route *s = &r->slots[i];
        if (!s->event || s->event == TOMBSTONE || s->owner != owner)
            continue;
        free(s->event);
        *s = (sb_route){0};
        s->event = TOMBSTONE;
        r->tombstones++;
        r->count--;
        removed++;
    }
    return removed;
}

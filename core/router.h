/*
 * router — maps an event name to the one handler that subscribed it.
 *
 * Owns the table and copies of the names; knows plugins only as an opaque
 * owner pointer so that all routes of a plugin can be dropped in one call.
 * Lookup is by (bytes, length) so the dispatch path needs no NUL-terminated
 * copy and no allocation.
 */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <switchboard/plugin.h>

typedef struct sb_route {
    char *event; /* owned copy, NUL-terminated */
    size_t event_len;
    uint32_t hash;
    sb_plugin *owner; /* borrowed */
    sb_event_fn fn;
    void *udata;
} sb_route;

typedef struct sb_router {
    sb_route *slots; /* open addressing, linear probing; event == NULL: empty */
    size_t cap;      /* a power of two */
    size_t count;
    size_t tombstones;
} sb_router;

void sb_router_init(sb_router *r);
void sb_router_free(sb_router *r);

/* Adds a route. SB_OK, SB_ERR_EXISTS (with *existing set to the route that
 * holds the name), SB_ERR_INVALID or SB_ERR_NOMEM. */
int sb_router_add(sb_router *r, const char *event, sb_plugin *owner,
                  sb_event_fn fn, void *udata, const sb_route **existing);

/* The route for an event name, or NULL. The pointer is valid until the next
 * add or remove. */
const sb_route *sb_router_find(const sb_router *r, const char *event,
                               size_t len);

/* Removes every route owned by `owner`; returns how many. */
size_t sb_router_remove_owner(sb_router *r, const sb_plugin *owner);

#endif

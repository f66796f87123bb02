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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <switchboard/plugin.h>

#include "hash.h"
#include "table.h"

/* Upper bounds of the dispatch-time histogram (see sb_dispatch_bounds_ns). */
#define SB_DISPATCH_BUCKETS 16

/* A route's counters for /metrics, kept in the route so that the hot path
 * counts without a second lookup. They start at zero when the route is
 * added, so a reloaded plugin's events start over (a counter reset, which
 * Prometheus' rate() expects). */
typedef struct sb_route_stats {
    uint64_t received; /* messages for this event */
    uint64_t sent;     /* frames the handler's replies queued */
    uint64_t timed;    /* handler calls timed (a sample, see dispatch.c) */
    uint64_t time_ns;  /* their total time */
    uint64_t bucket[SB_DISPATCH_BUCKETS + 1]; /* per bound, then +Inf */
} sb_route_stats;

typedef struct sb_route {
    char *event; /* owned copy, NUL-terminated */
    size_t event_len;
    uint32_t hash;
    sb_plugin *owner; /* borrowed */
    sb_event_fn fn;
    void *udata;
    sb_route_stats stats; /* zeroed by sb_router_add() */
} sb_route;

typedef struct sb_router {
    sb_table t; /* event name -> sb_route, each allocated (table.h) */
} sb_router;

void sb_router_init(sb_router *r);
void sb_router_free(sb_router *r);

/* Adds a route. SB_OK, SB_ERR_EXISTS (with *existing set to the route that
 * holds the name), SB_ERR_INVALID or SB_ERR_NOMEM. */
int sb_router_add(sb_router *r, const char *event, sb_plugin *owner,
                  sb_event_fn fn, void *udata, const sb_route **existing);

/* The route for an event name, or NULL. The pointer is valid until the
 * route is removed. Inline: every message looks its event up. */
typedef struct sb_route_key {
    const char *event;
    size_t len;
} sb_route_key;

static inline bool sb_route_eq(const void *item, const void *key)
{
    const sb_route *r = (const sb_route *)item;
    const sb_route_key *k = (const sb_route_key *)key;
    return r->event_len == k->len && memcmp(r->event, k->event, k->len) == 0;
}

static inline const sb_route *sb_router_find(const sb_router *r,
                                             const char *event, size_t len)
{
    sb_route_key key = {event, len};
    return (const sb_route *)sb_table_find(&r->t, sb_hash_bytes(event, len),
                                           sb_route_eq, &key);
}

/* Iteration over every route: `*pos` starts at 0; NULL at the end. */
static inline const sb_route *sb_router_next(const sb_router *r, size_t *pos)
{
    return (const sb_route *)sb_table_next(&r->t, pos);
}

static inline size_t sb_router_count(const sb_router *r)
{
    return r->t.count;
}

/* A route's counters: the one part of a route that changes while it is in
 * the table, so they are reachable from the const route that lookups
 * return (the route itself is the router's, allocated and writable). */
static inline sb_route_stats *sb_route_stats_of(const sb_route *r)
{
    return (sb_route_stats *)&r->stats;
}

/* Removes every route owned by `owner`; returns how many. */
size_t sb_router_remove_owner(sb_router *r, const sb_plugin *owner);

/* Timing a handler costs two clock reads (~40 ns together, several per cent
 * of a pass-through message): only every SB_DISPATCH_SAMPLE-th message of
 * a route is timed. A power of two. */
#ifndef SB_DISPATCH_SAMPLE
#define SB_DISPATCH_SAMPLE 8
#endif

/* Upper bounds of the histogram's buckets, in ns, increasing. */
extern const uint64_t sb_dispatch_bounds_ns[SB_DISPATCH_BUCKETS];

static inline void sb_route_observe(sb_route_stats *st, uint64_t ns)
{
    size_t i = 0;
    while (i < SB_DISPATCH_BUCKETS && ns > sb_dispatch_bounds_ns[i])
        i++;
    st->bucket[i]++;
    st->timed++;
    st->time_ns += ns;
}

#endif

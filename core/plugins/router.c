/*
 * router — event routes in the core's table (table.h), keyed by the name's
 * FNV-1a hash. Each route is allocated on its own, so a route found by a
 * lookup stays put while other routes come and go.
 */
#include "router.h"

#include <stdlib.h>
#include <string.h>

void sb_router_init(sb_router *r)
{
    memset(r, 0, sizeof(*r));
}

static void route_free(sb_route *route)
{
    free(route->event);
    free(route);
}

void sb_router_free(sb_router *r)
{
    size_t pos = 0;
    for (sb_route *route; (route = sb_table_next(&r->t, &pos));)
        route_free(route);
    sb_table_free(&r->t);
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
    sb_route *route = calloc(1, sizeof(*route));
    char *copy = strdup(event);
    if (!route || !copy) {
        free(route);
        free(copy);
        return SB_ERR_NOMEM;
    }
    *route =
        (sb_route){copy, len, sb_hash_bytes(event, len), owner, fn, udata, {0}};
    if (sb_table_add(&r->t, route->hash, route) < 0) {
        route_free(route);
        return SB_ERR_NOMEM;
    }
    return SB_OK;
}

static bool owned_by(void *item, void *owner)
{
    sb_route *route = item;
    if (route->owner != owner)
        return false;
    route_free(route);
    return true;
}

size_t sb_router_remove_owner(sb_router *r, const sb_plugin *owner)
{
    return sb_table_remove_if(&r->t, owned_by, (void *)owner);
}

/* From a quarter of a microsecond (a pass-through handler) to a tenth of a
 * second (a handler that blocks the loop, which it must not). */
const uint64_t sb_dispatch_bounds_ns[SB_DISPATCH_BUCKETS] = {
    250,    500,    1000,   2500,    5000,    10000,   25000,    50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 100000000};

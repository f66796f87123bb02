/*
 * admission — the per-connection and per-address limits a gateway enforces:
 * the Origin allow-list, connections per IP address, and the message rate
 * (a token bucket per client).
 *
 * Owns the table of addresses with open connections. Knows nothing of lws:
 * the server asks, and acts on the answer (HTTP 403/429, an exception,
 * close 1008).
 */
#ifndef SB_ADMISSION_H
#define SB_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "table.h"

/* Whether `origin` (the request's Origin header, NULL when absent) may
 * open a connection on a gateway with this config. A request without an
 * Origin is not from a browser, so cross-site hijacking does not apply. */
bool sb_origin_allowed(const sb_server_conf *conf, const char *origin);

typedef struct sb_ip_entry {
    char ip[64];
    uint32_t hash;
    unsigned count;
} sb_ip_entry;

typedef struct sb_ip_table {
    sb_table t; /* address -> sb_ip_entry (table.h) */
} sb_ip_table;

/* Connections open from `ip` now. */
unsigned sb_ip_count(const sb_ip_table *t, const char *ip);
/* One more connection from `ip`; NULL when out of memory. */
sb_ip_entry *sb_ip_acquire(sb_ip_table *t, const char *ip);
/* One fewer; the entry is freed at zero. */
void sb_ip_release(sb_ip_table *t, sb_ip_entry *e);
void sb_ip_free(sb_ip_table *t);

/* A client's token bucket of rate_limit; all zeroes for a new client. */
typedef struct sb_rate {
    double tokens;
    uint64_t last_ms; /* when it was last refilled (0: never) */
    uint32_t strikes; /* messages dropped in a row */
} sb_rate;

/* Takes one token from the client's bucket (refilled at conf->rate_limit
 * per second up to conf->rate_burst). False when the bucket is empty. */
bool sb_rate_take(sb_rate *c, const sb_server_conf *conf, uint64_t now_ms);

#endif

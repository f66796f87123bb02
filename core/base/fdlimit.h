/*
 * fdlimit — the process's file descriptor budget.
 *
 * Owns the soft RLIMIT_NOFILE: raised at start toward the hard limit as far
 * as the configured gateways need, and the thresholds the server uses to
 * stay clear of it (so that a full process answers 503 and keeps its admin
 * listener reachable instead of failing accept() in a loop). Knows nothing
 * of sockets; never lowers a limit.
 */
#ifndef SB_FDLIMIT_H
#define SB_FDLIMIT_H

#include <stdbool.h>

#include "config.h"

/* Descriptors the process keeps for itself besides its clients: stdio, the
 * loop, signal and watch descriptors, plugin files, admin requests. */
#define SB_FD_SELF 128
/* Above (limit - SB_FD_HEADROOM) a new WebSocket client gets HTTP 503. */
#define SB_FD_HEADROOM 64
/* Above (limit - SB_FD_CUTOFF) a new connection to a gateway is closed at
 * once and the gateway listeners pause: these last descriptors are the
 * admin listener's and the process's own. */
#define SB_FD_CUTOFF 16
/* Raising to more than this costs lws 16 bytes per descriptor (its
 * descriptor tables are sized by the limit), for nothing a gateway uses. */
#define SB_FD_MAX (1UL << 20)

typedef struct sb_fdlimit {
    unsigned long soft; /* the limit in force after raise() */
    unsigned long hard;
    unsigned long needed; /* sum of max_connections + SB_FD_SELF; 0 when
                             some gateway is unlimited */
} sb_fdlimit;

/* Raises the soft limit to what cfg needs (toward the hard limit, at most
 * SB_FD_MAX; as far as it goes when some max_connections is 0) and fills
 * *out. Logs a warning, with the effective cap on clients, when the
 * gateways' max_connections do not fit. Returns true when they fit. Call
 * before the lws context is created: lws sizes its tables from the limit. */
bool sb_fdlimit_raise(const sb_config *cfg, sb_fdlimit *out);

/* The soft limit raise() left (or found), for the server's thresholds. */
unsigned long sb_fdlimit_soft(void);

#endif

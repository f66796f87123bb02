/*
 * admin — the operator's HTTP listener: /healthz, /readyz, /metrics,
 * /status and POST /reload, on the address [admin] names (127.0.0.1 by
 * default), behind an optional bearer token.
 *
 * It is one more libwebsockets vhost on the server's context, with a
 * protocol of its own that speaks plain HTTP only, so it shares the loop
 * thread with everything it reports on and reads the counters without
 * locks. It only reads the server's state (and asks reload to run); it
 * never touches clients or plugins.
 */
#ifndef SB_ADMIN_H
#define SB_ADMIN_H

#include "server.h"

/* Opens the admin listener when the config has an [admin] port (else does
 * nothing). 0, or -1 after logging why (e.g. the port is taken). Call once
 * the gateways listen. */
int sb_admin_start(sb_server *s);
/* Frees what sb_admin_start() allocated; after the lws context is gone
 * (its vhost goes with the context). */
void sb_admin_free(sb_server *s);

#endif

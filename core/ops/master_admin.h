/*
 * master_admin — the admin listener of a master (`workers` > 1), for the
 * whole machine. The master runs no lws and no event loop, so this is a
 * small blocking HTTP/1.0 server polled by the supervisor: one request per
 * connection, each bounded by a one-second deadline. It answers from the
 * workers' own admin listeners (worker k on [admin] port + k, same host and
 * token), which it asks over loopback HTTP:
 *   /healthz  200 while the master runs;
 *   /readyz   200 when every worker answers ready, else 503, a line each;
 *   /status   JSON: the master, and per worker its pid, restarts, start
 *             time and its own /status;
 *   /metrics  every worker's samples with a `worker` label, one family at
 *             a time (the Prometheus convention for processes of one job:
 *             sum() or by (worker) in the query, no double counting here);
 *   POST /reload  each worker's /reload, and the list of what each did.
 */
#ifndef SB_MASTER_ADMIN_H
#define SB_MASTER_ADMIN_H

#include <stddef.h>

#include "config.h"
#include "supervisor.h"

/* Opens the master's listener on [admin] host:port; -1 with the reason
 * in err. */
int sb_master_admin_open(const sb_admin_conf *conf, char *err, size_t errlen);

/* Serves one connection waiting on lfd (the supervisor's poll found it
 * readable). `slots` are the n workers as the master sees them. */
void sb_master_admin_serve(int lfd, const sb_admin_conf *conf,
                           const sb_worker_slot *slots, unsigned n);

#endif

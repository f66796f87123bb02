/*
 * supervisor — the master of `[server] workers = N` (N > 1): forks the
 * workers, respawns one that dies (at once if it had run for a while, with
 * a doubling delay from 100 ms to 10 s if it keeps dying within 10 s of its
 * start), forwards SIGHUP, SIGTERM and SIGINT to them and returns once every
 * worker is gone after a stop. It runs no lws, no plugins and no event loop
 * (a loop's epoll set would be shared with every child it forks): signals
 * are blocked and read from a signalfd, polled with one more descriptor
 * (the master's admin listener).
 *
 * Each worker is a child that returns from sb_supervise() with its number;
 * it dies with the master (PR_SET_PDEATHSIG: SIGTERM, its graceful stop).
 */
#ifndef SB_SUPERVISOR_H
#define SB_SUPERVISOR_H

#include <stdbool.h>
#include <sys/types.h>

/* A worker slot as the master sees it (for logs and tests). */
typedef struct sb_worker_slot {
    pid_t pid;                     /* 0 while it is not running */
    unsigned long long started_ms; /* monotonic time of its last start */
    unsigned long long due_ms;     /* when it is respawned, if pid is 0 */
    unsigned delay_ms;             /* the current backoff, 0 = none */
    unsigned restarts;             /* respawns so far */
    int last_status;               /* of its last exit (waitpid's) */
} sb_worker_slot;

typedef struct sb_supervisor_hooks {
    /* Called in the master on SIGHUP, before the signal goes to the
     * workers (e.g. to re-read the config that respawned workers start
     * from). May be NULL. */
    void (*hup)(void *ctx);
    /* A descriptor the master also waits on (its admin listener), -1 for
     * none, and what it does when it is readable. */
    int fd;
    void (*readable)(void *ctx, const sb_worker_slot *slots, unsigned n);
    void *ctx;
} sb_supervisor_hooks;

/* Runs the master for n workers. In a worker: returns 0 and sets *worker to
 * its number, 1..n, with the signal mask and handlers as they were except
 * that SIGTERM, SIGINT and SIGHUP stay blocked (see below). In the
 * master: returns, with *worker = 0, once every worker has exited after a
 * SIGTERM or SIGINT: 0 when all exited 0, else 1. A worker still running
 * shutdown_timeout_s + 5 seconds after the stop is killed (SIGKILL). */
int sb_supervise(unsigned n, unsigned shutdown_timeout_s,
                 const sb_supervisor_hooks *hooks, unsigned *worker);

/* In a worker, once its own SIGTERM, SIGINT and SIGHUP handlers are in
 * place: unblocks the three. A stop or reload that comes while the worker
 * starts (from the master, or from systemd to the whole cgroup) then waits
 * for those handlers instead of killing the worker by the default action,
 * which would make the master's stop fail (exit 1) or cost a respawn. */
void sb_supervisor_worker_signals(void);

#endif

/*
 * async — timers, thread-pool work and post() for plugins, on the one loop.
 *
 * Owns every timer handle and work request it hands out and links each to
 * its plugin, so that unloading a plugin can stop its timers, cancel or wait
 * for its work, and run its pending posts before its unload hook: after that
 * hook, no code of the plugin is ever called again. Plugin timers are
 * unreferenced: they never keep the loop (and so a stopping server) alive.
 */
#ifndef SB_ASYNC_H
#define SB_ASYNC_H

#include <switchboard/plugin.h>

#include "plugins.h"

/* Set up / tear down the post() queue of a host. */
int sb_async_init(sb_plugin_host *h);
void sb_async_close(sb_plugin_host *h);

/* Takes a plugin's asynchronous work down: stops its timers and cancels
 * its queued work at once, then, when no work of it is running any more
 * (now, or at the last completion), closes its post queue, runs its pending
 * posts and calls finalize(p). Until then it is on h->retiring, and its
 * running work may still post(). Never blocks the loop. */
void sb_async_retire(sb_plugin *p, void (*finalize)(sb_plugin *p));

/* Work items queued or running now, of every plugin, retiring ones
 * included (the drain at shutdown waits for them). */
size_t sb_async_pending(const sb_plugin_host *h);

/* Host table entries (see plugin.h). */
int sb_api_timer_start(sb_plugin *p, uint64_t delay_ms, uint64_t repeat_ms,
                       sb_timer_fn fn, void *udata, uint64_t *timer);
int sb_api_timer_stop(sb_plugin *p, uint64_t timer);
int sb_api_work_queue(sb_plugin *p, sb_work_fn work, sb_done_fn done,
                      void *udata);
int sb_api_post(sb_plugin *p, sb_post_fn fn, void *udata);

#endif

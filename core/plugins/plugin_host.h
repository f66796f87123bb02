/*
 * plugin_host — loads plugin files, checks their descriptor, runs their init
 * with the host function table, and keeps what they registered: routes (in
 * the router it owns) and lifecycle hooks.
 *
 * Owns every sb_plugin and the dlopen handles. Never touches sockets or
 * clients: it learns of clients only as ids through the hook runners below.
 */
#ifndef SB_PLUGIN_HOST_H
#define SB_PLUGIN_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include <switchboard/plugin.h>

#include <uv.h>

#include "config.h"
#include "plugins.h"
#include "router.h"
#include "slotset.h"

/* The plugin host's own entries of the host table (registration, config,
 * logging): a new host starts its table from them, and the layer above
 * adds the rest (host_table.c) before any plugin is loaded. */
extern const sb_host sb_host_table;

/* Prepares a host for `ngateways` gateways (names are borrowed for its
 * life) on `loop`. 0, or -1 when out of memory. */
int sb_plugin_host_init(sb_plugin_host *h, uv_loop_t *loop,
                        const sb_gateway_conf *gateways, size_t ngateways);

/* Loads one plugin instance: open + add. On failure returns -1 and writes
 * a one-line reason ("cannot load FILE: ...") to err; nothing of the
 * plugin remains. */
int sb_plugin_host_load(sb_plugin_host *h, const sb_plugin_conf *pc, char *err,
                        size_t errlen);
/* Loads every enabled plugin of `cfg`, in order, logging each failure.
 * Returns the number of failures that must stop the server (an optional
 * plugin only warns). With keep_going every plugin is tried, so that -t
 * reports every reason at once. Safe on any parsed config, even one with
 * problems (a section without `file` is one more failure). */
int sb_plugin_host_load_config(sb_plugin_host *h, const sb_config *cfg,
                               bool keep_going);
/* Loads a plugin file and runs its init, with its routes only staged:
 * the plugin is not serving yet. `replacing` (may be NULL) is the version
 * it will replace, whose events do not count as taken. NULL and err on
 * failure (the half-loaded plugin is retired). */
sb_plugin *sb_plugin_host_open(sb_plugin_host *h, const sb_plugin_conf *pc,
                               const sb_plugin *replacing, char *err,
                               size_t errlen);
/* Puts an opened plugin in service at the end of the list: its routes go
 * into the routers, it gets a client-state slot. 0, or -1 (out of memory). */
int sb_plugin_host_add(sb_plugin_host *h, sb_plugin *p);
/* Takes a plugin out of service for good: timers stopped, queued work
 * cancelled, and once running work is done, posts run, client data
 * released, unload hook, routes dropped, dlclose. The caller has already
 * removed it from h->plugins. */
void sb_plugin_retire(sb_plugin *p);
/* Swaps an opened new version in for `old`, in one step: old routes out,
 * new routes in, same place in the list, same client-state slot. The old
 * version is still loaded (retire it after the handover). 0, or -1 with
 * nothing changed. */
int sb_plugin_host_swap(sb_plugin_host *h, sb_plugin *old, sb_plugin *np);
/* Takes a plugin out of the list and its routes out of the routers, then
 * retires it. */
void sb_plugin_host_remove(sb_plugin_host *h, sb_plugin *p);
/* The instance name of the plugin whose per-client slot is `slot` (the
 * serving version, else a retiring one), or NULL. Borrowed. */
const char *sb_plugin_host_slot_owner(const sb_plugin_host *h, size_t slot);

/* Unloads every plugin in reverse load order (timers stopped, work drained,
 * posts run, unload hook, routes dropped, dlclose), waits (running the loop)
 * for every retiring plugin's running work, including versions retired
 * earlier by a reload, and only then frees the host and its post queue. The
 * caller runs the loop once more afterwards so closed handles are freed. */
void sb_plugin_host_free(sb_plugin_host *h);

/* Hook runners, called by the server on the loop thread. */
void sb_plugin_host_ready(sb_plugin_host *h);
/* Runs the handshake hooks of the plugins serving `gateway`, in load order.
 * Returns SB_OK, or the HTTP status (400..599) of the first refusal. */
int sb_plugin_host_handshake(sb_plugin_host *h, size_t gateway,
                             sb_handshake *hs);
/* Runs connect hooks of the plugins serving `gateway` in load order, until
 * one refuses. Puts into *seen the slots of the plugins that now know the
 * client (see sb_slot_set). Returns true when every hook accepted;
 * otherwise *refuser gets the refusing plugin. */
/* The plugin that takes the frames of raw gateway `gateway` (1.3
 * on_frame), or NULL. */
const sb_plugin *sb_plugin_host_frame_owner(const sb_plugin_host *h,
                                            size_t gateway);

bool sb_plugin_host_connect(sb_plugin_host *h, size_t gateway, sb_client_id id,
                            sb_slot_set *seen, const sb_plugin **refuser);
/* Runs, in reverse load order, the disconnect hooks of the plugins whose
 * slot is in *seen. */
void sb_plugin_host_disconnect(sb_plugin_host *h, sb_client_id id, int code,
                               const sb_slot_set *seen);
/* Runs, in load order, the session hooks (1.3, [recovery]) of the plugins
 * whose slot is in *seen, each with its state from state_of(). */
void sb_plugin_host_session_resumed(sb_plugin_host *h, sb_client_id id,
                                    sb_client_id previous, json_t *rooms,
                                    const sb_slot_set *seen,
                                    json_t *(*state_of)(sb_plugin *p,
                                                        sb_client_id id));

#endif

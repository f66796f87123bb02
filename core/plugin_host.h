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
#include "router.h"

struct sb_timer;
struct sb_work;
struct sb_post;

/* The plugin instances that know of one client, by per-client slot (which
 * stays with an instance across reloads and is never reused): those whose
 * connect hook accepted it, those without a connect hook when every hook
 * accepted it, and those told of it by a reload (resume). Their disconnect
 * hooks get it; nobody else's. Kept by the server in each client; empty is
 * all zeroes. */
typedef struct sb_slot_set {
    uint64_t low;   /* slots 0..63 */
    uint64_t *high; /* slots 64 and up, 64 per word; NULL when none */
    size_t nhigh;
} sb_slot_set;

bool sb_slot_set_has(const sb_slot_set *set, size_t slot);
/* Adds (on) or removes a slot. 0, or -1 when out of memory. */
int sb_slot_set_put(sb_slot_set *set, size_t slot, bool on);
void sb_slot_set_free(sb_slot_set *set);

/* A route registered during init, put in the routers only once the plugin
 * is accepted (and, for a reload, when the old version's are taken out). */
typedef struct sb_staged_route {
    char *event;
    sb_event_fn fn;
    void *udata;
} sb_staged_route;

/* What a plugin file was when loaded: a change means a new build. */
typedef struct sb_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_s, mtime_ns;
} sb_file_id;

struct sb_plugin {
    struct sb_plugin_host *host;
    char *name;         /* instance name, [plugin.NAME] */
    char *file;         /* path it was loaded from */
    sb_config_kv *keys; /* owned copy of its config section */
    size_t nkeys;
    uint64_t gateways;   /* bit g set: serves gateway g */
    size_t slot;         /* index of its per-client slot (sb_client.slots) */
    void *dl;            /* dlopen handle */
    int image_fd;        /* the memfd it was loaded from (fallback), or -1 */
    char image_name[96]; /* "sb:NAME:gGEN" (memfd) or the copy's file name */
    char *image_path;    /* the private copy it was loaded from, or NULL */
    sb_file_id file_id;
    const sb_plugin_desc *desc;
    uint64_t generation;   /* 1, then +1 per reload of this instance */
    uint64_t loaded_at_ms; /* ms since the epoch */
    const struct sb_plugin *replacing; /* during a reload's init */
    sb_staged_route *staged;
    size_t nstaged;
    bool serving;         /* was added to the host (has a client slot) */
    bool released;        /* its client data was already released */
    bool handed_over;     /* replaced: its clients' JSON state stays */
    bool announce_unload; /* log the unload (not for a refused load) */
    bool in_init;         /* registrations are allowed */
    bool unloading;       /* retired: no new timers or work (async.c) */
    bool posts_closed;    /* drained: no new posts (under post_lock) */
    bool conflict;        /* a subscribe hit an event owned elsewhere */
    char **asked;         /* keys its init looked up (config getters) */
    size_t nasked;
    char error[512]; /* why init failed, from plugin_error() */
    sb_ready_fn ready;
    void *ready_ud;
    sb_connect_fn connect;
    void *connect_ud;
    sb_disconnect_fn disconnect;
    void *disconnect_ud;
    sb_unload_fn unload;
    void *unload_ud;
    sb_handshake_fn handshake;
    void *handshake_ud;
    sb_guard_fn guard;
    void *guard_ud;
    sb_export_fn export_state;
    void *export_state_ud;
    sb_import_fn import_state;
    void *import_state_ud;
    sb_resume_fn resume;
    void *resume_ud;
    void (*on_drained)(struct sb_plugin *p); /* async.c: retire() */
    struct sb_timer *timers;                 /* live timers (async.c) */
    struct sb_work *work; /* queued or running work (async.c) */
    uint64_t next_timer_id;
    struct sb_plugin *retiring_next; /* on the host's retiring list */
};

typedef struct sb_plugin_host {
    uv_loop_t *loop;
    sb_router *routers; /* one per gateway */
    const sb_gateway_conf *gateways;
    size_t ngateways;
    sb_plugin **plugins; /* in load (config) order */
    size_t count;
    size_t next_slot;
    /* Taken out of service, waiting for their running work before they
     * unload (async.c): replaced or removed versions, and every plugin at
     * shutdown. Nothing the host owns may be torn down while one is here. */
    sb_plugin *retiring;
    size_t work_pending; /* work items queued or running, of every plugin */
    bool strict_files;   /* check plugin files like sshd's StrictModes */
    /* post(): the one thread-safe entry (async.c) */
    uv_async_t post_async;
    uv_mutex_t post_lock;
    struct sb_post *posts, *posts_tail;
    bool post_closed;
} sb_plugin_host;

/* The table handed to every plugin. */
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

static inline bool sb_plugin_serves(const sb_plugin *p, size_t gateway)
{
    return (p->gateways >> gateway) & 1u;
}

/* Hook runners, called by the server on the loop thread. */
void sb_plugin_host_ready(sb_plugin_host *h);
/* Runs the handshake hooks of the plugins serving `gateway`, in load order.
 * Returns SB_OK, or the HTTP status (400..599) of the first refusal. */
int sb_plugin_host_handshake(sb_plugin_host *h, size_t gateway,
                             sb_handshake *hs);
/* Runs the event guards of the plugins serving the message's gateway, up
 * to the first that denies: returns non-zero or calls fail() (its message
 * recorded in the message). Returns that guard's status, *denier being its
 * plugin (NULL when none denied). */
int sb_plugin_host_guard(sb_plugin_host *h, size_t gateway, sb_message *m,
                         const sb_plugin **denier);
/* Runs connect hooks of the plugins serving `gateway` in load order, until
 * one refuses. Puts into *seen the slots of the plugins that now know the
 * client (see sb_slot_set). Returns true when every hook accepted;
 * otherwise *refuser gets the refusing plugin. */
bool sb_plugin_host_connect(sb_plugin_host *h, size_t gateway, sb_client_id id,
                            sb_slot_set *seen, const sb_plugin **refuser);
/* Runs, in reverse load order, the disconnect hooks of the plugins whose
 * slot is in *seen. */
void sb_plugin_host_disconnect(sb_plugin_host *h, sb_client_id id, int code,
                               const sb_slot_set *seen);

#endif

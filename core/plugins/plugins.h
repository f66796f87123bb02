/*
 * plugins — the plugins layer's data: one loaded plugin instance (sb_plugin)
 * and the host that holds them all. Only structs, shared by plugin_host.c
 * (loading, hooks, retiring) and async.c (timers, work, posts), and read
 * by the layers above; the code that changes them is in those two files.
 */
#ifndef SB_PLUGINS_H
#define SB_PLUGINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/plugin.h>
#include <uv.h>

#include "config.h"
#include "router.h"

struct sb_timer;
struct sb_work;
struct sb_post;

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
    sb_frame_fn frame; /* 1.3: a raw gateway's messages */
    void *frame_ud;
    sb_session_fn session_resumed; /* 1.3: [recovery] */
    void *session_resumed_ud;
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
    sb_host table; /* handed to every plugin: sb_host_table + the rest */
    /* Set by the layer that keeps per-client data for plugins: releases
     * plugin p's data in every client before p unloads (keep_state: its
     * JSON state stays for the version that replaced it). May be NULL. */
    void (*release_clients)(const sb_plugin *p, bool keep_state);
} sb_plugin_host;

static inline bool sb_plugin_serves(const sb_plugin *p, size_t gateway)
{
    return (p->gateways >> gateway) & 1u;
}

#endif

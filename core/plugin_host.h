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

#include "config.h"
#include "router.h"

struct sb_plugin {
    struct sb_plugin_host *host;
    char *name;         /* instance name, [plugin.NAME] */
    char *file;         /* path it was loaded from */
    sb_config_kv *keys; /* owned copy of its config section */
    size_t nkeys;
    void *dl; /* dlopen handle */
    const sb_plugin_desc *desc;
    bool in_init;    /* registrations are allowed */
    bool conflict;   /* a subscribe hit an event owned elsewhere */
    char error[512]; /* why init failed, from plugin_error() */
    sb_ready_fn ready;
    void *ready_ud;
    sb_connect_fn connect;
    void *connect_ud;
    sb_disconnect_fn disconnect;
    void *disconnect_ud;
    sb_unload_fn unload;
    void *unload_ud;
};

typedef struct sb_plugin_host {
    sb_router router;
    sb_plugin **plugins; /* in load (config) order */
    size_t count;
} sb_plugin_host;

/* The table handed to every plugin. */
extern const sb_host sb_host_table;

void sb_plugin_host_init(sb_plugin_host *h);

/* Loads one plugin instance. On failure returns -1 and writes a one-line
 * reason ("cannot load FILE: ...") to err; nothing of the plugin remains. */
int sb_plugin_host_load(sb_plugin_host *h, const sb_plugin_conf *pc, char *err,
                        size_t errlen);

/* Unloads every plugin in reverse load order (unload hook, routes dropped,
 * dlclose) and frees the host. */
void sb_plugin_host_free(sb_plugin_host *h);

/* Hook runners, called by the server on the loop thread. */
void sb_plugin_host_ready(sb_plugin_host *h);
/* Runs connect hooks in load order. Returns the number of plugins whose hook
 * ran before a refusal, or h->count when every hook accepted; *refuser gets
 * the refusing plugin (or NULL). */
size_t sb_plugin_host_connect(sb_plugin_host *h, sb_client_id id,
                              const sb_plugin **refuser);
/* Runs disconnect hooks of the first `upto` plugins (the value connect
 * returned), in reverse order. */
void sb_plugin_host_disconnect(sb_plugin_host *h, sb_client_id id, int code,
                               size_t upto);

#endif

/*
 * reload — new handler code and config while every client stays connected.
 *
 * Owns the plan (old config vs new: plugins added, removed, changed, and
 * server settings that need a restart), the file watches, and the swap of
 * one plugin for its new build. Loading, staging and retiring plugins are
 * the plugin host's; reload decides when and in what order.
 *
 * Guarantees: a config that does not parse changes nothing; a plugin whose
 * new build fails to load or init keeps its old version serving; the swap
 * happens inside one loop callback, so every message is handled by exactly
 * one version; the old version is unloaded only when nothing of it can run.
 */
#ifndef SB_RELOAD_H
#define SB_RELOAD_H

#include <jansson.h>

#include "plugin_host.h"
#include "server.h"

/* Starts SIGHUP handling and the file watches of plugins with watch = true
 * (or [server] watch). 0, or -1. */
int sb_reload_start(sb_server *s);
/* Stops them (at shutdown) and frees the reloader. */
void sb_reload_stop(sb_server *s);

/* Re-reads the config file and applies every change. Returns the number
 * of failures (0: all applied). *summary (may be NULL) gets a new JSON
 * object describing what happened; the caller owns it. */
int sb_reload_run(sb_server *s, json_t **summary);

#endif

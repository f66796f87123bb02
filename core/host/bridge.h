/*
 * bridge — joins the connections to the plugins: the hooks the server
 * calls up through (handshakes, connects, disconnects, messages, the
 * drain), implemented with the plugin host, dispatch and the host API.
 *
 * The only place where "a client did X" becomes "these plugins hear of it".
 */
#ifndef SB_BRIDGE_H
#define SB_BRIDGE_H

#include "conn.h"
#include "plugin_host.h"

/* The hooks that serve `ph`'s plugins; `ph` must outlive the server. */
sb_server_hooks sb_bridge_hooks(sb_plugin_host *ph);

/* Wires the plugin host to the host layer before any plugin loads: the
 * host API's entries of the table and the release of per-client data. */
void sb_bridge_plugin_host(sb_plugin_host *ph);

/* Frees the host layer's reused buffers (after the server is freed). */
void sb_bridge_cleanup(void);

#endif

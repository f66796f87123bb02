/*
 * server — the libwebsockets listener on the libuv loop, and the connection
 * lifecycle: handshake checks, message reassembly, the once-per-loop-turn
 * flush of every client's send queue, keepalive, and graceful shutdown.
 *
 * Owns the loop handles, the lws context and every sb_client. Hands complete
 * messages to dispatch; never interprets their content itself.
 */
#ifndef SB_SERVER_H
#define SB_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "client.h"
#include "conn.h"

/* Creates the listener on `loop`. Returns 0, or -1 after logging why (e.g.
 * the port is taken). */
int sb_server_start(sb_server *s, const sb_config *cfg,
                    const sb_server_hooks *hooks, uv_loop_t *loop);
/* Under workers: the next sb_server_start() creates its gateways' vhosts
 * without listening and accepts on these sockets instead (fds[i] for the
 * i-th distinct listener, sb_listen_distinct()), handing each connection
 * to lws with lws_adopt_socket_vhost(). The server owns them from then on
 * and closes them when it stops accepting. */
void sb_server_inherit_listeners(const int *fds, size_t n);
/* The port gateway g listens on (0 before the server started). */
int sb_server_gateway_port(const sb_server *s, size_t g);
/* Begins a graceful stop: refuse new clients, close every client with 1001,
 * then destroy the listener so that uv_run() returns. Idempotent. */
void sb_server_stop(sb_server *s);
/* Frees what remains after uv_run() returned. */
void sb_server_free(sb_server *s);

/* The handshake as captured at the upgrade (the one place that reads the
 * block server.c writes): path, query, the peer's address, then headers. */
typedef struct sb_handshake_view {
    const char *path, *query, *remote;
    /* Per header its lws token number (one byte), then value\0; NULL
     * when none. */
    const char *headers, *end;
} sb_handshake_view;
/* Fills v. False when nothing was kept: then "" path and query, "?" for
 * the address and no headers. */
bool sb_client_handshake(const sb_client *c, sb_handshake_view *v);
/* The next header after *pos (NULL: the first); false after the last. */
bool sb_handshake_next_header(const sb_handshake_view *v, const char **pos,
                              const char **name, const char **value);
/* The peer's address as captured at the upgrade ("?" if unknown). */
const char *sb_client_remote(const sb_client *c);

/* The peer's address as text, an IPv4-mapped IPv6 address shown as IPv4. */
void sb_peer_address(struct lws *wsi, char *buf, size_t len);

#endif

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
#include "clients.h"
#include "admission.h"
#include "rooms.h"
#include "config.h"
#include "metrics.h"
#include "plugin_host.h"

struct lws_context;
struct lws_vhost;

typedef struct sb_stats {
    uint64_t connections_total;
    uint64_t messages_received;
    uint64_t messages_sent;
    uint64_t unknown_events;
    uint64_t exceptions;
    uint64_t reloads_ok;        /* plugins (re)loaded, added or removed */
    uint64_t reloads_failed;    /* attempts that left the old state */
    uint64_t reloads_unchanged; /* reloads that found nothing to apply */
    uint64_t exceptions_by[SB_EXC_COUNT]; /* by reason (metrics.h) */
    uint64_t fd_refused;    /* connections refused near the fd limit */
    uint64_t accept_pauses; /* times the listeners stopped accepting */
    uint64_t budget_closes; /* clients closed for send_queue_budget */
} sb_stats;

/* Counters of one gateway, for /metrics. Fixed-size on the server (as
 * many as there can be gateways), so counting needs no allocation. */
typedef struct sb_gateway_stats {
    uint64_t connections_total;
    uint64_t unrouted; /* messages no handler got: bad or unknown */
    uint64_t sent;     /* every frame queued to its clients */
    uint64_t replies;  /* of those, handlers' replies (also per route) */
} sb_gateway_stats;

/* A handshake accepted by the hooks, waiting for lws to establish it. */
typedef struct sb_pending {
    struct lws *wsi;
    size_t gateway;
    json_t *identity;
} sb_pending;

typedef struct sb_server {
    const sb_config *config; /* borrowed; outlives the server */
    sb_plugin_host *plugins; /* borrowed */
    uv_loop_t *loop;
    struct lws_context *lws;
    /* One vhost per distinct host:port; gateways sharing a port are told
     * apart by path. listener_of[g] is gateway g's vhost index. */
    struct lws_vhost **vhosts;
    size_t nvhosts;
    size_t *listener_of;
    unsigned *gateway_clients;  /* connected clients per gateway */
    uv_check_t flush_check;     /* writes dirty send queues once per turn */
    uv_prepare_t flush_prepare; /* ...and what was queued before the poll */
    uv_signal_t sig_int, sig_term, sig_hup;
    struct sb_reloader *reloader; /* reload.c */
    uv_timer_t sweep_timer;       /* idle timeout */
    uv_timer_t shutdown_timer;    /* bounds the close handshakes */
    uv_timer_t trim_timer;        /* returns freed memory after closes */
    sb_client *clients;           /* all connected clients */
    sb_client_table table;        /* the same, by id */
    sb_rooms rooms;
    sb_ip_table ips;        /* open connections per address (admission.c) */
    bool track_ips;         /* some gateway has max_connections_per_ip */
    sb_client *dirty;       /* clients with queued frames */
    size_t send_bytes;      /* all send queues plus what lws holds of them */
    bool shedding;          /* closing the largest queues (send_queue_budget) */
    unsigned long fd_limit; /* the descriptor limit (fdlimit.c) */
    uv_timer_t accept_timer;              /* ends a pause of the listeners */
    struct sb_listen_watch *listen_watch; /* lws' listen sockets' polls */
    size_t nlisten_watch;
    bool accept_paused;
    sb_pending *pending; /* accepted handshakes not yet established */
    size_t npending, pending_cap;
    unsigned nclients;
    sb_client_id next_id;
    bool stopping;
    uint64_t stop_deadline_ms; /* loop time when the drain gives up */
    bool destroyed;
    int exit_code;
    sb_stats stats;
    sb_gateway_stats gateway_stats[SB_MAX_GATEWAYS];
    struct sb_admin *admin; /* admin.c; NULL without [admin] port */
} sb_server;

/* The server being served (one per process), or NULL. Host calls that
 * take a client id find clients through it. */
extern sb_server *sb_server_instance;

/* Creates the listener on `loop`. Returns 0, or -1 after logging why (e.g.
 * the port is taken). */
int sb_server_start(sb_server *s, const sb_config *cfg, sb_plugin_host *ph,
                    uv_loop_t *loop);
/* Begins a graceful stop: refuse new clients, close every client with 1001,
 * then destroy the listener so that uv_run() returns. Idempotent. */
void sb_server_stop(sb_server *s);
/* Frees what remains after uv_run() returned. */
void sb_server_free(sb_server *s);

/* The settings of the gateway a client came through. */
static inline const sb_server_conf *sb_client_conf(const sb_client *c)
{
    return &c->server->config->gateways[c->gateway].conf;
}

/* The peer's address as captured at the upgrade ("?" if unknown). */
const char *sb_client_remote(const sb_client *c);

/* The peer's address as text, an IPv4-mapped IPv6 address shown as IPv4. */
void sb_peer_address(struct lws *wsi, char *buf, size_t len);

/* For client.c: the client has frames to write this loop turn. */
void sb_server_mark_dirty(sb_client *c);
/* Closes a client with a code and reason (sent after what is queued). */
void sb_server_close_client(sb_client *c, int code, const char *reason);
/* Closes a client whose queue must go (max_send_queue, send_queue_budget):
 * what it has not taken is dropped at once; the close frame is sent when
 * the socket can take it, else the connection is dropped (`code` for the
 * hooks). */
void sb_server_drop_queue(sb_client *c, int code, const char *reason);
/* For client.c: the total went over send_queue_budget. */
void sb_server_over_budget(struct sb_server *s);

#endif

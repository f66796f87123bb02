/*
 * conn — the connections layer's data: one client, the server that holds
 * them all, and their counters. Only structs, shared by the files of this
 * layer (server.c, client.c) and read by the layers above; the code that
 * changes them is in server.c (lifecycle) and client.c (send queues).
 *
 * The layers above reach in only through the sb_server_hooks the server
 * calls; nothing here includes a header of theirs.
 */
#ifndef SB_CONN_H
#define SB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <switchboard/plugin.h>
#include <uv.h>

#include "admission.h"
#include "buf.h"
#include "clients.h"
#include "config.h"
#include "exceptions.h"
#include "rooms.h"
#include "slotset.h"

/* Reassembly and send buffers bigger than this are freed after use rather
 * than kept for the next message, so one large message does not pin memory
 * on an otherwise quiet connection. */
#define SB_KEEP_BUFFER_MAX (64 * 1024)

struct lws;
struct lws_context;
struct lws_vhost;
struct sb_server;
struct sb_plugin_host;
struct sb_client_slot;
struct sb_admin;
struct sb_recovery_live;
struct sb_wsio;
struct sb_wsio_shared;

typedef struct sb_client {
    sb_client_id id; /* first: the client table reads only this */
    /* Who reads and writes its socket: lws (wsi) until the server takes the
     * connection over after the upgrade (wsio.c; wsi is then NULL), or for
     * its whole life over TLS. */
    struct lws *wsi;
    struct sb_wsio *io;
    struct sb_server *server;                  /* the server it belongs to */
    struct sb_client *prev, *next;             /* all clients */
    struct sb_client *dirty_prev, *dirty_next; /* queued, not yet written */
    sb_buf rx;         /* fragments of a message being reassembled */
    size_t rx_checked; /* of a text message's fragments: bytes known UTF-8 */
    sb_buf tx;         /* LWS_PRE bytes of headroom, then frames */
    sb_slot_set seen;  /* plugins whose disconnect hooks it reaches */
    uint64_t last_active_ms;   /* loop time of the last message received */
    uint64_t last_heard_ms;    /* ...of any frame, pongs too (keepalive) */
    uint64_t ping_sent_ms;     /* our unanswered ping, 0 if none */
    uint64_t stalled_since_ms; /* the kernel took none of our bytes since */
    uint64_t acked_bytes;      /* the peer's TCP acks when last looked at */
    size_t lws_held;           /* bytes of our last write lws may still hold */
    union {
        /* While lws reads it: the bytes lws has read of it that the server
         * can account for (the upgrade request, then every frame lws
         * handed over; UINT64_MAX until the first look), and the payload
         * of a frame lws has yet to hand over. The takeover needs the
         * kernel's count to match. */
        struct {
            uint64_t read;
            uint64_t frame_left;
        } lws;
        /* Once taken over: loop time when a close under way gives up
         * waiting for the client's answer (0: none under way). */
        uint64_t close_by_ms;
    } path;
    size_t accounted;             /* what it adds to the server's send_bytes */
    sb_room_links rooms;          /* the rooms it is in (rooms.c) */
    struct sb_client_slot *slots; /* per plugin slot, grown on demand */
    json_t *identity;             /* attached by a handshake hook, owned */
    /* The handshake as the client sent it, captured at the upgrade (lws
     * frees its header table afterwards): "path\0query\0remote\0" then
     * per header its lws token number in one byte and "value\0" (server.c
     * has the names). NULL when there was none to keep. */
    char *handshake;
    char *subprotocol;      /* the one agreed at the upgrade, or NULL; owned */
    struct sb_ip_entry *ip; /* its address's entry (admission.c), or NULL */
    sb_rate rate;           /* token bucket of rate_limit (admission.c) */
    /* Its session token and first-message flag ([recovery], owned by
     * host/recovery.c), NULL without recovery. */
    struct sb_recovery_live *recovery;
    /* The small fields together, so that the record has no padding: it is
     * part of every idle connection's memory. */
    uint32_t handshake_len;
    uint32_t gateway; /* index into the config's gateways */
    uint32_t nslots;
    int close_code;      /* code we closed with (0: none yet) */
    int peer_close_code; /* code the client sent, 0 if none */
    bool rx_binary;
    bool rx_fragmented; /* the message came in more than one frame */
    /* The reply to a fragmented message waits for a WRITEABLE callback, so
     * that a pong lws owes for a ping among its fragments goes first. */
    bool defer_flush;
    bool dirty;      /* on the server's dirty list */
    bool closing;    /* a close is under way: queue nothing more */
    bool accepted;   /* connect hooks ran */
    bool close_sent; /* our close frame is queued or sent */
    bool killed;     /* dropped without a close handshake */
    /* Taken over: the kernel refused part of the queue; the rest waits for
     * the socket to take it (the head frame may be half written). */
    bool tx_blocked;
    bool lws_msg_open; /* lws handed over a frame without FIN */
    uint8_t takeover;  /* SB_TAKEOVER_* (server.c) */
} sb_client;

_Static_assert(offsetof(sb_client, id) == 0,
               "clients.c reads a client's id at its start");

/* The handshake being decided: lives on the server's stack for the hooks. */
struct sb_handshake {
    struct lws *wsi;
    size_t gateway;
    const char *gateway_name;
    char path[1024];
    char query[1024];
    char remote[64];
    json_t *identity;   /* owned until handed to the client */
    char scratch[4096]; /* values handed to hooks live here */
    size_t used;
};

typedef struct sb_stats {
    uint64_t connections_total;
    uint64_t messages_received;
    uint64_t messages_sent;
    uint64_t unknown_events;
    uint64_t exceptions;
    uint64_t reloads_ok;        /* plugins (re)loaded, added or removed */
    uint64_t reloads_failed;    /* attempts that left the old state */
    uint64_t reloads_unchanged; /* reloads that found nothing to apply */
    uint64_t exceptions_by[SB_EXC_COUNT]; /* by reason (exceptions.h) */
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
    char *subprotocol; /* agreed (owned), or NULL */
} sb_pending;

/* What the connections call up through: the layers above hand these
 * down (main wires them), so nothing here includes or calls them. Every
 * hook gets `ctx` first; a NULL hook is skipped. */
typedef struct sb_server_hooks {
    void *ctx;
    /* A handshake of `gateway`, before it is answered: SB_OK, or an HTTP
     * status (401, 403, 429...) that refuses it. */
    int (*handshake)(void *ctx, size_t gateway, sb_handshake *hs);
    /* A client is established. Returns NULL, or the name of whoever
     * refused it (it is then closed with 1008). */
    const char *(*connect)(void *ctx, sb_client *c);
    /* A client that connect() saw is gone, with its close code; its rooms
     * and state are still there. */
    void (*disconnect)(void *ctx, sb_client *c, int code);
    /* After disconnect and after it left its rooms: release what the
     * layers above keep for it. Called for every established client. */
    void (*forget)(void *ctx, sb_client *c);
    /* A complete message. Nonzero when it was text that is not UTF-8
     * (the client is then closed with 1007). */
    int (*message)(void *ctx, sb_client *c, const char *buf, size_t len,
                   bool text);
    /* Before the listeners open, and when the drain is over (or the start
     * failed): what must live exactly as long as the serving does. */
    void (*starting)(void *ctx, struct sb_server *s);
    void (*stopped)(void *ctx, struct sb_server *s);
    /* Units of work still queued or running above: the drain at shutdown
     * waits for them (up to shutdown_timeout). */
    size_t (*pending_work)(void *ctx);
} sb_server_hooks;

typedef struct sb_server {
    const sb_config *config;        /* borrowed; outlives the server */
    sb_server_hooks hooks;          /* the layers above (main wires them) */
    struct sb_plugin_host *plugins; /* borrowed, for those layers only */
    uv_loop_t *loop;
    struct lws_context *lws;
    /* One vhost per distinct host:port; gateways sharing a port are told
     * apart by path. listener_of[g] is gateway g's vhost index. */
    struct lws_vhost **vhosts;
    size_t nvhosts;
    /* Each vhost's protocol list: "switchboard" and the subprotocols of
     * its gateways (lws picks among them by name). */
    struct lws_protocols **vhost_protocols;
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
    unsigned long fd_base;  /* descriptors held before any client */
    unsigned lws_conns;     /* connections lws holds (its wsis) */
    uv_timer_t accept_timer;              /* ends a pause of the listeners */
    struct sb_listen_watch *listen_watch; /* lws' listen sockets' polls */
    size_t nlisten_watch;
    bool accept_paused;
    /* Under workers: the inherited SO_REUSEPORT sockets this process
     * accepts on itself (one per vhost; server.c), else NULL. */
    struct sb_adopt_listener *adopt;
    size_t nadopt;
    /* Listener v's own lws context on the same loop, or NULL when it is
     * in `lws`: under workers every listener but the first, in one process
     * one on the port of an earlier listener (another host). lws 4.1.6
     * picks a request's vhost among those of a context on the same port by
     * Host header, falling back to the first one (server.c,
     * create_listeners()). */
    struct lws_context **listener_lws;
    /* The own data path (wsio.c): the loop's read buffer and the closes
     * under way; NULL when libwebsockets reads every connection. */
    struct sb_wsio_shared *wsio;
    /* Clients to take over from lws at this loop turn's check: just
     * established, or lws just handed a whole frame of theirs over. By id. */
    sb_client_id *takeover;
    size_t ntakeover, takeover_cap;
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

/* The settings of the gateway a client came through. */
static inline const sb_server_conf *sb_client_conf(const sb_client *c)
{
    return &c->server->config->gateways[c->gateway].conf;
}
#endif

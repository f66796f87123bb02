/*
 * client — one WebSocket connection: its id, the bytes of a message being
 * reassembled, and its send queue of ready-made frames.
 *
 * Replies are framed here (server frames are unmasked) and appended to the
 * client's queue; the queue is written by the server once per loop turn, in
 * one raw write, so a burst of replies costs one syscall. The struct lives in
 * libwebsockets' per-session memory; nothing here calls libwebsockets.
 */
#ifndef SB_CLIENT_H
#define SB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/plugin.h>

#include "buf.h"
#include "plugin_host.h"

struct lws;
struct sb_server;

/* WebSocket opcodes used by the server. */
#define SB_WS_TEXT   0x1
#define SB_WS_BINARY 0x2
#define SB_WS_CLOSE  0x8
#define SB_WS_PING   0x9

typedef struct sb_client {
    sb_client_id id;
    struct lws *wsi;
    struct sb_server *server;
    struct sb_client *prev, *next;             /* all clients */
    struct sb_client *dirty_prev, *dirty_next; /* queued, not yet written */
    sb_buf rx; /* fragments of a message being reassembled */
    bool rx_binary;
    sb_buf tx;                  /* LWS_PRE bytes of headroom, then frames */
    bool dirty;                 /* on the server's dirty list */
    bool closing;               /* a close is under way: queue nothing more */
    bool accepted;              /* connect hooks ran */
    sb_slot_set seen;           /* plugins whose disconnect hooks it reaches */
    int close_code;             /* code we closed with (0: none yet) */
    bool close_sent;            /* our close frame is queued or sent */
    bool killed;                /* dropped without a close handshake */
    int peer_close_code;        /* code the client sent, 0 if none */
    uint64_t last_active_ms;    /* loop time of the last message received */
    uint64_t last_heard_ms;     /* ...of any frame, pongs too (keepalive) */
    uint64_t ping_sent_ms;      /* our unanswered ping, 0 if none */
    uint64_t stalled_since_ms;  /* the kernel took none of our bytes since */
    uint64_t acked_bytes;       /* the peer's TCP acks when last looked at */
    size_t lws_held;            /* bytes of our last write lws may still hold */
    size_t accounted;           /* what it adds to the server's send_bytes */
    uint32_t gateway;           /* index into the config's gateways */
    struct sb_room_link *rooms; /* the rooms it is in (rooms.c) */
    uint32_t nrooms, rooms_cap;
    struct sb_client_slot *slots; /* per plugin slot, grown on demand */
    uint32_t nslots;
    json_t *identity; /* attached by a handshake hook, owned */
    /* The handshake as the client sent it, captured at the upgrade (lws
     * frees its header table afterwards): "path\0query\0remote\0" then
     * "name\0value\0" per header. NULL when there was none to keep. */
    char *handshake;
    size_t handshake_len;
    struct sb_ip_entry *ip; /* its address's entry (admission.c), or NULL */
    double rate_tokens;     /* token bucket of rate_limit */
    uint64_t rate_last_ms;
    uint32_t rate_strikes; /* messages dropped in a row */
} sb_client;

/* What a plugin keeps for a client (host table: client_state/data). */
typedef struct sb_client_slot {
    json_t *state;
    void *data;
    sb_destroy_fn destroy;
} sb_client_slot;

/* Starts a frame in the send queue and returns the offset of its payload;
 * the caller appends the payload to c->tx and then calls
 * sb_client_frame_end(). -1 when out of memory or the client is closing. */
long sb_client_frame_begin(sb_client *c);
/* Finishes the frame whose payload starts at `start`: writes its header and
 * marks the client dirty. Returns SB_OK, SB_ERR_LIMIT when the queue went
 * over max_send_queue (the client is then closed with 1008). */
int sb_client_frame_end(sb_client *c, long start, int opcode);
/* Brings the server's total of queued bytes up to date with this client's
 * queue and what lws holds of it; returns that total. */
size_t sb_client_account(sb_client *c);
/* Drops a half-built frame (after an error while appending its payload). */
void sb_client_frame_abort(sb_client *c, long start);
/* Queues one whole text frame holding `len` bytes of `payload`. */
int sb_client_send_text(sb_client *c, const char *payload, size_t len);
/* Queues bytes that already are whole frames (a broadcast framed once). */
int sb_client_send_frames(sb_client *c, const char *frames, size_t len);

/* Size of the header of a server frame carrying `len` payload bytes. */
size_t sb_ws_header_len(size_t len);
/* Writes that header to out (at most 10 bytes); returns its length. */
size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len);

#endif

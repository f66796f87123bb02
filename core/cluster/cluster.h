/*
 * cluster — the link to the broker of a [cluster]: Redis, through hiredis
 * on our own uv loop.
 *
 * Owns two connections (commands, and subscriptions: hiredis 0.14 cannot
 * mix them), their connect and command deadlines (uv timers: hiredis 0.14
 * has none), reconnection with jittered backoff, the channels this node
 * subscribes to (one per room while it has local members, its own node
 * channel, the broadcast channel), the node's heartbeat and presence keys,
 * and the broker's counters. Messages from other nodes are delivered to
 * local clients here (net layer); what plugins call goes through the host
 * layer, which calls down into this. With [recovery] (sb_cluster_history):
 * the append script of history rooms, each room's last delivered (epoch,
 * offset) with gap fills from the stream or sb:resync, the rooms'
 * positions for joiners, and the clients held during a resume.
 *
 * Without a [cluster] section none of this exists: sb_cluster_instance is
 * NULL and the host layer takes its single-process paths unchanged.
 *
 * Keys and channels (PREFIX is [cluster] prefix, "sb:" by default):
 *   PREFIX node_seq          INCR at start: the node number
 *   PREFIX alive:N           the heartbeat of node N (PX node_ttl)
 *   PREFIX m:ROOM:N          SET of node N's clients in ROOM
 *   PREFIX mn:ROOM           SET of the nodes with members in ROOM
 *   PREFIX nr:N              SET of the rooms node N registered
 *   channel PREFIX r:ROOM    room messages; PREFIX b broadcasts;
 *   channel PREFIX n:N       messages to node N's clients, and its probes
 * With [recovery] (issue 13; every key PEXPIREs after history_ttl of no
 * use, so a lost or evicted key only starts a new epoch):
 *   PREFIX hm:ROOM           HASH e (the room's epoch) and o (its last
 *                            offset), created by HSETNX of a candidate
 *                            epoch the node draws
 *   PREFIX hs:ROOM           STREAM of the room's messages, ids OFFSET-0,
 *                            fields m (the stamped JSON text) and x (the
 *                            client left out), exact MAXLEN history_size
 *   PREFIX s:TOKEN           a kept session (PX session_ttl), taken once
 *   PREFIX ls:NODE           HASH of node NODE's live sessions, field TOKEN
 *                            (a cluster token ends in ".NODE"): written
 *                            while the client is connected, moved to
 *                            s:TOKEN at a kept drop, "!" once a resume
 *                            took it; PEXPIRE session_ttl every second
 *                            while the node lives (host/recovery.c)
 */
#ifndef SB_CLUSTER_H
#define SB_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"

struct sb_server;

/* Client ids in a cluster: NODE << 32 | SEQ, NODE 1..2^21-1, so every id is
 * below 2^53 (a JavaScript number holds it exactly). */
#define SB_CLUSTER_NODE_SHIFT 32
#define SB_CLUSTER_MAX_NODE   ((1u << 21) - 1)

static inline uint32_t sb_cluster_node_of(uint64_t id)
{
    return (uint32_t)(id >> SB_CLUSTER_NODE_SHIFT);
}

typedef struct sb_cluster_stats {
    uint64_t reconnects; /* connections (re)established after a loss */
    uint64_t published;  /* messages sent to the bus */
    uint64_t received;   /* bus messages taken (probes excluded) */
    uint64_t bad_input;  /* malformed or foreign: counted and dropped */
    uint64_t refused;    /* calls answered "unavailable" or over max_pending */
    uint64_t errors;     /* error replies from Redis */
    uint64_t timeouts;   /* connections dropped by a deadline */
    uint64_t unrouted;   /* sends to a node or client that is gone */
    uint64_t deliveries; /* frames queued to local clients from the bus */
} sb_cluster_stats;

typedef struct sb_cluster sb_cluster;

/* The cluster of this process, or NULL (no [cluster], or not started). */
extern sb_cluster *sb_cluster_instance;

/* Opens the cluster: reads the password, takes a node number from Redis
 * (a blocking exchange bounded by connect_timeout and command_timeout),
 * and sets sb_cluster_instance. Nothing is connected on the loop yet.
 * 0, or -1 with the reason in err. */
int sb_cluster_open(const sb_cluster_conf *conf, uv_loop_t *loop, char *err,
                    size_t errlen);
/* Serving starts: ids of s start at NODE << 32, rooms report their changes
 * here, and the connections open on the loop. */
void sb_cluster_attach(struct sb_server *s);
/* Serving ended: the node removes its presence and heartbeat (bounded by
 * command_timeout), closes its connections and timers. */
void sb_cluster_detach(void);
/* Frees what open() made, after the loop has run its closes. */
void sb_cluster_free(void);

/* ---- what the host layer calls (loop thread) ---------------------------- */

/* Whether the broker takes messages now (both connections are up). */
bool sb_cluster_up(void);
uint32_t sb_cluster_node(void);
const char *sb_cluster_node_name(void);
const sb_cluster_stats *sb_cluster_get_stats(void);
/* "connected", "connecting" or "down" (never connected since a loss). */
const char *sb_cluster_state(void);
size_t sb_cluster_channels(void);

/* Publishes JSON text (one object) to a room's members on every node, this
 * one included: every member gets it when it comes back from Redis, so all
 * see one order. SB_OK, or SB_ERR_UNAVAILABLE (broker down or over
 * max_pending), SB_ERR_NOMEM. */
int sb_cluster_room_send(const char *room, const char *text, size_t len,
                         uint64_t except);
/* Publishes text to the clients of the named gateways on every node. */
int sb_cluster_broadcast(const char *gateways, size_t glen, const char *text,
                         size_t len, uint64_t except);
/* To a client of another node (sb_cluster_node_of(to) != this node). */
int sb_cluster_send(uint64_t to, const char *text, size_t len);
int sb_cluster_exception(uint64_t to, const char *id, size_t id_len,
                         const char *message);
int sb_cluster_close(uint64_t to, int code, const char *reason);

/* Presence: asks Redis for a room's members on every live node. fn is
 * called once, later, from the loop: status SB_OK with the count (and, with
 * list, a new JSON array of ids the callee owns), or SB_ERR_UNAVAILABLE.
 * Returns SB_OK (fn will be called), or SB_ERR_UNAVAILABLE / SB_ERR_NOMEM
 * (it will not). */
typedef void (*sb_cluster_presence_fn)(void *udata, int status, size_t count,
                                       json_t *members);
int sb_cluster_presence(const char *room, bool list, sb_cluster_presence_fn fn,
                        void *udata);

/* ---- history and sessions ([recovery] with [cluster]) ------------------ */

/* A reply as JSON, for the host layer; fn is always called once. */
typedef void (*sb_cluster_reply_fn)(void *udata, json_t *reply);

/* A joiner's position in a history room is known (epoch NULL: it could not
 * be read, Redis failed). */
typedef void (*sb_cluster_position_fn)(uint64_t client, const char *room,
                                       const char *epoch, uint64_t offset);

/* Turns history on: rooms for which keeps() is true are appended to Redis
 * by sb_cluster_history_send, and their deliveries are checked for gaps. */
void sb_cluster_history(unsigned history_size, unsigned history_ttl_s,
                        bool (*keeps)(const char *room),
                        sb_cluster_position_fn position);

/* Appends a room message to the room's stream and publishes it, in one
 * script: `prefix` is the message up to the offset,
 * {"event":E,"data":D,"room":R,"offset": (the script adds N and '}').
 * SB_OK, SB_ERR_UNAVAILABLE, SB_ERR_NOMEM. */
int sb_cluster_history_send(const char *room, const char *prefix, size_t len,
                            uint64_t except);

/* `client` joined the history room `room`: its position (what this node
 * delivered last) goes to position(), now when the node knows it, or once
 * its subscription is confirmed and the position read. */
void sb_cluster_join_position(uint64_t client, const char *room);

/* Reads a history room's position and its stream from offset `after` + 1
 * on, at most `count` entries: the reply is [EPOCH, OFFSET, [[ID, [FIELD,
 * VALUE, ...]], ...]] (a room without a position gets a new epoch). */
int sb_cluster_read_room(const char *room, uint64_t after, unsigned count,
                         sb_cluster_reply_fn fn, void *udata);

/* Whether the node's subscription to the room's channel is confirmed. */
bool sb_cluster_room_ready(const char *room);

/* While `client` is held, room messages for it are kept aside (with their
 * room and offset) instead of sent. Release sends those keep() accepts, in
 * order, and forgets the rest. */
int sb_cluster_hold(uint64_t client);
void sb_cluster_release(uint64_t client,
                        bool (*keep)(void *ctx, const char *room,
                                     uint64_t offset),
                        void *ctx);

/* Any command, its reply as JSON (strings, integers, null, arrays; an
 * error as {"error": text}; NULL when the connection was lost). */
int sb_cluster_command(int argc, const char **argv, const size_t *lens,
                       sb_cluster_reply_fn fn, void *udata);
unsigned sb_cluster_command_timeout_ms(void);
const char *sb_cluster_prefix(void);

#endif

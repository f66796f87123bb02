/*
 * recovery — session recovery ([recovery], issue 13): the session tokens,
 * the sessions kept after a drop, and each room's history with its epoch
 * and offsets; in this process's memory, or with [cluster] in Redis.
 *
 * Owns the tokens of live clients (sb_client.recovery), the sessions of
 * dropped ones (by token, each kept for session_ttl) and the rooms'
 * histories (by name, bounded by history_size, history_bytes and
 * history_ttl). Speaks the reserved part of the wire: sb:session after the
 * handshake, sb:joined on a join, "room"/"offset" on room messages,
 * sb:resume / sb:resumed with the replay. Knows nothing of plugins: the
 * bridge hands it the clients' JSON state at a drop and gives that state
 * back to the plugins at a resume. Without [recovery] nothing here runs
 * and sb_recovery_instance is NULL.
 *
 * With [cluster] the histories and sessions are Redis' (through the
 * cluster layer: its append script numbers and keeps room messages, its
 * nodes fill their gaps); here remain the tokens, the sessions written
 * and taken (scripts, single use, owner checked), and the resumes, which
 * are asynchronous: the client's rooms are joined, its live messages held
 * by the cluster and its own messages held here until the rooms are read
 * and the answer and replay are sent. In a cluster the sessions of
 * connected clients are in Redis too (live records, PREFIX ls:NODE),
 * written coalesced when their rooms or state change, so that the clients
 * of a node that dies resume elsewhere; a resume that takes the record of
 * a connection still open has that connection closed (1008).
 */
#ifndef SB_RECOVERY_H
#define SB_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "conn.h"

struct sb_recovery;

/* What a live client has (sb_client.recovery): its token, and whether its
 * next message is its first (which may be a resume). */
struct sb_recovery_live {
    /* 24 URL-safe characters; in a cluster then "." and the node number
     * (at most 7 digits), which says where its live record is. */
    char token[33];
    bool first;
    bool pending;      /* a resume awaits Redis ([cluster]) */
    bool dirty;        /* its live record awaits a write ([cluster]) */
    bool written;      /* a write of its live record was sent ([cluster]) */
    uint64_t since_ms; /* loop time of its connect ([cluster]) */
    sb_buf held;       /* the messages received meanwhile, in order */
};

/* Not NULL while [recovery] is on and the server is serving. */
extern struct sb_recovery *sb_recovery_instance;

/* Starts it for `s` when its config has [recovery] (a sweep timer on the
 * server's loop); stops it and frees every session and history. */
int sb_recovery_start(sb_server *s);
void sb_recovery_stop(void);

/* A client of a JSON gateway is established: gives it a token and queues
 * sb:session (before any plugin sends it anything). */
void sb_recovery_connect(sb_client *c);
/* Whether the way `c` closed keeps its session: an abnormal close (1006,
 * keepalive timeout), a server-side 1001/1011/1012, or a close the client
 * started with a code other than 1000 and 1001. */
bool sb_recovery_keeps(const sb_client *c);
/* Keeps `c`'s session (rooms, identity, `states`: {plugin: state}, stolen)
 * under its token for session_ttl. Call before the client leaves its
 * rooms. */
void sb_recovery_save(sb_client *c, json_t *states);
/* With [cluster], a close that keeps no session: `c`'s live record is
 * deleted from Redis. Nothing in one process. */
void sb_recovery_drop(sb_client *c);
/* With [cluster], `c`'s rooms or plugin state changed: its live record is
 * written again (coalesced: at most one write per client per flush, a few
 * milliseconds later). Nothing in one process. */
void sb_recovery_touch(sb_client *c);
/* How the live records read the plugins' JSON state of a client: fn
 * returns a new {plugin: state} or NULL. */
typedef json_t *(*sb_recovery_states_fn)(void *ctx, const sb_client *c);
void sb_recovery_on_states(sb_recovery_states_fn fn, void *ctx);
/* Frees what it keeps for a live client (after the disconnect). */
void sb_recovery_forget(sb_client *c);

/* What a resume gave back, for the bridge to hand to the plugins. */
typedef struct sb_resumed {
    sb_client_id previous; /* 0: a fresh session */
    json_t *states;        /* {plugin: state} or NULL; owned */
    json_t *rooms;         /* {R: {"recovered", "epoch", "offset"}}; owned */
    bool pending;          /* answered later, through the resumed hook */
} sb_resumed;

/* With [cluster] a resume is answered once Redis has: then fn gets what
 * sb_recovery_first would have given (and the messages the client sent
 * meanwhile are dispatched after it, in order). */
typedef void (*sb_recovery_resumed_fn)(void *ctx, sb_client *c, sb_resumed *r);
void sb_recovery_on_resumed(sb_recovery_resumed_fn fn, void *ctx);
/* A message of a client whose resume is pending: kept for after it. */
int sb_recovery_hold(sb_client *c, const char *buf, size_t len, bool text);
/* With [cluster], a room message composed in `text`: when the room keeps
 * history, turns it into the prefix the append script completes
 * ({"event":E,"data":D,"room":R,"offset":) and returns 1; 0 otherwise. */
int sb_recovery_prefix(const char *room, sb_buf *text);

/* The first message of a client: when it is sb:resume, answers it
 * (sb:resumed, the rooms joined back, the replay) and returns true with
 * *out filled; false for any other message (dispatch it as usual). */
bool sb_recovery_first(sb_client *c, const char *buf, size_t len,
                       sb_resumed *out);

/* For /metrics: what is kept now, and the resumes so far. */
typedef struct sb_recovery_stats {
    uint64_t sessions;        /* kept now */
    uint64_t history_rooms;   /* rooms with a history now */
    uint64_t history_bytes;   /* bytes of their kept messages */
    uint64_t resumed;         /* resumes that found their session */
    uint64_t fresh;           /* resumes that found none */
    uint64_t unavailable;     /* fresh because Redis failed ([cluster]) */
    uint64_t rooms_recovered; /* rooms of resumes recovered whole */
    uint64_t rooms_lost;      /* ... not recovered */
} sb_recovery_stats;

/* False without [recovery]. */
bool sb_recovery_get_stats(sb_recovery_stats *out);

/* A room message composed in `text` ({"event","data"}): when the room
 * keeps history, adds "room" and "offset" to it and keeps a copy (the
 * client `except` is not sent it, nor replayed it). 1 when stamped, 0
 * when the room keeps no history, SB_ERR_NOMEM. */
int sb_recovery_stamp(const char *room, sb_buf *text, sb_client_id except);
/* `c` joined `room`: when it keeps history, queues sb:joined with the
 * room's epoch and offset. */
void sb_recovery_joined(sb_client *c, const char *room);

#endif

/*
 * client — one WebSocket connection: its id, the bytes of a message being
 * reassembled, and its send queue of ready-made frames.
 *
 * Replies are framed here (server frames are unmasked) and appended to the
 * client's queue; the queue is written by the server once per loop turn, in
 * one raw write, so a burst of replies costs one syscall. The struct
 * (conn.h) is allocated by the server at the upgrade. Also here: the
 * server's total of queued bytes against send_queue_budget, and closes
 * (with a close frame, or a drop when the socket would not take one).
 */
#ifndef SB_CLIENT_H
#define SB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <switchboard/plugin.h>

#include "conn.h"
#include "envelope.h"
#include "frame.h"

/* Starts a frame in the send queue and returns the offset of its payload;
 * the caller appends the payload to c->tx and then calls
 * sb_client_frame_end(). -1 when out of memory or the client is closing. */
long sb_client_frame_begin(sb_client *c);
/* Finishes the frame whose payload starts at `start`: writes its header and
 * marks the client dirty. Returns SB_OK, SB_ERR_LIMIT when the queue went
 * over max_send_queue, or all queues over send_queue_budget and this one
 * was among the largest (the client is then closed with 1008). */
int sb_client_frame_end(sb_client *c, long start, int opcode);
/* Brings the server's total of queued bytes up to date with this client's
 * queue and what lws holds of it; returns that total. */
size_t sb_client_account(sb_client *c);
/* For server.c, after a flush of the client's queue (written, or kept
 * because the socket would not take it): accounts what is left (nothing to
 * do when it is what was accounted) and, when all queues together are
 * still over send_queue_budget, closes the largest. */
void sb_client_flushed(sb_client *c);
/* Drops a half-built frame (after an error while appending its payload). */
void sb_client_frame_abort(sb_client *c, long start);
/* Queues one whole text frame holding `len` bytes of `payload`. */
int sb_client_send_text(sb_client *c, const char *payload, size_t len);
/* Queues bytes that already are whole frames (a broadcast framed once). */
int sb_client_send_frames(sb_client *c, const char *frames, size_t len);

/* For server.c: the client has frames to write this loop turn / has none
 * left to write. */
void sb_client_mark_dirty(sb_client *c);
void sb_client_undirty(sb_client *c);
/* Closes a client with a code and reason (sent after what is queued). */
void sb_client_close(sb_client *c, int code, const char *reason);
/* Closes a client whose queue must go (max_send_queue, send_queue_budget):
 * what it has not taken is dropped at once; the close frame is sent when
 * the socket can take it, else the connection is dropped (`code` for the
 * hooks). */
void sb_client_drop_queue(sb_client *c, int code, const char *reason);
/* Drops the connection without a close handshake (its socket would not
 * take a close frame); the hooks see `code`. */
void sb_client_kill(sb_client *c, int code);
/* Queues {"event":"exception","data":{"status":"error","message":M[,
 * "cause":{"pattern":E,"data":D}]}[,"id":I]}. cause_event/cause_data may be
 * NULL; id may be an empty span. Counted in the server's stats. */
int sb_send_exception(sb_client *c, const char *message,
                      const char *cause_event, sb_span cause_data, sb_span id);

/* The status of a frame that could not be begun. */
static inline int sb_client_queue_status(const sb_client *c)
{
    return c->closing ? SB_ERR_CLOSED : SB_ERR_NOMEM;
}

#endif

/*
 * client — a client's send queue: framing replies into it, the server's
 * list of clients with something to write, and the close frame.
 *
 * A frame is built in place: frame_begin() leaves room for the longest
 * header (10 bytes), the payload is appended right after it, and frame_end()
 * writes the real header and slides the payload down over the unused part of
 * the room. For the short payloads typical of replies that slide is a few
 * dozen bytes; no intermediate buffer is ever allocated.
 */
#include "client.h"

#include <string.h>

#include <libwebsockets.h>

#include "log.h"

size_t sb_client_account(sb_client *c)
{
    sb_server *s = c->server;
    size_t now = (c->tx.len > LWS_PRE ? c->tx.len - LWS_PRE : 0) + c->lws_held;
    s->send_bytes = s->send_bytes - c->accounted + now;
    c->accounted = now;
    return s->send_bytes;
}

static void over_budget(sb_server *s);

/* After frames were appended: a client that does not read must not make
 * the server grow, so over max_send_queue (counting what lws still holds of
 * earlier writes) what it has not taken is dropped and it is closed; and
 * when all queues together pass send_queue_budget, the largest go, at the
 * frame that passed it (a broadcast of big frames in one loop turn must not
 * overshoot the budget until the flush). Otherwise it is written at the end
 * of the loop turn (sb_client_flushed accounts what is left then). */
static int queued(sb_client *c)
{
    sb_server *s = c->server;
    if (c->tx.len - LWS_PRE + c->lws_held > sb_client_conf(c)->max_send_queue) {
        s->stats.exceptions_by[SB_EXC_SEND_QUEUE_FULL]++;
        sb_client_drop_queue(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             "Send queue full");
        return SB_ERR_LIMIT;
    }
    size_t budget = s->config->server.send_queue_budget;
    if (budget && sb_client_account(c) > budget && !s->shedding) {
        over_budget(s);
        if (c->closing)
            return SB_ERR_LIMIT;
    }
    sb_client_mark_dirty(c);
    return SB_OK;
}

void sb_client_flushed(sb_client *c)
{
    /* Usually a queue written whole, as it was the last time: nothing
     * changes. */
    if ((c->tx.len > LWS_PRE ? c->tx.len - LWS_PRE : 0) + c->lws_held ==
        c->accounted)
        return;
    sb_server *s = c->server;
    size_t budget = s->config->server.send_queue_budget;
    if (sb_client_account(c) > budget && budget && !s->shedding)
        over_budget(s);
}

long sb_client_frame_begin(sb_client *c)
{
    if (c->closing)
        return -1;
    if (c->tx.len == 0) {
        /* libwebsockets may use LWS_PRE bytes before what it writes. */
        if (sb_buf_reserve(&c->tx, LWS_PRE + 256) < 0)
            return -1;
        c->tx.len = LWS_PRE;
    }
    if (sb_buf_reserve(&c->tx, SB_WS_MAX_HEADER) < 0)
        return -1;
    c->tx.len += SB_WS_MAX_HEADER;
    return (long)c->tx.len;
}

void sb_client_frame_abort(sb_client *c, long start)
{
    c->tx.len = (size_t)start - SB_WS_MAX_HEADER;
}

int sb_client_frame_end(sb_client *c, long start, int opcode)
{
    size_t payload = c->tx.len - (size_t)start;
    size_t hlen = sb_ws_header_len(payload);
    unsigned char *room =
        (unsigned char *)c->tx.data + (size_t)start - SB_WS_MAX_HEADER;
    sb_ws_header_write(room, opcode, payload);
    if (hlen < SB_WS_MAX_HEADER) {
        memmove(room + hlen, c->tx.data + start, payload);
        c->tx.len -= SB_WS_MAX_HEADER - hlen;
    }
    if (opcode == SB_WS_TEXT || opcode == SB_WS_BINARY) {
        c->server->stats.messages_sent++;
        c->server->gateway_stats[c->gateway].sent++;
    }
    return queued(c);
}

int sb_client_send_text(sb_client *c, const char *payload, size_t len)
{
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return c->closing ? SB_ERR_CLOSED : SB_ERR_NOMEM;
    if (sb_buf_append(&c->tx, payload, len) < 0) {
        sb_client_frame_abort(c, start);
        return SB_ERR_NOMEM;
    }
    return sb_client_frame_end(c, start, SB_WS_TEXT);
}

int sb_client_send_frames(sb_client *c, const char *frames, size_t len)
{
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return c->closing ? SB_ERR_CLOSED : SB_ERR_NOMEM;
    /* No header of our own: drop the room frame_begin() made for one. */
    c->tx.len -= SB_WS_MAX_HEADER;
    if (sb_buf_append(&c->tx, frames, len) < 0)
        return SB_ERR_NOMEM;
    c->server->stats.messages_sent++;
    c->server->gateway_stats[c->gateway].sent++;
    return queued(c);
}

/* ---- the dirty list ---------------------------------------------------- */

void sb_client_mark_dirty(sb_client *c)
{
    if (c->dirty)
        return;
    sb_server *s = c->server;
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = s->dirty;
    if (s->dirty)
        s->dirty->dirty_prev = c;
    s->dirty = c;
}

void sb_client_undirty(sb_client *c)
{
    if (!c->dirty)
        return;
    sb_server *s = c->server;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        s->dirty = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->dirty = false;
}

/* ---- closing and exceptions --------------------------------------------- */

/* Closes a client from outside an lws callback. lws 4.1.6 drops the close
 * frame when a WRITEABLE callback returns -1 (it treats that as a failed
 * write), so we frame the close ourselves at the end of the send queue, like
 * any reply: it goes out in order after what is queued. When the client
 * answers, PEER_INITIATED_CLOSE tells lws not to echo it; a client that does
 * not answer is dropped by lws after the close-ack timeout. */
void sb_client_close(sb_client *c, int code, const char *reason)
{
    if (c->closing)
        return;
    /* A close frame carries at most 125 bytes: the code and 123 of reason,
     * cut at a UTF-8 character boundary. */
    unsigned char payload[125];
    size_t rlen = strlen(reason);
    if (rlen > sizeof(payload) - 2) {
        rlen = sizeof(payload) - 2;
        while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0) == 0x80)
            rlen--;
    }
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, rlen);
    long start = sb_client_frame_begin(c);
    c->closing = true;
    c->close_code = code;
    if (start < 0 || sb_buf_append(&c->tx, payload, 2 + rlen) < 0) {
        /* No memory even for a close frame: just drop the connection. */
        sb_client_kill(c, code);
        return;
    }
    c->close_sent = true;
    sb_client_frame_end(c, start, SB_WS_CLOSE);
    if (c->killed) /* queueing the close may have dropped it */
        return;
    /* How long the client has to answer before it is dropped. */
    unsigned wait = c->server->config->server.shutdown_timeout + 1;
    if (c->wsi)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, (int)wait);
    else
        c->path.close_by_ms = uv_now(c->server->loop) + wait * 1000ull;
}

/* Drops the connection without a close handshake (its socket would not
 * take a close frame): lws frees it, and what it held, on its next pass;
 * a connection the server took over is closed at the end of the loop turn
 * (the server finds it on the dirty list). The hooks see `code`. */
void sb_client_kill(sb_client *c, int code)
{
    if (c->killed)
        return;
    c->killed = true;
    c->closing = true;
    if (!c->close_code)
        c->close_code = code;
    c->stalled_since_ms = 0;
    c->tx.len = 0;
    c->lws_held = 0;
    sb_client_account(c);
    if (c->wsi) {
        sb_client_undirty(c);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, LWS_TO_KILL_ASYNC);
    } else {
        sb_client_mark_dirty(c);
    }
}

void sb_client_drop_queue(sb_client *c, int code, const char *reason)
{
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    if (c->killed)
        return;
    sb_log_limited(&lim, SB_LOG_INFO, "server",
                   "client %llu: %s, closing with %d",
                   (unsigned long long)c->id, reason, code);
    c->tx.len = 0;
    if (c->tx.cap > SB_KEEP_BUFFER_MAX)
        sb_buf_free(&c->tx);
    /* Bytes of a frame already half written: the rest cannot be dropped
     * without breaking the stream. */
    if (c->closing || (c->wsi ? lws_partial_buffered(c->wsi) : c->tx_blocked)) {
        sb_client_kill(c, code);
        return;
    }
    sb_client_account(c);
    sb_client_close(c, code, reason);
}

/* The send queues together passed send_queue_budget: the largest go first
 * (1008), until the total is under 7/8 of the budget, so that the next
 * message does not start it again at once. */
static void over_budget(sb_server *s)
{
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    size_t budget = s->config->server.send_queue_budget;
    size_t target = budget - budget / 8, before = s->send_bytes;
    unsigned closed = 0;
    s->shedding = true;
    while (s->send_bytes > target) {
        sb_client *big = NULL;
        for (sb_client *c = s->clients; c; c = c->next)
            if (!c->killed && c->accounted &&
                (!big || c->accounted > big->accounted))
                big = c;
        if (!big)
            break;
        size_t had = big->accounted;
        s->stats.budget_closes++;
        s->stats.exceptions_by[SB_EXC_SEND_QUEUE_FULL]++;
        sb_client_drop_queue(big, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             "Send queue budget exceeded");
        closed++;
        if (big->accounted >= had)
            break; /* never expected: nothing left to free */
    }
    s->shedding = false;
    sb_log_limited(&lim, SB_LOG_WARN, "server",
                   "send queues held %zu bytes, over send_queue_budget (%zu): "
                   "closed the %u largest with 1008",
                   before, budget, closed);
}

int sb_send_exception(sb_client *c, const char *message,
                      const char *cause_event, sb_span cause_data, sb_span id)
{
    c->server->stats.exceptions++;
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return sb_client_queue_status(c);
    sb_buf *b = &c->tx;
    int bad = sb_buf_append_str(
                  b, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                     "\"message\":") ||
              sb_json_append_string(b, message, strlen(message));
    if (!bad && cause_event) {
        bad = sb_buf_append_str(b, ",\"cause\":{\"pattern\":") ||
              sb_json_append_string(b, cause_event, strlen(cause_event));
        if (!bad && cause_data.ptr)
            bad = sb_buf_append_str(b, ",\"data\":") ||
                  sb_buf_append(b, cause_data.ptr, cause_data.len);
        if (!bad)
            bad = sb_buf_append_byte(b, '}');
    }
    if (!bad)
        bad = sb_buf_append_byte(b, '}');
    if (!bad && id.ptr)
        bad =
            sb_buf_append(b, ",\"id\":", 6) || sb_buf_append(b, id.ptr, id.len);
    if (!bad)
        bad = sb_buf_append_byte(b, '}');
    if (bad) {
        sb_client_frame_abort(c, start);
        return SB_ERR_NOMEM;
    }
    return sb_client_frame_end(c, start, SB_WS_TEXT);
}

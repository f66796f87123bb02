/*
 * client — framing replies into a client's send queue.
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

#include "server.h"

#define SB_WS_MAX_HEADER 10

size_t sb_ws_header_len(size_t len)
{
    if (len < 126)
        return 2;
    if (len <= 0xffff)
        return 4;
    return 10;
}

size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len)
{
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f)); /* FIN, no RSV */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

size_t sb_client_account(sb_client *c)
{
    sb_server *s = c->server;
    size_t now = (c->tx.len > LWS_PRE ? c->tx.len - LWS_PRE : 0) + c->lws_held;
    s->send_bytes = s->send_bytes - c->accounted + now;
    c->accounted = now;
    return s->send_bytes;
}

/* After frames were appended: a client that does not read must not make
 * the server grow, so over max_send_queue (counting what lws still holds of
 * earlier writes) what it has not taken is dropped and it is closed; and
 * when all queues together pass send_queue_budget, the largest go.
 * Otherwise it is written at the end of the loop turn. */
static int queued(sb_client *c)
{
    sb_server *s = c->server;
    if (c->tx.len - LWS_PRE + c->lws_held > sb_client_conf(c)->max_send_queue) {
        s->stats.exceptions_by[SB_EXC_SEND_QUEUE_FULL]++;
        sb_server_drop_queue(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             "Send queue full");
        return SB_ERR_LIMIT;
    }
    size_t budget = s->config->server.send_queue_budget;
    if (sb_client_account(c) > budget && budget && !s->shedding) {
        sb_server_over_budget(s);
        if (c->closing)
            return SB_ERR_LIMIT;
    }
    sb_server_mark_dirty(c);
    return SB_OK;
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

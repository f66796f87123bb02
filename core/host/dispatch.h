/*
 * dispatch — one complete message from a client: envelope → route → handler
 * → replies, and the `exception` replies for everything that goes wrong.
 *
 * Owns the sb_message handed to handlers (it lives on the stack for the one
 * call) and implements the message/reply part of the host table. Never
 * writes to sockets: replies go to the client's send queue.
 */
#ifndef SB_DISPATCH_H
#define SB_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <switchboard/plugin.h>

#include "client.h"
#include "envelope.h"
#include "router.h"

struct sb_message {
    sb_client *client;
    const sb_envelope *env;
    const sb_route *route; /* NULL for a raw gateway's message */
    const char *frame;     /* a raw gateway's message: its payload */
    size_t frame_len;
    bool binary;
    json_t *data; /* decoded on demand; released after the handler */
    int data_loaded;
    int failed; /* fail() was called */
    char fail_text[256];
};

/* Handles one complete message of `len` bytes (`text`: it came in text
 * frames) of a client of a JSON-envelope gateway. Returns 0, or
 * SB_DISPATCH_BAD_UTF8 for a text message that is not UTF-8, which the
 * caller must close with 1007. */
#define SB_DISPATCH_BAD_UTF8 1
int sb_dispatch(sb_client *c, const char *buf, size_t len, bool text);
/* The same for a raw gateway's client (`envelope = none`). */
int sb_dispatch_raw(sb_client *c, const char *buf, size_t len, bool text);
/* Either, by the client's gateway: for servers with raw gateways (the
 * bridge picks the message hook, so that the JSON-only path does not
 * look). */
static inline int sb_dispatch_any(sb_client *c, const char *buf, size_t len,
                                  bool text)
{
    if (sb_client_conf(c)->envelope != SB_ENVELOPE_JSON)
        return sb_dispatch_raw(c, buf, len, text);
    return sb_dispatch(c, buf, len, text);
}

/* Appends {"event":E[,"data":D][,"id":I]} to b, D encoded by jansson
 * (stolen; NULL: no data key). SB_OK, SB_ERR_JSON or SB_ERR_NOMEM. */
int sb_envelope_compose(sb_buf *b, const char *event, json_t *data, sb_span id);

/* Host table entries (see plugin.h for their contracts). */
const char *sb_msg_gateway(const sb_message *m);
const void *sb_msg_frame(const sb_message *m, size_t *len, int *binary);
const char *sb_msg_event(const sb_message *m);
sb_client_id sb_msg_client(const sb_message *m);
json_t *sb_msg_data(sb_message *m);
const char *sb_msg_data_raw(const sb_message *m, size_t *len);
const char *sb_msg_id_raw(const sb_message *m, size_t *len);
int sb_msg_reply(sb_message *m, const char *event, json_t *data);
int sb_msg_reply_raw(sb_message *m, const char *event, const char *json,
                     size_t len);
int sb_msg_reply_value(sb_message *m, json_t *value);
int sb_msg_reply_data(sb_message *m);
int sb_msg_fail(sb_message *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Frees the scratch buffer at shutdown. */
void sb_dispatch_cleanup(void);
#endif

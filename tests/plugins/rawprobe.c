/*
 * rawprobe — a raw gateway's plugin for tests/integration/test_raw.c.
 *
 * Its frame hook reads commands from text messages:
 *   "who"       -> "sub=NAME info=NAME" (client_subprotocol, client_info)
 *   "join"      -> joins room "r", answers "joined"
 *   "room:TEXT" -> TEXT to room "r" as a binary frame (others only)
 *   "all:TEXT"  -> TEXT as text to every client of its raw gateways
 *   "reply"     -> tries reply(): answers "reply=CODE"
 * Anything else (text or binary) is echoed with "T:" or "B:" first. Its
 * guard denies a message starting with "deny" (nothing reaches the hook)
 * and journals what it saw as the event.
 */
#include <stdio.h>
#include <string.h>

#include <switchboard/plugin.h>

static const sb_host *host;

static int send_text(sb_plugin *p, sb_client_id to, const char *s)
{
    return host->send_frame(p, to, s, strlen(s), 0);
}

static int guard(sb_plugin *p, sb_message *msg, void *udata)
{
    (void)p;
    (void)udata;
    size_t len;
    int binary;
    const char *d = host->message_frame(msg, &len, &binary);
    if (!d || strcmp(host->message_event(msg), "") != 0)
        return host->fail(msg, "not a raw message");
    if (len >= 4 && memcmp(d, "deny", 4) == 0)
        return host->fail(msg, "denied");
    return SB_OK;
}

static int on_frame(sb_plugin *p, sb_message *msg, void *udata)
{
    (void)udata;
    size_t len;
    int binary;
    const char *d = host->message_frame(msg, &len, &binary);
    sb_client_id from = host->message_client(msg);
    char out[512];
    if (!binary && len == 3 && memcmp(d, "who", 3) == 0) {
        const char *sub = host->client_subprotocol(from);
        json_t *info = host->client_info(from);
        const char *isub =
            json_string_value(json_object_get(info, "subprotocol"));
        snprintf(out, sizeof(out), "sub=%s info=%s", sub ? sub : "-",
                 isub ? isub : "-");
        json_decref(info);
        return send_text(p, from, out);
    }
    if (!binary && len == 4 && memcmp(d, "join", 4) == 0) {
        host->room_join(p, from, "r");
        return send_text(p, from, "joined");
    }
    if (!binary && len == 5 && memcmp(d, "reply", 5) == 0) {
        snprintf(out, sizeof(out), "reply=%d", host->reply(msg, "x", NULL));
        return send_text(p, from, out);
    }
    if (!binary && len >= 5 && memcmp(d, "room:", 5) == 0) {
        int n = host->room_send_frame(p, "r", d + 5, len - 5, 1, from);
        return n < 0 ? n : SB_OK;
    }
    if (!binary && len >= 4 && memcmp(d, "all:", 4) == 0) {
        int n = host->broadcast_frame(p, d + 4, len - 4, 0, 0);
        return n < 0 ? n : SB_OK;
    }
    if (len > sizeof(out) - 2)
        len = sizeof(out) - 2;
    out[0] = binary ? 'B' : 'T';
    out[1] = ':';
    memcpy(out + 2, d, len);
    return host->send_frame(p, from, out, len + 2, binary);
}

static int rawprobe_init(sb_plugin *p, const sb_host *h)
{
    host = h;
    int rc = h->on_guard(p, guard, NULL);
    return rc ? rc : h->on_frame(p, on_frame, NULL);
}

SB_PLUGIN_DEFINE("rawprobe", "1.0.0", rawprobe_init);

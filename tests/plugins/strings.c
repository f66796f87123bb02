/*
 * strings — a test plugin that hands the host every kind of text that goes
 * on the wire (fail() messages, event names, exception messages, close
 * reasons, JSON data), in any bytes the test asks for, and that fails in
 * every way a handler can (fail() then SB_OK, fail() twice, a bare
 * non-zero return), for the tests of what the client receives.
 *
 * Bytes are given as hex in the request ("hex":"c3a9ff"), so the test can
 * ask for text that is not UTF-8 without sending any itself.
 *
 * Events:
 *   fail_ok {"hex"}       fail("%s", bytes), then return SB_OK
 *   fail {"hex"}          return fail("%s", bytes)
 *   fail_twice            fail("first"), fail("second"), return SB_OK
 *   ret {"value":N}       return N without calling fail()
 *   events {"hex"}        every call taking an event name, with `bytes` as
 *                         the name; answers "events" {"reply","reply_raw",
 *                         "send","send_ack","broadcast","room_send"} with
 *                         each call's status
 *   data                  send() of a JSON string holding a byte that is
 *                         not UTF-8 (made with jansson's _nocheck call);
 *                         answers "data" {"rc"}
 *   exception {"hex"}     send_exception() to the sender with `bytes` as
 *                         the message (and the request's id); answers
 *                         "exception" {"rc"} after it
 *   close {"hex"}         client_close(sender, 4000, bytes)
 * Its guard denies data with "guard":"fail_ok" by fail() and SB_OK, and
 * data with "guard":"silent" by returning 13 (EACCES) without fail().
 * Every client joins room "all" when it connects (for room_send).
 */
#include <stdlib.h>
#include <string.h>

#include <switchboard/plugin.h>

typedef struct strs {
    const sb_host *host;
} strs;

/* The bytes of data's "hex" member, NUL-terminated, in out (cap bytes). */
static const char *hex_bytes(const sb_host *h, sb_message *m, char *out,
                             size_t cap)
{
    const char *hex =
        json_string_value(json_object_get(h->message_data(m), "hex"));
    size_t n = 0;
    for (; hex && hex[0] && hex[1] && n + 1 < cap; hex += 2) {
        char two[3] = {hex[0], hex[1], 0};
        out[n++] = (char)strtoul(two, NULL, 16);
    }
    out[n] = 0;
    return out;
}

static int on_fail_ok(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    char text[2048];
    h->fail(m, "%s", hex_bytes(h, m, text, sizeof(text)));
    return SB_OK;
}

static int on_fail(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    char text[2048];
    return h->fail(m, "%s", hex_bytes(h, m, text, sizeof(text)));
}

static int on_fail_twice(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    h->fail(m, "first");
    h->fail(m, "second");
    return SB_OK;
}

static int on_ret(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    return (int)json_integer_value(
        json_object_get(h->message_data(m), "value"));
}

static int on_events(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    char ev[256];
    hex_bytes(h, m, ev, sizeof(ev));
    sb_client_id me = h->message_client(m);
    size_t idlen;
    const char *id = h->message_id_raw(m, &idlen);
    int r1 = h->reply(m, ev, json_true());
    int r2 = h->reply_raw(m, ev, "1", 1);
    int r3 = h->send(p, me, ev, json_true());
    int r4 = h->send_ack(p, me, ev, json_true(), id ? id : "7", id ? idlen : 1);
    int r5 = h->broadcast(p, ev, json_true(), 0);
    int r6 = h->room_send(p, "all", ev, json_true(), 0);
    return h->reply(m, "events",
                    json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "reply", r1,
                              "reply_raw", r2, "send", r3, "send_ack", r4,
                              "broadcast", r5, "room_send", r6));
}

static int on_data(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    int rc =
        h->send(p, h->message_client(m), "data",
                json_pack("{s:o}", "text", json_stringn_nocheck("a\xff", 2)));
    int rk = h->send(p, h->message_client(m), "data",
                     json_pack("{s:{s:i}}", "x", "ok", 1));
    json_t *bad_key = json_object();
    json_object_set_new_nocheck(bad_key, "k\xc3", json_true());
    int rb = h->send(p, h->message_client(m), "data", bad_key);
    return h->reply(
        m, "data",
        json_pack("{s:i,s:i,s:i}", "bad_value", rc, "good", rk, "bad_key", rb));
}

static int on_exception(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    char text[2048];
    size_t idlen;
    const char *id = h->message_id_raw(m, &idlen);
    int rc = h->send_exception(p, h->message_client(m), id, idlen,
                               hex_bytes(h, m, text, sizeof(text)));
    return h->reply(m, "exception", json_pack("{s:i}", "rc", rc));
}

static int on_close(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    char text[2048];
    int rc = h->client_close(h->message_client(m), 4000,
                             hex_bytes(h, m, text, sizeof(text)));
    return rc == SB_OK ? SB_OK : h->fail(m, "close: %s", h->strerror(rc));
}

/* Denies data with "guard":"fail_ok" by fail() and SB_OK, and with
 * "guard":"silent" by returning 13 without fail(). */
static int on_guard(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *h = ((strs *)ud)->host;
    const char *g =
        json_string_value(json_object_get(h->message_data(m), "guard"));
    if (g && strcmp(g, "fail_ok") == 0) {
        h->fail(m, "guard says no");
        return SB_OK;
    }
    if (g && strcmp(g, "silent") == 0)
        return 13;
    return SB_OK;
}

static int on_connect(sb_plugin *p, sb_client_id id, void *ud)
{
    return ((strs *)ud)->host->room_join(p, id, "all");
}

static void on_unload(sb_plugin *p, void *ud)
{
    free(ud);
}

static int strings_init(sb_plugin *p, const sb_host *host)
{
    strs *s = calloc(1, sizeof(*s));
    if (!s)
        return host->plugin_error(p, "out of memory");
    s->host = host;
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"fail_ok", on_fail_ok},       {"fail", on_fail},
                  {"fail_twice", on_fail_twice}, {"ret", on_ret},
                  {"events", on_events},         {"data", on_data},
                  {"exception", on_exception},   {"close", on_close}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = host->subscribe(p, routes[i].event, routes[i].fn, s);
        if (rc != SB_OK) {
            free(s);
            return rc;
        }
    }
    host->on_connect(p, on_connect, s);
    host->on_guard(p, on_guard, s);
    host->on_unload(p, on_unload, s);
    return SB_OK;
}

SB_PLUGIN_DEFINE("strings", "1.0.0", strings_init);

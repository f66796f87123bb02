/*
 * session_client — see session_client.h.
 */
#include "session_client.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

json_t *sess_expect(ws_client *c, const char *event)
{
    json_t *v = cli_recv_json(c, SB_TIMEOUT, event);
    const char *e = json_string_value(json_object_get(v, "event"));
    char *dump = json_dumps(v, JSON_COMPACT);
    ck_assert_msg(e && strcmp(e, event) == 0, "expected %s, got %s", event,
                  dump);
    free(dump);
    return v;
}

void sess_open(sess *s, const sb_srv *srv, const char *jwt)
{
    memset(s, 0, sizeof(*s));
    char path[512];
    snprintf(path, sizeof(path), "/%s%s", jwt ? "?token=" : "", jwt ? jwt : "");
    s->ws = ws_connect("127.0.0.1", srv->port, path, NULL, SB_TIMEOUT);
    ck_assert_msg(s->ws != NULL, "connect: %s", ws_last_error());
    json_t *v = sess_expect(s->ws, "sb:session");
    json_t *d = json_object_get(v, "data");
    s->id = json_integer_value(json_object_get(d, "client"));
    const char *t = json_string_value(json_object_get(d, "token"));
    ck_assert_ptr_nonnull(t);
    /* At least 128 random bits, URL-safe (in a cluster: ".NODE" after). */
    size_t random = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                              "tuvwxyz0123456789-_");
    ck_assert_uint_ge(random, 22);
    ck_assert_msg(t[random] == '\0' || (t[random] == '.' && t[random + 1] &&
                                        strspn(t + random + 1, "0123456789") ==
                                            strlen(t + random + 1)),
                  "token %s", t);
    ck_assert_uint_lt(strlen(t), sizeof(s->token));
    snprintf(s->token, sizeof(s->token), "%s", t);
    ck_assert_int_gt(json_integer_value(json_object_get(d, "ttl")), 0);
    json_decref(v);
}

void sess_join_lobby(sess *s, bool any_order)
{
    cli_send(s->ws, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"}}");
    bool pos = false, joined = false;
    while (!pos || !joined) {
        json_t *v = cli_recv_json(s->ws, SB_TIMEOUT, "sb:joined and joined");
        const char *e = json_string_value(json_object_get(v, "event"));
        ck_assert_ptr_nonnull(e);
        if (strcmp(e, "sb:joined") == 0) {
            json_t *d = json_object_get(v, "data");
            ck_assert_str_eq(json_string_value(json_object_get(d, "room")),
                             "chat:lobby");
            snprintf(s->epoch, sizeof(s->epoch), "%s",
                     json_string_value(json_object_get(d, "epoch")));
            s->offset = json_integer_value(json_object_get(d, "offset"));
            pos = true;
        } else {
            ck_assert_str_eq(e, "joined");
            ck_assert_msg(pos || any_order, "joined before sb:joined");
            joined = true;
        }
        json_decref(v);
    }
}

void sess_say(ws_client *c, int n)
{
    char msg[128];
    snprintf(
        msg, sizeof(msg),
        "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":\"m%d\"}}",
        n);
    cli_send(c, msg);
}

void sess_expect_said(sess *s, json_int_t offset, int n)
{
    json_t *v = sess_expect(s->ws, "said");
    ck_assert_str_eq(json_string_value(json_object_get(v, "room")),
                     "chat:lobby");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "offset")), offset);
    char text[16];
    snprintf(text, sizeof(text), "m%d", n);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(v, "data"), "text")),
        text);
    s->offset = offset;
    json_decref(v);
}

json_t *sess_resume(sess *s, const sess *old, json_t **frame)
{
    json_t *req =
        json_pack("{s:s,s:{s:s,s:{s:{s:s,s:I}}}}", "event", "sb:resume", "data",
                  "token", old->token, "rooms", "chat:lobby", "epoch",
                  old->epoch, "offset", old->offset);
    char *text = json_dumps(req, JSON_COMPACT);
    cli_send(s->ws, text);
    free(text);
    json_decref(req);
    *frame = sess_expect(s->ws, "sb:resumed");
    json_t *d = json_object_get(*frame, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "client")), s->id);
    ck_assert_str_eq(json_string_value(json_object_get(d, "token")), s->token);
    return d;
}

json_t *sess_lobby(json_t *resumed)
{
    return json_object_get(json_object_get(resumed, "rooms"), "chat:lobby");
}

void sess_drop(sess *s, int ms)
{
    ws_close(s->ws); /* no close frame: 1006 */
    s->ws = NULL;
    usleep((useconds_t)ms * 1000);
}

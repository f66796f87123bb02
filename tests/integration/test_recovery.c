/*
 * Session recovery ([recovery], issue 13) in one process, over the wire:
 * sb:session, sb:joined, "room"/"offset" on room messages, sb:resume and
 * sb:resumed with the replay, the limits that make a room unrecoverable,
 * tokens (unknown, reused, another identity), what is restored (rooms, the
 * plugins' JSON state, the session hook), a resume racing live traffic,
 * and a restart (1012, then a fresh session: one process keeps its
 * sessions in memory). Without [recovery] the wire is byte for byte as
 * before.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#define CHAT     "[plugin.chat]\nfile = %P/chat.so\n"
#define SESSIONS "[plugin.sessions]\nfile = %P/test-sessions.so\n"

/* HS256 tokens of secret "sekret" for {"sub":"alice"} and {"sub":"bob"}. */
#define ALICE                                                                  \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."               \
    "XJ1q7TOK53kSmeu1Z_W1SQa3rh9CsAUwK3Bf074b098"
#define BOB                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ."                 \
    "opjMx2Wvab58U-JrePidW_pKFzDctAcduigE3PVK5mk"

static json_t *recv_json(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "recv: %d %s", rc, ws_error(c));
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    json_error_t err;
    json_t *v = json_loadb((const char *)f.data, f.len, 0, &err);
    ck_assert_msg(v != NULL, "not JSON: %s", f.data);
    ws_frame_free(&f);
    return v;
}

/* The next frame must be `event`; returns the whole frame (decref it). */
static json_t *expect_event(ws_client *c, const char *event)
{
    json_t *v = recv_json(c);
    const char *e = json_string_value(json_object_get(v, "event"));
    char *dump = json_dumps(v, JSON_COMPACT);
    ck_assert_msg(e && strcmp(e, event) == 0, "expected %s, got %s", event,
                  dump);
    free(dump);
    return v;
}

typedef struct sess {
    ws_client *ws;
    json_int_t id;
    char token[64];
    char epoch[32];
    json_int_t offset; /* of chat:lobby, as the client holds it */
} sess;

static void open_session(sess *s, const sb_srv *srv, const char *query)
{
    memset(s, 0, sizeof(*s));
    char path[512];
    snprintf(path, sizeof(path), "/%s%s", query ? "?token=" : "",
             query ? query : "");
    s->ws = ws_connect("127.0.0.1", srv->port, path, NULL, SB_TIMEOUT);
    ck_assert_msg(s->ws != NULL, "connect: %s", ws_last_error());
    json_t *v = expect_event(s->ws, "sb:session");
    json_t *d = json_object_get(v, "data");
    s->id = json_integer_value(json_object_get(d, "client"));
    const char *t = json_string_value(json_object_get(d, "token"));
    ck_assert_ptr_nonnull(t);
    /* At least 128 random bits, URL-safe. */
    ck_assert_uint_ge(strlen(t), 22);
    ck_assert_uint_eq(strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                "tuvwxyz0123456789-_"),
                      strlen(t));
    snprintf(s->token, sizeof(s->token), "%s", t);
    ck_assert_int_gt(json_integer_value(json_object_get(d, "ttl")), 0);
    json_decref(v);
}

static void join_lobby(sess *s)
{
    cli_send(s->ws, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"}}");
    json_t *v = expect_event(s->ws, "sb:joined");
    json_t *d = json_object_get(v, "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "room")),
                     "chat:lobby");
    snprintf(s->epoch, sizeof(s->epoch), "%s",
             json_string_value(json_object_get(d, "epoch")));
    s->offset = json_integer_value(json_object_get(d, "offset"));
    json_decref(v);
    json_decref(expect_event(s->ws, "joined"));
}

static void say(ws_client *c, int n)
{
    char msg[128];
    snprintf(
        msg, sizeof(msg),
        "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":\"m%d\"}}",
        n);
    cli_send(c, msg);
}

/* The next frame is `said` in chat:lobby at `offset` with text mN. */
static void expect_said(sess *s, json_int_t offset, int n)
{
    json_t *v = expect_event(s->ws, "said");
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

/* Sends sb:resume for `old` on `s` (a new connection) and returns the
 * sb:resumed data (decref the frame it came in: returned as *frame). */
static json_t *resume(sess *s, const sess *old, json_t **frame)
{
    json_t *req =
        json_pack("{s:s,s:{s:s,s:{s:{s:s,s:I}}}}", "event", "sb:resume", "data",
                  "token", old->token, "rooms", "chat:lobby", "epoch",
                  old->epoch, "offset", old->offset);
    char *text = json_dumps(req, JSON_COMPACT);
    cli_send(s->ws, text);
    free(text);
    json_decref(req);
    *frame = expect_event(s->ws, "sb:resumed");
    json_t *d = json_object_get(*frame, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "client")), s->id);
    ck_assert_str_eq(json_string_value(json_object_get(d, "token")), s->token);
    return d;
}

static json_t *lobby_of(json_t *resumed)
{
    return json_object_get(json_object_get(resumed, "rooms"), "chat:lobby");
}

static void drop(sess *s)
{
    ws_close(s->ws); /* no close frame: 1006 */
    s->ws = NULL;
    usleep(100 * 1000);
}

START_TEST(test_off_is_unchanged)
{
    sb_srv srv;
    srv_start(&srv, NULL, CHAT);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"}}");
    cli_expect(c, "{\"event\":\"joined\",\"data\":{\"room\":\"lobby\","
                  "\"members\":1}}");
    cli_send(c, "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":"
                "\"hi\"}}");
    cli_expect(c, "{\"event\":\"said\",\"data\":{\"room\":\"lobby\",\"from\":1,"
                  "\"text\":\"hi\"}}");
    cli_expect_nothing(c, 200);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* The admin listener's /metrics (body, to free). */
static char *metrics(int port)
{
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                       "Connection: close\r\n\r\n";
    ws_http_response r;
    ck_assert_int_eq(
        ws_http_raw("127.0.0.1", port, req, sizeof(req) - 1, SB_TIMEOUT, &r),
        0);
    ck_assert_int_eq(r.status, 200);
    char *body = strndup(r.body ? r.body : "", r.body_len);
    ws_http_response_free(&r);
    return body;
}

START_TEST(test_recover_no_gap)
{
    sb_srv srv;
    int admin = sb_test_free_port();
    char sections[512];
    snprintf(sections, sizeof(sections), "[admin]\nport = %d\n[recovery]\n%s",
             admin, CHAT SESSIONS);
    srv_start(&srv, NULL, sections);
    ck_assert_int_eq(sb_test_wait_port(admin, 30000), 0);
    sess a, b, a2;
    open_session(&a, &srv, NULL);
    join_lobby(&a);
    ck_assert_int_eq(a.offset, 0);
    cli_send(a.ws, "{\"event\":\"keep\",\"data\":{\"score\":7},\"id\":1}");
    json_decref(expect_event(a.ws, "kept"));
    open_session(&b, &srv, NULL);
    join_lobby(&b);
    ck_assert_str_eq(a.epoch, b.epoch);
    say(b.ws, 1);
    expect_said(&a, 1, 1);
    expect_said(&b, 1, 1);
    drop(&a);
    for (int i = 2; i <= 4; i++) {
        say(b.ws, i);
        expect_said(&b, i, i);
    }
    open_session(&a2, &srv, NULL);
    json_t *frame;
    json_t *d = resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    json_t *l = lobby_of(d);
    ck_assert(json_is_true(json_object_get(l, "recovered")));
    ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")), 4);
    ck_assert_str_eq(json_string_value(json_object_get(l, "epoch")), a.epoch);
    json_decref(frame);
    /* Exactly the missing messages, in order. */
    for (int i = 2; i <= 4; i++)
        expect_said(&a2, i, i);
    /* The plugin's hook: the previous id, its state, the rooms. */
    json_t *h = expect_event(a2.ws, "resumed_hook");
    json_t *hd = json_object_get(h, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(hd, "previous")), a.id);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(hd, "state"), "score")),
                     7);
    ck_assert(json_is_true(json_object_get(
        json_object_get(json_object_get(hd, "rooms"), "chat:lobby"),
        "recovered")));
    json_decref(h);
    cli_expect_nothing(a2.ws, 200);
    /* Still a member: live traffic follows the replay. */
    say(b.ws, 5);
    expect_said(&b, 5, 5);
    expect_said(&a2, 5, 5);
    /* The token was single-use. */
    sess c;
    open_session(&c, &srv, NULL);
    d = resume(&c, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    ck_assert_uint_eq(json_object_size(json_object_get(d, "rooms")), 0);
    json_decref(frame);
    cli_expect_nothing(c.ws, 200); /* no hook for a fresh session */
    char *m = metrics(admin);
    ck_assert_msg(strstr(m, "switchboard_recovery_resumes_total{result="
                            "\"resumed\"} 1\n") &&
                      strstr(m, "switchboard_recovery_resumes_total{result="
                                "\"fresh\"} 1\n") &&
                      strstr(m, "switchboard_recovery_rooms_total{recovered="
                                "\"true\"} 1\n") &&
                      strstr(m, "switchboard_recovery_history_rooms 1\n"),
                  "%s", m);
    free(m);
    ws_close(c.ws);
    ws_close(a2.ws);
    ws_close(b.ws);
    srv_stop(&srv);
}
END_TEST

/* Drops `a` (in the lobby at offset 1), has `b` say `missed` more, waits
 * `wait_ms`, and resumes: the answer for chat:lobby (decref *frame). */
static json_t *miss(const sb_srv *srv, int missed, int wait_ms, sess *a2,
                    json_t **frame)
{
    sess a, b;
    open_session(&a, srv, NULL);
    join_lobby(&a);
    open_session(&b, srv, NULL);
    join_lobby(&b);
    say(b.ws, 0);
    expect_said(&a, a.offset + 1, 0);
    expect_said(&b, b.offset + 1, 0);
    drop(&a);
    for (int i = 1; i <= missed; i++) {
        say(b.ws, i);
        expect_said(&b, b.offset + 1, i);
    }
    usleep((useconds_t)wait_ms * 1000);
    open_session(a2, srv, NULL);
    json_t *d = resume(a2, &a, frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    json_t *l = lobby_of(d);
    ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")),
                     b.offset);
    ws_close(b.ws);
    return l;
}

START_TEST(test_unrecoverable)
{
    sb_srv srv;
    srv_start(&srv, NULL,
              "[recovery]\nhistory_size = 3\nmax_recover = 2\n"
              "history_ttl = 1\n" CHAT);
    sess a2;
    json_t *frame;
    /* Two missed: within history_size and max_recover. */
    json_t *l = miss(&srv, 2, 0, &a2, &frame);
    ck_assert(json_is_true(json_object_get(l, "recovered")));
    json_int_t top = json_integer_value(json_object_get(l, "offset"));
    json_decref(frame);
    expect_said(&a2, top - 1, 1);
    expect_said(&a2, top, 2);
    cli_expect_nothing(a2.ws, 100);
    ws_close(a2.ws);
    /* Three missed: over max_recover (still in history). */
    l = miss(&srv, 3, 0, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200); /* no partial replay */
    ws_close(a2.ws);
    /* Two missed, but older than history_ttl. */
    l = miss(&srv, 2, 2500, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    srv_stop(&srv);

    /* The room's history is lost (empty and quiet for history_ttl): a new
     * epoch, and the client's position is worth nothing. */
    srv_start(&srv, NULL, "[recovery]\nhistory_ttl = 1\n" CHAT);
    sess a, b;
    open_session(&a, &srv, NULL);
    join_lobby(&a);
    drop(&a);
    usleep(2500 * 1000);
    open_session(&b, &srv, NULL);
    join_lobby(&b);
    ck_assert_str_ne(b.epoch, a.epoch);
    ck_assert_int_eq(b.offset, 0);
    say(b.ws, 1);
    expect_said(&b, 1, 1);
    open_session(&a2, &srv, NULL);
    json_t *d = resume(&a2, &a, &frame);
    l = lobby_of(d);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    ck_assert_str_eq(json_string_value(json_object_get(l, "epoch")), b.epoch);
    ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")), 1);
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    ws_close(b.ws);
    srv_stop(&srv);

    /* More than history_size missed. */
    srv_start(&srv, NULL,
              "[recovery]\nhistory_size = 3\nmax_recover = 100\n" CHAT);
    l = miss(&srv, 4, 0, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_tokens)
{
    sb_srv srv;
    srv_start(&srv, NULL,
              "[plugin.auth]\nfile = %P/auth.so\nsecret = sekret\n"
              "[recovery]\n" CHAT);
    sess a, x, a2;
    json_t *frame;
    /* An unknown token: a fresh session. */
    open_session(&x, &srv, ALICE);
    sess fake = {0};
    snprintf(fake.token, sizeof(fake.token), "AAAAAAAAAAAAAAAAAAAAAAAA");
    snprintf(fake.epoch, sizeof(fake.epoch), "e");
    json_t *d = resume(&x, &fake, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);

    /* A resume that is not one: data of the wrong shape is a fresh
     * session too; a first frame that is not JSON goes to the plugins
     * (and gets their exception), and resumes nothing. */
    open_session(&x, &srv, ALICE);
    cli_send(x.ws, "{\"event\":\"sb:resume\",\"data\":[1,{}]}");
    json_t *v = expect_event(x.ws, "sb:resumed");
    ck_assert(
        json_is_null(json_object_get(json_object_get(v, "data"), "previous")));
    json_decref(v);
    ws_close(x.ws);
    open_session(&x, &srv, ALICE);
    cli_send(x.ws, "{\"event\":\"sb:resume\",\"data\":");
    json_decref(expect_event(x.ws, "exception"));
    ws_close(x.ws);

    /* A clean close by the client keeps nothing. */
    open_session(&a, &srv, ALICE);
    join_lobby(&a);
    ws_send_close(a.ws, 1000, "bye");
    int code = 0;
    ws_expect_close(a.ws, SB_TIMEOUT, &code, NULL, 0);
    ws_close(a.ws);
    usleep(100 * 1000);
    open_session(&a2, &srv, ALICE);
    d = resume(&a2, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(a2.ws);

    /* Alice drops; Bob's credentials with Alice's token resume nothing,
     * and leave the session to Alice. */
    open_session(&a, &srv, ALICE);
    join_lobby(&a);
    drop(&a);
    open_session(&x, &srv, BOB);
    d = resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    cli_expect_nothing(x.ws, 100);
    ws_close(x.ws);
    open_session(&a2, &srv, ALICE);
    d = resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ck_assert(json_is_true(json_object_get(lobby_of(d), "recovered")));
    json_decref(frame);
    ws_close(a2.ws);
    srv_stop(&srv);
}
END_TEST

/* ---- a resume racing live traffic ---- */

struct publisher {
    int port;
    int count;
};

static void *publish(void *arg)
{
    struct publisher *p = arg;
    ws_client *c = ws_connect("127.0.0.1", p->port, "/", NULL, SB_TIMEOUT);
    if (!c)
        return NULL;
    ws_frame f;
    ws_recv_message(c, SB_TIMEOUT, &f); /* sb:session */
    ws_frame_free(&f);
    for (int i = 1; i <= p->count; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":"
                 "\"m%d\"}}",
                 i);
        if (i == 1) {
            const char *join = "{\"event\":\"join\",\"data\":{\"room\":"
                               "\"lobby\"}}";
            ws_send_text(c, join, strlen(join));
        }
        ws_send_text(c, msg, strlen(msg));
        if (i % 20 == 0)
            usleep(1000);
    }
    /* Its own copies are read only to keep its queue short. */
    while (ws_recv_message(c, 300, &f) == 1)
        ws_frame_free(&f);
    ws_close(c);
    return NULL;
}

START_TEST(test_resume_races_live_traffic)
{
    sb_srv srv;
    srv_start(&srv, NULL, "[recovery]\nhistory_size = 1000\n" CHAT);
    for (int round = 0; round < 10; round++) {
        sess a, a2;
        open_session(&a, &srv, NULL);
        join_lobby(&a);
        json_int_t start = a.offset;
        struct publisher p = {srv.port, 300};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, publish, &p), 0);
        /* Read a few live messages, drop in the middle of the stream,
         * resume at once while the publisher goes on. */
        int seen = 0;
        while (seen < 5 + round * 3) {
            json_t *v = recv_json(a.ws);
            const char *e = json_string_value(json_object_get(v, "event"));
            if (e && strcmp(e, "said") == 0) {
                json_int_t off =
                    json_integer_value(json_object_get(v, "offset"));
                ck_assert_int_eq(off, a.offset + 1);
                a.offset = off;
                seen++;
            }
            json_decref(v);
        }
        drop(&a);
        open_session(&a2, &srv, NULL);
        json_t *frame;
        json_t *d = resume(&a2, &a, &frame);
        ck_assert(json_is_true(json_object_get(lobby_of(d), "recovered")));
        json_decref(frame);
        /* Every offset up to the last, once each and in order. */
        json_int_t last = a.offset;
        while (last < start + p.count) {
            json_t *v = recv_json(a2.ws);
            const char *e = json_string_value(json_object_get(v, "event"));
            if (e && strcmp(e, "said") == 0) {
                json_int_t off =
                    json_integer_value(json_object_get(v, "offset"));
                ck_assert_msg(off == last + 1,
                              "round %d: offset %lld after %lld", round,
                              (long long)off, (long long)last);
                last = off;
            }
            json_decref(v);
        }
        pthread_join(t, NULL);
        cli_expect_nothing(a2.ws, 100);
        ws_close(a2.ws);
    }
    srv_stop(&srv);
}
END_TEST

/* One process keeps its sessions in memory: a restart closes clients with
 * 1012 (come back), and the resume then finds a fresh session. */
START_TEST(test_restart_1012_fresh_session)
{
    sb_srv srv;
    srv_start(&srv, "shutdown_timeout = 1\n", "[recovery]\n" CHAT);
    sess a, a2;
    open_session(&a, &srv, NULL);
    join_lobby(&a);
    /* The close frame waits in our socket while the server gives up on
     * the close handshake and exits. */
    srv_stop(&srv);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(a.ws, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1012);
    ws_close(a.ws);
    srv_start(&srv, NULL, "[recovery]\n" CHAT);
    open_session(&a2, &srv, NULL);
    json_t *frame;
    json_t *d = resume(&a2, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(a2.ws);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recovery");
    TCase *tc = tcase_create("recovery");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_off_is_unchanged);
    tcase_add_test(tc, test_recover_no_gap);
    tcase_add_test(tc, test_unrecoverable);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_resume_races_live_traffic);
    tcase_add_test(tc, test_restart_1012_fresh_session);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

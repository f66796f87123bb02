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
#include "session_client.h"

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
    sess_open(&a, &srv, NULL);
    /* One process: 24 URL-safe characters (144 bits), no ".NODE". */
    ck_assert_uint_eq(strlen(a.token), 24);
    sess_join_lobby(&a, false);
    ck_assert_int_eq(a.offset, 0);
    cli_send(a.ws, "{\"event\":\"keep\",\"data\":{\"score\":7},\"id\":1}");
    json_decref(sess_expect(a.ws, "kept"));
    sess_open(&b, &srv, NULL);
    sess_join_lobby(&b, false);
    ck_assert_str_eq(a.epoch, b.epoch);
    sess_say(b.ws, 1);
    sess_expect_said(&a, 1, 1);
    sess_expect_said(&b, 1, 1);
    sess_drop(&a, 100);
    for (int i = 2; i <= 4; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, i, i);
    }
    sess_open(&a2, &srv, NULL);
    json_t *frame;
    json_t *d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    json_t *l = sess_lobby(d);
    ck_assert(json_is_true(json_object_get(l, "recovered")));
    ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")), 4);
    ck_assert_str_eq(json_string_value(json_object_get(l, "epoch")), a.epoch);
    json_decref(frame);
    /* Exactly the missing messages, in order. */
    for (int i = 2; i <= 4; i++)
        sess_expect_said(&a2, i, i);
    /* The plugin's hook: the previous id, its state, the rooms. */
    json_t *h = sess_expect(a2.ws, "resumed_hook");
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
    sess_say(b.ws, 5);
    sess_expect_said(&b, 5, 5);
    sess_expect_said(&a2, 5, 5);
    /* The token was single-use. */
    sess c;
    sess_open(&c, &srv, NULL);
    d = sess_resume(&c, &a, &frame);
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
    sess_open(&a, srv, NULL);
    sess_join_lobby(&a, false);
    sess_open(&b, srv, NULL);
    sess_join_lobby(&b, false);
    sess_say(b.ws, 0);
    sess_expect_said(&a, a.offset + 1, 0);
    sess_expect_said(&b, b.offset + 1, 0);
    sess_drop(&a, 100);
    for (int i = 1; i <= missed; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, b.offset + 1, i);
    }
    usleep((useconds_t)wait_ms * 1000);
    sess_open(a2, srv, NULL);
    json_t *d = sess_resume(a2, &a, frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    json_t *l = sess_lobby(d);
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
    sess_expect_said(&a2, top - 1, 1);
    sess_expect_said(&a2, top, 2);
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
    sess_open(&a, &srv, NULL);
    sess_join_lobby(&a, false);
    sess_drop(&a, 100);
    usleep(2500 * 1000);
    sess_open(&b, &srv, NULL);
    sess_join_lobby(&b, false);
    ck_assert_str_ne(b.epoch, a.epoch);
    ck_assert_int_eq(b.offset, 0);
    sess_say(b.ws, 1);
    sess_expect_said(&b, 1, 1);
    sess_open(&a2, &srv, NULL);
    json_t *d = sess_resume(&a2, &a, &frame);
    l = sess_lobby(d);
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
    sess_open(&x, &srv, ALICE);
    sess fake = {0};
    snprintf(fake.token, sizeof(fake.token), "AAAAAAAAAAAAAAAAAAAAAAAA");
    snprintf(fake.epoch, sizeof(fake.epoch), "e");
    json_t *d = sess_resume(&x, &fake, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);

    /* A resume that is not one: data of the wrong shape is a fresh
     * session too; a first frame that is not JSON goes to the plugins
     * (and gets their exception), and resumes nothing. */
    sess_open(&x, &srv, ALICE);
    cli_send(x.ws, "{\"event\":\"sb:resume\",\"data\":[1,{}]}");
    json_t *v = sess_expect(x.ws, "sb:resumed");
    ck_assert(
        json_is_null(json_object_get(json_object_get(v, "data"), "previous")));
    json_decref(v);
    ws_close(x.ws);
    sess_open(&x, &srv, ALICE);
    cli_send(x.ws, "{\"event\":\"sb:resume\",\"data\":");
    json_decref(sess_expect(x.ws, "exception"));
    ws_close(x.ws);

    /* A clean close by the client keeps nothing. */
    sess_open(&a, &srv, ALICE);
    sess_join_lobby(&a, false);
    ws_send_close(a.ws, 1000, "bye");
    int code = 0;
    ws_expect_close(a.ws, SB_TIMEOUT, &code, NULL, 0);
    ws_close(a.ws);
    usleep(100 * 1000);
    sess_open(&a2, &srv, ALICE);
    d = sess_resume(&a2, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(a2.ws);

    /* Alice drops; Bob's credentials with Alice's token resume nothing,
     * and leave the session to Alice. */
    sess_open(&a, &srv, ALICE);
    sess_join_lobby(&a, false);
    sess_drop(&a, 100);
    sess_open(&x, &srv, BOB);
    d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    cli_expect_nothing(x.ws, 100);
    ws_close(x.ws);
    sess_open(&a2, &srv, ALICE);
    d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
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
        sess_open(&a, &srv, NULL);
        sess_join_lobby(&a, false);
        json_int_t start = a.offset;
        struct publisher p = {srv.port, 300};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, publish, &p), 0);
        /* Read a few live messages, drop in the middle of the stream,
         * resume at once while the publisher goes on. */
        int seen = 0;
        while (seen < 5 + round * 3) {
            json_t *v = cli_recv_json(a.ws, SB_TIMEOUT, "a frame");
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
        sess_drop(&a, 100);
        sess_open(&a2, &srv, NULL);
        json_t *frame;
        json_t *d = sess_resume(&a2, &a, &frame);
        ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
        json_decref(frame);
        /* Every offset up to the last, once each and in order. */
        json_int_t last = a.offset;
        while (last < start + p.count) {
            json_t *v = cli_recv_json(a2.ws, SB_TIMEOUT, "a frame");
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
    sess_open(&a, &srv, NULL);
    sess_join_lobby(&a, false);
    /* The close frame waits in our socket while the server gives up on
     * the close handshake and exits. */
    srv_stop(&srv);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(a.ws, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1012);
    ws_close(a.ws);
    srv_start(&srv, NULL, "[recovery]\n" CHAT);
    sess_open(&a2, &srv, NULL);
    json_t *frame;
    json_t *d = sess_resume(&a2, &a, &frame);
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

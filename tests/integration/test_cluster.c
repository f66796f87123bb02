/*
 * cluster — two real switchboard processes joined by a private, real
 * redis-server (a unix socket in a temp folder, no persistence), with the
 * chat and sdk11 plugins and clients on both: room messages, broadcasts,
 * sends and closes to a remote id cross over; two publishers give every
 * member one order; presence spans the nodes and forgets a dead one; and
 * Redis killed and restarted, paused (SIGSTOP) or its subscriber
 * connections killed leaves clients connected, local service running and
 * cross-node delivery back within seconds. Skipped (77) without
 * redis-server.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

static sb_redis redis;
static sb_srv n1, n2;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *sections =
    "[cluster]\nredis = unix:%s\nnode_ttl = 3s\nprobe_interval = 500ms\n"
    "command_timeout = 1s\nconnect_timeout = 500ms\nreconnect_max = 1s\n"
    "[plugin.chat]\nfile = %%P/chat.so\n"
    "[plugin.sdk]\nfile = %%P/test-sdk11.so\njournal = %%J\n";

static void start_node(sb_srv *s)
{
    char text[1024];
    snprintf(text, sizeof(text), sections, redis.sock);
    srv_start(s, NULL, text);
    ck_assert_msg(srv_log_wait(s, "connected to Redis", 1, 5000), "%s",
                  srv_logtail(s));
}

/* Before a receive fails: what both nodes logged. */
static void print_logs(void)
{
    char n1log[4000];
    snprintf(n1log, sizeof(n1log), "%s", srv_logtail(&n1));
    fprintf(stderr, "node 1:\n%s\nnode 2:\n%s\n", n1log, srv_logtail(&n2));
}

static void setup(void)
{
    cli_on_failure(print_logs);
    redis_start(&redis);
    start_node(&n1);
    start_node(&n2);
}

static void teardown(void)
{
    srv_stop(&n1);
    srv_stop(&n2);
    redis_free(&redis);
}

static json_int_t whoami(ws_client *c)
{
    cli_send(c, "{\"event\":\"whoami\"}");
    json_t *v = cli_expect_event(c, "whoami");
    json_int_t id =
        json_integer_value(json_object_get(json_object_get(v, "data"), "id"));
    json_decref(v);
    return id;
}

static void join(ws_client *c, const char *room)
{
    char msg[256];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"join\",\"data\":{\"room\":\"%s\"}}", room);
    cli_send(c, msg);
    json_decref(cli_expect_event(c, "joined"));
}

static void say(ws_client *c, const char *room, const char *text)
{
    char msg[512];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"say\",\"data\":{\"room\":\"%s\",\"text\":\"%s\"}}",
             room, text);
    cli_send(c, msg);
}

/* The text of the next `said`. */
static char *said(ws_client *c)
{
    json_t *v = cli_expect_event(c, "said");
    char *t = strdup(
        json_string_value(json_object_get(json_object_get(v, "data"), "text")));
    json_decref(v);
    return t;
}

static void expect_said(ws_client *c, const char *text)
{
    char *t = said(c);
    ck_assert_str_eq(t, text);
    free(t);
}

/* Local service: sdk11's echo answers at once whatever the broker does. */
static void expect_echo(ws_client *c)
{
    cli_send(c, "{\"event\":\"echo\",\"data\":{\"local\":1}}");
    cli_expect(c, "{\"event\":\"echo\",\"data\":{\"local\":1}}");
}

static json_t *who(ws_client *c, const char *room)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "{\"event\":\"who\",\"data\":{\"room\":\"%s\"}}",
             room);
    cli_send(c, msg);
    json_t *v = cli_expect_event(c, "who");
    json_t *m =
        json_incref(json_object_get(json_object_get(v, "data"), "members"));
    json_decref(v);
    return m;
}

/* Presence is written to Redis as members come and go, a moment after the
 * client's answer: asks until `room` has n members (or ms pass). */
static json_t *who_until(ws_client *c, const char *room, size_t n, int ms)
{
    long long t0 = now_ms();
    for (;;) {
        json_t *m = who(c, room);
        if (json_array_size(m) == n || now_ms() - t0 > ms)
            return m;
        json_decref(m);
        usleep(20000);
    }
}

/* A node counts in the room's presence once Redis confirmed its
 * subscription: from then on the room's messages reach its members. */
static void synced(ws_client *c, const char *room, size_t members)
{
    json_t *m = who_until(c, room, members, 3000);
    ck_assert_int_eq(json_array_size(m), members);
    json_decref(m);
}

START_TEST(test_ids_are_cluster_unique_and_js_safe)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    json_int_t ia = whoami(a), ib = whoami(b);
    ck_assert_int_ne(ia >> 32, ib >> 32);
    ck_assert_int_gt(ia >> 32, 0);
    ck_assert_int_lt(ia, (json_int_t)1 << 53);
    ck_assert_int_lt(ib, (json_int_t)1 << 53);
    ws_close(a);
    ws_close(b);
}
END_TEST

START_TEST(test_room_broadcast_send_close_cross_over)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    json_int_t ib = whoami(b);
    join(a, "x");
    join(b, "x");
    synced(a, "x", 2);
    say(a, "x", "from a");
    expect_said(a, "from a");
    expect_said(b, "from a");
    say(b, "x", "from b");
    expect_said(a, "from b");
    expect_said(b, "from b");

    cli_send(a, "{\"event\":\"broadcast\",\"data\":{\"data\":{\"n\":7}}}");
    cli_expect(b, "{\"event\":\"broadcast\",\"data\":{\"n\":7}}");

    char msg[256];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"send\",\"data\":{\"to\":%lld,\"event\":\"hey\","
             "\"data\":{\"y\":2}}}",
             (long long)ib);
    cli_send(a, msg);
    cli_expect(b, "{\"event\":\"hey\",\"data\":{\"y\":2}}");

    snprintf(msg, sizeof(msg),
             "{\"event\":\"close\",\"data\":{\"id\":%lld,\"code\":4001,"
             "\"reason\":\"bye\"}}",
             (long long)ib);
    cli_send(a, msg);
    int code = 0;
    char reason[128];
    ck_assert_int_eq(
        ws_expect_close(b, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 4001);
    ck_assert_str_eq(reason, "bye");
    ws_close(a);
    ws_close(b);
}
END_TEST

/* Two publishers on two nodes, four members on both: one order for all. */
START_TEST(test_one_order_for_every_member)
{
    enum { N = 150, M = 4 };
    ws_client *c[M] = {cli_connect(&n1), cli_connect(&n2), cli_connect(&n1),
                       cli_connect(&n2)};
    for (int i = 0; i < M; i++)
        join(c[i], "order");
    synced(c[0], "order", M);
    char text[32];
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof(text), "a%d", i);
        say(c[0], "order", text);
        snprintf(text, sizeof(text), "b%d", i);
        say(c[1], "order", text);
    }
    char *seen[M][2 * N];
    for (int m = 0; m < M; m++)
        for (int i = 0; i < 2 * N; i++)
            seen[m][i] = said(c[m]);
    for (int m = 1; m < M; m++)
        for (int i = 0; i < 2 * N; i++)
            ck_assert_msg(strcmp(seen[m][i], seen[0][i]) == 0,
                          "member %d saw %s at %d, member 0 %s", m, seen[m][i],
                          i, seen[0][i]);
    /* Each publisher's own order holds too. */
    int next_a = 0, next_b = 0;
    for (int i = 0; i < 2 * N; i++) {
        int k = atoi(seen[0][i] + 1);
        ck_assert_int_eq(k, seen[0][i][0] == 'a' ? next_a++ : next_b++);
    }
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < 2 * N; i++)
            free(seen[m][i]);
        ws_close(c[m]);
    }
}
END_TEST

START_TEST(test_presence_spans_nodes_and_forgets_a_dead_one)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    json_int_t ia = whoami(a), ib = whoami(b);
    join(a, "p");
    join(b, "p");
    json_t *m = who_until(a, "p", 2, 1000);
    ck_assert_int_eq(json_array_size(m), 2);
    json_int_t lo = ia < ib ? ia : ib, hi = ia < ib ? ib : ia;
    ck_assert_int_eq(json_integer_value(json_array_get(m, 0)), lo);
    ck_assert_int_eq(json_integer_value(json_array_get(m, 1)), hi);
    json_decref(m);

    /* A leave is seen at once. */
    cli_send(b, "{\"event\":\"leave\",\"data\":{\"room\":\"p\"}}");
    json_decref(cli_expect_event(b, "left"));
    m = who_until(a, "p", 1, 1000);
    ck_assert_int_eq(json_array_size(m), 1);
    json_decref(m);
    join(b, "p");
    json_decref(who_until(a, "p", 2, 1000));

    /* Node 2 dies without a word: its member is gone within node_ttl. */
    kill(n2.pid, SIGKILL);
    int status;
    waitpid(n2.pid, &status, 0);
    m = who(a, "p");
    ck_assert_int_eq(json_array_size(m), 2); /* its heartbeat still runs */
    json_decref(m);
    long long t0 = now_ms();
    size_t n = 2;
    while (n != 1 && now_ms() - t0 < 6000) {
        usleep(200000);
        m = who(a, "p");
        n = json_array_size(m);
        json_decref(m);
    }
    ck_assert_int_eq(n, 1);
    ck_assert_int_ge(now_ms() - t0, 1000);
    ws_close(a);
    ws_close(b);
    start_node(&n2); /* for teardown */
}
END_TEST

/* Says into the room from a until b hears it: the time it took. */
static long long until_crossing(ws_client *a, ws_client *b, int max_ms)
{
    long long t0 = now_ms();
    char text[32];
    for (int i = 0; now_ms() - t0 < max_ms; i++) {
        snprintf(text, sizeof(text), "probe%d", i);
        say(a, "f", text);
        ws_frame f;
        while (ws_recv_message(b, 100, &f) == 1) {
            bool hit = memmem(f.data, f.len, "\"said\"", 6) != NULL;
            ws_frame_free(&f);
            if (hit)
                return now_ms() - t0;
        }
    }
    ck_abort_msg("cross-node delivery did not come back in %d ms", max_ms);
    return -1;
}

/* Drains a's messages (its own `said` or exceptions). */
static void drain(ws_client *c)
{
    ws_frame f;
    while (ws_recv_message(c, 50, &f) == 1)
        ws_frame_free(&f);
}

START_TEST(test_redis_killed_and_restarted)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    join(a, "f");
    join(b, "f");
    redis_kill(&redis);
    ck_assert(srv_log_wait(&n1, "lost the broker", 1, 5000));
    /* Local service goes on; a room message needs the broker. */
    expect_echo(a);
    expect_echo(b);
    say(a, "f", "lost");
    json_t *e = cli_expect_event(a, "exception");
    const char *text = json_string_value(
        json_object_get(json_object_get(e, "data"), "message"));
    ck_assert_msg(strstr(text, "unavailable"), "%s", text);
    json_decref(e);
    redis_start(&redis);
    long long ms = until_crossing(a, b, 10000);
    ck_assert(srv_log_wait(&n1, "broker back", 1, 5000));
    ck_assert(srv_log_wait(&n2, "broker back", 1, 5000));
    /* Once each: lost, back. */
    ck_assert_msg(!srv_log_wait(&n1, "lost the broker", 2, 10), "%s",
                  srv_logtail(&n1));
    fprintf(stderr, "cluster: back %lld ms after the restart\n", ms);
    drain(a);
    /* The presence came back with the reconnect. */
    json_t *m = who_until(a, "f", 2, 2000);
    ck_assert_int_eq(json_array_size(m), 2);
    json_decref(m);
    ws_close(a);
    ws_close(b);
}
END_TEST

START_TEST(test_redis_paused)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    join(a, "f");
    join(b, "f");
    kill(redis.pid, SIGSTOP);
    say(a, "f", "while paused");
    /* command_timeout (1 s) ends the wait for the reply. */
    ck_assert(srv_log_wait(&n1, "lost the broker", 1, 5000));
    expect_echo(a);
    expect_echo(b);
    kill(redis.pid, SIGCONT);
    until_crossing(a, b, 10000);
    ws_close(a);
    ws_close(b);
}
END_TEST

START_TEST(test_subscribers_killed)
{
    ws_client *a = cli_connect(&n1), *b = cli_connect(&n2);
    join(a, "f");
    join(b, "f");
    ck_assert_int_eq(redis_cli(&redis, "CLIENT KILL TYPE pubsub"), 0);
    ck_assert(srv_log_wait(&n2, "lost the broker", 1, 5000));
    until_crossing(a, b, 10000);
    ck_assert(srv_log_wait(&n2, "broker back", 1, 5000));
    ws_close(a);
    ws_close(b);
}
END_TEST

START_TEST(test_bad_bus_input_is_counted_and_dropped)
{
    ws_client *a = cli_connect(&n1);
    join(a, "bad");
    synced(a, "bad", 1);
    ck_assert_int_eq(redis_cli(&redis, "PUBLISH sb:r:chat:bad garbage"), 0);
    ck_assert_int_eq(
        redis_cli(&redis, "PUBLISH sb:b 'sb1 b 0 default\n{\"x\":'"), 0);
    ck_assert_int_eq(
        redis_cli(&redis, "PUBLISH sb:n:1 'sb1 s 4294967297\nnot json'"), 0);
    ck_assert(srv_log_wait(&n1, "dropped a bad message", 2, 5000));
    cli_expect_nothing(a, 200);
    expect_echo(a);
    /* A good one still goes through. */
    say(a, "bad", "fine");
    expect_said(a, "fine");
    ws_close(a);
}
END_TEST

START_TEST(test_wrong_password_is_a_clear_refusal)
{
    char dir[] = "/tmp/sb-pw-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], pw[300], text[1024];
    snprintf(pw, sizeof(pw), "%s/pw", dir);
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    FILE *f = fopen(pw, "w");
    fputs("not-the-password\n", f);
    fclose(f);
    f = fopen(ini, "w");
    fprintf(f,
            "[server]\nhost = 127.0.0.1\nport = %d\n[cluster]\nredis = "
            "unix:%s\npassword_file = pw\n",
            sb_test_free_port(), redis.sock);
    fclose(f);
    /* -t needs no Redis: it only reads the file. */
    const char *check[] = {"-t", "-c", ini, NULL};
    ck_assert_int_eq(srv_run(check, text, sizeof(text)), 0);
    const char *run[] = {"-c", ini, NULL};
    ck_assert_int_eq(srv_run(run, text, sizeof(text)), 1);
    ck_assert_msg(strstr(text, "Redis refused the password"), "%s", text);
    ck_assert_msg(!strstr(text, "not-the-password"), "%s", text);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("two nodes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ids_are_cluster_unique_and_js_safe);
    tcase_add_test(tc, test_room_broadcast_send_close_cross_over);
    tcase_add_test(tc, test_one_order_for_every_member);
    tcase_add_test(tc, test_presence_spans_nodes_and_forgets_a_dead_one);
    tcase_add_test(tc, test_redis_killed_and_restarted);
    tcase_add_test(tc, test_redis_paused);
    tcase_add_test(tc, test_subscribers_killed);
    tcase_add_test(tc, test_bad_bus_input_is_counted_and_dropped);
    tcase_add_test(tc, test_wrong_password_is_a_clear_refusal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!redis_available()) {
        fprintf(stderr, "redis-server or redis-cli missing: skipped\n");
        return 77;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/*
 * Session recovery with [cluster] (issue 13): two real switchboard nodes
 * and a private redis-server, history and sessions in Redis. A client
 * drops from one node and resumes on the other: recovered whole with
 * exactly the missing messages, or recovered:false (more than
 * history_size or max_recover missed, history expired, Redis emptied: a
 * new epoch), or a fresh session (unknown or reused token, another
 * identity); a resume racing live traffic from the other node loses and
 * duplicates nothing; a node's SIGTERM (1012) keeps its sessions in Redis;
 * a node whose subscription is killed fills the gap from the stream or
 * tells its members sb:resync. The room frames are byte for byte those of
 * one process. Live sessions: a node killed with SIGKILL while its clients
 * are in a room with plugin state, and they resume on the other node with
 * exactly what they missed; a resume that takes over a connection still
 * open (closed with 1008, its drop keeps nothing, the token used); what
 * the live records cost in Redis writes. Skipped (77) without
 * redis-server.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "session_client.h"

#define AUTH "[plugin.auth]\nfile = %P/auth.so\nsecret = sekret\n"

static sb_redis redis;
static sb_srv n1, n2;
static char conf_text[2048];

static void start_node(sb_srv *s)
{
    srv_start(s, "shutdown_timeout = 2\n", conf_text);
    ck_assert_msg(srv_log_wait(s, "connected to Redis", 1, 5000), "%s",
                  srv_logtail(s));
}

/* Redis and two nodes with `recovery` ([recovery] keys) and `plugins`. */
/* Before a receive fails: what both nodes logged. */
static void print_logs(void)
{
    fprintf(stderr, "node 1:\n%s\n", srv_logtail(&n1));
    fprintf(stderr, "node 2:\n%s\n", srv_logtail(&n2));
}

static void up(const char *recovery, const char *plugins)
{
    cli_on_failure(print_logs);
    redis_start(&redis);
    snprintf(conf_text, sizeof(conf_text),
             "[cluster]\nredis = unix:%s\nnode_ttl = 3s\nprobe_interval = "
             "500ms\ncommand_timeout = 1s\nconnect_timeout = 500ms\n"
             "reconnect_min = 300ms\nreconnect_max = 1s\n[recovery]\n%s%s",
             redis.sock, recovery, plugins);
    start_node(&n1);
    start_node(&n2);
}

static void down(void)
{
    srv_stop(&n1);
    srv_stop(&n2);
    redis_free(&redis);
}

START_TEST(test_recover_on_the_other_node)
{
    up("", CHAT SESSIONS);
    sess a, b, a2, c;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    ck_assert_int_eq(a.offset, 0);
    cli_send(a.ws, "{\"event\":\"keep\",\"data\":{\"score\":7},\"id\":1}");
    json_decref(sess_expect(a.ws, "kept"));
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    ck_assert_str_eq(a.epoch, b.epoch);
    sess_say(b.ws, 1);
    /* Byte for byte the frame of one process. */
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(a.ws, SB_TIMEOUT, &f), 1);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"event\":\"said\",\"data\":{\"room\":\"lobby\",\"from\":%lld,"
             "\"text\":\"m1\"},\"room\":\"chat:lobby\",\"offset\":1}",
             (long long)b.id);
    ck_assert_int_eq(f.len, strlen(want));
    ck_assert(memcmp(f.data, want, f.len) == 0);
    ws_frame_free(&f);
    a.offset = 1;
    sess_expect_said(&b, 1, 1);
    sess_drop(&a, 150);
    for (int i = 2; i <= 4; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, i, i);
    }
    /* On node 2. */
    sess_open(&a2, &n2, NULL);
    json_t *frame;
    json_t *d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    json_t *l = sess_lobby(d);
    ck_assert(json_is_true(json_object_get(l, "recovered")));
    ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")), 4);
    ck_assert_str_eq(json_string_value(json_object_get(l, "epoch")), a.epoch);
    json_decref(frame);
    for (int i = 2; i <= 4; i++)
        sess_expect_said(&a2, i, i);
    json_t *h = sess_expect(a2.ws, "resumed_hook");
    json_t *hd = json_object_get(h, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(hd, "previous")), a.id);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(hd, "state"), "score")),
                     7);
    json_decref(h);
    cli_expect_nothing(a2.ws, 200);
    sess_say(b.ws, 5);
    sess_expect_said(&b, 5, 5);
    sess_expect_said(&a2, 5, 5);
    /* What a client sends right after its sb:resume waits for the answer,
     * then runs in order, in the rooms given back. */
    a2.offset = 5;
    snprintf(a2.epoch, sizeof(a2.epoch), "%s", a.epoch);
    sess_drop(&a2, 150);
    sess_say(b.ws, 6);
    sess_expect_said(&b, 6, 6);
    sess a3;
    sess_open(&a3, &n1, NULL);
    json_t *req = json_pack("{s:s,s:{s:s,s:{s:{s:s,s:I}}}}", "event",
                            "sb:resume", "data", "token", a2.token, "rooms",
                            "chat:lobby", "epoch", a2.epoch, "offset", 5);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    cli_send(a3.ws, text);
    free(text);
    cli_send(a3.ws, "{\"event\":\"rooms\"}");
    frame = sess_expect(a3.ws, "sb:resumed");
    d = json_object_get(frame, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a2.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
    json_decref(frame);
    sess_expect_said(&a3, 6, 6);
    json_decref(sess_expect(a3.ws, "resumed_hook"));
    json_t *rooms = sess_expect(a3.ws, "rooms");
    char *dump = json_dumps(json_object_get(rooms, "data"), JSON_COMPACT);
    ck_assert_msg(strstr(dump, "lobby"), "%s", dump);
    free(dump);
    json_decref(rooms);
    ws_close(a3.ws);
    /* Single use, on either node, twice. */
    for (int i = 0; i < 2; i++) {
        sess_open(&c, i ? &n2 : &n1, NULL);
        d = sess_resume(&c, &a, &frame);
        ck_assert(json_is_null(json_object_get(d, "previous")));
        ck_assert_uint_eq(json_object_size(json_object_get(d, "rooms")), 0);
        json_decref(frame);
        cli_expect_nothing(c.ws, 150);
        ws_close(c.ws);
    }
    ws_close(a2.ws);
    ws_close(b.ws);
    down();
}
END_TEST

/* Drops `a` (on node 1, at the lobby's offset after one message), has `b`
 * on node 2 say `missed` more, waits, calls `between`, and resumes on
 * node 2: the answer for chat:lobby (decref *frame). */
static char missed_epoch[32];

static json_t *miss(int missed, int wait_ms, void (*between)(void), sess *a2,
                    json_t **frame)
{
    sess a, b;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    sess_say(b.ws, 0);
    sess_expect_said(&a, a.offset + 1, 0);
    sess_expect_said(&b, b.offset + 1, 0);
    snprintf(missed_epoch, sizeof(missed_epoch), "%s", a.epoch);
    sess_drop(&a, 150);
    for (int i = 1; i <= missed; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, b.offset + 1, i);
    }
    usleep((useconds_t)wait_ms * 1000);
    if (between)
        between();
    sess_open(a2, &n2, NULL);
    json_t *d = sess_resume(a2, &a, frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ws_close(b.ws);
    return sess_lobby(d);
}

static void drop_history(void)
{
    ck_assert_int_eq(redis_cli(&redis, "DEL sb:hm:chat:lobby sb:hs:chat:lobby"),
                     0);
}

static void flushall(void)
{
    ck_assert_int_eq(redis_cli(&redis, "FLUSHALL"), 0);
}

START_TEST(test_unrecoverable)
{
    up("history_size = 3\nmax_recover = 2\nhistory_ttl = 1\n", CHAT);
    sess a2;
    json_t *frame;
    json_t *l = miss(2, 0, NULL, &a2, &frame);
    ck_assert(json_is_true(json_object_get(l, "recovered")));
    json_int_t top = json_integer_value(json_object_get(l, "offset"));
    json_decref(frame);
    sess_expect_said(&a2, top - 1, 1);
    sess_expect_said(&a2, top, 2);
    cli_expect_nothing(a2.ws, 100);
    ws_close(a2.ws);
    /* Over max_recover (within history_size). */
    l = miss(3, 0, NULL, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    /* History expired (history_ttl with no message nor join). */
    l = miss(2, 2500, NULL, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    down();

    up("history_size = 3\nmax_recover = 100\n", CHAT);
    /* More than history_size missed. */
    l = miss(4, 0, NULL, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    /* The room's history lost (its keys gone): a new epoch. */
    l = miss(1, 0, drop_history, &a2, &frame);
    ck_assert(json_is_false(json_object_get(l, "recovered")));
    ck_assert_str_ne(json_string_value(json_object_get(l, "epoch")),
                     missed_epoch);
    json_decref(frame);
    cli_expect_nothing(a2.ws, 200);
    ws_close(a2.ws);
    /* Redis emptied (FLUSHALL, or restarted empty): the sessions went with
     * it, a fresh session. */
    sess a, x;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    sess_drop(&a, 150);
    flushall();
    sess_open(&x, &n2, NULL);
    json_t *d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    cli_expect_nothing(x.ws, 200);
    ws_close(x.ws);
    down();
}
END_TEST

START_TEST(test_epoch_change_is_a_resync)
{
    up("", CHAT);
    sess a, b;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    sess_say(b.ws, 1);
    sess_expect_said(&a, 1, 1);
    sess_expect_said(&b, 1, 1);
    flushall();
    sess_say(b.ws, 2);
    json_t *v = sess_expect(a.ws, "sb:resync");
    json_t *d = json_object_get(v, "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "room")),
                     "chat:lobby");
    ck_assert_str_ne(json_string_value(json_object_get(d, "epoch")), a.epoch);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "offset")), 0);
    json_decref(v);
    sess_expect_said(&a, 1, 2);
    json_decref(sess_expect(b.ws, "sb:resync"));
    sess_expect_said(&b, 1, 2);
    ws_close(a.ws);
    ws_close(b.ws);
    down();
}
END_TEST

START_TEST(test_tokens)
{
    up("", AUTH CHAT);
    sess a, x, a2;
    json_t *frame;
    sess_open(&x, &n1, ALICE);
    sess fake = {0};
    snprintf(fake.token, sizeof(fake.token), "AAAAAAAAAAAAAAAAAAAAAAAA");
    snprintf(fake.epoch, sizeof(fake.epoch), "e");
    json_t *d = sess_resume(&x, &fake, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);
    /* Alice drops on node 1; Bob with her token on node 2 resumes nothing
     * and leaves the session to her. */
    sess_open(&a, &n1, ALICE);
    sess_join_lobby(&a, true);
    sess_drop(&a, 150);
    sess_open(&x, &n2, BOB);
    d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    cli_expect_nothing(x.ws, 100);
    ws_close(x.ws);
    sess_open(&a2, &n2, ALICE);
    d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
    json_decref(frame);
    ws_close(a2.ws);
    /* Used: a fresh session on node 1. */
    sess_open(&x, &n1, ALICE);
    d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);
    down();
}
END_TEST

/* ---- a resume racing live traffic from the other node ---- */

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
    const char *join = "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"}}";
    ws_send_text(c, join, strlen(join));
    for (int i = 1; i <= p->count; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":"
                 "\"m%d\"}}",
                 i);
        ws_send_text(c, msg, strlen(msg));
        if (i % 20 == 0)
            usleep(2000);
    }
    while (ws_recv_message(c, 300, &f) == 1)
        ws_frame_free(&f);
    ws_close(c);
    return NULL;
}

START_TEST(test_resume_races_live_traffic)
{
    up("history_size = 1000\nmax_recover = 1000\n", CHAT);
    for (int round = 0; round < 20; round++) {
        sess a, a2;
        sess_open(&a, &n1, NULL);
        sess_join_lobby(&a, true);
        json_int_t start = a.offset;
        struct publisher p = {n2.port, 200};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, publish, &p), 0);
        int seen = 0;
        while (seen < 3 + round * 2) {
            json_t *v = cli_recv_json(a.ws, SB_TIMEOUT, "said");
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
        sess_drop(&a, 150);
        /* Resume on node 1 again (even rounds) or node 2 (odd ones). */
        sess_open(&a2, round % 2 ? &n2 : &n1, NULL);
        json_t *frame;
        json_t *d = sess_resume(&a2, &a, &frame);
        ck_assert_msg(json_is_true(json_object_get(sess_lobby(d), "recovered")),
                      "round %d", round);
        json_decref(frame);
        json_int_t last = a.offset;
        while (last < start + p.count) {
            json_t *v = cli_recv_json(a2.ws, SB_TIMEOUT, "the rest");
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
    down();
}
END_TEST

/* SIGTERM closes with 1012 and keeps the sessions in Redis: the client
 * resumes on the other node. */
START_TEST(test_sigterm_then_resume_elsewhere)
{
    up("", CHAT);
    sess a, b, a2;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    sess_say(b.ws, 1);
    sess_expect_said(&a, 1, 1);
    sess_expect_said(&b, 1, 1);
    srv_stop(&n1);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(a.ws, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1012);
    ws_close(a.ws);
    for (int i = 2; i <= 3; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, i, i);
    }
    sess_open(&a2, &n2, NULL);
    json_t *frame;
    json_t *d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
    json_decref(frame);
    sess_expect_said(&a2, 2, 2);
    sess_expect_said(&a2, 3, 3);
    ws_close(a2.ws);
    ws_close(b.ws);
    start_node(&n1); /* for down() */
    down();
}
END_TEST

/* Redis paused (SIGSTOP) or gone during a resume: a fresh session within
 * command_timeout (1 s here), never a hang. */
START_TEST(test_redis_down_during_resume)
{
    up("", CHAT);
    for (int pass = 0; pass < 2; pass++) {
        sess a, a2;
        sess_open(&a, &n1, NULL);
        sess_join_lobby(&a, true);
        sess_drop(&a, 150);
        if (pass)
            redis_kill(&redis);
        else
            ck_assert_int_eq(kill(redis.pid, SIGSTOP), 0);
        sess_open(&a2, &n2, NULL);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        json_t *frame;
        json_t *d = sess_resume(&a2, &a, &frame);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert(json_is_null(json_object_get(d, "previous")));
        json_decref(frame);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 +
                  (t1.tv_nsec - t0.tv_nsec) / 1000000;
        ck_assert_msg(ms < 4000, "answered after %ld ms", ms);
        /* The client is served meanwhile (local rooms). */
        cli_send(a2.ws, "{\"event\":\"rooms\"}");
        json_decref(cli_recv_json(a2.ws, SB_TIMEOUT, "rooms"));
        ck_assert(srv_log_wait(&n2, "a fresh session", pass + 1, 3000));
        ws_close(a2.ws);
        if (!pass) {
            ck_assert_int_eq(kill(redis.pid, SIGCONT), 0);
            ck_assert(srv_log_wait(&n2, "broker back", 1, 10000));
            /* Node 1 too may have lost it meanwhile (a command of its own,
             * the heartbeat or a live record's write, waited longer than
             * command_timeout): a join there needs it back. */
            int lost = 0;
            for (const char *p = srv_logtext(&n1);
                 (p = strstr(p, "lost the broker")); p++)
                lost++;
            if (lost)
                ck_assert(srv_log_wait(&n1, "broker back", lost, 10000));
        }
    }
    down();
}
END_TEST

/* Kills node 1's subscriber connection (waiting up to 5 s for it to be
 * back from a previous kill): the one subscribed to four channels (its node's,
 * the broadcasts, chat:lobby and chat:side, which only node 1's client joined:
 * see join_side). */
static void kill_node1_subscriber(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 100); do id=$(redis-cli -s '%s' CLIENT LIST "
             "TYPE pubsub | grep ' sub=4 ' | "
             "sed 's/^id=\\([0-9]*\\) .*/\\1/'); [ -n \"$id\" ] && break; "
             "sleep 0.05; done; [ -n \"$id\" ] && "
             "redis-cli -s '%s' CLIENT KILL ID $id >/dev/null",
             redis.sock, redis.sock);
    ck_assert_int_eq(system(cmd), 0);
}

static void join_side(sess *s)
{
    cli_send(s->ws, "{\"event\":\"join\",\"data\":{\"room\":\"side\"}}");
    json_decref(cli_recv_json(s->ws, SB_TIMEOUT, "sb:joined or joined"));
    json_decref(cli_recv_json(s->ws, SB_TIMEOUT, "sb:joined or joined"));
}

/* Node 1 misses messages while its subscription is away: it fills them
 * from the stream in order, or (the stream no longer has them) tells its
 * members sb:resync. */
START_TEST(test_node_fills_a_gap)
{
    for (int pass = 0; pass < 2; pass++) {
        up(pass ? "history_size = 2\n" : "", CHAT);
        sess a, b;
        sess_open(&a, &n1, NULL);
        sess_join_lobby(&a, true);
        join_side(&a);
        sess_open(&b, &n2, NULL);
        sess_join_lobby(&b, true);
        kill_node1_subscriber();
        for (int i = 1; i <= 5; i++) {
            sess_say(b.ws, i);
            sess_expect_said(&b, i, i);
        }
        if (!pass) {
            for (int i = 1; i <= 5; i++)
                sess_expect_said(&a, i, i);
            ck_assert(srv_log_wait(&n1, "filled from the stream", 1, 1000));
        } else {
            json_t *v = sess_expect(a.ws, "sb:resync");
            json_t *d = json_object_get(v, "data");
            ck_assert_str_eq(json_string_value(json_object_get(d, "epoch")),
                             a.epoch);
            ck_assert_int_eq(json_integer_value(json_object_get(d, "offset")),
                             5);
            json_decref(v);
        }
        sess_say(b.ws, 6);
        sess_expect_said(&b, 6, 6);
        sess_expect_said(&a, 6, 6);
        cli_expect_nothing(a.ws, 100);
        ws_close(a.ws);
        ws_close(b.ws);
        down();
    }
}
END_TEST

/* The node's subscriber connection killed while the other node publishes:
 * its member sees every message in order, or an sb:resync and then the
 * messages after the offset it names. */
START_TEST(test_gap_fill_or_resync)
{
    up("history_size = 1000\n", CHAT);
    sess a, b;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    join_side(&a);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    struct publisher p = {n2.port, 400};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, publish, &p), 0);
    json_int_t last = a.offset;
    int kills = 0, resyncs = 0;
    while (last < p.count) {
        json_t *v = cli_recv_json(a.ws, SB_TIMEOUT, "said");
        const char *e = json_string_value(json_object_get(v, "event"));
        json_int_t off = json_integer_value(json_object_get(v, "offset"));
        if (e && strcmp(e, "sb:resync") == 0) {
            resyncs++;
            last = json_integer_value(
                json_object_get(json_object_get(v, "data"), "offset"));
        } else if (e && strcmp(e, "said") == 0) {
            ck_assert_msg(off == last + 1, "offset %lld after %lld",
                          (long long)off, (long long)last);
            last = off;
            if (kills < 3 && off % 100 == 50) {
                kill_node1_subscriber();
                kills++;
            }
        }
        json_decref(v);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(kills, 3);
    ck_assert_int_eq(last, p.count);
    cli_expect_nothing(a.ws, 100);
    fprintf(stderr, "gap fill: %d subscriber kills, %d resyncs\n", kills,
            resyncs);
    ws_close(a.ws);
    ws_close(b.ws);
    down();
}
END_TEST

/* ---- live sessions: a node that dies, and a takeover ---- */

/* Polls Redis (redis-cli arguments `args`) until its answer contains
 * `needle` (present) or not: the live records are written a few
 * milliseconds after the change that makes them. */
static bool redis_wait(const char *args, const char *needle, bool present,
                       int ms)
{
    char line[1024];
    snprintf(line, sizeof(line), "redis-cli -s '%s' %s", redis.sock, args);
    for (int t = 0; t <= ms; t += 20) {
        FILE *p = popen(line, "r");
        char out[8192];
        size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
        if (p)
            pclose(p);
        out[n] = 0;
        if ((strstr(out, needle) != NULL) == present)
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static unsigned node_of(json_int_t id)
{
    return (unsigned)((unsigned long long)id >> 32);
}

/* `s`'s live record (on its node) contains `needle`, or is gone. */
static bool live_record_has(const sess *s, const char *needle)
{
    char args[256];
    snprintf(args, sizeof(args), "HGET sb:ls:%u %s", node_of(s->id), s->token);
    return redis_wait(args, needle, true, 5000);
}

static bool live_record_gone(const sess *s)
{
    char args[256];
    snprintf(args, sizeof(args), "HEXISTS sb:ls:%u %s", node_of(s->id),
             s->token);
    return redis_wait(args, "0", true, 5000);
}

static bool kept_session_exists(const sess *s)
{
    char args[256];
    snprintf(args, sizeof(args), "EXISTS sb:s:%s", s->token);
    return redis_wait(args, "1", true, 0);
}

static void keep_state(sess *s, int score)
{
    char msg[128];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"keep\",\"data\":{\"score\":%d},\"id\":1}", score);
    cli_send(s->ws, msg);
    json_decref(sess_expect(s->ws, "kept"));
}

static void expect_hook_state(sess *s, json_int_t previous, int score)
{
    json_t *h = sess_expect(s->ws, "resumed_hook");
    json_t *hd = json_object_get(h, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(hd, "previous")),
                     previous);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(hd, "state"), "score")),
                     score);
    json_decref(h);
}

/* How many times Redis ran `cmd` (INFO commandstats; a script's calls
 * included). */
static long redis_calls(const char *cmd)
{
    char line[512], out[16384];
    snprintf(line, sizeof(line), "redis-cli -s '%s' INFO commandstats",
             redis.sock);
    FILE *p = popen(line, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    pclose(p);
    out[n] = 0;
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    const char *at = strstr(out, key);
    return at ? atol(at + strlen(key)) : 0;
}

/* What the live records cost (their writes are the only HSET once the
 * rooms have their positions): a connect and its first message (a join),
 * a join, a leave, a state change: at most one write each (HSET, from
 * the write script), fewer when they come within the coalescing window;
 * room messages none. */
START_TEST(test_live_record_writes)
{
    up("", CHAT SESSIONS);
    sess a, b;
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    join_side(&b); /* the rooms' positions are made (an HSET of their own) */
    ck_assert(live_record_has(&b, "chat:side"));
    long h0 = redis_calls("hset");
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    ck_assert(live_record_has(&a, "chat:lobby"));
    ck_assert_int_eq(redis_calls("hset") - h0, 1);
    keep_state(&a, 1);
    ck_assert(live_record_has(&a, "\"score\":1"));
    ck_assert_int_eq(redis_calls("hset") - h0, 2);
    cli_send(a.ws, "{\"event\":\"join\",\"data\":{\"room\":\"side\"}}");
    json_decref(cli_recv_json(a.ws, SB_TIMEOUT, "sb:joined or joined"));
    json_decref(cli_recv_json(a.ws, SB_TIMEOUT, "sb:joined or joined"));
    ck_assert(live_record_has(&a, "chat:side"));
    ck_assert_int_eq(redis_calls("hset") - h0, 3);
    cli_send(a.ws, "{\"event\":\"leave\",\"data\":{\"room\":\"side\"}}");
    json_decref(cli_recv_json(a.ws, SB_TIMEOUT, "left"));
    char args[256];
    snprintf(args, sizeof(args), "HGET sb:ls:%u %s", node_of(a.id), a.token);
    ck_assert(redis_wait(args, "chat:side", false, 5000));
    ck_assert_int_eq(redis_calls("hset") - h0, 4);
    /* Three state changes in a row: one write. */
    for (int i = 2; i <= 4; i++)
        cli_send(a.ws, "{\"event\":\"keep\",\"data\":{\"score\":9},\"id\":2}");
    for (int i = 2; i <= 4; i++)
        json_decref(sess_expect(a.ws, "kept"));
    ck_assert(live_record_has(&a, "\"score\":9"));
    usleep(100 * 1000);
    long h1 = redis_calls("hset");
    ck_assert_msg(h1 - h0 <= 7 && h1 - h0 >= 5, "%ld writes", h1 - h0);
    /* Room messages: no write. */
    for (int i = 1; i <= 20; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, i, i);
        sess_expect_said(&a, i, i);
    }
    usleep(100 * 1000);
    ck_assert_int_eq(redis_calls("hset"), h1);
    ws_close(a.ws);
    ws_close(b.ws);
    down();
}
END_TEST

/* Node 1 is killed (SIGKILL: no drop, no SIGTERM save) while its clients
 * are in a room with plugin state: their live records stay in Redis, and
 * they resume on node 2 with exactly what was published meanwhile. */
START_TEST(test_killed_node_sessions_live_on)
{
    up("", CHAT SESSIONS);
    sess a, c, b, a2, c2, x;
    sess_open(&a, &n1, NULL);
    /* A cluster's token names the node of its live record. */
    char suffix[16];
    snprintf(suffix, sizeof(suffix), ".%u", node_of(a.id));
    ck_assert_uint_eq(strlen(a.token), 24 + strlen(suffix));
    ck_assert_str_eq(a.token + 24, suffix);
    sess_join_lobby(&a, true);
    keep_state(&a, 7);
    sess_open(&c, &n1, NULL);
    sess_join_lobby(&c, true);
    keep_state(&c, 8);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    sess_say(b.ws, 1);
    sess_expect_said(&a, 1, 1);
    sess_expect_said(&c, 1, 1);
    sess_expect_said(&b, 1, 1);
    ck_assert_msg(live_record_has(&a, "\"score\":7"), "no live record");
    ck_assert(live_record_has(&a, "chat:lobby"));
    ck_assert(live_record_has(&c, "\"score\":8"));
    int status = 0;
    ck_assert_int_eq(sb_test_stop(n1.pid, SIGKILL, 5000, &status), 0);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char rm[400];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", n1.dir);
    ck_assert_int_eq(system(rm), 0);
    ck_assert_int_eq(ws_wait_eof(a.ws, SB_TIMEOUT), 0);
    ck_assert_int_eq(ws_wait_eof(c.ws, SB_TIMEOUT), 0);
    ws_close(a.ws);
    ws_close(c.ws);
    for (int i = 2; i <= 4; i++) {
        sess_say(b.ws, i);
        sess_expect_said(&b, i, i);
    }
    /* Both come back on node 2: recovered whole, the state back. */
    sess *olds[] = {&a, &c}, *news[] = {&a2, &c2};
    for (int k = 0; k < 2; k++) {
        sess_open(news[k], &n2, NULL);
        json_t *frame;
        json_t *d = sess_resume(news[k], olds[k], &frame);
        ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")),
                         olds[k]->id);
        json_t *l = sess_lobby(d);
        ck_assert(json_is_true(json_object_get(l, "recovered")));
        ck_assert_int_eq(json_integer_value(json_object_get(l, "offset")), 4);
        json_decref(frame);
        for (int i = 2; i <= 4; i++)
            sess_expect_said(news[k], i, i);
        expect_hook_state(news[k], olds[k]->id, 7 + k);
        cli_expect_nothing(news[k]->ws, 150);
    }
    sess_say(b.ws, 5);
    sess_expect_said(&b, 5, 5);
    sess_expect_said(&a2, 5, 5);
    sess_expect_said(&c2, 5, 5);
    /* Single use. */
    sess_open(&x, &n2, NULL);
    json_t *frame;
    json_t *d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);
    /* The new connection's record is on node 2, with the state given
     * back; a clean close (1000) deletes it and keeps nothing. */
    ck_assert(live_record_has(&a2, "\"score\":7"));
    ck_assert_int_eq(ws_send_close(a2.ws, 1000, ""), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(a2.ws, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(a2.ws);
    ck_assert(live_record_gone(&a2));
    ck_assert(!kept_session_exists(&a2));
    ws_close(c2.ws);
    ws_close(b.ws);
    start_node(&n1); /* for down() */
    down();
}
END_TEST

/* A resume while the old connection is still open (a half-open TCP
 * connection its node has not noticed): the resume takes the session, the
 * old connection is closed with 1008 and its drop keeps nothing; the token
 * is used. Across nodes and on the same node. */
START_TEST(test_resume_takes_over_an_open_connection)
{
    up("", CHAT SESSIONS);
    sess a, b, a2, x, a3;
    sess_open(&a, &n1, NULL);
    sess_join_lobby(&a, true);
    keep_state(&a, 3);
    sess_open(&b, &n2, NULL);
    sess_join_lobby(&b, true);
    ck_assert(live_record_has(&a, "\"score\":3"));
    sess_open(&a2, &n2, NULL);
    json_t *frame;
    json_t *d = sess_resume(&a2, &a, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
    json_decref(frame);
    expect_hook_state(&a2, a.id, 3);
    int code = 0;
    char reason[64];
    ck_assert_int_eq(
        ws_expect_close(a.ws, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 1008);
    ck_assert_str_eq(reason, "Session resumed elsewhere");
    ws_close(a.ws);
    ck_assert(srv_log_wait(&n1, "disconnected from gateway 'default' with", 1,
                           SB_TIMEOUT));
    usleep(100 * 1000);
    /* Its drop wrote nothing: no kept session, no live record. */
    ck_assert(live_record_gone(&a));
    ck_assert(!kept_session_exists(&a));
    /* The room's messages reach the new connection, once. */
    sess_say(b.ws, 1);
    sess_expect_said(&b, 1, 1);
    sess_expect_said(&a2, 1, 1);
    cli_expect_nothing(a2.ws, 100);
    /* The token cannot be used again. */
    sess_open(&x, &n1, NULL);
    d = sess_resume(&x, &a, &frame);
    ck_assert(json_is_null(json_object_get(d, "previous")));
    json_decref(frame);
    ws_close(x.ws);
    /* On the same node: a3 on node 2 takes a2's session while a2 is open
     * there. */
    snprintf(a2.epoch, sizeof(a2.epoch), "%s", a.epoch);
    ck_assert(live_record_has(&a2, "\"score\":3"));
    sess_open(&a3, &n2, NULL);
    d = sess_resume(&a3, &a2, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "previous")), a2.id);
    ck_assert(json_is_true(json_object_get(sess_lobby(d), "recovered")));
    json_decref(frame);
    expect_hook_state(&a3, a2.id, 3);
    ck_assert_int_eq(ws_expect_close(a2.ws, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1008);
    ws_close(a2.ws);
    usleep(200 * 1000);
    ck_assert(!kept_session_exists(&a2));
    sess_say(b.ws, 2);
    sess_expect_said(&b, 2, 2);
    sess_expect_said(&a3, 2, 2);
    cli_expect_nothing(a3.ws, 100);
    ws_close(a3.ws);
    /* The old connection drops without a close (1006, which keeps a
     * session) and its node never hears of the takeover (it is stopped
     * meanwhile, and its subscriptions killed): the record was taken, so
     * the drop writes nothing. */
    sess o, o2;
    sess_open(&o, &n1, NULL);
    sess_join_lobby(&o, true);
    keep_state(&o, 4);
    ck_assert(live_record_has(&o, "\"score\":4"));
    ck_assert_int_eq(kill(n1.pid, SIGSTOP), 0);
    /* The subscriptions go too, so that node 1 never hears of it: its
     * client's drop (1006) is what it sees. */
    ck_assert_int_eq(redis_cli(&redis, "CLIENT KILL TYPE pubsub"), 0);
    sess_open(&o2, &n2, NULL);
    json_t *dd = sess_resume(&o2, &o, &frame);
    ck_assert_int_eq(json_integer_value(json_object_get(dd, "previous")), o.id);
    json_decref(frame);
    expect_hook_state(&o2, o.id, 4);
    ws_close(o.ws);
    ck_assert_int_eq(kill(n1.pid, SIGCONT), 0);
    char gone[128];
    snprintf(gone, sizeof(gone),
             "client %lld (127.0.0.1) disconnected from gateway 'default' "
             "with 1006",
             (long long)o.id);
    ck_assert_msg(srv_log_wait(&n1, gone, 1, SB_TIMEOUT), "%s",
                  srv_logtail(&n1));
    ck_assert(live_record_gone(&o));
    usleep(100 * 1000);
    ck_assert(!kept_session_exists(&o));
    sess_open(&x, &n1, NULL);
    dd = sess_resume(&x, &o, &frame);
    ck_assert(json_is_null(json_object_get(dd, "previous")));
    json_decref(frame);
    ws_close(x.ws);
    ws_close(o2.ws);
    ws_close(b.ws);
    down();
}
END_TEST

int main(void)
{
    if (!redis_available()) {
        fprintf(stderr, "redis-server or redis-cli missing: skipped\n");
        return 77;
    }
    Suite *s = suite_create("recovery_cluster");
    TCase *tc = tcase_create("two nodes");
    tcase_set_timeout(tc, 180);
    /* SB_ONLY=name runs one of them (while chasing a failure). */
    const char *only = getenv("SB_ONLY");
#define ADD(t)                                                                 \
    if (!only || strcmp(only, #t) == 0)                                        \
    tcase_add_test(tc, t)
    ADD(test_recover_on_the_other_node);
    ADD(test_unrecoverable);
    ADD(test_epoch_change_is_a_resync);
    ADD(test_tokens);
    ADD(test_resume_races_live_traffic);
    ADD(test_sigterm_then_resume_elsewhere);
    ADD(test_redis_down_during_resume);
    ADD(test_node_fills_a_gap);
    ADD(test_gap_fill_or_resync);
    ADD(test_live_record_writes);
    ADD(test_killed_node_sessions_live_on);
    ADD(test_resume_takes_over_an_open_connection);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

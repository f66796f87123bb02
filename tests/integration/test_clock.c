/*
 * The clock plugin over the wire: subscribers get a `tick` every
 * interval_ms with the wall-clock time, others get nothing, `unsubscribe`
 * and a disconnect end the stream, the one timer stops when the last
 * subscriber is gone, a hot reload hands the subscribers to the new
 * version's timer, and a bad interval_ms fails `switchboard -t`.
 *
 * The plugin logs "timer started" / "timer stopped" at debug level (the
 * harness runs the server with log_level = debug): the tests read the log
 * to see the timer itself, not only its effects.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "harness.h"

#define CLOCK50      "[plugin.clock]\nfile = %P/clock.so\ninterval_ms = 50\n"
#define SUBSCRIBED50 "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":50}}"
#define STARTED      "first subscriber: timer started"
#define STOPPED      "no subscribers left: timer stopped"

static sb_srv srv;

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Waits until the server log holds `needle` at least n times. */
static void wait_log(const char *needle, int n)
{
    ck_assert_msg(srv_log_wait(&srv, needle, n, SB_TIMEOUT),
                  "'%s' not %d times in the log:\n%s", needle, n,
                  srv_logtail(&srv));
}

/* Reads one message; if it is a tick, checks its exact shape and that its
 * time is close to ours, and returns it; else returns -1 with the text in
 * other (when not NULL). */
static long long recv_tick(ws_client *c, char *other, size_t otherlen)
{
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    long long now = -1;
    if (strncmp((char *)f.data, "{\"event\":\"tick\",", 16) == 0) {
        json_t *v = json_loads((char *)f.data, 0, NULL);
        json_int_t t = 0;
        ck_assert_msg(json_unpack(v, "{s:s, s:{s:I !} !}", "event",
                                  &(const char *){0}, "data", "now", &t) == 0,
                      "bad tick: %s", (char *)f.data);
        json_decref(v);
        now = (long long)t;
        /* Generous for valgrind, yet far tighter than any unit mistake
         * (seconds, microseconds, a monotonic clock). */
        long long diff = wall_ms() - now;
        ck_assert_msg(diff >= -50 && diff < 3000,
                      "tick %lld is %lld ms off the wall clock", now, diff);
    } else if (other) {
        snprintf(other, otherlen, "%s", (char *)f.data);
    } else {
        ck_abort_msg("expected a tick, got %s", (char *)f.data);
    }
    ws_frame_free(&f);
    return now;
}

/* Reads messages, skipping ticks, until a non-tick: it must equal want. */
static void expect_after_ticks(ws_client *c, const char *want)
{
    char other[512];
    for (int i = 0; i < 1000; i++) {
        if (recv_tick(c, other, sizeof(other)) < 0) {
            ck_assert_str_eq(other, want);
            return;
        }
    }
    ck_abort_msg("only ticks, never %s", want);
}

START_TEST(test_ticks)
{
    srv_start(&srv, NULL, CLOCK50);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    cli_expect_nothing(a, 200); /* nothing before subscribing */
    ck_assert_int_eq(count(srv_logtext(&srv), STARTED), 0);
    cli_send(a, "{\"event\":\"subscribe\",\"id\":5}");
    cli_expect(a, "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":50},"
                  "\"id\":5}");
    long long first = recv_tick(a, NULL, 0), prev = first;
    for (int i = 1; i < 6; i++) {
        long long now = recv_tick(a, NULL, 0);
        ck_assert_msg(now > prev, "tick %lld after %lld", now, prev);
        prev = now;
    }
    /* Six ticks every 50 ms span at least five intervals, less how late
     * the first one was sent after its due time (the loop's clock is read
     * once per iteration; under valgrind that can be tens of ms). */
    ck_assert_msg(prev - first >= 5 * 50 - 50, "6 ticks in %lld ms",
                  prev - first);
    /* b never subscribed. */
    cli_expect_nothing(b, 0);
    cli_expect_nothing(b, 150);
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_unsubscribe)
{
    srv_start(&srv, NULL, CLOCK50);
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"unsubscribe\"}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"not subscribed\",\"cause\":{\"pattern\":"
                  "\"unsubscribe\"}}}");
    for (int round = 1; round <= 2; round++) {
        cli_send(a, "{\"event\":\"subscribe\"}");
        cli_expect(a, SUBSCRIBED50);
        recv_tick(a, NULL, 0);
        recv_tick(a, NULL, 0);
        recv_tick(a, NULL, 0);
        cli_send(a, "{\"event\":\"unsubscribe\",\"id\":\"u\"}");
        expect_after_ticks(a, "{\"event\":\"unsubscribed\",\"id\":\"u\"}");
        /* No tick after the answer, and the timer is gone. */
        cli_expect_nothing(a, 300);
        wait_log(STOPPED, round);
        ck_assert_int_eq(count(srv_logtext(&srv), STARTED), round);
    }
    cli_send(a, "{\"event\":\"unsubscribe\"}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"not subscribed\",\"cause\":{\"pattern\":"
                  "\"unsubscribe\"}}}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_one_timer_for_all)
{
    srv_start(&srv, NULL, CLOCK50);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ws_client *c = cli_connect(&srv);
    cli_send(a, "{\"event\":\"subscribe\"}");
    cli_expect(a, SUBSCRIBED50);
    cli_send(b, "{\"event\":\"subscribe\"}");
    cli_expect(b, SUBSCRIBED50);
    /* Subscribing twice is one subscription. */
    cli_send(b, "{\"event\":\"subscribe\"}");
    expect_after_ticks(b, SUBSCRIBED50);
    /* The same ticks reach both: find b's next one in a's stream. */
    long long tb[3];
    for (int i = 0; i < 3; i++)
        tb[i] = recv_tick(b, NULL, 0);
    long long ta;
    int skipped = 0;
    while ((ta = recv_tick(a, NULL, 0)) < tb[0])
        ck_assert_int_lt(++skipped, 100);
    ck_assert_int_eq(ta, tb[0]);
    ck_assert_int_eq(recv_tick(a, NULL, 0), tb[1]);
    ck_assert_int_eq(recv_tick(a, NULL, 0), tb[2]);
    ck_assert_int_eq(count(srv_logtext(&srv), STARTED), 1);

    /* a leaves: b's ticks go on. */
    cli_send(a, "{\"event\":\"unsubscribe\"}");
    expect_after_ticks(a, "{\"event\":\"unsubscribed\"}");
    long long before = wall_ms();
    skipped = 0; /* ticks b had waiting are older: skip them */
    while (recv_tick(b, NULL, 0) <= before)
        ck_assert_int_lt(++skipped, 100);
    recv_tick(b, NULL, 0);
    recv_tick(b, NULL, 0);
    cli_expect_nothing(a, 0);
    ck_assert_int_eq(count(srv_logtext(&srv), STOPPED), 0);

    /* The last subscriber disconnects: the timer stops. */
    ws_close(b);
    wait_log(STOPPED, 1);
    /* ...and a new subscriber starts it again. */
    cli_send(c, "{\"event\":\"subscribe\"}");
    cli_expect(c, SUBSCRIBED50);
    recv_tick(c, NULL, 0);
    ck_assert_int_eq(count(srv_logtext(&srv), STARTED), 2);
    cli_expect_nothing(a, 100);
    ws_close(a);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* With an hour between ticks, a timer that only noticed its empty room at
 * the next tick would still be running: the stop must come from
 * `unsubscribe` and from the disconnect itself. */
START_TEST(test_stops_at_once)
{
    srv_start(&srv, NULL,
              "[plugin.clock]\nfile = %P/clock.so\ninterval_ms = 3600000\n");
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    cli_send(a, "{\"event\":\"subscribe\"}");
    cli_expect(a,
               "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":3600000}}");
    cli_send(b, "{\"event\":\"subscribe\"}");
    cli_expect(b,
               "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":3600000}}");
    cli_send(a, "{\"event\":\"unsubscribe\"}");
    cli_expect(a, "{\"event\":\"unsubscribed\"}");
    ck_assert_int_eq(count(srv_logtext(&srv), STOPPED), 0); /* b is left */
    cli_send(b, "{\"event\":\"unsubscribe\"}");
    cli_expect(b, "{\"event\":\"unsubscribed\"}");
    wait_log(STOPPED, 1);
    /* Again, the last subscriber now leaving by disconnecting. */
    cli_send(a, "{\"event\":\"subscribe\"}");
    cli_expect(a,
               "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":3600000}}");
    wait_log(STARTED, 2);
    ws_close(a);
    wait_log(STOPPED, 2);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* A hot reload (SIGHUP after the section changed) replaces the instance;
 * the room of subscribers is the host's and stays, and the new version's
 * timer takes over at the new interval. */
START_TEST(test_reload_keeps_subscribers)
{
    srv_start(&srv, NULL, CLOCK50);
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"subscribe\"}");
    cli_expect(a, SUBSCRIBED50);
    recv_tick(a, NULL, 0);

    srv_ini_replace(&srv, "interval_ms = 50\n", "interval_ms = 99\n");
    ck_assert_int_eq(kill(srv.pid, SIGHUP), 0);
    wait_log("now at generation 2", 1);
    wait_log("subscribers kept from before a reload: timer started", 1);

    /* Ticks sent before the swap may still be on their way: skip them. */
    long long swapped = wall_ms(), prev;
    int skipped = 0;
    while ((prev = recv_tick(a, NULL, 0)) <= swapped)
        ck_assert_int_lt(++skipped, 100);
    for (int i = 0; i < 3; i++) {
        long long now = recv_tick(a, NULL, 0);
        ck_assert_msg(now - prev >= 99 - 20,
                      "ticks %lld ms apart after the "
                      "reload to 99 ms",
                      now - prev);
        prev = now;
    }
    ws_client *b = cli_connect(&srv);
    cli_send(b, "{\"event\":\"subscribe\"}");
    cli_expect(b, "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":99}}");
    ws_close(b);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_default_interval)
{
    srv_start(&srv, NULL, "[plugin.clock]\nfile = %P/clock.so\n");
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"subscribe\"}");
    cli_expect(a, "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":1000}}");
    long long t0 = recv_tick(a, NULL, 0);
    long long t1 = recv_tick(a, NULL, 0);
    ck_assert_msg(t1 - t0 >= 950 && t1 - t0 < 3000, "ticks %lld ms apart",
                  t1 - t0);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* `switchboard -t` on a config whose clock section holds `keys`: returns
 * its exit status, and its output in out. */
static int check_config(const char *keys, char *out, size_t outlen)
{
    char dir[] = "/tmp/sb-it-clock-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300], text[1024];
    snprintf(path, sizeof(path), "%s/t.ini", dir);
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.clock]\nfile = %s/clock.so\n%s",
             SB_TEST_PLUGIN_DIR, keys);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    const char *args[] = {"-t", "-c", path, NULL};
    int rc = srv_run(args, out, outlen);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
    return rc;
}

START_TEST(test_bad_interval)
{
    char out[65536];
    static const struct {
        const char *keys, *reason;
    } bad[] = {
        {"interval_ms = 9\n", "bad value '9' for 'interval_ms' in "
                              "[plugin.clock] (expected an integer from 10 "
                              "to 3600000)"},
        {"interval_ms = 0\n", "bad value '0' for 'interval_ms'"},
        {"interval_ms = -50\n", "bad value '-50' for 'interval_ms'"},
        {"interval_ms = 3600001\n", "bad value '3600001' for 'interval_ms' "
                                    "in [plugin.clock] (expected an integer "
                                    "from 10 to 3600000)"},
        {"interval_ms = 4g\n", "(expected an integer from 10 to 3600000)"},
        /* Not a number: the host's getter names the key. */
        {"interval_ms = soon\n", "interval_ms"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(check_config(bad[i].keys, out, sizeof(out)), 1);
        ck_assert_msg(strstr(out, bad[i].reason), "missing '%s' in:\n%s",
                      bad[i].reason, out);
    }
    static const char *good[] = {"interval_ms = 10\n",
                                 "interval_ms = 3600000\n", ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(check_config(good[i], out, sizeof(out)) == 0,
                      "'%s' refused:\n%s", good[i], out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("clock");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ticks);
    tcase_add_test(tc, test_unsubscribe);
    tcase_add_test(tc, test_one_timer_for_all);
    tcase_add_test(tc, test_stops_at_once);
    tcase_add_test(tc, test_reload_keeps_subscribers);
    tcase_add_test(tc, test_default_interval);
    tcase_add_test(tc, test_bad_interval);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

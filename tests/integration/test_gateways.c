/*
 * Several gateways in one process: [gateway.NAME] sections on another port
 * and on the [server] port with another path, plugins restricted to some
 * of them with `gateways = a, b`, one event name owned by different plugins
 * on different gateways, and a clash on one gateway refused by -t with the
 * gateway named. Per-gateway limits (max_connections → HTTP 503,
 * max_message_size → close 1009) hold on their gateway only, unknown paths
 * get 404 on every port, and broadcasts, guards and hooks stay within the
 * plugin's gateways. Two listeners on one port number and two addresses
 * are each served by their own gateway.
 *
 * The layout every test starts:
 *   default  127.0.0.1:P /       plugin "main" (sdk11)
 *   chat     127.0.0.1:P /chat   plugin "main"; max_connections = 2,
 *                                max_message_size = 1k
 *   side     127.0.0.1:Q /side   plugin "other" (sdk11) and the guard-only
 *                                "sideguard" (denies "nope": true);
 *                                max_connections = 1
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

static sb_srv srv;
static int side_port;

static void start(void)
{
    side_port = sb_test_free_port();
    ck_assert_int_gt(side_port, 0);
    char sections[2048];
    snprintf(sections, sizeof(sections),
             "[gateway.chat]\npath = /chat\nmax_connections = 2\n"
             "max_message_size = 1k\n"
             "[gateway.side]\nport = %d\npath = /side\nmax_connections = 1\n"
             "[plugin.main]\nfile = %%P/test-sdk11.so\njournal = %%J\n"
             "gateways = default, chat\n"
             "[plugin.other]\nfile = %%P/test-sdk11.so\njournal = %%J\n"
             "gateways = side\n"
             "[plugin.sideguard]\nfile = %%P/test-sdk11.so\njournal = %%J\n"
             "role = guard\ndeny_key = nope\ngateways = side\n",
             side_port);
    srv_start(&srv, NULL, sections);
    /* srv_start waits for the [server] port only; the others open in the
     * same breath but, under valgrind, a little later. */
    ck_assert_msg(sb_test_wait_port(side_port, 30000) == 0, "side port: %s",
                  sb_test_error());
    for (int waited = 0; waited < 30000; waited += 10) {
        if (strstr(srv_logtext(&srv), "gateway 'side' listening on "))
            break;
        usleep(10000);
    }
}

static ws_client *open_on(int port, const char *path)
{
    ws_client *c = ws_connect("127.0.0.1", port, path, NULL, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect %d%s: %s", port, path, ws_last_error());
    return c;
}

static int status_of(int port, const char *path)
{
    return ws_connect_status("127.0.0.1", port, path, NULL, SB_TIMEOUT);
}

/* {"id","plugin","gateway"} of the client, as the plugin serving it sees
 * it; returns the id. */
static unsigned long long expect_whoami(ws_client *c, const char *plugin,
                                        const char *gateway)
{
    cli_send(c, "{\"event\":\"whoami\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    json_t *v = json_loadb((const char *)f.data, f.len, 0, NULL);
    ck_assert_msg(v != NULL, "%s", (char *)f.data);
    json_t *d = json_object_get(v, "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "plugin")), plugin);
    ck_assert_str_eq(json_string_value(json_object_get(d, "gateway")), gateway);
    unsigned long long id =
        (unsigned long long)json_integer_value(json_object_get(d, "id"));
    json_decref(v);
    ws_frame_free(&f);
    return id;
}

static void wait_journal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void wait_journal(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ck_assert_msg(srv_journal_wait(&srv, line, SB_TIMEOUT),
                  "'%s' not in journal:\n%s", line, srv_journal(&srv));
}

static bool journal_has(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static bool journal_has(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return strstr(srv_journal(&srv), line) != NULL;
}

/* The same event name ("whoami", and all the others) is owned by "main" on
 * default and chat and by "other" on side; each client reaches the plugin
 * of its own gateway, and client_info names it. */
START_TEST(test_routing_by_gateway)
{
    start();
    ck_assert_msg(strstr(srv_logtext(&srv), "gateway 'side' listening on "),
                  "%s", srv_logtext(&srv));
    ws_client *d = cli_connect(&srv);
    ws_client *c = open_on(srv.port, "/chat");
    ws_client *s = open_on(side_port, "/side?k=v");
    unsigned long long idd = expect_whoami(d, "main", "default");
    unsigned long long idc = expect_whoami(c, "main", "chat");
    unsigned long long ids = expect_whoami(s, "other", "side");

    cli_send(s, "{\"event\":\"info\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(s, SB_TIMEOUT, &f), 1);
    json_t *v = json_loadb((const char *)f.data, f.len, 0, NULL);
    json_t *info = json_object_get(v, "data");
    ck_assert_str_eq(json_string_value(json_object_get(info, "gateway")),
                     "side");
    ck_assert_str_eq(json_string_value(json_object_get(info, "path")), "/side");
    ck_assert_str_eq(json_string_value(json_object_get(info, "query")), "k=v");
    json_decref(v);
    ws_frame_free(&f);
    cli_send(c, "{\"event\":\"info\"}");
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    v = json_loadb((const char *)f.data, f.len, 0, NULL);
    info = json_object_get(v, "data");
    ck_assert_str_eq(json_string_value(json_object_get(info, "gateway")),
                     "chat");
    ck_assert_str_eq(json_string_value(json_object_get(info, "path")), "/chat");
    json_decref(v);
    ws_frame_free(&f);

    /* Connect hooks ran in the plugins of the client's gateway only. */
    ck_assert(journal_has("main connect %llu\n", idd));
    ck_assert(journal_has("main connect %llu\n", idc));
    ck_assert(journal_has("other connect %llu\n", ids));
    ck_assert(!journal_has("other connect %llu\n", idd));
    ck_assert(!journal_has("main connect %llu\n", ids));

    /* Ids are process-wide: a plugin may look up or send to a client of
     * another gateway by id. */
    char msg[256];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"send\",\"data\":{\"to\":%llu,\"event\":\"x\"}}",
             idd);
    cli_send(s, msg);
    cli_expect(s, "{\"event\":\"send\",\"data\":{\"rc\":0}}");
    cli_expect(d, "{\"event\":\"x\"}");

    ws_close(s);
    wait_journal("other disconnect %llu 1006", ids);
    ck_assert(!journal_has("main disconnect %llu", ids));
    ws_close(d);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_paths_and_ports)
{
    start();
    /* Each port serves its own gateways' paths; anything else is 404. */
    ck_assert_int_eq(status_of(srv.port, "/nope"), 404);
    ck_assert_int_eq(status_of(srv.port, "/side"), 404);
    ck_assert_int_eq(status_of(side_port, "/"), 404);
    ck_assert_int_eq(status_of(side_port, "/chat"), 404);
    ck_assert_int_eq(status_of(side_port, "/side/more"), 404);
    ck_assert_int_eq(status_of(srv.port, "/chat"), 101);
    ck_assert_int_eq(status_of(srv.port, "/"), 101);
    ck_assert_int_eq(status_of(side_port, "/side"), 101);
    srv_stop(&srv);
}
END_TEST

/* max_connections is counted per gateway, also between two gateways that
 * share a port. */
START_TEST(test_max_connections_per_gateway)
{
    start();
    ws_client *s1 = open_on(side_port, "/side");
    unsigned long long id1 = expect_whoami(s1, "other", "side");
    ck_assert_int_eq(status_of(side_port, "/side"), 503);
    ck_assert_msg(strstr(srv_logtext(&srv),
                         "max_connections (1) of gateway 'side' reached"),
                  "%s", srv_logtext(&srv));
    /* The other gateways still take clients. */
    ws_client *c1 = open_on(srv.port, "/chat");
    ws_client *c2 = open_on(srv.port, "/chat");
    expect_whoami(c2, "main", "chat");
    ck_assert_int_eq(status_of(srv.port, "/chat"), 503);
    ws_client *d[3];
    for (int i = 0; i < 3; i++) {
        d[i] = cli_connect(&srv);
        expect_whoami(d[i], "main", "default");
    }
    /* A place freed is a place taken again. */
    ws_close(s1);
    wait_journal("other disconnect %llu ", id1);
    ws_client *s2 = open_on(side_port, "/side");
    expect_whoami(s2, "other", "side");
    ws_close(s2);
    ws_close(c1);
    ws_close(c2);
    for (int i = 0; i < 3; i++)
        ws_close(d[i]);
    srv_stop(&srv);
}
END_TEST

/* max_message_size = 1k on chat only: the same 2000-byte message closes a
 * chat client with 1009 and is answered on default, on the same port. */
START_TEST(test_max_message_size_per_gateway)
{
    start();
    ws_client *d = cli_connect(&srv);
    ws_client *c = open_on(srv.port, "/chat");
    ws_client *s = open_on(side_port, "/side");
    char big[2100], want[2100];
    char pad[1901];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = 0;
    snprintf(big, sizeof(big), "{\"event\":\"echo\",\"data\":\"%s\"}", pad);
    snprintf(want, sizeof(want), "{\"event\":\"echo\",\"data\":\"%s\"}", pad);
    cli_send(c, big);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1009);
    ws_close(c);
    cli_send(d, big);
    cli_expect(d, want);
    cli_send(s, big);
    cli_expect(s, want);
    ws_close(d);
    ws_close(s);
    srv_stop(&srv);
}
END_TEST

/* A broadcast reaches the clients of the sending plugin's gateways only;
 * a guard guards its own gateways only. */
START_TEST(test_broadcast_and_guard_per_gateway)
{
    start();
    ws_client *d = cli_connect(&srv);
    ws_client *c = open_on(srv.port, "/chat");
    ws_client *s = open_on(side_port, "/side");
    expect_whoami(d, "main", "default");
    expect_whoami(c, "main", "chat");
    expect_whoami(s, "other", "side");

    cli_send(d, "{\"event\":\"broadcast\",\"data\":{\"data\":\"x\"}}");
    cli_expect(d, "{\"event\":\"broadcast\",\"data\":\"x\"}");
    cli_expect(d, "{\"event\":\"broadcast\",\"data\":{\"count\":2}}");
    cli_expect(c, "{\"event\":\"broadcast\",\"data\":\"x\"}");
    cli_expect_nothing(s, 300);

    cli_send(s, "{\"event\":\"broadcast\",\"data\":{\"data\":\"y\"}}");
    cli_expect(s, "{\"event\":\"broadcast\",\"data\":\"y\"}");
    cli_expect(s, "{\"event\":\"broadcast\",\"data\":{\"count\":1}}");
    cli_expect_nothing(d, 300);
    cli_expect_nothing(c, 100);

    /* sideguard denies "nope" on side, and is not asked elsewhere. */
    ck_assert_int_eq(truncate(srv.journal, 0), 0);
    cli_send(d, "{\"event\":\"echo\",\"data\":{\"nope\":true}}");
    cli_expect(d, "{\"event\":\"echo\",\"data\":{\"nope\":true}}");
    ck_assert(!journal_has("sideguard guard"));
    cli_send(s, "{\"event\":\"echo\",\"data\":{\"nope\":true}}");
    cli_expect(s, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"sideguard denies 'echo'\",\"cause\":{"
                  "\"pattern\":\"echo\",\"data\":{\"nope\":true}}}}");
    /* Guards of a gateway run in config order: other, then sideguard. */
    const char *j = srv_journal(&srv);
    const char *first = strstr(j, "other guard echo\n");
    const char *second = strstr(j, "sideguard guard echo\n");
    ck_assert_msg(first && second && first < second, "%s", j);
    ws_close(d);
    ws_close(c);
    ws_close(s);
    srv_stop(&srv);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* An event name is unique within a gateway: two plugins may own it on
 * disjoint gateways; on a shared one -t refuses, naming the gateway. */
START_TEST(test_event_clash_per_gateway)
{
    char dir[] = "/tmp/sb-it-gw-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[4096], out[65536];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    const char *pd = SB_TEST_PLUGIN_DIR;
    const char *args[] = {"-t", "-c", ini, NULL};

    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[gateway.side]\nport = 4000\n"
             "[gateway.chat]\npath = /chat\n"
             "[plugin.a]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = default, chat\n"
             "[plugin.b]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = side\n",
             pd, dir, pd, dir);
    write_file(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "configuration is valid"), "%s", out);

    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[gateway.side]\nport = 4000\n"
             "[gateway.chat]\npath = /chat\n"
             "[plugin.a]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = default, side\n"
             "[plugin.b]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = chat, side\n",
             pd, dir, pd, dir);
    write_file(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "plugin 'b': cannot load") &&
                      strstr(out, "event 'whoami' is already handled by "
                                  "plugin 'a' (gateway 'side')"),
                  "%s", out);
    /* Without `gateways`, a plugin serves them all: it clashes too. */
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[gateway.side]\nport = 4000\n"
             "[plugin.a]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = side\n"
             "[plugin.b]\nfile = %s/test-sdk11.so\njournal = %s/j\n",
             pd, dir, pd, dir);
    write_file(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "already handled by plugin 'a' (gateway "
                              "'side')"),
                  "%s", out);
    /* A gateway that does not exist. */
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n"
             "[plugin.a]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "gateways = default, elsewhere\n",
             pd, dir);
    write_file(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "unknown gateway 'elsewhere'"), "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* Two listeners on one port number, on two addresses (127.0.0.1 and
 * 127.0.0.2): each serves its own gateway. lws 4.1.6 would hand a request
 * to the first vhost of its context on that port (server.c gives the
 * second a context of its own). */
START_TEST(test_same_port_two_hosts)
{
    int q = sb_test_free_port();
    ck_assert_int_gt(q, 0);
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[gateway.one]\nport = %d\npath = /one\n"
             "[gateway.two]\nhost = 127.0.0.2\nport = %d\npath = /two\n"
             "[plugin.main]\nfile = %%P/test-sdk11.so\njournal = %%J\n",
             q, q);
    srv_start(&srv, NULL, sections);
    ck_assert_msg(srv_log_wait(&srv, "gateway 'two' listening on", 1, 30000),
                  "%s", srv_logtext(&srv));
    for (int i = 0; i < 3; i++) {
        ws_client *one = ws_connect("127.0.0.1", q, "/one", NULL, SB_TIMEOUT);
        ck_assert_msg(one != NULL, "one: %s", ws_last_error());
        ws_client *two = ws_connect("127.0.0.2", q, "/two", NULL, SB_TIMEOUT);
        ck_assert_msg(two != NULL, "two: %s", ws_last_error());
        expect_whoami(one, "main", "one");
        expect_whoami(two, "main", "two");
        ws_close(one);
        ws_close(two);
    }
    ck_assert_int_eq(
        ws_connect_status("127.0.0.2", q, "/one", NULL, SB_TIMEOUT), 404);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", q, "/two", NULL, SB_TIMEOUT), 404);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gateways");
    TCase *tc = tcase_create("gateways");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_routing_by_gateway);
    tcase_add_test(tc, test_paths_and_ports);
    tcase_add_test(tc, test_max_connections_per_gateway);
    tcase_add_test(tc, test_max_message_size_per_gateway);
    tcase_add_test(tc, test_broadcast_and_guard_per_gateway);
    tcase_add_test(tc, test_event_clash_per_gateway);
    tcase_add_test(tc, test_same_port_two_hosts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * Limits and hostile input, one per test, each with the outcome the README
 * promises: invalid UTF-8 (1007), message rate (exception, then 1008),
 * connections per address (HTTP 429), the Origin allow-list (HTTP 403),
 * a handshake that never completes (dropped after handshake_timeout), a
 * slow consumer (1008, memory flat), an idle client (1001), and wss://.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "harness.h"

static sb_srv srv;

static const char *const NEST = "[plugin.nest]\nfile = %P/nest-example.so\n";

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

START_TEST(test_invalid_utf8_closes_1007)
{
    srv_start(&srv, NULL, NEST);
    ws_client *other = cli_connect(&srv);
    ws_client *c = cli_connect(&srv);
    const char bad[] = "{\"event\":\"identity\",\"data\":\"\xc3\x28\"}";
    ck_assert_int_eq(ws_send_text(c, bad, sizeof(bad) - 1), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1007);
    ws_close(c);
    /* The same bytes in a binary frame are not text: a JSON exception. */
    c = cli_connect(&srv);
    ck_assert_int_eq(ws_send_binary(c, bad, sizeof(bad) - 1), 0);
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"exception\""), "%s",
                  f.data);
    ws_frame_free(&f);
    ws_close(c);
    cli_send(other, "{\"event\":\"identity\",\"data\":1}");
    cli_expect(other, "1");
    ws_close(other);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_rate_limit)
{
    srv_start(&srv, "rate_limit = 10\nrate_burst = 5\n", NEST);
    ws_client *c = cli_connect(&srv);
    /* A burst of 5 passes... */
    for (int i = 0; i < 5; i++)
        cli_send(c, "{\"event\":\"identity\",\"data\":1}");
    for (int i = 0; i < 5; i++)
        cli_expect(c, "1");
    /* ...the 6th at once is refused with one exception... */
    cli_send(c, "{\"event\":\"identity\",\"data\":2}");
    cli_expect(c, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"Rate limit exceeded: at most 10 messages "
                  "per second\"}}");
    /* ...and after a pause the client is served again. */
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cli_send(c, "{\"event\":\"identity\",\"data\":3}");
    cli_expect(c, "3");
    /* A client that keeps flooding is closed with 1008. */
    for (int i = 0; i < 50; i++)
        cli_send(c, "{\"event\":\"identity\",\"data\":4}");
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1008);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_connections_per_ip)
{
    srv_start(&srv, "max_connections_per_ip = 2\n", NEST);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 429);
    ws_close(a);
    /* The slot comes back once the server saw the close. */
    int status = 0;
    for (int i = 0; i < 100 && status != 101; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        status =
            ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT);
    }
    ck_assert_int_eq(status, 101);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_origin_allow_list)
{
    srv_start(&srv,
              "allowed_origins = https://app.example.com, "
              "http://localhost:8080\n",
              NEST);
    ck_assert_int_eq(ws_connect_status("127.0.0.1", srv.port, "/",
                                       "Origin: https://evil.example\r\n",
                                       SB_TIMEOUT),
                     403);
    ck_assert_int_eq(ws_connect_status("127.0.0.1", srv.port, "/",
                                       "Origin: https://app.example.com\r\n",
                                       SB_TIMEOUT),
                     101);
    ck_assert_int_eq(ws_connect_status("127.0.0.1", srv.port, "/",
                                       "Origin: http://localhost:8080\r\n",
                                       SB_TIMEOUT),
                     101);
    /* No Origin: not a browser, so not cross-site hijacking. */
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 101);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_half_open_handshake_dropped)
{
    srv_start(&srv, "handshake_timeout = 1\n", NEST);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)srv.port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *part = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr";
    ck_assert_int_eq(write(fd, part, strlen(part)), (ssize_t)strlen(part));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    time_t t0 = time(NULL);
    ssize_t n = read(fd, buf, sizeof(buf));
    ck_assert_int_le(n, 0); /* closed, nothing answered */
    ck_assert_int_le(time(NULL) - t0, 8);
    close(fd);
    ws_client *c = cli_connect(&srv);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_slow_consumer_closed_memory_flat)
{
    srv_start(&srv, "max_send_queue = 256k\n", NEST);
    ws_client *c = cli_connect(&srv);
    long before = rss_kib(srv.pid);
    /* 4,000 requests for 2 KB replies each, and this client reads
     * nothing: 8 MB the server must not keep. */
    char msg[2200];
    int o = snprintf(msg, sizeof(msg), "{\"event\":\"identity\",\"data\":\"");
    memset(msg + o, 'x', 2048);
    snprintf(msg + o + 2048, sizeof(msg) - (size_t)o - 2048, "\"}");
    ws_set_timeout(c, 2000);
    int sent = 0;
    for (; sent < 4000; sent++)
        if (ws_send_text(c, msg, strlen(msg)) < 0)
            break; /* the server stopped reading us: closed */
    long peak = rss_kib(srv.pid);
    /* The client is closed with 1008 once its queue passed 256 KiB. The
     * close frame waits behind what the kernel already holds for a client
     * that reads nothing; if it still has not read it when the close-ack
     * timeout runs out, the connection is just dropped: closed either way. */
    int code = 0;
    char reason[128] = "";
    ck_assert_int_eq(ws_expect_close(c, 120000, &code, reason, sizeof(reason)),
                     0);
    /* On a loaded machine the keepalive may come first: a client that
     * reads nothing for a ping_interval and one more is closed with 1001. */
    ck_assert_msg(code == 1008 || code == -1 ||
                      (code == 1001 && !strcmp(reason, "Keepalive timeout")),
                  "closed with %d (%s)", code, reason);
    ws_close(c);
    /* Under valgrind the process's RSS is mostly valgrind's own. */
    const char *wrap = getenv("SB_TEST_WRAPPER");
    if (!wrap || !*wrap)
        ck_assert_msg(peak - before < 16 * 1024,
                      "RSS grew by %ld KiB while a client read nothing",
                      peak - before);
    /* Everyone else is served. */
    ws_client *d = cli_connect(&srv);
    cli_send(d, "{\"event\":\"identity\",\"data\":5}");
    cli_expect(d, "5");
    ws_close(d);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_idle_timeout)
{
    srv_start(&srv, "idle_timeout = 1\n", NEST);
    ws_client *c = cli_connect(&srv);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, 5000, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1001);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* Keepalive: after ping_interval seconds of silence the server pings; a
 * client that answers stays, one that does not is dropped after another
 * interval. (This test client never answers pings by itself.) */
START_TEST(test_ping_keepalive)
{
    srv_start(&srv, "ping_interval = 1\n", NEST);
    ws_client *quiet = cli_connect(&srv);
    ws_client *alive = cli_connect(&srv);
    bool pinged = false;
    time_t t0 = time(NULL);
    /* The live client answers every ping for 5 s. */
    while (time(NULL) - t0 < 5) {
        ws_frame f;
        int rc = ws_recv(alive, 200, &f);
        ck_assert_int_ge(rc, 0);
        if (rc == 1 && f.opcode == WS_OP_PING) {
            pinged = true;
            ck_assert_int_eq(ws_send_pong(alive, f.data, f.len), 0);
        }
        if (rc == 1)
            ws_frame_free(&f);
    }
    ck_assert_msg(pinged, "no ping within 5 s with ping_interval = 1");
    cli_send(alive, "{\"event\":\"identity\",\"data\":7}");
    for (;;) { /* skip pings still coming */
        ws_frame f;
        ck_assert_int_eq(ws_recv(alive, SB_TIMEOUT, &f), 1);
        bool ping = f.opcode == WS_OP_PING;
        if (!ping)
            ck_assert_str_eq((char *)f.data, "7");
        ws_frame_free(&f);
        if (!ping)
            break;
    }
    /* The one that never answered is gone. */
    ck_assert_int_eq(ws_wait_eof(quiet, SB_TIMEOUT), 0);
    ws_close(quiet);
    ws_close(alive);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_invalid_utf8_closes_1007);
    tcase_add_test(tc, test_rate_limit);
    tcase_add_test(tc, test_connections_per_ip);
    tcase_add_test(tc, test_origin_allow_list);
    tcase_add_test(tc, test_half_open_handshake_dropped);
    tcase_add_test(tc, test_slow_consumer_closed_memory_flat);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_ping_keepalive);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

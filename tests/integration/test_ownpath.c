/*
 * ownpath — the server's own data path (net/wsio.c): after the upgrade a
 * plain connection is taken over from libwebsockets and read, written and
 * closed by the server itself. The other suites (wire, raw, hostile,
 * limits, overload...) run on it too; this one covers what only the
 * takeover can get wrong, on raw sockets where the bytes matter:
 *   - connections are taken over (the metric), and not with
 *     own_data_path = false;
 *   - frames a client sends with its upgrade request (before it has the
 *     101, which RFC 6455 forbids but some do), whole or cut, are answered
 *     once and in order, whoever reads them;
 *   - frames written a byte at a time, a ping among them, cross every read
 *     boundary of the parser; every ping is answered, in order; an
 *     unmasked frame fails the connection;
 *   - a reply bigger than the socket takes at once waits for the socket
 *     and arrives whole, in order with what follows;
 *   - a client that vanishes is a 1006 for the hooks; one that never
 *     answers our close is dropped after shutdown_timeout + 1 s.
 * Each test runs twice: with the reads and writes of a loop turn batched
 * into io_uring submissions (the default; where the kernel refuses
 * io_uring, the server falls back, and the gauge saying so is checked
 * against what the kernel allows), and with io_uring = false (one recv()
 * and send() per socket).
 *
 * One server: the JSON gateway on / (nest-example, whose `identity` replies
 * its data), the raw echo gateway on /raw, and the admin listener.
 */
#include <check.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static sb_srv srv;
static int admin_port;
/* The tcase's [server] line: "" (io_uring when the kernel allows it) or
 * io_uring = false. */
static const char *io_line = "";

static void plain_io(void)
{
    io_line = "io_uring = false\n";
}

/* Whether this process may set up an io_uring (the server, its child, may
 * too): kernels before 5.1, seccomp filters (containers) and the
 * kernel.io_uring_disabled sysctl refuse it. */
static bool kernel_allows_io_uring(void)
{
#ifdef SYS_io_uring_setup
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    long fd = syscall(SYS_io_uring_setup, 4, &params);
    if (fd < 0)
        return false;
    close((int)fd);
    return true;
#else
    return false;
#endif
}

static void start_with(const char *server_extra)
{
    admin_port = sb_test_free_port();
    ck_assert_int_gt(admin_port, 0);
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[gateway.raw]\npath = /raw\nenvelope = none\n"
             "[plugin.nest]\nfile = %%P/nest-example.so\ngateways = default\n"
             "[plugin.echo]\nfile = %%P/echo.so\ngateways = raw\n"
             "[admin]\nhost = 127.0.0.1\nport = %d\n",
             admin_port);
    char extra[512];
    snprintf(extra, sizeof(extra), "%s%s", io_line, server_extra);
    srv_start(&srv, extra, sections);
    ck_assert_int_eq(sb_test_wait_port(admin_port, 30000), 0);
}

static void start(void)
{
    start_with("max_message_size = 8m\nmax_send_queue = 16m\n"
               "log_connections = true\nlog_level = debug\n");
}

static void stop(void)
{
    srv_stop(&srv);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A metric without labels, or -1. */
static long long metric(const char *name)
{
    char req[128];
    int n = snprintf(req, sizeof(req),
                     "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: "
                     "close\r\n\r\n");
    ws_http_response r;
    memset(&r, 0, sizeof(r));
    long long v = -1;
    if (ws_http_raw("127.0.0.1", admin_port, req, (size_t)n, SB_TIMEOUT, &r) ==
            0 &&
        r.body) {
        char key[128];
        snprintf(key, sizeof(key), "\n%s ", name);
        char *page = strndup(r.body, r.body_len);
        const char *p = strstr(page, key);
        if (p)
            v = atoll(p + strlen(key));
        free(page);
    }
    ws_http_response_free(&r);
    return v;
}

/* Waits up to 3 s for the own-path gauge to read `want`. */
static bool own_path_is(long long want)
{
    long long until = now_ms() + 3000, v = -1;
    while (now_ms() < until) {
        if ((v = metric("switchboard_connections_own_path")) == want)
            return true;
        usleep(20 * 1000);
    }
    fprintf(stderr, "switchboard_connections_own_path is %lld, not %lld\n", v,
            want);
    /* The server's lines about its clients say why. */
    for (const char *l = srv_logtext(&srv); l && *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        if (memmem(l, n, "[server]", 8))
            fprintf(stderr, "  %.*s\n", (int)n, l);
        l = e ? e + 1 : NULL;
    }
    return false;
}

static ws_client *open_path(const char *path)
{
    ws_client *c = ws_connect("127.0.0.1", srv.port, path, NULL, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect %s: %s", path, ws_last_error());
    return c;
}

static ws_frame recv_frame(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "no frame: %s", rc ? ws_error(c) : "timeout");
    return f;
}

static void expect_text(ws_client *c, const char *want)
{
    ws_frame f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_str_eq((char *)f.data, want);
    ws_frame_free(&f);
}

/* A masked client frame appended to out at *o. */
static void put_frame(unsigned char *out, size_t *o, int opcode, int fin,
                      const void *payload, size_t len)
{
    unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n;
    unsigned char *f = ws_encode_frame(opcode, fin, 0, mask, payload, len, &n);
    memcpy(out + *o, f, n);
    *o += n;
    free(f);
}

/* A TCP connection to the gateway, and its upgrade request for `path`. */
static int tcp_open(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)srv.port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static size_t put_request(unsigned char *out, const char *path)
{
    return (size_t)sprintf((char *)out,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n",
                           path);
}

/* Reads the 101 response a byte at a time (nothing after it), then hands
 * the socket to the frame client. */
static ws_client *after_101(int fd)
{
    char head[1024];
    size_t n = 0;
    while (n < sizeof(head) - 1) {
        ssize_t r = recv(fd, head + n, 1, 0);
        ck_assert_int_eq(r, 1);
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = 0;
    ck_assert_msg(strncmp(head, "HTTP/1.1 101", 12) == 0, "%s", head);
    ws_client *c = ws_adopt_fd(fd, SB_TIMEOUT);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void send_all(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* ---- the takeover ------------------------------------------------------- */

START_TEST(connections_are_taken_over)
{
    start();
    /* Batched where the build and the kernel allow it, unless told not. */
    long long want =
        *io_line == '\0' && SB_TEST_LIBURING && kernel_allows_io_uring();
    ck_assert_int_eq(metric("switchboard_own_path_io_uring"), want);
    ws_client *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = open_path(i == 2 ? "/raw" : "/");
        char m[64];
        snprintf(m, sizeof(m), "{\"event\":\"identity\",\"data\":%d}", i);
        ck_assert_int_eq(ws_send_text(c[i], m, strlen(m)), 0);
        snprintf(m, sizeof(m), "%d", i);
        expect_text(c[i], i == 2 ? "{\"event\":\"identity\",\"data\":2}" : m);
    }
    ck_assert(own_path_is(3));
    /* They keep working on it, and leave it. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(
            ws_send_text(c[i], "{\"event\":\"identity\",\"data\":7}", 29), 0);
        expect_text(c[i], i == 2 ? "{\"event\":\"identity\",\"data\":7}" : "7");
        ws_close(c[i]);
    }
    ck_assert(own_path_is(0));
    stop();
}
END_TEST

START_TEST(off_leaves_every_connection_to_lws)
{
    start_with("own_data_path = false\n");
    ws_client *c = open_path("/");
    ck_assert_int_eq(ws_send_text(c, "{\"event\":\"identity\",\"data\":1}", 29),
                     0);
    expect_text(c, "1");
    usleep(100 * 1000);
    ck_assert_int_eq(metric("switchboard_connections_own_path"), 0);
    ck_assert_int_eq(ws_send_ping(c, "p", 1), 0);
    ws_frame f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ws_frame_free(&f);
    ws_close(c);
    stop();
}
END_TEST

/* Frames sent with the request: both whole (`_i` 0); the first whole and
 * the second cut in its header (1) or its payload (2), or only a piece of
 * the first, cut in its header (3) or its payload (4), the rest sent later.
 * Each is answered once, in order, and the connection goes on. */
START_TEST(frames_with_the_request)
{
    start();
    int fd = tcp_open();
    unsigned char buf[2048];
    size_t o = put_request(buf, "/raw");
    size_t first = o;
    put_frame(buf, &o, WS_OP_TEXT, 1, "one", 3);
    size_t second = o;
    put_frame(buf, &o, WS_OP_TEXT, 1, "two-two-two", 11);
    size_t cuts[] = {o, second + 1, second + 8, first + 1, first + 7};
    size_t cut = cuts[_i];
    send_all(fd, buf, cut);
    if (cut < o) {
        usleep(100 * 1000);
        send_all(fd, buf + cut, o - cut);
    }
    ws_client *c = after_101(fd);
    expect_text(c, "one");
    expect_text(c, "two-two-two");
    for (int i = 0; i < 20; i++) {
        char m[16];
        snprintf(m, sizeof(m), "m%d", i);
        ck_assert_int_eq(ws_send_text(c, m, strlen(m)), 0);
        expect_text(c, m);
    }
    ws_close(c);
    stop();
}
END_TEST

/* ---- reading ------------------------------------------------------------ */

/* A 300-byte binary frame, a ping, a fragmented text message and a close,
 * written one byte at a time to a connection taken over. */
START_TEST(byte_at_a_time)
{
    start();
    int fd = tcp_open();
    unsigned char req[512];
    send_all(fd, req, put_request(req, "/raw"));
    ws_client *c = after_101(fd);
    ck_assert_int_eq(ws_send_text(c, "hi", 2), 0);
    expect_text(c, "hi");
    ck_assert(own_path_is(1));

    unsigned char bin[300], buf[1024];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 7);
    size_t o = 0;
    put_frame(buf, &o, WS_OP_BINARY, 1, bin, sizeof(bin));
    put_frame(buf, &o, WS_OP_PING, 1, "ping!", 5);
    put_frame(buf, &o, WS_OP_TEXT, 0, "fra", 3);
    put_frame(buf, &o, WS_OP_PING, 1, "", 0);
    put_frame(buf, &o, WS_OP_CONT, 1, "gments", 6);
    for (size_t i = 0; i < o; i++) {
        send_all(fd, buf + i, 1);
        usleep(300);
    }
    ws_frame f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_uint_eq(f.len, sizeof(bin));
    ck_assert(memcmp(f.data, bin, sizeof(bin)) == 0);
    ws_frame_free(&f);
    f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ck_assert_uint_eq(f.len, 5);
    ck_assert(memcmp(f.data, "ping!", 5) == 0);
    ws_frame_free(&f);
    f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ck_assert_uint_eq(f.len, 0);
    ws_frame_free(&f);
    expect_text(c, "fragments");

    /* Our close, a byte at a time: echoed with its reason, then EOF. */
    o = 0;
    put_frame(buf, &o, WS_OP_CLOSE, 1, "\x0f\xa0see you", 9);
    for (size_t i = 0; i < o; i++) {
        send_all(fd, buf + i, 1);
        usleep(300);
    }
    int code = 0;
    char why[64] = "";
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, why, sizeof(why)),
                     0);
    ck_assert_int_eq(code, 4000);
    ck_assert_str_eq(why, "see you");
    ck_assert_int_eq(ws_wait_eof(c, SB_TIMEOUT), 0);
    ws_close(c);
    ck_assert(srv_log_wait(&srv, "with 4000", 1, SB_TIMEOUT));
    stop();
}
END_TEST

/* Ten pings in one write get ten pongs, in order; an unmasked frame fails
 * the connection with 1002 (RFC 6455 5.1), which lws would have served. */
START_TEST(pings_and_masking)
{
    start();
    ws_client *c = open_path("/raw");
    ck_assert_int_eq(ws_send_text(c, "x", 1), 0);
    expect_text(c, "x");
    ck_assert(own_path_is(1));
    unsigned char buf[256];
    size_t o = 0;
    for (int i = 0; i < 10; i++) {
        char p[2] = {(char)('0' + i), 0};
        put_frame(buf, &o, WS_OP_PING, 1, p, 1);
    }
    ck_assert_int_eq(ws_send_raw_bytes(c, buf, o), 0);
    for (int i = 0; i < 10; i++) {
        ws_frame f = recv_frame(c);
        ck_assert_int_eq(f.opcode, WS_OP_PONG);
        ck_assert_uint_eq(f.len, 1);
        ck_assert_int_eq(f.data[0], '0' + i);
        ws_frame_free(&f);
    }
    ws_set_masking(c, 0);
    ck_assert_int_eq(ws_send_text(c, "bare", 4), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, WS_CLOSE_PROTOCOL_ERROR);
    ck_assert_int_eq(ws_wait_eof(c, SB_TIMEOUT), 0);
    ws_close(c);
    stop();
}
END_TEST

/* ---- writing ------------------------------------------------------------ */

/* 6 MiB echoed to a client that reads nothing for half a second: the
 * socket takes part, the rest waits for it, and a text sent after comes
 * after it. */
START_TEST(reply_bigger_than_the_socket)
{
    start();
    ws_client *c = open_path("/raw");
    ws_set_max_message(c, 8u << 20);
    ck_assert_int_eq(ws_send_text(c, "x", 1), 0);
    expect_text(c, "x");
    ck_assert(own_path_is(1));
    size_t n = 6u << 20;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 12));
    ck_assert_int_eq(ws_send_binary(c, big, n), 0);
    ck_assert_int_eq(ws_send_text(c, "after", 5), 0);
    usleep(500 * 1000);
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, 10000, &f), 1);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_uint_eq(f.len, n);
    ck_assert(memcmp(f.data, big, n) == 0);
    ws_frame_free(&f);
    expect_text(c, "after");
    free(big);
    ws_close(c);
    stop();
}
END_TEST

/* ---- closing ------------------------------------------------------------ */

START_TEST(vanished_client_is_1006)
{
    start();
    ws_client *c = open_path("/");
    ck_assert_int_eq(ws_send_text(c, "{\"event\":\"identity\",\"data\":1}", 29),
                     0);
    expect_text(c, "1");
    ck_assert(own_path_is(1));
    ws_close(c); /* TCP only: no close frame */
    ck_assert(srv_log_wait(
        &srv, "disconnected from gateway 'default' with 1006", 1, SB_TIMEOUT));
    ck_assert(own_path_is(0));
    stop();
}
END_TEST

/* idle_timeout closes with 1001; a client that never answers is dropped
 * shutdown_timeout + 1 s later (here 2 s), and one that answers at once. */
START_TEST(unanswered_close_times_out)
{
    start_with("idle_timeout = 1\nshutdown_timeout = 1\n"
               "log_connections = true\n");
    ws_client *mute = open_path("/");
    ws_client *polite = open_path("/");
    ck_assert(own_path_is(2));
    int code = 0;
    ck_assert_int_eq(ws_expect_close(polite, 5000, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1001);
    long long t0 = now_ms();
    ck_assert_int_eq(ws_send_close(polite, 1001, ""), 0);
    ck_assert_int_eq(ws_wait_eof(polite, SB_TIMEOUT), 0);
    ck_assert_int_lt(now_ms() - t0, 1000);
    ck_assert_int_eq(ws_expect_close(mute, 5000, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1001);
    t0 = now_ms();
    ck_assert_int_eq(ws_wait_eof(mute, 6000), 0);
    long long waited = now_ms() - t0;
    ck_assert_msg(waited >= 500 && waited < 4500, "EOF after %lld ms", waited);
    ck_assert(srv_log_wait(&srv, "with 1001", 2, SB_TIMEOUT));
    ws_close(mute);
    ws_close(polite);
    stop();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ownpath");
    for (int plain = 0; plain <= 1; plain++) {
        TCase *tc = tcase_create(plain ? "recv-send" : "io_uring");
        tcase_set_timeout(tc, 120);
        if (plain)
            tcase_add_checked_fixture(tc, plain_io, NULL);
        tcase_add_test(tc, connections_are_taken_over);
        if (!plain)
            tcase_add_test(tc, off_leaves_every_connection_to_lws);
        tcase_add_loop_test(tc, frames_with_the_request, 0, 5);
        tcase_add_test(tc, byte_at_a_time);
        tcase_add_test(tc, pings_and_masking);
        tcase_add_test(tc, reply_bigger_than_the_socket);
        tcase_add_test(tc, vanished_client_is_1006);
        tcase_add_test(tc, unanswered_close_times_out);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/*
 * raw — issue 16: gateways without the JSON envelope (`envelope = none`),
 * subprotocols, and the RFC 6455 points the Autobahn TestSuite found, each
 * on raw sockets (hand-made frames), on the raw echo gateway and, where the
 * point is not about echoing (1, 2, 4 and the close payloads), on the JSON
 * gateway too.
 *
 * One server: the JSON gateway "default" on / (nest-example), the raw
 * gateway "raw" on /raw (echo, subprotocols "echo.v2, echo") and the raw
 * gateway "probe" on /probe (rawprobe: guards, rooms, broadcast).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <switchboard/plugin.h>

#include "harness.h"

static sb_srv srv;

static void start(void)
{
    srv_start(&srv, "max_message_size = 64k\n",
              "[gateway.raw]\npath = /raw\nenvelope = none\n"
              "subprotocols = echo.v2, echo\n"
              "[gateway.probe]\npath = /probe\nenvelope = none\n"
              "[plugin.nest]\nfile = %P/nest-example.so\ngateways = default\n"
              "[plugin.echo]\nfile = %P/echo.so\ngateways = raw\n"
              "[plugin.rawprobe]\nfile = %P/test-rawprobe.so\n"
              "gateways = probe\n");
}

static void stop(void)
{
    srv_stop(&srv);
}

static ws_client *open_path(const char *path)
{
    ws_client *c = ws_connect("127.0.0.1", srv.port, path, NULL, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect %s: %s", path, ws_last_error());
    return c;
}

/* The JSON gateway's echo and the raw one's, for the same tests. */
static const char *const paths[] = {"/", "/raw"};
static const char json_msg[] = "{\"event\":\"identity\",\"data\":\"hello\"}";

static ws_frame recv_frame(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "no frame: %s", rc ? ws_error(c) : "timeout");
    return f;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- raw gateways ------------------------------------------------------- */

START_TEST(echo_keeps_type_and_bytes)
{
    ws_client *c = open_path("/raw");
    unsigned char bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)i;
    ck_assert_int_eq(ws_send_binary(c, bin, sizeof(bin)), 0);
    ck_assert_int_eq(ws_send_text(c, "h\xc3\xa9llo", 6), 0);
    ck_assert_int_eq(ws_send_text(c, "", 0), 0);
    ws_frame f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_uint_eq(f.len, sizeof(bin));
    ck_assert_mem_eq(f.data, bin, sizeof(bin));
    ws_frame_free(&f);
    f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_str_eq((char *)f.data, "h\xc3\xa9llo");
    ws_frame_free(&f);
    f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_uint_eq(f.len, 0);
    ws_frame_free(&f);
    /* A fragmented binary message comes back whole. */
    ck_assert_int_eq(ws_send_frame(c, WS_OP_BINARY, 0, "ab", 2), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 0, "", 0), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 1, "\xff", 1), 0);
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_uint_eq(f.len, 3);
    ck_assert_mem_eq(f.data, "ab\xff", 3);
    ws_frame_free(&f);
    /* JSON is just text here. */
    ck_assert_int_eq(ws_send_text(c, json_msg, strlen(json_msg)), 0);
    f = recv_frame(c);
    ck_assert_str_eq((char *)f.data, json_msg);
    ws_frame_free(&f);
    ws_close(c);
}
END_TEST

START_TEST(raw_text_must_be_utf8)
{
    ws_client *c = open_path("/raw");
    ck_assert_int_eq(ws_send_text(c, "a\xff", 2), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, WS_CLOSE_INVALID_DATA);
    ws_close(c);
}
END_TEST

START_TEST(raw_limits_apply)
{
    ws_client *c = open_path("/raw");
    size_t n = 65 * 1024;
    char *big = calloc(1, n);
    ck_assert_int_eq(ws_send_binary(c, big, n), 0);
    free(big);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, WS_CLOSE_TOO_BIG);
    ws_close(c);
}
END_TEST

START_TEST(guards_rooms_broadcast)
{
    ws_client *a = open_path("/probe"), *b = open_path("/probe");
    ws_client *j = open_path("/"); /* a JSON client: never reached */
    /* A denied message reaches no hook, and the client gets nothing. */
    ck_assert_int_eq(ws_send_text(a, "deny me", 7), 0);
    ck_assert_int_eq(ws_send_binary(a, "x", 1), 0);
    ws_frame f = recv_frame(a);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_mem_eq(f.data, "B:x", 3);
    ws_frame_free(&f);
    /* reply() is for JSON messages. */
    ck_assert_int_eq(ws_send_text(a, "reply", 5), 0);
    f = recv_frame(a);
    char want[32];
    snprintf(want, sizeof(want), "reply=%d", SB_ERR_INVALID);
    ck_assert_str_eq((char *)f.data, want);
    ws_frame_free(&f);
    /* Rooms: b joins, a sends to the room as binary. */
    ck_assert_int_eq(ws_send_text(b, "join", 4), 0);
    f = recv_frame(b);
    ck_assert_str_eq((char *)f.data, "joined");
    ws_frame_free(&f);
    ck_assert_int_eq(ws_send_text(a, "room:hi", 7), 0);
    f = recv_frame(b);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_str_eq((char *)f.data, "hi");
    ws_frame_free(&f);
    /* Broadcast: both raw clients, as text. */
    ck_assert_int_eq(ws_send_text(a, "all:news", 8), 0);
    ws_client *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        f = recv_frame(both[i]);
        ck_assert_int_eq(f.opcode, WS_OP_TEXT);
        ck_assert_str_eq((char *)f.data, "news");
        ws_frame_free(&f);
    }
    /* No subprotocol asked for, none agreed. */
    ck_assert_int_eq(ws_send_text(a, "who", 3), 0);
    f = recv_frame(a);
    ck_assert_str_eq((char *)f.data, "sub=- info=-");
    ws_frame_free(&f);
    ck_assert_int_eq(ws_recv(j, 200, &f), 0);
    ws_close(a);
    ws_close(b);
    ws_close(j);
}
END_TEST

/* ---- subprotocols ------------------------------------------------------- */

static int upgrade(const char *path, const char *offer, char *agreed,
                   size_t len)
{
    char extra[512];
    snprintf(extra, sizeof(extra), "Sec-WebSocket-Protocol: %s\r\n", offer);
    ws_http_response r;
    memset(&r, 0, sizeof(r));
    ws_client *c =
        ws_connect_ex("127.0.0.1", srv.port, path, extra, SB_TIMEOUT, &r);
    int status = r.status;
    agreed[0] = 0;
    if (ws_http_header(&r, "Sec-WebSocket-Protocol", agreed, len) < 0)
        agreed[0] = 0;
    ws_http_response_free(&r);
    if (c)
        ws_close(c);
    return status;
}

START_TEST(subprotocol_first_offered_wins)
{
    char agreed[128];
    ck_assert_int_eq(upgrade("/raw", "x, echo, echo.v2", agreed, 128), 101);
    ck_assert_str_eq(agreed, "echo");
    ck_assert_int_eq(upgrade("/raw", "echo.v2,echo", agreed, 128), 101);
    ck_assert_str_eq(agreed, "echo.v2");
    /* None accepted: an HTTP answer, where lws would just hang up. */
    ck_assert_int_eq(upgrade("/raw", "mqtt", agreed, 128), 400);
    /* Without `subprotocols`, a gateway accepts what it always did. */
    ck_assert_int_eq(upgrade("/", "switchboard", agreed, 128), 101);
    ck_assert_str_eq(agreed, "switchboard");
    ck_assert_int_eq(upgrade("/", "echo", agreed, 128), 400);
    char long_offer[200];
    memset(long_offer, 'a', sizeof(long_offer) - 1);
    long_offer[sizeof(long_offer) - 1] = 0;
    ck_assert_int_eq(upgrade("/raw", long_offer, agreed, 128), 400);
}
END_TEST

START_TEST(plugin_reads_subprotocol)
{
    ck_assert_int_eq(ws_connect_status("127.0.0.1", srv.port, "/probe",
                                       "Sec-WebSocket-Protocol: echo\r\n",
                                       SB_TIMEOUT),
                     400);
    ws_client *c =
        ws_connect("127.0.0.1", srv.port, "/probe",
                   "Sec-WebSocket-Protocol: nope, switchboard\r\n", SB_TIMEOUT);
    ck_assert_msg(c != NULL, "%s", ws_last_error());
    ck_assert_int_eq(ws_send_text(c, "who", 3), 0);
    ws_frame f = recv_frame(c);
    ck_assert_str_eq((char *)f.data, "sub=switchboard info=switchboard");
    ws_frame_free(&f);
    ws_close(c);
}
END_TEST

/* ---- conformance -------------------------------------------------------- */

static const char *payload_of(const char *path)
{
    return strcmp(path, "/") == 0 ? json_msg : "hello";
}

/* 1. A ping among the fragments of a message, all in one write: the pong
 * goes out before the reply. */
START_TEST(pong_before_reply)
{
    const char *path = paths[_i];
    ws_client *c = open_path(path);
    const char *m = payload_of(path);
    size_t half = strlen(m) / 2, n1, n2, n3;
    unsigned char mask[4] = {1, 2, 3, 4};
    unsigned char *f1 = ws_encode_frame(WS_OP_TEXT, 0, 0, mask, m, half, &n1);
    unsigned char *f2 = ws_encode_frame(WS_OP_PING, 1, 0, mask, "pi", 2, &n2);
    unsigned char *f3 = ws_encode_frame(WS_OP_CONT, 1, 0, mask, m + half,
                                        strlen(m) - half, &n3);
    unsigned char all[512];
    memcpy(all, f1, n1);
    memcpy(all + n1, f2, n2);
    memcpy(all + n1 + n2, f3, n3);
    free(f1);
    free(f2);
    free(f3);
    ck_assert_int_eq(ws_send_raw_bytes(c, all, n1 + n2 + n3), 0);
    ws_frame f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ck_assert_str_eq((char *)f.data, "pi");
    ws_frame_free(&f);
    f = recv_frame(c);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ws_frame_free(&f);
    ws_close(c);
}
END_TEST

static void expect_failure(ws_client *c, int want)
{
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, want);
    /* The server closes TCP at once, without waiting for our answer. */
    double t0 = now_ms();
    ck_assert_int_eq(ws_wait_eof(c, SB_TIMEOUT), 0);
    ck_assert_double_lt(now_ms() - t0, 1000);
}

/* 2. A close whose reason is not UTF-8 fails the connection. */
START_TEST(close_reason_not_utf8)
{
    ws_client *c = open_path(paths[_i]);
    ck_assert_int_eq(ws_send_close(c, 1000, "bad \xff reason"), 0);
    expect_failure(c, WS_CLOSE_INVALID_DATA);
    ws_close(c);
}
END_TEST

/* 7. Close payloads that cannot be: one byte, codes 5000 and 65535. The
 * codes lws itself refuses (999, 1005, 2999...) are answered 1002 too. */
START_TEST(bad_close_payloads)
{
    const char *path = paths[_i % 2];
    int kind = _i / 2;
    ws_client *c = open_path(path);
    if (kind == 0)
        ck_assert_int_eq(ws_send_frame(c, WS_OP_CLOSE, 1, "\x03", 1), 0);
    else
        ck_assert_int_eq(ws_send_close(c,
                                       kind == 1   ? 5000
                                       : kind == 2 ? 65535
                                                   : 1005,
                                       ""),
                         0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, WS_CLOSE_PROTOCOL_ERROR);
    ws_close(c);
}
END_TEST

/* 4. After a protocol error (reserved bits) the server sends 1002 and
 * closes TCP promptly, whether or not the client answers the close. */
START_TEST(protocol_error_closes_promptly)
{
    const char *path = paths[_i % 2];
    ws_client *c = open_path(path);
    ck_assert_int_eq(ws_send_frame_ex(c, WS_OP_TEXT, 1, 2, 1, "x", 1), 0);
    if (_i / 2 == 0) {
        expect_failure(c, WS_CLOSE_PROTOCOL_ERROR);
    } else {
        int code = 0;
        ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
        ck_assert_int_eq(code, WS_CLOSE_PROTOCOL_ERROR);
        ws_send_close(c, 1002, ""); /* may fail: the server may be gone */
        double t0 = now_ms();
        ck_assert_int_eq(ws_wait_eof(c, SB_TIMEOUT), 0);
        ck_assert_double_lt(now_ms() - t0, 1000);
    }
    ws_close(c);
}
END_TEST

/* 5. A long Sec-WebSocket-Extensions header gets an HTTP answer. */
START_TEST(long_extensions_header)
{
    char extra[600] = "Sec-WebSocket-Extensions: permessage-deflate";
    size_t o = strlen(extra);
    while (o < 300)
        o += (size_t)snprintf(extra + o, sizeof(extra) - o,
                              "; client_max_window_bits");
    snprintf(extra + o, sizeof(extra) - o, "\r\n");
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, paths[_i], extra, SB_TIMEOUT),
        400);
    /* Shorter ones are ignored (no extension is enabled). */
    ck_assert_int_eq(ws_connect_status("127.0.0.1", srv.port, paths[_i],
                                       "Sec-WebSocket-Extensions: "
                                       "permessage-deflate\r\n",
                                       SB_TIMEOUT),
                     101);
}
END_TEST

/* 6. Invalid UTF-8 fails at the fragment that breaks it, before the final
 * fragment is sent; a character split across fragments is fine. */
START_TEST(utf8_fails_fast)
{
    ws_client *c = open_path(paths[_i]);
    /* "é" split across three fragments is one valid character. */
    ck_assert_int_eq(ws_send_frame(c, WS_OP_TEXT, 0, "\"\xc3", 2), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 0, "", 0), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 1, "\xa9\"", 2), 0);
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_int_eq(rc, 1);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ws_frame_free(&f);
    /* A surrogate (ED A0 80) rules the message out at its second byte. */
    ck_assert_int_eq(ws_send_frame(c, WS_OP_TEXT, 0, "ok \xed", 4), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 0, "\xa0", 1), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, WS_CLOSE_INVALID_DATA);
    ws_close(c);
}
END_TEST

/* 3. Back-to-back pings: the own data path answers each (ownpath checks
 * ten pongs in order); lws 4.1.6, which reads TLS connections and all with
 * own_data_path = false, answers one while its pong is pending and drops
 * the others (README, Conformance). Here: at least one pong, carrying a
 * payload that was sent, and the connection works on. (The pong may come
 * after the reply to the message sent after the pings: RFC 6455 does not
 * order pongs among data frames.) */
START_TEST(back_to_back_pings)
{
    ws_client *c = open_path("/raw");
    unsigned char all[200];
    size_t o = 0;
    unsigned char mask[4] = {9, 8, 7, 6};
    for (int i = 0; i < 10; i++) {
        char p[2] = {'0' + i, 0};
        size_t n;
        unsigned char *f = ws_encode_frame(WS_OP_PING, 1, 0, mask, p, 1, &n);
        memcpy(all + o, f, n);
        o += n;
        free(f);
    }
    ck_assert_int_eq(ws_send_raw_bytes(c, all, o), 0);
    ck_assert_int_eq(ws_send_text(c, "after", 5), 0);
    int pongs = 0, texts = 0;
    while (!texts || !pongs) {
        ws_frame f = recv_frame(c);
        if (f.opcode == WS_OP_TEXT) {
            ck_assert_str_eq((char *)f.data, "after");
            ws_frame_free(&f);
            texts++;
            continue;
        }
        ck_assert_int_eq(f.opcode, WS_OP_PONG);
        ck_assert_uint_eq(f.len, 1);
        ck_assert(f.data[0] >= '0' && f.data[0] <= '9');
        pongs++;
        ws_frame_free(&f);
    }
    ck_assert_int_ge(pongs, 1);
    ws_close(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("raw");
    TCase *t = tcase_create("raw");
    tcase_add_checked_fixture(t, start, stop);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, echo_keeps_type_and_bytes);
    tcase_add_test(t, raw_text_must_be_utf8);
    tcase_add_test(t, raw_limits_apply);
    tcase_add_test(t, guards_rooms_broadcast);
    tcase_add_test(t, subprotocol_first_offered_wins);
    tcase_add_test(t, plugin_reads_subprotocol);
    tcase_add_loop_test(t, pong_before_reply, 0, 2);
    tcase_add_loop_test(t, close_reason_not_utf8, 0, 2);
    tcase_add_loop_test(t, bad_close_payloads, 0, 8);
    tcase_add_loop_test(t, protocol_error_closes_promptly, 0, 4);
    tcase_add_loop_test(t, long_extensions_header, 0, 2);
    tcase_add_loop_test(t, utf8_fails_fast, 0, 2);
    tcase_add_test(t, back_to_back_pings);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * The wire behaviour of the core issue, row by row, against the real binary
 * with the nest-example and probe plugins, over 127.0.0.1.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"

#define EXC_PREFIX "{\"event\":\"exception\",\"data\":{\"status\":\"error\","

static sb_srv srv;

/* ---- identity and events ------------------------------------------------ */

START_TEST(test_identity_values)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    static const char *values[] = {
        "5",  "\"hi\"", "{\"a\":[1,2]}", "false",         "0", "\"\"",
        "[]", "{}",     "-1.5e3",        "\"\\u00e9\\n\""};
    char msg[256];
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(msg, sizeof(msg), "{\"event\":\"identity\",\"data\":%s}",
                 values[i]);
        cli_send(c, msg);
        cli_expect(c, values[i]);
    }
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_identity_null_or_absent)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"identity\",\"data\":null}");
    cli_send(c, "{\"event\":\"identity\"}");
    cli_expect_nothing(c, 300);
    /* ...and the connection still serves. */
    cli_send(c, "{\"event\":\"identity\",\"data\":7}");
    cli_expect(c, "7");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_events_three_frames)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"events\"}");
    cli_expect(c, "{\"event\":\"events\",\"data\":1}");
    cli_expect(c, "{\"event\":\"events\",\"data\":2}");
    cli_expect(c, "{\"event\":\"events\",\"data\":3}");
    cli_send(c, "{\"event\":\"events\",\"data\":\"hello world\"}");
    cli_expect(c, "{\"event\":\"events\",\"data\":1}");
    cli_expect(c, "{\"event\":\"events\",\"data\":2}");
    cli_expect(c, "{\"event\":\"events\",\"data\":3}");
    cli_expect_nothing(c, 200);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_pipelined_in_order)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    /* 100 frames in one write: they arrive in one read on the server. */
    size_t total = 0;
    unsigned char *all = NULL;
    for (int i = 0; i < 100; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg),
                         "{\"event\":\"identity\",\"data\":%d}", i);
        unsigned char mask[4] = {1, 2, 3, (unsigned char)i};
        size_t len;
        unsigned char *f =
            ws_encode_frame(WS_OP_TEXT, 1, 0, mask, msg, (size_t)n, &len);
        all = realloc(all, total + len);
        memcpy(all + total, f, len);
        total += len;
        free(f);
    }
    ck_assert_int_eq(ws_send_raw_bytes(c, all, total), 0);
    free(all);
    for (int i = 0; i < 100; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i);
        cli_expect(c, want);
    }
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_binary_frame)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    const char *msg = "{\"event\":\"identity\",\"data\":\"bin\"}";
    ck_assert_int_eq(ws_send_binary(c, msg, strlen(msg)), 0);
    cli_expect(c, "\"bin\""); /* asserts a text frame */
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_fragmented)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_TEXT, 0, "{\"event\":\"iden", 14),
                     0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 0, "tity\",\"data", 11), 0);
    cli_expect_nothing(c, 200);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 1, "\":[1,2,3]}", 10), 0);
    cli_expect(c, "[1,2,3]");
    cli_expect_nothing(c, 200);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_unknown_event_ignored)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"nobody\",\"data\":1}");
    cli_expect_nothing(c, 300);
    cli_send(c, "{\"event\":\"identity\",\"data\":1}");
    cli_expect(c, "1");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_unknown_event_exception)
{
    srv_start_default(&srv, "unknown_event = exception\n");
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"nobody\",\"data\":1,\"id\":9}");
    cli_expect(c, EXC_PREFIX "\"message\":\"There is no handler for event "
                             "'nobody'\",\"cause\":{\"pattern\":\"nobody\","
                             "\"data\":1}},\"id\":9}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_bad_envelopes)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    static const struct {
        const char *send, *message;
    } rows[] = {
        {"{\"event\":", NULL}, /* malformed: message checked loosely */
        {"not json", NULL},
        {"", NULL},
        {"[1,2]", "Message must be a JSON object"},
        {"\"event\"", "Message must be a JSON object"},
        {"{\"data\":1}", "Message has no \"event\""},
        {"{\"event\":42}", "\"event\" must be a string"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        cli_send(c, rows[i].send);
        ws_frame f;
        ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
        json_error_t err;
        json_t *v = json_loads((char *)f.data, 0, &err);
        ck_assert_msg(v != NULL, "reply is not JSON: %s", f.data);
        ck_assert_str_eq(json_string_value(json_object_get(v, "event")),
                         "exception");
        json_t *d = json_object_get(v, "data");
        ck_assert_str_eq(json_string_value(json_object_get(d, "status")),
                         "error");
        const char *m = json_string_value(json_object_get(d, "message"));
        ck_assert_ptr_nonnull(m);
        ck_assert_int_gt(strlen(m), 5);
        if (rows[i].message)
            ck_assert_str_eq(m, rows[i].message);
        else
            ck_assert_msg(strstr(m, "JSON"), "%s: %s", rows[i].send, m);
        ck_assert_ptr_null(json_object_get(d, "cause"));
        json_decref(v);
        ws_frame_free(&f);
        /* The connection stays open and keeps being served. */
        cli_send(c, "{\"event\":\"identity\",\"data\":\"still here\"}");
        cli_expect(c, "\"still here\"");
    }
    /* An exception carries the id when the envelope had one. */
    cli_send(c, "{\"event\":42,\"id\":\"req-1\"}");
    cli_expect(c, EXC_PREFIX "\"message\":\"\\\"event\\\" must be a "
                             "string\"},\"id\":\"req-1\"}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_handler_fails)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"fail\",\"data\":\"disk full\"}");
    cli_expect(c, EXC_PREFIX "\"message\":\"probe failed: disk full\","
                             "\"cause\":{\"pattern\":\"fail\",\"data\":"
                             "\"disk full\"}}}");
    cli_send(c, "{\"event\":\"fail\",\"data\":\"x\",\"id\":12}");
    cli_expect(c, EXC_PREFIX "\"message\":\"probe failed: x\",\"cause\":{"
                             "\"pattern\":\"fail\",\"data\":\"x\"}},"
                             "\"id\":12}");
    /* A handler that fails without a message. */
    cli_send(c, "{\"event\":\"error\"}");
    cli_expect(c, EXC_PREFIX "\"message\":\"Internal server error\","
                             "\"cause\":{\"pattern\":\"error\"}}}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_deep_nesting)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    size_t depth = 100000;
    size_t len = 30 + 2 * depth;
    char *msg = malloc(len);
    size_t o = (size_t)sprintf(msg, "{\"event\":\"identity\",\"data\":");
    memset(msg + o, '[', depth);
    o += depth;
    memset(msg + o, ']', depth);
    o += depth;
    msg[o++] = '}';
    ck_assert_int_eq(ws_send_text(c, msg, o), 0);
    free(msg);
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"exception\"") &&
                      strstr((char *)f.data, "deeper"),
                  "%s", f.data);
    ws_frame_free(&f);
    cli_send(c, "{\"event\":\"identity\",\"data\":\"alive\"}");
    cli_expect(c, "\"alive\"");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

static char *big_identity(size_t data_len, size_t *len)
{
    char *msg = malloc(data_len + 64);
    size_t o = (size_t)sprintf(msg, "{\"event\":\"identity\",\"data\":\"");
    memset(msg + o, 'x', data_len);
    o += data_len;
    o += (size_t)sprintf(msg + o, "\"}");
    *len = o;
    return msg;
}

START_TEST(test_one_mib_message)
{
    /* The echo is bigger than the default max_send_queue (1M). */
    srv_start_default(&srv, "max_message_size = 2M\nmax_send_queue = 4M\n");
    ws_client *c = cli_connect(&srv);
    size_t len;
    char *msg = big_identity(1 << 20, &len);
    ck_assert_int_eq(ws_send_text(c, msg, len), 0);
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, 20000, &f), 1);
    ck_assert_uint_eq(f.len, (1u << 20) + 2);
    ck_assert_int_eq(f.data[0], '"');
    ck_assert_int_eq(f.data[1 << 19], 'x');
    ws_frame_free(&f);
    free(msg);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_over_max_message_size)
{
    srv_start_default(&srv, "max_message_size = 64k\n");
    ws_client *other = cli_connect(&srv);
    ws_client *c = cli_connect(&srv);
    size_t len;
    char *msg = big_identity(100000, &len);
    ck_assert_int_eq(ws_send_text(c, msg, len), 0);
    free(msg);
    int code = 0;
    char reason[128];
    ck_assert_int_eq(
        ws_expect_close(c, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 1009);
    ws_close(c);
    /* Fragments adding up to too much are caught as well. */
    c = cli_connect(&srv);
    char chunk[40000];
    memset(chunk, ' ', sizeof(chunk));
    ck_assert_int_eq(ws_send_frame(c, WS_OP_TEXT, 0, chunk, sizeof(chunk)), 0);
    ck_assert_int_eq(ws_send_frame(c, WS_OP_CONT, 1, chunk, sizeof(chunk)), 0);
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1009);
    ws_close(c);
    /* The other client never noticed. */
    cli_send(other, "{\"event\":\"identity\",\"data\":\"fine\"}");
    cli_expect(other, "\"fine\"");
    ws_close(other);
    srv_stop(&srv);
}
END_TEST

/* ---- control frames, closing, paths ------------------------------------- */

START_TEST(test_ping_pong)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    ck_assert_int_eq(ws_send_ping(c, "are you there", 13), 0);
    ws_frame f;
    ck_assert_int_eq(ws_recv(c, SB_TIMEOUT, &f), 1);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ck_assert_str_eq((char *)f.data, "are you there");
    ws_frame_free(&f);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

static void close_roundtrip(int code, const char *reason)
{
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"info\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    json_t *v = json_loads((char *)f.data, 0, NULL);
    ws_frame_free(&f);
    json_int_t id = json_integer_value(
        json_object_get(json_object_get(v, "data"), "client"));
    json_decref(v);
    ck_assert_int_gt(id, 0);

    ck_assert_int_eq(ws_send_close(c, code, reason), 0);
    int got = 0;
    char why[128] = "";
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &got, why, sizeof(why)), 0);
    ck_assert_int_eq(got, code);
    ck_assert_str_eq(why, reason);
    ws_close(c);
    char want[64];
    snprintf(want, sizeof(want), "disconnect %lld %d\n", (long long)id, code);
    ck_assert_msg(srv_journal_wait(&srv, want, SB_TIMEOUT), "journal: %s",
                  srv_journal(&srv));
}

START_TEST(test_close_codes)
{
    srv_start_default(&srv, NULL);
    close_roundtrip(1000, "");
    close_roundtrip(4000, "bye");
    srv_stop(&srv);
}
END_TEST

START_TEST(test_other_path_404)
{
    srv_start_default(&srv, NULL);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/other", NULL, SB_TIMEOUT),
        404);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 101);
    srv_stop(&srv);
}
END_TEST

/* Only Sec-WebSocket-Version 13 is upgraded (lws alone takes any). */
START_TEST(test_websocket_version)
{
    srv_start_default(&srv, NULL);
    static const char *const bad[] = {"8", "12", "abc", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[512];
        int n = snprintf(req, sizeof(req),
                         "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: "
                         "websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: %s\r\n\r\n",
                         bad[i]);
        ws_http_response r;
        ck_assert_int_eq(
            ws_http_raw("127.0.0.1", srv.port, req, (size_t)n, SB_TIMEOUT, &r),
            0);
        ck_assert_msg(r.status == 426 || r.status == 400,
                      "version '%s' got HTTP %d", bad[i], r.status);
        ws_http_response_free(&r);
    }
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 101);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_custom_path)
{
    srv_start_default(&srv, "path = /ws\n");
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 404);
    ws_client *c =
        ws_connect("127.0.0.1", srv.port, "/ws?x=1", NULL, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "%s", ws_last_error());
    cli_send(c, "{\"event\":\"identity\",\"data\":1}");
    cli_expect(c, "1");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_max_connections_503)
{
    srv_start_default(&srv, "max_connections = 2\n");
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", srv.port, "/", NULL, SB_TIMEOUT), 503);
    ws_close(a);
    ck_assert(srv_journal_wait(&srv, "disconnect 1 ", SB_TIMEOUT));
    ws_client *c = cli_connect(&srv);
    ws_close(b);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* ---- the probe: ids, decoded data, raw data ----------------------------- */

START_TEST(test_reply_echoes_id)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"id\":\"abc\",\"event\":\"echo\",\"data\": {\"k\" : [1, "
                "true]}}");
    cli_expect(c, "{\"event\":\"echo\",\"data\":{\"k\":[1,true]},"
                  "\"id\":\"abc\"}");
    cli_send(c, "{\"event\":\"raw\",\"data\": [ 1 , 2 ] ,\"id\":3}");
    cli_expect(c, "{\"event\":\"raw\",\"data\":[ 1 , 2 ],\"id\":3}");
    cli_send(c, "{\"event\":\"echo\"}");
    cli_expect(c, "{\"event\":\"echo\"}");
    cli_send(c, "{\"event\":\"value\",\"data\":{\"b\":2}}");
    cli_expect(c, "{\"b\":2}");
    cli_send(c, "{\"event\":\"value\",\"data\":null}");
    cli_expect_nothing(c, 200);
    /* An id that is neither a number nor a string is refused. */
    cli_send(c, "{\"event\":\"echo\",\"id\":[1]}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"exception\""), "%s",
                  f.data);
    ws_frame_free(&f);
    cli_send(c, "{\"event\":\"info\",\"id\":1}");
    cli_expect(c, "{\"event\":\"info\",\"data\":{\"client\":1,\"event\":"
                  "\"info\",\"has_id\":true,\"late_subscribe\":true},"
                  "\"id\":1}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

/* Valid JSON is never refused: an integer beyond 64 bits passes through
 * digit for digit, is decoded as a real (as JavaScript reads it) while
 * small integers stay integers, and an exception raised after the id was
 * read carries it. */
START_TEST(test_big_integers)
{
    srv_start_default(&srv, NULL);
    ws_client *c = cli_connect(&srv);
    /* nest-example's identity: the raw data back. */
    cli_send(c, "{\"event\":\"identity\",\"data\":"
                "123456789012345678901234567890}");
    cli_expect(c, "123456789012345678901234567890");
    cli_send(c, "{\"event\":\"raw\",\"data\":{\"big\":"
                "-123456789012345678901234567890,\"small\":5},\"id\":"
                "98765432109876543210}");
    cli_expect(c, "{\"event\":\"raw\",\"data\":{\"big\":"
                  "-123456789012345678901234567890,\"small\":5},\"id\":"
                  "98765432109876543210}");
    /* message_data(): big ones are reals, the others integers. */
    cli_send(c, "{\"event\":\"echo\",\"data\":{\"big\":"
                "123456789012345678901234567890,\"small\":5,\"max\":"
                "9223372036854775807,\"over\":9223372036854775808},"
                "\"id\":1}");
    cli_expect(c, "{\"event\":\"echo\",\"data\":{\"big\":"
                  "1.2345678901234568e29,\"small\":5,\"max\":"
                  "9223372036854775807,\"over\":9.2233720368547758e18},"
                  "\"id\":1}");
    /* Exceptions raised after the id was read carry it. */
    cli_send(c, "{\"id\":5,\"event\":\"echo\",\"data\":[1,}");
    cli_expect(c, EXC_PREFIX "\"message\":\"Invalid JSON: unexpected '}' "
                             "at offset 33\"},\"id\":5}");
    cli_send(c, "{\"id\":\"x\",\"event\":\"echo\"} trailing");
    cli_expect(c, EXC_PREFIX "\"message\":\"Invalid JSON: data after the "
                             "value at offset 26\"},\"id\":\"x\"}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("wire");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_identity_values);
    tcase_add_test(tc, test_identity_null_or_absent);
    tcase_add_test(tc, test_events_three_frames);
    tcase_add_test(tc, test_pipelined_in_order);
    tcase_add_test(tc, test_binary_frame);
    tcase_add_test(tc, test_fragmented);
    tcase_add_test(tc, test_unknown_event_ignored);
    tcase_add_test(tc, test_unknown_event_exception);
    tcase_add_test(tc, test_bad_envelopes);
    tcase_add_test(tc, test_handler_fails);
    tcase_add_test(tc, test_big_integers);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_one_mib_message);
    tcase_add_test(tc, test_over_max_message_size);
    tcase_add_test(tc, test_ping_pong);
    tcase_add_test(tc, test_close_codes);
    tcase_add_test(tc, test_other_path_404);
    tcase_add_test(tc, test_custom_path);
    tcase_add_test(tc, test_websocket_version);
    tcase_add_test(tc, test_max_connections_503);
    tcase_add_test(tc, test_reply_echoes_id);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

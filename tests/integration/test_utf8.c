/*
 * Text frames (and close reasons) are always valid UTF-8, whatever bytes a
 * plugin hands the host. RFC 6455 makes a client fail the connection on
 * one invalid byte (Node's ws with 1006, browsers with 1007), so each entry
 * point that puts plugin text on the wire either repairs it or refuses it:
 *
 *   fail() message             repaired (U+FFFD), cut on a character
 *   send_exception() message   repaired
 *   client_close() reason      repaired, cut to 123 bytes on a character
 *   event names (reply, reply_raw, send, send_ack, broadcast, room_send)
 *                              refused: SB_ERR_INVALID, nothing sent
 *   JSON data (json_t)         refused by jansson's encoder: SB_ERR_JSON
 *
 * Every frame the client gets is checked to be UTF-8, and the connection
 * to keep working afterwards.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"

#define FFFD        "\xef\xbf\xbd"
#define ELLIPSIS    "\xe2\x80\xa6"
#define STRINGS_INI "[plugin.strings]\nfile = %P/test-strings.so\n"

static sb_srv srv;

static bool utf8_ok(const void *p, size_t n)
{
    json_t *s = json_stringn(p, n); /* NULL unless valid UTF-8 */
    json_decref(s);
    return s != NULL;
}

static void send_hex(ws_client *c, const char *event, const char *bytes,
                     const char *id)
{
    static char msg[8192];
    char hex[4096], *o = hex;
    for (const char *b = bytes; *b; b++, o += 2)
        sprintf(o, "%02x", (unsigned char)*b);
    *o = 0;
    snprintf(msg, sizeof(msg),
             "{\"event\":\"%s\",\"data\":{\"hex\":\"%s\"}%s%s}", event, hex,
             id ? ",\"id\":" : "", id ? id : "");
    cli_send(c, msg);
}

/* Receives one text message, asserts it is UTF-8 and JSON, returns it. */
static json_t *recv_json(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "nothing received: %s",
                  rc ? ws_error(c) : "timeout");
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_msg(utf8_ok(f.data, f.len), "a text frame that is not UTF-8");
    json_t *j = json_loadb((const char *)f.data, f.len, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", (char *)f.data);
    ws_frame_free(&f);
    return j;
}

static const char *exception_message(json_t *j)
{
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")),
                     "exception");
    return json_string_value(
        json_object_get(json_object_get(j, "data"), "message"));
}

/* The connection still carries requests and answers. */
static void still_works(ws_client *c)
{
    send_hex(c, "fail", "alive", NULL);
    json_t *j = recv_json(c);
    ck_assert_str_eq(exception_message(j), "alive");
    json_decref(j);
}

START_TEST(test_fail_message_repaired)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    /* A stray continuation, a lone lead byte, an overlong, a surrogate,
     * and a sequence cut at the end. */
    send_hex(c, "fail",
             "ab\x80"
             "c\xc3"
             "d\xc0\xaf"
             "e\xed\xa0\x80"
             "f\xe2\x82",
             "1");
    json_t *j = recv_json(c);
    ck_assert_str_eq(exception_message(j), "ab" FFFD "c" FFFD "d" FFFD FFFD
                                           "e" FFFD FFFD FFFD "f" FFFD FFFD);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "id")), 1);
    json_decref(j);
    /* fail() then SB_OK takes the same path. */
    send_hex(c, "fail_ok", "x\xff", NULL);
    j = recv_json(c);
    ck_assert_str_eq(exception_message(j), "x" FFFD);
    json_decref(j);
    /* 200 × "é" cut inside a character before: now on a boundary. */
    char text[512] = "";
    for (int i = 0; i < 200; i++)
        strcat(text, "\xc3\xa9");
    send_hex(c, "fail", text, NULL);
    j = recv_json(c);
    const char *m = exception_message(j);
    ck_assert_uint_eq(strlen(m), 255);
    ck_assert_str_eq(m + 252, ELLIPSIS);
    json_decref(j);
    still_works(c);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_send_exception_repaired)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    send_hex(c, "exception", "bad \xfe\xff text \xf0\x9f\x98\x80", "\"r-1\"");
    json_t *j = recv_json(c);
    ck_assert_str_eq(exception_message(j),
                     "bad " FFFD FFFD " text \xf0\x9f\x98\x80");
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "r-1");
    json_decref(j);
    j = recv_json(c);
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")),
                     "exception");
    json_decref(j);
    still_works(c);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_event_names_refused)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    /* Not UTF-8: every call says SB_ERR_INVALID (-1) and sends nothing;
     * the only frame is the handler's own report. */
    send_hex(c, "events", "ev\xff", NULL);
    json_t *j = recv_json(c);
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "events");
    const char *calls[] = {"reply",    "reply_raw", "send",
                           "send_ack", "broadcast", "room_send"};
    json_t *d = json_object_get(j, "data");
    for (size_t i = 0; i < 6; i++)
        ck_assert_msg(
            json_integer_value(json_object_get(d, calls[i])) == -1,
            "%s returned %lld", calls[i],
            (long long)json_integer_value(json_object_get(d, calls[i])));
    json_decref(j);
    cli_expect_nothing(c, 200);
    /* A name in UTF-8 goes out from all six. */
    send_hex(c, "events", "\xc3\xa9v\xe2\x82\xac", NULL);
    for (int i = 0; i < 6; i++) {
        j = recv_json(c);
        ck_assert_str_eq(json_string_value(json_object_get(j, "event")),
                         "\xc3\xa9v\xe2\x82\xac");
        json_decref(j);
    }
    j = recv_json(c);
    d = json_object_get(j, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "send")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "broadcast")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "room_send")), 1);
    json_decref(j);
    still_works(c);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_json_data_refused)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"data\"}");
    /* Only the good send arrives, then the report: SB_ERR_JSON (-8) for a
     * string value and for a key that are not UTF-8. */
    json_t *j = recv_json(c);
    ck_assert_int_eq(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(j, "data"), "x"), "ok")),
        1);
    json_decref(j);
    j = recv_json(c);
    json_t *d = json_object_get(j, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "bad_value")), -8);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "good")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "bad_key")), -8);
    json_decref(j);
    still_works(c);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_close_reason_repaired)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    send_hex(c, "close", "bye \xff!", NULL);
    int code = 0;
    char reason[256];
    ck_assert_int_eq(
        ws_expect_close(c, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 4000);
    ck_assert_str_eq(reason, "bye " FFFD "!");
    ws_close(c);
    /* A long reason: at most 123 bytes, cut between characters, marked. */
    c = cli_connect(&srv);
    char text[512] = "";
    for (int i = 0; i < 100; i++)
        strcat(text, "\xc3\xa9");
    send_hex(c, "close", text, NULL);
    ck_assert_int_eq(
        ws_expect_close(c, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 4000);
    ck_assert(utf8_ok(reason, strlen(reason)));
    ck_assert_uint_le(strlen(reason), 123);
    ck_assert_uint_eq(strlen(reason), 60 * 2 + 3);
    ck_assert_str_eq(reason + 120, ELLIPSIS);
    ws_close(c);
    /* The server is fine. */
    c = cli_connect(&srv);
    still_works(c);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("plugin text on the wire");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fail_message_repaired);
    tcase_add_test(tc, test_send_exception_repaired);
    tcase_add_test(tc, test_event_names_refused);
    tcase_add_test(tc, test_json_data_refused);
    tcase_add_test(tc, test_close_reason_repaired);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

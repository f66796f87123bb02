/*
 * A recorded failure is never lost, and a silent one is explained.
 *
 * With the strings plugin: fail() followed by `return SB_OK` still sends
 * the exception (from a handler and from a guard, which then denies); a
 * second fail() does not replace the first message; a handler or guard that
 * returns non-zero without fail() sends "Internal server error" and logs a
 * warning naming the plugin, the event, the value and its meaning, with the
 * hint to use fail() (at most one such line a second, the next one counting
 * the lines left out); and a message longer than 255 bytes is cut on a
 * character boundary and ends with "…".
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#define EXC_PREFIX  "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
#define ELLIPSIS    "\xe2\x80\xa6"
#define INTERNAL    "\"message\":\"Internal server error\""
#define STRINGS_INI "[plugin.strings]\nfile = %P/test-strings.so\n"

static sb_srv srv;

static void hex_of(const char *bytes, char *out)
{
    for (; *bytes; bytes++, out += 2)
        sprintf(out, "%02x", (unsigned char)*bytes);
    *out = 0;
}

/* {"event":E,"data":{"hex":<bytes as hex>}} */
static void send_hex(ws_client *c, const char *event, const char *bytes)
{
    static char msg[8192];
    char hex[4096];
    hex_of(bytes, hex);
    snprintf(msg, sizeof(msg), "{\"event\":\"%s\",\"data\":{\"hex\":\"%s\"}}",
             event, hex);
    cli_send(c, msg);
}

/* Receives one message: the exception's "message" (the caller frees). */
static char *recv_exception_message(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "no exception: %s", rc ? ws_error(c) : "timeout");
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    json_t *j = json_loadb((const char *)f.data, f.len, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON (or not UTF-8): %s", (char *)f.data);
    ck_assert_str_eq(json_string_value(json_object_get(j, "event")),
                     "exception");
    char *m = strdup(json_string_value(
        json_object_get(json_object_get(j, "data"), "message")));
    json_decref(j);
    ws_frame_free(&f);
    return m;
}

static void wait_log(const char *needle, int n)
{
    ck_assert_msg(srv_log_wait(&srv, needle, n, SB_TIMEOUT),
                  "not %d time(s) in the log: %s\n%s", n, needle,
                  srv_logtail(&srv));
}

START_TEST(test_fail_then_ok_is_sent)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"fail_ok\",\"data\":{\"hex\":\"6f6f7073\"},"
                "\"id\":3}");
    cli_expect(c, EXC_PREFIX "\"message\":\"oops\",\"cause\":{\"pattern\":"
                             "\"fail_ok\",\"data\":{\"hex\":\"6f6f7073\"}}},"
                             "\"id\":3}");
    /* The usual `return host->fail(...)` is unchanged. */
    send_hex(c, "fail", "disk full");
    char *m = recv_exception_message(c);
    ck_assert_str_eq(m, "disk full");
    free(m);
    /* Neither is a silent failure. */
    ck_assert_ptr_null(strstr(srv_logtext(&srv), "without calling fail()"));
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_first_fail_wins)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"fail_twice\"}");
    cli_expect(c, EXC_PREFIX "\"message\":\"first\",\"cause\":{\"pattern\":"
                             "\"fail_twice\"}}}");
    cli_expect_nothing(c, 200);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_guard_fail_then_ok_denies)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    /* The guard calls fail() and returns SB_OK: the handler (which would
     * send "first") does not run; the guard's message goes out. */
    cli_send(c, "{\"event\":\"fail_twice\",\"data\":{\"guard\":\"fail_ok\"}}");
    cli_expect(c, EXC_PREFIX "\"message\":\"guard says no\",\"cause\":{"
                             "\"pattern\":\"fail_twice\",\"data\":{\"guard\":"
                             "\"fail_ok\"}}}}");
    cli_expect_nothing(c, 200);
    /* A guard returning 13 without fail(). */
    cli_send(c, "{\"event\":\"fail_twice\",\"data\":{\"guard\":\"silent\"}}");
    cli_expect(c, EXC_PREFIX INTERNAL ",\"cause\":{\"pattern\":\"fail_twice\","
                                      "\"data\":{\"guard\":\"silent\"}}}}");
    wait_log("plugin 'strings': the guard of event 'fail_twice' returned 13 "
             "(as errno: Permission denied) without calling fail()",
             1);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_silent_failure_warns)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    static const struct {
        int value;
        const char *meaning;
    } cases[] = {
        {-1, "SB_ERR_INVALID: invalid argument"},
        {-9, "SB_ERR_FAILED: failed"},
        {2, "as errno: No such file or directory"},
        {-12, "not an sb_status; as -errno: Cannot allocate memory"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (i)
            usleep(1100 * 1000); /* one warning a second at most */
        char msg[128], want[512];
        snprintf(msg, sizeof(msg),
                 "{\"event\":\"ret\",\"data\":{\"value\":%d}}", cases[i].value);
        cli_send(c, msg);
        snprintf(want, sizeof(want),
                 EXC_PREFIX INTERNAL ",\"cause\":{\"pattern\":\"ret\",\"data\":"
                                     "{\"value\":%d}}}}",
                 cases[i].value);
        cli_expect(c, want);
        snprintf(want, sizeof(want),
                 "plugin 'strings': the handler of event 'ret' returned %d "
                 "(%s) without calling fail(); the client got \"Internal "
                 "server error\". Use `return host->fail(msg, \"...\")` to "
                 "tell it why",
                 cases[i].value, cases[i].meaning);
        wait_log(want, 1);
    }
    /* A flood: every client still gets its exception, the log gets one
     * line, and the next line counts those left out. */
    usleep(1100 * 1000);
    for (int i = 0; i < 5; i++) {
        cli_send(c, "{\"event\":\"ret\",\"data\":{\"value\":-2}}");
        cli_expect(c, EXC_PREFIX INTERNAL ",\"cause\":{\"pattern\":\"ret\","
                                          "\"data\":{\"value\":-2}}}}");
    }
    wait_log("returned -2 (SB_ERR_STATE: not allowed now)", 1);
    usleep(1100 * 1000);
    cli_send(c, "{\"event\":\"ret\",\"data\":{\"value\":-2}}");
    cli_expect(c, EXC_PREFIX INTERNAL ",\"cause\":{\"pattern\":\"ret\","
                                      "\"data\":{\"value\":-2}}}}");
    wait_log("tell it why (and 4 more such failures)", 1);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_long_message_cut_on_a_character)
{
    srv_start(&srv, NULL, STRINGS_INI);
    ws_client *c = cli_connect(&srv);
    /* 200 × "é" is 400 bytes: 126 of them fit before the 3-byte marker. */
    char text[1024] = "", want[1024] = "";
    for (int i = 0; i < 200; i++)
        strcat(text, "\xc3\xa9");
    for (int i = 0; i < 126; i++)
        strcat(want, "\xc3\xa9");
    strcat(want, ELLIPSIS);
    send_hex(c, "fail", text);
    char *m = recv_exception_message(c);
    ck_assert_uint_eq(strlen(m), 255);
    ck_assert_str_eq(m, want);
    free(m);
    /* The same from fail() and SB_OK. */
    send_hex(c, "fail_ok", text);
    m = recv_exception_message(c);
    ck_assert_str_eq(m, want);
    free(m);
    /* A 3-byte character that would straddle the limit goes whole. */
    strcpy(text, "a");
    for (int i = 0; i < 100; i++)
        strcat(text, "\xe2\x82\xac"); /* € */
    send_hex(c, "fail", text);
    m = recv_exception_message(c);
    ck_assert_uint_le(strlen(m), 255);
    ck_assert_uint_eq((strlen(m) - 1 - 3) % 3, 0);
    ck_assert_str_eq(m + strlen(m) - 3, ELLIPSIS);
    free(m);
    /* Exactly 255 bytes fit as they are, without a marker. */
    memset(text, 'x', 255);
    text[255] = 0;
    send_hex(c, "fail", text);
    m = recv_exception_message(c);
    ck_assert_str_eq(m, text);
    free(m);
    /* A longer text than fail()'s own buffer is cut all the same. */
    memset(text, 'y', 1000);
    text[1000] = 0;
    char big[2048];
    snprintf(big, sizeof(big), "%s%s", text, text);
    send_hex(c, "fail", big);
    m = recv_exception_message(c);
    ck_assert_uint_eq(strlen(m), 255);
    ck_assert_str_eq(m + 252, ELLIPSIS);
    free(m);
    /* The connection is fine. */
    send_hex(c, "fail", "still here");
    m = recv_exception_message(c);
    ck_assert_str_eq(m, "still here");
    free(m);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fail");
    TCase *tc = tcase_create("fail");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fail_then_ok_is_sent);
    tcase_add_test(tc, test_first_fail_wins);
    tcase_add_test(tc, test_guard_fail_then_ok_denies);
    tcase_add_test(tc, test_silent_failure_warns);
    tcase_add_test(tc, test_long_message_cut_on_a_character);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * Unit tests for log: the text line, and JSON lines that parse as JSON
 * whatever the message holds (quotes, control characters, invalid UTF-8,
 * more than a line can take), with their fields.
 */
#include "log.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char captured[1 << 16];
static int saved_fd = -1;
static FILE *capture_file;

/* Sends stderr to a temporary file until end_capture(). */
static void begin_capture(void)
{
    capture_file = tmpfile();
    ck_assert_ptr_nonnull(capture_file);
    fflush(stderr);
    saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(dup2(fileno(capture_file), STDERR_FILENO), 0);
}

/* What was written, NUL-terminated. */
static const char *end_capture(void)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    rewind(capture_file);
    size_t n = fread(captured, 1, sizeof(captured) - 1, capture_file);
    captured[n] = 0;
    fclose(capture_file);
    return captured;
}

static void teardown(void)
{
    sb_log_set_worker(0);
    sb_log_set_format(SB_LOG_TEXT);
    sb_log_set_level(SB_LOG_INFO);
}

/* The one line captured, parsed; fails unless it is one JSON object. */
static json_t *one_json_line(const char *text)
{
    size_t len = strlen(text);
    ck_assert_msg(len > 0 && text[len - 1] == '\n', "not a line: %s", text);
    ck_assert_msg(strchr(text, '\n') == text + len - 1, "several lines: %s",
                  text);
    json_error_t err;
    json_t *o = json_loadb(text, len - 1, 0, &err);
    ck_assert_msg(json_is_object(o), "not JSON (%s): %s", err.text, text);
    return o;
}

static const char *str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    ck_assert_msg(v != NULL, "no string '%s'", key);
    return v;
}

START_TEST(test_text_line)
{
    begin_capture();
    sb_log_info("core", "hello %d", 42);
    sb_log_fields(SB_LOG_WARN, "server", &(sb_log_field){"client", NULL, 7}, 1,
                  "with a field");
    const char *out = end_capture();
    /* "2026-11-26T14:03:07.123Z info  [core] hello 42\n" */
    ck_assert_msg(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' &&
                      out[23] == 'Z',
                  "%s", out);
    ck_assert_msg(strstr(out, "Z info  [core] hello 42\n"), "%s", out);
    /* Text lines leave the fields out: the message says it. */
    ck_assert_msg(strstr(out, "Z warn  [server] with a field\n"), "%s", out);
}
END_TEST

/* Under workers each line names its worker; 0 (one process) names none. */
START_TEST(test_worker_named)
{
    sb_log_set_worker(3);
    begin_capture();
    sb_log_info("server", "from a worker");
    const char *out = end_capture();
    ck_assert_msg(strstr(out, "Z info  w3 [server] from a worker\n"), "%s",
                  out);
    sb_log_set_format(SB_LOG_JSON);
    begin_capture();
    sb_log_fields(SB_LOG_WARN, "server", &(sb_log_field){"client", NULL, 7}, 1,
                  "with a field");
    json_t *o = one_json_line(end_capture());
    ck_assert_int_eq(json_integer_value(json_object_get(o, "worker")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "client")), 7);
    ck_assert_str_eq(str(o, "tag"), "server");
    json_decref(o);
    sb_log_set_worker(0);
    begin_capture();
    sb_log_info("server", "one process");
    o = one_json_line(end_capture());
    ck_assert_ptr_null(json_object_get(o, "worker"));
    json_decref(o);
}
END_TEST

START_TEST(test_json_line)
{
    sb_log_set_format(SB_LOG_JSON);
    begin_capture();
    sb_log_info("core", "hello %s", "world");
    json_t *o = one_json_line(end_capture());
    ck_assert_str_eq(str(o, "level"), "info");
    ck_assert_str_eq(str(o, "tag"), "core");
    ck_assert_str_eq(str(o, "msg"), "hello world");
    const char *ts = str(o, "ts");
    ck_assert_uint_eq(strlen(ts), 24);
    ck_assert_int_eq(ts[23], 'Z');
    ck_assert_uint_eq(json_object_size(o), 4);
    json_decref(o);
}
END_TEST

START_TEST(test_json_escapes)
{
    sb_log_set_format(SB_LOG_JSON);
    begin_capture();
    sb_log_warn("plugin \"x\"", "q\"b\\n\nt\tc\x01\x1f del\x7f é€😀");
    json_t *o = one_json_line(end_capture());
    ck_assert_str_eq(str(o, "tag"), "plugin \"x\"");
    ck_assert_str_eq(str(o, "msg"), "q\"b\\n\nt\tc\x01\x1f del\x7f é€😀");
    json_decref(o);
}
END_TEST

START_TEST(test_json_invalid_utf8)
{
    sb_log_set_format(SB_LOG_JSON);
    /* A lone continuation, 0xff, an overlong '/', a surrogate, a sequence
     * cut short, a code point past U+10FFFF: each bad byte is U+FFFD. */
    begin_capture();
    sb_log_error("core", "a\x80"
                         "b\xff"
                         "c\xc0\xaf"
                         "d\xed\xa0\x80"
                         "e\xe2\x82"
                         "f\xf4\x90\x80\x80"
                         "g");
    json_t *o = one_json_line(end_capture());
    const char *r = "\xef\xbf\xbd";
    char want[128];
    snprintf(want, sizeof(want), "a%sb%sc%s%sd%s%s%se%s%sf%s%s%s%sg", r, r, r,
             r, r, r, r, r, r, r, r, r, r);
    ck_assert_str_eq(str(o, "msg"), want);
    json_decref(o);
}
END_TEST

START_TEST(test_json_fields)
{
    sb_log_set_format(SB_LOG_JSON);
    sb_log_field f[] = {{"client", NULL, 42},
                        {"remote", "::ffff:127.0.0.1", 0},
                        {"gateway", "chat \"1\"", 0},
                        {"code", NULL, -1}};
    begin_capture();
    sb_log_fields(SB_LOG_INFO, "server", f, 4, "client %d connected", 42);
    json_t *o = one_json_line(end_capture());
    ck_assert_str_eq(str(o, "msg"), "client 42 connected");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "client")), 42);
    ck_assert_str_eq(str(o, "remote"), "::ffff:127.0.0.1");
    ck_assert_str_eq(str(o, "gateway"), "chat \"1\"");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "code")), -1);
    json_decref(o);

    /* Below the level: nothing at all. */
    begin_capture();
    sb_log_fields(SB_LOG_DEBUG, "server", f, 4, "hidden");
    ck_assert_str_eq(end_capture(), "");
}
END_TEST

START_TEST(test_json_long_message_is_cut_whole)
{
    sb_log_set_format(SB_LOG_JSON);
    /* Longer than a line, made of 2-byte characters and escapes so that a
     * cut in the middle of either would break the JSON. */
    static char msg[12000];
    size_t n = 0;
    while (n + 4 < sizeof(msg)) {
        memcpy(msg + n, "é\"", 3);
        n += 3;
    }
    msg[n] = 0;
    char big[1024];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    sb_log_field f[] = {{"client", NULL, 1}, {"huge", big, 0}};
    begin_capture();
    sb_log_fields(SB_LOG_INFO, "core", f, 2, "%s", msg);
    const char *out = end_capture();
    ck_assert_uint_le(strlen(out), 4096);
    json_t *o = one_json_line(out);
    const char *got = str(o, "msg");
    ck_assert_uint_gt(strlen(got), 1000);
    ck_assert(strncmp(got, msg, strlen(got)) == 0);
    /* The small field fits; the one too big for the line is left out. */
    ck_assert_int_eq(json_integer_value(json_object_get(o, "client")), 1);
    ck_assert_ptr_null(json_object_get(o, "huge"));
    json_decref(o);
}
END_TEST

/* A line that repeats per attempt: the first SB_LOG_LIMIT_BURST of a window
 * are written, the rest counted and told once the window is over. */
START_TEST(test_limited_lines)
{
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    int written = 0;
    begin_capture();
    for (int i = 0; i < 100; i++)
        written += sb_log_limited(&lim, SB_LOG_ERROR, "lws", "accept %d", i);
    /* Not over yet: nothing more is said. */
    sb_log_limit_flush(0);
    const char *out = end_capture();
    ck_assert_int_eq(written, SB_LOG_LIMIT_BURST);
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    ck_assert_int_eq(lines, SB_LOG_LIMIT_BURST);
    ck_assert_ptr_nonnull(strstr(out, "accept 4\n"));
    ck_assert_ptr_null(strstr(out, "accept 5\n"));

    begin_capture();
    sb_log_limit_flush(sb_log_now_ms() + SB_LOG_LIMIT_WINDOW_MS + 1);
    out = end_capture();
    ck_assert_msg(
        strstr(out, "[lws] 95 similar line(s) suppressed in the last"), "%s",
        out);
    /* A new window starts with lines written again. */
    begin_capture();
    lim.window_ms = 0;
    ck_assert_int_eq(sb_log_limited(&lim, SB_LOG_ERROR, "lws", "again"), 1);
    out = end_capture();
    ck_assert_ptr_nonnull(strstr(out, "again"));
    /* Below the level nothing is written nor counted. */
    ck_assert_int_eq(sb_log_limited(&lim, SB_LOG_DEBUG, "lws", "quiet"), 0);
    ck_assert_uint_eq(lim.suppressed, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_text_line);
    tcase_add_test(tc, test_json_line);
    tcase_add_test(tc, test_worker_named);
    tcase_add_test(tc, test_json_escapes);
    tcase_add_test(tc, test_json_invalid_utf8);
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_json_long_message_is_cut_whole);
    tcase_add_test(tc, test_limited_lines);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests for envelope: every status and error text, the data and id
 * spans, decoded event names, duplicate keys, whitespace, nesting limits
 * (including a 100,000-deep document), a 1 MiB payload, jansson's edge cases
 * (each checked against jansson itself), the string writer, and a seeded
 * differential run of a few hundred thousand generated and mutated inputs
 * against jansson (the same oracle the fuzz target uses). */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../fuzz/envelope_oracle.h"
#include "buf.h"
#include "envelope.h"

#define JFLAGS ORACLE_FLAGS

static sb_envelope env;

static sb_env_status parse_n(const char *s, size_t n)
{
    return sb_envelope_parse(s, n, 64, &env);
}

static sb_env_status parse(const char *s)
{
    return parse_n(s, strlen(s));
}

static void assert_span(sb_span sp, const char *want)
{
    if (!want) {
        ck_assert_ptr_null(sp.ptr);
        ck_assert_uint_eq(sp.len, 0);
        return;
    }
    ck_assert_msg(sp.ptr != NULL, "span absent, wanted %s", want);
    ck_assert_msg(sp.len == strlen(want) && memcmp(sp.ptr, want, sp.len) == 0,
                  "span is '%.*s', wanted '%s'", (int)sp.len, sp.ptr, want);
}

static int jansson_accepts(const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, JFLAGS, NULL);
    json_decref(j);
    return j != NULL;
}

static int scanner_accepts(const char *s, size_t n)
{
    return sb_json_validate(s, n, 100000, NULL, NULL, 0) == SB_ENV_OK;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A growable scratch string for building big or repetitive inputs. */
typedef struct {
    char *p;
    size_t n, cap;
} text;

static void put(text *t, const void *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        ck_assert_ptr_nonnull(t->p);
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void put_rep(text *t, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        puts_(t, s);
}

/* ---- the basics --------------------------------------------------------- */

START_TEST(test_typical_message)
{
    const char *m = "{\"event\":\"identity\",\"data\":"
                    "\"0123456789012345678901234567890123456789012345678901"
                    "234567890123\"}";
    ck_assert_int_eq(parse(m), SB_ENV_OK);
    ck_assert_str_eq(env.event, "identity");
    ck_assert_uint_eq(env.event_len, 8);
    assert_span(env.data, "\"0123456789012345678901234567890123456789012345"
                          "678901234567890123\"");
    ck_assert_ptr_eq(env.data.ptr, m + 27); /* a span into the input */
    assert_span(env.id, NULL);
    ck_assert_str_eq(env.error, "");
}
END_TEST

START_TEST(test_statuses)
{
    ck_assert_int_eq(parse("{\"event\":\"x\""), SB_ENV_BAD_JSON);
    ck_assert_str_eq(env.error, "Invalid JSON: unexpected end of input");
    ck_assert_int_eq(parse("{\"event\":}"), SB_ENV_BAD_JSON);
    ck_assert_str_eq(env.error, "Invalid JSON: unexpected '}' at offset 9");
    ck_assert_int_eq(parse(""), SB_ENV_BAD_JSON);
    ck_assert_int_eq(parse("{\"event\":\"x\",}"), SB_ENV_BAD_JSON);

    text t = {0};
    puts_(&t, "{\"event\":\"x\",\"data\":");
    put_rep(&t, "[", 64);
    ck_assert_int_eq(parse(t.p), SB_ENV_TOO_DEEP);
    ck_assert_str_eq(env.error, "JSON nested deeper than 64 levels");
    free(t.p);

    const char *not_obj[] = {"[1]", "\"x\"", "5", "null", "true", " [] "};
    for (size_t i = 0; i < sizeof not_obj / sizeof *not_obj; i++) {
        ck_assert_int_eq(parse(not_obj[i]), SB_ENV_NOT_OBJECT);
        ck_assert_str_eq(env.error, "Message must be a JSON object");
    }

    const char *no_event[] = {"{}", "{\"data\":1}", "{\"Event\":\"x\"}",
                              "{\"events\":\"x\"}", "{\"data\":{\"event\":1}}"};
    for (size_t i = 0; i < sizeof no_event / sizeof *no_event; i++) {
        ck_assert_int_eq(parse(no_event[i]), SB_ENV_NO_EVENT);
        ck_assert_str_eq(env.error, "Message has no \"event\"");
    }

    const char *not_str[] = {"{\"event\":5}", "{\"event\":null}",
                             "{\"event\":[\"x\"]}", "{\"event\":{}}",
                             "{\"event\":false}"};
    for (size_t i = 0; i < sizeof not_str / sizeof *not_str; i++) {
        ck_assert_int_eq(parse(not_str[i]), SB_ENV_EVENT_NOT_STRING);
        ck_assert_str_eq(env.error, "\"event\" must be a string");
    }

    ck_assert_int_eq(parse("{\"event\":\"\"}"), SB_ENV_EVENT_INVALID);
    ck_assert_str_eq(env.error, "\"event\" must not be empty");
    ck_assert_int_eq(parse("{\"event\":\"a\\u0000b\"}"), SB_ENV_EVENT_INVALID);
    ck_assert_str_eq(env.error, "\"event\" must not contain NUL");
    ck_assert_str_eq(env.event, "");

    ck_assert_int_eq(parse("{\"event\":\"x\",\"id\":true}"), SB_ENV_BAD_ID);
    ck_assert_str_eq(env.error, "\"id\" must be a number or a string");
    ck_assert_str_eq(env.event, "x"); /* the event is still known */
}
END_TEST

START_TEST(test_event_length)
{
    text t = {0};
    puts_(&t, "{\"event\":\"");
    put_rep(&t, "e", SB_EVENT_MAX);
    puts_(&t, "\"}");
    ck_assert_int_eq(parse(t.p), SB_ENV_OK);
    ck_assert_uint_eq(env.event_len, SB_EVENT_MAX);
    ck_assert_uint_eq(strlen(env.event), SB_EVENT_MAX);

    t.n = 0;
    puts_(&t, "{\"event\":\"");
    put_rep(&t, "e", SB_EVENT_MAX + 1);
    puts_(&t, "\"}");
    ck_assert_int_eq(parse(t.p), SB_ENV_EVENT_INVALID);
    ck_assert_str_eq(env.error, "\"event\" is longer than 255 bytes");

    /* The limit is on decoded bytes: 255 escapes are 1530 raw bytes... */
    t.n = 0;
    puts_(&t, "{\"event\":\"");
    put_rep(&t, "\\u0041", SB_EVENT_MAX);
    puts_(&t, "\"}");
    ck_assert_int_eq(parse(t.p), SB_ENV_OK);
    ck_assert_uint_eq(env.event_len, SB_EVENT_MAX);
    ck_assert_int_eq(env.event[0], 'A');

    /* ...and 128 two-byte characters are 256 bytes, one too many. */
    t.n = 0;
    puts_(&t, "{\"event\":\"");
    put_rep(&t, "\xc3\xa9", 128);
    puts_(&t, "\"}");
    ck_assert_int_eq(parse(t.p), SB_ENV_EVENT_INVALID);
    free(t.p);
}
END_TEST

START_TEST(test_data_spans)
{
    static const struct {
        const char *msg, *data;
    } cases[] = {
        {"{\"event\":\"e\",\"data\":5}", "5"},
        {"{\"event\":\"e\",\"data\":\"hi\"}", "\"hi\""},
        {"{\"event\":\"e\",\"data\":{\"a\":[1,2]}}", "{\"a\":[1,2]}"},
        {"{\"event\":\"e\",\"data\":false}", "false"},
        {"{\"event\":\"e\",\"data\":0}", "0"},
        {"{\"event\":\"e\",\"data\":\"\"}", "\"\""},
        {"{\"event\":\"e\",\"data\":[]}", "[]"},
        {"{\"event\":\"e\",\"data\":{}}", "{}"},
        {"{\"event\":\"e\",\"data\":null}", "null"},
        {"{\"event\":\"e\"}", NULL},
        {"{\"data\":-1.5e+3,\"event\":\"e\"}", "-1.5e+3"},
        {"{\"event\":\"e\",\"data\":\"a\\\"}\"}", "\"a\\\"}\""},
        {"{\"data\":[{\"data\":1,\"event\":2}],\"event\":\"e\"}",
         "[{\"data\":1,\"event\":2}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_msg(parse(cases[i].msg) == SB_ENV_OK, "%s: %s", cases[i].msg,
                      env.error);
        ck_assert_str_eq(env.event, "e");
        assert_span(env.data, cases[i].data);
        ck_assert_ptr_null(
            sb_envelope_oracle(cases[i].msg, strlen(cases[i].msg)));
    }
}
END_TEST

START_TEST(test_id)
{
    ck_assert_int_eq(parse("{\"event\":\"e\",\"id\":42}"), SB_ENV_OK);
    assert_span(env.id, "42");
    ck_assert_int_eq(parse("{\"id\":-1.5e3,\"event\":\"e\"}"), SB_ENV_OK);
    assert_span(env.id, "-1.5e3");
    ck_assert_int_eq(parse("{\"event\":\"e\",\"id\":\"a\\\"b\"}"), SB_ENV_OK);
    assert_span(env.id, "\"a\\\"b\"");
    ck_assert_int_eq(parse("{\"event\":\"e\"}"), SB_ENV_OK);
    assert_span(env.id, NULL);

    /* A bad id is reported and never exposed, so nobody echoes it. */
    const char *bad[] = {"null", "true", "false", "[1]", "{\"a\":1}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char m[64];
        snprintf(m, sizeof m, "{\"event\":\"e\",\"id\":%s}", bad[i]);
        ck_assert_int_eq(parse(m), SB_ENV_BAD_ID);
        assert_span(env.id, NULL);
    }
    /* Other failures still carry the id, for the exception. */
    ck_assert_int_eq(parse("{\"id\":7}"), SB_ENV_NO_EVENT);
    assert_span(env.id, "7");
    ck_assert_int_eq(parse("{\"event\":5,\"id\":\"x\"}"),
                     SB_ENV_EVENT_NOT_STRING);
    assert_span(env.id, "\"x\"");
    ck_assert_int_eq(parse("{\"event\":\"\",\"id\":8,\"data\":[1]}"),
                     SB_ENV_EVENT_INVALID);
    assert_span(env.id, "8");
    assert_span(env.data, "[1]");
    /* And so do failures of the JSON itself, once the id was read. */
    ck_assert_int_eq(parse("{\"id\":7,"), SB_ENV_BAD_JSON);
    assert_span(env.id, "7");
    ck_assert_int_eq(parse("{\"id\":\"q\",\"event\":\"e\",\"data\":[1,]}"),
                     SB_ENV_BAD_JSON);
    assert_span(env.id, "\"q\"");
    ck_assert_int_eq(parse("{\"event\":\"e\",\"id\":9} trailing"),
                     SB_ENV_BAD_JSON);
    assert_span(env.id, "9");
    const char *deep = "{\"id\":3,\"data\":[[[[1]]]]}";
    ck_assert_int_eq(sb_envelope_parse(deep, strlen(deep), 3, &env),
                     SB_ENV_TOO_DEEP);
    assert_span(env.id, "3");
    /* Not before it was read, nor a bad or unfinished one. */
    ck_assert_int_eq(parse("{\"data\":[1,],\"id\":7}"), SB_ENV_BAD_JSON);
    assert_span(env.id, NULL);
    ck_assert_int_eq(parse("{\"id\":null,\"x\":}"), SB_ENV_BAD_JSON);
    assert_span(env.id, NULL);
    ck_assert_int_eq(parse("{\"id\":\"abc"), SB_ENV_BAD_JSON);
    assert_span(env.id, NULL);
    /* A number the input ends right after is whole. */
    ck_assert_int_eq(parse("{\"id\":12"), SB_ENV_BAD_JSON);
    assert_span(env.id, "12");
    ck_assert_int_eq(parse("[{\"id\":7}]"), SB_ENV_NOT_OBJECT);
    assert_span(env.id, NULL);
    /* Only the top level counts. */
    ck_assert_int_eq(parse("{\"event\":\"e\",\"data\":{\"id\":7}}"), SB_ENV_OK);
    assert_span(env.id, NULL);
}
END_TEST

/* Integers beyond 64 bits are valid JSON: accepted, forwarded digit for
 * digit, and decoded as reals (as JavaScript reads them) while the integers
 * that fit stay integers. */
START_TEST(test_big_integers)
{
    const char *m =
        "{\"event\":\"e\",\"id\":123456789012345678901234567890,"
        "\"data\":{\"big\":123456789012345678901234567890,\"small\":5,"
        "\"neg\":-99999999999999999999,\"max\":9223372036854775807,"
        "\"min\":-9223372036854775808,\"over\":9223372036854775808,"
        "\"arr\":[18446744073709551616,1,2.5,1e2],"
        "\"s\":\"123456789012345678901234567890\","
        "\"q\":\"a\\\"12345678901234567890123\","
        "\"12345678901234567890123\":true}}";
    ck_assert_int_eq(parse(m), SB_ENV_OK);
    assert_span(env.id, "123456789012345678901234567890");
    /* The raw span is the client's text, digits and all. */
    const char *d = strstr(m, "\"data\":") + 7;
    ck_assert_uint_eq(env.data.len, strlen(d) - 1);
    ck_assert(memcmp(env.data.ptr, d, env.data.len) == 0);

    json_t *v = sb_json_decode(env.data.ptr, env.data.len);
    ck_assert_ptr_nonnull(v);
    json_t *big = json_object_get(v, "big");
    ck_assert(json_is_real(big));
    ck_assert(json_real_value(big) == 123456789012345678901234567890.0);
    ck_assert(json_is_integer(json_object_get(v, "small")));
    ck_assert_int_eq(json_integer_value(json_object_get(v, "small")), 5);
    ck_assert(json_is_real(json_object_get(v, "neg")));
    ck_assert(json_real_value(json_object_get(v, "neg")) == -1e20);
    ck_assert(json_is_integer(json_object_get(v, "max")));
    ck_assert(json_integer_value(json_object_get(v, "max")) == INT64_MAX);
    ck_assert(json_is_integer(json_object_get(v, "min")));
    ck_assert(json_integer_value(json_object_get(v, "min")) == INT64_MIN);
    ck_assert(json_is_real(json_object_get(v, "over")));
    ck_assert(json_real_value(json_object_get(v, "over")) == 0x1p63);
    json_t *arr = json_object_get(v, "arr");
    ck_assert(json_real_value(json_array_get(arr, 0)) == 0x1p64);
    ck_assert(json_is_integer(json_array_get(arr, 1)));
    ck_assert(json_is_real(json_array_get(arr, 2)));
    ck_assert(json_is_real(json_array_get(arr, 3)));
    ck_assert(json_real_value(json_array_get(arr, 3)) == 100.0);
    /* Digits inside strings and keys are left alone. */
    ck_assert_str_eq(json_string_value(json_object_get(v, "s")),
                     "123456789012345678901234567890");
    ck_assert_str_eq(json_string_value(json_object_get(v, "q")),
                     "a\"12345678901234567890123");
    ck_assert(json_is_true(json_object_get(v, "12345678901234567890123")));
    json_decref(v);
    /* A bare one, and one in a top-level array. */
    v = sb_json_decode("-18446744073709551616", 21);
    ck_assert(json_is_real(v) && json_real_value(v) == -0x1p64);
    json_decref(v);
    v = sb_json_decode(" [ 1 , 99999999999999999999 ] ", 30);
    ck_assert(json_is_integer(json_array_get(v, 0)));
    ck_assert(json_real_value(json_array_get(v, 1)) == 1e20);
    json_decref(v);

    /* Only what overflows a double is refused, as a real would be: 308
     * digits fit, 309 nines do not. */
    char num[400];
    memset(num, '9', 308);
    num[308] = 0;
    ck_assert(scanner_accepts(num, 308));
    v = sb_json_decode(num, 308);
    ck_assert(json_is_real(v) && json_real_value(v) > 9.9e307);
    json_decref(v);
    memset(num, '9', 309);
    num[309] = 0;
    ck_assert(!scanner_accepts(num, 309));
    char wrapped[420];
    snprintf(wrapped, sizeof(wrapped), "{\"id\":%s}", num);
    ck_assert_int_eq(parse(wrapped), SB_ENV_BAD_JSON);
    ck_assert_str_eq(env.error,
                     "Invalid JSON: real number overflow at offset 6");
    ck_assert_ptr_null(sb_envelope_oracle(wrapped, strlen(wrapped)));
    ck_assert_ptr_null(sb_envelope_oracle(m, strlen(m)));
}
END_TEST

START_TEST(test_escaped_event)
{
    ck_assert_int_eq(parse("{\"event\":\"caf\\u00e9\"}"), SB_ENV_OK);
    ck_assert_str_eq(env.event, "caf\xc3\xa9");
    ck_assert_uint_eq(env.event_len, 5);
    ck_assert_int_eq(parse("{\"event\":\"\\ud83d\\ude00!\"}"), SB_ENV_OK);
    ck_assert_str_eq(env.event, "\xf0\x9f\x98\x80!");
    ck_assert_int_eq(parse("{\"event\":\"\\uD83D\\uDE00\"}"), SB_ENV_OK);
    ck_assert_str_eq(env.event, "\xf0\x9f\x98\x80");
    ck_assert_int_eq(parse("{\"event\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\tz\"}"),
                     SB_ENV_OK);
    ck_assert_str_eq(env.event, "a\"\\/\b\f\n\r\tz");
    ck_assert_int_eq(parse("{\"event\":\"\\u20ac\\u0800\\u07ff\\u0080\"}"),
                     SB_ENV_OK);
    ck_assert_str_eq(env.event, "\xe2\x82\xac\xe0\xa0\x80\xdf\xbf\xc2\x80");
    /* Raw UTF-8 passes through. */
    ck_assert_int_eq(parse("{\"event\":\"\xe2\x82\xac\"}"), SB_ENV_OK);
    ck_assert_str_eq(env.event, "\xe2\x82\xac");
    /* Keys are compared decoded. */
    ck_assert_int_eq(parse("{\"\\u0065vent\":\"x\",\"d\\u0061ta\":1,"
                           "\"\\u0069\\u0064\":2}"),
                     SB_ENV_OK);
    ck_assert_str_eq(env.event, "x");
    assert_span(env.data, "1");
    assert_span(env.id, "2");
    ck_assert_int_eq(parse("{\"\\u0065vents\":\"x\"}"), SB_ENV_NO_EVENT);
    ck_assert_int_eq(parse("{\"even\\u0074\":\"x\"}"), SB_ENV_OK);
}
END_TEST

START_TEST(test_duplicate_keys)
{
    ck_assert_int_eq(parse("{\"event\":1,\"event\":\"b\"}"), SB_ENV_OK);
    ck_assert_str_eq(env.event, "b");
    ck_assert_int_eq(parse("{\"event\":\"a\",\"event\":1}"),
                     SB_ENV_EVENT_NOT_STRING);
    ck_assert_int_eq(parse("{\"event\":\"a\",\"data\":1,\"event\":\"b\","
                           "\"data\":[2],\"id\":1,\"id\":\"z\"}"),
                     SB_ENV_OK);
    ck_assert_str_eq(env.event, "b");
    assert_span(env.data, "[2]");
    assert_span(env.id, "\"z\"");
    ck_assert_int_eq(parse("{\"event\":\"a\",\"id\":1,\"id\":null}"),
                     SB_ENV_BAD_ID);
    ck_assert_int_eq(parse("{\"event\":\"a\",\"id\":null,\"id\":1}"),
                     SB_ENV_OK);
    assert_span(env.id, "1");
    ck_assert_int_eq(parse("{\"event\":\"a\",\"\\u0065vent\":\"b\"}"),
                     SB_ENV_OK);
    ck_assert_str_eq(env.event, "b");
}
END_TEST

START_TEST(test_whitespace)
{
    const char *m = " \t\r\n{ \"event\" :\t\"x\" ,\n\"data\" : [ 1 , { \"a\" "
                    ": 2 } ] ,\r\n\"id\" : 3 \n} \r\n\t";
    ck_assert_int_eq(parse(m), SB_ENV_OK);
    ck_assert_str_eq(env.event, "x");
    assert_span(env.data, "[ 1 , { \"a\" : 2 } ]");
    assert_span(env.id, "3");
    ck_assert_ptr_null(sb_envelope_oracle(m, strlen(m)));

    sb_span t;
    ck_assert_int_eq(sb_json_validate("  \"a\"\n", 6, 8, &t, NULL, 0),
                     SB_ENV_OK);
    assert_span(t, "\"a\"");

    /* Only the four JSON whitespace bytes count. */
    const char *not_ws[] = {"\f{}", "{}\v", "\xc2\xa0{}", "{\x0b}"};
    for (size_t i = 0; i < sizeof not_ws / sizeof *not_ws; i++) {
        ck_assert_int_eq(parse(not_ws[i]), SB_ENV_BAD_JSON);
        ck_assert(!jansson_accepts(not_ws[i], strlen(not_ws[i])));
    }
}
END_TEST

/* ---- depth -------------------------------------------------------------- */

START_TEST(test_depth_limit)
{
    /* The envelope is depth 1, so data may hold 63 more levels. */
    for (int extra = 62; extra <= 64; extra++) {
        text t = {0};
        puts_(&t, "{\"event\":\"x\",\"data\":");
        put_rep(&t, "[", (size_t)extra);
        put_rep(&t, "]", (size_t)extra);
        puts_(&t, "}");
        ck_assert_int_eq(parse(t.p), extra < 64 ? SB_ENV_OK : SB_ENV_TOO_DEEP);
        free(t.p);
    }
    char err[64];
    ck_assert_int_eq(sb_json_validate("{}", 2, 0, NULL, err, sizeof err),
                     SB_ENV_TOO_DEEP);
    ck_assert_str_eq(err, "JSON nested deeper than 0 levels");
    ck_assert_int_eq(sb_json_validate("1", 1, 0, NULL, NULL, 0), SB_ENV_OK);
    ck_assert_int_eq(sb_json_validate("[[1]]", 5, 2, NULL, NULL, 0), SB_ENV_OK);
    ck_assert_int_eq(sb_json_validate("[[1]]", 5, 1, NULL, NULL, 0),
                     SB_ENV_TOO_DEEP);
    ck_assert_int_eq(sb_json_validate("{\"a\":{}}", 8, 1, NULL, NULL, 0),
                     SB_ENV_TOO_DEEP);
    /* The first problem wins: a syntax error before the excess... */
    ck_assert_int_eq(sb_json_validate("[x[[[", 5, 2, NULL, NULL, 0),
                     SB_ENV_BAD_JSON);
    /* ...and the excess before a later syntax error. */
    ck_assert_int_eq(sb_json_validate("[[[x", 4, 2, NULL, NULL, 0),
                     SB_ENV_TOO_DEEP);
}
END_TEST

START_TEST(test_very_deep)
{
    const size_t deep = 100000;
    text t = {0};
    put_rep(&t, "[", deep);
    put_rep(&t, "]", deep);
    text o = {0};
    puts_(&o, "{\"event\":\"x\",\"data\":");
    put_rep(&o, "{\"a\":", deep);
    puts_(&o, "1");
    put_rep(&o, "}", deep);
    puts_(&o, "}");

    double t0 = now_s();
    ck_assert_int_eq(parse_n(t.p, t.n), SB_ENV_TOO_DEEP);
    ck_assert_int_eq(parse_n(o.p, o.n), SB_ENV_TOO_DEEP);
    /* Even at the widest limit the scan stops at jansson's 2048 levels. */
    ck_assert_int_eq(sb_json_validate(t.p, t.n, 1u << 30, NULL, NULL, 0),
                     SB_ENV_TOO_DEEP);
    ck_assert_int_eq(sb_json_validate(o.p, o.n, 1u << 30, NULL, NULL, 0),
                     SB_ENV_TOO_DEEP);
    double took = now_s() - t0;
    ck_assert_msg(took < 0.05, "100,000-deep documents took %.3f s", took);
    ck_assert(!jansson_accepts(t.p, t.n));
    free(t.p);
    free(o.p);
}
END_TEST

/* jansson counts every value, scalars included, against its limit of 2048:
 * a container 2048 deep may exist only if it is empty. */
START_TEST(test_jansson_depth_limit)
{
    static const struct {
        const char *open, *inner, *close;
        size_t levels;
        int ok;
    } cases[] = {
        {"[", "", "]", 2048, 1},
        {"[", "1", "]", 2047, 1},
        {"[", "1", "]", 2048, 0},
        {"[", "", "]", 2049, 0},
        {"{\"a\":", "{}", "}", 2047, 1},
        {"{\"a\":", "{\"b\":1}", "}", 2047, 0},
        {"{\"a\":", "{\"b\":1}", "}", 2046, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        text t = {0};
        put_rep(&t, cases[i].open, cases[i].levels);
        puts_(&t, cases[i].inner);
        put_rep(&t, cases[i].close, cases[i].levels);
        ck_assert_int_eq(jansson_accepts(t.p, t.n), cases[i].ok);
        ck_assert_int_eq(sb_json_validate(t.p, t.n, 5000, NULL, NULL, 0),
                         cases[i].ok ? SB_ENV_OK : SB_ENV_TOO_DEEP);
        free(t.p);
    }
}
END_TEST

/* ---- size --------------------------------------------------------------- */

START_TEST(test_big_payload)
{
    text t = {0};
    puts_(&t, "{\"event\":\"upload\",\"data\":\"");
    size_t start = t.n - 1;
    static const char *pieces[] = {"abcdefghijklmnopqrstuvwxyz0123456789",
                                   "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                                   "\\n\\\"\\u00e9\\ud83d\\ude00", " ~\x7f"};
    for (size_t i = 0; t.n < start + (1u << 20); i++)
        puts_(&t, pieces[i % 4]);
    puts_(&t, "\",\"id\":1}");
    ck_assert_int_eq(parse_n(t.p, t.n), SB_ENV_OK);
    ck_assert_ptr_eq(env.data.ptr, t.p + start);
    ck_assert_uint_eq(env.data.len, t.n - start - 8);
    assert_span(env.id, "1");
    ck_assert_ptr_null(sb_envelope_oracle(t.p, t.n));

    /* One bad byte at the very end of the megabyte is still found. */
    t.p[t.n - 10] = '\x01';
    ck_assert_int_eq(parse_n(t.p, t.n), SB_ENV_BAD_JSON);
    ck_assert(!jansson_accepts(t.p, t.n));
    free(t.p);
}
END_TEST

/* ---- agreement with jansson on its edge cases ---------------------------- */

/* DBL_MAX + half an ulp, the smallest magnitude strtod rounds to infinity. */
#define OVERFLOW_BOUNDARY                                                      \
    "179769313486231580793728971405303415079934132710037826936173778980444968" \
    "292764750946649017977587207096330286416692887910946555547851940402630657" \
    "488671505820681908902000708383676273854845817711531764475730270069855571" \
    "366959622842914819860834936475292719074168444365510704342711559699508093" \
    "042880177904174497792"
/* One below it: rounds down to DBL_MAX. */
#define BELOW_BOUNDARY                                                         \
    "179769313486231580793728971405303415079934132710037826936173778980444968" \
    "292764750946649017977587207096330286416692887910946555547851940402630657" \
    "488671505820681908902000708383676273854845817711531764475730270069855571" \
    "366959622842914819860834936475292719074168444365510704342711559699508093" \
    "042880177904174497791"

struct edge {
    const char *s;
    size_t n; /* 0: strlen */
    int valid;
};

#define E(lit, ok)                                                             \
    {                                                                          \
        lit, sizeof(lit) - 1, ok                                               \
    }

static const struct edge edges[] = {
    /* UTF-8 inside strings */
    E("\"\xc3\xa9\"", 1),
    E("\"\xe2\x82\xac\"", 1),
    E("\"\xf0\x9f\x98\x80\"", 1),
    E("\"\xef\xbf\xbf\"", 1),
    E("\"\xf4\x8f\xbf\xbf\"", 1),
    E("\"\xed\x9f\xbf\"", 1),
    E("\"\xee\x80\x80\"", 1),
    E("\"\xc2\x80\"", 1),
    E("\"\x80\"", 0),
    E("\"\xbf\"", 0),
    E("\"\xc0\xaf\"", 0),
    E("\"\xc1\xbf\"", 0),
    E("\"\xe0\x80\xaf\"", 0),
    E("\"\xe0\x9f\xbf\"", 0),
    E("\"\xed\xa0\x80\"", 0),
    E("\"\xed\xbf\xbf\"", 0),
    E("\"\xf0\x8f\xbf\xbf\"", 0),
    E("\"\xf4\x90\x80\x80\"", 0),
    E("\"\xf5\x80\x80\x80\"", 0),
    E("\"\xf8\x88\x80\x80\x80\"", 0),
    E("\"\xff\"", 0),
    E("\"\xfe\"", 0),
    E("\"\xc3\"", 0),
    E("\"\xc3", 0),
    E("\"\xe2\x82\"", 0),
    E("\"\xf0\x9f\x98\"", 0),
    E("\"\xc3\x28\"", 0),
    E("\"\xe2\x28\xa1\"", 0),
    /* UTF-8 outside strings, BOM */
    E("\xc3\xa9", 0),
    E("[1]\xff", 0),
    E("\xef\xbb\xbf{}", 0),
    /* \u escapes and surrogates */
    E("\"\\ud800\"", 0),
    E("\"\\udc00\"", 0),
    E("\"\\udfff\"", 0),
    E("\"\\ud800\\udc00\"", 1),
    E("\"\\udbff\\udfff\"", 1),
    E("\"\\uD83D\\uDE00\"", 1),
    E("\"\\ud800\\ud800\"", 0),
    E("\"\\ud800x\"", 0),
    E("\"\\ud800\\u0041\"", 0),
    E("\"\\ud800\\n\"", 0),
    E("\"\\udc00\\ud800\"", 0),
    E("\"\\uDBFF\\uE000\"", 0),
    E("\"\\ud800\\u\"", 0),
    E("\"\\ud800\\udc0\"", 0),
    E("\"\\ud800\\", 0),
    E("\"\\u12\"", 0),
    E("\"\\u12G4\"", 0),
    E("\"\\U1234\"", 0),
    E("\"\\uabcd\"", 1),
    E("\"\\uABCD\"", 1),
    E("\"\\u00e9\"", 1),
    E("\"\\x41\"", 0),
    E("\"\\'\"", 0),
    E("\"\\a\"", 0),
    E("\"\\0\"", 0),
    E("\"\\/\"", 1),
    E("\"\\", 0),
    E("\"\\u", 0),
    E("\"\\u00", 0),
    /* NUL: fine escaped in values, never in keys, never raw */
    E("\"\\u0000\"", 1),
    E("[\"a\\u0000b\"]", 1),
    E("{\"a\":\"\\u0000\"}", 1),
    E("{\"\\u0000\":1}", 0),
    E("{\"a\\u0000b\":1}", 0),
    E("[{\"\\u0000\":1}]", 0),
    E("{\"a\":{\"\\u0000\":1}}", 0),
    E("\"\0\"", 0),
    E("\0", 0),
    E(" \0", 0),
    E("[\0]", 0),
    E("{}\0", 0),
    E("\"a\"\0", 0),
    /* control characters */
    E("\"\x01\"", 0),
    E("\"\t\"", 0),
    E("\"\n\"", 0),
    E("\"\x1f\"", 0),
    E("\"\r\"", 0),
    E("\"\x7f\"", 1),
    E("{\"\x1f\":1}", 0),
    /* integers */
    E("0", 1),
    E("-0", 1),
    E("9223372036854775807", 1),
    /* beyond 64 bits: valid JSON, read as reals (JSON_DECODE_INT_AS_REAL) */
    E("9223372036854775808", 1),
    E("-9223372036854775808", 1),
    E("-9223372036854775809", 1),
    E("9999999999999999999", 1),
    E("1000000000000000000", 1),
    E("-1000000000000000000", 1),
    E("10000000000000000000", 1),
    E("123456789012345678901234567890", 1),
    E("[9223372036854775808]", 1),
    E("{\"a\":-9223372036854775809}", 1),
    E("[1,18446744073709551616,-3]", 1),
    E("-", 0),
    E("-a", 0),
    E("01", 0),
    E("-01", 0),
    E("00", 0),
    E("1.", 0),
    E(".5", 0),
    E("1.e3", 0),
    E("1e", 0),
    E("1e+", 0),
    E("1e-", 0),
    E("+1", 0),
    E("0x10", 0),
    E("1E+2", 1),
    E("1e-2", 1),
    E("1.5E2", 1),
    E("-0.0e-0", 1),
    E("Infinity", 0),
    E("-Infinity", 0),
    E("NaN", 0),
    E("1.5.3", 0),
    E("1e5e5", 0),
    E("--1", 0),
    E("- 1", 0),
    /* reals */
    E("1e308", 1),
    E("-1e308", 1),
    E("1.7976931348623157e308", 1),
    E("1.7976931348623158e308", 1),
    E("1.7976931348623159e308", 0),
    E("1e309", 0),
    E("-1e309", 0),
    E("0.1e310", 0),
    E("10e308", 0),
    E("0.00001e313", 1),
    E("0.00001e314", 0),
    E("1e-400", 1),
    E("-1e-400", 1),
    E("4.9e-324", 1),
    E("2e-324", 1),
    E("0e999999999999999999999", 1),
    E("0.0e99999", 1),
    E("-0.000e99999999", 1),
    E("1e99999999999999999999999", 0),
    E("1e-99999999999999999999999", 1),
    E("123456789012345678901234567890.0", 1),
    E(OVERFLOW_BOUNDARY, 0), /* an integer: too big */
    E(OVERFLOW_BOUNDARY ".0", 0),
    E("-" OVERFLOW_BOUNDARY ".0", 0),
    E(BELOW_BOUNDARY ".0", 1),
    E(BELOW_BOUNDARY ".9999999999", 1),
    E("0." OVERFLOW_BOUNDARY "e309", 0),
    E("0." BELOW_BOUNDARY "9e309", 1),
    E(OVERFLOW_BOUNDARY "e0", 0),
    E(BELOW_BOUNDARY "e0", 1),
    E(BELOW_BOUNDARY "E-0", 1),
    E(BELOW_BOUNDARY "e+1", 0),
    E("0.0000000000" BELOW_BOUNDARY "e319", 1),
    E("0.0000000000" OVERFLOW_BOUNDARY "e319", 0),
    /* literals and structure */
    E("true", 1),
    E("false", 1),
    E("null", 1),
    E("tru", 0),
    E("truE", 0),
    E("True", 0),
    E("nul", 0),
    E("nulll", 0),
    E("true false", 0),
    E("[true,]", 0),
    E("[,1]", 0),
    E("{,}", 0),
    E("{\"a\"}", 0),
    E("{\"a\":}", 0),
    E("{\"a\" 1}", 0),
    E("{1:2}", 0),
    E("{\"a\":1,}", 0),
    E("[1 2]", 0),
    E("[1,,2]", 0),
    E("]", 0),
    E("}", 0),
    E("[}", 0),
    E("{]", 0),
    E("\"abc", 0),
    E("", 0),
    E(" ", 0),
    E("\t\n", 0),
    E("/**/1", 0),
    E("1 // c", 0),
    E("'a'", 0),
    E("{'a':1}", 0),
    E("{\"a\":1 \"b\":2}", 0),
    E("[1]x", 0),
    E("{} x", 0),
    E("{}}", 0),
    E("1 2", 0),
    E("[]]", 0),
    E("[][]", 0),
    E("  1  ", 1),
    E("[]", 1),
    E("{}", 1),
    E("[[]]", 1),
    E("\"\"", 1),
    E("[1,\"a\",{\"b\":null}]", 1),
    E("{\"a\":{\"b\":[true,false,null]}}", 1),
    E("[-0,0.5,1e1]", 1),
    E("{\"\":0}", 1),
    E("[\"\\u0000\",\"\"]", 1),
};

START_TEST(test_jansson_edge_cases)
{
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        const struct edge *e = &edges[i];
        ck_assert_msg(jansson_accepts(e->s, e->n) == e->valid,
                      "jansson disagrees with the table on case %zu (%.60s)", i,
                      e->s);
        ck_assert_msg(scanner_accepts(e->s, e->n) == e->valid,
                      "scanner disagrees with jansson on case %zu (%.60s)", i,
                      e->s);
        ck_assert_msg(sb_envelope_oracle(e->s, e->n) == NULL,
                      "oracle: %s on case %zu", sb_envelope_oracle(e->s, e->n),
                      i);
    }
}
END_TEST

/* jansson 2.14 loses a raw NUL that directly follows a number or literal
 * (its lexer ungets it and the byte is gone), so it accepts these. We do not:
 * the spans would carry the NUL to other clients. */
START_TEST(test_jansson_nul_quirk)
{
    static const struct edge quirks[] = {
        E("1\0", 0),
        E("[1\0]", 0),
        E("true\0", 0),
        E("[true\0,2]", 0),
        E("1.5\0", 0),
        E("1e5\0", 0),
        E("{\"a\":null\0}", 0),
        E("{\"event\":\"x\",\"data\":1\0}", 0),
    };
    for (size_t i = 0; i < sizeof quirks / sizeof *quirks; i++) {
        ck_assert(jansson_accepts(quirks[i].s, quirks[i].n));
        ck_assert(!scanner_accepts(quirks[i].s, quirks[i].n));
        ck_assert_int_eq(parse_n(quirks[i].s, quirks[i].n), SB_ENV_BAD_JSON);
    }
    ck_assert(!jansson_accepts("1\0\0", 3)); /* only one NUL gets lost */
}
END_TEST

START_TEST(test_error_texts)
{
    static const struct {
        const char *in, *err;
    } cases[] = {
        {"{\"event\":\"\x80\"}", "Invalid JSON: invalid UTF-8 at offset 10"},
        {"{\"event\":\"a\nb\"}",
         "Invalid JSON: control character in string at offset 11"},
        {"{\"event\":\"\\q\"}", "Invalid JSON: invalid escape at offset 10"},
        {"{\"event\":\"\\udc00\"}",
         "Invalid JSON: invalid Unicode surrogate at offset 10"},
        {"{\"\\u0000\":1}", "Invalid JSON: NUL in object key at offset 2"},
        {"{\"id\":1e999}", "Invalid JSON: real number overflow at offset 6"},
        {"{} {}", "Invalid JSON: data after the value at offset 3"},
        {"{\"a\" 1}", "Invalid JSON: unexpected '1' at offset 5"},
        {"{\"a\":\x01}", "Invalid JSON: unexpected byte 0x01 at offset 5"},
        {"[tru]", "Invalid JSON: unexpected ']' at offset 4"},
        {"[tru", "Invalid JSON: unexpected end of input"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_int_eq(parse(cases[i].in), SB_ENV_BAD_JSON);
        ck_assert_str_eq(env.error, cases[i].err);
    }
    /* The validator writes the same texts, truncated to fit. */
    char small[8];
    ck_assert_int_eq(sb_json_validate("[1,", 3, 8, NULL, small, sizeof small),
                     SB_ENV_BAD_JSON);
    ck_assert_str_eq(small, "Invalid");
}
END_TEST

START_TEST(test_validate)
{
    sb_span t;
    char err[128] = "junk";
    ck_assert_int_eq(sb_json_validate(" [1, 2] ", 8, 64, &t, err, sizeof err),
                     SB_ENV_OK);
    assert_span(t, "[1, 2]");
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(sb_json_validate("-12.5e3\n", 8, 64, &t, err, sizeof err),
                     SB_ENV_OK);
    assert_span(t, "-12.5e3");
    ck_assert_int_eq(sb_json_validate("[1,", 3, 64, &t, err, sizeof err),
                     SB_ENV_BAD_JSON);
    assert_span(t, NULL);
    ck_assert_str_eq(err, "Invalid JSON: unexpected end of input");
    /* Only a prefix of the buffer is read. */
    ck_assert_int_eq(sb_json_validate("1}", 1, 64, &t, NULL, 0), SB_ENV_OK);
    assert_span(t, "1");
    ck_assert_int_eq(
        sb_envelope_parse("{\"event\":\"x\"}garbage", 13, 64, &env), SB_ENV_OK);
}
END_TEST

/* ---- writing ------------------------------------------------------------ */

static void assert_round_trip(const char *s, size_t n)
{
    sb_buf b = {0};
    ck_assert_int_eq(sb_json_append_string(&b, s, n), 0);
    ck_assert_int_eq(sb_json_validate(b.data, b.len, 1, NULL, NULL, 0),
                     SB_ENV_OK);
    json_t *j = json_loadb(b.data, b.len, JFLAGS, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_string(j));
    ck_assert_uint_eq(json_string_length(j), n);
    ck_assert(memcmp(json_string_value(j), s, n) == 0);
    json_decref(j);
    sb_buf_free(&b);
}

/* sb_utf8_repair into a buffer of cap bytes, compared with want. */
static void assert_repair(const char *in, size_t cap, bool cut,
                          const char *want, bool want_repaired)
{
    char out[512];
    bool repaired = !want_repaired;
    size_t n = sb_utf8_repair(out, cap, in, strlen(in), cut, &repaired);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_uint_le(n, cap - 1);
    ck_assert(sb_utf8_valid(out, n));
    ck_assert_int_eq(repaired, want_repaired);
}

START_TEST(test_utf8_repair)
{
#define FFFD "\xef\xbf\xbd"
#define DOTS SB_UTF8_ELLIPSIS
    assert_repair("", 16, false, "", false);
    assert_repair("plain", 16, false, "plain", false);
    assert_repair("h\xc3\xa9llo \xf0\x9f\x98\x80", 16, false,
                  "h\xc3\xa9llo \xf0\x9f\x98\x80", false);
    /* Each byte that does not begin a valid sequence: stray continuation,
     * lone lead, overlong, surrogate, above U+10FFFF, cut at the end. */
    assert_repair("a\x80"
                  "b",
                  16, false, "a" FFFD "b", true);
    assert_repair("\xc3"
                  "x",
                  16, false, FFFD "x", true);
    assert_repair("\xc0\xaf", 16, false, FFFD FFFD, true);
    assert_repair("\xed\xa0\x80", 16, false, FFFD FFFD FFFD, true);
    assert_repair("\xf4\x90\x80\x80", 32, false, FFFD FFFD FFFD FFFD, true);
    assert_repair("ok\xe2\x82", 16, false, "ok" FFFD FFFD, true);
    /* Fits exactly (cap - 1 bytes): kept whole, no marker. */
    assert_repair("abcdefg", 8, false, "abcdefg", false);
    /* One byte more: cut with the marker, on a character boundary. */
    assert_repair("abcdefgh", 8, false, "abcd" DOTS, false);
    assert_repair("a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, false,
                  "a\xc3\xa9" DOTS, false);
    assert_repair("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9, false,
                  "\xe2\x82\xac" DOTS, false);
    /* Replacements count for the length too. */
    assert_repair("\xff\xff\xff", 9, false, FFFD DOTS, true);
    /* Cut already by the caller: marked even though it fits. */
    assert_repair("abc", 16, true, "abc" DOTS, false);
    /* Tiny buffers. */
    assert_repair("abc", 4, false, "abc", false);
    assert_repair("abcd", 4, false, DOTS, false);
    char one[1] = {'x'};
    ck_assert_uint_eq(sb_utf8_repair(one, 1, "abc", 3, false, NULL), 0);
    ck_assert_int_eq(one[0], 0);
#undef FFFD
#undef DOTS
}
END_TEST

START_TEST(test_append_string)
{
    sb_buf b = {0};
    ck_assert_int_eq(sb_buf_append_str(&b, "x="), 0);
    const char in[] = "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f \xc3\xa9\0z";
    ck_assert_int_eq(sb_json_append_string(&b, in, sizeof in - 1), 0);
    const char want[] = "x=\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f "
                        "\xc3\xa9\\u0000z\"";
    ck_assert_uint_eq(b.len, sizeof want - 1);
    ck_assert(memcmp(b.data, want, b.len) == 0);
    b.len = 0;
    ck_assert_int_eq(sb_json_append_string(&b, "", 0), 0);
    ck_assert_uint_eq(b.len, 2);
    ck_assert(memcmp(b.data, "\"\"", 2) == 0);
    sb_buf_free(&b);

    /* Every ASCII byte alone, then all of them together. */
    char all[128];
    for (int c = 0; c < 128; c++) {
        all[c] = (char)c;
        assert_round_trip(all + c, 1);
    }
    assert_round_trip(all, sizeof all);
    assert_round_trip("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
                      13);

    /* A long string with escapes spread through it. */
    text t = {0};
    for (int i = 0; i < 10000; i++)
        puts_(&t, i % 7 ? "plain text " : "\"\\\n\x02\xe2\x82\xac");
    assert_round_trip(t.p, t.n);
    free(t.p);
}
END_TEST

/* ---- differential run against jansson ---------------------------------- */

/* Deterministic: the same inputs every run, so a failure reproduces. */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* The generated document, bounded: writes past the end are dropped, which
 * just makes another (truncated) test input. */
#define GEN_MAX 8192
static char gen[GEN_MAX];
static size_t gen_n;

static void g_put(const char *s, size_t n)
{
    if (n > GEN_MAX - gen_n)
        n = GEN_MAX - gen_n;
    memcpy(gen + gen_n, s, n);
    gen_n += n;
}

static void g_str(const char *s)
{
    g_put(s, strlen(s));
}

static void g_byte(int c)
{
    char ch = (char)c;
    g_put(&ch, 1);
}

static void g_ws(void)
{
    static const char ws[] = " \t\n\r";
    if (rn(4) == 0)
        for (unsigned i = rn(3) + 1; i > 0; i--)
            g_byte(ws[rn(4)]);
}

static void g_digits(unsigned n, int first_nonzero)
{
    for (unsigned i = 0; i < n; i++)
        g_byte('0' + (int)(i == 0 && first_nonzero ? 1 + rn(9) : rn(10)));
}

static void g_number(void)
{
    static const char *special[] = {
        "0",
        "-0",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1e309",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "-1.7976931348623159e308",
        "1e-400",
        "0e99999999999999999999",
        "0.1e310",
        "4.9e-324",
        "1E+2",
        OVERFLOW_BOUNDARY ".0",
        BELOW_BOUNDARY ".5",
        "0." BELOW_BOUNDARY "e309",
    };
    if (rn(4) == 0) {
        g_str(special[rn(sizeof special / sizeof *special)]);
        return;
    }
    if (rn(3) == 0)
        g_byte('-');
    unsigned kind = rn(10);
    if (kind < 2)
        g_byte('0');
    else if (kind < 8)
        g_digits(1 + rn(kind < 6 ? 6 : 22), 1);
    else
        g_digits(1 + rn(320), 1);
    if (rn(3) == 0) {
        g_byte('.');
        g_digits(1 + rn(rn(10) == 0 ? 400 : 8), 0);
    }
    if (rn(3) == 0) {
        g_byte(rn(2) ? 'e' : 'E');
        unsigned s = rn(3);
        if (s)
            g_byte(s == 1 ? '+' : '-');
        char e[32];
        unsigned mag = rn(4) == 0 ? rn(1000) : 290 + rn(40);
        snprintf(e, sizeof e, "%u", rn(10) == 0 ? mag * 1000003u : mag);
        g_str(e);
    }
}

static void g_utf8(uint32_t cp)
{
    if (cp < 0x80) {
        g_byte((int)cp);
    } else if (cp < 0x800) {
        g_byte(0xc0 | (int)(cp >> 6));
        g_byte(0x80 | (int)(cp & 0x3f));
    } else if (cp < 0x10000) {
        g_byte(0xe0 | (int)(cp >> 12));
        g_byte(0x80 | (int)(cp >> 6 & 0x3f));
        g_byte(0x80 | (int)(cp & 0x3f));
    } else {
        g_byte(0xf0 | (int)(cp >> 18));
        g_byte(0x80 | (int)(cp >> 12 & 0x3f));
        g_byte(0x80 | (int)(cp >> 6 & 0x3f));
        g_byte(0x80 | (int)(cp & 0x3f));
    }
}

static void g_u_escape(unsigned v)
{
    char e[8];
    snprintf(e, sizeof e, rn(2) ? "\\u%04x" : "\\u%04X", v & 0xffff);
    g_str(e);
}

static const char *const utf8_edges[] = {
    "\xc2\x80",     "\xdf\xbf",         "\xe0\xa0\x80",     "\xed\x9f\xbf",
    "\xee\x80\x80", "\xef\xbf\xbf",     "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
    "\xc0\x80",     "\xc1\xbf",         "\xe0\x9f\xbf",     "\xed\xa0\x80",
    "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
    "\xc3\x28",     "\xe2\x82",         "\xf0\x9f\x98",     "\x80",
};

static void g_string_body(void)
{
    static const char *esc[] = {"\\n", "\\\"", "\\\\", "\\/",
                                "\\b", "\\f",  "\\r",  "\\t"};
    for (unsigned pieces = rn(6); pieces > 0; pieces--) {
        switch (rn(12)) {
        case 0:
        case 1:
        case 2:
            for (unsigned i = rn(12) + 1; i > 0; i--) {
                int c = ' ' + (int)rn(95);
                g_byte(c == '"' || c == '\\' ? 'q' : c);
            }
            break;
        case 3:
            g_str(esc[rn(8)]);
            break;
        case 4:
            g_u_escape(rn(4) == 0 ? rn(0x20) : rn(0x10000));
            break;
        case 5: /* a pair, mostly valid */
            g_u_escape(0xd800 + rn(0x400));
            g_u_escape(rn(5) ? 0xdc00 + rn(0x400) : rn(0x10000));
            break;
        case 6: {
            uint32_t cp = 0x80 + rn(0x10ff80);
            if (cp >= 0xd800 && cp < 0xe000)
                cp = 0xe9;
            g_utf8(cp);
            break;
        }
        case 7:
            g_utf8(0x80 + rn(0x780));
            break;
        case 8:
            if (rn(8) == 0)
                g_byte((int)rn(256)); /* anything, often invalid */
            else
                g_str("x");
            break;
        case 9:
            if (rn(8) == 0)
                g_str("\\u0000");
            break;
        case 10: /* either side of every UTF-8 boundary */
            g_str(utf8_edges[rn(sizeof utf8_edges / sizeof *utf8_edges)]);
            break;
        default:
            g_str("event");
            break;
        }
    }
}

static void g_string(void)
{
    g_byte('"');
    g_string_body();
    g_byte('"');
}

static void g_value(unsigned depth);

static void g_key(void)
{
    static const char *keys[] = {"\"event\"",   "\"data\"",        "\"id\"",
                                 "\"a\"",       "\"\\u0065vent\"", "\"\"",
                                 "\"\\u0000\"", "\"eventx\""};
    if (rn(3))
        g_str(keys[rn(sizeof keys / sizeof *keys)]);
    else
        g_string();
}

static void g_value(unsigned depth)
{
    unsigned kind = rn(depth > 6 ? 5 : 8);
    g_ws();
    switch (kind) {
    case 0:
    case 1:
        g_number();
        break;
    case 2:
    case 3:
        g_string();
        break;
    case 4: {
        static const char *lit[] = {"true", "false", "null"};
        g_str(lit[rn(3)]);
        break;
    }
    case 5:
    case 6: {
        g_byte('[');
        unsigned n = rn(5);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                g_byte(',');
            g_value(depth + 1);
        }
        g_ws();
        g_byte(']');
        break;
    }
    default: {
        g_byte('{');
        unsigned n = rn(5);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                g_byte(',');
            g_ws();
            g_key();
            g_ws();
            g_byte(':');
            g_value(depth + 1);
        }
        g_ws();
        g_byte('}');
        break;
    }
    }
    g_ws();
}

/* Mostly envelope-shaped objects, since that is what the server sees. */
static void g_document(void)
{
    gen_n = 0;
    if (rn(4) == 0) {
        g_value(0);
        return;
    }
    g_ws();
    g_byte('{');
    unsigned n = 1 + rn(5);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            g_byte(',');
        g_ws();
        unsigned which = rn(6);
        if (which < 2) {
            g_str(rn(8) ? "\"event\"" : "\"\\u0065vent\"");
            g_ws();
            g_byte(':');
            g_ws();
            if (rn(6) == 0) {
                g_value(1);
            } else if (rn(30) == 0) {
                g_byte('"');
                for (unsigned k = 250 + rn(10); k > 0; k--)
                    g_byte('e');
                g_byte('"');
            } else {
                g_string();
            }
        } else if (which < 4) {
            g_str("\"data\"");
            g_ws();
            g_byte(':');
            if (rn(40) == 0) { /* around the depth limit */
                unsigned levels = 60 + rn(8);
                for (unsigned k = 0; k < levels; k++)
                    g_byte('[');
                g_value(10);
                for (unsigned k = 0; k < levels; k++)
                    g_byte(']');
            } else {
                g_value(1);
            }
        } else if (which == 4) {
            g_str("\"id\"");
            g_ws();
            g_byte(':');
            g_value(rn(3) ? 10 : 1);
        } else {
            g_key();
            g_ws();
            g_byte(':');
            g_value(1);
        }
    }
    g_ws();
    g_byte('}');
    g_ws();
}

static void mutate(void)
{
    static const char interesting[] =
        "{}[],:\"\\/ \t\n\r0123456789-+.eEtrufalsnux";
    static const unsigned char raw[] = {0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf,
                                        0xc0, 0xc2, 0xc3, 0xe0, 0xed, 0xef,
                                        0xf0, 0xf4, 0xf5, 0xff};
    for (unsigned m = rn(4) + 1; m > 0; m--) {
        if (gen_n == 0)
            return;
        size_t at = rn((unsigned)gen_n);
        int byte = rn(3) ? interesting[rn(sizeof interesting - 1)]
                         : raw[rn(sizeof raw)];
        switch (rn(6)) {
        case 0: /* replace */
            gen[at] = (char)byte;
            break;
        case 1: /* insert */
            if (gen_n < GEN_MAX) {
                memmove(gen + at + 1, gen + at, gen_n - at);
                gen[at] = (char)byte;
                gen_n++;
            }
            break;
        case 2: { /* delete a range */
            size_t n = 1 + rn(4);
            if (n > gen_n - at)
                n = gen_n - at;
            memmove(gen + at, gen + at + n, gen_n - at - n);
            gen_n -= n;
            break;
        }
        case 3: /* truncate */
            gen_n = at;
            break;
        case 4: { /* duplicate a range */
            size_t n = 1 + rn(8);
            if (n > gen_n - at)
                n = gen_n - at;
            if (gen_n + n <= GEN_MAX) {
                memmove(gen + at + n, gen + at, gen_n - at);
                gen_n += n;
            }
            break;
        }
        default: /* flip a bit */
            gen[at] ^= (char)(1 << rn(8));
            break;
        }
    }
}

static void hex_dump(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < outlen; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%02x", (unsigned char)s[i]);
    out[o] = '\0';
}

START_TEST(test_differential)
{
    const unsigned iterations = 300000;
    unsigned accepted = 0, enveloped = 0;
    rng_state = 20240611;
    for (unsigned i = 0; i < iterations; i++) {
        if (rn(8) == 0) {
            /* Short random strings over the JSON alphabet. */
            static const char alpha[] = "{}[],:\"\\ 0123456789-.eEtrue\x80";
            gen_n = rn(12);
            for (size_t k = 0; k < gen_n; k++)
                gen[k] = rn(16) ? alpha[rn(sizeof alpha - 1)] : (char)rn(256);
        } else {
            g_document();
            if (rn(2))
                mutate();
        }
        const char *why = sb_envelope_oracle(gen, gen_n);
        if (why) {
            char hex[1024];
            hex_dump(hex, sizeof hex, gen, gen_n);
            ck_abort_msg("iteration %u: %s; input (%zu bytes, hex): %s", i, why,
                         gen_n, hex);
        }
        accepted += scanner_accepts(gen, gen_n);
        enveloped += parse_n(gen, gen_n) == SB_ENV_OK;
    }
    /* The generator must exercise both sides of every verdict. */
    ck_assert_uint_gt(accepted, iterations / 5);
    ck_assert_uint_gt(iterations - accepted, iterations / 5);
    ck_assert_uint_gt(enveloped, iterations / 20);
}
END_TEST

/* ---- block boundaries ---------------------------------------------------- */

/* The string scan looks at 16 or 8 bytes at a time (SSE2 or a 64-bit word;
 * test_envelope_portable is this file built on the word path alone) and
 * finds the first byte that needs a closer look in the block. Every
 * sequence below is put at every offset across two blocks, with every
 * length of plain text after it, so that it starts, straddles and ends
 * each 8- and 16-byte boundary and the end of the frame; each frame sits in
 * a buffer of its exact size (ASan sees a read past it). */
static const struct {
    const char *seq;
    int valid;
} boundary_seqs[] = {
    {"\xc3\xa9", 1},         /* é */
    {"\xe2\x82\xac", 1},     /* € */
    {"\xf0\x9f\x98\x80", 1}, /* U+1F600 */
    {"\xed\x9f\xbf", 1},     /* just below the surrogates */
    {"\xee\x80\x80", 1},     /* just above them */
    {"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
    {"\xc2\x80\xdf\xbf", 1}, /* the 2-byte ends, back to back */
    {"\\n", 1},
    {"\\\"", 1},
    {"\\u00e9", 1},
    {"\\ud83d\\ude00", 1},
    {"\x7f", 1}, /* DEL is plain */
    {"\x80", 0}, /* a lone continuation byte */
    {"\xbf", 0},
    {"\xc0\xaf", 0},         /* overlong */
    {"\xc1\xbf", 0},         /* overlong */
    {"\xc3", 0},             /* cut: plain text or the quote follows */
    {"\xe2\x82", 0},         /* cut */
    {"\xf0\x9f\x98", 0},     /* cut */
    {"\xe0\x80\x80", 0},     /* overlong */
    {"\xed\xa0\x80", 0},     /* a surrogate */
    {"\xf0\x80\x80\x80", 0}, /* overlong */
    {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
    {"\xf8\x88\x80\x80\x80", 0},
    {"\xff", 0},
    {"\xc3\xa9\x80", 0}, /* a continuation too many */
    {"\x01", 0},         /* controls */
    {"\x1f", 0},
    {"\t", 0},
    {"\\x", 0},
    {"\\ud800", 0}, /* a lone surrogate escape */
};

/* Is the raw sequence (no escapes) valid UTF-8 of plain characters? */
static int seq_is_raw(const char *seq)
{
    return strchr(seq, '\\') == NULL;
}

START_TEST(test_block_boundaries)
{
    char body[128];
    unsigned checked = 0;
    for (size_t q = 0; q < sizeof boundary_seqs / sizeof boundary_seqs[0];
         q++) {
        const char *seq = boundary_seqs[q].seq;
        int valid = boundary_seqs[q].valid;
        size_t sl = strlen(seq);
        for (size_t before = 0; before <= 40; before++) {
            for (size_t after = 0; after <= 18; after++) {
                size_t n = 0;
                for (size_t i = 0; i < before; i++)
                    body[n++] = (char)('a' + i % 26);
                memcpy(body + n, seq, sl);
                n += sl;
                for (size_t i = 0; i < after; i++)
                    body[n++] = (char)('A' + i % 26);
                /* The string as data, as the event, and as a key. */
                for (int where = 0; where < 3; where++) {
                    char doc[256];
                    int dn;
                    if (where == 0)
                        dn = snprintf(doc, sizeof doc,
                                      "{\"event\":\"e\",\"data\":\"%.*s\"}",
                                      (int)n, body);
                    else if (where == 1)
                        dn = snprintf(doc, sizeof doc, "{\"event\":\"%.*s\"}",
                                      (int)n, body);
                    else
                        dn = snprintf(doc, sizeof doc,
                                      "{\"%.*s\":1,\"event\":\"e\"}", (int)n,
                                      body);
                    ck_assert_int_gt(dn, 0);
                    char *exact = malloc((size_t)dn);
                    ck_assert_ptr_nonnull(exact);
                    memcpy(exact, doc, (size_t)dn);
                    sb_env_status st = parse_n(exact, (size_t)dn);
                    int json_ok = scanner_accepts(exact, (size_t)dn);
                    ck_assert_msg(json_ok == valid,
                                  "seq %zu at %zu (+%zu after, where %d): "
                                  "scanner says %d",
                                  q, before, after, where, json_ok);
                    if (where == 0) {
                        ck_assert_msg((st == SB_ENV_OK) == valid,
                                      "seq %zu at %zu (+%zu): status %d", q,
                                      before, after, (int)st);
                        if (valid)
                            ck_assert_uint_eq(env.data.len, n + 2);
                    }
                    const char *why = sb_envelope_oracle(exact, (size_t)dn);
                    ck_assert_msg(why == NULL, "seq %zu at %zu (+%zu): %s", q,
                                  before, after, why);
                    free(exact);
                    checked++;
                }
                /* The UTF-8 checks on the bare bytes (escapes are plain
                 * ASCII to them; controls are valid UTF-8). */
                if (!seq_is_raw(seq))
                    continue;
                int utf8 = valid || (unsigned char)seq[0] < 0x20;
                char *raw = malloc(n ? n : 1);
                ck_assert_ptr_nonnull(raw);
                memcpy(raw, body, n);
                ck_assert_msg(sb_utf8_valid(raw, n) == utf8,
                              "utf8_valid: seq %zu at %zu (+%zu)", q, before,
                              after);
                size_t tail = 99;
                bool ok = sb_utf8_valid_prefix(raw, n, &tail);
                /* A sequence cut at the very end is a valid prefix. */
                int cut_at_end =
                    !utf8 && after == 0 &&
                    (strcmp(seq, "\xc3") == 0 || strcmp(seq, "\xe2\x82") == 0 ||
                     strcmp(seq, "\xf0\x9f\x98") == 0);
                ck_assert_msg(ok == (utf8 || cut_at_end),
                              "utf8_valid_prefix: seq %zu at %zu (+%zu)", q,
                              before, after);
                if (ok)
                    ck_assert_uint_eq(tail, cut_at_end ? sl : 0);
                free(raw);
            }
        }
    }
    ck_assert_uint_gt(checked, 30000);
}
END_TEST

static Suite *envelope_suite(void)
{
    Suite *s = suite_create("envelope");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_typical_message);
    tcase_add_test(tc, test_statuses);
    tcase_add_test(tc, test_event_length);
    tcase_add_test(tc, test_data_spans);
    tcase_add_test(tc, test_id);
    tcase_add_test(tc, test_big_integers);
    tcase_add_test(tc, test_escaped_event);
    tcase_add_test(tc, test_duplicate_keys);
    tcase_add_test(tc, test_whitespace);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_very_deep);
    tcase_add_test(tc, test_jansson_depth_limit);
    tcase_add_test(tc, test_big_payload);
    tcase_add_test(tc, test_jansson_edge_cases);
    tcase_add_test(tc, test_jansson_nul_quirk);
    tcase_add_test(tc, test_error_texts);
    tcase_add_test(tc, test_validate);
    suite_add_tcase(s, tc);

    TCase *tw = tcase_create("write");
    tcase_add_test(tw, test_append_string);
    tcase_add_test(tw, test_utf8_repair);
    suite_add_tcase(s, tw);

    /* Seconds normally, longer under the sanitizers. */
    /* Some 70,000 small documents, each also checked against jansson. */
    TCase *tb = tcase_create("boundaries");
    tcase_set_timeout(tb, 120);
    tcase_add_test(tb, test_block_boundaries);
    suite_add_tcase(s, tb);
    TCase *td = tcase_create("differential");
    tcase_set_timeout(td, 300);
    tcase_add_test(td, test_differential);
    suite_add_tcase(s, td);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(envelope_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

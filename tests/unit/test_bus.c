/*
 * bus — the messages nodes exchange through the broker: what the header
 * writer makes the parser reads back, and what the parser refuses (another
 * version, a foreign publisher, a cut or padded header, a body that is not
 * what its kind says).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

static int parse(const char *s, sb_bus_msg *m)
{
    return sb_bus_parse(s, strlen(s), m);
}

START_TEST(test_round_trip)
{
    sb_buf b = {0};
    sb_bus_msg m = {.kind = 'r', .client = 4294967297ull};
    ck_assert_int_eq(sb_bus_header(&b, &m), 0);
    ck_assert_int_eq(sb_buf_append_str(&b, "{\"event\":\"e\"}"), 0);
    sb_bus_msg out;
    ck_assert_int_eq(sb_bus_parse(b.data, b.len, &out), 0);
    ck_assert_int_eq(out.kind, 'r');
    ck_assert_uint_eq(out.client, 4294967297ull);
    ck_assert_uint_eq(out.offset, 0);
    ck_assert_int_eq((int)out.epoch_len, 1);
    ck_assert_int_eq(out.epoch[0], '-');
    ck_assert_int_eq((int)out.body_len, 13);
    ck_assert_int_eq(memcmp(out.body, "{\"event\":\"e\"}", 13), 0);

    b.len = 0;
    m = (sb_bus_msg){
        .kind = 'b', .gateways = "chat,default", .gateways_len = 12};
    ck_assert_int_eq(sb_bus_header(&b, &m), 0);
    ck_assert_int_eq(sb_buf_append_str(&b, "{}"), 0);
    ck_assert_int_eq(sb_bus_parse(b.data, b.len, &out), 0);
    ck_assert_int_eq(out.kind, 'b');
    ck_assert_uint_eq(out.client, 0);
    ck_assert_int_eq((int)out.gateways_len, 12);
    ck_assert_int_eq(memcmp(out.gateways, "chat,default", 12), 0);

    b.len = 0;
    m = (sb_bus_msg){.kind = 'x', .client = 9, .id_len = 3};
    ck_assert_int_eq(sb_bus_header(&b, &m), 0);
    ck_assert_int_eq(sb_buf_append_str(&b, "\"a\"oops"), 0);
    ck_assert_int_eq(sb_bus_parse(b.data, b.len, &out), 0);
    ck_assert_int_eq((int)out.id_len, 3);
    ck_assert_int_eq((int)out.body_len, 7);

    b.len = 0;
    m = (sb_bus_msg){.kind = 'c', .client = 9, .code = 4001};
    ck_assert_int_eq(sb_bus_header(&b, &m), 0);
    ck_assert_int_eq(sb_buf_append_str(&b, "bye"), 0);
    ck_assert_int_eq(sb_bus_parse(b.data, b.len, &out), 0);
    ck_assert_int_eq(out.code, 4001);
    sb_buf_free(&b);

    ck_assert_int_eq(parse("sb1 p 3\n", &out), 0);
    ck_assert_int_eq(out.kind, 'p');
    ck_assert_int_eq(parse("sb1 r 0 Xy12 41\n{\"a\":[1]}", &out), 0);
    ck_assert_uint_eq(out.offset, 41);
    ck_assert_int_eq(parse("sb1 s 5\n{}", &out), 0);
}
END_TEST

START_TEST(test_refused)
{
    static const char *const bad[] = {
        "",
        "garbage",
        "sb1 r 0 - 0",                        /* no newline */
        "sb2 r 0 - 0\n{}",                    /* another version */
        "sb1 q 0\n{}",                        /* unknown kind */
        "sb1 r 0 - 0\nnot json",              /* body */
        "sb1 r 0 - 0\n[1]",                   /* not an object */
        "sb1 r 0 - 0\n{} {}",                 /* two values */
        "sb1 r 0 -\n{}",                      /* missing offset */
        "sb1 r 0 - 0 extra\n{}",              /* a field too many */
        "sb1 r 01 - 0\n{}",                   /* leading zero */
        "sb1 r -1 - 0\n{}",                   /* sign */
        "sb1 r 99999999999999999999 - 0\n{}", /* overflow */
        "sb1 b 0\n{}",                        /* no gateways */
        "sb1 s 0\n{}",                        /* no client */
        "sb1 s 5\n{\"a\":",                   /* cut */
        "sb1 x 5 9\n\"a\"",                   /* id longer than the body */
        "sb1 x 5 0\n\xff",                    /* not UTF-8 */
        "sb1 c 5 999\n",                      /* close code */
        "sb1 c 5 5000\n",
        "sb1 p 3\nbody", /* a probe has none */
        "sb1  r 0 - 0\n{}",
    };
    sb_bus_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], &m) < 0, "accepted: %s", bad[i]);
    /* A NUL inside a channel message (Redis strings are binary). */
    ck_assert_int_lt(sb_bus_parse("sb1 s 5\n{}\0x", 12, &m), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("bus");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

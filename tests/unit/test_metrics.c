/*
 * Unit tests for metrics: the Prometheus text format (HELP/TYPE lines,
 * label escaping, histograms), the histogram's buckets, the exception
 * reasons, and the whole /metrics page of a server built by hand.
 */
#include "metrics.h"

#include <check.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "plugin_host.h"
#include "server.h"

/* The buffer's text, NUL-terminated (the buffer keeps its length). */
static const char *text_of(sb_buf *b)
{
    ck_assert_int_eq(sb_buf_append_byte(b, 0), 0);
    b->len--;
    return b->data;
}

#define ASSERT_HAS(page, line)                                                 \
    ck_assert_msg(strstr(page, line "\n") != NULL, "no line\n%s\nin:\n%s",     \
                  line, page)

START_TEST(test_family_escapes_help)
{
    sb_buf b = {0};
    ck_assert_int_eq(
        sb_prom_family(&b, "x_total", "counter", "a \\ back\nslash \"quoted\""),
        0);
    ck_assert_str_eq(text_of(&b),
                     "# HELP x_total a \\\\ back\\nslash \"quoted\"\n"
                     "# TYPE x_total counter\n");
    sb_buf_free(&b);
}
END_TEST

START_TEST(test_sample_escapes_label_values)
{
    sb_buf b = {0};
    ck_assert_int_eq(sb_prom_sample(&b, "up", NULL, 0, 1), 0);
    sb_prom_label l[2] = {{"a", "plain"}, {"b", "q\"uo\\te\nnl"}};
    ck_assert_int_eq(sb_prom_sample(&b, "m", l, 2, 18446744073709551615u), 0);
    sb_prom_label empty = {"event", ""};
    ck_assert_int_eq(sb_prom_sample(&b, "m", &empty, 1, 0), 0);
    ck_assert_str_eq(text_of(&b), "up 1\n"
                                  "m{a=\"plain\",b=\"q\\\"uo\\\\te\\nnl\"} "
                                  "18446744073709551615\n"
                                  "m{event=\"\"} 0\n");
    sb_buf_free(&b);
}
END_TEST

START_TEST(test_observe_buckets)
{
    sb_route_stats st;
    memset(&st, 0, sizeof(st));
    /* A bound is inclusive: 250 ns is in le="0.00000025". */
    sb_route_observe(&st, 0);
    sb_route_observe(&st, 250);
    sb_route_observe(&st, 251);
    sb_route_observe(&st, 100000000);  /* the last bound */
    sb_route_observe(&st, 100000001);  /* +Inf */
    sb_route_observe(&st, UINT64_MAX); /* +Inf */
    ck_assert_uint_eq(st.bucket[0], 2);
    ck_assert_uint_eq(st.bucket[1], 1);
    ck_assert_uint_eq(st.bucket[SB_DISPATCH_BUCKETS - 1], 1);
    ck_assert_uint_eq(st.bucket[SB_DISPATCH_BUCKETS], 2);
    ck_assert_uint_eq(st.timed, 6);
    for (size_t i = 1; i < SB_DISPATCH_BUCKETS; i++)
        ck_assert_uint_lt(sb_dispatch_bounds_ns[i - 1],
                          sb_dispatch_bounds_ns[i]);
}
END_TEST

START_TEST(test_histogram_is_cumulative)
{
    uint64_t bucket[SB_DISPATCH_BUCKETS + 1] = {0};
    bucket[0] = 2;
    bucket[3] = 1;
    bucket[SB_DISPATCH_BUCKETS] = 4;
    sb_buf b = {0};
    sb_prom_label l = {"event", "e"};
    ck_assert_int_eq(
        sb_prom_histogram(&b, "d_seconds", &l, 1, bucket, 1500000123u), 0);
    const char *page = text_of(&b);
    ASSERT_HAS(page, "d_seconds_bucket{event=\"e\",le=\"0.00000025\"} 2");
    ASSERT_HAS(page, "d_seconds_bucket{event=\"e\",le=\"0.000001\"} 2");
    ASSERT_HAS(page, "d_seconds_bucket{event=\"e\",le=\"0.0000025\"} 3");
    ASSERT_HAS(page, "d_seconds_bucket{event=\"e\",le=\"0.1\"} 3");
    ASSERT_HAS(page, "d_seconds_bucket{event=\"e\",le=\"+Inf\"} 7");
    ASSERT_HAS(page, "d_seconds_sum{event=\"e\"} 1.500000123");
    ASSERT_HAS(page, "d_seconds_count{event=\"e\"} 7");
    /* Without labels, le is the only one. */
    b.len = 0;
    ck_assert_int_eq(sb_prom_histogram(&b, "h", NULL, 0, bucket, 0), 0);
    page = text_of(&b);
    ASSERT_HAS(page, "h_bucket{le=\"+Inf\"} 7");
    ASSERT_HAS(page, "h_sum 0.000000000");
    ASSERT_HAS(page, "h_count 7");
    sb_buf_free(&b);
}
END_TEST

START_TEST(test_exception_reasons)
{
    ck_assert_str_eq(sb_exc_reason_name(SB_EXC_BAD_JSON), "bad_json");
    ck_assert_str_eq(sb_exc_reason_name(SB_EXC_SEND_QUEUE_FULL),
                     "send_queue_full");
    ck_assert_str_eq(sb_exc_reason_name(SB_EXC_COUNT), "unknown");
    for (int r = 0; r < SB_EXC_COUNT; r++)
        ck_assert_ptr_nonnull(sb_exc_reason_name((sb_exc_reason)r));
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_BAD_JSON), SB_EXC_BAD_JSON);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_TOO_DEEP), SB_EXC_TOO_DEEP);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_NOT_OBJECT), SB_EXC_NOT_OBJECT);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_NO_EVENT), SB_EXC_NO_EVENT);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_EVENT_NOT_STRING), SB_EXC_BAD_EVENT);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_EVENT_INVALID), SB_EXC_BAD_EVENT);
    ck_assert_int_eq(sb_exc_of_env(SB_ENV_BAD_ID), SB_EXC_BAD_ID);
}
END_TEST

static int handler(sb_plugin *p, sb_message *m, void *ud)
{
    return SB_OK;
}

/* A server as sb_server_start() leaves it, minus the sockets: two
 * gateways, a plugin with a route on each, counts set by hand. */
START_TEST(test_page)
{
    char dir[] = "/tmp/sb-metrics-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300];
    snprintf(ini, sizeof(ini), "%s/m.ini", dir);
    FILE *f = fopen(ini, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[server]\n[gateway.chat]\npath = /chat\n", f);
    fclose(f);
    sb_config cfg;
    ck_assert_int_eq(sb_config_load(&cfg, ini), 0);
    unlink(ini);
    rmdir(dir);

    uv_loop_t loop;
    uv_loop_init(&loop);
    sb_plugin_host host;
    ck_assert_int_eq(
        sb_plugin_host_init(&host, &loop, cfg.gateways, cfg.ngateways), 0);
    static const sb_plugin_desc desc = {
        SB_PLUGIN_MAGIC, 1, 2, sizeof(desc), "fake", "2.0 \"beta\"", NULL};
    sb_plugin plugin;
    memset(&plugin, 0, sizeof(plugin));
    plugin.name = (char *)"fake";
    plugin.desc = &desc;
    plugin.generation = 3;
    plugin.gateways = 3;
    sb_plugin *list[] = {&plugin};
    ck_assert_int_eq(
        sb_router_add(&host.routers[0], "say", &plugin, handler, NULL, NULL),
        SB_OK);
    ck_assert_int_eq(
        sb_router_add(&host.routers[1], "say", &plugin, handler, NULL, NULL),
        SB_OK);
    sb_route_stats *rs =
        sb_route_stats_of(sb_router_find(&host.routers[0], "say", 3));
    rs->received = 10;
    rs->sent = 12;
    sb_route_observe(rs, 400);
    sb_route_observe(rs, 3000);

    sb_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.config = &cfg;
    srv.plugins = &host;
    host.plugins = list;
    host.count = 1;
    unsigned clients[2] = {1, 0};
    srv.gateway_clients = clients;
    srv.gateway_stats[0] = (sb_gateway_stats){
        .connections_total = 4, .unrouted = 2, .sent = 20, .replies = 12};
    srv.stats.exceptions_by[SB_EXC_BAD_ID] = 5;
    srv.stats.reloads_ok = 1;
    srv.stats.reloads_failed = 2;
    srv.send_bytes = 123456;
    srv.stats.fd_refused = 7;
    srv.stats.accept_pauses = 3;
    sb_client c;
    memset(&c, 0, sizeof(c));
    c.gateway = 0;
    ck_assert_int_eq(sb_buf_reserve(&c.tx, LWS_PRE + 100), 0);
    c.tx.len = LWS_PRE + 77;
    c.io = (struct sb_wsio *)&c; /* taken over: only tested for NULL */
    srv.clients = &c;

    sb_buf b = {0};
    ck_assert_int_eq(sb_metrics_render(&b, &srv), 0);
    const char *page = text_of(&b);
    ASSERT_HAS(page, "# TYPE switchboard_connections gauge");
    ASSERT_HAS(page, "switchboard_connections{gateway=\"default\"} 1");
    ASSERT_HAS(page, "switchboard_connections{gateway=\"chat\"} 0");
    ASSERT_HAS(page, "switchboard_connections_total{gateway=\"default\"} 4");
    ASSERT_HAS(page, "switchboard_messages_received_total{gateway=\"default\","
                     "event=\"say\"} 10");
    ASSERT_HAS(page, "switchboard_messages_received_total{gateway=\"default\","
                     "event=\"\"} 2");
    ASSERT_HAS(page, "switchboard_messages_received_total{gateway=\"chat\","
                     "event=\"say\"} 0");
    ASSERT_HAS(page, "switchboard_messages_sent_total{gateway=\"default\","
                     "event=\"say\"} 12");
    /* Everything sent that was not a reply. */
    ASSERT_HAS(page, "switchboard_messages_sent_total{gateway=\"default\","
                     "event=\"\"} 8");
    ASSERT_HAS(page, "switchboard_exceptions_total{reason=\"bad_id\"} 5");
    ASSERT_HAS(page, "switchboard_exceptions_total{reason=\"bad_json\"} 0");
    ASSERT_HAS(page, "# TYPE switchboard_dispatch_seconds histogram");
    ASSERT_HAS(page, "switchboard_dispatch_seconds_bucket{gateway=\"default\","
                     "event=\"say\",le=\"0.0000005\"} 1");
    ASSERT_HAS(page, "switchboard_dispatch_seconds_bucket{gateway=\"default\","
                     "event=\"say\",le=\"0.000005\"} 2");
    ASSERT_HAS(page, "switchboard_dispatch_seconds_sum{gateway=\"default\","
                     "event=\"say\"} 0.000003400");
    ASSERT_HAS(page, "switchboard_dispatch_seconds_count{gateway=\"default\","
                     "event=\"say\"} 2");
    ASSERT_HAS(page, "switchboard_dispatch_seconds_count{gateway=\"chat\","
                     "event=\"say\"} 0");
    ASSERT_HAS(page, "switchboard_send_queue_bytes{gateway=\"default\"} 77");
    ASSERT_HAS(page, "switchboard_send_queue_bytes{gateway=\"chat\"} 0");
    ASSERT_HAS(page, "switchboard_reloads_total{result=\"ok\"} 1");
    ASSERT_HAS(page, "switchboard_reloads_total{result=\"failed\"} 2");
    ASSERT_HAS(page, "switchboard_plugin_info{name=\"fake\",version=\"2.0 "
                     "\\\"beta\\\"\",generation=\"3\",abi=\"1.2\"} 1");
    /* Every family has its HELP and TYPE once, before its samples. */
    size_t helps = 0, types = 0;
    for (const char *p = page; (p = strstr(p, "# HELP ")); p++)
        helps++;
    for (const char *p = page; (p = strstr(p, "# TYPE ")); p++)
        types++;
    ASSERT_HAS(page, "switchboard_send_memory_bytes 123456");
    ASSERT_HAS(page, "switchboard_fd_refused_total 7");
    ASSERT_HAS(page, "switchboard_accept_pauses_total 3");
    ASSERT_HAS(page, "switchboard_connections_own_path 1");
    /* A server without the own path's loop state batches nothing. */
    ASSERT_HAS(page, "switchboard_own_path_io_uring 0");
    ck_assert_uint_eq(helps, 14);
    ck_assert_uint_eq(types, 14);
    ck_assert(page[b.len - 1] == '\n');

    sb_buf_free(&b);
    sb_buf_free(&c.tx);
    host.count = 0; /* the plugin is not a real one: nothing to unload */
    host.plugins = NULL;
    sb_plugin_host_free(&host);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    sb_config_free(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_family_escapes_help);
    tcase_add_test(tc, test_sample_escapes_label_values);
    tcase_add_test(tc, test_observe_buckets);
    tcase_add_test(tc, test_histogram_is_cumulative);
    tcase_add_test(tc, test_exception_reasons);
    tcase_add_test(tc, test_page);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

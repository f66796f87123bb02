/*
 * The admin listener: every endpoint, the metrics moving with the traffic
 * that makes them move (messages, replies, exceptions by reason, the
 * dispatch histogram, connections, reloads), the bearer token, /readyz
 * during a drain, and JSON log lines that all parse as JSON.
 */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static sb_srv srv;
static int admin_port;

/* Starts a server with an [admin] section (its extra lines in `admin`) and
 * the given plugin sections, and waits for the admin port. */
static void start(const char *server_extra, const char *admin,
                  const char *plugins)
{
    admin_port = sb_test_free_port();
    ck_assert_int_gt(admin_port, 0);
    char sections[4096];
    snprintf(sections, sizeof(sections), "[admin]\nport = %d\n%s\n%s",
             admin_port, admin ? admin : "", plugins);
    srv_start(&srv, server_extra, sections);
    ck_assert_msg(sb_test_wait_port(admin_port, 30000) == 0, "admin port: %s",
                  sb_test_error());
}

static const char default_plugins[] =
    "[plugin.nest]\nfile = %P/nest-example.so\n"
    "[plugin.probe]\nfile = %P/test-probe.so\njournal = %J\n";

/* One HTTP request to the admin port; `auth` is a whole Authorization
 * header value or NULL. Returns the status; *body (if not NULL) gets the
 * body, to free. */
static int request(const char *method, const char *path, const char *auth,
                   char **body)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s"
                     "Connection: close\r\n\r\n",
                     method, path, auth ? "Authorization: " : "",
                     auth ? auth : "", auth ? "\r\n" : "");
    ws_http_response r;
    ck_assert_msg(ws_http_raw("127.0.0.1", admin_port, req, (size_t)n,
                              SB_TIMEOUT, &r) == 0,
                  "%s %s: %s", method, path, ws_last_error());
    int status = r.status;
    if (body)
        *body = strndup(r.body ? r.body : "", r.body_len);
    ws_http_response_free(&r);
    return status;
}

/* The local address (hex, as the kernel writes it) of the socket listening
 * on `port` in /proc/net/tcp or tcp6, or "" when there is none. */
static const char *listen_address(const char *table, int port)
{
    static char addr[64];
    addr[0] = 0;
    FILE *f = fopen(table, "r");
    if (!f)
        return addr;
    char line[512], local[64], remote[64];
    unsigned state;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, " %*d: %63s %63s %x", local, remote, &state) != 3)
            continue;
        char *colon = strrchr(local, ':');
        if (state == 0x0A && colon && strtol(colon + 1, NULL, 16) == port) {
            *colon = 0;
            snprintf(addr, sizeof(addr), "%s", local);
            break;
        }
    }
    fclose(f);
    return addr;
}

/* The status of a hand-made request. */
static int raw_status(const char *req)
{
    ws_http_response r;
    ck_assert_msg(ws_http_raw("127.0.0.1", admin_port, req, strlen(req),
                              SB_TIMEOUT, &r) == 0,
                  "%s: %s", req, ws_last_error());
    int status = r.status;
    ws_http_response_free(&r);
    return status;
}

static char *get_ok(const char *path)
{
    char *body = NULL;
    int status = request("GET", path, NULL, &body);
    ck_assert_msg(status == 200, "GET %s: %d %s", path, status, body);
    return body;
}

static json_t *get_json(const char *path)
{
    char *body = get_ok(path);
    json_error_t err;
    json_t *doc = json_loads(body, 0, &err);
    ck_assert_msg(doc != NULL, "%s is not JSON (%s): %s", path, err.text, body);
    free(body);
    return doc;
}

/* The value of one series ("name{labels}" exactly as the server writes
 * it) in a /metrics page; fails the test when it is not there. */
static double value_of(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = page; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    ck_abort_msg("no series %s in:\n%s", series, page);
    return -1;
}

static double metric(const char *series)
{
    char *page = get_ok("/metrics");
    double v = value_of(page, series);
    free(page);
    return v;
}

/* Polls until a series has a value (disconnects are seen asynchronously). */
static void wait_metric(const char *series, double want)
{
    double v = -1;
    for (int waited = 0; waited < 30000; waited += 20) {
        if ((v = metric(series)) == want)
            return;
        usleep(20000);
    }
    ck_abort_msg("%s stayed %g, expected %g", series, v, want);
}

/* Receives one message and asserts it is an exception. */
static void expect_exception(ws_client *c)
{
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"exception\""), "%s",
                  (char *)f.data);
    ws_frame_free(&f);
}

#define RECEIVED(ev)                                                           \
    "switchboard_messages_received_total{gateway=\"default\",event=\"" ev "\"" \
    "}"
#define SENT(ev)                                                               \
    "switchboard_messages_sent_total{gateway=\"default\",event=\"" ev "\"}"
#define EXC(reason) "switchboard_exceptions_total{reason=\"" reason "\"}"

START_TEST(test_endpoints)
{
    start(NULL, NULL, default_plugins);
    char *body = get_ok("/healthz");
    ck_assert_str_eq(body, "ok\n");
    free(body);
    body = get_ok("/readyz");
    ck_assert_str_eq(body, "ready\n");
    free(body);

    ws_client *c = cli_connect(&srv);
    json_t *st = get_json("/status");
    ck_assert(json_is_string(json_object_get(st, "version")));
    ck_assert(json_is_integer(json_object_get(st, "uptime_s")));
    ck_assert(json_is_true(json_object_get(st, "ready")));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "connections")), 1);
    json_t *gw = json_array_get(json_object_get(st, "gateways"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(gw, "name")), "default");
    ck_assert_int_eq(json_integer_value(json_object_get(gw, "port")), srv.port);
    ck_assert_str_eq(json_string_value(json_object_get(gw, "path")), "/");
    ck_assert_int_eq(json_integer_value(json_object_get(gw, "connections")), 1);
    json_t *plugins = json_object_get(st, "plugins");
    ck_assert_int_eq(json_array_size(plugins), 2);
    json_t *nest = json_array_get(plugins, 0);
    ck_assert_str_eq(json_string_value(json_object_get(nest, "name")), "nest");
    ck_assert_str_eq(json_string_value(json_object_get(nest, "plugin")),
                     "nest-example");
    ck_assert(json_is_string(json_object_get(nest, "version")));
    ck_assert(json_is_string(json_object_get(nest, "abi")));
    ck_assert(strstr(json_string_value(json_object_get(nest, "file")),
                     "nest-example.so"));
    ck_assert_int_eq(json_integer_value(json_object_get(nest, "generation")),
                     1);
    ck_assert(json_is_string(json_object_get(nest, "loaded_at")));
    json_t *events = json_object_get(nest, "events");
    ck_assert_int_eq(json_array_size(events), 2);
    ck_assert_str_eq(json_string_value(json_array_get(events, 0)), "events");
    ck_assert_str_eq(json_string_value(json_array_get(events, 1)), "identity");
    json_decref(st);

    /* Wrong paths and methods. */
    /* The default host is 127.0.0.1 and only that (lws would bind an IPv4
     * address given to an IPv6 socket on every interface). */
    ck_assert_str_eq(listen_address("/proc/net/tcp", admin_port), "0100007F");
    ck_assert_str_eq(listen_address("/proc/net/tcp6", admin_port), "");

    ck_assert_int_eq(request("GET", "/nope", NULL, NULL), 404);
    ck_assert_int_eq(request("POST", "/metrics", NULL, NULL), 405);
    ck_assert_int_eq(request("GET", "/reload", NULL, NULL), 405);
    ck_assert_int_eq(
        ws_connect_status("127.0.0.1", admin_port, "/", NULL, SB_TIMEOUT), 400);

    /* Bodies: read and ignored, announced or not; too big is refused. */
    static const char *const posts[] = {
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        "POST /reload HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /reload HTTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++)
        ck_assert_int_eq(raw_status(posts[i]), 200);
    ck_assert_int_eq(raw_status("PUT /status HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 1\r\n\r\nx"),
                     405);
    ck_assert_int_eq(raw_status("DELETE /status HTTP/1.1\r\nHost: x\r\n\r\n"),
                     405);
    ck_assert_int_eq(raw_status("POST /reload HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 1000000\r\n\r\n"),
                     413);

    /* POST /reload of an unchanged config: nothing to do, and fine. */
    body = NULL;
    ck_assert_int_eq(request("POST", "/reload", NULL, &body), 200);
    json_t *summary = json_loads(body, 0, NULL);
    ck_assert_msg(summary && json_is_true(json_object_get(summary, "ok")), "%s",
                  body);
    json_decref(summary);
    free(body);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_metrics_move)
{
    start("max_json_depth = 4\nmax_message_size = 1k\n", NULL, default_plugins);
    /* Every family is there, with HELP and TYPE. */
    char *page = get_ok("/metrics");
    static const char *const families[] = {
        "switchboard_connections gauge",
        "switchboard_connections_total counter",
        "switchboard_messages_received_total counter",
        "switchboard_messages_sent_total counter",
        "switchboard_exceptions_total counter",
        "switchboard_dispatch_seconds histogram",
        "switchboard_send_queue_bytes gauge",
        "switchboard_reloads_total counter",
        "switchboard_plugin_info gauge"};
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char type[128], name[96];
        snprintf(type, sizeof(type), "# TYPE %s\n", families[i]);
        snprintf(name, sizeof(name), "# HELP %.*s ",
                 (int)strcspn(families[i], " "), families[i]);
        ck_assert_msg(strstr(page, type) && strstr(page, name), "%s in %s",
                      families[i], page);
    }
    ck_assert_double_eq(
        value_of(page,
                 "switchboard_plugin_info{name=\"nest\",version=\"1.0.0\","
                 "generation=\"1\",abi=\"1.3\"}"),
        1);
    ck_assert_double_eq(value_of(page, RECEIVED("identity")), 0);
    ck_assert_double_eq(value_of(page, "switchboard_reloads_total{result="
                                       "\"failed\"}"),
                        0);
    free(page);

    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ck_assert_double_eq(metric("switchboard_connections{gateway=\"default\"}"),
                        2);
    ck_assert_double_eq(
        metric("switchboard_connections_total{gateway=\"default\"}"), 2);

    /* 16 pass-through messages: each counted once, each reply once, and
     * the handler timed for 1 in 8 of them (the 1st and the 9th). */
    for (int i = 0; i < 16; i++) {
        char msg[64], want[16];
        snprintf(msg, sizeof(msg), "{\"event\":\"identity\",\"data\":%d}", i);
        snprintf(want, sizeof(want), "%d", i);
        cli_send(i % 2 ? a : b, msg);
        cli_expect(i % 2 ? a : b, want);
    }
    /* One "events" message gets three replies. */
    cli_send(a, "{\"event\":\"events\"}");
    cli_expect(a, "{\"event\":\"events\",\"data\":1}");
    cli_expect(a, "{\"event\":\"events\",\"data\":2}");
    cli_expect(a, "{\"event\":\"events\",\"data\":3}");

    /* One exception of each reason a message can cause. */
    static const char *const bad[] = {
        "not json",                                      /* bad_json */
        "{\"event\":\"identity\",\"data\":[[[[[1]]]]]}", /* too_deep */
        "[1]",                                           /* not_object */
        "{\"data\":1}",                                  /* no_event */
        "{\"event\":5}",                                 /* bad_event */
        "{\"event\":\"identity\",\"id\":[1]}",           /* bad_id */
        "{\"event\":\"fail\",\"data\":\"x\"}",           /* handler_failed */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cli_send(a, bad[i]);
        expect_exception(a);
    }
    cli_send(a, "{\"event\":\"nobody\"}"); /* unknown, ignored */
    cli_expect_nothing(a, 100);

    page = get_ok("/metrics");
    ck_assert_double_eq(value_of(page, RECEIVED("identity")), 16);
    ck_assert_double_eq(value_of(page, SENT("identity")), 16);
    ck_assert_double_eq(value_of(page, RECEIVED("events")), 1);
    ck_assert_double_eq(value_of(page, SENT("events")), 3);
    ck_assert_double_eq(value_of(page, RECEIVED("fail")), 1);
    ck_assert_double_eq(value_of(page, SENT("fail")), 0);
    /* Bad envelopes and the unknown event reached no handler; the seven
     * exceptions are frames that were not replies. */
    ck_assert_double_eq(value_of(page, RECEIVED("")), 7);
    ck_assert_double_eq(value_of(page, SENT("")), 7);
    static const char *const reasons[] = {
        EXC("bad_json"),      EXC("too_deep"),      EXC("not_object"),
        EXC("no_event"),      EXC("bad_event"),     EXC("bad_id"),
        EXC("unknown_event"), EXC("handler_failed")};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        ck_assert_msg(value_of(page, reasons[i]) == 1, "%s", reasons[i]);
    ck_assert_double_eq(value_of(page, EXC("guard_denied")), 0);
    ck_assert_double_eq(value_of(page, EXC("too_big")), 0);
    const char *id_hist =
        "switchboard_dispatch_seconds_count{gateway=\"default\","
        "event=\"identity\"}";
    ck_assert_double_eq(value_of(page, id_hist), 2);
    ck_assert_double_eq(
        value_of(page,
                 "switchboard_dispatch_seconds_bucket{gateway=\"default\","
                 "event=\"identity\",le=\"+Inf\"}"),
        2);
    ck_assert(value_of(page, "switchboard_dispatch_seconds_sum{gateway="
                             "\"default\",event=\"identity\"}") > 0);
    ck_assert_double_eq(
        value_of(page, "switchboard_send_queue_bytes{gateway=\"default\"}"), 0);
    free(page);

    /* Too big: closed with 1009, counted. */
    char big[2048];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    memcpy(big, "{\"event\":\"identity\",\"data\":1}", 29);
    cli_send(b, big);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(b, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1009);
    ws_close(b);
    wait_metric("switchboard_connections{gateway=\"default\"}", 1);
    ck_assert_double_eq(metric(EXC("too_big")), 1);
    ck_assert_double_eq(
        metric("switchboard_connections_total{gateway=\"default\"}"), 2);

    /* A reload that fails (a plugin file that does not exist) counts as
     * failed and answers 500 with the summary; nothing else changes. */
    FILE *ini = fopen(srv.ini, "a");
    ck_assert_ptr_nonnull(ini);
    fputs("[plugin.missing]\nfile = /nonexistent/missing.so\n", ini);
    fclose(ini);
    char *body = NULL;
    ck_assert_int_eq(request("POST", "/reload", NULL, &body), 500);
    ck_assert_msg(strstr(body, "\"missing\""), "%s", body);
    free(body);
    ck_assert_double_eq(metric("switchboard_reloads_total{result=\"failed\"}"),
                        1);
    cli_send(a, "{\"event\":\"identity\",\"data\":\"still\"}");
    cli_expect(a, "\"still\"");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

#define RELOADS(result) "switchboard_reloads_total{result=\"" result "\"}"

/* The reload counters as /status shows them. */
static void status_reloads(json_int_t *ok, json_int_t *failed,
                           json_int_t *unchanged)
{
    json_t *st = get_json("/status");
    json_t *r = json_object_get(st, "reloads");
    ck_assert_msg(json_is_object(r), "no \"reloads\" in /status");
    *ok = json_integer_value(json_object_get(r, "ok"));
    *failed = json_integer_value(json_object_get(r, "failed"));
    *unchanged = json_integer_value(json_object_get(r, "unchanged"));
    json_decref(st);
}

/* Every reload is counted: one that finds nothing to change as
 * "unchanged", whether asked by POST /reload or SIGHUP; one whose config
 * does not load as "failed". */
START_TEST(test_every_reload_counted)
{
    start(NULL, NULL, default_plugins);
    ck_assert_double_eq(metric(RELOADS("unchanged")), 0);
    char *body = NULL;
    ck_assert_int_eq(request("POST", "/reload", NULL, &body), 200);
    free(body);
    ck_assert_double_eq(metric(RELOADS("unchanged")), 1);
    kill(srv.pid, SIGHUP);
    wait_metric(RELOADS("unchanged"), 2);
    ck_assert_double_eq(metric(RELOADS("ok")), 0);
    ck_assert_double_eq(metric(RELOADS("failed")), 0);
    json_int_t ok, failed, unchanged;
    status_reloads(&ok, &failed, &unchanged);
    ck_assert_int_eq(ok, 0);
    ck_assert_int_eq(failed, 0);
    ck_assert_int_eq(unchanged, 2);

    /* A config that does not load changes nothing, and is a failure. */
    FILE *ini = fopen(srv.ini, "a");
    ck_assert_ptr_nonnull(ini);
    fputs("[server\n", ini);
    fclose(ini);
    ck_assert_int_eq(request("POST", "/reload", NULL, &body), 500);
    free(body);
    ck_assert_double_eq(metric(RELOADS("failed")), 1);
    ck_assert_double_eq(metric(RELOADS("unchanged")), 2);
    status_reloads(&ok, &failed, &unchanged);
    ck_assert_int_eq(failed, 1);

    /* The HELP line says what "unchanged" means. */
    char *page = get_ok("/metrics");
    ck_assert_msg(strstr(page, "unchanged (nothing to apply)"), "%s", page);
    free(page);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_guard_denied)
{
    start(NULL, NULL, "[plugin.sdk]\nfile = %P/test-sdk11.so\njournal = %J\n");
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"whoami\",\"data\":{\"forbidden\":true}}");
    expect_exception(c);
    ck_assert_double_eq(metric(EXC("guard_denied")), 1);
    ck_assert_double_eq(metric(EXC("handler_failed")), 0);
    /* A denied message was received for its event, and never timed. */
    ck_assert_double_eq(metric(RECEIVED("whoami")), 1);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_rate_limited)
{
    start("rate_limit = 1\nrate_burst = 1\n", NULL, default_plugins);
    ws_client *c = cli_connect(&srv);
    /* One message a second: of three at once, the first is handled and the
     * other two dropped, with one exception for the burst. */
    cli_send(c, "{\"event\":\"identity\",\"data\":1}");
    cli_send(c, "{\"event\":\"identity\",\"data\":2}");
    cli_send(c, "{\"event\":\"identity\",\"data\":3}");
    cli_expect(c, "1");
    expect_exception(c);
    char *page = get_ok("/metrics");
    double handled = value_of(page, RECEIVED("identity"));
    double dropped = value_of(page, EXC("rate_limited"));
    free(page);
    ck_assert_msg(handled + dropped == 3 && dropped >= 1, "%g + %g", handled,
                  dropped);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_token)
{
    start(NULL, "token = s3cret-Token\n", default_plugins);
    static const char *const paths[] = {"/healthz", "/readyz", "/metrics",
                                        "/status"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        ck_assert_int_eq(request("GET", paths[i], NULL, NULL), 401);
        ck_assert_int_eq(request("GET", paths[i], "Bearer wrong", NULL), 401);
        ck_assert_int_eq(request("GET", paths[i], "Bearer s3cret-Toke", NULL),
                         401);
        ck_assert_int_eq(request("GET", paths[i], "Bearer s3cret-Token2", NULL),
                         401);
        ck_assert_int_eq(request("GET", paths[i], "Basic s3cret-Token", NULL),
                         401);
        ck_assert_int_eq(request("GET", paths[i], "Bearer s3cret-Token", NULL),
                         200);
    }
    /* The scheme is case-insensitive (RFC 7235); the token is not. */
    ck_assert_int_eq(request("GET", "/healthz", "bearer s3cret-Token", NULL),
                     200);
    ck_assert_int_eq(request("GET", "/healthz", "Bearer S3CRET-TOKEN", NULL),
                     401);
    ck_assert_int_eq(request("POST", "/reload", NULL, NULL), 401);
    /* The 401 says how to authenticate. */
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                       "Connection: close\r\n\r\n";
    ws_http_response r;
    ck_assert_int_eq(ws_http_raw("127.0.0.1", admin_port, req, sizeof(req) - 1,
                                 SB_TIMEOUT, &r),
                     0);
    char value[64];
    ck_assert_int_gt(
        ws_http_header(&r, "WWW-Authenticate", value, sizeof(value)), 0);
    ck_assert_str_eq(value, "Bearer realm=\"switchboard\"");
    ws_http_response_free(&r);
    srv_stop(&srv);
}
END_TEST

/* A client that does not answer the 1001 keeps the server draining for up
 * to shutdown_timeout: meanwhile /readyz says 503 and /healthz 200. */
START_TEST(test_readyz_while_draining)
{
    start("shutdown_timeout = 30\n", NULL, default_plugins);
    ws_client *c = cli_connect(&srv);
    ck_assert_int_eq(request("GET", "/readyz", NULL, NULL), 200);
    ck_assert_int_eq(kill(srv.pid, SIGTERM), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1001);
    char *body = NULL;
    ck_assert_int_eq(request("GET", "/readyz", NULL, &body), 503);
    ck_assert_str_eq(body, "shutting down\n");
    free(body);
    ck_assert_int_eq(request("GET", "/healthz", NULL, NULL), 200);
    json_t *st = get_json("/status");
    ck_assert(json_is_true(json_object_get(st, "stopping")));
    ck_assert(json_is_false(json_object_get(st, "ready")));
    json_decref(st);
    /* The client goes; the server finishes at once. */
    ws_close(c);
    int status = -1;
    ck_assert_int_eq(sb_test_stop(srv.pid, 0, 30000, &status), 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
                  status);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* log_format = json: every line the server wrote, from start to exit,
 * parses as a JSON object with ts, level, tag and msg; connection lines
 * carry the client id, remote address, gateway and close code. */
START_TEST(test_json_logs)
{
    start("log_format = json\nlog_connections = true\n", NULL, default_plugins);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"identity\",\"data\":\"\\u00e9\\u0001\"}");
    cli_expect(c, "\"\\u00e9\\u0001\"");
    cli_send(c, "not json \x01 \"quoted\"");
    expect_exception(c);
    ck_assert_int_eq(ws_send_close(c, 4000, "bye"), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(c);
    /* Stop by hand: srv_stop() removes the log with the folder. */
    int status = -1;
    ck_assert_int_eq(sb_test_stop(srv.pid, SIGTERM, 30000, &status), 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
                  status);

    char *log = strdup(srv_logtext(&srv));
    size_t lines = 0;
    bool connect_seen = false, disconnect_seen = false;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        ck_assert_msg(json_is_object(o), "not a JSON object (%s): %s", err.text,
                      line);
        static const char *const keys[] = {"ts", "level", "tag", "msg"};
        for (size_t k = 0; k < 4; k++)
            ck_assert_msg(json_is_string(json_object_get(o, keys[k])),
                          "no string '%s' in %s", keys[k], line);
        const char *msg = json_string_value(json_object_get(o, "msg"));
        const char *tag = json_string_value(json_object_get(o, "tag"));
        if (strcmp(tag, "server") == 0 &&
            (strstr(msg, "connected from") || strstr(msg, "disconnected"))) {
            ck_assert_str_eq(json_string_value(json_object_get(o, "level")),
                             "info");
            ck_assert_int_eq(json_integer_value(json_object_get(o, "client")),
                             1);
            ck_assert_msg(
                strstr(json_string_value(json_object_get(o, "remote")),
                       "127.0.0.1"),
                "%s", line);
            ck_assert_str_eq(json_string_value(json_object_get(o, "gateway")),
                             "default");
            if (strstr(msg, "disconnected")) {
                ck_assert_int_eq(json_integer_value(json_object_get(o, "code")),
                                 4000);
                disconnect_seen = true;
            } else {
                connect_seen = true;
            }
        }
        json_decref(o);
        lines++;
    }
    free(log);
    ck_assert_int_gt(lines, 5);
    ck_assert(connect_seen && disconnect_seen);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Without [admin] port nothing listens, and the config is checked. */
START_TEST(test_config)
{
    char dir[] = "/tmp/sb-admin-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof(path), "%s/bad.ini", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("[server]\nlog_format = yaml\nlog_connections = maybe\n"
          "[admin]\nport = 0\ntoken = has space\nfoo = 1\nport = 3000\n",
          f);
    fclose(f);
    const char *args[] = {"-t", "-c", path, NULL};
    char out[4096];
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, ":2: bad value 'yaml' for 'log_format'"), "%s",
                  out);
    ck_assert_msg(strstr(out, ":3: bad value 'maybe' for 'log_connections'"),
                  "%s", out);
    ck_assert_msg(strstr(out, ":5: bad value '0' for 'port'"), "%s", out);
    /* The token is a secret: its bad value is not repeated in the log. */
    ck_assert_msg(strstr(out, ":6: bad value (not shown) for 'token'"), "%s",
                  out);
    ck_assert_ptr_null(strstr(out, "has space"));
    ck_assert_msg(strstr(out, ":7: unknown key 'foo' in [admin]"), "%s", out);
    ck_assert_msg(strstr(out, ":4: [admin] port 3000 is the port of gateway "
                              "'default' too"),
                  "%s", out);
    unlink(path);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("admin");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_endpoints);
    tcase_add_test(tc, test_metrics_move);
    tcase_add_test(tc, test_every_reload_counted);
    tcase_add_test(tc, test_guard_denied);
    tcase_add_test(tc, test_rate_limited);
    tcase_add_test(tc, test_token);
    tcase_add_test(tc, test_readyz_while_draining);
    tcase_add_test(tc, test_json_logs);
    tcase_add_test(tc, test_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

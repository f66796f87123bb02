/*
 * ABI 1.1 beyond the bundled plugins, through tests/plugins/sdk11.c: client
 * info and identity, closing clients by id, per-client state and data (with
 * its destructor), sending to ids, broadcasts, event guards in config
 * order, post() from a thread of the plugin's own, timers stopped from
 * their own callback, the typed config getters (and their refusals under
 * -t). Also: a plugin built against the frozen 1.0 header loads and works,
 * and the worked example of docs/sdk.md (presence) is the file it quotes
 * and does what the guide says.
 *
 * Client ids start at 1 and follow the order of connection.
 */
#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <switchboard/plugin.h>

#include "harness.h"

#define SDK "[plugin.sdk]\nfile = %P/test-sdk11.so\njournal = %J\n"

static sb_srv srv;

/* A client id as the tests print it. */
typedef unsigned long long cid;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static ws_client *connect_path(const char *path_and_query, const char *headers)
{
    ws_client *c =
        ws_connect("127.0.0.1", srv.port, path_and_query, headers, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect %s: %s", path_and_query, ws_last_error());
    return c;
}

/* Receives one text message and parses it; fails the test otherwise. */
static json_t *recv_json(ws_client *c)
{
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "expected a message, got %s",
                  rc == 0 ? "nothing (timeout)" : ws_error(c));
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    json_error_t err;
    json_t *v = json_loadb((const char *)f.data, f.len, JSON_DECODE_ANY, &err);
    ck_assert_msg(v != NULL, "not JSON: %s", (char *)f.data);
    ws_frame_free(&f);
    return v;
}

/* The data of the next message, which must be event `event` (the caller
 * owns the result). */
static json_t *recv_event(ws_client *c, const char *event)
{
    json_t *v = recv_json(c);
    const char *got = json_string_value(json_object_get(v, "event"));
    char *text = json_dumps(v, JSON_COMPACT);
    ck_assert_msg(got && strcmp(got, event) == 0, "expected '%s', got %s",
                  event, text);
    free(text);
    json_t *data = json_incref(json_object_get(v, "data"));
    json_decref(v);
    return data;
}

static cid whoami(ws_client *c)
{
    cli_send(c, "{\"event\":\"whoami\"}");
    json_t *d = recv_event(c, "whoami");
    cid id = (cid)json_integer_value(json_object_get(d, "id"));
    json_decref(d);
    ck_assert_uint_gt(id, 0);
    return id;
}

static void sendf(ws_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sendf(ws_client *c, const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cli_send(c, msg);
}

/* Answers the server's close like a polite client and checks its code. */
static void expect_closed(ws_client *c, int want_code, const char *want_reason)
{
    int code = 0;
    char reason[128] = "";
    ck_assert_int_eq(
        ws_expect_close(c, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, want_code);
    if (want_reason)
        ck_assert_str_eq(reason, want_reason);
    ws_send_close(c, code, NULL);
    ws_close(c);
}

/* Position of needle in the journal, or -1. */
static long journal_at(const char *needle)
{
    const char *j = srv_journal(&srv);
    const char *at = strstr(j, needle);
    return at ? at - j : -1;
}

/* ---- clients by id ------------------------------------------------------ */

START_TEST(test_client_info_and_identity)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = connect_path("/?user=ada&x=1", "X-Trace: t-42\r\n");
    ws_client *b = cli_connect(&srv);
    cid ida = whoami(a), idb = whoami(b);

    cli_send(a, "{\"event\":\"info\"}");
    json_t *info = recv_event(a, "info");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "id")), ida);
    /* The peer's address (its exact form: see test_remote_address). */
    const char *remote = json_string_value(json_object_get(info, "remote"));
    ck_assert_msg(remote && strstr(remote, "127.0.0.1"), "remote %s", remote);
    ck_assert_str_eq(json_string_value(json_object_get(info, "gateway")),
                     "default");
    ck_assert_str_eq(json_string_value(json_object_get(info, "path")), "/");
    /* Its exact form: see test_raw_query. */
    const char *query = json_string_value(json_object_get(info, "query"));
    ck_assert_msg(query && strstr(query, "user=ada") && strstr(query, "x=1"),
                  "query %s", query);
    json_t *headers = json_object_get(info, "headers");
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", srv.port);
    ck_assert_str_eq(json_string_value(json_object_get(headers, "host")), host);
    /* Header names are lower-case. */
    const char *name;
    json_t *value;
    json_object_foreach(headers, name, value)
    {
        for (const char *ch = name; *ch; ch++)
            ck_assert_msg(!(*ch >= 'A' && *ch <= 'Z'), "header %s", name);
    }
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(info, "identity"), "user")),
                     "ada");
    json_decref(info);

    /* The identity a handshake hook attached, seen by id from another
     * client's handler; none for a client that got none. */
    sendf(b, "{\"event\":\"identity\",\"data\":{\"id\":%llu}}", ida);
    json_t *who = recv_event(b, "identity");
    ck_assert_str_eq(json_string_value(json_object_get(who, "user")), "ada");
    json_decref(who);
    cli_send(b, "{\"event\":\"identity\"}");
    cli_expect(b, "{\"event\":\"identity\",\"data\":null}");
    sendf(a, "{\"event\":\"info\",\"data\":{\"id\":%llu}}", idb);
    info = recv_event(a, "info");
    ck_assert_int_eq(json_integer_value(json_object_get(info, "id")), idb);
    ck_assert(json_is_null(json_object_get(info, "identity")));
    ck_assert_str_eq(json_string_value(json_object_get(info, "query")), "");
    json_decref(info);

    /* A stale id is NULL, never a crash: an id never handed out, and one
     * whose client is gone. */
    cli_send(a, "{\"event\":\"info\",\"data\":{\"id\":999}}");
    cli_expect(a, "{\"event\":\"info\",\"data\":null}");
    ws_send_close(b, 1000, NULL);
    expect_closed(b, 1000, NULL);
    char gone[64];
    snprintf(gone, sizeof(gone), "sdk disconnect %llu ", idb);
    ck_assert(srv_journal_wait(&srv, gone, SB_TIMEOUT));
    sendf(a, "{\"event\":\"info\",\"data\":{\"id\":%llu}}", idb);
    cli_expect(a, "{\"event\":\"info\",\"data\":null}");
    sendf(a, "{\"event\":\"identity\",\"data\":{\"id\":%llu}}", idb);
    cli_expect(a, "{\"event\":\"identity\",\"data\":null}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* As documented: client_info() keeps the headers lws knows by name (the
 * header table is gone after the upgrade); others, X-Trace here, only a
 * handshake hook can read. */
START_TEST(test_client_info_custom_header)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = connect_path("/", "X-Trace: t-42\r\nUser-Agent: t\r\n");
    cli_send(a, "{\"event\":\"info\"}");
    json_t *info = recv_event(a, "info");
    json_t *headers = json_object_get(info, "headers");
    char *text = json_dumps(headers, JSON_COMPACT);
    ck_assert_msg(json_object_get(headers, "x-trace") == NULL &&
                      json_object_get(headers, "user-agent") != NULL,
                  "client_info headers: %s", text);
    free(text);
    json_decref(info);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* A query that decodes to bytes that are not UTF-8 (?a=%ff), and header
 * values that are not UTF-8: client_info() still answers (it gave NULL, so
 * a plugin took a live client for gone, and dropped such headers), with
 * every invalid byte replaced by U+FFFD and the repaired fields listed in
 * "not_utf8". */
START_TEST(test_client_info_not_utf8)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a =
        connect_path("/?a=%ff&b=ok", "User-Agent: caf\xe9 \xff!\r\n");
    ws_client *b = connect_path("/?a=ok", "User-Agent: fine\r\n");
    cli_send(a, "{\"event\":\"info\"}");
    json_t *info = recv_event(a, "info");
    char *text = json_dumps(info, JSON_COMPACT);
    ck_assert_msg(json_is_object(info), "info: %s", text);
    ck_assert_str_eq(json_string_value(json_object_get(info, "query")),
                     "a=\xef\xbf\xbd&b=ok");
    json_t *headers = json_object_get(info, "headers");
    ck_assert_msg(json_object_get(headers, "user-agent"), "%s", text);
    ck_assert_str_eq(json_string_value(json_object_get(headers, "user-agent")),
                     "caf\xef\xbf\xbd \xef\xbf\xbd!");
    json_t *marked = json_object_get(info, "not_utf8");
    ck_assert_msg(json_is_array(marked) && json_array_size(marked) == 2, "%s",
                  text);
    ck_assert_str_eq(json_string_value(json_array_get(marked, 0)), "query");
    ck_assert_str_eq(json_string_value(json_array_get(marked, 1)),
                     "user-agent");
    free(text);
    json_decref(info);
    /* A client whose handshake is all UTF-8 has no such key. */
    cli_send(b, "{\"event\":\"info\"}");
    info = recv_event(b, "info");
    ck_assert_ptr_null(json_object_get(info, "not_utf8"));
    ck_assert_str_eq(json_string_value(json_object_get(info, "query")), "a=ok");
    json_decref(info);
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* client_info()'s "remote" for a client of a gateway bound to 127.0.0.1 is
 * in the header's "1.2.3.4" form, not the v4-mapped "::ffff:127.0.0.1" a
 * dual-stack socket reports (which an address allowlist would not match). */
START_TEST(test_remote_address)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"info\"}");
    json_t *info = recv_event(a, "info");
    ck_assert_str_eq(json_string_value(json_object_get(info, "remote")),
                     "127.0.0.1");
    json_decref(info);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* "query" of client_info() and handshake_query() are "the raw query string
 * without '?'": lws splits the arguments, and the host joins them with ','
 * ("user=ada,x=1"), so a plugin that parses the query finds one argument.
 */
START_TEST(test_raw_query)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = connect_path("/?user=ada&x=1", NULL);
    cli_send(a, "{\"event\":\"info\"}");
    json_t *info = recv_event(a, "info");
    json_t *identity = json_object_get(info, "identity");
    ck_assert_str_eq(json_string_value(json_object_get(identity, "query")),
                     "user=ada&x=1");
    ck_assert_str_eq(json_string_value(json_object_get(info, "query")),
                     "user=ada&x=1");
    json_decref(info);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_client_close)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ws_client *c = cli_connect(&srv);
    cid ida = whoami(a), idc = whoami(c);
    whoami(b);

    /* Closing oneself: what is queued goes first, then the close frame
     * with the code and reason; after it nothing more is sent. */
    cli_send(a, "{\"event\":\"close\",\"data\":{\"code\":4321,\"reason\":"
                "\"bye now\"}}");
    cli_expect(a, "{\"event\":\"close\",\"data\":{\"self\":true}}");
    expect_closed(a, 4321, "bye now");
    char line[128];
    snprintf(line, sizeof(line), "sdk disconnect %llu 4321 ", ida);
    ck_assert(srv_journal_wait(&srv, line, SB_TIMEOUT));
    ck_assert_int_ge(journal_at("sdk close self rc=0 again=-6 late=-6\n"), 0);

    /* Closing another client by id. */
    sendf(b,
          "{\"event\":\"close\",\"data\":{\"id\":%llu,\"code\":4000,"
          "\"reason\":\"kicked\"}}",
          idc);
    cli_expect(b, "{\"event\":\"close\",\"data\":{\"rc\":0}}");
    expect_closed(c, 4000, "kicked");
    snprintf(line, sizeof(line), "sdk disconnect %llu 4000 ", idc);
    ck_assert(srv_journal_wait(&srv, line, SB_TIMEOUT));

    /* Stale ids and codes that may not be sent. */
    sendf(b, "{\"event\":\"close\",\"data\":{\"id\":%llu,\"code\":1000}}", idc);
    cli_expect(b, "{\"event\":\"close\",\"data\":{\"rc\":-4}}");
    ws_client *d = cli_connect(&srv);
    cid idd = whoami(d);
    static const int bad_codes[] = {0, 999, 1005, 1006, 1015, 5000};
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        sendf(b, "{\"event\":\"close\",\"data\":{\"id\":%llu,\"code\":%d}}",
              idd, bad_codes[i]);
        cli_expect(b, "{\"event\":\"close\",\"data\":{\"rc\":-1}}");
    }
    /* d is untouched. */
    cli_send(d, "{\"event\":\"echo\",\"data\":2}");
    cli_expect(d, "{\"event\":\"echo\",\"data\":2}");
    ws_close(d);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* client_close() lets through codes RFC 6455 forbids on the wire: 1004
 * (reserved) and 1016-2999 (unassigned); a browser fails the connection on
 * them. The header promises SB_ERR_INVALID for an out-of-range argument. */
START_TEST(test_client_close_reserved_codes)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    whoami(a);
    cid idb = whoami(b);
    static const int reserved[] = {1004, 1016, 2000, 2999};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        sendf(a, "{\"event\":\"close\",\"data\":{\"id\":%llu,\"code\":%d}}",
              idb, reserved[i]);
        char want[96];
        snprintf(want, sizeof(want),
                 "{\"event\":\"close\",\"data\":{\"rc\":%d}}", -1);
        cli_expect(a, want);
    }
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* client_close() takes "a reason of at most 123 bytes" (the most a close
 * frame holds); the host keeps 63 and cuts the rest. */
START_TEST(test_client_close_long_reason)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    char reason[101];
    memset(reason, 'r', 100);
    reason[100] = 0;
    sendf(a,
          "{\"event\":\"close\",\"data\":{\"code\":4001,\"reason\":"
          "\"%s\"}}",
          reason);
    cli_expect(a, "{\"event\":\"close\",\"data\":{\"self\":true}}");
    expect_closed(a, 4001, reason);
    srv_stop(&srv);
}
END_TEST

/* ---- per-client state and data ------------------------------------------ */

START_TEST(test_client_state)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    cid ida = whoami(a);
    whoami(b);
    for (int i = 1; i <= 3; i++) {
        char want[64];
        cli_send(a, "{\"event\":\"count\"}");
        snprintf(want, sizeof(want), "{\"event\":\"count\",\"data\":%d}", i);
        cli_expect(a, want);
    }
    /* Per client: b has its own counter, and reads a's by id. */
    cli_send(b, "{\"event\":\"count\"}");
    cli_expect(b, "{\"event\":\"count\",\"data\":1}");
    sendf(b, "{\"event\":\"count_of\",\"data\":{\"id\":%llu}}", ida);
    cli_expect(b, "{\"event\":\"count_of\",\"data\":{\"state\":{\"n\":3},"
                  "\"set_rc\":0}}");
    /* Setting state on a stale id fails (and the value is released:
     * valgrind checks that). */
    cli_send(b, "{\"event\":\"count_of\",\"data\":{\"id\":999}}");
    cli_expect(b, "{\"event\":\"count_of\",\"data\":{\"state\":null,"
                  "\"set_rc\":-4}}");
    /* NULL clears it. */
    cli_send(b, "{\"event\":\"state_clear\"}");
    cli_expect(b, "{\"event\":\"state_clear\",\"data\":{\"rc\":0,\"gone\":"
                  "true}}");
    cli_send(b, "{\"event\":\"count\"}");
    cli_expect(b, "{\"event\":\"count\",\"data\":1}");

    /* The disconnect hook still sees the state; afterwards it is gone. */
    ws_send_close(a, 1000, NULL);
    expect_closed(a, 1000, NULL);
    char line[128];
    snprintf(line, sizeof(line), "sdk disconnect %llu 1000 count=3 ", ida);
    ck_assert(srv_journal_wait(&srv, line, SB_TIMEOUT));
    sendf(b, "{\"event\":\"count_of\",\"data\":{\"id\":%llu}}", ida);
    cli_expect(b, "{\"event\":\"count_of\",\"data\":{\"state\":null,"
                  "\"set_rc\":-4}}");
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_client_data_destructor)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    cid ida = whoami(a);
    whoami(b);
    cli_send(a, "{\"event\":\"data_get\"}");
    cli_expect(a, "{\"event\":\"data_get\",\"data\":null}");
    cli_send(a, "{\"event\":\"data_set\",\"data\":{\"tag\":\"one\"}}");
    cli_expect(a, "{\"event\":\"data_set\",\"data\":{\"rc\":0}}");
    cli_send(a, "{\"event\":\"data_get\"}");
    cli_expect(a, "{\"event\":\"data_get\",\"data\":\"one\"}");
    ck_assert_int_lt(journal_at("destroy one"), 0);
    /* Replacing it runs the destructor on the old pointer. */
    cli_send(a, "{\"event\":\"data_set\",\"data\":{\"tag\":\"two\"}}");
    cli_expect(a, "{\"event\":\"data_set\",\"data\":{\"rc\":0}}");
    ck_assert(srv_journal_wait(&srv, "sdk destroy one\n", SB_TIMEOUT));
    sendf(b, "{\"event\":\"data_get\",\"data\":{\"id\":%llu}}", ida);
    cli_expect(b, "{\"event\":\"data_get\",\"data\":\"two\"}");
    /* Per plugin and client: b has none. */
    cli_send(b, "{\"event\":\"data_get\"}");
    cli_expect(b, "{\"event\":\"data_get\",\"data\":null}");

    /* At disconnect: the hook still sees the pointer, then the destructor
     * runs. A dropped connection counts (1006). */
    ws_close(a);
    ck_assert(srv_journal_wait(&srv, "sdk destroy two\n", SB_TIMEOUT));
    char line[128];
    snprintf(line, sizeof(line), "sdk disconnect %llu 1006 count=0 data=two\n",
             ida);
    long hook = journal_at(line), destroy = journal_at("sdk destroy two\n");
    ck_assert_msg(hook >= 0 && hook < destroy, "journal:\n%s",
                  srv_journal(&srv));
    sendf(b, "{\"event\":\"data_get\",\"data\":{\"id\":%llu}}", ida);
    cli_expect(b, "{\"event\":\"data_get\",\"data\":null}");
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* ---- sending ------------------------------------------------------------ */

START_TEST(test_send_to_id)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    whoami(a);
    cid idb = whoami(b);
    sendf(a,
          "{\"event\":\"send\",\"data\":{\"to\":%llu,\"event\":\"hi\","
          "\"data\":{\"x\":[1,\"two\"]}},\"id\":5}",
          idb);
    cli_expect(a, "{\"event\":\"send\",\"data\":{\"rc\":0},\"id\":5}");
    /* send() carries no id: it is not a reply. */
    cli_expect(b, "{\"event\":\"hi\",\"data\":{\"x\":[1,\"two\"]}}");
    sendf(a, "{\"event\":\"send\",\"data\":{\"to\":%llu,\"event\":\"hi\"}}",
          idb);
    cli_expect(a, "{\"event\":\"send\",\"data\":{\"rc\":0}}");
    cli_expect(b, "{\"event\":\"hi\"}");
    /* A stale id is an error code answered back, never a crash: never
     * handed out, or gone. */
    cli_send(a, "{\"event\":\"send\",\"data\":{\"to\":999}}");
    cli_expect(a, "{\"event\":\"send\",\"data\":{\"rc\":-4}}");
    cli_send(a, "{\"event\":\"send\",\"data\":{\"to\":0}}");
    cli_expect(a, "{\"event\":\"send\",\"data\":{\"rc\":-4}}");
    ws_close(b);
    char line[64];
    snprintf(line, sizeof(line), "sdk disconnect %llu ", idb);
    ck_assert(srv_journal_wait(&srv, line, SB_TIMEOUT));
    sendf(a, "{\"event\":\"send\",\"data\":{\"to\":%llu,\"data\":1}}", idb);
    cli_expect(a, "{\"event\":\"send\",\"data\":{\"rc\":-4}}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_broadcast)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    ws_client *c = cli_connect(&srv);
    whoami(a);
    whoami(b);
    whoami(c);
    /* To all, the sender included (its copy before its reply). */
    cli_send(a, "{\"event\":\"broadcast\",\"data\":{\"data\":\"x\"}}");
    cli_expect(a, "{\"event\":\"broadcast\",\"data\":\"x\"}");
    cli_expect(a, "{\"event\":\"broadcast\",\"data\":{\"count\":3}}");
    cli_expect(b, "{\"event\":\"broadcast\",\"data\":\"x\"}");
    cli_expect(c, "{\"event\":\"broadcast\",\"data\":\"x\"}");
    /* All but the sender. */
    cli_send(b, "{\"event\":\"broadcast\",\"data\":{\"data\":[1],"
                "\"except_me\":true}}");
    cli_expect(b, "{\"event\":\"broadcast\",\"data\":{\"count\":2}}");
    cli_expect(a, "{\"event\":\"broadcast\",\"data\":[1]}");
    cli_expect(c, "{\"event\":\"broadcast\",\"data\":[1]}");
    cli_expect_nothing(b, 200);
    /* No data: no data key. A client that left is not counted. */
    ws_send_close(c, 1000, NULL);
    expect_closed(c, 1000, NULL);
    ck_assert(srv_journal_wait(&srv, "sdk disconnect 3 ", SB_TIMEOUT));
    cli_send(a, "{\"event\":\"broadcast\"}");
    cli_expect(a, "{\"event\":\"broadcast\"}");
    cli_expect(a, "{\"event\":\"broadcast\",\"data\":{\"count\":2}}");
    cli_expect(b, "{\"event\":\"broadcast\"}");
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

/* ---- guards ------------------------------------------------------------- */

/* Two guards: "sdk" (the full plugin) first in the config, then "g2" (guard
 * only, denying "secret"). Config order, not name order: g2 < sdk. */
START_TEST(test_event_guards)
{
    srv_start(&srv, NULL,
              SDK "[plugin.g2]\nfile = %P/test-sdk11.so\njournal = %J\n"
                  "role = guard\ndeny_key = secret\n");
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"echo\",\"data\":{\"v\":1}}");
    cli_expect(a, "{\"event\":\"echo\",\"data\":{\"v\":1}}");
    long first = journal_at("sdk guard echo\n");
    long second = journal_at("g2 guard echo\n");
    ck_assert_msg(first >= 0 && second > first, "journal:\n%s",
                  srv_journal(&srv));

    /* The first guard denies with its message; the second is not asked and
     * no handler runs. */
    ck_assert_int_eq(truncate(srv.journal, 0), 0);
    cli_send(a, "{\"event\":\"echo\",\"data\":{\"forbidden\":true},"
                "\"id\":\"r1\"}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"sdk denies 'echo'\",\"cause\":{\"pattern\":"
                  "\"echo\",\"data\":{\"forbidden\":true}}},\"id\":\"r1\"}");
    ck_assert_str_eq(srv_journal(&srv), "sdk guard echo\n");
    /* The second guard denies what the first let through. */
    cli_send(a, "{\"event\":\"whoami\",\"data\":{\"secret\":true},\"id\":7}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"g2 denies 'whoami'\",\"cause\":{\"pattern\":"
                  "\"whoami\",\"data\":{\"secret\":true}}},\"id\":7}");
    /* A guard that says no without fail(): the generic message. */
    cli_send(a, "{\"event\":\"echo\",\"data\":{\"silent\":true}}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"Internal server error\",\"cause\":{"
                  "\"pattern\":\"echo\",\"data\":{\"silent\":true}}}}");
    /* An event nobody handles reaches no guard (and nothing is sent). */
    ck_assert_int_eq(truncate(srv.journal, 0), 0);
    cli_send(a, "{\"event\":\"nobody\",\"data\":{\"forbidden\":true}}");
    cli_expect_nothing(a, 200);
    ck_assert_str_eq(srv_journal(&srv), "");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* ---- asynchronous ------------------------------------------------------- */

START_TEST(test_post_from_thread)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    /* The thread sleeps, then post()s; the callback runs on the loop
     * thread and sends to the client by id. */
    cli_send(a, "{\"event\":\"post\",\"data\":{\"delay_ms\":50}}");
    cli_expect(a, "{\"event\":\"post\",\"data\":{\"started\":true}}");
    cli_expect(a, "{\"event\":\"posted\",\"data\":{\"on_loop\":true,"
                  "\"from_thread\":true}}");
    /* Several threads at once; other clients are served meanwhile. */
    for (int i = 0; i < 4; i++)
        cli_send(a, "{\"event\":\"post\",\"data\":{\"delay_ms\":100}}");
    cli_send(b, "{\"event\":\"echo\",\"data\":1}");
    cli_expect(b, "{\"event\":\"echo\",\"data\":1}");
    for (int i = 0; i < 4; i++)
        cli_expect(a, "{\"event\":\"post\",\"data\":{\"started\":true}}");
    for (int i = 0; i < 4; i++)
        cli_expect(a, "{\"event\":\"posted\",\"data\":{\"on_loop\":true,"
                      "\"from_thread\":true}}");
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_timers)
{
    srv_start(&srv, NULL, SDK);
    ws_client *a = cli_connect(&srv);
    /* A repeating timer stops itself from its own callback on the third
     * tick; stopping it again finds nothing. */
    cli_send(a, "{\"event\":\"ticks\",\"data\":{\"every_ms\":20,"
                "\"stop_after\":3}}");
    json_t *d = recv_event(a, "ticks");
    json_int_t timer = json_integer_value(json_object_get(d, "timer"));
    json_decref(d);
    ck_assert_int_gt(timer, 0);
    cli_expect(a, "{\"event\":\"tick\",\"data\":{\"n\":1}}");
    cli_expect(a, "{\"event\":\"tick\",\"data\":{\"n\":2}}");
    cli_expect(a, "{\"event\":\"tick\",\"data\":{\"n\":3}}");
    cli_expect(a, "{\"event\":\"ticks_done\",\"data\":{\"rc\":0,\"again\":-4,"
                  "\"same_id\":true}}");
    cli_expect_nothing(a, 200);
    sendf(a, "{\"event\":\"timer_stop\",\"data\":{\"timer\":%lld}}",
          (long long)timer);
    cli_expect(a, "{\"event\":\"timer_stop\",\"data\":{\"rc\":-4}}");

    /* A one-shot timer's id is stale once it fired. */
    cli_send(a, "{\"event\":\"oneshot\"}");
    d = recv_event(a, "oneshot");
    json_int_t once = json_integer_value(json_object_get(d, "timer"));
    json_decref(d);
    ck_assert_int_ne(once, timer);
    d = recv_event(a, "oneshot");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "timer")), once);
    json_decref(d);
    sendf(a, "{\"event\":\"timer_stop\",\"data\":{\"timer\":%lld}}",
          (long long)once);
    cli_expect(a, "{\"event\":\"timer_stop\",\"data\":{\"rc\":-4}}");

    /* Stopped from a handler: no tick after the answer. */
    cli_send(a, "{\"event\":\"ticks\",\"data\":{\"every_ms\":30,"
                "\"stop_after\":1000}}");
    d = recv_event(a, "ticks");
    timer = json_integer_value(json_object_get(d, "timer"));
    json_decref(d);
    sleep_ms(100);
    sendf(a, "{\"event\":\"timer_stop\",\"data\":{\"timer\":%lld}}",
          (long long)timer);
    for (;;) {
        json_t *v = recv_json(a);
        const char *ev = json_string_value(json_object_get(v, "event"));
        bool done = strcmp(ev, "timer_stop") == 0;
        if (done)
            ck_assert_int_eq(json_integer_value(json_object_get(
                                 json_object_get(v, "data"), "rc")),
                             0);
        else
            ck_assert_str_eq(ev, "tick");
        json_decref(v);
        if (done)
            break;
    }
    cli_expect_nothing(a, 200);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* ---- config ------------------------------------------------------------- */

START_TEST(test_typed_config)
{
    srv_start(&srv, NULL,
              SDK "limit = 64k\nverbose = yes\nratio = 0.25\n"
                  "greeting = hi there\n");
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"config\"}");
    cli_expect(a, "{\"event\":\"config\",\"data\":{\"limit\":65536,"
                  "\"absent_int\":-7,\"verbose\":true,\"ratio\":0.25,"
                  "\"greeting\":\"hi there\"}}");
    ws_close(a);
    srv_stop(&srv);

    /* Defaults when absent. */
    srv_start(&srv, NULL, SDK);
    a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"config\"}");
    cli_expect(a, "{\"event\":\"config\",\"data\":{\"limit\":10,"
                  "\"absent_int\":-7,\"verbose\":false,\"ratio\":0.5,"
                  "\"greeting\":\"hello\"}}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Each getter's refusal fails init with a message naming the key and the
 * section, and -t lists them all. */
START_TEST(test_typed_config_refusals)
{
    char dir[] = "/tmp/sb-it-sdk11-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[4096], out[65536];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    const char *pd = SB_TEST_PLUGIN_DIR;
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n"
             "[plugin.needs]\nfile = %s/test-sdk11.so\n"
             "[plugin.empty]\nfile = %s/test-sdk11.so\njournal =\n"
             "[plugin.badint]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "limit = lots\n"
             "[plugin.badk]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "limit = 12kb\n"
             "[plugin.badbool]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "verbose = maybe\n"
             "[plugin.baddouble]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "ratio = fast\n",
             pd, pd, pd, dir, pd, dir, pd, dir, pd, dir);
    write_file(ini, text);
    const char *args[] = {"-t", "-c", ini, NULL};
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    static const char *reasons[] = {
        "init failed: missing required key 'journal' in [plugin.needs]",
        /* (present but empty: "missing" or "empty" both say it) */
        "required key 'journal' in [plugin.empty]",
        "init failed: bad value 'lots' for 'limit' in [plugin.badint] "
        "(expected an integer",
        "bad value '12kb' for 'limit' in [plugin.badk]",
        "init failed: bad value 'maybe' for 'verbose' in [plugin.badbool] "
        "(expected true/false",
        "init failed: bad value 'fast' for 'ratio' in [plugin.baddouble] "
        "(expected a number)",
        "6 problem(s), test failed"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        ck_assert_msg(strstr(out, reasons[i]), "missing '%s' in:\n%s",
                      reasons[i], out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* ---- declared keys (1.3) ------------------------------------------------ */

/* A key that neither the host nor the plugin's init read is a typo: for a
 * 1.3 plugin an error for -t and at start, for an older one a warning (its
 * config_get reads count as declared). Before 1.3, `limt = 5` passed -t. */
START_TEST(test_declared_keys)
{
    char dir[] = "/tmp/sb-it-keys-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[4096], out[65536];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    const char *pd = SB_TEST_PLUGIN_DIR;
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n"
             "[plugin.typo]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "limt = 5\n"
             "[plugin.two]\nfile = %s/nest-example.so\ncolour = red\n"
             "size = 2\n",
             pd, dir, pd);
    write_file(ini, text);
    const char *args[] = {"-t", "-c", ini, NULL};
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    static const char *reasons[] = {
        ("line 6: unknown key 'limt' in [plugin.typo] (it reads: journal, "
         "role, deny_key, greeting, limit, absent_int, verbose, ratio"),
        "unknown keys 'colour', 'size' in [plugin.two] (it reads no keys)",
        "2 problem(s), test failed"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        ck_assert_msg(strstr(out, reasons[i]), "missing '%s' in:\n%s",
                      reasons[i], out);
    const char *serve[] = {"-c", ini, NULL};
    ck_assert_int_eq(srv_run(serve, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "unknown key 'limt' in [plugin.typo]") &&
                      strstr(out, "not starting"),
                  "%s", out);

    /* The host's own keys are never unknown. */
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n"
             "[plugin.hostkeys]\nfile = %s/test-sdk11.so\njournal = %s/j\n"
             "enabled = yes\noptional = no\ngateways = default\n"
             "watch = off\nlimit = 5\n",
             pd, dir);
    write_file(ini, text);
    ck_assert_msg(srv_run(args, out, sizeof(out)) == 0, "%s", out);

    /* A 1.2 plugin: its config_get read of greeting counts, `stray` is a
     * warning and it loads. */
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n"
             "[plugin.old]\nfile = %s/test-abi12.so\ngreeting = hi\n"
             "stray = 1\n",
             pd);
    write_file(ini, text);
    ck_assert_msg(srv_run(args, out, sizeof(out)) == 0, "%s", out);
    ck_assert_msg(strstr(out, "unknown key 'stray' in [plugin.old] (it "
                              "reads: greeting, limit) (built for ABI 1.2, "
                              "so only a warning"),
                  "%s", out);
    ck_assert_msg(!strstr(out, "'greeting'"), "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* ---- ABI 1.2 ------------------------------------------------------------ */

/* A plugin built against the frozen 1.2 header loads and answers under a
 * 1.3 host, which it sees as such. */
START_TEST(test_abi12_plugin)
{
    srv_start(&srv, NULL,
              "[plugin.old]\nfile = %P/test-abi12.so\ngreeting = hey\n"
              "limit = 2k\n");
    ck_assert_msg(
        strstr(srv_logtext(&srv), "loaded plugin 'old' (abi12 1.2.0, ABI 1.2"),
        "%s", srv_logtail(&srv));
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"abi12.host\",\"id\":1}");
    char want[256];
    snprintf(want, sizeof(want),
             "{\"event\":\"abi12.host\",\"data\":{\"major\":1,\"minor\":%d,"
             "\"size_ok\":true,\"greeting\":\"hey\",\"limit\":2048,"
             "\"generation\":1},\"id\":1}",
             SB_ABI_MINOR);
    cli_expect(a, want);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* ---- ABI 1.0 ------------------------------------------------------------ */

START_TEST(test_abi10_plugin)
{
    /* A journal outside the server's folder, to read after it stopped. */
    char journal[] = "/tmp/sb-it-abi10-XXXXXX";
    int fd = mkstemp(journal);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[plugin.old]\nfile = %%P/test-abi10.so\njournal = %s\n"
             "greeting = hi\n%s",
             journal, SDK);
    srv_start(&srv, NULL, sections);
    ck_assert_msg(
        strstr(srv_logtext(&srv), "loaded plugin 'old' (abi10 1.0.0, ABI 1.0"),
        "%s", srv_logtext(&srv));
    ws_client *a = cli_connect(&srv);
    /* The host is newer (1.1 or later), its table a superset. */
    cli_send(a, "{\"event\":\"abi10.host\"}");
    json_t *h = recv_event(a, "abi10.host");
    ck_assert_int_eq(json_integer_value(json_object_get(h, "major")), 1);
    ck_assert_int_ge(json_integer_value(json_object_get(h, "minor")), 1);
    ck_assert(json_is_true(json_object_get(h, "size_ok")));
    ck_assert(json_is_true(json_object_get(h, "version")));
    ck_assert_str_eq(json_string_value(json_object_get(h, "plugin")), "old");
    ck_assert_str_eq(json_string_value(json_object_get(h, "greeting")), "hi");
    json_decref(h);
    cli_send(a, "{\"event\":\"abi10.echo\",\"data\":{\"a\":[1,2]},\"id\":3}");
    cli_expect(a, "{\"event\":\"abi10.echo\",\"data\":{\"a\":[1,2]},\"id\":3}");
    cli_send(a, "{\"event\":\"abi10.raw\",\"data\":{\"b\" : 2}}");
    cli_expect(a, "{\"event\":\"abi10.raw\",\"data\":{\"b\" : 2}}");
    cli_send(a, "{\"event\":\"abi10.value\",\"data\":[true]}");
    cli_expect(a, "[true]");
    cli_send(a, "{\"event\":\"abi10.data\",\"data\":\"as is\"}");
    cli_expect(a, "\"as is\"");
    cli_send(a, "{\"event\":\"abi10.fail\",\"data\":0}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"abi10 says no (not found)\",\"cause\":{"
                  "\"pattern\":\"abi10.fail\",\"data\":0}}}");
    cli_send(a, "{\"event\":\"abi10.client\",\"id\":\"x\"}");
    cli_expect(a, "{\"event\":\"abi10.client\",\"data\":{\"client\":1,"
                  "\"event\":\"abi10.client\",\"has_id\":true},\"id\":\"x\"}");
    /* A 1.1 guard covers the 1.0 plugin's events too. */
    cli_send(a, "{\"event\":\"abi10.echo\",\"data\":{\"forbidden\":true}}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"sdk denies 'abi10.echo'\",\"cause\":{"
                  "\"pattern\":\"abi10.echo\",\"data\":{\"forbidden\":"
                  "true}}}}");
    ws_send_close(a, 4002, NULL);
    expect_closed(a, 4002, NULL);
    srv_stop(&srv);

    FILE *f = fopen(journal, "r");
    ck_assert_ptr_nonnull(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(journal);
    ck_assert_str_eq(text, "abi10 ready\nabi10 connect 1\n"
                           "abi10 disconnect 1 4002\nabi10 unload\n");
}
END_TEST

/* ---- the worked example of docs/sdk.md ---------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    return strdup(text);
}

/* The guide quotes the example whole, so what it shows is what is built. */
START_TEST(test_docs_quote_presence_example)
{
    char *doc = slurp(SB_TEST_SOURCE_DIR "/docs/sdk.md");
    char *src = slurp(SB_TEST_SOURCE_DIR "/tests/plugins/presence_example.c");
    ck_assert_msg(strstr(doc, src) != NULL,
                  "docs/sdk.md does not quote tests/plugins/"
                  "presence_example.c verbatim");
    free(doc);
    free(src);
}
END_TEST

START_TEST(test_presence_example)
{
    srv_start(&srv, NULL,
              "[plugin.presence]\nfile = %P/presence-example.so\n"
              "away_ms = 1000\n" SDK);
    ws_client *ada = cli_connect(&srv);
    ws_client *bob = cli_connect(&srv);
    cli_send(ada, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\","
                  "\"name\":\"ada\"}}");
    cli_expect(ada, "{\"event\":\"joined\",\"data\":{\"room\":\"lobby\","
                    "\"members\":1}}");
    cli_send(bob, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\","
                  "\"name\":\"bob\"}}");
    cli_expect(bob, "{\"event\":\"joined\",\"data\":{\"room\":\"lobby\","
                    "\"members\":2}}");
    cli_expect(ada, "{\"event\":\"presence\",\"data\":{\"room\":\"lobby\","
                    "\"name\":\"bob\",\"status\":\"online\"}}");
    cli_send(bob, "{\"event\":\"join\",\"data\":{\"room\":\"x\","
                  "\"name\":\"bob\"}}");
    cli_expect(bob, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                    "\"message\":\"already in a room\",\"cause\":{"
                    "\"pattern\":\"join\",\"data\":{\"room\":\"x\",\"name\":"
                    "\"bob\"}}}}");
    /* Silence: the timers fire, ada's first (she joined first). */
    const char *ada_away = "{\"event\":\"presence\",\"data\":{\"room\":"
                           "\"lobby\",\"name\":\"ada\",\"status\":\"away\"}}";
    const char *bob_away = "{\"event\":\"presence\",\"data\":{\"room\":"
                           "\"lobby\",\"name\":\"bob\",\"status\":\"away\"}}";
    cli_expect(ada, ada_away);
    cli_expect(ada, bob_away);
    cli_expect(bob, ada_away);
    cli_expect(bob, bob_away);
    /* Any event counts as a sign of life, even one another plugin
     * handles: the presence guard sees it first. */
    cli_send(ada, "{\"event\":\"echo\",\"data\":1}");
    cli_expect(ada, "{\"event\":\"echo\",\"data\":1}");
    cli_expect(bob, "{\"event\":\"presence\",\"data\":{\"room\":\"lobby\","
                    "\"name\":\"ada\",\"status\":\"online\"}}");
    cli_send(ada, "{\"event\":\"who\"}");
    cli_expect(ada, "{\"event\":\"who\",\"data\":{\"room\":\"lobby\","
                    "\"members\":2}}");
    /* Bob drops: the room hears it, and the room shrinks. */
    ws_close(bob);
    cli_expect(ada, "{\"event\":\"presence\",\"data\":{\"room\":\"lobby\","
                    "\"name\":\"bob\",\"status\":\"offline\"}}");
    cli_send(ada, "{\"event\":\"who\"}");
    cli_expect(ada, "{\"event\":\"who\",\"data\":{\"room\":\"lobby\","
                    "\"members\":1}}");
    ws_close(ada);
    srv_stop(&srv);

    /* A bad away_ms fails init with the getter's message. */
    char dir[] = "/tmp/sb-it-presence-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[1024], out[16384];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.p1]\nfile = "
             "%s/presence-example.so\naway_ms = soon\n[plugin.p2]\nfile = "
             "%s/presence-example.so\naway_ms = 0\n",
             SB_TEST_PLUGIN_DIR, SB_TEST_PLUGIN_DIR);
    write_file(ini, text);
    const char *args[] = {"-t", "-c", ini, NULL};
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "bad value 'soon' for 'away_ms' in "
                              "[plugin.p1]"),
                  "%s", out);
    ck_assert_msg(strstr(out, "bad value '0' for 'away_ms' in [plugin.p2] "
                              "(expected an integer from 1 to "
                              "9223372036854775807)"),
                  "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* ---- the edges of a life: calls the header allows where it is risky ---- */

/* The disconnect hook's id "is already stale for sending": send() to it
 * must fail. For a dropped client (no close frame, 1006) it is queued
 * instead, and the client, already freed by lws, is left on the server's
 * dirty list. */
START_TEST(test_send_in_disconnect_hook)
{
    srv_start(&srv, NULL, SDK "send_in_disconnect = true\n");
    ws_client *a = cli_connect(&srv);
    whoami(a);
    ws_close(a); /* dropped: 1006 */
    ck_assert(srv_journal_wait(&srv, "sdk bye 1 rc=", SB_TIMEOUT));
    ws_client *b = cli_connect(&srv);
    whoami(b);
    ws_send_close(b, 1000, NULL); /* closed politely */
    expect_closed(b, 1000, NULL);
    ck_assert(srv_journal_wait(&srv, "sdk bye 2 rc=", SB_TIMEOUT));
    /* The server still serves. */
    ws_client *c = cli_connect(&srv);
    whoami(c);
    ws_close(c);
    ck_assert(srv_journal_wait(&srv, "sdk bye 3 rc=", SB_TIMEOUT));
    const char *j = srv_journal(&srv);
    ck_assert_msg(strstr(j, "sdk bye 1 rc=0\n") == NULL &&
                      strstr(j, "sdk bye 3 rc=0\n") == NULL,
                  "send() to a dropped client from its disconnect hook "
                  "succeeded:\n%s",
                  j);
    srv_stop(&srv);
}
END_TEST

/* post() is "the one call that is safe from any thread", and a plugin's
 * unload hook is where it stops its threads, which may post on their way
 * out. A post made then must be refused or run before the plugin's code is
 * unmapped; it must never run after dlclose(). */
START_TEST(test_post_in_unload_hook)
{
    char journal[] = "/tmp/sb-it-unload-XXXXXX";
    int fd = mkstemp(journal);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char sections[512];
    snprintf(sections, sizeof(sections),
             "[plugin.sdk]\nfile = %%P/test-sdk11.so\njournal = %s\n"
             "post_in_unload = true\n",
             journal);
    srv_start(&srv, NULL, sections);
    srv_stop(&srv); /* asserts exit status 0 */
    FILE *f = fopen(journal, "r");
    ck_assert_ptr_nonnull(f);
    char text[1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(journal);
    ck_assert_msg(strstr(text, "sdk unload post rc=-2\n"), "%s", text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sdk11");
    TCase *tc = tcase_create("sdk11");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_client_info_and_identity);
    tcase_add_test(tc, test_remote_address);
    tcase_add_test(tc, test_client_close);
    tcase_add_test(tc, test_client_state);
    tcase_add_test(tc, test_client_data_destructor);
    tcase_add_test(tc, test_send_to_id);
    tcase_add_test(tc, test_broadcast);
    tcase_add_test(tc, test_event_guards);
    tcase_add_test(tc, test_post_from_thread);
    tcase_add_test(tc, test_timers);
    tcase_add_test(tc, test_typed_config);
    tcase_add_test(tc, test_typed_config_refusals);
    tcase_add_test(tc, test_abi10_plugin);
    tcase_add_test(tc, test_declared_keys);
    tcase_add_test(tc, test_abi12_plugin);
    tcase_add_test(tc, test_docs_quote_presence_example);
    tcase_add_test(tc, test_presence_example);
    suite_add_tcase(s, tc);
    /* Host bugs found while writing the above: each test states the
     * contract and fails until core/ honours it. */
    TCase *bugs = tcase_create("fixed-host-bugs");
    tcase_set_timeout(bugs, 120);
    tcase_add_test(bugs, test_raw_query);
    tcase_add_test(bugs, test_client_info_custom_header);
    tcase_add_test(bugs, test_client_info_not_utf8);
    tcase_add_test(bugs, test_client_close_reserved_codes);
    tcase_add_test(bugs, test_client_close_long_reason);
    tcase_add_test(bugs, test_send_in_disconnect_hook);
    tcase_add_test(bugs, test_post_in_unload_hook);
    suite_add_tcase(s, bugs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

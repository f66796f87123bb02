/*
 * The chat plugin over the wire: `said` reaches every member of a room and
 * nobody else, `rooms` lists the sender's rooms, `leave` and a disconnect
 * both take a member out, every refusal is an `exception` with its reason,
 * acknowledgements echo the request id, the length limits come from the
 * plugin's config section (a bad one fails `switchboard -t`), and rooms
 * outlive a hot reload of the plugin.
 *
 * Client ids start at 1 and follow the order of connection, so a test that
 * connects a, b, c in turn knows them as 1, 2, 3.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "harness.h"

#define CHAT "[plugin.chat]\nfile = %P/chat.so\n"

static sb_srv srv;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends {"event":event,"data":data} (no data key when data is NULL). */
static void send_event(ws_client *c, const char *event, const char *data)
{
    char msg[16384];
    if (data)
        snprintf(msg, sizeof(msg), "{\"event\":\"%s\",\"data\":%s}", event,
                 data);
    else
        snprintf(msg, sizeof(msg), "{\"event\":\"%s\"}", event);
    cli_send(c, msg);
}

/* Sends event with data and expects the exception carrying message. */
static void expect_fail(ws_client *c, const char *event, const char *data,
                        const char *message)
{
    send_event(c, event, data);
    char want[16384];
    if (data)
        snprintf(want, sizeof(want),
                 "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                 "\"message\":\"%s\",\"cause\":{\"pattern\":\"%s\",\"data\":"
                 "%s}}}",
                 message, event, data);
    else
        snprintf(want, sizeof(want),
                 "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                 "\"message\":\"%s\",\"cause\":{\"pattern\":\"%s\"}}}",
                 message, event);
    cli_expect(c, want);
}

/* Joins room and expects the acknowledgement with `members` members. */
static void join(ws_client *c, const char *room, int members)
{
    char msg[512], want[512];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"join\",\"data\":{\"room\":\"%s\"}}", room);
    cli_send(c, msg);
    snprintf(want, sizeof(want),
             "{\"event\":\"joined\",\"data\":{\"room\":\"%s\",\"members\":%d}}",
             room, members);
    cli_expect(c, want);
}

static void say(ws_client *c, const char *room, const char *text)
{
    char msg[512];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"say\",\"data\":{\"room\":\"%s\",\"text\":\"%s\"}}",
             room, text);
    cli_send(c, msg);
}

static void expect_said(ws_client *c, const char *room, int from,
                        const char *text)
{
    char want[512];
    snprintf(want, sizeof(want),
             "{\"event\":\"said\",\"data\":{\"room\":\"%s\",\"from\":%d,"
             "\"text\":\"%s\"}}",
             room, from, text);
    cli_expect(c, want);
}

/* The member count of `room` as `probe` (not a member) sees it: it joins,
 * reads the count, and leaves again. */
static int members_besides(ws_client *probe, const char *room)
{
    char msg[512];
    snprintf(msg, sizeof(msg),
             "{\"event\":\"join\",\"data\":{\"room\":\"%s\"}}", room);
    cli_send(probe, msg);
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(probe, SB_TIMEOUT, &f), 1);
    json_t *v = json_loads((char *)f.data, 0, NULL);
    json_int_t n = -1;
    ck_assert_msg(json_unpack(v, "{s:s, s:{s:I}}", "event", &(const char *){0},
                              "data", "members", &n) == 0,
                  "not a joined reply: %s", (char *)f.data);
    json_decref(v);
    ws_frame_free(&f);
    snprintf(msg, sizeof(msg),
             "{\"event\":\"leave\",\"data\":{\"room\":\"%s\"}}", room);
    cli_send(probe, msg);
    char want[512];
    snprintf(want, sizeof(want),
             "{\"event\":\"left\",\"data\":{\"room\":\"%s\"}}", room);
    cli_expect(probe, want);
    return (int)n - 1;
}

/* Waits until `room` has `want` members besides `probe`: a disconnect is
 * seen by the server a little after the client's socket closes. */
static void wait_members(ws_client *probe, const char *room, int want)
{
    int n = -1;
    for (int waited = 0; waited < SB_TIMEOUT; waited += 20) {
        if ((n = members_besides(probe, room)) == want)
            return;
        sleep_ms(20);
    }
    ck_abort_msg("room %s still has %d members, want %d", room, n, want);
}

START_TEST(test_say_reaches_members_only)
{
    srv_start(&srv, NULL, CHAT);
    ws_client *a = cli_connect(&srv); /* 1 */
    ws_client *b = cli_connect(&srv); /* 2 */
    ws_client *c = cli_connect(&srv); /* 3 */
    join(a, "lobby", 1);
    join(b, "lobby", 2);
    say(a, "lobby", "hi");
    expect_said(a, "lobby", 1, "hi");
    expect_said(b, "lobby", 1, "hi");
    say(b, "lobby", "hello");
    expect_said(a, "lobby", 2, "hello");
    expect_said(b, "lobby", 2, "hello");
    cli_expect_nothing(c, 300);
    /* Another room is another audience. */
    join(c, "side", 1);
    say(c, "side", "alone");
    expect_said(c, "side", 3, "alone");
    cli_expect_nothing(a, 200);
    cli_expect_nothing(b, 0);
    /* Text goes through as the JSON string it is: escapes, non-ASCII. */
    cli_send(a, "{\"event\":\"say\",\"data\":{\"room\":\"lobby\",\"text\":"
                "\"caf\\u00e9 \\\"ok\\\"\\n\",\"extra\":true}}");
    ws_client *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        ws_frame f;
        ck_assert_int_eq(ws_recv_message(both[i], SB_TIMEOUT, &f), 1);
        json_t *v = json_loads((char *)f.data, 0, NULL);
        ck_assert_msg(v != NULL, "not JSON: %s", (char *)f.data);
        json_t *want = json_pack("{s:s, s:{s:s, s:i, s:s}}", "event", "said",
                                 "data", "room", "lobby", "from", 1, "text",
                                 "caf\xc3\xa9 \"ok\"\n");
        ck_assert_msg(json_equal(v, want), "got %s", (char *)f.data);
        json_decref(want);
        json_decref(v);
        ws_frame_free(&f);
    }
    ws_close(a);
    ws_close(b);
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_acks_echo_id)
{
    srv_start(&srv, NULL, CHAT);
    ws_client *a = cli_connect(&srv);
    cli_send(a, "{\"event\":\"join\",\"data\":{\"room\":\"lobby\"},\"id\":7}");
    cli_expect(a, "{\"event\":\"joined\",\"data\":{\"room\":\"lobby\","
                  "\"members\":1},\"id\":7}");
    cli_send(a, "{\"event\":\"rooms\",\"id\":\"r-1\"}");
    cli_expect(a, "{\"event\":\"rooms\",\"data\":[\"lobby\"],\"id\":\"r-1\"}");
    cli_send(
        a,
        "{\"id\":\"bye\",\"event\":\"leave\",\"data\":{\"room\":\"lobby\"}}");
    cli_expect(a, "{\"event\":\"left\",\"data\":{\"room\":\"lobby\"},\"id\":"
                  "\"bye\"}");
    /* A refusal carries the id too. */
    cli_send(a, "{\"event\":\"leave\",\"data\":{\"room\":\"lobby\"},\"id\":8}");
    cli_expect(a, "{\"event\":\"exception\",\"data\":{\"status\":\"error\","
                  "\"message\":\"not a member of room lobby\",\"cause\":{"
                  "\"pattern\":\"leave\",\"data\":{\"room\":\"lobby\"}}},"
                  "\"id\":8}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_rooms_list)
{
    /* The clock beside it: its subscribers are a room too, which chat must
     * neither list nor reach. */
    srv_start(&srv, NULL,
              CHAT "[plugin.clock]\nfile = %P/clock.so\ninterval_ms = 50\n");
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    send_event(a, "rooms", NULL);
    cli_expect(a, "{\"event\":\"rooms\",\"data\":[]}");
    join(a, "zebra", 1);
    join(a, "apple", 1);
    join(a, "mango", 1);
    join(a, "apple", 1); /* twice: still one membership */
    send_event(a, "rooms", NULL);
    cli_expect(
        a, "{\"event\":\"rooms\",\"data\":[\"apple\",\"mango\",\"zebra\"]}");
    /* Each client sees its own. */
    join(b, "mango", 2);
    send_event(b, "rooms", NULL);
    cli_expect(b, "{\"event\":\"rooms\",\"data\":[\"mango\"]}");

    /* b subscribes to the clock: its rooms do not change, and a cannot get
     * into the clock's room by its host name. */
    send_event(b, "subscribe", NULL);
    cli_expect(b, "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":50}}");
    send_event(b, "rooms", NULL);
    cli_expect(b, "{\"event\":\"rooms\",\"data\":[\"mango\"]}");
    send_event(b, "unsubscribe", NULL);
    /* Ticks may have come before the answer. */
    for (;;) {
        ws_frame f;
        ck_assert_int_eq(ws_recv_message(b, SB_TIMEOUT, &f), 1);
        int tick = strncmp((char *)f.data, "{\"event\":\"tick\"", 15) == 0;
        if (!tick)
            ck_assert_str_eq((char *)f.data, "{\"event\":\"unsubscribed\"}");
        ws_frame_free(&f);
        if (!tick)
            break;
    }
    send_event(b, "subscribe", NULL);
    cli_expect(b, "{\"event\":\"subscribed\",\"data\":{\"interval_ms\":50}}");
    join(a, "clock:ticks", 1);
    say(a, "clock:ticks", "spam");
    expect_said(a, "clock:ticks", 1, "spam");
    for (int i = 0; i < 5; i++) {
        ws_frame f;
        ck_assert_int_eq(ws_recv_message(b, SB_TIMEOUT, &f), 1);
        ck_assert_msg(strncmp((char *)f.data, "{\"event\":\"tick\"", 15) == 0,
                      "b got %s", (char *)f.data);
        ws_frame_free(&f);
    }
    cli_expect_nothing(a, 0);
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_leave)
{
    srv_start(&srv, NULL, CHAT);
    ws_client *a = cli_connect(&srv); /* 1 */
    ws_client *b = cli_connect(&srv); /* 2 */
    join(a, "lobby", 1);
    join(b, "lobby", 2);
    join(a, "other", 1);
    send_event(a, "leave", "{\"room\":\"lobby\"}");
    cli_expect(a, "{\"event\":\"left\",\"data\":{\"room\":\"lobby\"}}");
    send_event(a, "rooms", NULL);
    cli_expect(a, "{\"event\":\"rooms\",\"data\":[\"other\"]}");
    /* What is said in lobby now reaches b only... */
    say(b, "lobby", "still here?");
    expect_said(b, "lobby", 2, "still here?");
    cli_expect_nothing(a, 300);
    /* ...a may not talk into it, nor leave it twice. */
    expect_fail(a, "say", "{\"room\":\"lobby\",\"text\":\"x\"}",
                "not a member of room lobby");
    expect_fail(a, "leave", "{\"room\":\"lobby\"}",
                "not a member of room lobby");
    /* The count went down: a joining again makes 2, not 3. */
    join(a, "lobby", 2);
    /* When the last member leaves, the room is gone; joining starts it. */
    send_event(a, "leave", "{\"room\":\"other\"}");
    cli_expect(a, "{\"event\":\"left\",\"data\":{\"room\":\"other\"}}");
    join(b, "other", 1);
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_disconnect_leaves_rooms)
{
    srv_start(&srv, NULL, CHAT);
    ws_client *a = cli_connect(&srv);     /* 1 */
    ws_client *b = cli_connect(&srv);     /* 2 */
    ws_client *c = cli_connect(&srv);     /* 3 */
    ws_client *probe = cli_connect(&srv); /* 4 */
    join(a, "lobby", 1);
    join(b, "lobby", 2);
    join(c, "lobby", 3);
    join(a, "elsewhere", 1);
    /* a drops its connection without a close frame. */
    ws_close(a);
    wait_members(probe, "lobby", 2);
    ck_assert_int_eq(members_besides(probe, "elsewhere"), 0);
    say(b, "lobby", "who is left?");
    expect_said(b, "lobby", 2, "who is left?");
    expect_said(c, "lobby", 2, "who is left?");
    /* c says goodbye properly: close frame, close answer. */
    int code = 0;
    ck_assert_int_eq(ws_send_close(c, 1000, "bye"), 0);
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(c);
    wait_members(probe, "lobby", 1);
    say(b, "lobby", "alone");
    expect_said(b, "lobby", 2, "alone");
    cli_expect_nothing(probe, 200);
    /* Membership was the client's, not its id's: a new client starts with
     * no rooms. */
    ws_client *d = cli_connect(&srv); /* 5 */
    send_event(d, "rooms", NULL);
    cli_expect(d, "{\"event\":\"rooms\",\"data\":[]}");
    ws_close(b);
    ws_close(d);
    ws_close(probe);
    srv_stop(&srv);
}
END_TEST

/* A string of n times ch, as a JSON string literal. */
static const char *quoted(char ch, size_t n)
{
    static char s[8192];
    ck_assert_uint_lt(n + 3, sizeof(s));
    s[0] = '"';
    memset(s + 1, ch, n);
    s[n + 1] = '"';
    s[n + 2] = 0;
    return s;
}

START_TEST(test_validation)
{
    srv_start(&srv, NULL, CHAT);
    ws_client *a = cli_connect(&srv);
    char data[8300];
    static const char *events[] = {"join", "leave", "say"};
    for (int i = 0; i < 3; i++) {
        const char *e = events[i];
        expect_fail(a, e, NULL, "data must be an object");
        expect_fail(a, e, "null", "data must be an object");
        expect_fail(a, e, "\"lobby\"", "data must be an object");
        expect_fail(a, e, "[\"lobby\"]", "data must be an object");
        expect_fail(a, e, "{}", "room must be a string");
        expect_fail(a, e, "{\"room\":5}", "room must be a string");
        expect_fail(a, e, "{\"room\":null}", "room must be a string");
        expect_fail(a, e, "{\"room\":[\"x\"]}", "room must be a string");
        expect_fail(a, e, "{\"room\":\"\"}", "room must not be empty");
        snprintf(data, sizeof(data), "{\"room\":%s}", quoted('r', 65));
        expect_fail(a, e, data, "room is longer than 64 bytes");
        /* Bytes, not characters: 33 two-byte characters are 66 bytes. */
        snprintf(data, sizeof(data), "{\"room\":\"%s\"}",
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
        expect_fail(a, e, data, "room is longer than 64 bytes");
        expect_fail(a, e, "{\"room\":\"a\\u0000b\"}",
                    "room must not contain NUL characters");
    }
    /* 64 bytes is fine. */
    char room64[65];
    memset(room64, 'r', 64);
    room64[64] = 0;
    join(a, room64, 1);

    join(a, "lobby", 1);
    expect_fail(a, "say", "{\"room\":\"lobby\"}", "text must be a string");
    expect_fail(a, "say", "{\"room\":\"lobby\",\"text\":5}",
                "text must be a string");
    expect_fail(a, "say", "{\"room\":\"lobby\",\"text\":null}",
                "text must be a string");
    snprintf(data, sizeof(data), "{\"room\":\"lobby\",\"text\":%s}",
             quoted('t', 4097));
    expect_fail(a, "say", data, "text is longer than 4096 bytes");
    /* 4096 bytes and the empty text are fine. */
    snprintf(data, sizeof(data), "{\"room\":\"lobby\",\"text\":%s}",
             quoted('t', 4096));
    send_event(a, "say", data);
    char want[8300];
    snprintf(want, sizeof(want),
             "{\"event\":\"said\",\"data\":{\"room\":\"lobby\",\"from\":1,"
             "\"text\":%s}}",
             quoted('t', 4096));
    cli_expect(a, want);
    say(a, "lobby", "");
    expect_said(a, "lobby", 1, "");
    /* Not a member. */
    expect_fail(a, "say", "{\"room\":\"nowhere\",\"text\":\"x\"}",
                "not a member of room nowhere");
    expect_fail(a, "leave", "{\"room\":\"nowhere\"}",
                "not a member of room nowhere");
    /* Room names are case-sensitive. */
    expect_fail(a, "say", "{\"room\":\"Lobby\",\"text\":\"x\"}",
                "not a member of room Lobby");
    /* Nothing else came, and the connection still serves. */
    cli_expect_nothing(a, 200);
    send_event(a, "rooms", NULL);
    snprintf(want, sizeof(want),
             "{\"event\":\"rooms\",\"data\":[\"lobby\",\"%s\"]}", room64);
    cli_expect(a, want);
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_config_limits)
{
    srv_start(&srv, NULL,
              "[plugin.talk]\nfile = %P/chat.so\nmax_room_length = 4\n"
              "max_text_length = 1k\n");
    ws_client *a = cli_connect(&srv);
    expect_fail(a, "join", "{\"room\":\"abcde\"}",
                "room is longer than 4 bytes");
    join(a, "abcd", 1);
    /* As big as quoted()'s buffer, so no compiler sees a cut. */
    char data[8192 + 64];
    snprintf(data, sizeof(data), "{\"room\":\"abcd\",\"text\":%s}",
             quoted('t', 1025));
    expect_fail(a, "say", data, "text is longer than 1024 bytes");
    say(a, "abcd", "ok");
    expect_said(a, "abcd", 1, "ok");
    /* The instance is called `talk`: its rooms are still listed bare. */
    send_event(a, "rooms", NULL);
    cli_expect(a, "{\"event\":\"rooms\",\"data\":[\"abcd\"]}");
    ws_close(a);
    srv_stop(&srv);
}
END_TEST

/* Runs `switchboard -t` on a config with the chat section `section` and
 * checks that it fails, naming `reason`. */
static void check_bad_config(const char *keys, const char *reason)
{
    char dir[] = "/tmp/sb-it-chat-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300], text[1024];
    snprintf(path, sizeof(path), "%s/bad.ini", dir);
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.chat]\nfile = %s/chat.so\n%s",
             SB_TEST_PLUGIN_DIR, keys);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    char out[65536];
    const char *args[] = {"-t", "-c", path, NULL};
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, reason), "missing '%s' in:\n%s", reason, out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}

START_TEST(test_bad_config)
{
    check_bad_config("max_room_length = 0\n",
                     "bad value '0' for 'max_room_length' in [plugin.chat] "
                     "(expected an integer from 1 to 9223372036854775807)");
    check_bad_config("max_text_length = -1\n",
                     "bad value '-1' for 'max_text_length' in [plugin.chat]");
    /* A typo is an unknown key: the plugin declared what it reads. */
    check_bad_config("max_room_lenght = 5\n",
                     "unknown key 'max_room_lenght' in [plugin.chat] (it "
                     "reads: max_room_length, max_text_length)");
    /* Not a number: the host's getter says so, naming the key. */
    check_bad_config("max_room_length = many\n", "max_room_length");
}
END_TEST

/* A hot reload replaces the instance; the rooms are the host's and stay,
 * and the new section's limits apply at once. */
START_TEST(test_reload_keeps_rooms)
{
    srv_start(&srv, NULL, CHAT "max_text_length = 100\n");
    ws_client *a = cli_connect(&srv); /* 1 */
    ws_client *b = cli_connect(&srv); /* 2 */
    join(a, "lobby", 1);
    join(b, "lobby", 2);

    srv_ini_replace(&srv, "max_text_length = 100\n", "max_text_length = 005\n");
    ck_assert_int_eq(kill(srv.pid, SIGHUP), 0);
    ck_assert_msg(srv_log_wait(&srv, "now at generation 2", 1, SB_TIMEOUT),
                  "no reload:\n%s", srv_logtail(&srv));

    send_event(b, "rooms", NULL);
    cli_expect(b, "{\"event\":\"rooms\",\"data\":[\"lobby\"]}");
    say(a, "lobby", "12345");
    expect_said(a, "lobby", 1, "12345");
    expect_said(b, "lobby", 1, "12345");
    expect_fail(a, "say", "{\"room\":\"lobby\",\"text\":\"123456\"}",
                "text is longer than 5 bytes");
    join(a, "lobby", 2);
    ws_close(a);
    ws_close(b);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("chat");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_say_reaches_members_only);
    tcase_add_test(tc, test_acks_echo_id);
    tcase_add_test(tc, test_rooms_list);
    tcase_add_test(tc, test_leave);
    tcase_add_test(tc, test_disconnect_leaves_rooms);
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_config_limits);
    tcase_add_test(tc, test_bad_config);
    tcase_add_test(tc, test_reload_keeps_rooms);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

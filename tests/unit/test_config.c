/*
 * test_config — the INI reader: defaults, every [server] key good and bad,
 * plugin sections, and the exact "FILE:LINE: message" of each problem, since
 * operators act on those lines. Most files are written by the test into a
 * fresh folder so that the line numbers sit next to the assertions; the two
 * fixtures in data/ are whole files to read as an operator would.
 */
#include "config.h"
#include "log.h"

#include <switchboard/plugin.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[512]; /* short enough for every path below */
static char written[16][PATH_MAX];
static int nwritten;

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/sb-config-XXXXXX",
             base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    nwritten = 0;
}

static void teardown(void)
{
    for (int i = 0; i < nwritten; i++)
        unlink(written[i]);
    rmdir(tmpdir);
}

/* Writes `text` to NAME in the test's folder and returns its path. */
static const char *write_file(const char *name, const char *text)
{
    ck_assert_int_lt(nwritten, 16);
    char *path = written[nwritten++];
    snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    ck_assert_int_eq(fclose(fp), 0);
    return path;
}

static const char *write_ini(const char *text)
{
    return write_file("test.ini", text);
}

/* All the problems, one a line, for failure messages. */
static const char *all_errors(const sb_config *cfg)
{
    static char out[8192];
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cfg->nerrors && len < sizeof(out) - 1; i++)
        len += (size_t)snprintf(out + len, sizeof(out) - len, "\n  %s",
                                cfg->errors[i]);
    return out;
}

static bool has_error(const sb_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool has_error(const sb_config *cfg, const char *fmt, ...)
{
    char want[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < cfg->nerrors; i++)
        if (strcmp(cfg->errors[i], want) == 0)
            return true;
    return false;
}

#define ASSERT_ERROR(cfg, ...)                                                 \
    ck_assert_msg(has_error(cfg, __VA_ARGS__), "missing error; got:%s",        \
                  all_errors(cfg))

#define ASSERT_NERRORS(cfg, rc, n)                                             \
    do {                                                                       \
        ck_assert_msg((cfg)->nerrors == (size_t)(n),                           \
                      "expected %d errors, got %zu:%s", (int)(n),              \
                      (cfg)->nerrors, all_errors(cfg));                        \
        ck_assert_int_eq(rc, (int)(n));                                        \
    } while (0)

/* Loads `text` and asserts it holds exactly one problem, `msg` at `line`. */
static void assert_one_error(const char *text, int line, const char *msg)
{
    sb_config cfg;
    const char *path = write_ini(text);
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 1);
    ASSERT_ERROR(&cfg, "%s:%d: %s", path, line, msg);
    sb_config_free(&cfg);
}

static const sb_plugin_conf *find_plugin(const sb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (strcmp(cfg->plugins[i].name, name) == 0)
            return &cfg->plugins[i];
    return NULL;
}

/* ---- defaults and the file itself --------------------------------------- */

/* One parser for every size and count: the server's keys unsigned, the
 * plugins' config_int signed. */
START_TEST(test_parse_scaled)
{
    unsigned long long v;
    bool neg;
    ck_assert(sb_config_parse_scaled("65536", false, NULL, &v) && v == 65536);
    ck_assert(sb_config_parse_scaled("1k", false, NULL, &v) && v == 1024);
    ck_assert(sb_config_parse_scaled("2M", false, NULL, &v) && v == 2u << 20);
    ck_assert(sb_config_parse_scaled("3g", false, NULL, &v) && v == 3ull << 30);
    ck_assert(sb_config_parse_scaled("18446744073709551615", false, NULL, &v) &&
              v == 18446744073709551615ull);
    ck_assert(!sb_config_parse_scaled("18446744073709551616", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled("17179869184g", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled("-1", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled("1kb", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled("", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled("k", false, NULL, &v));
    ck_assert(!sb_config_parse_scaled(" 1", false, NULL, &v));
    ck_assert(sb_config_parse_scaled("-4k", true, &neg, &v) && neg &&
              v == 4096);
    ck_assert(sb_config_parse_scaled("+4", true, &neg, &v) && !neg && v == 4);
    ck_assert(!sb_config_parse_scaled("--4", true, &neg, &v));
}
END_TEST

START_TEST(test_defaults_with_empty_file)
{
    sb_config cfg;
    const char *path = write_ini("");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);

    char *dir = realpath(tmpdir, NULL);
    ck_assert_str_eq(cfg.file, path);
    ck_assert_str_eq(cfg.dir, dir);
    free(dir);

    const sb_server_conf *s = &cfg.server;
    ck_assert_ptr_null(s->host);
    ck_assert_int_eq(s->port, 3000);
    ck_assert_str_eq(s->path, "/");
    ck_assert_uint_eq(s->max_message_size, 1024 * 1024);
    ck_assert_uint_eq(s->max_json_depth, 64);
    ck_assert_uint_eq(s->max_send_queue, 1024 * 1024);
    ck_assert_uint_eq(s->send_queue_budget, 256u * 1024 * 1024);
    ck_assert_uint_eq(s->ping_interval, 30);
    ck_assert_uint_eq(s->idle_timeout, 0);
    ck_assert_uint_eq(s->max_connections, 10000);
    ck_assert_int_eq(s->unknown_event, SB_UNKNOWN_IGNORE);
    ck_assert_int_eq(s->log_level, SB_LOG_INFO);
    ck_assert_uint_eq(s->shutdown_timeout, 5);
    ck_assert_uint_eq(cfg.nplugins, 0);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_comments_and_blank_lines_only)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini("; one\n# two\n\n   \n\t; three\n"
                                            "[server]\n; four\n"));
    ASSERT_NERRORS(&cfg, rc, 0);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_missing_config_file)
{
    sb_config cfg;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/nope.ini", tmpdir);
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 1);
    ASSERT_ERROR(&cfg, "%s: cannot open: %s", path, strerror(ENOENT));
    /* The defaults are still there for a caller that looks. */
    ck_assert_int_eq(cfg.server.port, 3000);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_config_file_is_a_folder)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, tmpdir);
    ASSERT_NERRORS(&cfg, rc, 1);
    ASSERT_ERROR(&cfg, "%s: cannot open: %s", tmpdir, strerror(EISDIR));
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_free_is_safe_on_zeroed_and_twice)
{
    sb_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sb_config_free(&cfg);
    sb_config_load(&cfg, write_ini("[server]\nport = 1\n"));
    sb_config_free(&cfg);
    sb_config_free(&cfg);
}
END_TEST

/* ---- [server] ----------------------------------------------------------- */

START_TEST(test_full_fixture)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, SB_TEST_DATA_DIR "/config_full.ini");
    ASSERT_NERRORS(&cfg, rc, 0);

    const sb_server_conf *s = &cfg.server;
    ck_assert_str_eq(s->host, "127.0.0.1");
    ck_assert_int_eq(s->port, 8080);
    ck_assert_str_eq(s->path, "/ws");
    ck_assert_uint_eq(s->max_message_size, 2 * 1024 * 1024);
    ck_assert_uint_eq(s->max_json_depth, 32);
    ck_assert_uint_eq(s->max_send_queue, 64 * 1024);
    ck_assert_uint_eq(s->ping_interval, 15);
    ck_assert_uint_eq(s->idle_timeout, 300);
    ck_assert_uint_eq(s->max_connections, 500);
    ck_assert_int_eq(s->unknown_event, SB_UNKNOWN_EXCEPTION);
    ck_assert_int_eq(s->log_level, SB_LOG_DEBUG);
    ck_assert_uint_eq(s->shutdown_timeout, 10);

    char *dir = realpath(SB_TEST_DATA_DIR, NULL);
    ck_assert_str_eq(cfg.dir, dir);
    ck_assert_uint_eq(cfg.nplugins, 2);

    const sb_plugin_conf *chat = &cfg.plugins[0];
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s/plugins/chat.so", dir);
    ck_assert_str_eq(chat->name, "chat");
    ck_assert_str_eq(chat->file, want);
    ck_assert(chat->enabled);
    ck_assert(!chat->optional);
    ck_assert_int_eq(chat->line, 18);
    ck_assert_uint_eq(chat->nkeys, 5);
    ck_assert_str_eq(chat->keys[0].key, "file");
    ck_assert_str_eq(chat->keys[0].value, "plugins/chat.so");
    ck_assert_int_eq(chat->keys[0].line, 19);
    ck_assert_str_eq(chat->keys[3].key, "room_limit");
    ck_assert_int_eq(chat->keys[3].line, 22);
    /* ';' without a space before it, and '#', belong to the value. */
    ck_assert_str_eq(sb_plugin_conf_get(chat, "greeting"),
                     "hello; world #not a comment");

    const sb_plugin_conf *echo = &cfg.plugins[1];
    ck_assert_str_eq(echo->name, "echo");
    ck_assert_str_eq(echo->file, "/usr/lib/switchboard/plugins/echo.so");
    ck_assert(!echo->enabled);
    ck_assert(echo->optional);
    ck_assert_int_eq(echo->line, 25);
    free(dir);
    sb_config_free(&cfg);
}
END_TEST

/* Good values: written on line 3, after a blank line, and read back. */
static const struct good_value {
    const char *key, *value;
    unsigned long long want; /* for numbers and enums */
    const char *want_text;   /* for host and path */
} good_values[] = {
    {"host", "0.0.0.0", 0, "0.0.0.0"},
    {"host", "::1", 0, "::1"},
    {"host", "gateway.example.com", 0, "gateway.example.com"},
    {"port", "1", 1, NULL},
    {"port", "65535", 65535, NULL},
    {"port", "0080", 80, NULL},
    {"path", "/", 0, "/"},
    {"path", "/chat/v1?x=1", 0, "/chat/v1?x=1"},
    {"max_message_size", "64", 64, NULL},
    {"max_message_size", "1k", 1024, NULL},
    {"max_message_size", "3K", 3072, NULL},
    {"max_message_size", "2m", 2097152, NULL},
    {"max_message_size", "1G", 1073741824, NULL},
    {"max_json_depth", "1", 1, NULL},
    {"max_json_depth", "10000", 10000, NULL},
    {"max_send_queue", "1", 1, NULL},
    {"max_send_queue", "8g", 8ULL << 30, NULL},
    {"max_send_queue", "100M", 100ULL << 20, NULL},
    {"ping_interval", "0", 0, NULL},
    {"ping_interval", "45s", 45, NULL},
    {"ping_interval", "86400", 86400, NULL},
    {"idle_timeout", "600", 600, NULL},
    {"idle_timeout", "0s", 0, NULL},
    {"max_connections", "0", 0, NULL},
    {"max_connections", "2147483647", 2147483647, NULL},
    {"unknown_event", "ignore", SB_UNKNOWN_IGNORE, NULL},
    {"unknown_event", "Exception", SB_UNKNOWN_EXCEPTION, NULL},
    {"log_level", "error", SB_LOG_ERROR, NULL},
    {"log_level", "WARN", SB_LOG_WARN, NULL},
    {"log_level", "info", SB_LOG_INFO, NULL},
    {"log_level", "debug", SB_LOG_DEBUG, NULL},
    {"shutdown_timeout", "0", 0, NULL},
    {"shutdown_timeout", "30s", 30, NULL},
    {"send_queue_budget", "0", 0, NULL},
    {"send_queue_budget", "64m", 64ULL << 20, NULL},
    {"send_queue_budget", "1024g", 1ULL << 40, NULL},
};

static unsigned long long server_number(const sb_server_conf *s,
                                        const char *key)
{
    if (!strcmp(key, "port"))
        return (unsigned long long)s->port;
    if (!strcmp(key, "max_message_size"))
        return s->max_message_size;
    if (!strcmp(key, "max_json_depth"))
        return s->max_json_depth;
    if (!strcmp(key, "max_send_queue"))
        return s->max_send_queue;
    if (!strcmp(key, "ping_interval"))
        return s->ping_interval;
    if (!strcmp(key, "idle_timeout"))
        return s->idle_timeout;
    if (!strcmp(key, "max_connections"))
        return s->max_connections;
    if (!strcmp(key, "unknown_event"))
        return (unsigned long long)s->unknown_event;
    if (!strcmp(key, "log_level"))
        return (unsigned long long)s->log_level;
    if (!strcmp(key, "shutdown_timeout"))
        return s->shutdown_timeout;
    if (!strcmp(key, "send_queue_budget"))
        return s->send_queue_budget;
    ck_abort_msg("no such key %s", key);
    return 0;
}

START_TEST(test_server_good_value)
{
    const struct good_value *g = &good_values[_i];
    char text[256];
    snprintf(text, sizeof(text), "[server]\n\n%s = %s\n", g->key, g->value);
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini(text));
    ASSERT_NERRORS(&cfg, rc, 0);
    if (!strcmp(g->key, "host"))
        ck_assert_str_eq(cfg.server.host, g->want_text);
    else if (!strcmp(g->key, "path"))
        ck_assert_str_eq(cfg.server.path, g->want_text);
    else
        ck_assert_msg(server_number(&cfg.server, g->key) == g->want,
                      "%s = %s read as %llu", g->key, g->value,
                      server_number(&cfg.server, g->key));
    sb_config_free(&cfg);
}
END_TEST

#define E_PORT  "an integer 1..65535"
#define E_PATH  "a URL path starting with '/', without spaces"
#define E_MSG   "a size 64..1g in bytes, with an optional k, m or g suffix"
#define E_DEPTH "an integer 1..10000"
#define E_BUDGET                                                               \
    "a size 0..1024g in bytes, with an optional k, m or g suffix; 0 = off"
#define E_QUEUE "a size of at least 1 byte, with an optional k, m or g suffix"
#define E_SECS  "whole seconds 0..86400, optionally followed by 's'"
#define E_CONNS "an integer 0..2147483647; 0 = unlimited"
#define E_EVENT "'ignore' or 'exception'"
#define E_LEVEL "'error', 'warn', 'info' or 'debug'"

/* Bad values: each is one problem naming line 4, key, value and the rule. */
static const struct bad_value {
    const char *key, *value, *expected;
} bad_values[] = {
    {"host", "", "a host name or address"},
    {"port", "abc", E_PORT},
    {"port", "0", E_PORT},
    {"port", "65536", E_PORT},
    {"port", "-1", E_PORT},
    {"port", "+80", E_PORT},
    {"port", "80x", E_PORT},
    {"port", "8 0", E_PORT},
    {"port", "0x50", E_PORT},
    {"port", "", E_PORT},
    {"port", "99999999999999999999999", E_PORT},
    {"path", "ws", E_PATH},
    {"path", "", E_PATH},
    {"path", "/a b", E_PATH},
    {"max_message_size", "63", E_MSG},
    {"max_message_size", "0", E_MSG},
    {"max_message_size", "1kb", E_MSG},
    {"max_message_size", "1x", E_MSG},
    {"max_message_size", "k", E_MSG},
    {"max_message_size", "-5", E_MSG},
    {"max_message_size", "1.5m", E_MSG},
    {"max_message_size", "2g", E_MSG},
    {"max_message_size", "1073741825", E_MSG},
    {"max_json_depth", "0", E_DEPTH},
    {"max_json_depth", "10001", E_DEPTH},
    {"max_json_depth", "deep", E_DEPTH},
    {"max_send_queue", "0", E_QUEUE},
    {"max_send_queue", "18446744073709551616", E_QUEUE},
    {"max_send_queue", "17179869184g", E_QUEUE},
    {"max_send_queue", "16 m", E_QUEUE},
    {"ping_interval", "30ms", E_SECS "; 0 = off"},
    {"ping_interval", "1.5", E_SECS "; 0 = off"},
    {"ping_interval", "86401", E_SECS "; 0 = off"},
    {"ping_interval", "s", E_SECS "; 0 = off"},
    {"idle_timeout", "-1", E_SECS "; 0 = off"},
    {"idle_timeout", "5m", E_SECS "; 0 = off"},
    {"max_connections", "2147483648", E_CONNS},
    {"max_connections", "many", E_CONNS},
    {"unknown_event", "maybe", E_EVENT},
    {"unknown_event", "", E_EVENT},
    {"log_level", "verbose", E_LEVEL},
    {"log_level", "information", E_LEVEL},
    {"shutdown_timeout", "5m", E_SECS},
    {"shutdown_timeout", "100000", E_SECS},
    {"send_queue_budget", "1025g", E_BUDGET},
    {"send_queue_budget", "lots", E_BUDGET},
};

START_TEST(test_server_bad_value)
{
    const struct bad_value *b = &bad_values[_i];
    char text[256], msg[512];
    snprintf(text, sizeof(text), "# bad\n[server]\nport = 4000\n%s = %s\n",
             b->key, b->value);
    snprintf(msg, sizeof(msg), "bad value '%s' for '%s' (expected %s)",
             b->value, b->key, b->expected);
    assert_one_error(text, 4, msg);
}
END_TEST

START_TEST(test_server_repeated_key_last_wins)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini("[server]\nport = 1\nport = 2\n"));
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_int_eq(cfg.server.port, 2);
    sb_config_free(&cfg);
}
END_TEST

/* `static`: a folder, kept as its real path (relative to the config's
 * folder, symlinks resolved), not inherited by gateways; a missing folder
 * or a file is a bad value. */
START_TEST(test_static_folder)
{
    char www[PATH_MAX], link[PATH_MAX], real_www[PATH_MAX];
    snprintf(www, sizeof(www), "%s/www", tmpdir);
    snprintf(link, sizeof(link), "%s/site", tmpdir);
    ck_assert_int_eq(mkdir(www, 0755), 0);
    ck_assert_int_eq(symlink("www", link), 0);
    ck_assert_ptr_nonnull(realpath(www, real_www));
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini("[server]\nstatic = site\n"
                                            "[gateway.b]\nport = 4000\n"
                                            "[gateway.c]\nport = 4001\n"
                                            "static = ./www/\n"));
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(cfg.server.static_dir, real_www);
    ck_assert_str_eq(cfg.gateways[0].conf.static_dir, real_www);
    ck_assert_ptr_null(cfg.gateways[1].conf.static_dir);
    ck_assert_str_eq(cfg.gateways[2].conf.static_dir, real_www);
    sb_config_free(&cfg);

    write_file("plain.txt", "x");
    rc = sb_config_load(&cfg, write_ini("[server]\nstatic = nowhere\n"
                                        "[gateway.b]\nport = 4000\n"
                                        "static = plain.txt\n"));
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(cfg.errors[0], ":2: bad value 'nowhere' for 'static'"),
                  "%s", cfg.errors[0]);
    ck_assert_msg(strstr(cfg.errors[1], ":5: bad value 'plain.txt' for "
                                        "'static'"),
                  "%s", cfg.errors[1]);
    sb_config_free(&cfg);
    unlink(link);
    rmdir(www);
}
END_TEST

START_TEST(test_server_unknown_key)
{
    assert_one_error("[server]\nport = 80\n\n; typo below\nprot = 3000\n", 5,
                     "unknown key 'prot' in [server]");
    /* Key names are case-sensitive. */
    assert_one_error("[server]\nPort = 80\n", 2,
                     "unknown key 'Port' in [server]");
}
END_TEST

START_TEST(test_server_colon_and_inline_comment)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini("[server] ; the listener\n"
                                            "port: 81 ; web\n"
                                            "path = /a;b\n"));
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_int_eq(cfg.server.port, 81);
    ck_assert_str_eq(cfg.server.path, "/a;b");
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_server_duplicate_section)
{
    sb_config cfg;
    const char *path =
        write_ini("[server]\nport = 1\n\n[server]\nport = 2\nbogus = 1\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:4: duplicate section [server] (first at line 1)",
                 path);
    /* The duplicate's keys are still checked. */
    ASSERT_ERROR(&cfg, "%s:6: unknown key 'bogus' in [server]", path);
    sb_config_free(&cfg);
}
END_TEST

/* ---- sections ----------------------------------------------------------- */

START_TEST(test_unknown_section)
{
    sb_config cfg;
    const char *path = write_ini("[server]\nport = 80\n[metrics]\nport = 81\n"
                                 "[gateway.chat]\n[Server]\nport = 82\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 3);
    ASSERT_ERROR(
        &cfg,
        "%s:3: unknown section [metrics] (expected [server], "
        "[admin], [cluster], [recovery], [gateway.NAME] or [plugin.NAME])",
        path);
    /* An empty gateway inherits port 80 and path / from [server]. */
    ASSERT_ERROR(&cfg,
                 "%s:5: gateway 'chat' uses port 80 and path /, like gateway "
                 "'default'",
                 path);
    ASSERT_ERROR(
        &cfg,
        "%s:6: unknown section [Server] (expected [server], "
        "[admin], [cluster], [recovery], [gateway.NAME] or [plugin.NAME])",
        path);
    /* Keys of a section already reported are not reported again, nor
     * applied. */
    ck_assert_int_eq(cfg.server.port, 80);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_key_before_any_section)
{
    sb_config cfg;
    const char *path = write_ini("; header\nport = 80\nhost = x\n[server]\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:2: key 'port' before any section", path);
    ASSERT_ERROR(&cfg, "%s:3: key 'host' before any section", path);
    ck_assert_int_eq(cfg.server.port, 3000);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_section_name_too_long)
{
    /* libinih keeps 49 characters of a section name and drops the rest. */
    char text[256];
    snprintf(text, sizeof(text), "[server]\n[plugin.%s]\nfile = x.so\n",
             "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
    assert_one_error(text, 2, "section name longer than 49 characters");
}
END_TEST

START_TEST(test_empty_key_name)
{
    assert_one_error("[server]\n= 5\n", 2, "key with an empty name");
}
END_TEST

/* ---- [plugin.NAME] ------------------------------------------------------ */

START_TEST(test_plugin_sections)
{
    sb_config cfg;
    const char *path = write_ini("[plugin.a]\n"         /* 1 */
                                 "file = a.so\n"        /* 2 */
                                 "zeta = 1\n"           /* 3 */
                                 "alpha = two words \n" /* 4 */
                                 "zeta = 3\n"           /* 5 */
                                 "\n"                   /* 6 */
                                 "[plugin.B-2_x.y]\n"   /* 7 */
                                 "file = ../lib/b.so\n" /* 8 */
                                 "enabled = OFF\n"      /* 9 */
                                 "optional = Yes\n"     /* 10 */
                                 "[plugin.c]\n"         /* 11 */
                                 "file = /opt/c.so\n"   /* 12 */
                                 "enabled = 0\n"        /* 13 */
                                 "enabled = on\n"       /* 14 */
                                 "optional = TRUE\n"    /* 15 */
                                 "empty =\n");          /* 16 */
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(cfg.nplugins, 3);

    const sb_plugin_conf *a = &cfg.plugins[0];
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s/a.so", cfg.dir);
    ck_assert_str_eq(a->name, "a");
    ck_assert_str_eq(a->file, want);
    ck_assert(a->enabled);
    ck_assert(!a->optional);
    ck_assert_int_eq(a->line, 1);
    /* In file order; a repeated key keeps its place, takes the last value
     * and line. */
    ck_assert_uint_eq(a->nkeys, 3);
    ck_assert_str_eq(a->keys[0].key, "file");
    ck_assert_str_eq(a->keys[0].value, "a.so");
    ck_assert_int_eq(a->keys[0].line, 2);
    ck_assert_str_eq(a->keys[1].key, "zeta");
    ck_assert_str_eq(a->keys[1].value, "3");
    ck_assert_int_eq(a->keys[1].line, 5);
    ck_assert_str_eq(a->keys[2].key, "alpha");
    ck_assert_str_eq(a->keys[2].value, "two words");
    ck_assert_int_eq(a->keys[2].line, 4);
    ck_assert_str_eq(sb_plugin_conf_get(a, "alpha"), "two words");
    ck_assert_ptr_null(sb_plugin_conf_get(a, "beta"));

    const sb_plugin_conf *b = find_plugin(&cfg, "B-2_x.y");
    ck_assert_ptr_nonnull(b);
    snprintf(want, sizeof(want), "%s/../lib/b.so", cfg.dir);
    ck_assert_str_eq(b->file, want);
    ck_assert(!b->enabled);
    ck_assert(b->optional);
    ck_assert_int_eq(b->line, 7);
    ck_assert_uint_eq(b->nkeys, 3);
    ck_assert_str_eq(b->keys[1].key, "enabled");
    ck_assert_str_eq(b->keys[1].value, "OFF");

    const sb_plugin_conf *c = find_plugin(&cfg, "c");
    ck_assert_str_eq(c->file, "/opt/c.so");
    ck_assert(c->enabled);
    ck_assert(c->optional);
    ck_assert_uint_eq(c->nkeys, 4);
    ck_assert_str_eq(sb_plugin_conf_get(c, "enabled"), "on");
    ck_assert_str_eq(sb_plugin_conf_get(c, "empty"), "");
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_plugin_file_relative_to_config_folder)
{
    /* Loaded through a relative path from elsewhere: the folder is still
     * made absolute, so the plugin path does not depend on the cwd. */
    sb_config cfg;
    write_ini("[plugin.p]\nfile = p.so\n");
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(tmpdir), 0);
    int rc = sb_config_load(&cfg, "./test.ini");
    ck_assert_int_eq(chdir(cwd), 0);
    ASSERT_NERRORS(&cfg, rc, 0);

    char *dir = realpath(tmpdir, NULL);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s/p.so", dir);
    ck_assert_str_eq(cfg.file, "./test.ini");
    ck_assert_str_eq(cfg.dir, dir);
    ck_assert_str_eq(cfg.plugins[0].file, want);
    free(dir);
    sb_config_free(&cfg);

    /* A bare file name: its folder is the current one. */
    ck_assert_int_eq(chdir(tmpdir), 0);
    rc = sb_config_load(&cfg, "test.ini");
    ck_assert_int_eq(chdir(cwd), 0);
    ASSERT_NERRORS(&cfg, rc, 0);
    dir = realpath(tmpdir, NULL);
    ck_assert_str_eq(cfg.dir, dir);
    free(dir);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_plugin_missing_file)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n\n[plugin.a]\nenabled = yes\n"
                                 "[plugin.empty]\n[plugin.ok]\nfile = ok.so\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:3: missing key 'file' in [plugin.a]", path);
    ASSERT_ERROR(&cfg, "%s:5: missing key 'file' in [plugin.empty]", path);
    ck_assert_uint_eq(cfg.nplugins, 3);
    ck_assert_ptr_null(cfg.plugins[0].file);
    sb_config_free(&cfg);

    assert_one_error("[plugin.a]\nfile =\n", 2,
                     "bad value '' for 'file' (expected a path)");
}
END_TEST

START_TEST(test_plugin_duplicate_section)
{
    sb_config cfg;
    const char *path = write_ini("[plugin.a]\nfile = 1.so\n\n[plugin.b]\n"
                                 "file = b.so\n[plugin.a]\nfile = 2.so\n"
                                 "[plugin.a]\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:6: duplicate section [plugin.a] (first at line 1)",
                 path);
    ASSERT_ERROR(&cfg, "%s:8: duplicate section [plugin.a] (first at line 1)",
                 path);
    ck_assert_uint_eq(cfg.nplugins, 2);
    /* The duplicate's keys are not merged into the first. */
    ck_assert_str_eq(sb_plugin_conf_get(&cfg.plugins[0], "file"), "1.so");
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_plugin_back_to_back_duplicate)
{
    /* Two identical headers with nothing between them are still seen, and
     * the first, left empty, lacks its file. */
    sb_config cfg;
    const char *path = write_ini("[plugin.a]\n[plugin.a]\nfile = a.so\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:1: missing key 'file' in [plugin.a]", path);
    ASSERT_ERROR(&cfg, "%s:2: duplicate section [plugin.a] (first at line 1)",
                 path);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_plugin_bad_names)
{
    sb_config cfg;
    const char *path = write_ini("[plugin.]\nfile = x.so\n"
                                 "[plugin.a b]\nfile = x.so\n"
                                 "[plugin.a/b]\n[plugin]\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 4);
    ASSERT_ERROR(&cfg,
                 "%s:1: bad plugin name '' in [plugin.] (expected letters, "
                 "digits, '_', '.' or '-')",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:3: bad plugin name 'a b' in [plugin.a b] (expected "
                 "letters, digits, '_', '.' or '-')",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:5: bad plugin name 'a/b' in [plugin.a/b] (expected "
                 "letters, digits, '_', '.' or '-')",
                 path);
    ASSERT_ERROR(
        &cfg,
        "%s:6: unknown section [plugin] (expected [server], "
        "[admin], [cluster], [recovery], [gateway.NAME] or [plugin.NAME])",
        path);
    ck_assert_uint_eq(cfg.nplugins, 0);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_plugin_bad_booleans)
{
    sb_config cfg;
    const char *path = write_ini("[plugin.a]\nfile = a.so\nenabled = maybe\n"
                                 "optional = 2\nenabled =\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 3);
    ASSERT_ERROR(&cfg,
                 "%s:3: bad value 'maybe' for 'enabled' (expected "
                 "true/false, yes/no, on/off or 1/0)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:4: bad value '2' for 'optional' (expected true/false, "
                 "yes/no, on/off or 1/0)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:5: bad value '' for 'enabled' (expected true/false, "
                 "yes/no, on/off or 1/0)",
                 path);
    sb_config_free(&cfg);
}
END_TEST

/* ---- syntax, as libinih sees it, with our line numbers ------------------ */

START_TEST(test_syntax_errors_each_with_its_line)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n"      /* 1 */
                                 "port 80\n"       /* 2 */
                                 "[plugin.x\n"     /* 3 */
                                 "host = h\n"      /* 4: still [server] */
                                 "[plugin.y ;c]\n" /* 5 */
                                 "  just words\n"  /* 6 */
                                 "port = 81\n");   /* 7 */
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 4);
    ASSERT_ERROR(&cfg,
                 "%s:2: syntax error in 'port 80' (expected [section], key "
                 "= value or a comment)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:3: syntax error in '[plugin.x' (expected [section], key "
                 "= value or a comment)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:5: syntax error in '[plugin.y ;c]' (expected [section], "
                 "key = value or a comment)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:6: indented line continues the value of 'host'; "
                 "multi-line values are not supported (remove the "
                 "indentation)",
                 path);
    ck_assert_str_eq(cfg.server.host, "h");
    ck_assert_int_eq(cfg.server.port, 81);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_indented_lines)
{
    sb_config cfg;
    /* An indented line right after a header is an ordinary line; after a
     * key it would continue that key's value, which we refuse. */
    const char *path = write_ini("[plugin.a]\n"     /* 1 */
                                 "  file = a.so\n"  /* 2 */
                                 "  enabled = no\n" /* 3 */
                                 "\t; comment\n"    /* 4 */
                                 "  [server]\n"     /* 5 */
                                 "\n"               /* 6 */
                                 "[server]\n"       /* 7 */
                                 "  port = 90\n");  /* 8 */
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg,
                 "%s:3: indented line continues the value of 'file'; "
                 "multi-line values are not supported (remove the "
                 "indentation)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:5: indented line continues the value of 'file'; "
                 "multi-line values are not supported (remove the "
                 "indentation)",
                 path);
    ck_assert(cfg.plugins[0].enabled);
    ck_assert_str_eq(sb_plugin_conf_get(&cfg.plugins[0], "file"), "a.so");
    ck_assert_int_eq(cfg.server.port, 90);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_long_lines)
{
    /* 198 characters fit libinih's buffer; 199 do not, and the lines after
     * keep their true numbers. */
    char text[1024], value[256];
    memset(value, 'v', sizeof(value));
    sb_config cfg;

    snprintf(text, sizeof(text), "[plugin.a]\nfile = a.so\nk = %.*s\n", 198 - 4,
             value);
    int rc = sb_config_load(&cfg, write_ini(text));
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(strlen(sb_plugin_conf_get(&cfg.plugins[0], "k")), 194);
    sb_config_free(&cfg);

    snprintf(text, sizeof(text),
             "[plugin.a]\nfile = a.so\nk = %.*s\nbad line\n", 199 - 4, value);
    const char *path = write_ini(text);
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg, "%s:3: line longer than 198 characters", path);
    ASSERT_ERROR(&cfg,
                 "%s:4: syntax error in 'bad line' (expected [section], key "
                 "= value or a comment)",
                 path);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_bom_and_crlf)
{
    sb_config cfg;
    int rc = sb_config_load(&cfg, write_ini("\xEF\xBB\xBF[server]\r\n"
                                            "port = 82\r\n"
                                            "path = /x\r\n"));
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_int_eq(cfg.server.port, 82);
    ck_assert_str_eq(cfg.server.path, "/x");
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_nul_byte)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    FILE *fp = fopen(path, "a");
    fwrite("port = 1\0\n", 1, 10, fp);
    fclose(fp);
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 1);
    ASSERT_ERROR(&cfg, "%s:2: line holds a NUL byte (not a text file?)", path);
    sb_config_free(&cfg);
}
END_TEST

/* ---- every problem at once ---------------------------------------------- */

START_TEST(test_errors_fixture_reports_all_in_line_order)
{
    sb_config cfg;
    const char *path = SB_TEST_DATA_DIR "/config_errors.ini";
    int rc = sb_config_load(&cfg, path);
    static const char *const want[] = {
        "2: key 'prelude' before any section",
        "5: bad value '0' for 'port' (expected an integer 1..65535)",
        "6: unknown key 'prot' in [server]",
        "7: bad value '1kb' for 'max_message_size' (expected " E_MSG ")",
        "8: bad value 'loud' for 'log_level' (expected " E_LEVEL ")",
        "9: syntax error in 'this line has no equals sign' (expected "
        "[section], key = value or a comment)",
        "12: unknown key 'listen' in [admin]",
        "14: missing key 'file' in [plugin.chat]",
        "15: bad value 'maybe' for 'enabled' (expected true/false, yes/no, "
        "on/off or 1/0)",
        "17: duplicate section [plugin.chat] (first at line 14)",
    };
    size_t n = sizeof(want) / sizeof(want[0]);
    ASSERT_NERRORS(&cfg, rc, n);
    for (size_t i = 0; i < n; i++) {
        char line[512];
        snprintf(line, sizeof(line), "%s:%s", path, want[i]);
        ck_assert_str_eq(cfg.errors[i], line);
    }
    sb_config_free(&cfg);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

/* ---- [gateway.NAME] ----------------------------------------------------- */

START_TEST(test_gateways_inherit_and_override)
{
    sb_config cfg;
    const char *path = write_ini(
        "[gateway.admin]\nport = 4000\nmax_connections = 5\n"
        "[server]\nport = 3000\nmax_message_size = 2k\nidle_timeout = 9\n"
        "[gateway.chat]\npath = /chat\n"
        "[plugin.a]\nfile = a.so\ngateways = chat, admin ,chat\n"
        "[plugin.b]\nfile = b.so\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(cfg.ngateways, 3);
    ck_assert_str_eq(cfg.gateways[0].name, "default");
    ck_assert_int_eq(cfg.gateways[0].conf.port, 3000);
    ck_assert_str_eq(cfg.gateways[0].conf.path, "/");
    /* [server] values reach gateways whatever the section order... */
    ck_assert_str_eq(cfg.gateways[1].name, "admin");
    ck_assert_int_eq(cfg.gateways[1].conf.port, 4000);
    ck_assert_uint_eq(cfg.gateways[1].conf.max_connections, 5);
    ck_assert_uint_eq(cfg.gateways[1].conf.max_message_size, 2048);
    ck_assert_uint_eq(cfg.gateways[1].conf.idle_timeout, 9);
    ck_assert_str_eq(cfg.gateways[1].conf.path, "/");
    /* ...and a gateway may share the port with another path. */
    ck_assert_str_eq(cfg.gateways[2].name, "chat");
    ck_assert_int_eq(cfg.gateways[2].conf.port, 3000);
    ck_assert_str_eq(cfg.gateways[2].conf.path, "/chat");
    ck_assert_uint_eq(cfg.gateways[2].conf.max_connections, 10000);
    /* Plugin gateway lists, deduplicated; every gateway by default. */
    ck_assert_uint_eq(cfg.plugins[0].ngateways, 2);
    ck_assert_uint_eq(cfg.plugins[0].gateways[0], 2);
    ck_assert_uint_eq(cfg.plugins[0].gateways[1], 1);
    ck_assert_uint_eq(cfg.plugins[1].ngateways, 3);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_gateway_errors)
{
    sb_config cfg;
    const char *path = write_ini("[gateway.default]\n"
                                 "[gateway.x]\nport = 81\nlog_level = "
                                 "debug\nbogus = 1\n"
                                 "[gateway.x]\n"
                                 "[plugin.p]\nfile = p.so\ngateways = x, y\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 5);
    ASSERT_ERROR(&cfg,
                 "%s:1: bad gateway name 'default' (expected letters, "
                 "digits, '_', '.' or '-'; 'default' is [server])",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:4: key 'log_level' belongs in [server], not in a gateway",
                 path);
    ASSERT_ERROR(&cfg, "%s:5: unknown key 'bogus' in [gateway.x]", path);
    ASSERT_ERROR(&cfg, "%s:6: duplicate section [gateway.x] (first at line 2)",
                 path);
    ASSERT_ERROR(&cfg, "%s:9: unknown gateway 'y' in 'gateways' of [plugin.p]",
                 path);
    sb_config_free(&cfg);
}
END_TEST

/* ---- [server] workers ---------------------------------------------------- */

START_TEST(test_workers)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    ck_assert_uint_eq(cfg.server.workers, 1); /* one process, no master */
    sb_config_free(&cfg);

    path = write_ini("[server]\nworkers = 3\n"
                     "[cluster]\nredis = redis://127.0.0.1\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(cfg.server.workers, 3);
    sb_config_free(&cfg);

    path = write_ini("[server]\nworkers = auto\n"
                     "[cluster]\nredis = redis://127.0.0.1\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(cfg.server.workers, cores < 1     ? 1
                                          : cores > 256 ? 256
                                                        : (unsigned)cores);
    sb_config_free(&cfg);

    /* One worker needs nothing more; two need the broker. */
    path = write_ini("[server]\nworkers = 1\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    sb_config_free(&cfg);
    assert_one_error("[server]\nport = 3000\nworkers = 2\n", 3,
                     "[server] workers = 2 needs a [cluster] section (rooms, "
                     "broadcasts and sends must cross the workers, which are "
                     "cluster nodes)");
    assert_one_error("[server]\nworkers = 0\n", 2,
                     "bad value '0' for 'workers' (expected an integer 1..256 "
                     "or 'auto' (one per core))");
    assert_one_error("[server]\nworkers = 257\n", 2,
                     "bad value '257' for 'workers' (expected an integer "
                     "1..256 or 'auto' (one per core))");
    assert_one_error("[server]\n[gateway.b]\nport = 3001\nworkers = 2\n", 4,
                     "key 'workers' belongs in [server], not in a gateway");
    /* Under workers gateways may share a host:port or have their own:
     * each listener gets its own lws context in the workers (server.c). */
    path = write_ini("[server]\nport = 9000\nworkers = 2\n"
                     "[cluster]\nredis = redis://127.0.0.1\n"
                     "[gateway.b]\nport = 9000\npath = /b\n"
                     "[gateway.c]\nport = 9001\nhost = 127.0.0.1\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(cfg.server.workers, 2);
    ck_assert_uint_eq(cfg.ngateways, 3);
    sb_config_free(&cfg);
    /* Worker k's admin listener is on [admin] port + k. */
    assert_one_error("[server]\nport = 9092\nworkers = 2\n"
                     "[cluster]\nredis = redis://127.0.0.1\n"
                     "[admin]\nport = 9090\n",
                     6,
                     "[admin] port 9090 + 2 workers covers the port of gateway "
                     "'default' (worker k's admin listens on port + k)");
    assert_one_error("[server]\nworkers = 2\n"
                     "[cluster]\nredis = redis://127.0.0.1\n"
                     "[admin]\nport = 65534\n",
                     5,
                     "[admin] port 65534 + 2 workers is beyond 65535 (worker k "
                     "listens on port + k)");
}
END_TEST

/* ---- [cluster] ---------------------------------------------------------- */

START_TEST(test_cluster_defaults_and_values)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    ck_assert(!cfg.cluster.enabled);
    sb_config_free(&cfg);

    path = write_ini("[cluster]\nredis = redis://127.0.0.1\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert(cfg.cluster.enabled);
    ck_assert_str_eq(cfg.cluster.redis_host, "127.0.0.1");
    ck_assert_int_eq(cfg.cluster.redis_port, 6379);
    ck_assert_int_eq(cfg.cluster.redis_db, 0);
    ck_assert_ptr_null(cfg.cluster.redis_unix);
    ck_assert_ptr_null(cfg.cluster.node);
    ck_assert_str_eq(cfg.cluster.prefix, "sb:");
    ck_assert_uint_eq(cfg.cluster.connect_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.cluster.command_timeout_ms, 5000);
    ck_assert_uint_eq(cfg.cluster.reconnect_min_ms, 100);
    ck_assert_uint_eq(cfg.cluster.reconnect_max_ms, 5000);
    ck_assert_uint_eq(cfg.cluster.node_ttl_ms, 15000);
    ck_assert_uint_eq(cfg.cluster.probe_interval_ms, 5000);
    ck_assert_uint_eq(cfg.cluster.max_pending, 64u << 20);
    sb_config_free(&cfg);

    const char *pw = write_file("pw", "secret\n");
    (void)pw;
    path = write_ini("[cluster]\nredis = redis://[::1]:7000/3\n"
                     "password_file = pw\nnode = eu-1.a\nprefix = app:\n"
                     "connect_timeout = 500ms\ncommand_timeout = 2s\n"
                     "reconnect_min = 50\nreconnect_max = 1s\n"
                     "node_ttl = 6s\nprobe_interval = 1s\nmax_pending = 1m\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_str_eq(cfg.cluster.redis_host, "::1");
    ck_assert_int_eq(cfg.cluster.redis_port, 7000);
    ck_assert_int_eq(cfg.cluster.redis_db, 3);
    ck_assert_ptr_nonnull(strstr(cfg.cluster.password_file, "/pw"));
    ck_assert_str_eq(cfg.cluster.node, "eu-1.a");
    ck_assert_str_eq(cfg.cluster.prefix, "app:");
    ck_assert_uint_eq(cfg.cluster.connect_timeout_ms, 500);
    ck_assert_uint_eq(cfg.cluster.command_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.cluster.reconnect_min_ms, 50);
    ck_assert_uint_eq(cfg.cluster.reconnect_max_ms, 1000);
    ck_assert_uint_eq(cfg.cluster.node_ttl_ms, 6000);
    ck_assert_uint_eq(cfg.cluster.max_pending, 1u << 20);
    sb_config_free(&cfg);

    path = write_ini("[cluster]\nredis = unix:/run/redis/r.sock\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_str_eq(cfg.cluster.redis_unix, "/run/redis/r.sock");
    ck_assert_ptr_null(cfg.cluster.redis_host);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_recovery_section)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    ck_assert(!cfg.recovery.enabled);
    sb_config_free(&cfg);

    path = write_ini("[recovery]\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert(cfg.recovery.enabled);
    ck_assert_uint_eq(cfg.recovery.session_ttl, 120);
    ck_assert_uint_eq(cfg.recovery.history_size, 100);
    ck_assert_uint_eq(cfg.recovery.history_bytes, 1u << 20);
    ck_assert_uint_eq(cfg.recovery.history_ttl, 300);
    ck_assert_uint_eq(cfg.recovery.max_recover, 300);
    ck_assert_ptr_null(cfg.recovery.room_prefixes);
    sb_config_free(&cfg);

    path = write_ini("[recovery]\nsession_ttl = 30s\nhistory_size = 5\n"
                     "history_bytes = 64k\nhistory_ttl = 60\n"
                     "max_recover = 3\nrooms = chat:, news.\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_uint_eq(cfg.recovery.session_ttl, 30);
    ck_assert_uint_eq(cfg.recovery.history_size, 5);
    ck_assert_uint_eq(cfg.recovery.history_bytes, 64u << 10);
    ck_assert_uint_eq(cfg.recovery.history_ttl, 60);
    ck_assert_uint_eq(cfg.recovery.max_recover, 3);
    ck_assert_str_eq(cfg.recovery.room_prefixes[0], "chat:");
    ck_assert_str_eq(cfg.recovery.room_prefixes[1], "news.");
    ck_assert_ptr_null(cfg.recovery.room_prefixes[2]);
    sb_config_free(&cfg);

    path = write_ini("[recovery]\nsession_ttl = 0\nhistory_size = x\n"
                     "rooms = a,,b\nflavour = 1\n[recovery]\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 5);
    ASSERT_ERROR(&cfg,
                 "%s:2: bad value '0' for 'session_ttl' in [recovery] "
                 "(expected seconds, 1..86400)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:3: bad value 'x' for 'history_size' in [recovery] "
                 "(expected a count, 1..100000)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:4: bad value 'a,,b' for 'rooms' in [recovery] "
                 "(expected 'all' or room name prefixes separated by "
                 "commas)",
                 path);
    ASSERT_ERROR(&cfg, "%s:5: unknown key 'flavour' in [recovery]", path);
    ASSERT_ERROR(&cfg, "%s:6: duplicate section [recovery] (first at line 1)",
                 path);
    sb_config_free(&cfg);

    /* With [cluster], sessions and history live in Redis. */
    path = write_ini("[cluster]\nredis = redis://127.0.0.1\n[recovery]\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert(cfg.recovery.enabled && cfg.cluster.enabled);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_cluster_errors)
{
    sb_config cfg;
    const char *path =
        write_ini("[cluster]\nredis = http://x\npassword_file = nope\n"
                  "node = a b\ncommand_timeout = 0\nreconnect_min = 9s\n"
                  "reconnect_max = 1s\nnode_ttl = 1s\nmax_pending = 1k\n"
                  "flavour = x\n[cluster]\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 10);
    ASSERT_ERROR(&cfg,
                 "%s:2: bad value 'http://x' for 'redis' in [cluster] "
                 "(expected redis://HOST[:PORT][/DB] or unix:/PATH)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:3: bad value 'nope' for 'password_file' in [cluster] "
                 "(expected a readable file)",
                 path);
    ASSERT_ERROR(&cfg, "%s:10: unknown key 'flavour' in [cluster]", path);
    ASSERT_ERROR(&cfg, "%s:11: duplicate section [cluster] (first at line 1)",
                 path);
    ASSERT_ERROR(&cfg, "%s:1: missing key 'redis' in [cluster]", path);
    ASSERT_ERROR(&cfg,
                 "%s:1: [cluster] reconnect_min (9000ms) is above "
                 "reconnect_max (1000ms)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:1: [cluster] node_ttl must be at least 3s (the "
                 "heartbeat runs every third of it)",
                 path);
    sb_config_free(&cfg);

    static const char *const bad_urls[] = {
        "redis://",      "redis://h:0", "redis://h:99999", "redis://h:1/x",
        "unix:rel/path", "redis://h h", "redis://[::1",    "tcp://h:1",
    };
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        char ini[256];
        snprintf(ini, sizeof(ini), "[cluster]\nredis = %s\n", bad_urls[i]);
        path = write_ini(ini);
        rc = sb_config_load(&cfg, path);
        ck_assert_msg(rc == 2, "%s: %d problems", bad_urls[i], rc);
        sb_config_free(&cfg);
    }
}
END_TEST

/* ---- the data path's keys -------------------------------------------- */

START_TEST(test_data_path_keys)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    ck_assert(cfg.server.own_data_path);
    ck_assert(cfg.server.io_uring);
    sb_config_free(&cfg);

    path = write_ini("[server]\nown_data_path = no\nio_uring = off\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert(!cfg.server.own_data_path);
    ck_assert(!cfg.server.io_uring);
    sb_config_free(&cfg);

    /* Process-wide: not a gateway's; a value that is not a boolean. */
    path = write_ini("[server]\nio_uring = maybe\n"
                     "[gateway.g]\nport = 3001\nio_uring = false\n");
    rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 2);
    ASSERT_ERROR(&cfg,
                 "%s:2: bad value 'maybe' for 'io_uring' (expected "
                 "true/false, yes/no, on/off or 1/0)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:5: key 'io_uring' belongs in [server], not in a gateway",
                 path);
    sb_config_free(&cfg);
}
END_TEST

/* ---- [admin] and the log keys ------------------------------------------- */

START_TEST(test_admin_defaults_and_values)
{
    sb_config cfg;
    const char *path = write_ini("[server]\n");
    ck_assert_int_eq(sb_config_load(&cfg, path), 0);
    ck_assert_int_eq(cfg.admin.port, 0);
    ck_assert_ptr_null(cfg.admin.host);
    ck_assert_ptr_null(cfg.admin.token);
    ck_assert_int_eq(cfg.server.log_format, SB_LOG_TEXT);
    ck_assert(!cfg.server.log_connections);
    sb_config_free(&cfg);

    path = write_ini("[server]\nlog_format = JSON\nlog_connections = yes\n"
                     "[admin]\nhost = 0.0.0.0\nport = 9090\n"
                     "token = abc-DEF_123.~+/=\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 0);
    ck_assert_int_eq(cfg.admin.port, 9090);
    ck_assert_str_eq(cfg.admin.host, "0.0.0.0");
    ck_assert_str_eq(cfg.admin.token, "abc-DEF_123.~+/=");
    ck_assert_int_eq(cfg.server.log_format, SB_LOG_JSON);
    ck_assert(cfg.server.log_connections);
    sb_config_free(&cfg);
}
END_TEST

START_TEST(test_admin_errors)
{
    sb_config cfg;
    const char *path =
        write_ini("[server]\nport = 3000\nlog_format = xml\n"
                  "log_connections = sometimes\n"
                  "[admin]\nport = 70000\nhost =\ntoken = a\"b\nbind = x\n"
                  "[admin]\nport = 3000\n"
                  "[gateway.g]\nport = 3001\nlog_format = json\n");
    int rc = sb_config_load(&cfg, path);
    ASSERT_NERRORS(&cfg, rc, 9);
    ASSERT_ERROR(&cfg,
                 "%s:3: bad value 'xml' for 'log_format' (expected "
                 "'text' or 'json')",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:4: bad value 'sometimes' for 'log_connections' "
                 "(expected true/false, yes/no, on/off or 1/0)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:6: bad value '70000' for 'port' (expected an "
                 "integer 1..65535)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:7: bad value '' for 'host' (expected a host name "
                 "or address)",
                 path);
    /* A token's value is never repeated in the log. */
    ASSERT_ERROR(&cfg,
                 "%s:8: bad value (not shown) for 'token' (expected a "
                 "bearer token: printable ASCII without spaces, quotes "
                 "or ';')",
                 path);
    ASSERT_ERROR(&cfg, "%s:9: unknown key 'bind' in [admin]", path);
    ASSERT_ERROR(&cfg, "%s:10: duplicate section [admin] (first at line 5)",
                 path);
    /* The admin listener needs a port of its own. */
    ASSERT_ERROR(&cfg,
                 "%s:5: [admin] port 3000 is the port of gateway "
                 "'default' too (the admin listener needs a port of "
                 "its own)",
                 path);
    ASSERT_ERROR(&cfg,
                 "%s:14: key 'log_format' belongs in [server], not in a "
                 "gateway",
                 path);
    sb_config_free(&cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");

    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_parse_scaled);
    tcase_add_test(tc, test_defaults_with_empty_file);
    tcase_add_test(tc, test_comments_and_blank_lines_only);
    tcase_add_test(tc, test_missing_config_file);
    tcase_add_test(tc, test_config_file_is_a_folder);
    tcase_add_test(tc, test_free_is_safe_on_zeroed_and_twice);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_full_fixture);
    tcase_add_loop_test(tc, test_server_good_value, 0,
                        sizeof(good_values) / sizeof(good_values[0]));
    tcase_add_loop_test(tc, test_server_bad_value, 0,
                        sizeof(bad_values) / sizeof(bad_values[0]));
    tcase_add_test(tc, test_server_repeated_key_last_wins);
    tcase_add_test(tc, test_server_unknown_key);
    tcase_add_test(tc, test_static_folder);
    tcase_add_test(tc, test_server_colon_and_inline_comment);
    tcase_add_test(tc, test_server_duplicate_section);
    suite_add_tcase(s, tc);

    tc = tcase_create("sections");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_unknown_section);
    tcase_add_test(tc, test_gateways_inherit_and_override);
    tcase_add_test(tc, test_gateway_errors);
    tcase_add_test(tc, test_data_path_keys);
    tcase_add_test(tc, test_admin_defaults_and_values);
    tcase_add_test(tc, test_admin_errors);
    tcase_add_test(tc, test_workers);
    tcase_add_test(tc, test_cluster_defaults_and_values);
    tcase_add_test(tc, test_cluster_errors);
    tcase_add_test(tc, test_recovery_section);
    tcase_add_test(tc, test_key_before_any_section);
    tcase_add_test(tc, test_section_name_too_long);
    tcase_add_test(tc, test_empty_key_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("plugins");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_plugin_sections);
    tcase_add_test(tc, test_plugin_file_relative_to_config_folder);
    tcase_add_test(tc, test_plugin_missing_file);
    tcase_add_test(tc, test_plugin_duplicate_section);
    tcase_add_test(tc, test_plugin_back_to_back_duplicate);
    tcase_add_test(tc, test_plugin_bad_names);
    tcase_add_test(tc, test_plugin_bad_booleans);
    suite_add_tcase(s, tc);

    tc = tcase_create("syntax");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_syntax_errors_each_with_its_line);
    tcase_add_test(tc, test_indented_lines);
    tcase_add_test(tc, test_long_lines);
    tcase_add_test(tc, test_bom_and_crlf);
    tcase_add_test(tc, test_nul_byte);
    tcase_add_test(tc, test_errors_fixture_reports_all_in_line_order);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* harness — see harness.h. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static const char *read_file(const char *path);

/* The end of a long text: Check refuses messages over a few KiB. */
static const char *tail(const char *text)
{
    size_t n = strlen(text);
    return n > 3000 ? text + n - 3000 : text;
}

static const char *read_file(const char *path)
{
    static char text[1 << 20];
    text[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return text;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

/* Expands %J (journal) and %P (plugin folder) in a template. */
static void expand(char *out, size_t outlen, const char *tpl, const sb_srv *s)
{
    size_t o = 0;
    for (const char *p = tpl; *p && o + 1 < outlen; p++) {
        const char *ins = NULL;
        if (p[0] == '%' && p[1] == 'J')
            ins = s->journal;
        else if (p[0] == '%' && p[1] == 'D')
            ins = s->dir;
        else if (p[0] == '%' && p[1] == 'P')
            ins = SB_TEST_PLUGIN_DIR;
        if (ins) {
            o += (size_t)snprintf(out + o, outlen - o, "%s", ins);
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o < outlen ? o : outlen - 1] = 0;
}

/* argv for the server, with SB_TEST_WRAPPER words in front. */
static int build_argv(char **argv, int max, char *words, const char *ini)
{
    int n = 0;
    const char *wrap = getenv("SB_TEST_WRAPPER");
    if (wrap && *wrap) {
        snprintf(words, 1024, "%s", wrap);
        for (char *tok = strtok(words, " "); tok && n < max - 4;
             tok = strtok(NULL, " "))
            argv[n++] = tok;
    }
    argv[n++] = (char *)SB_TEST_BINARY;
    argv[n++] = (char *)"-c";
    argv[n++] = (char *)ini;
    argv[n] = NULL;
    return n;
}

void srv_start(sb_srv *s, const char *server_extra, const char *sections)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/sb-it-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    srv_start_in(s, s->dir, server_extra, sections);
}

void srv_start_in(sb_srv *s, const char *dir, const char *server_extra,
                  const char *sections)
{
    if (s->dir != dir)
        snprintf(s->dir, sizeof(s->dir), "%s", dir);
    snprintf(s->ini, sizeof(s->ini), "%s/test.ini", s->dir);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    snprintf(s->journal, sizeof(s->journal), "%s/journal", s->dir);
    /* A free port can be taken by a parallel test before our server binds
     * it: then our server exits with "cannot listen", and we try again on
     * another port. */
    for (int attempt = 1;; attempt++) {
        s->port = sb_test_free_port();
        ck_assert_int_gt(s->port, 0);
        char body[8192], expanded[8192];
        snprintf(body, sizeof(body),
                 "[server]\nhost = 127.0.0.1\nport = %d\nlog_level = "
                 "debug\n%s\n%s\n",
                 s->port, server_extra ? server_extra : "",
                 sections ? sections : "");
        expand(expanded, sizeof(expanded), body, s);
        write_file(s->ini, expanded);

        char *argv[32], words[1024];
        build_argv(argv, 32, words, s->ini);
        ck_assert_int_eq(sb_test_spawn_log(argv, s->log, &s->pid), 0);
        int status = 0;
        /* Generous: under valgrind the server starts slowly. */
        if (sb_test_wait_ready(s->pid, s->port, 30000, &status) == 0)
            return;
        const char *log = read_file(s->log);
        if (attempt < 5 && strstr(log, "cannot listen"))
            continue;
        ck_abort_msg("server did not come up (status %d): %s\n%s", status,
                     sb_test_error(), tail(log));
    }
}

void srv_start_default(sb_srv *s, const char *server_extra)
{
    srv_start(s, server_extra,
              "[plugin.nest]\nfile = %P/nest-example.so\n"
              "[plugin.probe]\nfile = %P/test-probe.so\njournal = %J\n");
}

void srv_stop(sb_srv *s)
{
    int status = -1;
    int rc = sb_test_stop(s->pid, SIGTERM, 30000, &status);
    const char *log = tail(read_file(s->log));
    ck_assert_msg(rc == 0, "server did not stop on SIGTERM:\n%s", log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "server exit status %d (signal %d), log:\n%s",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, log);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    ck_assert_int_eq(system(cmd), 0);
}

int srv_run(const char *const *args, char *out, size_t outlen)
{
    char path[] = "/tmp/sb-it-run-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char *argv[32], words[1024];
    int n = 0;
    const char *wrap = getenv("SB_TEST_WRAPPER");
    if (wrap && *wrap) {
        snprintf(words, sizeof(words), "%s", wrap);
        for (char *tok = strtok(words, " "); tok && n < 24;
             tok = strtok(NULL, " "))
            argv[n++] = tok;
    }
    argv[n++] = (char *)SB_TEST_BINARY;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid;
    ck_assert_int_eq(sb_test_spawn_log(argv, path, &pid), 0);
    int status = -1;
    ck_assert_int_eq(sb_test_stop(pid, 0, 60000, &status), 0);
    snprintf(out, outlen, "%s", read_file(path));
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

const char *srv_journal(const sb_srv *s)
{
    return read_file(s->journal);
}

const char *srv_logtext(const sb_srv *s)
{
    return read_file(s->log);
}

const char *srv_logtail(const sb_srv *s)
{
    return tail(read_file(s->log));
}

void srv_ini_replace(const sb_srv *s, const char *from, const char *to)
{
    char ini[16384];
    FILE *f = fopen(s->ini, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(ini, 1, sizeof(ini) - 1, f);
    fclose(f);
    ini[n] = 0;
    char *at = strstr(ini, from);
    ck_assert_msg(at != NULL, "'%s' is not in the config", from);
    f = fopen(s->ini, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%.*s%s%s", (int)(at - ini), ini, to, at + strlen(from));
    fclose(f);
}

bool srv_log_wait(const sb_srv *s, const char *needle, int count,
                  int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        const char *text = srv_logtext(s);
        int found = 0;
        for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
            found++;
        if (found >= count)
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

bool srv_journal_wait(const sb_srv *s, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (strstr(srv_journal(s), needle))
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

ws_client *cli_connect(const sb_srv *s)
{
    ws_client *c = ws_connect("127.0.0.1", s->port, "/", NULL, SB_TIMEOUT);
    ck_assert_msg(c != NULL, "connect: %s", ws_last_error());
    return c;
}

void cli_send(ws_client *c, const char *text)
{
    ck_assert_msg(ws_send_text(c, text, strlen(text)) == 0, "send: %s",
                  ws_error(c));
}

void cli_expect(ws_client *c, const char *want)
{
    ws_frame f;
    int rc = ws_recv_message(c, SB_TIMEOUT, &f);
    ck_assert_msg(rc == 1, "expected %s, got %s", want,
                  rc == 0 ? "nothing (timeout)" : ws_error(c));
    ck_assert_msg(f.opcode == WS_OP_TEXT,
                  "expected a text frame for %s, got "
                  "opcode %d (%s)",
                  want, f.opcode, (char *)f.data);
    ck_assert_str_eq((char *)f.data, want);
    ws_frame_free(&f);
}

void cli_expect_nothing(ws_client *c, int ms)
{
    ws_frame f;
    int rc = ws_recv(c, ms, &f);
    ck_assert_msg(rc == 0, "expected nothing, got %s",
                  rc == 1 ? (char *)f.data : "a closed connection");
}

static void (*cli_failure_fn)(void);

void cli_on_failure(void (*fn)(void))
{
    cli_failure_fn = fn;
}

json_t *cli_recv_json(ws_client *c, int ms, const char *what)
{
    ws_frame f;
    int rc = ws_recv_message(c, ms, &f);
    if (rc != 1) {
        if (cli_failure_fn)
            cli_failure_fn();
        ck_abort_msg("no %s: %d %s", what, rc, ws_error(c));
    }
    ck_assert_msg(f.opcode == WS_OP_TEXT, "%s: opcode %d", what, f.opcode);
    json_t *v = json_loadb((const char *)f.data, f.len, 0, NULL);
    ck_assert_msg(v != NULL, "not JSON: %.*s", (int)f.len, (char *)f.data);
    ws_frame_free(&f);
    return v;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *cli_expect_event(ws_client *c, const char *event)
{
    long long end = mono_ms() + SB_TIMEOUT;
    for (long long left; (left = end - mono_ms()) > 0;) {
        json_t *v = cli_recv_json(c, (int)left, event);
        const char *e = json_string_value(json_object_get(v, "event"));
        if (e && strcmp(e, event) == 0)
            return v;
        json_decref(v);
    }
    if (cli_failure_fn)
        cli_failure_fn();
    ck_abort_msg("no '%s' event", event);
    return NULL;
}

/* ---- a private Redis ------------------------------------------------------
 */

bool redis_available(void)
{
    return system("command -v redis-server >/dev/null 2>&1 && "
                  "command -v redis-cli >/dev/null 2>&1") == 0;
}

int redis_cli(const sb_redis *r, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "redis-cli -s '%s' %s >/dev/null 2>&1", r->sock,
             args);
    return system(cmd);
}

void redis_start(sb_redis *r)
{
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/sb-redis-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(r->dir));
        snprintf(r->sock, sizeof(r->sock), "%s/r.sock", r->dir);
    }
    char log[320];
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    char *argv[] = {"redis-server", "--port", "0",    "--unixsocket",
                    r->sock,        "--save", "",     "--appendonly",
                    "no",           "--dir",  r->dir, NULL};
    ck_assert_int_eq(sb_test_spawn_log(argv, log, &r->pid), 0);
    for (int i = 0; i < 200; i++) {
        if (redis_cli(r, "PING") == 0)
            return;
        usleep(25000);
    }
    ck_abort_msg("redis-server did not come up");
}

void redis_kill(sb_redis *r)
{
    if (r->pid > 0) {
        int status;
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &status, 0);
    }
    r->pid = 0;
    unlink(r->sock);
}

void redis_free(sb_redis *r)
{
    redis_kill(r);
    if (r->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    memset(r, 0, sizeof(*r));
}

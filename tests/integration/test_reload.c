/*
 * Hot reload, against the real binary: builds swapped under a connected
 * client, state handed over, failed reloads that change nothing, plugins
 * added and removed by editing the INI, file watches, and 100 reloads that
 * leave no mapping behind. Each test would fail if its guarantee broke.
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <switchboard/plugin.h>

#include "harness.h"

static sb_srv srv;

/* Installs a plugin build as %D/current.so the way installers do: a copy
 * next to it, then rename, so the server never sees a half-written file
 * (except where a test wants exactly that). */
static void install_build(const char *build)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cp '%s/test-reload-%s.so' '%s/next.so' && mv '%s/next.so' "
             "'%s/current.so'",
             SB_TEST_PLUGIN_DIR, build, srv.dir, srv.dir, srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void install_file(const char *src)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cp '%s' '%s/next.so' && mv '%s/next.so' '%s/current.so'", src,
             srv.dir, srv.dir, srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A server whose plugin r is %D/current.so, build a to begin with. */
static void start_reloadable(const char *server_extra, const char *extra)
{
    char sections[2048];
    snprintf(sections, sizeof(sections),
             "[plugin.r]\nfile = %%D/current.so\n%s", extra ? extra : "");
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/sb-it-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(srv.dir));
    install_build("a");
    srv_start_in(&srv, srv.dir, server_extra, sections);
}

/* Sends `who` and returns the reply's data (caller decrefs). */
static json_t *who(ws_client *c)
{
    cli_send(c, "{\"event\":\"who\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    json_t *v = json_loads((char *)f.data, 0, NULL);
    ws_frame_free(&f);
    ck_assert_ptr_nonnull(v);
    json_t *d = json_incref(json_object_get(v, "data"));
    json_decref(v);
    return d;
}

static const char *who_build(ws_client *c, json_int_t *generation)
{
    static char build[16];
    json_t *d = who(c);
    snprintf(build, sizeof(build), "%s",
             json_string_value(json_object_get(d, "build")));
    if (generation)
        *generation = json_integer_value(json_object_get(d, "generation"));
    json_decref(d);
    return build;
}

static void hup(void)
{
    ck_assert_int_eq(kill(srv.pid, SIGHUP), 0);
}

START_TEST(test_fifty_swaps_under_traffic)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    ck_assert_str_eq(who_build(c, NULL), "a");
    int next_id = 1;
    for (int round = 1; round <= 50; round++) {
        const char *build = round % 2 ? "b" : "a";
        const char *old = round % 2 ? "a" : "b";
        install_build(build);
        /* Requests before, during and after the reload, all pipelined. */
        int first = next_id;
        char msg[128];
        for (int i = 0; i < 5; i++, next_id++) {
            snprintf(msg, sizeof(msg),
                     "{\"event\":\"ask\",\"data\":%d,\"id\":%d}", next_id,
                     next_id);
            cli_send(c, msg);
        }
        hup();
        for (int i = 0; i < 5; i++, next_id++) {
            snprintf(msg, sizeof(msg),
                     "{\"event\":\"ask\",\"data\":%d,\"id\":%d}", next_id,
                     next_id);
            cli_send(c, msg);
        }
        /* Every id answered exactly once, in order, and once the new build
         * answered, the old one never does again. */
        bool switched = false;
        for (int id = first; id < next_id; id++) {
            ws_frame f;
            ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
            json_t *v = json_loads((char *)f.data, 0, NULL);
            ck_assert_msg(v != NULL, "%s", f.data);
            ck_assert_int_eq(json_integer_value(json_object_get(v, "id")), id);
            json_t *d = json_object_get(v, "data");
            ck_assert_int_eq(json_integer_value(json_object_get(d, "n")), id);
            const char *b = json_string_value(json_object_get(d, "build"));
            if (strcmp(b, build) == 0)
                switched = true;
            else
                ck_assert_msg(!switched && strcmp(b, old) == 0,
                              "round %d id %d: build %s after the switch",
                              round, id, b);
            json_decref(v);
            ws_frame_free(&f);
        }
        char want[64];
        snprintf(want, sizeof(want), "now at generation %d", round + 1);
        ck_assert_msg(srv_log_wait(&srv, want, 1, SB_TIMEOUT), "%s",
                      srv_logtail(&srv));
        /* Right after the reload, the new build answers. */
        json_int_t gen = 0;
        ck_assert_str_eq(who_build(c, &gen), build);
        ck_assert_int_eq(gen, round + 1);
    }
    cli_expect_nothing(c, 100);
    /* No client was ever disconnected by a reload. */
    ck_assert_ptr_null(strstr(srv_logtext(&srv), "disconnected"));
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_state_handed_over)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    ws_client *other = cli_connect(&srv);
    for (int i = 1; i <= 3; i++) {
        char want[64];
        snprintf(want, sizeof(want), "{\"event\":\"count\",\"data\":%d}", i);
        cli_send(c, "{\"event\":\"count\"}");
        cli_expect(c, want);
    }
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":1}");
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":2}");
    for (int round = 0; round < 4; round++) {
        install_build(round % 2 ? "a" : "b");
        hup();
        char want[64];
        snprintf(want, sizeof(want), "now at generation %d", round + 2);
        ck_assert(srv_log_wait(&srv, want, 1, SB_TIMEOUT));
    }
    /* The instance counter went on from 3; each version was told about
     * both connected clients; this client's own state survived. */
    json_t *d = who(c);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "count")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "resumed")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "generation")), 5);
    json_decref(d);
    cli_send(c, "{\"event\":\"count\"}");
    cli_expect(c, "{\"event\":\"count\",\"data\":4}");
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":3}");
    cli_send(other, "{\"event\":\"mine\"}");
    cli_expect(other, "{\"event\":\"mine\",\"data\":1}");
    ws_close(c);
    ws_close(other);
    srv_stop(&srv);
}
END_TEST

/* A reload that must fail and leave build a, generation 1, serving. */
static void expect_failed_reload(ws_client *c, int nth, const char *why)
{
    hup();
    ck_assert_msg(
        srv_log_wait(&srv, "the running version stays", nth, SB_TIMEOUT),
        "no failure logged (%s):\n%s", why, srv_logtail(&srv));
    ck_assert_msg(strstr(srv_logtext(&srv), why), "'%s' not in:\n%s", why,
                  srv_logtail(&srv));
    json_int_t gen = 0;
    ck_assert_str_eq(who_build(c, &gen), "a");
    ck_assert_int_eq(gen, 1);
}

START_TEST(test_failed_reloads_change_nothing)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"count\"}");
    cli_expect(c, "{\"event\":\"count\",\"data\":1}");

    char path[512];
    /* Wrong ABI. */
    snprintf(path, sizeof(path), "%s/test-bad-major.so", SB_TEST_PLUGIN_DIR);
    install_file(path);
    expect_failed_reload(c, 1, "major versions differ");
    /* Init fails. */
    install_build("fail");
    expect_failed_reload(c, 2, "init refused on purpose");
    /* Half-written file: the first 4 KiB of a real build. */
    snprintf(path, sizeof(path), "%s/test-reload-b.so", SB_TEST_PLUGIN_DIR);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "head -c 4096 '%s' > '%s/next.so' && mv '%s/next.so' "
             "'%s/current.so'",
             path, srv.dir, srv.dir, srv.dir);
    ck_assert_int_eq(system(cmd), 0);
    expect_failed_reload(c, 3, "not a loadable shared object");
    /* Missing file. */
    snprintf(path, sizeof(path), "%s/current.so", srv.dir);
    ck_assert_int_eq(unlink(path), 0);
    expect_failed_reload(c, 4, "file not found");
    /* A config that does not parse changes nothing either. */
    FILE *f = fopen(srv.ini, "a");
    fputs("[server]\nbogus_key = 1\n", f);
    fclose(f);
    hup();
    ck_assert(
        srv_log_wait(&srv, "the new config does not load", 1, SB_TIMEOUT));
    /* Still the same instance: its counter went on. */
    cli_send(c, "{\"event\":\"count\"}");
    cli_expect(c, "{\"event\":\"count\",\"data\":2}");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_add_and_remove_by_editing_the_ini)
{
    srv_start(&srv, "unknown_event = exception\n",
              "[plugin.nest]\nfile = %P/nest-example.so\n");
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"info\"}");
    ws_frame f;
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert(strstr((char *)f.data, "no handler"));
    ws_frame_free(&f);

    /* Add the probe plugin: it is loaded and told about this client. */
    FILE *ini = fopen(srv.ini, "a");
    fprintf(ini, "[plugin.probe]\nfile = %s/test-probe.so\njournal = %s\n",
            SB_TEST_PLUGIN_DIR, srv.journal);
    fclose(ini);
    hup();
    ck_assert(
        srv_log_wait(&srv, "1 added, 0 changed, 0 removed", 1, SB_TIMEOUT));
    ck_assert(srv_journal_wait(&srv, "connect 1\n", SB_TIMEOUT));
    cli_send(c, "{\"event\":\"info\"}");
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert_msg(strstr((char *)f.data, "\"event\":\"info\""), "%s", f.data);
    ws_frame_free(&f);

    /* Remove it again: unloaded cleanly, its events unknown. */
    char text[4096];
    snprintf(text, sizeof(text),
             "[server]\nhost = 127.0.0.1\nport = %d\nlog_level = debug\n"
             "unknown_event = exception\n[plugin.nest]\nfile = "
             "%s/nest-example.so\n",
             srv.port, SB_TEST_PLUGIN_DIR);
    ini = fopen(srv.ini, "w");
    fputs(text, ini);
    fclose(ini);
    hup();
    ck_assert(
        srv_log_wait(&srv, "0 added, 0 changed, 1 removed", 1, SB_TIMEOUT));
    ck_assert(srv_journal_wait(&srv, "unload\n", SB_TIMEOUT));
    cli_send(c, "{\"event\":\"info\"}");
    ck_assert_int_eq(ws_recv_message(c, SB_TIMEOUT, &f), 1);
    ck_assert(strstr((char *)f.data, "no handler"));
    ws_frame_free(&f);
    /* The nest plugin never stopped serving. */
    cli_send(c, "{\"event\":\"identity\",\"data\":9}");
    cli_expect(c, "9");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_watch_reloads_a_replaced_file)
{
    start_reloadable(NULL, "watch = true\n");
    ws_client *c = cli_connect(&srv);
    ck_assert_str_eq(who_build(c, NULL), "a");
    install_build("b"); /* no SIGHUP */
    ck_assert_msg(
        srv_log_wait(&srv, "replaced after its file changed", 1, 10000), "%s",
        srv_logtail(&srv));
    ck_assert_str_eq(who_build(c, NULL), "b");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

static int count_maps(pid_t pid, const char *needle)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (!needle || strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

START_TEST(test_hundred_reloads_leave_nothing_mapped)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    install_build("b");
    hup();
    ck_assert(srv_log_wait(&srv, "now at generation 2", 1, SB_TIMEOUT));
    int base = count_maps(srv.pid, NULL);
    for (int round = 3; round <= 102; round++) {
        install_build(round % 2 ? "a" : "b");
        hup();
        char want[64];
        snprintf(want, sizeof(want), "now at generation %d", round);
        ck_assert_msg(srv_log_wait(&srv, want, 1, 20000), "round %d", round);
    }
    /* Old builds are unmapped: one image of the plugin, as before. */
    ck_assert_int_eq(count_maps(srv.pid, "/r.g"),
                     count_maps(srv.pid, "/r.g102."));
    ck_assert_int_gt(count_maps(srv.pid, "/r.g102."), 0);
    int after = count_maps(srv.pid, NULL);
    ck_assert_msg(after <= base + 2, "maps grew from %d to %d lines", base,
                  after);
    ck_assert_ptr_null(strstr(srv_logtext(&srv), "still mapped"));
    json_int_t gen = 0;
    ck_assert_str_eq(who_build(c, &gen), "b");
    ck_assert_int_eq(gen, 102);
    ws_close(c);
    /* Under SB_TEST_WRAPPER=valgrind, srv_stop also proves no leak. */
    srv_stop(&srv);
}
END_TEST

/* ---- what a retired version may still do (issue 18.1, 18.7) ----------- */

/* Receives the next message, which must be one of the events `a` or `b`;
 * returns its data (the caller decrefs) and which one it was in *which. */
/* The path of the first mapping of `pid` whose file name starts with
 * `prefix` (e.g. "r.g1."), or "" when none. */
static const char *mapped_image(pid_t pid, const char *prefix)
{
    static char found[1024];
    char path[64], line[1200];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    found[0] = '\0';
    while (!found[0] && fgets(line, sizeof(line), f)) {
        char *file = strchr(line, '/');
        if (!file)
            continue;
        file[strcspn(file, "\n")] = '\0';
        const char *base = strrchr(file, '/') + 1;
        if (strncmp(base, prefix, strlen(prefix)) == 0)
            snprintf(found, sizeof(found), "%s", file);
    }
    fclose(f);
    return found;
}

/* Plugins load from a private copy that gdb, valgrind and perf can open: a
 * real .so file in the runtime folder (here $RUNTIME_DIRECTORY, as systemd
 * sets it), removed once its version is unloaded; copies a dead server
 * left are removed at start. Before, every plugin frame was
 * "/memfd:sb:r:g1 (deleted)". */
START_TEST(test_plugin_image_is_a_readable_file)
{
    char run[] = "/tmp/sb-it-run-XXXXXX", stale[1200], text[1400];
    ck_assert_ptr_nonnull(mkdtemp(run));
    ck_assert_int_eq(chmod(run, 0700), 0);
    /* A copy left by a process that is gone. */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
    snprintf(stale, sizeof(stale), "%s/r.g7.%d.1.so", run, (int)dead);
    FILE *f = fopen(stale, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    setenv("RUNTIME_DIRECTORY", run, 1);
    start_reloadable(NULL, NULL);
    unsetenv("RUNTIME_DIRECTORY");
    ck_assert_msg(access(stale, F_OK) != 0, "stale copy %s kept", stale);

    char g1[1024];
    snprintf(g1, sizeof(g1), "%s", mapped_image(srv.pid, "r.g1."));
    ck_assert_msg(strncmp(g1, run, strlen(run)) == 0, "mapped from '%s'", g1);
    size_t n = strlen(g1);
    ck_assert_msg(n > 3 && strcmp(g1 + n - 3, ".so") == 0, "%s", g1);
    /* What the tools do: open it by that path and find an ELF file. */
    f = fopen(g1, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", g1);
    char magic[4] = "";
    ck_assert_int_eq(fread(magic, 1, 4, f), 4);
    fclose(f);
    ck_assert(memcmp(magic, "\177ELF", 4) == 0);
    struct stat st;
    ck_assert_int_eq(stat(run, &st), 0);
    ck_assert_int_eq(st.st_mode & 077, 0);

    /* A reload: the new version has its own copy, the old one's is gone. */
    install_build("b");
    hup();
    ck_assert(srv_log_wait(&srv, "now at generation 2", 1, SB_TIMEOUT));
    ck_assert_msg(
        srv_log_wait(&srv, "unloaded plugin 'r' (generation 1)", 1, SB_TIMEOUT),
        "%s", srv_logtail(&srv));
    char g2[1024];
    snprintf(g2, sizeof(g2), "%s", mapped_image(srv.pid, "r.g2."));
    ck_assert_msg(g2[0] && access(g2, R_OK) == 0, "'%s'", g2);
    ck_assert_str_eq(mapped_image(srv.pid, "r.g1."), "");
    ck_assert_msg(access(g1, F_OK) != 0, "%s kept after unload", g1);
    srv_stop(&srv);
    ck_assert_msg(access(g2, F_OK) != 0, "%s kept after exit", g2);
    snprintf(text, sizeof(text), "rmdir '%s'", run);
    ck_assert_int_eq(system(text), 0); /* empty: nothing left behind */
}
END_TEST

static json_t *recv_one_of(ws_client *c, const char *a, const char *b,
                           const char **which)
{
    ws_frame f;
    int rc = ws_recv_message(c, 30000, &f);
    ck_assert_msg(rc == 1, "expected '%s' or '%s', got %s; log:\n%s", a, b,
                  rc == 0 ? "nothing" : ws_error(c), srv_logtail(&srv));
    json_t *v = json_loads((char *)f.data, 0, NULL);
    ck_assert_msg(v != NULL, "%s", f.data);
    const char *ev = json_string_value(json_object_get(v, "event"));
    ck_assert_msg(ev && (strcmp(ev, a) == 0 || strcmp(ev, b) == 0), "%s",
                  f.data);
    *which = strcmp(ev, a) == 0 ? a : b;
    ws_frame_free(&f);
    json_t *d = json_incref(json_object_get(v, "data"));
    json_decref(v);
    return d;
}

static json_int_t field(json_t *d, const char *key)
{
    json_t *v = json_object_get(d, key);
    ck_assert_msg(json_is_integer(v), "no integer '%s'", key);
    return json_integer_value(v);
}

/* The old version's work outlives the swap: it completes, its post runs
 * (issue 18.7: post() from running work was refused once retiring began),
 * and its per-client data and state calls fail with SB_ERR_RETIRED instead
 * of writing into the slot the new version now owns. Before the fix the
 * destructor pointer it left there pointed into the dlclosed image and the
 * client's disconnect crashed the server (SIGSEGV "in plugin '?'"). */
START_TEST(test_retired_version_work_completes_safely)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":1}");
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":2}");

    char gate[400], msg[600];
    snprintf(gate, sizeof(gate), "%s/gate", srv.dir);
    snprintf(msg, sizeof(msg), "{\"event\":\"slow\",\"data\":\"%s\",\"id\":7}",
             gate);
    cli_send(c, msg);
    ck_assert(srv_log_wait(&srv, "slow work queued by build a", 1, SB_TIMEOUT));
    install_build("b");
    hup();
    ck_assert_msg(srv_log_wait(&srv, "now at generation 2", 1, 30000), "%s",
                  srv_logtail(&srv));
    /* Retired, not unloaded: its work still runs. */
    ck_assert_ptr_null(strstr(srv_logtext(&srv), "unloaded plugin 'r'"));
    FILE *g = fopen(gate, "w");
    ck_assert_ptr_nonnull(g);
    fclose(g);

    bool got_slow = false, got_post = false;
    for (int i = 0; i < 2; i++) {
        const char *which;
        json_t *d = recv_one_of(c, "slow", "slow-post", &which);
        ck_assert_str_eq(json_string_value(json_object_get(d, "build")), "a");
        if (strcmp(which, "slow") == 0) {
            got_slow = true;
            ck_assert_int_eq(field(d, "status"), SB_OK);
            ck_assert_int_eq(field(d, "post"), SB_OK);
            ck_assert_int_eq(field(d, "data_set"), SB_ERR_RETIRED);
            ck_assert_int_eq(field(d, "state_set"), SB_ERR_RETIRED);
        } else {
            got_post = true;
        }
        json_decref(d);
    }
    ck_assert(got_slow && got_post);
    ck_assert_msg(
        srv_log_wait(&srv, "unloaded plugin 'r' (generation 1)", 1, SB_TIMEOUT),
        "%s", srv_logtail(&srv));
    /* The new version's state for this client is untouched. */
    cli_send(c, "{\"event\":\"mine\"}");
    cli_expect(c, "{\"event\":\"mine\",\"data\":3}");
    ck_assert_str_eq(who_build(c, NULL), "b");
    /* The disconnect releases the slot: nothing of build a is called. */
    ws_close(c);
    ck_assert(srv_log_wait(&srv, "client 1 left build b", 1, SB_TIMEOUT));
    srv_stop(&srv);
}
END_TEST

/* A build whose init fails must leave no pointer into its image: it is
 * not serving yet, so client_data_set() from its init is refused (before,
 * it wrote into slot 0, another instance's, and the client's disconnect
 * called the destructor in the unmapped image). */
START_TEST(test_failed_init_keeps_no_pointer)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    ck_assert_str_eq(who_build(c, NULL), "a");
    install_build("fail");
    hup();
    ck_assert(srv_log_wait(&srv, "the running version stays", 1, 30000));
    char want[96];
    snprintf(want, sizeof(want), "client_data_set in init: %d", SB_ERR_STATE);
    ck_assert_msg(strstr(srv_logtext(&srv), want), "no '%s' in:\n%s", want,
                  srv_logtail(&srv));
    ws_close(c);
    ck_assert(srv_log_wait(&srv, "client 1 left build a", 1, SB_TIMEOUT));
    srv_stop(&srv);
}
END_TEST

/* ---- disconnect hooks follow the plugin instances (issue 18.3) --------- */

/* A plugin added by a reload was told about the client (its connect hook,
 * as it has no resume hook), so it gets its disconnect; so does the plugin
 * without a connect hook that was there before. Before, the client's "hooks
 * up to" index was below the new plugin count, and neither got it. */
START_TEST(test_disconnect_reaches_added_plugin)
{
    start_reloadable(NULL, NULL);
    ws_client *c = cli_connect(&srv);
    ck_assert_str_eq(who_build(c, NULL), "a");
    FILE *ini = fopen(srv.ini, "a");
    fprintf(ini, "[plugin.probe]\nfile = %s/test-probe.so\njournal = %s\n",
            SB_TEST_PLUGIN_DIR, srv.journal);
    fclose(ini);
    hup();
    ck_assert(srv_log_wait(&srv, "1 added, 0 changed", 1, 30000));
    ck_assert(srv_journal_wait(&srv, "connect 1\n", SB_TIMEOUT));
    ck_assert_int_eq(ws_send_close(c, 4002, "bye"), 0);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(c, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(c);
    ck_assert_msg(srv_journal_wait(&srv, "disconnect 1 4002\n", SB_TIMEOUT),
                  "journal:\n%s", srv_journal(&srv));
    ck_assert_msg(
        srv_log_wait(&srv, "client 1 left build a (4002)", 1, SB_TIMEOUT), "%s",
        srv_logtail(&srv));
    srv_stop(&srv);
}
END_TEST

/* After a plugin is removed, the others still get the disconnects of the
 * clients they accepted, and a plugin that refused a client never gets its
 * disconnect. */
START_TEST(test_disconnect_after_removal)
{
    start_reloadable(NULL, "[plugin.probe]\nfile = %P/test-probe.so\n"
                           "journal = %J\nrefuse = 2\n");
    ws_client *a = cli_connect(&srv); /* 1: accepted */
    ck_assert(srv_journal_wait(&srv, "connect 1\n", SB_TIMEOUT));
    ws_client *b = cli_connect(&srv); /* 2: refused by probe */
    int code = 0;
    ck_assert_int_eq(ws_expect_close(b, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1008);
    ws_close(b);
    ck_assert(srv_journal_wait(&srv, "refuse 2\n", SB_TIMEOUT));
    srv_ini_replace(&srv, "[plugin.r]\n", "[plugin.r]\nenabled = false\n");
    hup();
    ck_assert(srv_log_wait(&srv, "0 added, 0 changed, 1 removed", 1, 30000));
    ws_client *c = cli_connect(&srv); /* 3: accepted */
    ck_assert(srv_journal_wait(&srv, "connect 3\n", SB_TIMEOUT));
    ws_client *d = cli_connect(&srv); /* 4: refused */
    ck_assert_int_eq(ws_expect_close(d, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(d);
    ck_assert(srv_journal_wait(&srv, "refuse 4\n", SB_TIMEOUT));
    ws_close(a);
    ws_close(c);
    ck_assert(srv_journal_wait(&srv, "disconnect 1 1006\n", SB_TIMEOUT));
    ck_assert(srv_journal_wait(&srv, "disconnect 3 1006\n", SB_TIMEOUT));
    const char *j = srv_journal(&srv);
    ck_assert_msg(!strstr(j, "disconnect 2 ") && !strstr(j, "disconnect 4 "),
                  "a refused client reached the refuser:\n%s", j);
    srv_stop(&srv);
}
END_TEST

/* ---- [gateway.X] settings changed by a reload (issue 18.7) ------------- */

/* A reload that changes a gateway's max_json_depth, ping_interval,
 * idle_timeout, max_connections_per_ip, rate_burst or tls_key cannot apply
 * it in a running process (as for [server]): it must say that a restart is
 * needed, naming the gateway and each key. Before, it said nothing. */
START_TEST(test_gateway_changes_need_restart)
{
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/sb-it-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(srv.dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout "
             "k1.pem -out cert.pem -days 2 -subj /CN=localhost >/dev/null "
             "2>&1 && cp k1.pem k2.pem",
             srv.dir);
    ck_assert_int_eq(system(cmd), 0);
    int gw_port = sb_test_free_port();
    char sections[1024];
    snprintf(sections, sizeof(sections),
             "[gateway.g2]\nport = %d\npath = /g2\nmax_json_depth = 10\n"
             "ping_interval = 20\nidle_timeout = 30\n"
             "max_connections_per_ip = 5\nrate_limit = 100\nrate_burst = 50\n"
             "tls_cert = %%D/cert.pem\ntls_key = %%D/k1.pem\n"
             "[plugin.nest]\nfile = %%P/nest-example.so\n",
             gw_port);
    srv_start_in(&srv, srv.dir, NULL, sections);
    static const struct {
        const char *from, *to, *key;
    } edits[] = {
        {"max_json_depth = 10", "max_json_depth = 20", "max_json_depth"},
        {"ping_interval = 20", "ping_interval = 25", "ping_interval"},
        {"idle_timeout = 30", "idle_timeout = 60", "idle_timeout"},
        {"max_connections_per_ip = 5", "max_connections_per_ip = 6",
         "max_connections_per_ip"},
        {"rate_burst = 50", "rate_burst = 70", "rate_burst"},
        {"k1.pem", "k2.pem", "tls_key"},
    };
    size_t n = sizeof(edits) / sizeof(edits[0]);
    for (size_t i = 0; i < n; i++)
        srv_ini_replace(&srv, edits[i].from, edits[i].to);
    hup();
    ck_assert_msg(srv_log_wait(&srv, "need a restart", 1, 30000), "%s",
                  srv_logtail(&srv));
    const char *log = srv_logtext(&srv);
    const char *line = strstr(log, "need a restart");
    const char *eol = line ? strchr(line, '\n') : NULL;
    for (size_t i = 0; i < n; i++) {
        char want[96];
        snprintf(want, sizeof(want), "[gateway.g2] %s", edits[i].key);
        const char *at = strstr(line, want);
        ck_assert_msg(at && (!eol || at < eol), "'%s' not in: %.*s", want,
                      eol ? (int)(eol - line) : 500, line);
    }
    /* The [server] gateway changed nothing, and nothing else is named. */
    ck_assert_ptr_null(strstr(log, "[gateway.*]"));
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"identity\",\"data\":3}");
    cli_expect(c, "3");
    ws_close(c);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reload");
    TCase *tc = tcase_create("reload");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fifty_swaps_under_traffic);
    tcase_add_test(tc, test_state_handed_over);
    tcase_add_test(tc, test_failed_reloads_change_nothing);
    tcase_add_test(tc, test_add_and_remove_by_editing_the_ini);
    tcase_add_test(tc, test_watch_reloads_a_replaced_file);
    tcase_add_test(tc, test_hundred_reloads_leave_nothing_mapped);
    tcase_add_test(tc, test_plugin_image_is_a_readable_file);
    suite_add_tcase(s, tc);
    /* Issue 18: what a retired version may do, hooks per instance, and
     * gateway settings (CK_RUN_CASE=lifecycle runs only these). */
    TCase *life = tcase_create("lifecycle");
    tcase_set_timeout(life, 300);
    tcase_add_test(life, test_retired_version_work_completes_safely);
    tcase_add_test(life, test_failed_init_keeps_no_pointer);
    tcase_add_test(life, test_disconnect_reaches_added_plugin);
    tcase_add_test(life, test_disconnect_after_removal);
    tcase_add_test(life, test_gateway_changes_need_restart);
    suite_add_tcase(s, life);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * The server's life: hooks in order (ready, connect, refusal, disconnect
 * with its code, unload), `-t` with good and bad configs, the CLI, and the
 * clean shutdown on SIGTERM and SIGINT with clients connected.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

static sb_srv srv;

START_TEST(test_hooks_order)
{
    srv_start(&srv, NULL,
              "[plugin.probe]\nfile = %P/test-probe.so\njournal = %J\n"
              "refuse = 2\n");
    ck_assert(srv_journal_wait(&srv, "ready\n", SB_TIMEOUT));
    ws_client *a = cli_connect(&srv); /* id 1: accepted */
    ck_assert(srv_journal_wait(&srv, "connect 1\n", SB_TIMEOUT));
    /* id 2 is refused by the connect hook: close 1008 before any message. */
    ws_client *b = cli_connect(&srv);
    int code = 0;
    ck_assert_int_eq(ws_expect_close(b, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1008);
    ws_close(b);
    ck_assert(srv_journal_wait(&srv, "refuse 2\n", SB_TIMEOUT));
    ck_assert_int_eq(ws_send_close(a, 4001, "done"), 0);
    ck_assert_int_eq(ws_expect_close(a, SB_TIMEOUT, &code, NULL, 0), 0);
    ws_close(a);
    ck_assert(srv_journal_wait(&srv, "disconnect 1 4001\n", SB_TIMEOUT));
    /* A dropped connection (no close frame) is reported as 1006. */
    ws_client *c = cli_connect(&srv); /* id 3 */
    ck_assert(srv_journal_wait(&srv, "connect 3\n", SB_TIMEOUT));
    ws_close(c);
    ck_assert(srv_journal_wait(&srv, "disconnect 3 1006\n", SB_TIMEOUT));
    /* The refused client is no news to the plugin that refused it. */
    ck_assert_ptr_null(strstr(srv_journal(&srv), "disconnect 2 "));
    srv_stop(&srv);
}
END_TEST

START_TEST(test_shutdown_closes_clients)
{
    srv_start_default(&srv, NULL);
    ws_client *a = cli_connect(&srv);
    ws_client *b = cli_connect(&srv);
    cli_send(a, "{\"event\":\"identity\",\"data\":1}");
    cli_expect(a, "1");
    ck_assert_int_eq(kill(srv.pid, SIGTERM), 0);
    int code = 0;
    char reason[64];
    ck_assert_int_eq(
        ws_expect_close(a, SB_TIMEOUT, &code, reason, sizeof(reason)), 0);
    ck_assert_int_eq(code, 1001);
    /* Answer the close as a client would; b does not answer at all. */
    ws_send_close(a, 1001, "");
    ck_assert_int_eq(ws_expect_close(b, SB_TIMEOUT, &code, NULL, 0), 0);
    ck_assert_int_eq(code, 1001);
    int status = -1;
    ck_assert_int_eq(sb_test_stop(srv.pid, 0, 30000, &status), 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
                  status);
    const char *j = srv_journal(&srv);
    ck_assert_msg(strstr(j, "disconnect 1 1001\n") &&
                      strstr(j, "disconnect 2 1001\n"),
                  "%s", j);
    /* Plugins are unloaded after every client is gone. */
    ck_assert_msg(strstr(j, "unload\n") > strstr(j, "disconnect 2"), "%s", j);
    ws_close(a);
    ws_close(b);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_sigint)
{
    srv_start_default(&srv, NULL);
    int status = -1;
    ck_assert_int_eq(sb_test_stop(srv.pid, SIGINT, 30000, &status), 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert(strstr(srv_journal(&srv), "ready\nunload\n"));
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static void write_ini(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_check_config)
{
    char out[65536];
    char ini[] = "/tmp/sb-it-check-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(ini));
    char good[400], bad[400];
    snprintf(good, sizeof(good), "%s/good.ini", ini);
    snprintf(bad, sizeof(bad), "%s/bad.ini", ini);
    char text[2048];
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.nest]\nfile = %s/nest-example.so"
             "\n",
             SB_TEST_PLUGIN_DIR);
    write_ini(good, text);
    const char *g[] = {"-t", "-c", good, NULL};
    ck_assert_int_eq(srv_run(g, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "configuration is valid"), "%s", out);

    /* Every reason at once: a bad key, a bad value, a missing plugin, a
     * plugin with a wrong ABI, an init failure, a duplicate event. */
    snprintf(text, sizeof(text),
             "[server]\nprot = 1\nport = abc\n"
             "[plugin.nest]\nfile = %s/nest-example.so\n"
             "[plugin.gone]\nfile = nowhere/gone.so\n"
             "[plugin.major]\nfile = %s/test-bad-major.so\n"
             "[plugin.fails]\nfile = %s/test-init-fails.so\n"
             "[plugin.dup]\nfile = %s/test-dup-event.so\n"
             "[plugin.maybe]\nfile = nowhere/maybe.so\noptional = true\n",
             SB_TEST_PLUGIN_DIR, SB_TEST_PLUGIN_DIR, SB_TEST_PLUGIN_DIR,
             SB_TEST_PLUGIN_DIR);
    write_ini(bad, text);
    const char *b[] = {"--check-config", "--config", bad, NULL};
    ck_assert_int_eq(srv_run(b, out, sizeof(out)), 1);
    static const char *reasons[] = {
        "bad.ini:2: unknown key 'prot'",
        "bad.ini:3: bad value 'abc' for 'port'",
        "nowhere/gone.so: file not found",
        "major versions differ",
        "init failed: database unreachable",
        "event 'identity' is already handled by plugin 'nest'",
        "plugin 'maybe' (optional) skipped",
        "test failed"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        ck_assert_msg(strstr(out, reasons[i]), "missing '%s' in:\n%s",
                      reasons[i], out);
    /* A bad config is not served either. */
    const char *serve[] = {"-c", bad, NULL};
    ck_assert_int_eq(srv_run(serve, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "not starting"), "%s", out);
    /* A missing config file. */
    const char *missing[] = {"-t", "-c", "/nonexistent/sb.ini", NULL};
    ck_assert_int_eq(srv_run(missing, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "/nonexistent/sb.ini"), "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", ini);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* A [plugin.X] section with no `file` (a typo) or an empty one: -t and a
 * start report it and exit 1. Before, both died of SIGSEGV in the plugin
 * host (strdup(NULL)) after printing the config error. */
START_TEST(test_check_config_no_file)
{
    char dir[] = "/tmp/sb-it-nofile-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[400], text[2048], out[65536];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    static const struct {
        const char *section, *reason;
    } cases[] = {
        {"[plugin.typo]\nfiel = x.so\n", "missing key 'file' in [plugin.typo]"},
        {"[plugin.empty]\nfile =\n", "bad value '' for 'file'"},
        {"[plugin.empty]\nfile =\noptional = yes\n", "bad value '' for 'file'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text),
                 "[server]\nport = 3999\n[plugin.nest]\nfile = "
                 "%s/nest-example.so\n%s",
                 SB_TEST_PLUGIN_DIR, cases[i].section);
        write_ini(ini, text);
        const char *check[] = {"-t", "-c", ini, NULL};
        ck_assert_int_eq(srv_run(check, out, sizeof(out)), 1);
        ck_assert_msg(strstr(out, cases[i].reason), "%s", out);
        ck_assert_msg(strstr(out, "test failed"), "%s", out);
        const char *serve[] = {"-c", ini, NULL};
        ck_assert_int_eq(srv_run(serve, out, sizeof(out)), 1);
        ck_assert_msg(strstr(out, "not starting"), "%s", out);
    }
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

/* Work a plugin's init queued is still running (or queued) when -t is done,
 * or when a later plugin is missing and the server refuses to start: its
 * completion must run (or be cancelled) before the post queue's lock is
 * destroyed. Before, both ended in abort() (exit 134). */
START_TEST(test_pending_init_work_at_exit)
{
    char dir[] = "/tmp/sb-it-initwork-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[400], text[2048], out[65536];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\n[plugin.r]\nfile = %s/test-reload-a.so\n"
             "init_work_ms = 300\n",
             SB_TEST_PLUGIN_DIR);
    write_ini(ini, text);
    const char *check[] = {"-t", "-c", ini, NULL};
    ck_assert_int_eq(srv_run(check, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "configuration is valid"), "%s", out);
    ck_assert_msg(strstr(out, "init work of build a: "), "%s", out);

    /* The same plugin, then one that is missing: no start, exit 1. */
    snprintf(text + strlen(text), sizeof(text) - strlen(text),
             "[plugin.gone]\nfile = %s/nowhere.so\n", dir);
    write_ini(ini, text);
    const char *serve[] = {"-c", ini, NULL};
    ck_assert_int_eq(srv_run(serve, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "nowhere.so: file not found"), "%s", out);
    ck_assert_msg(strstr(out, "not starting"), "%s", out);
    ck_assert_msg(strstr(out, "init work of build a: "), "%s", out);
    ck_assert_int_eq(srv_run(check, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "test failed"), "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

START_TEST(test_cli)
{
    char out[8192];
    const char *v[] = {"--version", NULL};
    ck_assert_int_eq(srv_run(v, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "switchboard ") && strstr(out, "plugin ABI 1."),
                  "%s", out);
    const char *h[] = {"--help", NULL};
    ck_assert_int_eq(srv_run(h, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "--check-config"), "%s", out);
    const char *bad[] = {"--frobnicate", NULL};
    ck_assert_int_eq(srv_run(bad, out, sizeof(out)), 2);
}
END_TEST

START_TEST(test_port_in_use)
{
    srv_start_default(&srv, NULL);
    char text[1024], ini[] = "/tmp/sb-it-port-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(ini));
    char path[400];
    snprintf(path, sizeof(path), "%s/t.ini", ini);
    snprintf(text, sizeof(text),
             "[server]\nhost = 127.0.0.1\nport = %d\n[plugin.nest]\nfile = "
             "%s/nest-example.so\n",
             srv.port, SB_TEST_PLUGIN_DIR);
    write_ini(path, text);
    char out[8192];
    const char *args[] = {"-c", path, NULL};
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "cannot listen"), "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", ini);
    ck_assert_int_eq(system(text), 0);
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_hooks_order);
    tcase_add_test(tc, test_shutdown_closes_clients);
    tcase_add_test(tc, test_sigint);
    tcase_add_test(tc, test_check_config);
    tcase_add_test(tc, test_check_config_no_file);
    tcase_add_test(tc, test_pending_init_work_at_exit);
    tcase_add_test(tc, test_cli);
    tcase_add_test(tc, test_port_in_use);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

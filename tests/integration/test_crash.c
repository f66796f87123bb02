/*
 * Crash diagnostics: when a plugin crashes the server, the log names the
 * plugin instance and the callback that was running, with a backtrace, and
 * the process dies of the signal (so the exit status, and systemd, say so).
 *
 * The exit status depends on what runs the server, and the test says so
 * rather than skip the check:
 *   - plain build: the original signal (SIGSEGV, SIGABRT);
 *   - ASan build (this test is then built with ASan too): crash.c chains to
 *     ASan's SIGSEGV handler, which prints its report and ends the process
 *     itself, with SIGABRT under abort_on_error=1 (as scripts/test sets it)
 *     or exit status 1; ASan leaves SIGABRT alone, so abort() is a SIGABRT;
 *   - valgrind (SB_TEST_WRAPPER): valgrind passes the signal to our handler,
 *     and when the default action kills the client it kills itself with the
 *     same signal, so the status is the original signal there too.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static sb_srv srv;

static const char crasher[] = "[plugin.boom]\nfile = %P/test-crasher.so\n";

/* The end of the log, short enough for a Check message (which has a
 * limit) and where the crash report is. */
static const char *tail(const char *log)
{
    size_t n = strlen(log);
    return n > 3000 ? log + n - 3000 : log;
}

/* Waits for the server to die by itself and returns its wait status. */
static int wait_death(void)
{
    int status = -1;
    ck_assert_msg(sb_test_stop(srv.pid, 0, 60000, &status) == 0,
                  "the server did not die:\n%s", tail(srv_logtext(&srv)));
    return status;
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Asserts that the process ended as a process killed by `sig` ends here.
 * ASan's own SIGSEGV handler ends it its own way (see the top). */
static void assert_died_of(int status, int sig, const char *log)
{
    if (UNDER_ASAN && sig != SIGABRT) {
        ck_assert_msg((WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
                          (WIFEXITED(status) && WEXITSTATUS(status) != 0),
                      "status %d under ASan, log:\n%s", status, tail(log));
        ck_assert_msg(strstr(log, "AddressSanitizer"),
                      "no ASan report after ours:\n%s", tail(log));
        return;
    }
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == sig,
                  "expected death by signal %d, got status %d (%s %d), "
                  "log:\n%s",
                  sig, status, WIFSIGNALED(status) ? "signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                  tail(log));
}

/* The backtrace lines after our "backtrace (" header, each
 * "FILE(SYMBOL+OFFSET)[ADDRESS]" or "FILE(+OFFSET)[ADDRESS]". Counts them,
 * and how many of them contain `mark` (may be NULL). */
static int backtrace_lines(const char *log, const char *mark, int *marked)
{
    const char *p = strstr(log, "[crash] backtrace (");
    int n = 0;
    if (marked)
        *marked = 0;
    p = p ? strchr(p, '\n') : NULL;
    while (p && p[1]) {
        const char *line = p + 1;
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* Under valgrind its own report ("==PID== ...") can land between
         * our lines in the same log: skip it. */
        if (len >= 2 && line[0] == '=' && line[1] == '=') {
            p = end;
            continue;
        }
        if (len < 4 || line[len - 1] != ']' || !memmem(line, len, "[0x", 3))
            break;
        n++;
        if (mark && marked && memmem(line, len, mark, strlen(mark)))
            (*marked)++;
        p = end;
    }
    return n;
}

/* Crashes the plugin with `event`; the log must also contain `also`. */
static void crash_with(const char *event, int sig, const char *signame,
                       const char *also)
{
    srv_start(&srv, NULL, crasher);
    ws_client *c = cli_connect(&srv);
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"event\":\"%s\",\"data\":1}", event);
    cli_send(c, msg);
    int status = wait_death();
    ws_close(c);
    const char *log = srv_logtext(&srv);

    char want[160];
    snprintf(want, sizeof(want),
             " error [crash] fatal signal %s (%d) in plugin 'boom', "
             "handler of event '%s'",
             signame, sig, event);
    ck_assert_msg(strstr(log, want), "no '%s' in the log:\n%s", want,
                  tail(log));
    /* The plugin's own frame is in it, named so that an operator can tell
     * which plugin file the offset is in: by the file, or (the host loads
     * plugins from a memfd) by the memfd's name, which holds the instance
     * name. */
    int in_plugin = 0, in_file = 0;
    ck_assert_msg(backtrace_lines(log, "boom", &in_plugin) >= 3,
                  "a short backtrace:\n%s", tail(log));
    backtrace_lines(log, "test-crasher.so(", &in_file);
    ck_assert_msg(in_plugin + in_file >= 1, "no plugin frame:\n%s", tail(log));
    ck_assert_msg(strstr(log, also), "no '%s' in the log:\n%s", also,
                  tail(log));
    assert_died_of(status, sig, log);
    cleanup();
}

START_TEST(test_segv_in_plugin)
{
    /* A NULL dereference: the kernel's fault address says so. */
    crash_with("crash", SIGSEGV, "SIGSEGV", "'crash', fault address 0x0\n");
}
END_TEST

/* Runaway recursion: the handler can only run on its alternate stack. */
START_TEST(test_stack_overflow_in_plugin)
{
    crash_with("recurse", SIGSEGV, "SIGSEGV", "'recurse', fault address 0x");
}
END_TEST

START_TEST(test_abort_in_plugin)
{
    crash_with("abort", SIGABRT, "SIGABRT", "'abort'\n");
}
END_TEST

/* A call into code that is no longer mapped (a pointer into an unloaded
 * plugin): backtrace() cannot unwind from the faulting frame (it reads the
 * instructions at the faulting address), and used to fault again inside the
 * handler, which left no backtrace at all. The caller's frames are there. */
START_TEST(test_jump_to_unmapped_code)
{
    crash_with("jump", SIGSEGV, "SIGSEGV", "'jump', fault address 0x");
}
END_TEST

/* A client data destructor that crashes, at the client's disconnect: the
 * report names the plugin whose slot it was (not "?"). */
START_TEST(test_crash_in_client_data_destructor)
{
    srv_start(&srv, NULL, crasher);
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"destructor\"}");
    cli_expect(c, "{\"event\":\"kept\"}");
    /* Its disconnect runs the destructor. */
    ws_close(c);
    int status = wait_death();
    const char *log = srv_logtext(&srv);
    const char *want = " error [crash] fatal signal SIGSEGV (11) in plugin "
                       "'boom', client data destructor";
    ck_assert_msg(strstr(log, want), "no '%s' in the log:\n%s", want,
                  tail(log));
    int in_plugin = 0, in_file = 0;
    ck_assert_msg(backtrace_lines(log, "boom", &in_plugin) >= 3,
                  "a short backtrace:\n%s", tail(log));
    backtrace_lines(log, "test-crasher.so(", &in_file);
    ck_assert_msg(in_plugin + in_file >= 1, "no plugin frame:\n%s", tail(log));
    assert_died_of(status, SIGSEGV, log);
    cleanup();
}
END_TEST

/* Outside plugin code the report says so, and a signal sent with kill(2)
 * carries no fault address. SIGABRT, not a fault signal such as SIGBUS:
 * valgrind treats SIGSEGV/SIGBUS/SIGILL/SIGFPE as synchronous faults, and
 * one sent from outside while the server waits in epoll_wait() is at times
 * never delivered under it. The plugin was called before, so this also
 * proves that sb_crash_leave() cleared the context. */
START_TEST(test_signal_in_core)
{
    srv_start(&srv, NULL, "[plugin.nest]\nfile = %P/nest-example.so\n");
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"identity\",\"data\":7}");
    cli_expect(c, "7");
    ck_assert_int_eq(kill(srv.pid, SIGABRT), 0);
    int status = wait_death();
    ws_close(c);
    const char *log = srv_logtext(&srv);
    ck_assert_msg(strstr(log, " error [crash] fatal signal SIGABRT (6) in the "
                              "core\n"),
                  "log:\n%s", tail(log));
    ck_assert_msg(backtrace_lines(log, NULL, NULL) >= 3,
                  "a short backtrace:\n%s", tail(log));
    assert_died_of(status, SIGABRT, log);
    cleanup();
}
END_TEST

static Suite *crash_suite(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_segv_in_plugin);
    tcase_add_test(tc, test_stack_overflow_in_plugin);
    tcase_add_test(tc, test_abort_in_plugin);
    tcase_add_test(tc, test_jump_to_unmapped_code);
    tcase_add_test(tc, test_crash_in_client_data_destructor);
    tcase_add_test(tc, test_signal_in_core);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(crash_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

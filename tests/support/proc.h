/*
 * proc — start, wait for and stop a server process from a test.
 *
 * Integration tests run the real server binary as a child process and talk
 * to it over 127.0.0.1. These helpers keep that bounded and tidy: a spawned
 * child dies with the test process (PR_SET_PDEATHSIG), so a crashed or
 * timed-out test leaves no server behind holding a port; every wait has a
 * timeout; stopping reaps the child and reports how it ended, so a test can
 * assert a clean exit on SIGTERM. Failures return -1 and leave a reason in
 * sb_test_error() (per thread).
 */
#ifndef SB_TEST_PROC_H
#define SB_TEST_PROC_H

#include <sys/types.h>

/* Starts argv[0] (looked up in PATH if it has no slash) with argv, the
 * environment of the caller and its stdin, stdout and stderr. 0 with *pid
 * set, or -1 if the fork or the exec failed (an exec failure is reported
 * here, not as an exit status later). */
int sb_test_spawn(char *const argv[], pid_t *pid);
/* Same, with the child's stdout and stderr appended to log_path (created if
 * needed), so a test can read what the server logged. */
int sb_test_spawn_log(char *const argv[], const char *log_path, pid_t *pid);

/* A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it
 * for a socket bound to port 0, which is then closed. Another process could
 * take it before the server binds it, which on a test machine is rare
 * enough; the server's bind error makes it visible. -1 on error. */
int sb_test_free_port(void);

/* Waits until a TCP connect to 127.0.0.1:port succeeds. 0, or -1 on
 * timeout. Each probe connects and closes at once. */
int sb_test_wait_port(int port, int timeout_ms);
/* Same, but gives up as soon as pid exits (say, on a bad config), with its
 * wait status in *exit_status (may be NULL) and the child reaped. 0 when
 * the port answers, -1 on timeout or exit. */
int sb_test_wait_ready(pid_t pid, int port, int timeout_ms, int *exit_status);

/* Sends sig to pid (0 sends nothing: wait for an exit already under way)
 * and waits up to timeout_ms for it to exit. 0 if it did, with its wait
 * status (for WIFEXITED, WEXITSTATUS, WIFSIGNALED...) in *exit_status (may
 * be NULL). If it did not, it is sent SIGKILL, reaped, and -1 is returned.
 * Either way the child is gone afterwards. */
int sb_test_stop(pid_t pid, int sig, int timeout_ms, int *exit_status);

const char *sb_test_error(void);

#endif

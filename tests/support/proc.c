/*
 * proc — see proc.h.
 *
 * Waiting is done by polling (waitpid WNOHANG, connect probes) every few
 * milliseconds rather than with SIGCHLD or pidfds: the test binary may run
 * under Check's fork mode or valgrind, and polling needs no signal handlers
 * and nothing newer than POSIX.
 */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POLL_STEP_MS 5

static _Thread_local char proc_error[256];

static void set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(proc_error, sizeof(proc_error), fmt, ap);
    va_end(ap);
}

const char *sb_test_error(void)
{
    return proc_error;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void child_exec(char *const argv[], int log_fd, int err_fd, pid_t parent)
{
    /* Die with the test: a server orphaned by a crashed test would keep
     * its port and break the next run. If the parent is already gone the
     * signal will never come, so leave now. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(127);
    /* Ignored signals and the signal mask survive exec; a test runner that
     * ignores SIGPIPE or blocks SIGTERM must not pass that on to the
     * server under test. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    if (log_fd >= 0) {
        if (dup2(log_fd, STDOUT_FILENO) < 0 ||
            dup2(log_fd, STDERR_FILENO) < 0) {
            int e = errno;
            (void)!write(err_fd, &e, sizeof(e));
            _exit(127);
        }
    }
    execvp(argv[0], argv);
    int e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(127);
}

int sb_test_spawn_log(char *const argv[], const char *log_path, pid_t *pid)
{
    if (!argv || !argv[0]) {
        set_err("spawn: empty argv");
        return -1;
    }
    int log_fd = -1;
    if (log_path) {
        log_fd =
            open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            set_err("spawn: open %s: %s", log_path, strerror(errno));
            return -1;
        }
    }
    /* A close-on-exec pipe tells exec failure from a child that ran: it
     * reads EOF on success, the child's errno on failure. */
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        set_err("spawn: pipe: %s", strerror(errno));
        if (log_fd >= 0)
            close(log_fd);
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL); /* or buffered output would be written twice */
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        child_exec(argv, log_fd, p[1], parent);
    }
    int fork_errno = errno;
    close(p[1]);
    if (log_fd >= 0)
        close(log_fd);
    if (child < 0) {
        close(p[0]);
        set_err("spawn: fork: %s", strerror(fork_errno));
        return -1;
    }
    int e = 0;
    ssize_t n;
    while ((n = read(p[0], &e, sizeof(e))) < 0 && errno == EINTR)
        ;
    close(p[0]);
    if (n > 0) {
        waitpid(child, NULL, 0);
        set_err("spawn: exec %s: %s", argv[0], strerror(e));
        return -1;
    }
    *pid = child;
    return 0;
}

int sb_test_spawn(char *const argv[], pid_t *pid)
{
    return sb_test_spawn_log(argv, NULL, pid);
}

int sb_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err("free_port: socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        set_err("free_port: %s", strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* One connect probe: 1 if something listens on 127.0.0.1:port. */
static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* On loopback a blocking connect is answered at once (accepted into
     * the backlog or refused), so it cannot hang. */
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

int sb_test_wait_ready(pid_t pid, int port, int timeout_ms, int *exit_status)
{
    int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        if (port_open(port))
            return 0;
        if (pid > 0) {
            int st;
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) {
                if (exit_status)
                    *exit_status = st;
                if (WIFEXITED(st))
                    set_err("process %d exited with status %d before "
                            "port %d opened",
                            (int)pid, WEXITSTATUS(st), port);
                else
                    set_err("process %d killed by signal %d before port "
                            "%d opened",
                            (int)pid, WTERMSIG(st), port);
                return -1;
            }
        }
        if (now_ms() >= deadline) {
            set_err("port %d not open after %d ms", port, timeout_ms);
            return -1;
        }
        sleep_ms(POLL_STEP_MS);
    }
}

int sb_test_wait_port(int port, int timeout_ms)
{
    return sb_test_wait_ready(0, port, timeout_ms, NULL);
}

int sb_test_stop(pid_t pid, int sig, int timeout_ms, int *exit_status)
{
    if (pid <= 0) {
        set_err("stop: bad pid %d", (int)pid);
        return -1;
    }
    if (sig && kill(pid, sig) < 0 && errno != ESRCH) {
        set_err("stop: kill %d: %s", (int)pid, strerror(errno));
        return -1;
    }
    int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (exit_status)
                *exit_status = st;
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            set_err("stop: waitpid %d: %s", (int)pid, strerror(errno));
            return -1;
        }
        if (now_ms() >= deadline)
            break;
        sleep_ms(POLL_STEP_MS);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (exit_status)
        *exit_status = st;
    set_err("stop: process %d still running %d ms after signal %d; killed",
            (int)pid, timeout_ms, sig);
    return -1;
}

/*
 * supervisor — the master process of worker mode: fork, reap, respawn with
 * backoff, forward signals (supervisor.h).
 */
#include "supervisor.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_MS      10000 /* a worker that ran this long was healthy */
#define KILL_GRACE_MS  5000  /* after shutdown_timeout, before SIGKILL */

static unsigned long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000 +
           (unsigned long long)ts.tv_nsec / 1000000;
}

/* Forks worker i. Returns the child's pid in the master, 0 in the child
 * (with the old mask restored), -1 when fork failed. */
static pid_t spawn(sb_worker_slot *w, unsigned i, const sigset_t *old,
                   pid_t master)
{
    pid_t pid = fork();
    if (pid < 0) {
        sb_log_error("master", "cannot start worker %u: %s", i + 1,
                     strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Dies with the master, gracefully; and if the master is already
         * gone (it died between fork and here), does not start at all. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(1);
        /* SIGCHLD back as it was; the stop and reload signals stay blocked
         * until the worker's handlers are in place
         * (sb_supervisor_worker_signals()). */
        sigset_t keep = *old;
        sigaddset(&keep, SIGTERM);
        sigaddset(&keep, SIGINT);
        sigaddset(&keep, SIGHUP);
        sigprocmask(SIG_SETMASK, &keep, NULL);
        return 0;
    }
    w->pid = pid;
    w->started_ms = now_ms();
    sb_log_info("master", "worker %u started (pid %d)", i + 1, (int)pid);
    return pid;
}

static void describe_exit(unsigned i, pid_t pid, int status, bool stopping)
{
    if (WIFEXITED(status))
        sb_log(stopping && WEXITSTATUS(status) == 0 ? SB_LOG_INFO : SB_LOG_WARN,
               "master", "worker %u (pid %d) exited with status %d", i + 1,
               (int)pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        sb_log_warn("master", "worker %u (pid %d) killed by signal %d (%s)",
                    i + 1, (int)pid, WTERMSIG(status),
                    strsignal(WTERMSIG(status)));
}

int sb_supervise(unsigned n, unsigned shutdown_timeout_s,
                 const sb_supervisor_hooks *hooks, unsigned *worker)
{
    *worker = 0;
    sb_worker_slot *slots = calloc(n, sizeof(*slots));
    if (!slots) {
        sb_log_error("master", "out of memory");
        return 1;
    }
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t master = getpid();
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        sb_log_error("master", "signalfd: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        free(slots);
        return 1;
    }
    sb_log_info("master", "pid %d, %u workers", (int)master, n);

    for (unsigned i = 0; i < n; i++) {
        pid_t pid = spawn(&slots[i], i, &old, master);
        if (pid == 0) {
            free(slots);
            close(sfd);
            *worker = i + 1;
            return 0;
        }
        if (pid < 0) {
            slots[i].delay_ms = BACKOFF_MIN_MS;
            slots[i].due_ms = now_ms() + BACKOFF_MIN_MS;
        }
    }

    bool stopping = false, killed = false, failed = false;
    unsigned long long deadline = 0;
    for (;;) {
        unsigned live = 0;
        unsigned long long now = now_ms(), wake = now + 1000;
        for (unsigned i = 0; i < n; i++) {
            if (slots[i].pid)
                live++;
            else if (!stopping && slots[i].due_ms < wake)
                wake = slots[i].due_ms;
        }
        if (stopping && !live)
            break;
        if (stopping && !killed && deadline < wake)
            wake = deadline;
        struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {-1, POLLIN, 0}};
        if (hooks && hooks->readable)
            pfd[1].fd = hooks->fd;
        int ready = poll(pfd, 2, (int)(wake > now ? wake - now : 0));
        int sig = 0;
        struct signalfd_siginfo si;
        if (ready > 0 && (pfd[0].revents & POLLIN) &&
            read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            sig = (int)si.ssi_signo;
        if (ready > 0 && pfd[1].fd >= 0 && (pfd[1].revents & POLLIN))
            hooks->readable(hooks->ctx, slots, n);
        now = now_ms();
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping)
                sb_log_info("master", "%s received: stopping %u worker(s)",
                            sig == SIGINT ? "SIGINT" : "SIGTERM", live);
            if (!stopping)
                deadline = now + (unsigned long long)shutdown_timeout_s * 1000 +
                           KILL_GRACE_MS;
            stopping = true;
            for (unsigned i = 0; i < n; i++)
                if (slots[i].pid)
                    kill(slots[i].pid, SIGTERM);
        } else if (sig == SIGHUP && !stopping) {
            if (hooks && hooks->hup)
                hooks->hup(hooks->ctx);
            char list[512] = "";
            size_t len = 0;
            for (unsigned i = 0; i < n; i++) {
                if (!slots[i].pid || kill(slots[i].pid, SIGHUP) != 0)
                    continue;
                int k =
                    snprintf(list + len, sizeof(list) - len, "%s%u (pid %d)",
                             len ? ", " : "", i + 1, (int)slots[i].pid);
                if (k > 0 && (size_t)k < sizeof(list) - len)
                    len += (size_t)k;
            }
            sb_log_info("master",
                        "SIGHUP received: workers %s reload (each logs "
                        "its result)",
                        len ? list : "(none running)");
        }
        /* Whatever woke us: collect every worker that is gone. */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                sb_worker_slot *w = &slots[i];
                if (w->pid != pid)
                    continue;
                w->pid = 0;
                w->last_status = status;
                describe_exit(i, pid, status, stopping);
                if (stopping) {
                    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        failed = true;
                    break;
                }
                /* One that dies soon after its start backs off, so a
                 * worker that cannot start does not spin the CPU. */
                if (now - w->started_ms < STABLE_MS)
                    w->delay_ms =
                        w->delay_ms ? w->delay_ms * 2 : BACKOFF_MIN_MS;
                else
                    w->delay_ms = 0;
                if (w->delay_ms > BACKOFF_MAX_MS)
                    w->delay_ms = BACKOFF_MAX_MS;
                w->due_ms = now + w->delay_ms;
                if (w->delay_ms)
                    sb_log_warn("master", "worker %u restarts in %u ms", i + 1,
                                w->delay_ms);
                break;
            }
        }
        if (stopping && !killed && now >= deadline) {
            killed = true;
            for (unsigned i = 0; i < n; i++)
                if (slots[i].pid) {
                    sb_log_warn("master",
                                "worker %u (pid %d) still running after "
                                "shutdown_timeout: killing it",
                                i + 1, (int)slots[i].pid);
                    kill(slots[i].pid, SIGKILL);
                    failed = true;
                }
        }
        for (unsigned i = 0; i < n && !stopping; i++) {
            sb_worker_slot *w = &slots[i];
            if (w->pid || w->due_ms > now)
                continue;
            w->restarts++;
            pid_t child = spawn(w, i, &old, master);
            if (child == 0) {
                free(slots);
                close(sfd);
                *worker = i + 1;
                return 0;
            }
            if (child < 0) {
                w->delay_ms = w->delay_ms ? w->delay_ms * 2 : BACKOFF_MIN_MS;
                if (w->delay_ms > BACKOFF_MAX_MS)
                    w->delay_ms = BACKOFF_MAX_MS;
                w->due_ms = now + w->delay_ms;
            }
        }
    }
    close(sfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(slots);
    sb_log_info("master", "every worker stopped");
    return failed ? 1 : 0;
}

void sb_supervisor_worker_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/*
 * crash — the last words of a dying process. On a fatal signal (SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL, SIGABRT) the handler writes one log line naming
 * the plugin and callback that were running (from sb_crash_ctx, set by the
 * host around every call into plugin code), then a backtrace, then dies of
 * the same signal so that the exit status, the core dump and systemd's
 * Restart=on-failure all see what happened.
 *
 * Everything the handler does is async-signal-safe: it formats by hand into
 * a static buffer (no snprintf, no gmtime) and writes with write(2).
 * backtrace() loads libgcc_s on its first call, which allocates, so
 * install() calls it once beforehand. Each frame is named with dladdr(),
 * as backtrace_symbols_fd() does, in the same "FILE(SYMBOL+OFF)[ADDR]"
 * form. The plugin host loads each plugin from a private copy named
 * NAME.gGEN.PID.SEQ.so (instance, generation), which the "loaded plugin"
 * log line ties to its file. When it had to fall back to a memfd, loaded
 * through its /proc/self/fd path, which means nothing once the process is
 * gone, such a frame is named by what the link points to (readlink(2) is
 * async-signal-safe): the memfd's name, "sb:NAME:gGEN". The handler
 * runs on a static alternate stack so that a stack overflow in a plugin (the
 * classic runaway recursion) is reported too; a static buffer is never freed
 * and is no leak to valgrind.
 *
 * A jump into code that is no longer mapped (a pointer into a plugin image
 * that was dlclosed) is the one fault backtrace() cannot start from: the
 * unwinder reads the instructions at the faulting address (to recognise a
 * signal trampoline), faults again inside the handler, and the kernel kills
 * the process before one frame is written. So when the faulting address is
 * not mapped (mincore(2), a plain system call, says so), the handler makes
 * the context the kernel saved look as if that frame had already returned
 * to its caller: the return address is at the top of the stack on x86-64,
 * in the link register on AArch64. The backtrace then starts at the caller
 * (the frame that called the dead code). The context stays so for a
 * chained handler: ASan's unwinds the same way and would fault on the dead
 * frame too (its report then shows the caller's pc; the fault address is
 * the dead code's). Elsewhere it says why there is no backtrace.
 *
 * Sanitizers: AddressSanitizer installs its own handlers for SIGSEGV,
 * SIGBUS and SIGFPE (and its own alternate stack) before main(). We do not
 * replace its report, which is better than ours (shadow memory, the faulting
 * access); we chain: our handler writes the plugin line and backtrace, then
 * calls the handler that was there before with the same siginfo and
 * context. ASan then prints its report and ends the process its own way
 * (exit 1, or SIGABRT with abort_on_error=1), so in an ASan build the exit
 * status is ASan's, not the original signal. The same chaining serves any
 * other earlier handler; with none, we re-raise with the default action.
 */
#include "crash.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SB_CRASH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_CRASH_ASAN 1
#endif
#endif
#ifndef SB_CRASH_ASAN
#define SB_CRASH_ASAN 0
#endif

_Thread_local sb_crash_context sb_crash_ctx;

/* Generous for the unwinder; untouched pages of .bss cost no memory. (Under
 * ASan its own, already installed stack is kept.) */
static char crash_stack[256 * 1024] __attribute__((aligned(16)));

static const struct {
    int sig;
    const char *name;
} fatal_signals[] = {{SIGSEGV, "SIGSEGV"},
                     {SIGBUS, "SIGBUS"},
                     {SIGFPE, "SIGFPE"},
                     {SIGILL, "SIGILL"},
                     {SIGABRT, "SIGABRT"}};

#define NSIGNALS (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

/* What each signal did before us, to chain to (ASan's handler, say). */
static struct sigaction previous[NSIGNALS];

/* Set by the first fatal signal: a second one (a fault inside the handler,
 * or abort() called by a chained handler) goes straight to the default. */
static volatile sig_atomic_t crashing;

/* ---- async-signal-safe formatting ------------------------------------- */

typedef struct out {
    char buf[1024];
    size_t len;
} out;

static void put_mem(out *o, const char *s, size_t n)
{
    if (n > sizeof(o->buf) - 1 - o->len)
        n = sizeof(o->buf) - 1 - o->len; /* room kept for the '\n' */
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* At most `max` bytes of s: a corrupted name must not run on forever. */
static void put_str(out *o, const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n])
        n++;
    put_mem(o, s, n);
}

static void put_uint(out *o, uintmax_t v, unsigned width)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof(tmp));
    while (n < width && n < sizeof(tmp))
        tmp[sizeof(tmp) - 1 - n++] = '0';
    put_mem(o, tmp + sizeof(tmp) - n, n);
}

static void put_hex(out *o, uintptr_t v)
{
    char tmp[2 + 2 * sizeof(v)];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[sizeof(tmp) - 1 - n++] = 'x';
    tmp[sizeof(tmp) - 1 - n++] = '0';
    put_mem(o, tmp + sizeof(tmp) - n, n);
}

/* The start of a log.c line, "2026-11-26T14:03:07.123Z error [crash] ".
 * gmtime_r() is not async-signal-safe, so the civil date is computed here
 * (Howard Hinnant's days-to-civil algorithm). */
static void put_prefix(out *o)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || now.tv_sec < 0) {
        put_str(o, "0000-00-00T00:00:00.000Z", 64);
    } else {
        int64_t secs = now.tv_sec;
        int64_t days = secs / 86400, rem = secs % 86400;
        int64_t z = days + 719468;
        int64_t era = z / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int64_t day = doy - (153 * mp + 2) / 5 + 1;
        int64_t month = mp < 10 ? mp + 3 : mp - 9;
        int64_t year = yoe + era * 400 + (month <= 2);
        put_uint(o, (uintmax_t)year, 4);
        put_mem(o, "-", 1);
        put_uint(o, (uintmax_t)month, 2);
        put_mem(o, "-", 1);
        put_uint(o, (uintmax_t)day, 2);
        put_mem(o, "T", 1);
        put_uint(o, (uintmax_t)(rem / 3600), 2);
        put_mem(o, ":", 1);
        put_uint(o, (uintmax_t)(rem / 60 % 60), 2);
        put_mem(o, ":", 1);
        put_uint(o, (uintmax_t)(rem % 60), 2);
        put_mem(o, ".", 1);
        put_uint(o, (uintmax_t)(now.tv_nsec / 1000000), 3);
        put_mem(o, "Z", 1);
    }
    put_str(o, " error [crash] ", 64);
}

static void flush_line(out *o)
{
    o->buf[o->len++] = '\n';
    const char *p = o->buf;
    size_t left = o->len;
    while (left > 0) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w <= 0)
            break; /* nothing better to do with an error while dying */
        p += w;
        left -= (size_t)w;
    }
    o->len = 0;
}

/* One backtrace line, "FILE(SYMBOL+0xOFF)[0xADDR]" or "FILE(+0xOFF)[..]"
 * (then OFF is what addr2line -e FILE takes). dladdr() only reads the
 * loader's tables (under a lock that only a crash inside dlopen on another
 * thread could be holding), as backtrace_symbols_fd() does too. */
static void put_frame(out *o, void *addr)
{
    Dl_info info;
    memset(&info, 0, sizeof(info));
    if (dladdr(addr, &info) && info.dli_fname && info.dli_fname[0]) {
        const char *file = info.dli_fname;
        static char link[256];
        if (strncmp(file, "/proc/self/fd/", 14) == 0) {
            ssize_t len = readlink(file, link, sizeof(link) - 1);
            if (len > 0) {
                static const char deleted[] = " (deleted)";
                size_t dl = sizeof(deleted) - 1;
                if ((size_t)len > dl &&
                    memcmp(link + len - dl, deleted, dl) == 0)
                    len -= (ssize_t)dl;
                link[len] = 0;
                file = link;
            }
        }
        put_str(o, file, 512);
        put_str(o, "(", 1);
        uintptr_t a = (uintptr_t)addr;
        if (info.dli_sname && info.dli_saddr) {
            put_str(o, info.dli_sname, 200);
            uintptr_t s = (uintptr_t)info.dli_saddr;
            put_str(o, a >= s ? "+" : "-", 1);
            put_hex(o, a >= s ? a - s : s - a);
        } else {
            put_str(o, "+", 1);
            put_hex(o, a - (uintptr_t)info.dli_fbase);
        }
        put_str(o, ")", 1);
    }
    put_str(o, "[", 1);
    put_hex(o, (uintptr_t)addr);
    put_str(o, "]", 1);
    flush_line(o);
}

/* ---- a faulting frame in unmapped code --------------------------------- */

static uintptr_t page_size = 4096; /* sysconf() is not safe in a handler */

/* Whether the page holding addr is mapped: mincore() fails with ENOMEM for
 * an unmapped one (and reads nothing, so it cannot fault). */
static bool mapped(uintptr_t addr)
{
    unsigned char vec;
    int saved = errno;
    bool yes = mincore((void *)(addr & ~(page_size - 1)), 1, &vec) == 0 ||
               errno != ENOMEM;
    errno = saved;
    return yes;
}

/* The program counter in the saved context, or 0 when unknown here. */
static uintptr_t context_pc(const void *uctx)
{
    const ucontext_t *uc = uctx;
    if (!uc)
        return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    return 0;
#endif
}

/* Makes the saved context that of the caller of the frame at the unmapped
 * pc, as if that frame had returned. False when it cannot be done safely
 * (another architecture, a stack or return address that is not mapped). */
static bool skip_unmapped_frame(void *uctx)
{
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    /* A call pushed the return address; the fetch at the target faulted
     * before the callee could push anything. */
    greg_t *g = uc->uc_mcontext.gregs;
    uintptr_t sp = (uintptr_t)g[REG_RSP];
    if (!mapped(sp) || !mapped(sp + sizeof(uintptr_t) - 1))
        return false;
    uintptr_t ret = *(const uintptr_t *)sp;
    if (!ret || !mapped(ret))
        return false;
    g[REG_RIP] = (greg_t)ret;
    g[REG_RSP] = (greg_t)(sp + sizeof(uintptr_t));
    return true;
#elif defined(__aarch64__)
    /* A branch-and-link left the return address in x30. */
    uintptr_t ret = (uintptr_t)uc->uc_mcontext.regs[30];
    if (!ret || !mapped(ret))
        return false;
    uc->uc_mcontext.pc = ret;
    return true;
#else
    (void)uc;
    return false;
#endif
}

/* ---- the handler ------------------------------------------------------- */

static void report(int sig, size_t idx, const siginfo_t *info, void *uctx)
{
    static out o; /* static: the alternate stack is precious */
    o.len = 0;
    put_prefix(&o);
    put_str(&o, "fatal signal ", 64);
    put_str(&o, fatal_signals[idx].name, 16);
    put_str(&o, " (", 4);
    put_uint(&o, (uintmax_t)sig, 0);
    put_str(&o, ")", 4);
    /* Read each pointer once: the context is volatile. */
    const char *plugin = sb_crash_ctx.plugin;
    const char *what = sb_crash_ctx.what;
    const char *detail = sb_crash_ctx.detail;
    if (plugin) {
        put_str(&o, " in plugin '", 16);
        put_str(&o, plugin, 200);
        put_str(&o, "'", 4);
        if (what) {
            put_str(&o, ", ", 4);
            put_str(&o, what, 100);
            if (detail) {
                put_str(&o, " '", 4);
                put_str(&o, detail, 300);
                put_str(&o, "'", 4);
            }
        }
    } else {
        put_str(&o, " in the core", 16);
    }
    /* Where the fault happened, when the kernel says (not for kill/raise). */
    if (info && info->si_code > 0 && sig != SIGABRT) {
        put_str(&o, ", fault address ", 32);
        put_hex(&o, (uintptr_t)info->si_addr);
    }
    flush_line(&o);

    /* Code that is not mapped: the unwinder would fault on it (top). */
    uintptr_t pc = context_pc(uctx);
    bool dead_code = pc && !mapped(pc);
    if (dead_code && !skip_unmapped_frame(uctx)) {
        put_prefix(&o);
        put_str(&o, "no backtrace: the faulting code at ", 64);
        put_hex(&o, pc);
        put_str(&o, " is not mapped and its caller cannot be found", 64);
        flush_line(&o);
        return;
    }
    void *frames[64];
    int n = backtrace(frames, 64);
    put_prefix(&o);
    put_str(&o, "backtrace (", 16);
    put_uint(&o, (uintmax_t)(n > 0 ? n : 0), 0);
    put_str(&o,
            " frames; addr2line -e FILE OFFSET decodes one; a "
            "NAME.gGEN.*.so or /memfd:sb:NAME frame is plugin NAME, see "
            "its 'loaded plugin' line",
            160);
    if (dead_code) {
        put_str(&o, "; the faulting frame, in unmapped code at ", 64);
        put_hex(&o, pc);
        put_str(&o,
                ", is left out: after the handler's own frames comes "
                "its caller",
                100);
    }
    put_str(&o, "):", 4);
    flush_line(&o);
    for (int i = 0; i < n; i++)
        put_frame(&o, frames[i]);
}

static void die_by(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    /* The signal is blocked while its handler runs: unblock it so that the
     * raise takes effect now, with the default action. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    /* Only if the signal could not kill us (it cannot be ignored here, but
     * be certain not to return into the faulting instruction forever). */
    _exit(128 + sig);
}

static void on_fatal_signal(int sig, siginfo_t *info, void *uctx)
{
    size_t idx = 0;
    while (idx < NSIGNALS && fatal_signals[idx].sig != sig)
        idx++;
    if (crashing || idx == NSIGNALS)
        die_by(sig);
    crashing = 1;
    report(sig, idx, info, uctx);

    const struct sigaction *prev = &previous[idx];
    if (SB_CRASH_ASAN && (prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
        /* Two stacks in a row puzzle a reader: say whose the second is. */
        static out o;
        o.len = 0;
        put_prefix(&o);
        put_str(&o, "AddressSanitizer's report follows", 64);
        flush_line(&o);
    }
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            /* Chain (ASan): it reports with the real context and exits. */
            sigaction(sig, prev, NULL);
            prev->sa_sigaction(sig, info, uctx);
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN &&
               prev->sa_handler) {
        sigaction(sig, prev, NULL);
        prev->sa_handler(sig);
    }
    die_by(sig);
}

void sb_crash_install(void)
{
    /* A second install would record our own handler as the one to chain
     * to. */
    static bool installed;
    if (installed)
        return;
    installed = true;

    /* Loads libgcc_s's unwinder now, while malloc is still safe to call. */
    void *warm[4];
    (void)backtrace(warm, 4);
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        page_size = (uintptr_t)ps;

    /* One alternate stack per thread; plugins run on the loop thread, which
     * is this one. Keep an existing stack (ASan's), which is big enough for
     * its own handler. */
    stack_t old;
    if (sigaltstack(NULL, &old) != 0 || (old.ss_flags & SS_DISABLE)) {
        stack_t ss;
        memset(&ss, 0, sizeof(ss));
        ss.ss_sp = crash_stack;
        ss.ss_size = sizeof(crash_stack);
        ss.ss_flags = 0;
        (void)sigaltstack(&ss, NULL);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fatal_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    /* Other fatal signals wait while we write, so lines do not mix; the
     * chained handler and die_by() unblock what they need. */
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NSIGNALS; i++) {
        if (fatal_signals[i].sig != SIGABRT)
            sigaddset(&sa.sa_mask, fatal_signals[i].sig);
    }
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(fatal_signals[i].sig, &sa, &previous[i]);
}

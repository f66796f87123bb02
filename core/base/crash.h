/*
 * crash — when a plugin crashes the process, say which plugin and which of
 * its callbacks was running, with a backtrace, and die of the same signal
 * so that the exit status (and systemd) see it.
 *
 * The host marks every call into plugin code with sb_crash_enter() /
 * sb_crash_leave(): two pointer stores, cheap enough for the hot path. The
 * strings must stay valid while the call runs.
 */
#ifndef SB_CRASH_H
#define SB_CRASH_H

typedef struct sb_crash_context {
    const char *volatile plugin; /* instance name, NULL outside plugins */
    const char *volatile what;   /* "event 'say'", "connect hook", ... */
    const char *volatile detail; /* e.g. the event name, or NULL */
} sb_crash_context;

/* Per thread: a crash in a thread-pool work function names its plugin. */
extern _Thread_local sb_crash_context sb_crash_ctx;

static inline void sb_crash_enter(const char *plugin, const char *what,
                                  const char *detail)
{
    sb_crash_ctx.plugin = plugin;
    sb_crash_ctx.what = what;
    sb_crash_ctx.detail = detail;
}

static inline void sb_crash_leave(void)
{
    sb_crash_ctx.plugin = 0;
}

/* Installs the fatal-signal handlers (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGABRT) on an alternate stack. Call once, early in main. */
void sb_crash_install(void);

#endif

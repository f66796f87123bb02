/*
 * log — one line per event on stderr (the systemd journal picks it up).
 *
 * Owns the process-wide log level and format. A text line is
 *   "2026-11-26T14:03:07.123Z LEVEL [tag] message"
 * where tag names the part (core, config, plugin NAME...); a JSON line is
 *   {"ts":"2026-11-26T14:03:07.123Z","level":"info","tag":"server",
 *    "msg":"...", ...fields}
 * on one line, valid UTF-8 whatever the message held. Never allocates.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <switchboard/plugin.h>

typedef enum sb_log_format {
    SB_LOG_TEXT = 0, /* for people */
    SB_LOG_JSON = 1  /* one JSON object per line, for log shippers */
} sb_log_format;

/* A field a line carries besides its message, e.g. {"client", NULL, 42} or
 * {"remote", "10.0.0.7", 0}: a JSON string when text is not NULL, else the
 * integer num. JSON lines only: a text line's message says the same in
 * words. */
typedef struct sb_log_field {
    const char *key;
    const char *text;
    long long num;
} sb_log_field;

void sb_log_set_level(sb_log_level level);
sb_log_level sb_log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int sb_log_level_parse(const char *text);
void sb_log_set_format(sb_log_format format);
/* Under workers: every line of this process names it, "w3 [tag]" in text
 * and "worker":3 in JSON; 0 (the default, and the master) names nothing,
 * so a single process logs exactly as before. */
void sb_log_set_worker(unsigned worker);
sb_log_format sb_log_get_format(void);

void sb_log(sb_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sb_logv(sb_log_level level, const char *tag, const char *fmt, va_list ap);
/* sb_log() with fields (nfields of them; fields may be NULL when 0). */
void sb_log_fields(sb_log_level level, const char *tag,
                   const sb_log_field *fields, size_t nfields, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* A line that can repeat per connection or per attempt (an accept error,
 * a client that reads nothing, lws' per-connection errors) goes through a
 * limiter kept at its call site: at most SB_LOG_LIMIT_BURST lines per
 * SB_LOG_LIMIT_WINDOW_MS, then one "N similar line(s) suppressed" line when
 * the window is over. Declare one static per site:
 *   static sb_log_limit lim = SB_LOG_LIMIT_INIT;
 * Loop thread only (the limiters are not locked). */
#define SB_LOG_LIMIT_WINDOW_MS 5000
#define SB_LOG_LIMIT_BURST     5

typedef struct sb_log_limit {
    unsigned long long window_ms;  /* monotonic start of the window, 0: none */
    unsigned logged;               /* lines written in this window */
    unsigned long long suppressed; /* lines dropped in this window */
    const char *tag;               /* of the last line, for the summary */
    int level;
    struct sb_log_limit *next; /* registered limiters (sb_log_limit_flush) */
    int registered;
} sb_log_limit;

#define SB_LOG_LIMIT_INIT                                                      \
    {                                                                          \
        0, 0, 0, NULL, 0, NULL, 0                                              \
    }

/* sb_log() through `lim`. Returns 1 when the line was written, 0 when it
 * was suppressed (counted for the summary). */
int sb_log_limited(sb_log_limit *lim, sb_log_level level, const char *tag,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Writes the summary of every limiter whose window is over and that
 * suppressed lines (a periodic timer calls it, so that the count is told
 * even when no further line comes). now_ms: 0 for the current time. */
void sb_log_limit_flush(unsigned long long now_ms);
/* The limiters' clock: monotonic milliseconds (never 0). */
unsigned long long sb_log_now_ms(void);

#define sb_log_error(tag, ...) sb_log(SB_LOG_ERROR, tag, __VA_ARGS__)
#define sb_log_warn(tag, ...)  sb_log(SB_LOG_WARN, tag, __VA_ARGS__)
#define sb_log_info(tag, ...)  sb_log(SB_LOG_INFO, tag, __VA_ARGS__)
#define sb_log_debug(tag, ...)                                                 \
    do {                                                                       \
        if (sb_log_get_level() >= SB_LOG_DEBUG)                                \
            sb_log(SB_LOG_DEBUG, tag, __VA_ARGS__);                            \
    } while (0)

#endif

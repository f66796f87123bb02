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
sb_log_format sb_log_get_format(void);

void sb_log(sb_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sb_logv(sb_log_level level, const char *tag, const char *fmt, va_list ap);
/* sb_log() with fields (nfields of them; fields may be NULL when 0). */
void sb_log_fields(sb_log_level level, const char *tag,
                   const sb_log_field *fields, size_t nfields, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

#define sb_log_error(tag, ...) sb_log(SB_LOG_ERROR, tag, __VA_ARGS__)
#define sb_log_warn(tag, ...)  sb_log(SB_LOG_WARN, tag, __VA_ARGS__)
#define sb_log_info(tag, ...)  sb_log(SB_LOG_INFO, tag, __VA_ARGS__)
#define sb_log_debug(tag, ...)                                                 \
    do {                                                                       \
        if (sb_log_get_level() >= SB_LOG_DEBUG)                                \
            sb_log(SB_LOG_DEBUG, tag, __VA_ARGS__);                            \
    } while (0)

#endif

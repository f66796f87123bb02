/*
 * log — one line per event on stderr (the systemd journal picks it up).
 *
 * Owns the process-wide log level. Every line is
 *   "2026-11-26T14:03:07.123Z LEVEL [tag] message"
 * where tag names the part (core, config, plugin NAME...). Never allocates.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stdarg.h>
#include <switchboard/plugin.h>

void sb_log_set_level(sb_log_level level);
sb_log_level sb_log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int sb_log_level_parse(const char *text);

void sb_log(sb_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sb_logv(sb_log_level level, const char *tag, const char *fmt, va_list ap);

#define sb_log_error(tag, ...) sb_log(SB_LOG_ERROR, tag, __VA_ARGS__)
#define sb_log_warn(tag, ...)  sb_log(SB_LOG_WARN, tag, __VA_ARGS__)
#define sb_log_info(tag, ...)  sb_log(SB_LOG_INFO, tag, __VA_ARGS__)
#define sb_log_debug(tag, ...)                                                 \
    do {                                                                       \
        if (sb_log_get_level() >= SB_LOG_DEBUG)                                \
            sb_log(SB_LOG_DEBUG, tag, __VA_ARGS__);                            \
    } while (0)

#endif

/*
 * log — formats one line into a stack buffer and writes it with a single
 * write(2), so that lines from the server and its plugins never interleave.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sb_log_level log_level = SB_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sb_log_set_level(sb_log_level level)
{
    log_level = level;
}

sb_log_level sb_log_get_level(void)
{
    return log_level;
}

int sb_log_level_parse(const char *text)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0)
            return i;
    return -1;
}

void sb_logv(sb_log_level level, const char *tag, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, now.tv_nsec / 1000000, level_names[level], tag);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    if (m > 0)
        len +=
            (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void sb_log(sb_log_level level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, tag, fmt, ap);
    va_end(ap);
}

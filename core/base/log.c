/*
 * log — formats one line into a stack buffer and writes it with a single
 * write(2), so that lines from the server and its plugins never interleave.
 *
 * JSON lines are escaped here rather than built with jansson: logging must
 * not allocate (it runs when memory is short, too), and a log shipper must
 * be able to parse every line, so a message with invalid UTF-8 gets U+FFFD
 * for each bad byte and a message too long for the line is cut at a whole
 * character, never inside an escape.
 */
#include "log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_TEXT 2048
#define LINE_MAX_JSON 4096
/* Room a JSON line keeps after its message for the fields. */
#define FIELDS_ROOM 512

static sb_log_level log_level = SB_LOG_INFO;
static sb_log_format log_format = SB_LOG_TEXT;
static unsigned log_worker; /* 0: not a worker */

void sb_log_set_worker(unsigned worker)
{
    log_worker = worker;
}

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

void sb_log_set_format(sb_log_format format)
{
    log_format = format;
}

sb_log_format sb_log_get_format(void)
{
    return log_format;
}

/* "2026-11-26T14:03:07.123Z" into out (64 bytes: room for any year). */
static void timestamp(char *out, size_t outlen)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
}

static void emit(const char *line, size_t len)
{
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static void text_line(sb_log_level level, const char *tag, const char *fmt,
                      va_list ap)
{
    char line[LINE_MAX_TEXT];
    char ts[64];
    timestamp(ts, sizeof(ts));
    int n = log_worker ? snprintf(line, sizeof(line), "%s %-5s w%u [%s] ", ts,
                                  level_names[level], log_worker, tag)
                       : snprintf(line, sizeof(line), "%s %-5s [%s] ", ts,
                                  level_names[level], tag);
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
    emit(line, len);
}

/* ---- JSON lines --------------------------------------------------------- */

typedef struct jw {
    char *buf;
    size_t len;
    size_t lim; /* appends stop here */
} jw;

/* All of s, or nothing and false. */
static bool jw_put(jw *w, const char *s, size_t n)
{
    if (n > w->lim - w->len)
        return false;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return true;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (n > avail)
        return 0;
    /* The second byte's range excludes overlongs, surrogates and values
     * past U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Appends s as a JSON string. Text that does not fit is cut at a whole
 * character (or escape) and false is returned; the string is closed
 * either way, unless not even its quotes fit (then nothing is appended). */
static bool jw_string(jw *w, const char *s, size_t n)
{
    if (w->lim - w->len < 2)
        return false;
    w->buf[w->len++] = '"';
    w->lim--; /* the closing quote */
    const unsigned char *p = (const unsigned char *)s;
    bool whole = true;
    for (size_t i = 0; i < n && whole;) {
        unsigned char c = p[i];
        size_t k = utf8_len(p + i, n - i);
        char esc[8];
        const char *e = NULL;
        size_t elen = 2;
        if (k == 0) {
            e = "\\ufffd", elen = 6, k = 1;
        } else if (k > 1) {
            e = (const char *)p + i, elen = k;
        } else if (c == '"') {
            e = "\\\"";
        } else if (c == '\\') {
            e = "\\\\";
        } else if (c == '\n') {
            e = "\\n";
        } else if (c == '\r') {
            e = "\\r";
        } else if (c == '\t') {
            e = "\\t";
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            e = esc, elen = 6;
        } else {
            e = (const char *)p + i, elen = 1;
        }
        whole = jw_put(w, e, elen);
        i += k;
    }
    w->lim++;
    w->buf[w->len++] = '"';
    return whole;
}

static void json_line(sb_log_level level, const char *tag,
                      const sb_log_field *fields, size_t nfields,
                      const char *fmt, va_list ap)
{
    char msg[LINE_MAX_JSON];
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t mlen = m < 0                     ? 0
                  : (size_t)m < sizeof(msg) ? (size_t)m
                                            : sizeof(msg) - 1;
    char ts[64];
    timestamp(ts, sizeof(ts));

    char line[LINE_MAX_JSON];
    /* Two bytes stay free for the closing "}\n", and the message leaves
     * room for the fields. */
    jw w = {line, 0, sizeof(line) - 2 - FIELDS_ROOM};
    jw_put(&w, "{\"ts\":", 6);
    jw_string(&w, ts, strlen(ts));
    jw_put(&w, ",\"level\":", 9);
    jw_string(&w, level_names[level], strlen(level_names[level]));
    jw_put(&w, ",\"tag\":", 7);
    jw_string(&w, tag, strlen(tag));
    if (log_worker) {
        char wn[32];
        int k = snprintf(wn, sizeof(wn), ",\"worker\":%u", log_worker);
        jw_put(&w, wn, (size_t)k);
    }
    jw_put(&w, ",\"msg\":", 7);
    jw_string(&w, msg, mlen);
    w.lim = sizeof(line) - 2;
    for (size_t i = 0; i < nfields; i++) {
        /* A field goes in whole or not at all. */
        size_t mark = w.len;
        char num[32];
        bool ok = jw_put(&w, ",", 1) &&
                  jw_string(&w, fields[i].key, strlen(fields[i].key)) &&
                  jw_put(&w, ":", 1);
        if (ok && fields[i].text) {
            ok = jw_string(&w, fields[i].text, strlen(fields[i].text));
        } else if (ok) {
            int k = snprintf(num, sizeof(num), "%lld", fields[i].num);
            ok = jw_put(&w, num, (size_t)k);
        }
        if (!ok)
            w.len = mark;
    }
    line[w.len++] = '}';
    line[w.len++] = '\n';
    emit(line, w.len);
}

void sb_logv(sb_log_level level, const char *tag, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    if (log_format == SB_LOG_JSON)
        json_line(level, tag, NULL, 0, fmt, ap);
    else
        text_line(level, tag, fmt, ap);
}

void sb_log(sb_log_level level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, tag, fmt, ap);
    va_end(ap);
}

void sb_log_fields(sb_log_level level, const char *tag,
                   const sb_log_field *fields, size_t nfields, const char *fmt,
                   ...)
{
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (log_format == SB_LOG_JSON)
        json_line(level, tag, fields, nfields, fmt, ap);
    else
        text_line(level, tag, fmt, ap);
    va_end(ap);
}

/* ---- rate-limited lines ---------------------------------------------------
 */

static sb_log_limit *limiters; /* every limiter used so far */

unsigned long long sb_log_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* +1: 0 means "no window yet". */
    return (unsigned long long)now.tv_sec * 1000 +
           (unsigned long long)now.tv_nsec / 1000000 + 1;
}

/* Ends lim's window if it is over, telling what it dropped. */
static void limit_roll(sb_log_limit *lim, unsigned long long now)
{
    if (!lim->window_ms || now - lim->window_ms < SB_LOG_LIMIT_WINDOW_MS)
        return;
    if (lim->suppressed)
        sb_log((sb_log_level)lim->level, lim->tag ? lim->tag : "log",
               "%llu similar line(s) suppressed in the last %llu s",
               lim->suppressed, (now - lim->window_ms + 500) / 1000);
    lim->window_ms = 0;
    lim->logged = 0;
    lim->suppressed = 0;
}

int sb_log_limited(sb_log_limit *lim, sb_log_level level, const char *tag,
                   const char *fmt, ...)
{
    if (level > log_level)
        return 0;
    unsigned long long now = sb_log_now_ms();
    if (!lim->registered) {
        lim->registered = 1;
        lim->next = limiters;
        limiters = lim;
    }
    limit_roll(lim, now);
    if (!lim->window_ms)
        lim->window_ms = now;
    lim->tag = tag;
    lim->level = level;
    if (lim->logged >= SB_LOG_LIMIT_BURST) {
        lim->suppressed++;
        return 0;
    }
    lim->logged++;
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, tag, fmt, ap);
    va_end(ap);
    return 1;
}

void sb_log_limit_flush(unsigned long long now_ms)
{
    unsigned long long now = now_ms ? now_ms : sb_log_now_ms();
    for (sb_log_limit *l = limiters; l; l = l->next)
        limit_roll(l, now);
}

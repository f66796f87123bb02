/*
 * envelope — see envelope.h.
 *
 * Every frame a client sends passes through sb_envelope_parse(), so the
 * scanner is a single forward pass over the bytes with no tree, no
 * allocation and no recursion: nesting is tracked with a depth counter and a
 * bit-stack (one bit per level: object or array), so a hostile 100,000-deep
 * document costs one failed comparison, not a blown C stack.
 *
 * The scanner's verdict is meant to be jansson 2.14's (json_loadb() with
 * JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL), so that the
 * server can materialise any span later with jansson and never see it fail.
 * That includes jansson's own limits: numbers must not overflow a double to
 * infinity, keys must not contain \u0000, and no value may sit deeper than
 * JSON_PARSER_MAX_DEPTH. An integer beyond 64 bits is valid JSON that
 * jansson refuses without JSON_DECODE_INT_AS_REAL ("too big integer"): we
 * accept it, forward its digits untouched, and sb_json_decode() makes it a
 * real while smaller integers stay integers. One deliberate difference:
 * jansson 2.14 silently drops a single raw NUL byte that directly follows a
 * number or a literal (its lexer "ungets" the byte and loses it), so it accepts
 * "[1\0]". We reject that: the span would be forwarded raw to other clients,
 * whose JSON parsers would not be so forgiving.
 */
#include "envelope.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The string scan looks at 16 bytes at a time with SSE2, which every x86-64
 * has; elsewhere (or with SB_SCAN_PORTABLE, which the unit tests build too)
 * 8 at a time in a 64-bit word. */
#if defined(__SSE2__) && !defined(SB_SCAN_PORTABLE)
#include <emmintrin.h>
#define SB_SCAN_SSE2 1
#endif
/* Finding the first flagged byte of a word by its lowest set bit needs a
 * little-endian word and the compilers' count-trailing-zeros. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SB_SCAN_CTZ 1
#endif

/* jansson's JSON_PARSER_MAX_DEPTH: it counts every value, scalars included,
 * so a container at this depth may only be empty. */
#define JANSSON_MAX_DEPTH 2048

typedef unsigned char uchar;

/* ---- errors ---------------------------------------------------------- */

enum scan_error {
    E_NONE = 0,
    E_EOF,
    E_UNEXPECTED,
    E_UTF8,
    E_CONTROL,
    E_ESCAPE,
    E_SURROGATE,
    E_KEY_NUL,
    E_REAL_OVERFLOW,
    E_TRAILING,
    E_DEPTH
};

/* Which top-level member a value belongs to; M_OTHER is a discard slot so
 * that recording a member is two stores, not a switch. */
enum member { M_EVENT, M_DATA, M_ID, M_OTHER, M_COUNT };

struct scan {
    const uchar *base;
    const uchar *value_start, *value_end; /* the top value, trimmed */
    const uchar *mstart[M_COUNT], *mend[M_COUNT];
    enum scan_error err;
    const uchar *err_at;
    unsigned limit;
};

/* Marks the scan failed; returns NULL so callers can `return fail(...)`. */
static const uchar *fail(struct scan *s, enum scan_error e, const uchar *at)
{
    s->err = e;
    s->err_at = at;
    return NULL;
}

static void format_error(const struct scan *s, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    size_t off = (size_t)(s->err_at - s->base);
    const char *what = NULL;
    switch (s->err) {
    case E_NONE:
        out[0] = '\0';
        return;
    case E_DEPTH:
        snprintf(out, outlen, "JSON nested deeper than %u levels", s->limit);
        return;
    case E_EOF:
        snprintf(out, outlen, "Invalid JSON: unexpected end of input");
        return;
    case E_UNEXPECTED: {
        uchar c = *s->err_at;
        if (c > 0x20 && c < 0x7f)
            snprintf(out, outlen, "Invalid JSON: unexpected '%c' at offset %zu",
                     c, off);
        else
            snprintf(out, outlen,
                     "Invalid JSON: unexpected byte 0x%02x at offset %zu", c,
                     off);
        return;
    }
    case E_UTF8:
        what = "invalid UTF-8";
        break;
    case E_CONTROL:
        what = "control character in string";
        break;
    case E_ESCAPE:
        what = "invalid escape";
        break;
    case E_SURROGATE:
        what = "invalid Unicode surrogate";
        break;
    case E_KEY_NUL:
        what = "NUL in object key";
        break;
    case E_REAL_OVERFLOW:
        what = "real number overflow";
        break;
    case E_TRAILING:
        what = "data after the value";
        break;
    }
    snprintf(out, outlen, "Invalid JSON: %s at offset %zu", what, off);
}

/* ---- character classes ----------------------------------------------- */

/* Bytes that end a fast run inside a string: '"', '\\', controls, non-ASCII. */
/* clang-format off */
static const uchar str_special[256] = {
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 00 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 10 */
    0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 20 */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 30 */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 40 */
    0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0, /* 50 */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 60 */
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, /* 70 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 80 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 90 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* a0 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* b0 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* c0 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* d0 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* e0 */
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* f0 */
};
/* clang-format on */

static inline int is_ws(uchar c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline const uchar *skip_ws(const uchar *p, const uchar *end)
{
    /* Most frames have no whitespace at all: one compare settles it. */
    while (p < end && *p <= ' ' && is_ws(*p))
        p++;
    return p;
}

static inline int is_digit(uchar c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(uchar c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The four hex digits at p (end permitting), or -1. */
static long hex4(const uchar *p, const uchar *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Nonzero when any of the 8 bytes in v needs a closer look inside a string.
 * Each term is the classic "has a byte less than n" test, which is exact
 * about whether such a byte exists (all we need: the byte loop finds it). */
static inline uint64_t swar_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull;
    const uint64_t high = 0x8080808080808080ull;
    uint64_t q = v ^ (ones * '"');
    uint64_t b = v ^ (ones * '\\');
    uint64_t t =
        ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b) | v;
    return t & high;
}

/* Nonzero when any of the 8 bytes in v is not ASCII. */
static inline uint64_t swar_nonascii(uint64_t v)
{
    return v & 0x8080808080808080ull;
}

/* The first byte at or after p that needs a closer look inside a string
 * ('"', '\\', a control or a non-ASCII byte), or end. Reads nothing outside
 * [p, end). In a flagged word the lowest flag is exact: a false flag needs
 * a borrow from a lower byte, which only a flagged byte gives. */
static inline const uchar *skip_plain(const uchar *p, const uchar *end)
{
#ifdef SB_SCAN_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* Signed: the non-ASCII bytes are negative, below ' ' too. */
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmplt_epi8(v, space));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t t = swar_special(v);
        if (t) {
#ifdef SB_SCAN_CTZ
            return p + (__builtin_ctzll(t) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && !str_special[*p])
        p++;
    return p;
}

/* The first non-ASCII byte at or after p, or end (for the UTF-8 checks). */
static inline const uchar *skip_ascii(const uchar *p, const uchar *end)
{
#ifdef SB_SCAN_SSE2
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned bits = (unsigned)_mm_movemask_epi8(v);
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t t = swar_nonascii(v);
        if (t) {
#ifdef SB_SCAN_CTZ
            return p + (__builtin_ctzll(t) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && *p < 0x80)
        p++;
    return p;
}

/* ---- strings ------------------------------------------------------------ */

/* One UTF-8 sequence starting at the non-ASCII byte p, by jansson's rules
 * (no overlongs, no surrogates, nothing above U+10FFFF). */
static const uchar *scan_utf8(const uchar *p, const uchar *end, struct scan *s)
{
    uchar c = *p;
    ptrdiff_t need;
    uchar lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return fail(s, E_UTF8, p);
    }
    if (end - p <= need || p[1] < lo || p[1] > hi)
        return fail(s, E_UTF8, p);
    for (ptrdiff_t i = 2; i <= need; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return fail(s, E_UTF8, p);
    return p + need + 1;
}

/* A backslash escape at p. \u0000 is fine in values (JSON_ALLOW_NUL) but
 * jansson refuses it in keys, where it would truncate the C string. */
static const uchar *scan_escape(const uchar *p, const uchar *end, int key,
                                struct scan *s)
{
    if (end - p < 2)
        return fail(s, E_EOF, end);
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return p + 2;
    case 'u':
        break;
    default:
        return fail(s, E_ESCAPE, p);
    }
    long cp = hex4(p + 2, end);
    if (cp < 0)
        return fail(s, E_ESCAPE, p);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        /* A high surrogate must be followed at once by a low one. */
        if (end - p >= 8 && p[6] == '\\' && p[7] == 'u') {
            long lo = hex4(p + 8, end);
            if (lo < 0)
                return fail(s, E_ESCAPE, p + 6);
            if (lo >= 0xdc00 && lo <= 0xdfff)
                return p + 12;
        }
        return fail(s, E_SURROGATE, p);
    }
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(s, E_SURROGATE, p);
    if (cp == 0 && key)
        return fail(s, E_KEY_NUL, p);
    return p + 6;
}

/* The rest of a string from p, its first byte that needs a closer look
 * (see scan_string). */
static const uchar *scan_string_rest(const uchar *p, const uchar *end, int key,
                                     int *escaped, struct scan *s)
{
    for (;;) {
        /* Plain ASCII runs 16 or 8 bytes at a time, no per-byte work. */
        p = skip_plain(p, end);
        if (p == end)
            return fail(s, E_EOF, end);
        uchar c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            *escaped = 1;
            p = scan_escape(p, end, key, s);
        } else if (c < 0x20) {
            return fail(s, E_CONTROL, p);
        } else {
            p = scan_utf8(p, end, s);
        }
        if (!p)
            return NULL;
    }
}

/* A string whose opening quote is just before p; returns the byte after the
 * closing quote. *escaped tells whether the raw bytes differ from the
 * decoded ones. The common string, plain ASCII up to its quote, is handled
 * here, inline in the scan; escapes and UTF-8 go to scan_string_rest(). */
static inline const uchar *scan_string(const uchar *p, const uchar *end,
                                       int key, int *escaped, struct scan *s)
{
    p = skip_plain(p, end);
    if (p < end && *p == '"')
        return p + 1;
    return scan_string_rest(p, end, key, escaped, s);
}

/* Decodes the body of an already validated string into out. Returns the
 * decoded length, or (size_t)-1 as soon as it would exceed cap. */
static size_t decode_string(const uchar *p, const uchar *end, char *out,
                            size_t cap)
{
    size_t n = 0;
    while (p < end) {
        const uchar *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        if (run > cap - n)
            return (size_t)-1;
        memcpy(out + n, p, run);
        n += run;
        if (!bs)
            break;
        p = bs + 1;
        char one = 0;
        switch (*p) {
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u':
            break;
        default: /* '"', '\\', '/' */
            one = (char)*p;
            break;
        }
        if (*p != 'u') {
            if (n >= cap)
                return (size_t)-1;
            out[n++] = one;
            p++;
            continue;
        }
        long cp = hex4(p + 1, end);
        p += 5;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(p + 2, end) - 0xdc00);
            p += 6;
        }
        uchar u[4];
        size_t k;
        if (cp < 0x80) {
            u[0] = (uchar)cp;
            k = 1;
        } else if (cp < 0x800) {
            u[0] = (uchar)(0xc0 | cp >> 6);
            u[1] = (uchar)(0x80 | (cp & 0x3f));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (uchar)(0xe0 | cp >> 12);
            u[1] = (uchar)(0x80 | (cp >> 6 & 0x3f));
            u[2] = (uchar)(0x80 | (cp & 0x3f));
            k = 3;
        } else {
            u[0] = (uchar)(0xf0 | cp >> 18);
            u[1] = (uchar)(0x80 | (cp >> 12 & 0x3f));
            u[2] = (uchar)(0x80 | (cp >> 6 & 0x3f));
            u[3] = (uchar)(0x80 | (cp & 0x3f));
            k = 4;
        }
        if (k > cap - n)
            return (size_t)-1;
        memcpy(out + n, u, k);
        n += k;
    }
    return n;
}

/* Which envelope member a top-level key names. Keys are compared decoded,
 * as jansson would: "\u0065vent" is "event". */
static enum member classify_key(const uchar *k, const uchar *kend, int escaped)
{
    char tmp[8];
    size_t n = (size_t)(kend - k);
    if (escaped) {
        n = decode_string(k, kend, tmp, 5);
        if (n == (size_t)-1)
            return M_OTHER;
        k = (const uchar *)tmp;
    }
    if (n == 5 && memcmp(k, "event", 5) == 0)
        return M_EVENT;
    if (n == 4 && memcmp(k, "data", 4) == 0)
        return M_DATA;
    if (n == 2 && k[0] == 'i' && k[1] == 'd')
        return M_ID;
    return M_OTHER;
}

/* ---- numbers ------------------------------------------------------------ */

/* Whether a real overflows to +-inf in strtod(), which jansson rejects.
 * Only reached when the magnitude could exceed 1e308. ip..ie are the integer
 * digits, fp..fe the fraction digits (both NULL when there is no fraction),
 * exp10 the exponent. */
static int real_overflows(const uchar *ip, const uchar *ie, const uchar *fp,
                          const uchar *fe, long long exp10)
{
    /* Find the first significant digit d; the value is then 0.d... x 10^e,
     * so it lies in [10^(e-1), 10^e). */
    long long e;
    const uchar *d;
    if (!(ie - ip == 1 && *ip == '0')) {
        d = ip;
        e = (long long)(ie - ip) + exp10;
    } else {
        d = fp;
        while (d && d < fe && *d == '0')
            d++;
        if (!d || d == fe)
            return 0; /* zero never overflows */
        e = exp10 - (long long)(d - fp);
    }
    /* DBL_MAX is about 1.8e308. */
    if (e <= 308)
        return 0;
    if (e >= 310)
        return 1;
    /* Borderline: ask strtod, as jansson does, on "<digits>e<exp>", written
     * without a decimal point so that the locale cannot interfere. Keeping
     * only 400 significant digits cannot change the verdict: the smallest
     * value that rounds to infinity (DBL_MAX + half an ulp) is an integer of
     * 309 digits, so a value at or above it stays at or above it when
     * truncated to 400 digits, and truncation never raises a value below
     * it. */
    char tmp[420];
    size_t n = 0;
    const uchar *q = d;
    if (d < ie) {
        while (q < ie && n < 400)
            tmp[n++] = (char)*q++;
        q = fp;
    }
    while (q && q < fe && n < 400)
        tmp[n++] = (char)*q++;
    snprintf(tmp + n, sizeof tmp - n, "e%lld", e - (long long)n);
    errno = 0;
    double v = strtod(tmp, NULL);
    return v == HUGE_VAL && errno == ERANGE;
}

static const uchar *scan_number(const uchar *p, const uchar *end,
                                struct scan *s)
{
    const uchar *start = p;
    int neg = *p == '-';
    if (neg && ++p == end)
        return fail(s, E_EOF, end);
    const uchar *ip = p;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        do
            p++;
        while (p < end && is_digit(*p));
    } else {
        return fail(s, E_UNEXPECTED, p);
    }
    const uchar *ie = p;
    if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {
        /* An integer. Beyond json_int_t it is decoded as a real (as
         * JavaScript reads any number), which only fails when it overflows
         * a double: 309 digits or more. */
        if (ie - ip > 308 && real_overflows(ip, ie, NULL, NULL, 0))
            return fail(s, E_REAL_OVERFLOW, start);
        return p;
    }
    const uchar *fp = NULL, *fe = NULL;
    if (*p == '.') {
        if (++p == end)
            return fail(s, E_EOF, end);
        if (!is_digit(*p))
            return fail(s, E_UNEXPECTED, p);
        fp = p;
        do
            p++;
        while (p < end && is_digit(*p));
        fe = p;
    }
    long long exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        if (++p == end)
            return fail(s, E_EOF, end);
        int eneg = 0;
        if (*p == '+' || *p == '-') {
            eneg = *p == '-';
            if (++p == end)
                return fail(s, E_EOF, end);
        }
        if (!is_digit(*p))
            return fail(s, E_UNEXPECTED, p);
        do {
            /* Saturate: past 10^15 the verdict no longer depends on it. */
            if (exp10 < 1000000000000000ll)
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        } while (p < end && is_digit(*p));
        if (eneg)
            exp10 = -exp10;
    }
    /* The value is below 10^(int digits + exponent); strtod only when that
     * bound does not already rule out overflow. */
    if ((long long)(ie - ip) + exp10 > 308 &&
        real_overflows(ip, ie, fp, fe, exp10))
        return fail(s, E_REAL_OVERFLOW, start);
    return p;
}

static const uchar *scan_literal(const uchar *p, const uchar *end,
                                 const char *word, size_t n, struct scan *s)
{
    for (size_t i = 0; i < n; i++) {
        if (p + i == end)
            return fail(s, E_EOF, end);
        if (p[i] != (uchar)word[i])
            return fail(s, E_UNEXPECTED, p + i);
    }
    return p + n;
}

/* ---- the scanner -------------------------------------------------------- */

/* Validates one JSON value with surrounding whitespace and, when it is an
 * object, notes where its "event", "data" and "id" values are (last
 * duplicate wins, as each later one overwrites the span). Returns 0, or -1
 * with s->err set. */
static int scan_json(const uchar *buf, size_t len, unsigned max_depth,
                     struct scan *s)
{
    const uchar *p = buf, *end = buf + len;
    unsigned depth = 0;
    /* Bit d set: the container at depth d is an object. */
    uint64_t is_obj[JANSSON_MAX_DEPTH / 64 + 1];
    enum member member = M_OTHER;
    const uchar *mstart = NULL;
    int escaped;

    s->base = buf;
    s->err = E_NONE;
    s->limit = max_depth < JANSSON_MAX_DEPTH ? max_depth : JANSSON_MAX_DEPTH;
    for (int i = 0; i < M_COUNT; i++)
        s->mstart[i] = s->mend[i] = NULL;

    p = skip_ws(p, end);
    s->value_start = p;

value:
    if (p == end)
        goto eof;
    switch (*p) {
    case '"':
        escaped = 0;
        p = scan_string(p + 1, end, 0, &escaped, s);
        if (!p)
            return -1;
        goto after_value;
    case '{':
        if (++depth > s->limit)
            goto too_deep;
        is_obj[depth >> 6] |= 1ull << (depth & 63);
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
            depth--;
            goto after_value;
        }
        /* jansson counts the members one level deeper than their object. */
        if (depth == JANSSON_MAX_DEPTH)
            goto too_deep;
        goto key;
    case '[':
        if (++depth > s->limit)
            goto too_deep;
        is_obj[depth >> 6] &= ~(1ull << (depth & 63));
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto after_value;
        }
        if (depth == JANSSON_MAX_DEPTH)
            goto too_deep;
        goto value;
    case 't':
        p = scan_literal(p, end, "true", 4, s);
        break;
    case 'f':
        p = scan_literal(p, end, "false", 5, s);
        break;
    case 'n':
        p = scan_literal(p, end, "null", 4, s);
        break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        p = scan_number(p, end, s);
        break;
    default:
        goto unexpected;
    }
    if (!p)
        return -1;

after_value:
    if (depth == 0)
        goto done;
    if (is_obj[depth >> 6] >> (depth & 63) & 1) {
        if (depth == 1) {
            s->mstart[member] = mstart;
            s->mend[member] = p;
        }
        p = skip_ws(p, end);
        if (p == end)
            goto eof;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            goto key;
        }
        if (*p == '}') {
            p++;
            depth--;
            goto after_value;
        }
        goto unexpected;
    }
    p = skip_ws(p, end);
    if (p == end)
        goto eof;
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        goto value;
    }
    if (*p == ']') {
        p++;
        depth--;
        goto after_value;
    }
    goto unexpected;

key:
    if (p == end)
        goto eof;
    if (*p != '"')
        goto unexpected;
    {
        const uchar *k = p + 1;
        escaped = 0;
        p = scan_string(k, end, 1, &escaped, s);
        if (!p)
            return -1;
        if (depth == 1)
            member = classify_key(k, p - 1, escaped);
    }
    p = skip_ws(p, end);
    if (p == end)
        goto eof;
    if (*p != ':')
        goto unexpected;
    p = skip_ws(p + 1, end);
    mstart = depth == 1 ? p : mstart;
    goto value;

done:
    s->value_end = p;
    p = skip_ws(p, end);
    if (p != end) {
        fail(s, E_TRAILING, p);
        return -1;
    }
    return 0;

eof:
    fail(s, E_EOF, end);
    return -1;
unexpected:
    fail(s, E_UNEXPECTED, p);
    return -1;
too_deep:
    fail(s, E_DEPTH, p);
    return -1;
}

/* ---- public API ------------------------------------------------------- */

static sb_env_status scan_status(const struct scan *s)
{
    return s->err == E_DEPTH ? SB_ENV_TOO_DEEP : SB_ENV_BAD_JSON;
}

sb_env_status sb_envelope_parse(const char *buf, size_t len, unsigned max_depth,
                                sb_envelope *env)
{
    struct scan s;
    env->event[0] = '\0';
    env->event_len = 0;
    env->data.ptr = env->id.ptr = NULL;
    env->data.len = env->id.len = 0;
    env->error[0] = '\0';

    if (scan_json((const uchar *)buf, len, max_depth, &s) < 0) {
        format_error(&s, env->error, sizeof env->error);
        /* An "id" the scan passed before it failed is the client's key to
         * the answer: the exception carries it. (Only a complete member
         * of the top object is recorded, so the span is a whole value.) */
        const uchar *id = s.mstart[M_ID];
        if (id && (*id == '"' || *id == '-' || is_digit(*id))) {
            env->id.ptr = (const char *)id;
            env->id.len = (size_t)(s.mend[M_ID] - id);
        }
        return scan_status(&s);
    }
    if (*s.value_start != '{') {
        snprintf(env->error, sizeof env->error,
                 "Message must be a JSON object");
        return SB_ENV_NOT_OBJECT;
    }

    /* The id is exposed only when it is usable, so that an exception can
     * always echo env->id without checking anything else. */
    int bad_id = 0;
    if (s.mstart[M_ID]) {
        uchar c = *s.mstart[M_ID];
        if (c == '"' || c == '-' || is_digit(c)) {
            env->id.ptr = (const char *)s.mstart[M_ID];
            env->id.len = (size_t)(s.mend[M_ID] - s.mstart[M_ID]);
        } else {
            bad_id = 1;
        }
    }
    if (s.mstart[M_DATA]) {
        env->data.ptr = (const char *)s.mstart[M_DATA];
        env->data.len = (size_t)(s.mend[M_DATA] - s.mstart[M_DATA]);
    }

    const uchar *ev = s.mstart[M_EVENT];
    if (!ev) {
        snprintf(env->error, sizeof env->error, "Message has no \"event\"");
        return SB_ENV_NO_EVENT;
    }
    if (*ev != '"') {
        snprintf(env->error, sizeof env->error, "\"event\" must be a string");
        return SB_ENV_EVENT_NOT_STRING;
    }
    /* The usual name has no escape: copied as it is, and it cannot hold a
     * NUL (a raw control byte is not valid in a JSON string). */
    const uchar *name = ev + 1;
    size_t n = (size_t)(s.mend[M_EVENT] - 1 - name);
    if (n && n <= SB_EVENT_MAX && !memchr(name, '\\', n)) {
        memcpy(env->event, name, n);
        env->event[n] = '\0';
    } else {
        n = decode_string(name, s.mend[M_EVENT] - 1, env->event, SB_EVENT_MAX);
        if (n == (size_t)-1) {
            snprintf(env->error, sizeof env->error,
                     "\"event\" is longer than %d bytes", SB_EVENT_MAX);
            env->event[0] = '\0';
            return SB_ENV_EVENT_INVALID;
        }
        env->event[n] = '\0';
        if (n == 0 || memchr(env->event, '\0', n)) {
            snprintf(env->error, sizeof env->error,
                     n ? "\"event\" must not contain NUL"
                       : "\"event\" must not be empty");
            env->event[0] = '\0';
            return SB_ENV_EVENT_INVALID;
        }
    }
    env->event_len = n;
    if (bad_id) {
        snprintf(env->error, sizeof env->error,
                 "\"id\" must be a number or a string");
        return SB_ENV_BAD_ID;
    }
    return SB_ENV_OK;
}

sb_env_status sb_json_validate(const char *buf, size_t len, unsigned max_depth,
                               sb_span *trimmed, char *error, size_t errlen)
{
    struct scan s;
    if (trimmed) {
        trimmed->ptr = NULL;
        trimmed->len = 0;
    }
    if (scan_json((const uchar *)buf, len, max_depth, &s) < 0) {
        format_error(&s, error, errlen);
        return scan_status(&s);
    }
    if (trimmed) {
        trimmed->ptr = (const char *)s.value_start;
        trimmed->len = (size_t)(s.value_end - s.value_start);
    }
    if (error && errlen)
        error[0] = '\0';
    return SB_ENV_OK;
}

/* ---- decoding ----------------------------------------------------------- */

/* Whether the digits of an integer (no sign, no leading zero) fit
 * json_int_t, negative or not. */
static bool int_fits(const char *d, size_t n, bool neg)
{
    if (n != 19)
        return n < 19;
    return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) <=
           0;
}

/* Copies validated JSON text into out (when not NULL) with ".0" after every
 * integer that does not fit json_int_t, so that jansson reads it as a real.
 * Returns the length of the result. */
static size_t mark_big_ints(const char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    while (i < len) {
        size_t j = i + 1;
        bool big = false;
        if (in[i] == '"') {
            while (j < len && in[j] != '"')
                j += in[j] == '\\' ? 2 : 1;
            j = j < len ? j + 1 : len;
        } else if (in[i] == '-' || is_digit((uchar)in[i])) {
            size_t ds = in[i] == '-' ? i + 1 : i;
            j = ds;
            while (j < len && is_digit((uchar)in[j]))
                j++;
            big =
                !(j < len && (in[j] == '.' || in[j] == 'e' || in[j] == 'E')) &&
                !int_fits(in + ds, j - ds, in[i] == '-');
            while (j < len &&
                   (is_digit((uchar)in[j]) || in[j] == '.' || in[j] == 'e' ||
                    in[j] == 'E' || in[j] == '+' || in[j] == '-'))
                j++;
        }
        if (out)
            memcpy(out + o, in + i, j - i);
        o += j - i;
        if (big) {
            if (out)
                memcpy(out + o, ".0", 2);
            o += 2;
        }
        i = j;
    }
    return o;
}

json_t *sb_json_decode(const char *text, size_t len)
{
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t err;
    json_t *v = json_loadb(text, len, flags, &err);
    if (v || json_error_code(&err) != json_error_numeric_overflow)
        return v;
    /* An integer beyond 64 bits (rare): read it as a real, as JavaScript
     * would, and keep every other integer an integer. JSON_DECODE_INT_AS_REAL
     * would turn them all into reals. */
    size_t n = mark_big_ints(text, len, NULL);
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return NULL;
    mark_big_ints(text, len, copy);
    v = json_loadb(copy, n, flags, NULL);
    free(copy);
    return v;
}

/* ---- writing ------------------------------------------------------------ */

/* The escape for each byte below 0x20 and for '"' and '\\'; 0 = as is. */
static char short_escape(uchar c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

int sb_json_append_string(sb_buf *b, const char *s, size_t len)
{
    const uchar *p = (const uchar *)s, *end = p + len;
    /* Size exactly first, so that one reserve covers everything and a
     * failure leaves the buffer untouched. */
    size_t need = len + 2;
    for (const uchar *q = p; q < end; q++)
        if (*q < 0x20 || *q == '"' || *q == '\\')
            need += short_escape(*q) ? 1 : 5;
    if (need < len || sb_buf_reserve(b, need) < 0)
        return -1;

    static const char hex[] = "0123456789abcdef";
    char *o = b->data + b->len;
    *o++ = '"';
    while (p < end) {
        const uchar *run = p;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\')
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p == end)
            break;
        char e = short_escape(*p);
        *o++ = '\\';
        if (e) {
            *o++ = e;
        } else {
            memcpy(o, "u00", 3);
            o[3] = hex[*p >> 4];
            o[4] = hex[*p & 15];
            o += 5;
        }
        p++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* The length of the valid UTF-8 character at p, or 0 when p does not begin
 * one. */
static size_t utf8_char_len(const uchar *p, const uchar *end)
{
    if (*p < 0x80)
        return 1;
    struct scan s;
    const uchar *q = scan_utf8(p, end, &s);
    return q ? (size_t)(q - p) : 0;
}

size_t sb_utf8_repair(char *dst, size_t cap, const char *src, size_t len,
                      bool cut, bool *repaired)
{
    static const char fffd[] = "\xef\xbf\xbd";
    const uchar *p = (const uchar *)src, *end = p + len;
    bool bad = false;
    if (repaired)
        *repaired = false;
    if (cap <= SB_UTF8_ELLIPSIS_LEN) {
        if (cap)
            dst[0] = '\0';
        return 0;
    }
    /* Everything fits unless it was cut already or is too long once
     * repaired: then keep room for the marker. */
    size_t total = 0;
    for (const uchar *q = p; q < end;) {
        size_t n = utf8_char_len(q, end);
        total += n ? n : sizeof(fffd) - 1;
        bad = bad || !n;
        q += n ? n : 1;
    }
    if (total > cap - 1)
        cut = true;
    size_t limit = cut ? cap - 1 - SB_UTF8_ELLIPSIS_LEN : cap - 1;
    size_t o = 0;
    while (p < end) {
        size_t n = utf8_char_len(p, end);
        const char *from = n ? (const char *)p : fffd;
        size_t k = n ? n : sizeof(fffd) - 1;
        if (o + k > limit)
            break;
        memcpy(dst + o, from, k);
        o += k;
        p += n ? n : 1;
    }
    if (cut) {
        memcpy(dst + o, SB_UTF8_ELLIPSIS, SB_UTF8_ELLIPSIS_LEN);
        o += SB_UTF8_ELLIPSIS_LEN;
    }
    dst[o] = '\0';
    if (repaired)
        *repaired = bad;
    return o;
}

bool sb_utf8_valid(const char *buf, size_t len)
{
    const uchar *p = (const uchar *)buf, *end = p + len;
    struct scan s;
    memset(&s, 0, sizeof(s));
    while (p < end) {
        p = skip_ascii(p, end);
        if (p == end)
            break;
        p = scan_utf8(p, end, &s);
        if (!p)
            return false;
    }
    return true;
}

/* How many bytes the character lead byte c starts, and the range its
 * second byte must be in (RFC 3629's table: no overlongs, no surrogates,
 * nothing above U+10FFFF); 0 when c starts no character. */
static int utf8_lead(uchar c, uchar *lo, uchar *hi)
{
    *lo = 0x80;
    *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0)
            *lo = 0xa0;
        else if (c == 0xed)
            *hi = 0x9f;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0)
            *lo = 0x90;
        else if (c == 0xf4)
            *hi = 0x8f;
        return 4;
    }
    return 0;
}

bool sb_utf8_valid_prefix(const char *buf, size_t len, size_t *tail)
{
    const uchar *p = (const uchar *)buf, *end = p + len;
    *tail = 0;
    while (p < end) {
        p = skip_ascii(p, end);
        if (p == end)
            break;
        uchar lo, hi;
        int n = utf8_lead(*p, &lo, &hi);
        if (!n)
            return false;
        for (int i = 1; i < n; i++) {
            if (p + i == end) {
                *tail = (size_t)i;
                return true;
            }
            if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
                return false;
        }
        p += n;
    }
    return true;
}

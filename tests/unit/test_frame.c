/* Unit tests for frame's reader of clients' frames: masked frames built by
 * hand (a small encoder below) read whole, with 7-, 16- and 64-bit lengths
 * (minimal or not), back to back, fragmented with a control frame inside;
 * every protocol error section 5 names, each where the bad frame's header
 * ends; unmasking from every mask offset against a byte-at-a-time
 * reference; the close codes a client may send. Every read checks the
 * chunks' invariants (inside the buffer, ending where *pos stops,
 * `remaining` counting down to 0, control frames small and outside any
 * message). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* ---- building frames ---------------------------------------------------- */

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bytes_free(bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* len bytes that differ from frame to frame (seed) and byte to byte. */
static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8) * 13 + 1);
    return p;
}

/* Width of the length field: the shortest that fits, or 7, 16, 64 bits. */
enum { W_MIN = 0, W7 = 7, W16 = 16, W64 = 64 };

/* Appends a frame whose first byte is b0 (FIN, RSV bits, opcode) with its
 * length written in `width` bits, masked with a fresh random mask unless
 * !masked. */
static void put_raw(bytes *b, unsigned b0, bool masked, const void *payload,
                    uint64_t len, int width)
{
    unsigned char h[14];
    size_t o;
    uint8_t m[4];
    if (width == W_MIN)
        width = len < 126 ? W7 : len <= 0xffff ? W16 : W64;
    h[0] = (unsigned char)b0;
    if (width == W7) {
        ck_assert_uint_lt(len, 126);
        h[1] = (unsigned char)len;
        o = 2;
    } else if (width == W16) {
        ck_assert_uint_le(len, 0xffff);
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        o = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        o = 10;
    }
    if (masked) {
        uint64_t r = rnd();
        for (int k = 0; k < 4; k++)
            m[k] = (uint8_t)(r >> (8 * k));
        h[1] |= 0x80;
        memcpy(h + o, m, 4);
        o += 4;
    }
    put(b, h, o);
    if (!payload)
        return; /* a header alone */
    size_t start = b->n;
    put(b, payload, (size_t)len);
    if (masked)
        for (size_t i = 0; i < len; i++)
            b->p[start + i] ^= m[i & 3];
}

/* What a test expects of one frame. */
typedef struct spec {
    bool fin;
    int opcode;
    size_t len;
    int width;   /* of the length field (W_MIN: the shortest) */
    int message; /* the chunks' message */
} spec;

/* Appends the frames of specs; frame i carries pattern(len, i). */
static void build(bytes *b, const spec *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char *pl = pattern(s[i].len, (unsigned)i);
        put_raw(b, (s[i].fin ? 0x80u : 0) | (unsigned)s[i].opcode, true, pl,
                s[i].len, s[i].width);
        free(pl);
    }
}

/* ---- reading frames ----------------------------------------------------- */

enum { MAXF = 64 };

/* One frame as read: its chunks' fields and their payload joined. */
typedef struct got {
    int opcode, message;
    bool fin;
    uint64_t frame_len;
    bytes payload;
    int chunks;
} got;

typedef struct result {
    got frames[MAXF];
    int nframes;
    bool error;
    const char *why;
    size_t stop;    /* where the parser stopped in the whole input */
    bool mid_frame; /* the input ended inside a frame */
} result;

static void result_free(result *r)
{
    for (int i = 0; i < r->nframes; i++)
        bytes_free(&r->frames[i].payload);
    r->nframes = 0;
}

/* Reads src[0..n) given in pieces that end at cuts[0] < cuts[1] < ... and
 * at n, each copied into a buffer of its own, with a fresh parser, checking
 * every chunk as it comes. */
static void feed(const unsigned char *src, size_t n, const size_t *cuts,
                 size_t ncuts, result *r)
{
    sb_ws_parser p;
    memset(&p, 0, sizeof p);
    memset(r, 0, sizeof *r);
    got *cur = NULL;
    uint64_t left = 0;
    bool in_frame = false;
    size_t start = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        ck_assert_uint_le(start, end);
        size_t plen = end - start;
        unsigned char *piece = malloc(plen ? plen : 1);
        ck_assert_ptr_nonnull(piece);
        memcpy(piece, src + start, plen);
        size_t pos = 0;
        for (;;) {
            sb_ws_chunk ch;
            const char *why = NULL;
            size_t before = pos;
            int rc = sb_ws_parse(&p, piece, plen, &pos, &ch, &why);
            ck_assert_uint_ge(pos, before);
            ck_assert_uint_le(pos, plen);
            if (rc == SB_WS_MORE) {
                ck_assert_uint_eq(pos, plen);
                break;
            }
            if (rc == SB_WS_ERROR) {
                ck_assert_ptr_nonnull(why);
                ck_assert_uint_gt(strlen(why), 0);
                r->error = true;
                r->why = why;
                r->stop = start + pos;
                free(piece);
                return;
            }
            ck_assert_int_eq(rc, SB_WS_CHUNK);
            ck_assert(ch.data >= piece && ch.data <= piece + plen);
            ck_assert(ch.data + ch.len == piece + pos);
            if (ch.first) {
                ck_assert(!in_frame);
                ck_assert_int_lt(r->nframes, MAXF);
                cur = &r->frames[r->nframes++];
                cur->opcode = ch.opcode;
                cur->message = ch.message;
                cur->fin = ch.fin;
                cur->frame_len = ch.frame_len;
                left = ch.frame_len;
            } else {
                /* Only a frame's first chunk may be empty. */
                ck_assert(in_frame);
                ck_assert_uint_gt(ch.len, 0);
                ck_assert_uint_eq(ch.frame_len, 0);
                ck_assert_int_eq(ch.opcode, cur->opcode);
                ck_assert_int_eq(ch.message, cur->message);
                ck_assert_int_eq(ch.fin, cur->fin);
            }
            if (ch.opcode >= SB_WS_CLOSE) {
                ck_assert_int_eq(ch.message, 0);
                ck_assert_uint_le(ch.len, 125);
                ck_assert(ch.fin);
            } else {
                ck_assert(ch.message == SB_WS_TEXT ||
                          ch.message == SB_WS_BINARY);
            }
            ck_assert_uint_le(ch.len, left);
            left -= ch.len;
            ck_assert_uint_eq(ch.remaining, left);
            in_frame = left > 0;
            put(&cur->payload, ch.data, ch.len);
            cur->chunks++;
        }
        free(piece);
        start = end;
    }
    r->stop = n;
    r->mid_frame = in_frame;
}

static void feed_whole(const bytes *b, result *r)
{
    feed(b->p, b->n, NULL, 0, r);
}

static void feed_bytewise(const bytes *b, result *r)
{
    size_t *cuts = malloc((b->n ? b->n : 1) * sizeof *cuts);
    ck_assert_ptr_nonnull(cuts);
    for (size_t i = 0; i < b->n; i++)
        cuts[i] = i + 1;
    feed(b->p, b->n, cuts, b->n ? b->n - 1 : 0, r);
    free(cuts);
}

/* The frames and verdict of a and b are the same. */
static void same_result(const result *a, const result *b)
{
    ck_assert_int_eq(a->nframes, b->nframes);
    for (int i = 0; i < a->nframes; i++) {
        const got *x = &a->frames[i], *y = &b->frames[i];
        ck_assert_int_eq(x->opcode, y->opcode);
        ck_assert_int_eq(x->message, y->message);
        ck_assert_int_eq(x->fin, y->fin);
        ck_assert_uint_eq(x->frame_len, y->frame_len);
        ck_assert_uint_eq(x->payload.n, y->payload.n);
        if (x->payload.n)
            ck_assert_mem_eq(x->payload.p, y->payload.p, x->payload.n);
    }
    ck_assert_int_eq(a->error, b->error);
    ck_assert_uint_eq(a->stop, b->stop);
    ck_assert_int_eq(a->mid_frame, b->mid_frame);
    if (a->error)
        ck_assert_str_eq(a->why, b->why);
}

/* r read exactly the frames of specs, unmasked, and no error. */
static void expect_frames(const result *r, const spec *s, size_t n)
{
    ck_assert_msg(!r->error, "unexpected error: %s", r->why);
    ck_assert(!r->mid_frame);
    ck_assert_int_eq(r->nframes, (int)n);
    for (size_t i = 0; i < n; i++) {
        const got *g = &r->frames[i];
        ck_assert_int_eq(g->opcode, s[i].opcode);
        ck_assert_int_eq(g->fin, s[i].fin);
        ck_assert_int_eq(g->message, s[i].message);
        ck_assert_uint_eq(g->frame_len, s[i].len);
        ck_assert_uint_eq(g->payload.n, s[i].len);
        unsigned char *pl = pattern(s[i].len, (unsigned)i);
        if (s[i].len)
            ck_assert_mem_eq(g->payload.p, pl, s[i].len);
        free(pl);
    }
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_text_frame_whole)
{
    bytes b = {0};
    put_raw(&b, 0x80 | SB_WS_TEXT, true, "Hello", 5, W_MIN);
    ck_assert_uint_eq(b.n, 2 + 4 + 5);
    ck_assert(memcmp(b.p + 6, "Hello", 5) != 0); /* it is masked */

    sb_ws_parser p;
    memset(&p, 0, sizeof p);
    size_t pos = 0;
    sb_ws_chunk ch;
    const char *why = NULL;
    ck_assert_int_eq(sb_ws_parse(&p, b.p, b.n, &pos, &ch, &why), SB_WS_CHUNK);
    ck_assert_ptr_eq(ch.data, b.p + 6);
    ck_assert_uint_eq(ch.len, 5);
    ck_assert_mem_eq(ch.data, "Hello", 5); /* unmasked in place */
    ck_assert(ch.fin);
    ck_assert(ch.first);
    ck_assert_uint_eq(ch.frame_len, 5);
    ck_assert_uint_eq(ch.remaining, 0);
    ck_assert_int_eq(ch.opcode, SB_WS_TEXT);
    ck_assert_int_eq(ch.message, SB_WS_TEXT);
    ck_assert_uint_eq(pos, b.n);
    ck_assert_ptr_null(why);

    /* Nothing more: read more, and the parser awaits a new frame. */
    ck_assert_int_eq(sb_ws_parse(&p, b.p, b.n, &pos, &ch, &why), SB_WS_MORE);
    ck_assert_uint_eq(pos, b.n);
    ck_assert_int_eq(p.message, 0);
    ck_assert(!p.in_payload);
    ck_assert_uint_eq(p.hlen, 0);
    bytes_free(&b);
}
END_TEST

START_TEST(test_lengths)
{
    /* Every length at the edges of the three encodings, minimally encoded
     * and in every wider field (which a client may use). */
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70001};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t len = lens[li];
        for (int w = 0; w < 4; w++) {
            static const int widths[] = {W_MIN, W7, W16, W64};
            int width = widths[w];
            if ((width == W7 && len >= 126) || (width == W16 && len > 0xffff))
                continue;
            spec s = {true, SB_WS_BINARY, len, width, SB_WS_BINARY};
            bytes b = {0};
            build(&b, &s, 1);
            size_t hdr = (width == W7 || (width == W_MIN && len < 126)) ? 2
                         : (width == W16 || (width == W_MIN && len <= 0xffff))
                             ? 4
                             : 10;
            ck_assert_uint_eq(b.n, hdr + 4 + len);
            result r;
            feed_whole(&b, &r);
            expect_frames(&r, &s, 1);
            ck_assert_int_eq(r.frames[0].chunks, 1); /* whole: one chunk */
            result_free(&r);
            /* And in two pieces cut in the length field, the mask and the
             * payload. */
            for (size_t cut = 1; cut < b.n; cut += cut < 16 ? 1 : 997) {
                feed(b.p, b.n, &cut, 1, &r);
                expect_frames(&r, &s, 1);
                result_free(&r);
            }
            bytes_free(&b);
        }
    }
}
END_TEST

START_TEST(test_server_headers_read_back)
{
    /* The server's own headers, given the mask bit and a mask, read as the
     * same lengths: the two sides agree on the encoding. */
    static const size_t lens[] = {0, 5, 125, 126, 65535, 65536, 100000};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t len = lens[li];
        unsigned char h[SB_WS_MAX_HEADER];
        size_t hl = sb_ws_header_write(h, SB_WS_BINARY, len);
        ck_assert_uint_eq(hl, sb_ws_header_len(len));
        ck_assert_uint_le(hl, SB_WS_MAX_HEADER);
        bytes b = {0};
        h[1] |= 0x80;
        put(&b, h, hl);
        static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
        put(&b, mask, 4);
        unsigned char *pl = pattern(len, 0);
        size_t at = b.n;
        put(&b, pl, len);
        sb_ws_unmask(b.p + at, len, mask, 0); /* masking is the same XOR */
        spec s = {true, SB_WS_BINARY, len, W_MIN, SB_WS_BINARY};
        result r;
        feed_whole(&b, &r);
        expect_frames(&r, &s, 1);
        result_free(&r);
        free(pl);
        bytes_free(&b);
    }
}
END_TEST

START_TEST(test_empty_frames)
{
    /* An empty frame, whatever its length field, is one empty chunk. */
    static const int widths[] = {W7, W16, W64};
    static const int ops[] = {SB_WS_TEXT, SB_WS_BINARY, SB_WS_PING, SB_WS_PONG,
                              SB_WS_CLOSE};
    for (int w = 0; w < 3; w++) {
        for (int o = 0; o < 5; o++) {
            bytes b = {0};
            put_raw(&b, 0x80u | (unsigned)ops[o], true, "", 0, widths[w]);
            sb_ws_parser p;
            memset(&p, 0, sizeof p);
            size_t pos = 0;
            sb_ws_chunk ch;
            const char *why = NULL;
            ck_assert_int_eq(sb_ws_parse(&p, b.p, b.n, &pos, &ch, &why),
                             SB_WS_CHUNK);
            ck_assert_uint_eq(ch.len, 0);
            ck_assert(ch.first);
            ck_assert(ch.fin);
            ck_assert_uint_eq(ch.frame_len, 0);
            ck_assert_uint_eq(ch.remaining, 0);
            ck_assert_int_eq(ch.opcode, ops[o]);
            ck_assert_int_eq(ch.message, ops[o] < SB_WS_CLOSE ? ops[o] : 0);
            ck_assert_uint_eq(pos, b.n);
            ck_assert_int_eq(sb_ws_parse(&p, b.p, b.n, &pos, &ch, &why),
                             SB_WS_MORE);
            bytes_free(&b);
        }
    }
}
END_TEST

/* Frames of every kind back to back: a message in one frame, one in three
 * with controls between its fragments, empty ones, each length encoding. */
static const spec mixed[] = {
    {true, SB_WS_TEXT, 5, W_MIN, SB_WS_TEXT},
    {true, SB_WS_BINARY, 200, W_MIN, SB_WS_BINARY},
    {false, SB_WS_TEXT, 3, W_MIN, SB_WS_TEXT},
    {true, SB_WS_PING, 4, W_MIN, 0},
    {false, SB_WS_CONT, 0, W_MIN, SB_WS_TEXT},
    {true, SB_WS_PONG, 0, W16, 0},
    {true, SB_WS_CONT, 130, W64, SB_WS_TEXT},
    {true, SB_WS_TEXT, 0, W_MIN, SB_WS_TEXT},
    {false, SB_WS_BINARY, 1, W16, SB_WS_BINARY},
    {true, SB_WS_CONT, 2, W_MIN, SB_WS_BINARY},
    {true, SB_WS_CLOSE, 125, W64, 0},
};
#define NMIXED (sizeof mixed / sizeof *mixed)

START_TEST(test_back_to_back)
{
    bytes b = {0};
    build(&b, mixed, NMIXED);
    result r;
    feed_whole(&b, &r);
    expect_frames(&r, mixed, NMIXED);
    for (int i = 0; i < r.nframes; i++)
        ck_assert_int_eq(r.frames[i].chunks, 1);
    result_free(&r);
    bytes_free(&b);
}
END_TEST

START_TEST(test_fragmented_message)
{
    /* TEXT without FIN, a PING, the continuation with FIN: the
     * continuation belongs to the text message, the ping to none; after
     * the FIN a new message may start. */
    static const spec s[] = {
        {false, SB_WS_TEXT, 6, W_MIN, SB_WS_TEXT},
        {true, SB_WS_PING, 3, W_MIN, 0},
        {true, SB_WS_CONT, 5, W_MIN, SB_WS_TEXT},
        {false, SB_WS_BINARY, 7, W_MIN, SB_WS_BINARY},
        {false, SB_WS_CONT, 1, W_MIN, SB_WS_BINARY},
        {true, SB_WS_CLOSE, 2, W_MIN, 0},
        {true, SB_WS_CONT, 9, W_MIN, SB_WS_BINARY},
        {true, SB_WS_TEXT, 1, W_MIN, SB_WS_TEXT},
    };
    bytes b = {0};
    build(&b, s, sizeof s / sizeof *s);
    result r;
    feed_whole(&b, &r);
    expect_frames(&r, s, sizeof s / sizeof *s);
    result_free(&r);
    bytes_free(&b);
}
END_TEST

/* The parser at the cuts reads what it reads whole, checked every way. */
static void check_cuts(const bytes *b, const result *whole, const size_t *cuts,
                       size_t ncuts)
{
    result r;
    feed(b->p, b->n, cuts, ncuts, &r);
    same_result(whole, &r);
    result_free(&r);
}

START_TEST(test_every_split)
{
    bytes b = {0};
    build(&b, mixed, NMIXED);
    result whole;
    feed_whole(&b, &whole);
    expect_frames(&whole, mixed, NMIXED);
    for (size_t k = 0; k <= b.n; k++)
        check_cuts(&b, &whole, &k, 1);
    result r;
    feed_bytewise(&b, &r);
    same_result(&whole, &r);
    result_free(&r);
    result_free(&whole);
    bytes_free(&b);
}
END_TEST

START_TEST(test_every_two_splits)
{
    /* Smaller frames, cut in every pair of places. */
    static const spec s[] = {
        {false, SB_WS_TEXT, 2, W_MIN, SB_WS_TEXT},
        {true, SB_WS_PING, 0, W_MIN, 0},
        {false, SB_WS_CONT, 3, W16, SB_WS_TEXT},
        {true, SB_WS_CONT, 9, W64, SB_WS_TEXT},
        {true, SB_WS_BINARY, 5, W16, SB_WS_BINARY},
        {true, SB_WS_CLOSE, 2, W_MIN, 0},
    };
    bytes b = {0};
    build(&b, s, sizeof s / sizeof *s);
    result whole;
    feed_whole(&b, &whole);
    expect_frames(&whole, s, sizeof s / sizeof *s);
    for (size_t i = 0; i <= b.n; i++)
        for (size_t j = i; j <= b.n; j++) {
            size_t cuts[2] = {i, j};
            check_cuts(&b, &whole, cuts, 2);
        }
    result_free(&whole);
    bytes_free(&b);
}
END_TEST

START_TEST(test_header_ends_a_read)
{
    /* A read that ends just after a header: the frame is not lost for
     * that. Its first chunk (empty: the payload has not come) still says
     * first, the frame's length and the message it opens, so that the
     * continuation after it is accepted. */
    static const spec s[] = {
        {false, SB_WS_TEXT, 3, W_MIN, SB_WS_TEXT},
        {true, SB_WS_CONT, 4, W_MIN, SB_WS_TEXT},
    };
    bytes b = {0};
    build(&b, s, 2);
    size_t cut = 2 + 4; /* the first header */
    result r;
    feed(b.p, b.n, &cut, 1, &r);
    expect_frames(&r, s, 2);
    ck_assert_int_eq(r.frames[0].chunks, 2);
    result_free(&r);

    /* Straight on the parser: the header alone gives an empty first
     * chunk carrying what the header said. */
    sb_ws_parser p;
    memset(&p, 0, sizeof p);
    size_t pos = 0;
    sb_ws_chunk ch;
    const char *why = NULL;
    ck_assert_int_eq(sb_ws_parse(&p, b.p, cut, &pos, &ch, &why), SB_WS_CHUNK);
    ck_assert(ch.first);
    ck_assert_uint_eq(ch.len, 0);
    ck_assert_uint_eq(ch.frame_len, 3);
    ck_assert_uint_eq(ch.remaining, 3);
    ck_assert_int_eq(ch.message, SB_WS_TEXT);
    ck_assert_int_eq(sb_ws_parse(&p, b.p, cut, &pos, &ch, &why), SB_WS_MORE);
    ck_assert_uint_eq(pos, cut);
    bytes_free(&b);

    /* The biggest length allowed, header only. */
    bytes big = {0};
    put_raw(&big, 0x80 | SB_WS_BINARY, true, NULL, UINT64_MAX >> 1, W64);
    result rb;
    feed_whole(&big, &rb);
    ck_assert(!rb.error);
    ck_assert(rb.mid_frame);
    ck_assert_int_eq(rb.nframes, 1);
    ck_assert_uint_eq(rb.frames[0].frame_len, UINT64_MAX >> 1);
    ck_assert_uint_eq(rb.frames[0].payload.n, 0);
    result_free(&rb);
    bytes_free(&big);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

/* Reads b whole, in two pieces at every cut and byte by byte; each must
 * stop with an error whose reason contains `want`, where the header of
 * frame `bad` ends (`stop`), after reading the `good` frames before it. */
static void expect_error(const bytes *b, int good, size_t stop,
                         const char *want)
{
    result whole;
    feed_whole(b, &whole);
    ck_assert_msg(whole.error, "no error (want \"%s\")", want);
    ck_assert_msg(strstr(whole.why, want), "\"%s\", want \"%s\"", whole.why,
                  want);
    ck_assert_int_eq(whole.nframes, good);
    ck_assert_uint_eq(whole.stop, stop);
    for (size_t k = 0; k <= b->n; k++)
        check_cuts(b, &whole, &k, 1);
    result r;
    feed_bytewise(b, &r);
    same_result(&whole, &r);
    result_free(&r);
    result_free(&whole);
}

/* A frame with first byte b0 and a 3-byte payload, after `before` good
 * frames; the error comes where its header ends. */
static void bad_after(const spec *before, size_t n, unsigned b0, bool masked,
                      const char *want)
{
    bytes b = {0};
    build(&b, before, n);
    size_t stop = b.n + 2 + (masked ? 4 : 0);
    put_raw(&b, b0, masked, "abc", 3, W_MIN);
    expect_error(&b, (int)n, stop, want);
    bytes_free(&b);
}

static const spec one_text = {true, SB_WS_TEXT, 4, W_MIN, SB_WS_TEXT};
static const spec open_text = {false, SB_WS_TEXT, 4, W_MIN, SB_WS_TEXT};
static const spec open_binary = {false, SB_WS_BINARY, 4, W_MIN, SB_WS_BINARY};
static const spec a_ping = {true, SB_WS_PING, 1, W_MIN, 0};

START_TEST(test_reserved_bits)
{
    for (unsigned rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        bad_after(NULL, 0, 0x80 | rsv | SB_WS_TEXT, true, "Reserved bits");
        bad_after(&one_text, 1, 0x80 | rsv | SB_WS_PING, true, "Reserved bits");
        bad_after(&open_text, 1, rsv | SB_WS_CONT, true, "Reserved bits");
    }
    bad_after(NULL, 0, 0xf0 | SB_WS_BINARY, true, "Reserved bits");
}
END_TEST

START_TEST(test_reserved_opcodes)
{
    for (unsigned op = 3; op <= 0xf; op++) {
        if (op >= SB_WS_CLOSE && op <= SB_WS_PONG)
            continue;
        bad_after(NULL, 0, 0x80 | op, true, "Reserved opcode");
        bad_after(&one_text, 1, op, true, "Reserved opcode");
        bad_after(&open_binary, 1, 0x80 | op, true, "Reserved opcode");
    }
}
END_TEST

START_TEST(test_unmasked)
{
    bad_after(NULL, 0, 0x80 | SB_WS_TEXT, false, "Unmasked");
    bad_after(&one_text, 1, 0x80 | SB_WS_PING, false, "Unmasked");
    bad_after(&open_text, 1, 0x80 | SB_WS_CONT, false, "Unmasked");
    /* Unmasked with a 64-bit length: the error comes after its 10 bytes. */
    bytes b = {0};
    put_raw(&b, 0x80 | SB_WS_BINARY, false, "xy", 2, W64);
    expect_error(&b, 0, 10, "Unmasked");
    bytes_free(&b);
}
END_TEST

START_TEST(test_control_frames)
{
    static const unsigned ops[] = {SB_WS_CLOSE, SB_WS_PING, SB_WS_PONG};
    for (int o = 0; o < 3; o++) {
        /* Without FIN. */
        bad_after(NULL, 0, ops[o], true, "Fragmented control");
        bad_after(&open_text, 1, ops[o], true, "Fragmented control");

        /* Over 125 bytes, in any length field; 125 in any is fine. */
        static const int widths[] = {W16, W64};
        for (int w = 0; w < 2; w++) {
            unsigned char *pl = pattern(126, 0);
            bytes b = {0};
            put_raw(&b, 0x80 | ops[o], true, pl, 126, widths[w]);
            expect_error(&b, 0, widths[w] == W16 ? 8 : 14, "over 125");
            bytes_free(&b);

            spec ok = {true, (int)ops[o], 125, widths[w], 0};
            build(&b, &ok, 1);
            result r;
            feed_whole(&b, &r);
            expect_frames(&r, &ok, 1);
            result_free(&r);
            bytes_free(&b);
            free(pl);
        }
        /* A huge length is refused from the header alone. */
        bytes b = {0};
        put_raw(&b, 0x80 | ops[o], true, NULL, (uint64_t)1 << 40, W64);
        expect_error(&b, 0, 14, "over 125");
        bytes_free(&b);
    }
}
END_TEST

START_TEST(test_length_top_bit)
{
    static const uint64_t lens[] = {(uint64_t)1 << 63, UINT64_MAX,
                                    ((uint64_t)1 << 63) | 5};
    for (int i = 0; i < 3; i++) {
        bytes b = {0};
        put_raw(&b, 0x80 | SB_WS_BINARY, true, NULL, lens[i], W64);
        expect_error(&b, 0, 14, "2^63");
        bytes_free(&b);
        /* Also as a continuation and a control frame. */
        build(&b, &open_text, 1);
        size_t stop = b.n + 14;
        put_raw(&b, SB_WS_CONT, true, NULL, lens[i], W64);
        expect_error(&b, 1, stop, "2^63");
        bytes_free(&b);
    }
}
END_TEST

START_TEST(test_fragmentation_errors)
{
    /* A continuation with no message open: at the start, after a whole
     * message, after a fragmented one has ended, after a ping. */
    bad_after(NULL, 0, 0x80 | SB_WS_CONT, true, "Continuation");
    bad_after(NULL, 0, SB_WS_CONT, true, "Continuation");
    bad_after(&one_text, 1, 0x80 | SB_WS_CONT, true, "Continuation");
    bad_after(&a_ping, 1, SB_WS_CONT, true, "Continuation");
    static const spec ended[] = {
        {false, SB_WS_BINARY, 2, W_MIN, SB_WS_BINARY},
        {true, SB_WS_CONT, 2, W_MIN, SB_WS_BINARY},
    };
    bad_after(ended, 2, 0x80 | SB_WS_CONT, true, "Continuation");

    /* A new message while one is open, even with a control between. */
    static const unsigned ops[] = {SB_WS_TEXT, SB_WS_BINARY};
    for (int o = 0; o < 2; o++) {
        bad_after(&open_text, 1, 0x80 | ops[o], true, "New message");
        bad_after(&open_binary, 1, ops[o], true, "New message");
        static const spec open_then_ping[] = {
            {false, SB_WS_TEXT, 1, W_MIN, SB_WS_TEXT},
            {true, SB_WS_PING, 0, W_MIN, 0},
            {false, SB_WS_CONT, 2, W_MIN, SB_WS_TEXT},
        };
        bad_after(open_then_ping, 3, 0x80 | ops[o], true, "New message");
    }
}
END_TEST

/* ---- unmasking and close codes ------------------------------------------ */

START_TEST(test_unmask_offsets)
{
    static const uint8_t masks[][4] = {
        {0x01, 0x02, 0x04, 0x08},
        {0xff, 0x00, 0xa5, 0x3c},
        {0, 0, 0, 0},
    };
    unsigned char buf[64], want[64], orig[64];
    for (int m = 0; m < 3; m++)
        for (unsigned at = 0; at < 4; at++)
            for (size_t len = 0; len <= 40; len++)
                for (size_t align = 0; align < 8; align++) {
                    for (size_t i = 0; i < sizeof buf; i++)
                        orig[i] = (unsigned char)rnd();
                    memcpy(buf, orig, sizeof buf);
                    memcpy(want, orig, sizeof buf);
                    for (size_t i = 0; i < len; i++)
                        want[align + i] ^= masks[m][(at + i) % 4];
                    unsigned next =
                        sb_ws_unmask(buf + align, len, masks[m], at);
                    ck_assert_uint_eq(next, (at + len) % 4);
                    /* Exactly those bytes, nothing either side. */
                    ck_assert_mem_eq(buf, want, sizeof buf);
                    /* Twice is the identity. */
                    sb_ws_unmask(buf + align, len, masks[m], at);
                    ck_assert_mem_eq(buf, orig, sizeof buf);
                }
}
END_TEST

START_TEST(test_unmask_in_steps)
{
    /* A payload unmasked in pieces, each starting at the offset the last
     * returned, is unmasked as in one go. */
    static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
    unsigned char one[300], steps[300];
    for (size_t i = 0; i < sizeof one; i++)
        one[i] = steps[i] = (unsigned char)rnd();
    sb_ws_unmask(one, sizeof one, mask, 0);
    for (int trial = 0; trial < 200; trial++) {
        unsigned char copy[300];
        memcpy(copy, steps, sizeof copy);
        unsigned at = 0;
        size_t i = 0;
        while (i < sizeof copy) {
            size_t n = rnd() % 23;
            if (n > sizeof copy - i)
                n = sizeof copy - i;
            at = sb_ws_unmask(copy + i, n, mask, at);
            i += n;
        }
        ck_assert_mem_eq(copy, one, sizeof one);
    }
}
END_TEST

START_TEST(test_close_codes)
{
    static const struct {
        int code;
        bool ok;
    } cases[] = {
        {0, false},     {999, false},  {1000, true},   {1001, true},
        {1002, true},   {1003, true},  {1004, false},  {1005, false},
        {1006, false},  {1007, true},  {1008, true},   {1009, true},
        {1010, true},   {1011, true},  {1012, true},   {1013, true},
        {1014, true},   {1015, false}, {1016, false},  {2999, false},
        {3000, true},   {4000, true},  {4999, true},   {5000, false},
        {65535, false}, {-1, false},   {-1000, false}, {1999, false},
        {2000, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(sb_ws_close_code_valid(cases[i].code) == cases[i].ok,
                      "close code %d", cases[i].code);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_frame_whole);
    tcase_add_test(tc, test_lengths);
    tcase_add_test(tc, test_server_headers_read_back);
    tcase_add_test(tc, test_empty_frames);
    tcase_add_test(tc, test_back_to_back);
    tcase_add_test(tc, test_fragmented_message);
    tcase_add_test(tc, test_every_split);
    tcase_add_test(tc, test_every_two_splits);
    tcase_add_test(tc, test_header_ends_a_read);
    tcase_add_test(tc, test_reserved_bits);
    tcase_add_test(tc, test_reserved_opcodes);
    tcase_add_test(tc, test_unmasked);
    tcase_add_test(tc, test_control_frames);
    tcase_add_test(tc, test_length_top_bit);
    tcase_add_test(tc, test_fragmentation_errors);
    tcase_add_test(tc, test_unmask_offsets);
    tcase_add_test(tc, test_unmask_in_steps);
    tcase_add_test(tc, test_close_codes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests for frame's reader of clients' frames: masked frames built by
 * hand (a small encoder below); every read checks the chunks' invariants
 * (inside the buffer, ending where *pos stops, `remaining` counting down to
 * 0, control frames small and outside any message). */
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

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_header_ends_a_read);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

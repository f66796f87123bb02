/*
 * fuzz_frame — libFuzzer target for the reader of clients' WebSocket frames
 * (wire/frame.c). An input is a plan of reads and a stream of bytes:
 *
 *   byte 0        bit 7: read the stream byte by byte; bits 0-3: how many
 *                 plan bytes follow (0-15)
 *   plan bytes    the lengths of the reads (0-255, used in turn, again and
 *                 again; a 0 is a read of nothing)
 *   the rest      the stream
 *
 * The stream is read three ways, each from a copy the parser may unmask in
 * place: (a) in one buffer, (b) in the planned reads, each copied into a
 * buffer of exactly its size so that the sanitizers see any read past it,
 * (c) by a reference reader below, written straight from RFC 6455 5.2 for
 * a whole buffer. The frames (opcode, FIN, message, length, payload joined)
 * and the verdict (an error and where it stopped, the input ending inside
 * a frame) must be the same all three ways, and every chunk must keep the
 * parser's promises (see check_chunk); anything else aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_frame: %s:%d: %s\n", __FILE__, __LINE__,     \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* One frame as read: what its first chunk said, where its payload went in
 * run.pay, and in how many chunks it came. */
typedef struct frame_rec {
    int opcode, message;
    bool fin;
    uint64_t frame_len;
    size_t off, len;
    size_t chunks;
} frame_rec;

/* What one way of reading found. */
typedef struct run {
    frame_rec *f;
    size_t nf, capf;
    unsigned char *pay; /* every frame's payload, one after the other */
    size_t npay, cappay;
    bool error;
    const char *why;
    size_t stop;    /* where reading stopped in the stream */
    bool mid_frame; /* the stream ended inside a frame's payload */
} run;

static void run_init(run *r, size_t n)
{
    memset(r, 0, sizeof *r);
    r->capf = n / 2 + 1; /* a frame has at least a 2-byte header */
    r->f = malloc(r->capf * sizeof *r->f);
    r->cappay = n;
    r->pay = malloc(n ? n : 1);
    CHECK(r->f && r->pay);
}

static void run_free(run *r)
{
    free(r->f);
    free(r->pay);
}

/* The reading in progress of (a) or (b). */
typedef struct reading {
    sb_ws_parser p;
    run *r;
    frame_rec *cur;
    uint64_t left; /* of the current frame's payload */
    bool in_frame;
} reading;

/* Checks a chunk of piece[0..plen), after which the parser stands at pos,
 * having stood at before, and records it. */
static void check_chunk(reading *g, const unsigned char *piece, size_t plen,
                        size_t before, size_t pos, const sb_ws_chunk *ch)
{
    run *r = g->r;
    /* Progress: a chunk takes a header's last byte or payload. */
    CHECK(pos > before && pos <= plen);
    /* Its data is in the buffer and ends where the parser stopped. */
    uintptr_t b = (uintptr_t)piece, d = (uintptr_t)ch->data;
    CHECK(d >= b && d <= b + plen);
    CHECK(ch->len <= plen - (d - b));
    CHECK(d - b + ch->len == pos);
    if (ch->first) {
        CHECK(!g->in_frame);
        CHECK(r->nf < r->capf);
        g->cur = &r->f[r->nf++];
        g->cur->opcode = ch->opcode;
        g->cur->message = ch->message;
        g->cur->fin = ch->fin;
        g->cur->frame_len = ch->frame_len;
        g->cur->off = r->npay;
        g->cur->len = 0;
        g->cur->chunks = 0;
        g->left = ch->frame_len;
    } else {
        /* The rest of a frame: not empty, and the same frame. */
        CHECK(g->in_frame && g->cur);
        CHECK(ch->len > 0);
        CHECK(ch->frame_len == 0);
        CHECK(ch->opcode == g->cur->opcode && ch->fin == g->cur->fin &&
              ch->message == g->cur->message);
    }
    switch (ch->opcode) {
    case SB_WS_CLOSE:
    case SB_WS_PING:
    case SB_WS_PONG:
        CHECK(ch->fin && ch->message == 0);
        CHECK(ch->len <= 125 && g->cur->frame_len <= 125);
        break;
    case SB_WS_CONT:
    case SB_WS_TEXT:
    case SB_WS_BINARY:
        CHECK(ch->message == SB_WS_TEXT || ch->message == SB_WS_BINARY);
        CHECK(ch->opcode == SB_WS_CONT || ch->opcode == ch->message);
        break;
    default:
        CHECK(!"an opcode the parser should have refused");
    }
    /* remaining counts down to 0 within the frame. */
    CHECK(ch->len <= g->left);
    g->left -= ch->len;
    CHECK(ch->remaining == g->left);
    g->in_frame = g->left > 0;
    CHECK(r->npay + ch->len <= r->cappay);
    memcpy(r->pay + r->npay, ch->data, ch->len);
    r->npay += ch->len;
    g->cur->len += ch->len;
    g->cur->chunks++;
}

/* Reads piece[0..plen), stream bytes from `start`; false after an error. */
static bool read_piece(reading *g, unsigned char *piece, size_t plen,
                       size_t start)
{
    size_t pos = 0;
    for (;;) {
        sb_ws_chunk ch;
        const char *why = NULL;
        size_t before = pos;
        int rc = sb_ws_parse(&g->p, piece, plen, &pos, &ch, &why);
        CHECK(pos >= before && pos <= plen);
        if (rc == SB_WS_MORE) {
            CHECK(pos == plen);
            return true;
        }
        if (rc == SB_WS_ERROR) {
            CHECK(why && *why);
            g->r->error = true;
            g->r->why = why;
            g->r->stop = start + pos;
            return false;
        }
        CHECK(rc == SB_WS_CHUNK);
        check_chunk(g, piece, plen, before, pos, &ch);
    }
}

/* (a) and (b): the stream in reads of the plan's lengths (none: one read;
 * bytewise: reads of one byte). */
static void parse_pieces(const uint8_t *in, size_t n, const uint8_t *plan,
                         size_t nplan, bool bytewise, run *r)
{
    reading g;
    memset(&g, 0, sizeof g);
    g.r = r;
    size_t start = 0, k = 0, idle = 0;
    static unsigned char none[1];
    do {
        size_t plen;
        if (bytewise)
            plen = 1;
        else if (nplan == 0 || idle > nplan)
            plen = n - start; /* no plan, or a plan of nothing but 0s */
        else {
            plen = plan[k++ % nplan];
            idle = plen ? 0 : idle + 1;
        }
        if (plen > n - start)
            plen = n - start;
        /* malloc(0) too: under ASan any read of it is reported. */
        unsigned char *piece = malloc(plen);
        bool own = piece != NULL;
        if (!piece) {
            CHECK(plen == 0);
            piece = none;
        }
        memcpy(piece, in + start, plen);
        bool ok = read_piece(&g, piece, plen, start);
        if (own)
            free(piece);
        if (!ok)
            return;
        start += plen;
    } while (start < n);
    r->stop = n;
    r->mid_frame = g.in_frame;
}

/* (c) The reference: a whole buffer, frame by frame, as RFC 6455 5.2 lays
 * a frame out, with the checks of 5.2 (RSV, opcodes), 5.3 (clients mask),
 * 5.4 (fragmentation) and 5.5 (control frames). */
static void parse_reference(const uint8_t *in, size_t n, run *r)
{
    size_t pos = 0;
    int message = 0; /* of the open fragmented message, or 0 */
    while (n - pos >= 2) {
        unsigned b0 = in[pos], b1 = in[pos + 1];
        unsigned len7 = b1 & 0x7f;
        bool masked = (b1 & 0x80) != 0;
        size_t hl = 2 +
                    (len7 == 126   ? 2
                     : len7 == 127 ? 8
                                   : 0) +
                    (masked ? 4 : 0);
        if (n - pos < hl)
            break; /* the header is not all there */
        uint64_t len = len7;
        if (len7 == 126)
            len = (uint64_t)in[pos + 2] * 256 + in[pos + 3];
        else if (len7 == 127) {
            len = 0;
            for (int k = 0; k < 8; k++)
                len = len * 256 + in[pos + 2 + k];
        }
        int op = (int)(b0 & 0x0f);
        bool fin = (b0 & 0x80) != 0;
        bool data = op == 0 || op == 1 || op == 2;
        bool control = op == 8 || op == 9 || op == 10;
        bool bad = (b0 & 0x70) != 0 || !masked || len >= (uint64_t)1 << 63 ||
                   !(data || control) || (control && (!fin || len > 125)) ||
                   (op == 0 && !message) || ((op == 1 || op == 2) && message);
        pos += hl;
        if (bad) {
            r->error = true;
            r->stop = pos;
            return;
        }
        if (op == 1 || op == 2)
            message = op;
        const uint8_t *mask = in + pos - 4;
        size_t take = len < n - pos ? (size_t)len : n - pos;
        CHECK(r->nf < r->capf);
        frame_rec *f = &r->f[r->nf++];
        f->opcode = op;
        f->message = control ? 0 : message;
        f->fin = fin;
        f->frame_len = len;
        f->off = r->npay;
        f->len = take;
        f->chunks = 1;
        for (size_t i = 0; i < take; i++)
            r->pay[r->npay++] = in[pos + i] ^ mask[i % 4];
        pos += take;
        if (take < len) {
            r->mid_frame = true;
            break;
        }
        if (data && fin)
            message = 0;
    }
    r->stop = n;
}

/* Aborts unless x and y found the same; same_why: the same reason too. */
static void same(const run *x, const run *y, bool same_why, const char *what)
{
    bool ok = x->nf == y->nf && x->error == y->error && x->stop == y->stop &&
              x->mid_frame == y->mid_frame;
    for (size_t i = 0; ok && i < x->nf; i++) {
        const frame_rec *a = &x->f[i], *b = &y->f[i];
        ok = a->opcode == b->opcode && a->message == b->message &&
             a->fin == b->fin && a->frame_len == b->frame_len &&
             a->len == b->len &&
             memcmp(x->pay + a->off, y->pay + b->off, a->len) == 0;
    }
    if (ok && same_why && x->error)
        ok = strcmp(x->why, y->why) == 0;
    if (!ok) {
        fprintf(stderr,
                "fuzz_frame: %s differ: %zu/%zu frames, error %d/%d (%s/%s), "
                "stop %zu/%zu, mid_frame %d/%d\n",
                what, x->nf, y->nf, x->error, y->error, x->why ? x->why : "-",
                y->why ? y->why : "-", x->stop, y->stop, x->mid_frame,
                y->mid_frame);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool bytewise = (data[0] & 0x80) != 0;
    size_t nplan = data[0] & 0x0f;
    if (size < 1 + nplan)
        return 0;
    const uint8_t *plan = data + 1;
    const uint8_t *in = data + 1 + nplan;
    size_t n = size - 1 - nplan;

    run whole, pieces, ref;
    run_init(&whole, n);
    run_init(&pieces, n);
    run_init(&ref, n);
    parse_pieces(in, n, NULL, 0, false, &whole);
    parse_pieces(in, n, plan, nplan, bytewise, &pieces);
    parse_reference(in, n, &ref);

    /* In one buffer every frame comes in one chunk. */
    for (size_t i = 0; i < whole.nf; i++)
        CHECK(whole.f[i].chunks == 1);
    same(&whole, &pieces, true, "one read and the planned reads");
    same(&whole, &ref, false, "the parser and the reference");

    run_free(&whole);
    run_free(&pieces);
    run_free(&ref);
    return 0;
}

/*
 * frame — see frame.h.
 */
#include "frame.h"

#include <string.h>

#if defined(__SSE2__) && !defined(SB_SCAN_PORTABLE)
#include <emmintrin.h>
#endif

size_t sb_ws_header_len(size_t len)
{
    if (len < 126)
        return 2;
    if (len <= 0xffff)
        return 4;
    return 10;
}

size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len)
{
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f)); /* FIN, no RSV */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* ---- reading clients' frames ------------------------------------------ */

unsigned sb_ws_unmask(unsigned char *buf, size_t len, const uint8_t mask[4],
                      unsigned at)
{
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (size_t i = 0; i < len; i++)
        buf[i] ^= mask[(at + i) & 3];
    return (at + (unsigned)len) & 3;
#else
    /* The mask as it stands at `at`, in a word whose byte k (bits 8k up,
     * little-endian) masks byte k of the data: rotated once instead of
     * going byte by byte to a whole mask. Then 16 bytes at a time (SSE2),
     * 8, 4 and the last few. */
    uint32_t m32;
    memcpy(&m32, mask, 4);
    unsigned sh = (at & 3) * 8;
    if (sh)
        m32 = (m32 >> sh) | (m32 << (32 - sh));
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    size_t i = 0;
#if defined(__SSE2__) && !defined(SB_SCAN_PORTABLE)
    if (len >= 16) {
        __m128i m128 = _mm_set1_epi64x((long long)m64);
        for (; len - i >= 16; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(buf + i));
            _mm_storeu_si128((__m128i *)(buf + i), _mm_xor_si128(v, m128));
        }
    }
#endif
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, buf + i, 8);
        w ^= m64;
        memcpy(buf + i, &w, 8);
    }
    if (len - i >= 4) {
        uint32_t w;
        memcpy(&w, buf + i, 4);
        w ^= m32;
        memcpy(buf + i, &w, 4);
        i += 4;
    }
    for (uint32_t t = m32; i < len; i++, t >>= 8)
        buf[i] ^= (uint8_t)t;
    return (at + (unsigned)len) & 3;
#endif
}

bool sb_ws_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* The header's length once its first two bytes are known. */
static unsigned header_need(const uint8_t *h)
{
    unsigned n = 2 + ((h[1] & 0x80) ? 4 : 0);
    if ((h[1] & 0x7f) == 126)
        n += 2;
    else if ((h[1] & 0x7f) == 127)
        n += 8;
    return n;
}

/* Checks a whole header and sets the frame up; NULL, or what is wrong. */
static const char *header_take(sb_ws_parser *p, const uint8_t *h)
{
    int op = h[0] & 0x0f;
    if (h[0] & 0x70)
        return "Reserved bits set";
    if (!(h[1] & 0x80))
        return "Unmasked client frame";
    bool fin = (h[0] & 0x80) != 0;
    uint64_t len = h[1] & 0x7f;
    unsigned o = 2;
    if (len == 126) {
        len = ((uint64_t)h[2] << 8) | h[3];
        o = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | h[2 + i];
        o = 10;
        if (len >> 63)
            return "Frame length over 2^63";
    }
    switch (op) {
    case SB_WS_CONT:
        if (!p->message)
            return "Continuation frame without a message";
        break;
    case SB_WS_TEXT:
    case SB_WS_BINARY:
        if (p->message)
            return "New message inside a fragmented one";
        break;
    case SB_WS_CLOSE:
    case SB_WS_PING:
    case SB_WS_PONG:
        if (!fin)
            return "Fragmented control frame";
        if (len > 125)
            return "Control frame over 125 bytes";
        break;
    default:
        return "Reserved opcode";
    }
    memcpy(p->mask, h + o, 4);
    p->mpos = 0;
    p->opcode = (uint8_t)op;
    p->fin = fin;
    p->remaining = len;
    return NULL;
}

int sb_ws_parse(sb_ws_parser *p, unsigned char *buf, size_t len, size_t *pos,
                sb_ws_chunk *out, const char **why)
{
    size_t i = *pos;
    uint64_t frame_len = 0;
    bool first = false;
    if (!p->in_payload) {
        const uint8_t *h;
        size_t avail = len - i;
        unsigned need = p->hlen == 0 && avail >= 2 ? header_need(buf + i) : 0;
        if (need && avail >= need) {
            /* The common case: the whole header is in this read. */
            h = buf + i;
            i += need;
        } else {
            /* Gather it across reads. */
            while (i < len) {
                p->hdr[p->hlen++] = buf[i++];
                if (p->hlen >= 2 && p->hlen == header_need(p->hdr))
                    break;
            }
            if (p->hlen < 2 || p->hlen < header_need(p->hdr)) {
                *pos = i;
                return SB_WS_MORE;
            }
            h = p->hdr;
            p->hlen = 0;
        }
        *why = header_take(p, h);
        if (*why) {
            *pos = i;
            return SB_WS_ERROR;
        }
        p->in_payload = true;
        first = true;
        frame_len = p->remaining;
    }
    size_t take = len - i;
    if (take > p->remaining)
        take = (size_t)p->remaining;
    /* A frame's first chunk comes even when the read ended with its header
     * (then empty, with all of the frame to come): it alone says first,
     * frame_len and, for a data frame, opens the message. */
    if (take == 0 && p->remaining && !first) {
        *pos = i;
        return SB_WS_MORE; /* the payload is to come */
    }
    out->data = buf + i;
    out->len = take;
    out->first = first;
    out->frame_len = first ? frame_len : 0;
    out->opcode = p->opcode;
    out->fin = p->fin;
    out->message = 0;
    p->mpos = (uint8_t)sb_ws_unmask(buf + i, take, p->mask, p->mpos);
    p->remaining -= take;
    i += take;
    if (p->opcode < SB_WS_CLOSE) {
        if (p->opcode != SB_WS_CONT && first)
            p->message = p->opcode; /* open until a frame with FIN */
        out->message = p->message;
        if (p->fin && p->remaining == 0)
            p->message = 0;
    }
    out->remaining = p->remaining;
    if (p->remaining == 0)
        p->in_payload = false;
    *pos = i;
    return SB_WS_CHUNK;
}

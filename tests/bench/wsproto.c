/*
 * wsproto — handshake values, frame headers and masking (see wsproto.h).
 *
 * SHA-1 and base64 come from libwebsockets (lws_SHA1, lws_b64_encode_string)
 * so that the benchmark needs no crypto library of its own: it already links
 * the very library whose echo it measures.
 */
#include "wsproto.h"

#include <libwebsockets.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* lws_b64_encode_string() wants one byte more than the encoding and its NUL
 * take, so it writes into a roomier buffer first. */
static int b64(const uint8_t *in, int in_len, char *out, size_t out_size)
{
    char tmp[64];
    int n = lws_b64_encode_string((const char *)in, in_len, tmp, sizeof(tmp));
    if (n < 0 || (size_t)n >= out_size)
        return -1;
    memcpy(out, tmp, (size_t)n + 1);
    return n;
}

void ws_make_key(const uint8_t rnd[16], char key[WS_KEY_SIZE])
{
    b64(rnd, 16, key, WS_KEY_SIZE);
}

int ws_accept_for_key(const char *key, size_t key_len,
                      char accept[WS_ACCEPT_SIZE])
{
    char buf[128];
    unsigned char md[20];

    if (key_len + sizeof(ws_guid) > sizeof(buf))
        return -1;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, ws_guid, sizeof(ws_guid) - 1);
    lws_SHA1((const unsigned char *)buf, key_len + sizeof(ws_guid) - 1, md);
    return b64(md, 20, accept, WS_ACCEPT_SIZE) < 0 ? -1 : 0;
}

size_t ws_put_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                     const uint8_t *mask)
{
    size_t n = 2;
    uint8_t mbit = mask ? 0x80 : 0;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

int ws_parse_header(const uint8_t *p, size_t avail, ws_frame *f)
{
    if (avail < 2)
        return 0;
    if (p[0] & 0x70)
        return -1; /* RSV bits: no extension was negotiated */
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    f->masked = (p[1] & 0x80) != 0;
    switch (f->opcode) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        break;
    default:
        return -1;
    }
    uint64_t len = p[1] & 0x7f;
    size_t n = 2;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
        n = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p[2 + i];
        if (len >> 63)
            return -1;
        n = 10;
    }
    if ((f->opcode & 0x08) && (len > 125 || !f->fin))
        return -1;
    if (f->masked) {
        if (avail < n + 4)
            return 0;
        memcpy(f->mask, p + n, 4);
        n += 4;
    }
    f->header_len = n;
    f->len = len;
    return 1;
}

void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    size_t i = 0;

    /* Byte-wise until the mask is aligned with the payload, then 8 bytes at a
     * time: masking is on the load generator's hot path. */
    while (i < n && ((offset + i) & 3)) {
        p[i] ^= mask[(offset + i) & 3];
        i++;
    }
    if (n - i >= 8) {
        uint32_t m32;
        uint64_t m64;
        memcpy(&m32, mask, 4);
        m64 = ((uint64_t)m32 << 32) | m32;
        for (; n - i >= 8; i += 8) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            v ^= m64;
            memcpy(p + i, &v, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= mask[(offset + i) & 3];
}

int ws_http_header(const char *head, size_t head_len, const char *name,
                   const char **val, size_t *val_len)
{
    size_t nlen = strlen(name);
    const char *end = head + head_len;
    const char *line = memchr(head, '\n', head_len); /* skip the first line */

    while (line && line < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v &&
                   (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *val = v;
            *val_len = (size_t)(ve - v);
            return 0;
        }
        line = eol;
    }
    return -1;
}

/*
 * wsclient — see wsclient.h.
 *
 * One socket, one read buffer, no threads. The socket is left in blocking
 * mode (tests may use ws_fd directly) and every read and write here is
 * MSG_DONTWAIT behind a poll() bounded by a deadline, which is what makes
 * each call time out instead of blocking. SHA-1 and base64 for the handshake
 * come from libwebsockets, which the server links anyway: no crypto is
 * written here and no dependency is added. Its result is checked against the
 * worked example of RFC 6455 in the tests, since the echo server that the
 * tests run computes the accept key with the same code.
 */
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#define WS_ERR_LEN             256
#define WS_HEAD_MAX            16384
#define WS_BODY_MAX            (1u << 20)
#define WS_DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#define WS_GUID                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws_client {
    int fd;
    int io_timeout_ms;
    int masking;
    int eof;    /* the peer ended the connection (FIN or RST) */
    int broken; /* a framing error: the stream can no longer be parsed */
    size_t max_message;
    /* Read buffer: unparsed bytes are rbuf[rstart..rend). */
    unsigned char *rbuf;
    size_t rstart, rend, rcap;
    /* A fragmented message being joined by ws_recv_message; msg_opcode is
     * 0 when none is in progress. */
    int msg_opcode, msg_rsv, msg_masked;
    unsigned char *msg;
    size_t msg_len, msg_cap;
    char err[WS_ERR_LEN];
};

/* Calls that fail before a client exists (or that destroy it) leave their
 * reason here; per thread so parallel tests do not mix their reasons. */
static _Thread_local char last_error[WS_ERR_LEN];

static void set_err(ws_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(ws_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c ? c->err : last_error, WS_ERR_LEN, fmt, ap);
    va_end(ap);
}

const char *ws_last_error(void)
{
    return last_error;
}

const char *ws_error(const ws_client *c)
{
    return c->err;
}

int ws_fd(const ws_client *c)
{
    return c->fd;
}

void ws_set_timeout(ws_client *c, int timeout_ms)
{
    c->io_timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

void ws_set_masking(ws_client *c, int on)
{
    c->masking = on != 0;
}

void ws_set_max_message(ws_client *c, size_t max)
{
    c->max_message = max;
}

void ws_frame_free(ws_frame *f)
{
    free(f->data);
    memset(f, 0, sizeof(*f));
}

void ws_http_response_free(ws_http_response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* ---- time ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_in(int timeout_ms)
{
    return now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
}

static int remaining(int64_t deadline)
{
    int64_t r = deadline - now_ms();
    if (r < 0)
        return 0;
    return r > INT_MAX ? INT_MAX : (int)r;
}

/* Waits for events on fd until deadline: 1 ready, 0 timed out, -1 error.
 * A deadline already past still polls once, so ready data is never missed. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, remaining(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* ---- client object and raw I/O ---- */

static ws_client *client_new(int fd, int timeout_ms)
{
    ws_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    c->io_timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
    c->masking = 1;
    c->max_message = WS_DEFAULT_MAX_MESSAGE;
    return c;
}

void ws_close(ws_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->rbuf);
    free(c->msg);
    free(c);
}

static int write_until(ws_client *c, const void *buf, size_t len,
                       int64_t deadline)
{
    const unsigned char *p = buf;
    size_t off = 0;
    while (off < len) {
        /* MSG_NOSIGNAL: a server that hung up must fail the call, not
         * kill the test with SIGPIPE. */
        ssize_t n =
            send(c->fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(c->fd, POLLOUT, deadline);
            if (r == 0) {
                set_err(c, "write timed out after %zu of %zu bytes", off, len);
                return -1;
            }
            if (r < 0) {
                set_err(c, "poll: %s", strerror(errno));
                return -1;
            }
            continue;
        }
        set_err(c, "send: %s", n < 0 ? strerror(errno) : "wrote nothing");
        return -1;
    }
    return 0;
}

static int write_all(ws_client *c, const void *buf, size_t len)
{
    return write_until(c, buf, len, deadline_in(c->io_timeout_ms));
}

/* Makes room for at least `want` unparsed bytes in the read buffer. */
static int rbuf_reserve(ws_client *c, size_t want)
{
    if (c->rstart == c->rend)
        c->rstart = c->rend = 0;
    if (c->rcap - c->rstart >= want && c->rcap > c->rend)
        return 0;
    /* Slide the unparsed bytes to the front before growing: the buffer
     * then stays about as large as the largest frame seen. */
    if (c->rstart > 0) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
        if (c->rcap >= want && c->rcap > c->rend)
            return 0;
    }
    size_t cap = c->rcap ? c->rcap : 16384;
    while (cap < want || cap <= c->rend) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    unsigned char *p = realloc(c->rbuf, cap);
    if (!p)
        return -1;
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/* Reads what the socket has into the buffer, waiting until deadline.
 * Returns 1 when bytes came, 0 on timeout, -1 on EOF or reset (c->eof
 * set), -2 on any other error. */
static int fill(ws_client *c, size_t want, int64_t deadline)
{
    if (rbuf_reserve(c, want) < 0) {
        set_err(c, "out of memory for a %zu-byte read buffer", want);
        return -2;
    }
    for (;;) {
        ssize_t n =
            recv(c->fd, c->rbuf + c->rend, c->rcap - c->rend, MSG_DONTWAIT);
        if (n > 0) {
            c->rend += (size_t)n;
            return 1;
        }
        if (n == 0) {
            c->eof = 1;
            set_err(c, "connection closed by peer");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET) {
            c->eof = 1;
            set_err(c, "connection reset by peer");
            return -1;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            set_err(c, "recv: %s", strerror(errno));
            return -2;
        }
        int r = wait_fd(c->fd, POLLIN, deadline);
        if (r == 0)
            return 0;
        if (r < 0) {
            set_err(c, "poll: %s", strerror(errno));
            return -2;
        }
    }
}

/* ---- frames ---- */

static int random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

unsigned char *ws_encode_frame(int opcode, int fin, int rsv,
                               const unsigned char *mask, const void *payload,
                               size_t len, size_t *out_len)
{
    size_t hlen = 2 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + (mask ? 4 : 0);
    if (len > SIZE_MAX - hlen)
        return NULL;
    unsigned char *f = malloc(hlen + len);
    if (!f)
        return NULL;
    size_t i = 0;
    f[i++] =
        (unsigned char)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f));
    unsigned char maskbit = mask ? 0x80 : 0;
    if (len < 126) {
        f[i++] = maskbit | (unsigned char)len;
    } else if (len <= 0xffff) {
        f[i++] = maskbit | 126;
        f[i++] = (unsigned char)(len >> 8);
        f[i++] = (unsigned char)len;
    } else {
        f[i++] = maskbit | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            f[i++] = (unsigned char)((uint64_t)len >> shift);
    }
    if (mask) {
        memcpy(f + i, mask, 4);
        i += 4;
    }
    if (len)
        memcpy(f + i, payload, len);
    if (mask)
        for (size_t k = 0; k < len; k++)
            f[i + k] ^= mask[k & 3];
    *out_len = hlen + len;
    return f;
}

int ws_send_frame_ex(ws_client *c, int opcode, int fin, int rsv, int masked,
                     const void *payload, size_t len)
{
    unsigned char mask[4];
    if (masked && random_bytes(mask, sizeof(mask)) < 0) {
        set_err(c, "getrandom: %s", strerror(errno));
        return -1;
    }
    size_t flen;
    unsigned char *f = ws_encode_frame(opcode, fin, rsv, masked ? mask : NULL,
                                       payload, len, &flen);
    if (!f) {
        set_err(c, "out of memory for a %zu-byte frame", len);
        return -1;
    }
    /* One send for the whole frame, so a small frame leaves in one
     * segment (TCP_NODELAY is on) and tests control splitting themselves. */
    int r = write_all(c, f, flen);
    free(f);
    return r;
}

int ws_send_frame(ws_client *c, int opcode, int fin, const void *payload,
                  size_t len)
{
    return ws_send_frame_ex(c, opcode, fin, 0, c->masking, payload, len);
}

int ws_send_text(ws_client *c, const void *data, size_t len)
{
    return ws_send_frame(c, WS_OP_TEXT, 1, data, len);
}

int ws_send_binary(ws_client *c, const void *data, size_t len)
{
    return ws_send_frame(c, WS_OP_BINARY, 1, data, len);
}

int ws_send_ping(ws_client *c, const void *payload, size_t len)
{
    return ws_send_frame(c, WS_OP_PING, 1, payload, len);
}

int ws_send_pong(ws_client *c, const void *payload, size_t len)
{
    return ws_send_frame(c, WS_OP_PONG, 1, payload, len);
}

int ws_send_close(ws_client *c, int code, const char *reason)
{
    if (code < 0)
        return ws_send_frame(c, WS_OP_CLOSE, 1, NULL, 0);
    size_t rlen = reason ? strlen(reason) : 0;
    unsigned char *p = malloc(2 + rlen);
    if (!p) {
        set_err(c, "out of memory");
        return -1;
    }
    p[0] = (unsigned char)((unsigned)code >> 8);
    p[1] = (unsigned char)code;
    if (rlen)
        memcpy(p + 2, reason, rlen);
    int r = ws_send_frame(c, WS_OP_CLOSE, 1, p, 2 + rlen);
    free(p);
    return r;
}

int ws_send_raw_bytes(ws_client *c, const void *bytes, size_t len)
{
    return write_all(c, bytes, len);
}

/* Takes one frame off the read buffer. 1 with a frame, 0 when more bytes
 * are needed (*need is then how many unparsed bytes the frame takes, when
 * known), -1 on a length the stream cannot go on from. */
static int parse_frame(ws_client *c, ws_frame *out, size_t *need)
{
    const unsigned char *p = c->rbuf + c->rstart;
    size_t avail = c->rend - c->rstart;
    *need = 14; /* the longest header */
    if (avail < 2)
        return 0;
    int masked = (p[1] & 0x80) != 0;
    uint64_t plen = p[1] & 0x7f;
    size_t hlen = 2 +
                  (plen == 126   ? 2
                   : plen == 127 ? 8
                                 : 0) +
                  (masked ? 4 : 0);
    if (avail < hlen)
        return 0;
    if (plen == 126) {
        plen = (uint64_t)p[2] << 8 | p[3];
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | p[2 + i];
        if (plen >> 63) {
            set_err(c, "server frame: 64-bit length with the top bit set");
            return -1;
        }
    }
    if (plen > c->max_message) {
        set_err(c, "server frame of %llu bytes exceeds the %zu-byte limit",
                (unsigned long long)plen, c->max_message);
        return -1;
    }
    if (avail - hlen < plen) {
        *need = hlen + (size_t)plen;
        return 0;
    }
    unsigned char *data = malloc((size_t)plen + 1);
    if (!data) {
        set_err(c, "out of memory for a %llu-byte frame",
                (unsigned long long)plen);
        return -1;
    }
    memcpy(data, p + hlen, (size_t)plen);
    data[plen] = 0;
    if (masked) {
        const unsigned char *mask = p + hlen - 4;
        for (size_t k = 0; k < plen; k++)
            data[k] ^= mask[k & 3];
    }
    out->fin = (p[0] & 0x80) != 0;
    out->rsv = (p[0] >> 4) & 7;
    out->opcode = p[0] & 0x0f;
    out->masked = masked;
    out->data = data;
    out->len = (size_t)plen;
    c->rstart += hlen + (size_t)plen;
    return 1;
}

int ws_recv(ws_client *c, int timeout_ms, ws_frame *out)
{
    memset(out, 0, sizeof(*out));
    if (c->broken)
        return -1; /* the error that broke the stream is still in c->err */
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        size_t need;
        int r = parse_frame(c, out, &need);
        if (r > 0)
            return 1;
        if (r < 0) {
            c->broken = 1;
            return -1;
        }
        /* Frames that arrived before the EOF are delivered first: a server
         * commonly writes its close frame and hangs up at once. */
        if (c->eof) {
            if (c->rend > c->rstart)
                set_err(c, "connection closed inside a frame (%zu bytes)",
                        c->rend - c->rstart);
            return -1;
        }
        r = fill(c, need, deadline);
        if (r == 0) {
            set_err(c, "timed out after %d ms waiting for a frame", timeout_ms);
            return 0;
        }
        if (r == -2) {
            c->broken = 1;
            return -1;
        }
    }
}

static void msg_reset(ws_client *c)
{
    c->msg_opcode = 0;
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
}

int ws_recv_message(ws_client *c, int timeout_ms, ws_frame *out)
{
    memset(out, 0, sizeof(*out));
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        ws_frame f;
        int r = ws_recv(c, remaining(deadline), &f);
        if (r <= 0)
            return r;
        int data_frame = f.opcode == WS_OP_CONT || f.opcode == WS_OP_TEXT ||
                         f.opcode == WS_OP_BINARY;
        if (!data_frame) {
            /* Control frames (and reserved opcodes) go to the test as they
             * are; a fragmented message in progress waits in c. */
            *out = f;
            return 1;
        }
        if (f.opcode != WS_OP_CONT) {
            if (c->msg_opcode) {
                set_err(c,
                        "server sent a new data frame (opcode %d) inside a "
                        "fragmented message",
                        f.opcode);
                ws_frame_free(&f);
                return -1;
            }
            if (f.fin) {
                *out = f;
                return 1;
            }
            /* The first fragment's buffer becomes the message buffer
             * (it has len + 1 bytes: room for the NUL). */
            c->msg_opcode = f.opcode;
            c->msg_rsv = f.rsv;
            c->msg_masked = f.masked;
            c->msg = f.data;
            c->msg_len = f.len;
            c->msg_cap = f.len + 1;
        } else {
            if (!c->msg_opcode) {
                set_err(c, "server sent a continuation frame with no "
                           "message to continue");
                ws_frame_free(&f);
                return -1;
            }
            if (f.len > c->max_message - c->msg_len) {
                set_err(c, "fragmented message exceeds the %zu-byte limit",
                        c->max_message);
                ws_frame_free(&f);
                return -1;
            }
            size_t want = c->msg_len + f.len + 1;
            if (want > c->msg_cap) {
                size_t cap = c->msg_cap * 2 > want ? c->msg_cap * 2 : want;
                unsigned char *p = realloc(c->msg, cap);
                if (!p) {
                    set_err(c, "out of memory joining a message");
                    ws_frame_free(&f);
                    return -1;
                }
                c->msg = p;
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, f.data, f.len);
            c->msg_len += f.len;
            c->msg[c->msg_len] = 0;
            c->msg_masked |= f.masked;
            int fin = f.fin;
            ws_frame_free(&f);
            if (fin) {
                out->fin = 1;
                out->rsv = c->msg_rsv;
                out->opcode = c->msg_opcode;
                out->masked = c->msg_masked;
                out->data = c->msg;
                out->len = c->msg_len;
                msg_reset(c);
                return 1;
            }
        }
        /* A server streaming fragments forever must not keep us here. */
        if (now_ms() > deadline) {
            set_err(c, "timed out after %d ms inside a fragmented message",
                    timeout_ms);
            return 0;
        }
    }
}

int ws_expect_close(ws_client *c, int timeout_ms, int *code, char *reason,
                    size_t reason_len)
{
    int dummy;
    if (!code)
        code = &dummy;
    *code = -1;
    if (reason && reason_len)
        reason[0] = 0;
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        ws_frame f;
        int r = ws_recv(c, remaining(deadline), &f);
        if (r == 0) {
            set_err(c, "timed out after %d ms waiting for a close frame",
                    timeout_ms);
            return -1;
        }
        if (r < 0)
            return c->eof && !c->broken ? 0 : -1;
        if (f.opcode == WS_OP_CLOSE) {
            if (f.len == 0) {
                *code = WS_CLOSE_NO_STATUS;
            } else if (f.len == 1) {
                *code = -2;
                set_err(c, "close frame with a 1-byte payload");
            } else {
                *code = f.data[0] << 8 | f.data[1];
                if (reason && reason_len) {
                    size_t n = f.len - 2;
                    if (n > reason_len - 1)
                        n = reason_len - 1;
                    memcpy(reason, f.data + 2, n);
                    reason[n] = 0;
                }
            }
            ws_frame_free(&f);
            return 0;
        }
        ws_frame_free(&f);
        if (now_ms() > deadline) {
            set_err(c, "timed out after %d ms waiting for a close frame",
                    timeout_ms);
            return -1;
        }
    }
}

int ws_wait_eof(ws_client *c, int timeout_ms)
{
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        if (c->eof)
            return 0;
        /* Discard raw bytes rather than frames: what comes after a close
         * need not be parseable, and only the end matters here. */
        c->rstart = c->rend = 0;
        int r = fill(c, 1, deadline);
        if (r == 0) {
            set_err(c,
                    "timed out after %d ms waiting for the server to "
                    "close the connection",
                    timeout_ms);
            return -1;
        }
        if (r == -1)
            return 0;
        if (r == -2)
            return -1;
        if (now_ms() > deadline) {
            set_err(c, "server still sending after %d ms", timeout_ms);
            return -1;
        }
    }
}

/* ---- HTTP and the handshake ---- */

int ws_accept_key(const char *key, char *out, size_t out_len)
{
    char buf[128];
    unsigned char sha[20];
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(buf) || out_len < 29 || out_len > INT_MAX)
        return -1;
    lws_SHA1((const unsigned char *)buf, (size_t)n, sha);
    return lws_b64_encode_string((const char *)sha, (int)sizeof(sha), out,
                                 (int)out_len) == 28
               ? 0
               : -1;
}

int ws_http_header(const ws_http_response *r, const char *name, char *buf,
                   size_t buflen)
{
    if (!r->head)
        return -1;
    size_t nlen = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line) {
        line += 2;
        const char *end = strstr(line, "\r\n");
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        if (llen > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *vend = line + llen;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            size_t vlen = (size_t)(vend - v);
            if (buflen) {
                size_t n = vlen < buflen - 1 ? vlen : buflen - 1;
                memcpy(buf, v, n);
                buf[n] = 0;
            }
            return vlen > INT_MAX ? INT_MAX : (int)vlen;
        }
        line = end;
    }
    return -1;
}

/* Whether a comma-separated header value holds token (case-insensitive). */
static int has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tlen &&
            strncasecmp(start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Reads one HTTP response head, and for anything but 101 its body, into
 * *resp. For a 101 the bytes after the head stay buffered: they are the
 * first frames. 0 when a status line was read, else -1. */
static int read_response(ws_client *c, int64_t deadline, ws_http_response *resp)
{
    const unsigned char *end;
    for (;;) {
        end = c->rend > c->rstart ? memmem(c->rbuf + c->rstart,
                                           c->rend - c->rstart, "\r\n\r\n", 4)
                                  : NULL;
        if (end)
            break;
        if (c->rend - c->rstart > WS_HEAD_MAX) {
            set_err(c, "HTTP response head longer than %d bytes", WS_HEAD_MAX);
            return -1;
        }
        if (c->eof) {
            set_err(c,
                    "connection closed before a complete HTTP response "
                    "(%zu bytes)",
                    c->rend - c->rstart);
            return -1;
        }
        int r = fill(c, c->rend - c->rstart + 4096, deadline);
        if (r == 0) {
            set_err(c, "timed out waiting for the HTTP response");
            return -1;
        }
        if (r == -2)
            return -1;
    }
    size_t hlen = (size_t)(end - (c->rbuf + c->rstart)) + 4;
    resp->head = strndup((const char *)c->rbuf + c->rstart, hlen - 2);
    if (!resp->head) {
        set_err(c, "out of memory");
        return -1;
    }
    c->rstart += hlen;
    int minor, status;
    char sp;
    if (sscanf(resp->head, "HTTP/1.%d %3d%c", &minor, &status, &sp) != 3 ||
        (sp != ' ' && sp != '\r') || status < 100) {
        set_err(c, "not an HTTP response: %.40s", resp->head);
        return -1;
    }
    resp->status = status;
    if (status == 101) {
        resp->body = calloc(1, 1);
        return resp->body ? 0 : -1;
    }
    /* A refusal's body: by Content-Length when given; until EOF when the
     * server says it will close; else only what came with the head. */
    char val[32];
    size_t want = c->rend - c->rstart;
    int until_eof = 0;
    if (ws_http_header(resp, "Content-Length", val, sizeof(val)) >= 0) {
        want = strtoul(val, NULL, 10);
        if (want > WS_BODY_MAX)
            want = WS_BODY_MAX;
    } else if (ws_http_header(resp, "Connection", val, sizeof(val)) >= 0 &&
               has_token(val, "close")) {
        until_eof = 1;
    }
    while ((until_eof || c->rend - c->rstart < want) && !c->eof &&
           c->rend - c->rstart < WS_BODY_MAX) {
        int r = fill(c, c->rend - c->rstart + 4096, deadline);
        if (r == 0 || r == -2)
            break; /* keep the status: the body is a bonus */
    }
    size_t have = c->rend - c->rstart;
    if (!until_eof && have > want)
        have = want;
    resp->body = malloc(have + 1);
    if (!resp->body) {
        set_err(c, "out of memory");
        return -1;
    }
    memcpy(resp->body, c->rbuf + c->rstart, have);
    resp->body[have] = 0;
    resp->body_len = have;
    c->rstart += have;
    return 0;
}

/* Resolves host to a loopback address; anything else is refused. */
static int loopback_addr(ws_client *c, const char *host, int port,
                         struct sockaddr_storage *ss, socklen_t *slen,
                         char *hosthdr, size_t hosthdr_len)
{
    memset(ss, 0, sizeof(*ss));
    if (port <= 0 || port > 65535) {
        set_err(c, "bad port %d", port);
        return -1;
    }
    if (!host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
            goto not_loopback;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *slen = sizeof(*sin);
        snprintf(hosthdr, hosthdr_len, "%s:%d", host, port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
            goto not_loopback;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *slen = sizeof(*sin6);
        snprintf(hosthdr, hosthdr_len, "[%s]:%d", host, port);
        return 0;
    }
not_loopback:
    set_err(c,
            "%s is not a loopback address: the test client only talks "
            "to this machine",
            host);
    return -1;
}

static int tcp_open(ws_client *c, const char *host, int port, int64_t deadline,
                    char *hosthdr, size_t hosthdr_len)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    if (loopback_addr(c, host, port, &ss, &slen, hosthdr, hosthdr_len) < 0)
        return -1;
    int fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        set_err(c, "socket: %s", strerror(errno));
        return -1;
    }
    c->fd = fd;
    /* Non-blocking only for the connect, so it obeys the deadline. */
    if (connect(fd, (struct sockaddr *)&ss, slen) < 0) {
        if (errno != EINPROGRESS) {
            set_err(c, "connect to %s: %s", hosthdr, strerror(errno));
            return -1;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            set_err(c, "connect to %s: %s", hosthdr,
                    r == 0 ? "timed out" : strerror(errno));
            return -1;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
            set_err(c, "connect to %s: %s", hosthdr, strerror(soerr));
            return -1;
        }
    }
    int one = 1;
    /* Small frames must leave when sent: tests split frames on purpose. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Back to blocking for tests that use ws_fd directly; our own I/O
     * passes MSG_DONTWAIT. */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return 0;
}

enum { STAGE_TCP, STAGE_HTTP, STAGE_DONE };

static ws_client *do_connect(const char *host, int port, const char *path,
                             const char *extra, int timeout_ms,
                             ws_http_response *resp, int *stage)
{
    ws_http_response local = {0};
    if (!resp)
        resp = &local;
    memset(resp, 0, sizeof(*resp));
    *stage = STAGE_TCP;
    int64_t deadline = deadline_in(timeout_ms);
    ws_client *c = client_new(-1, timeout_ms);
    if (!c) {
        set_err(NULL, "out of memory");
        return NULL;
    }
    char hosthdr[80], key[32], accept[32], got[256];
    char *req = NULL;
    unsigned char nonce[16];
    if (tcp_open(c, host, port, deadline, hosthdr, sizeof(hosthdr)) < 0)
        goto fail;
    *stage = STAGE_HTTP;
    if (random_bytes(nonce, sizeof(nonce)) < 0 ||
        lws_b64_encode_string((const char *)nonce, (int)sizeof(nonce), key,
                              (int)sizeof(key)) != 24 ||
        ws_accept_key(key, accept, sizeof(accept)) < 0) {
        set_err(c, "could not make a Sec-WebSocket-Key");
        goto fail;
    }
    if (!path || !*path)
        path = "/";
    if (!extra)
        extra = "";
    const char *fmt = "GET %s HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "%s\r\n";
    int len = snprintf(NULL, 0, fmt, path, hosthdr, key, extra);
    req = len < 0 ? NULL : malloc((size_t)len + 1);
    if (!req) {
        set_err(c, "out of memory");
        goto fail;
    }
    snprintf(req, (size_t)len + 1, fmt, path, hosthdr, key, extra);
    if (write_until(c, req, (size_t)len, deadline) < 0)
        goto fail;
    if (read_response(c, deadline, resp) < 0)
        goto fail;
    if (resp->status != 101) {
        set_err(c, "upgrade refused: HTTP %d", resp->status);
        goto fail;
    }
    if (ws_http_header(resp, "Upgrade", got, sizeof(got)) < 0 ||
        strcasecmp(got, "websocket") != 0) {
        set_err(c, "101 without Upgrade: websocket");
        goto fail;
    }
    if (ws_http_header(resp, "Connection", got, sizeof(got)) < 0 ||
        !has_token(got, "upgrade")) {
        set_err(c, "101 without Connection: Upgrade");
        goto fail;
    }
    if (ws_http_header(resp, "Sec-WebSocket-Accept", got, sizeof(got)) < 0 ||
        strcmp(got, accept) != 0) {
        set_err(c, "101 with Sec-WebSocket-Accept '%s', expected '%s'", got,
                accept);
        goto fail;
    }
    *stage = STAGE_DONE;
    free(req);
    ws_http_response_free(&local);
    c->err[0] = 0;
    return c;
fail:
    snprintf(last_error, sizeof(last_error), "%s", c->err);
    free(req);
    ws_http_response_free(&local);
    ws_close(c);
    return NULL;
}

ws_client *ws_connect_ex(const char *host, int port, const char *path_and_query,
                         const char *extra_headers, int timeout_ms,
                         ws_http_response *resp)
{
    int stage;
    return do_connect(host, port, path_and_query, extra_headers, timeout_ms,
                      resp, &stage);
}

ws_client *ws_connect(const char *host, int port, const char *path_and_query,
                      const char *extra_headers, int timeout_ms)
{
    return ws_connect_ex(host, port, path_and_query, extra_headers, timeout_ms,
                         NULL);
}

int ws_connect_status(const char *host, int port, const char *path_and_query,
                      const char *extra_headers, int timeout_ms)
{
    ws_http_response resp;
    int stage;
    ws_client *c = do_connect(host, port, path_and_query, extra_headers,
                              timeout_ms, &resp, &stage);
    int status = resp.status;
    ws_http_response_free(&resp);
    if (c) {
        ws_close(c);
        return 101;
    }
    if (stage == STAGE_TCP || status == 101)
        return -1;
    return status;
}

int ws_http_raw(const char *host, int port, const char *request, size_t len,
                int timeout_ms, ws_http_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    int64_t deadline = deadline_in(timeout_ms);
    ws_client *c = client_new(-1, timeout_ms);
    if (!c) {
        set_err(NULL, "out of memory");
        return -1;
    }
    char hosthdr[80];
    int r = -1;
    if (tcp_open(c, host, port, deadline, hosthdr, sizeof(hosthdr)) == 0 &&
        write_until(c, request, len, deadline) == 0 &&
        read_response(c, deadline, resp) == 0)
        r = 0;
    if (r < 0)
        snprintf(last_error, sizeof(last_error), "%s", c->err);
    ws_close(c);
    return r;
}

ws_client *ws_adopt_fd(int fd, int timeout_ms)
{
    if (fd < 0) {
        set_err(NULL, "ws_adopt_fd: bad descriptor %d", fd);
        return NULL;
    }
    ws_client *c = client_new(fd, timeout_ms);
    if (!c) {
        set_err(NULL, "out of memory");
        close(fd);
        return NULL;
    }
    int one = 1;
    /* Fails harmlessly on a Unix socket; matters on TCP. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

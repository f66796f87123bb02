/*
 * ws_epoll_echo — a minimal WebSocket echo server on a bare epoll loop, used
 * to check the load generator rather than to compare with: it does the least
 * a correct echo can (unmask, reframe) and sends every reply produced by one
 * read in one write. What sb_loadgen measures against it is about the most
 * this machine's loopback can carry with one core per side; if a server ever
 * comes close to that figure, the load generator may be the limit.
 *
 * With --broadcast JOIN it checks sb_loadgen's broadcast mode the same way:
 * a client that sends exactly JOIN subscribes, and every other message is
 * framed once and sent to all subscribers, one write per subscriber for all
 * the messages found in one read of the publisher.
 *
 * Not a general server: no UTF-8 validation, no fragmentation checks, no
 * limits beyond a maximum frame size. Listens on 127.0.0.1 only.
 *
 * Usage: ws_epoll_echo PORT [--broadcast JOIN]
 */
#include "wsproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_CHUNK    (256 * 1024)
#define MAX_FRAME   (16u * 1024 * 1024)
#define MAX_REQUEST 8192

typedef struct peer {
    int fd;
    bool open;      /* handshake done */
    bool out_armed; /* EPOLLOUT registered */
    uint8_t *carry; /* incomplete request or frame from the last read */
    size_t carry_len, carry_cap;
    uint8_t *pend; /* what the kernel did not take */
    size_t pend_off, pend_len, pend_cap;
    long sub_index; /* place in subs[], -1 when not subscribed */
} peer;

static int ep;
static uint8_t *rx, *tx;
static size_t rx_cap, tx_cap;
/* Broadcast mode: the join text, the subscribers, and the frames to send
 * them from the read being handled. */
static const char *join;
static size_t join_len;
static peer **subs;
static size_t nsubs, subs_cap;
static uint8_t *bc;
static size_t bc_len, bc_cap;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("ws_epoll_echo: out of memory\n", stderr);
        exit(1);
    }
    return q;
}

static void unsubscribe(peer *p)
{
    if (p->sub_index < 0)
        return;
    subs[p->sub_index] = subs[--nsubs];
    subs[p->sub_index]->sub_index = p->sub_index;
    p->sub_index = -1;
}

static void peer_close(peer *p)
{
    unsubscribe(p);
    close(p->fd);
    free(p->carry);
    free(p->pend);
    free(p);
}

static void arm_out(peer *p, bool on)
{
    if (p->out_armed == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = p};
    epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->out_armed = on;
}

/* Returns -1 when the peer must be closed. */
static int peer_send(peer *p, const uint8_t *d, size_t n)
{
    if (p->pend_off == p->pend_len) {
        p->pend_off = p->pend_len = 0;
        ssize_t w = send(p->fd, d, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            w = 0;
        }
        d += w;
        n -= (size_t)w;
        if (!n)
            return 0;
    }
    if (p->pend_len + n > p->pend_cap) {
        p->pend_cap = (p->pend_len + n) * 2;
        p->pend = xrealloc(p->pend, p->pend_cap);
    }
    memcpy(p->pend + p->pend_len, d, n);
    p->pend_len += n;
    arm_out(p, true);
    return 0;
}

static int peer_flush(peer *p)
{
    while (p->pend_off < p->pend_len) {
        ssize_t w = send(p->fd, p->pend + p->pend_off,
                         p->pend_len - p->pend_off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        p->pend_off += (size_t)w;
    }
    p->pend_off = p->pend_len = 0;
    arm_out(p, false);
    return 0;
}

static uint8_t *tx_room(size_t used, size_t more)
{
    if (used + more > tx_cap) {
        tx_cap = (used + more) * 2;
        tx = xrealloc(tx, tx_cap);
    }
    return tx + used;
}

/* Answers the upgrade request; returns bytes consumed, 0 if incomplete, -1
 * to close. */
static long handshake(peer *p, const uint8_t *buf, size_t len)
{
    const uint8_t *end = NULL;
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
            buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    if (!end)
        return len > MAX_REQUEST ? -1 : 0;
    const char *key;
    size_t klen;
    char accept[WS_ACCEPT_SIZE], resp[256];
    if (ws_http_header((const char *)buf, (size_t)(end - buf),
                       "Sec-WebSocket-Key", &key, &klen) < 0 ||
        ws_accept_for_key(key, klen, accept) < 0)
        return -1;
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (peer_send(p, (const uint8_t *)resp, (size_t)n) < 0)
        return -1;
    p->open = true;
    return end - buf;
}

/* Echoes every complete frame in buf into one write; returns bytes consumed
 * or -1 to close. */
static long echo_frames(peer *p, uint8_t *buf, size_t len)
{
    size_t off = 0, out = 0;
    bool closing = false;

    while (!closing) {
        ws_frame f;
        int r = ws_parse_header(buf + off, len - off, &f);
        if (r < 0 || (r > 0 && (!f.masked || f.len > MAX_FRAME)))
            return -1;
        if (r == 0 || len - off - f.header_len < f.len)
            break;
        uint8_t *pl = buf + off + f.header_len;
        ws_mask(pl, (size_t)f.len, f.mask, 0);
        uint8_t op = f.opcode;
        if (join && op == WS_OP_TEXT) {
            if (f.len == join_len && memcmp(pl, join, join_len) == 0) {
                if (p->sub_index < 0) {
                    if (nsubs == subs_cap) {
                        subs_cap = subs_cap ? subs_cap * 2 : 1024;
                        subs = xrealloc(subs, subs_cap * sizeof(*subs));
                    }
                    p->sub_index = (long)nsubs;
                    subs[nsubs++] = p;
                }
            } else {
                if (bc_len + WS_MAX_HEADER + f.len > bc_cap) {
                    bc_cap = (bc_len + WS_MAX_HEADER + (size_t)f.len) * 2;
                    bc = xrealloc(bc, bc_cap);
                }
                size_t h = ws_put_header(bc + bc_len, op, true, f.len, NULL);
                memcpy(bc + bc_len + h, pl, (size_t)f.len);
                bc_len += h + (size_t)f.len;
            }
            off += f.header_len + (size_t)f.len;
            continue;
        }
        if (op == WS_OP_PONG) {
            off += f.header_len + (size_t)f.len;
            continue;
        }
        if (op == WS_OP_PING)
            op = WS_OP_PONG;
        if (op == WS_OP_CLOSE)
            closing = true;
        uint8_t *o = tx_room(out, WS_MAX_HEADER + (size_t)f.len);
        size_t h = ws_put_header(o, op, f.fin, f.len, NULL);
        memcpy(o + h, pl, (size_t)f.len);
        out += h + (size_t)f.len;
        off += f.header_len + (size_t)f.len;
    }
    if (out && peer_send(p, tx, out) < 0)
        return -1;
    return closing ? -1 : (long)off;
}

/* Sends the frames gathered from one read to every subscriber. A subscriber
 * whose socket fails is closed later, when epoll reports it. */
static void fan_out(void)
{
    if (!bc_len)
        return;
    for (size_t i = 0; i < nsubs; i++)
        if (peer_send(subs[i], bc, bc_len) < 0)
            shutdown(subs[i]->fd, SHUT_RDWR);
    bc_len = 0;
}

static int on_readable(peer *p)
{
    if (rx_cap < p->carry_len + RX_CHUNK) {
        rx_cap = p->carry_len + RX_CHUNK;
        rx = xrealloc(rx, rx_cap);
    }
    if (p->carry_len)
        memcpy(rx, p->carry, p->carry_len);
    ssize_t n = recv(p->fd, rx + p->carry_len, rx_cap - p->carry_len, 0);
    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    size_t len = p->carry_len + (size_t)n, off = 0;
    if (!p->open) {
        long h = handshake(p, rx, len);
        if (h < 0)
            return -1;
        off = (size_t)h;
    }
    if (p->open) {
        long e = echo_frames(p, rx + off, len - off);
        fan_out();
        if (e < 0)
            return -1;
        off += (size_t)e;
    }
    p->carry_len = len - off;
    if (p->carry_len > p->carry_cap) {
        p->carry_cap = p->carry_len * 2;
        p->carry = xrealloc(p->carry, p->carry_cap);
    }
    memmove(p->carry, rx + off, p->carry_len);
    return 0;
}

int main(int argc, char **argv)
{
    int port = argc >= 2 ? atoi(argv[1]) : 0;
    if (argc == 4 && strcmp(argv[2], "--broadcast") == 0) {
        join = argv[3];
        join_len = strlen(join);
    } else if (argc != 2) {
        port = 0;
    }
    if (port <= 0 || port > 65535) {
        fputs("usage: ws_epoll_echo PORT [--broadcast JOIN]\n", stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(ls, 4096) < 0) {
        perror("ws_epoll_echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("ws_epoll_echo listening on ws://127.0.0.1:%d/\n", port);
    fflush(stdout);

    struct epoll_event evs[512];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < n; i++) {
            peer *p = evs[i].data.ptr;
            if (!p) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    peer *np = calloc(1, sizeof(*np));
                    if (!np) {
                        close(fd);
                        continue;
                    }
                    np->fd = fd;
                    np->sub_index = -1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = np};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int r = 0;
            if (evs[i].events & EPOLLOUT)
                r = peer_flush(p);
            if (r == 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                r = on_readable(p);
            if (r < 0)
                peer_close(p);
        }
    }
    return 0;
}

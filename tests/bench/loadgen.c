/*
 * sb_loadgen — the benchmark's WebSocket load generator.
 *
 * One thread, one epoll loop, non-blocking sockets and its own minimal client
 * framing, so that a message costs it as little as possible (a load generator
 * that is the bottleneck measures nothing): everything a connection has to
 * send after one read goes out in one write, reads take whatever the socket
 * holds (up to 256 KiB), and the masked frame is built once per run. It polls
 * rather than sleeps (see main). Three modes:
 *
 *   echo       N connections keep P messages each in flight; every complete
 *              data frame received is a reply, matched FIFO with the send
 *              time of its slot; reports msgs/s and latency percentiles.
 *   idle       opens N connections and reports how much the server's VmRSS
 *              (from /proc/PID/status) grew per connection.
 *   broadcast  N subscribers send a join message once; a publisher then sends
 *              messages, keeping at most W of them unacknowledged (it joins
 *              too and takes each copy it receives as an ack) or at a fixed
 *              rate; reports deliveries/s over all subscribers.
 *
 * Only loopback addresses are accepted as targets, and every run ends by
 * itself after its warm-up + duration (or the connect timeout).
 *
 * Output: one line of key=value pairs starting with "mode=" (for scripts),
 * then one line for people starting with "# ".
 */
#include "hist.h"
#include "wsproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RX_CHUNK      (256 * 1024)
#define MAX_HANDSHAKE 8192
#define MAX_EVENTS    1024
#define NS_PER_S      1000000000ull

enum mode { MODE_ECHO, MODE_IDLE, MODE_BCAST };
enum cstate { C_FREE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };
enum role { ROLE_ECHO, ROLE_IDLE, ROLE_SUB, ROLE_PUB };
enum phase { PH_CONNECT, PH_SETTLE, PH_RUN, PH_DONE };

typedef struct conn {
    int fd;
    uint8_t state;
    uint8_t role;
    bool out_armed;   /* EPOLLOUT is in the interest set */
    bool msg_bad;     /* the message being received differs from --expect */
    uint64_t msg_off; /* bytes of the current message received so far */
    char accept[WS_ACCEPT_SIZE];
    /* Bytes of an incomplete frame (or handshake) left from the last read. */
    uint8_t *carry;
    size_t carry_len, carry_cap;
    /* Bytes the kernel did not take yet; while any are here, new frames are
     * appended so that order is kept. */
    uint8_t *pend;
    size_t pend_off, pend_len, pend_cap;
    /* Echo: send times of the messages in flight, a FIFO ring of P slots. */
    uint64_t *slots;
    uint32_t slot_head, slot_count;
} conn;

static struct opts {
    enum mode mode;
    const char *host;
    int port;
    const char *path;
    const char *label;
    unsigned conns;
    unsigned inflight;
    unsigned window;
    double rate;
    double duration;
    double warmup;
    double settle;
    double timeout;
    unsigned connect_window;
    const char *message;
    const char *expect;
    const char *join;
    bool pub_join;
    bool binary;
    bool spin;
    long pid;
    int port2;          /* broadcast: every other subscriber goes here */
    long extra_pids[4]; /* more processes whose CPU is reported together */
    unsigned nextra;
} opt = {
    .mode = MODE_ECHO,
    .host = "127.0.0.1",
    .port = 3000,
    .path = "/",
    .label = "-",
    .conns = 0, /* per-mode default, set in main */
    .inflight = 1,
    .window = 64,
    .rate = 0,
    .duration = 10,
    .warmup = 2,
    .settle = 1,
    .timeout = 30,
    .connect_window = 256,
    .pub_join = true,
    .spin = true,
    .pid = 0,
};

static struct state {
    int ep;
    struct sockaddr_storage addr;
    struct sockaddr_storage addr2; /* --port2 */
    uint64_t extra_measure;        /* --extra-pid ticks at t_measure */
    socklen_t addr_len;
    conn *conns;
    unsigned nconns;      /* connections to open in all */
    unsigned started;     /* connections whose connect() was issued */
    unsigned opening;     /* in C_CONNECTING or C_HANDSHAKE */
    unsigned opened;      /* handshakes completed */
    unsigned dead;        /* failed or closed by the server */
    unsigned open_failed; /* failed before the handshake completed */
    bool measuring;       /* the figures at t_measure have been taken */
    enum phase phase;
    uint64_t t_begin;   /* program start */
    uint64_t t_phase;   /* end of the current settle phase */
    uint64_t t_measure; /* start of the measured window */
    uint64_t t_end;     /* end of the measured window */
    uint64_t t_pub;     /* broadcast: when publishing started */
    uint64_t t_ack;     /* broadcast: last ack (or start) of the publisher */
    /* The message, masked once with one key for the whole run (see
     * build_frame), and its expected reply. */
    uint8_t *frame;
    size_t frame_len;
    uint8_t *join_frame;
    size_t join_frame_len;
    size_t expect_len;
    uint8_t mask[4];
    /* Shared I/O buffers: one connection is served at a time. */
    uint8_t *rx;
    size_t rx_cap;
    uint8_t *tx;
    size_t tx_cap;
    /* Results. */
    hist lat;
    uint64_t replies;    /* echo: complete replies in the window */
    uint64_t deliveries; /* broadcast: data frames to subscribers */
    uint64_t published;  /* broadcast: messages sent in the window */
    uint64_t pub_sent;   /* broadcast: messages sent in all */
    uint64_t pub_acked;  /* broadcast: publisher's own copies received */
    uint64_t mismatches; /* replies that differ from --expect */
    uint64_t unexpected; /* echo: replies with nothing in flight */
    uint64_t errors;     /* connection failures */
    char first_error[200];
    struct rusage ru_measure;
    uint64_t busy_ns;         /* time spent handling events in the window */
    uint64_t srv_cpu_measure; /* server utime+stime in ticks at t_measure */
    /* Interference check: the cores of load generator and server, their
     * user+system ticks and our own processes' ticks at t_measure. */
    int lg_core, srv_core;
    uint64_t lg_core_ticks, srv_core_ticks, lg_self_ticks;
    long rss_before_kib;
    long rss_after_kib;
    uint64_t xorshift;
} st;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sb_loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory (%zu bytes)", n);
    return q;
}

static uint64_t rnd64(void)
{
    /* xorshift64*: keys and masks need to differ, not to be secret. */
    st.xorshift ^= st.xorshift >> 12;
    st.xorshift ^= st.xorshift << 25;
    st.xorshift ^= st.xorshift >> 27;
    return st.xorshift * 0x2545F4914F6CDD1Dull;
}

/* ---- server process figures from /proc ---------------------------------- */

static long read_rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* utime + stime of the process, in clock ticks; 0 when unknown. */
static uint64_t read_cpu_ticks(long pid)
{
    char path[64], buf[1024];

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields are counted
     * from the last ')'. utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, stt = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &stt) != 2)
        return 0;
    return ut + stt;
}

/* The one core a process is pinned to, or -1 when it may run on several. */
static uint64_t extra_ticks(void)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < opt.nextra; i++)
        t += read_cpu_ticks(opt.extra_pids[i]);
    return t;
}

static int pinned_core(long pid)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    if (sched_getaffinity((pid_t)pid, sizeof(set), &set) < 0 ||
        CPU_COUNT(&set) != 1)
        return -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            return i;
    return -1;
}

/* Busy ticks of one core from /proc/stat: everything but idle and iowait,
 * 0 when unknown. A process' utime+stime includes the irq and softirq ticks
 * taken while it ran (on loopback, a third of the work is softirq), so those
 * count here too; steal is the hypervisor running something else, which
 * slows us like any other process. */
static uint64_t read_core_ticks(int core)
{
    char line[512], name[16];
    uint64_t ticks = 0;

    if (core < 0)
        return 0;
    snprintf(name, sizeof(name), "cpu%d ", core);
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, name, strlen(name)) == 0) {
            unsigned long long v[8] = {0};
            if (sscanf(line + strlen(name),
                       "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
                /* user nice system [idle iowait] irq softirq steal */
                ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            break;
        }
    }
    fclose(f);
    return ticks;
}

/* Share of the window in which other processes ran on `core`, given its
 * ticks and our process' ticks at start and now; -1 when unknown. */
static double other_share(int core, uint64_t core0, uint64_t self0,
                          uint64_t self1, double span)
{
    if (core < 0 || !core0)
        return -1;
    uint64_t core1 = read_core_ticks(core);
    double other = (double)(int64_t)((core1 - core0) - (self1 - self0));
    double v = other / (double)sysconf(_SC_CLK_TCK) / span;
    return v < 0 ? 0 : v;
}

/* ---- connection bookkeeping ---------------------------------------------- */

static void set_error(const char *fmt, ...)
{
    if (st.first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.first_error, sizeof(st.first_error), fmt, ap);
    va_end(ap);
}

static void arm_out(conn *c, bool on)
{
    if (c->out_armed == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(st.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->out_armed = on;
}

/* Closes with RST (SO_LINGER 0): a clean close would leave 10,000 sockets in
 * TIME_WAIT per idle run, and back-to-back runs would run out of ephemeral
 * ports. The servers see ECONNRESET, which all of them handle. */
static void conn_abort(conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (c->fd >= 0) {
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c->fd);
        c->fd = -1;
    }
}

static void conn_fail(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (st.phase != PH_DONE) {
        st.errors++;
        set_error("connection %ld: %s", (long)(c - st.conns), why);
    }
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
        st.opening--;
        st.open_failed++;
    }
    c->state = C_DEAD;
    st.dead++;
    conn_abort(c);
}

/* Sends len bytes, or queues what the kernel does not take. */
static void conn_send(conn *c, const uint8_t *data, size_t len)
{
    if (c->state == C_DEAD)
        return;
    if (c->pend_len == c->pend_off) {
        c->pend_len = c->pend_off = 0;
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_fail(c, strerror(errno));
                return;
            }
            n = 0;
        }
        if ((size_t)n == len)
            return;
        data += n;
        len -= (size_t)n;
    }
    if (c->pend_len + len > c->pend_cap) {
        /* Slide what is left to the front before growing. */
        if (c->pend_off) {
            memmove(c->pend, c->pend + c->pend_off, c->pend_len - c->pend_off);
            c->pend_len -= c->pend_off;
            c->pend_off = 0;
        }
        if (c->pend_len + len > c->pend_cap) {
            c->pend_cap = (c->pend_len + len) * 2;
            c->pend = xrealloc(c->pend, c->pend_cap);
        }
    }
    memcpy(c->pend + c->pend_len, data, len);
    c->pend_len += len;
    arm_out(c, true);
}

static void conn_flush(conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t n = send(c->fd, c->pend + c->pend_off,
                         c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_fail(c, strerror(errno));
            return;
        }
        c->pend_off += (size_t)n;
    }
    c->pend_off = c->pend_len = 0;
    arm_out(c, false);
}

static bool in_window(uint64_t t)
{
    return t >= st.t_measure && t < st.t_end;
}

static uint8_t *tx_reserve(size_t n)
{
    if (n > st.tx_cap) {
        st.tx_cap = n * 2;
        st.tx = xrealloc(st.tx, st.tx_cap);
    }
    return st.tx;
}

/* Sends k copies of the prepared message in one write. */
static void send_messages(conn *c, unsigned k, uint64_t t)
{
    uint8_t *p = tx_reserve((size_t)k * st.frame_len);
    for (unsigned i = 0; i < k; i++)
        memcpy(p + (size_t)i * st.frame_len, st.frame, st.frame_len);
    if (c->role == ROLE_PUB) {
        st.pub_sent += k;
        if (in_window(t))
            st.published += k;
    } else if (c->role == ROLE_ECHO) {
        for (unsigned i = 0; i < k; i++) {
            uint32_t at = (c->slot_head + c->slot_count) % opt.inflight;
            c->slots[at] = t;
            c->slot_count++;
        }
    }
    conn_send(c, p, (size_t)k * st.frame_len);
}

static void send_control(conn *c, uint8_t opcode, const uint8_t *payload,
                         size_t len)
{
    uint8_t buf[WS_MAX_HEADER + 125];
    uint8_t mask[4];
    uint64_t r = rnd64();

    memcpy(mask, &r, 4);
    size_t h = ws_put_header(buf, opcode, true, len, mask);
    memcpy(buf + h, payload, len);
    ws_mask(buf + h, len, mask, 0);
    conn_send(c, buf, h + len);
}

/* ---- opening connections ------------------------------------------------- */

static void start_conn(conn *c)
{
    int fd = socket(st.addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (raise the open files limit?)", strerror(errno));
    int one = 1;
    /* Small frames must leave at once: latency is what is being measured. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = C_CONNECTING;
    c->out_armed = true;
    st.started++;
    st.opening++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(st.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    /* With --port2, every other subscriber (never the publisher, the
     * last connection) goes to the second server. */
    size_t idx = (size_t)(c - st.conns);
    const struct sockaddr_storage *to =
        opt.port2 && idx % 2 == 1 && idx + 1 < st.nconns ? &st.addr2 : &st.addr;
    if (connect(fd, (const struct sockaddr *)to, st.addr_len) < 0 &&
        errno != EINPROGRESS)
        conn_fail(c, strerror(errno));
}

static void start_more_conns(void)
{
    while (st.started < st.nconns && st.opening < opt.connect_window)
        start_conn(&st.conns[st.started]);
}

static void send_handshake(conn *c)
{
    uint8_t rnd[16];
    char key[WS_KEY_SIZE], req[512];

    for (int i = 0; i < 2; i++) {
        uint64_t r = rnd64();
        memcpy(rnd + 8 * i, &r, 8);
    }
    ws_make_key(rnd, key);
    if (ws_accept_for_key(key, strlen(key), c->accept) < 0)
        die("cannot compute Sec-WebSocket-Accept");
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     opt.path, opt.host, opt.port, key);
    c->state = C_HANDSHAKE;
    conn_send(c, (const uint8_t *)req, (size_t)n);
    if (c->state != C_DEAD && c->pend_len == 0)
        arm_out(c, false);
}

static void on_open(conn *c, uint64_t t)
{
    c->state = C_OPEN;
    st.opening--;
    st.opened++;
    switch (c->role) {
    case ROLE_ECHO:
        send_messages(c, opt.inflight, t);
        break;
    case ROLE_SUB:
        conn_send(c, st.join_frame, st.join_frame_len);
        break;
    case ROLE_PUB:
        if (opt.pub_join)
            conn_send(c, st.join_frame, st.join_frame_len);
        break;
    default:
        break;
    }
}

/* Returns bytes of the handshake response consumed, 0 when incomplete, -1
 * when the connection failed. */
static long parse_handshake(conn *c, const uint8_t *buf, size_t len, uint64_t t)
{
    const char *head = (const char *)buf;
    const char *end = NULL;

    for (size_t i = 3; i < len; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
            buf[i - 3] == '\r') {
            end = head + i + 1;
            break;
        }
    }
    if (!end) {
        if (len > MAX_HANDSHAKE) {
            conn_fail(c, "handshake response too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - head);
    if (hlen < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
        const char *eol = memchr(head, '\r', hlen);
        char why[160];
        snprintf(why, sizeof(why), "handshake refused: %.*s",
                 (int)(eol ? eol - head : 40), head);
        conn_fail(c, why);
        return -1;
    }
    const char *v;
    size_t vlen;
    if (ws_http_header(head, hlen, "Sec-WebSocket-Accept", &v, &vlen) < 0 ||
        vlen != WS_ACCEPT_SIZE - 1 || memcmp(v, c->accept, vlen) != 0) {
        conn_fail(c, "bad or missing Sec-WebSocket-Accept");
        return -1;
    }
    on_open(c, t);
    return (long)hlen;
}

/* ---- receiving ----------------------------------------------------------- */

static void check_payload(conn *c, const uint8_t *p, uint64_t n)
{
    if (!opt.expect || c->msg_bad)
        return;
    if (c->msg_off + n > st.expect_len ||
        memcmp(opt.expect + c->msg_off, p, n) != 0)
        c->msg_bad = true;
}

/* A complete data message arrived at time t. Returns how many messages the
 * connection should send in response. */
static unsigned on_message(conn *c, uint64_t t)
{
    bool bad = opt.expect && (c->msg_bad || c->msg_off != st.expect_len);

    c->msg_off = 0;
    c->msg_bad = false;
    switch (c->role) {
    case ROLE_ECHO:
        if (c->slot_count == 0) {
            st.unexpected++;
            return 0;
        }
        uint64_t sent = c->slots[c->slot_head];
        c->slot_head = (c->slot_head + 1) % opt.inflight;
        c->slot_count--;
        if (in_window(t)) {
            st.replies++;
            hist_record(&st.lat, t - sent);
            if (bad)
                st.mismatches++;
        }
        return t < st.t_end ? 1 : 0;
    case ROLE_SUB:
        if (st.phase == PH_RUN && in_window(t)) {
            st.deliveries++;
            if (bad)
                st.mismatches++;
        }
        return 0;
    case ROLE_PUB:
        if (st.phase != PH_RUN || !opt.pub_join || st.pub_acked >= st.pub_sent)
            return 0; /* a join reply, or anything before publishing */
        st.pub_acked++;
        st.t_ack = t;
        if (bad && in_window(t))
            st.mismatches++;
        return opt.rate > 0 ? 0 : (t < st.t_end ? 1 : 0);
    default:
        return 0;
    }
}

/* Walks the complete frames in buf; returns bytes consumed. */
static size_t parse_frames(conn *c, uint8_t *buf, size_t len, uint64_t t,
                           unsigned *to_send)
{
    size_t off = 0;

    while (c->state == C_OPEN) {
        ws_frame f;
        int r = ws_parse_header(buf + off, len - off, &f);
        if (r == 0)
            break;
        if (r < 0) {
            conn_fail(c, "protocol error in a server frame");
            break;
        }
        if (len - off - f.header_len < f.len)
            break; /* the payload is not all here yet */
        uint8_t *p = buf + off + f.header_len;
        if (f.masked) {
            conn_fail(c, "server sent a masked frame");
            break;
        }
        switch (f.opcode) {
        case WS_OP_TEXT:
        case WS_OP_BINARY:
        case WS_OP_CONT:
            check_payload(c, p, f.len);
            c->msg_off += f.len;
            if (f.fin)
                *to_send += on_message(c, t);
            break;
        case WS_OP_PING:
            send_control(c, WS_OP_PONG, p, (size_t)f.len);
            break;
        case WS_OP_CLOSE:
            conn_fail(c, "server sent a close frame");
            break;
        default:
            break;
        }
        off += f.header_len + (size_t)f.len;
    }
    return off;
}

static void on_readable(conn *c)
{
    /* The carried-over bytes go first, then whatever the socket holds. */
    if (st.rx_cap < c->carry_len + RX_CHUNK) {
        st.rx_cap = c->carry_len + RX_CHUNK;
        st.rx = xrealloc(st.rx, st.rx_cap);
    }
    if (c->carry_len)
        memcpy(st.rx, c->carry, c->carry_len);
    ssize_t n = recv(c->fd, st.rx + c->carry_len, st.rx_cap - c->carry_len, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_fail(c, strerror(errno));
        return;
    }
    if (n == 0) {
        conn_fail(c, "closed by the server");
        return;
    }
    uint64_t t = now_ns();
    size_t len = c->carry_len + (size_t)n, off = 0;
    unsigned to_send = 0;

    if (c->state == C_HANDSHAKE) {
        long h = parse_handshake(c, st.rx, len, t);
        if (h < 0)
            return;
        off = (size_t)h;
    }
    if (c->state == C_OPEN)
        off += parse_frames(c, st.rx + off, len - off, t, &to_send);
    if (c->state == C_DEAD)
        return;
    c->carry_len = len - off;
    if (c->carry_len) {
        if (c->carry_cap < c->carry_len) {
            c->carry_cap = c->carry_len * 2;
            c->carry = xrealloc(c->carry, c->carry_cap);
        }
        memmove(c->carry, st.rx + off, c->carry_len);
    }
    if (to_send)
        send_messages(c, to_send, now_ns());
}

static void on_writable(conn *c)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            conn_fail(c, strerror(err));
            return;
        }
        send_handshake(c);
        return;
    }
    conn_flush(c);
}

/* ---- phases -------------------------------------------------------------- */

static uint64_t secs(double s)
{
    return (uint64_t)(s * (double)NS_PER_S);
}

static void begin_measure(uint64_t t)
{
    st.t_measure = t + secs(opt.warmup);
    st.t_end = st.t_measure + secs(opt.duration);
}

/* Called once per loop turn: moves between phases on time or progress. */
static void advance(uint64_t t)
{
    if (st.phase == PH_CONNECT && st.opened + st.open_failed >= st.nconns) {
        if (st.opened == 0)
            die("no connection could be opened: %s", st.first_error);
        if (opt.mode == MODE_ECHO) {
            st.phase = PH_RUN;
            begin_measure(t);
        } else {
            st.phase = PH_SETTLE;
            st.t_phase = t + secs(opt.settle);
        }
    }
    if (st.phase == PH_CONNECT && t - st.t_begin > secs(opt.timeout)) {
        set_error("only %u of %u connections opened within %.0f s", st.opened,
                  st.nconns, opt.timeout);
        st.phase = PH_DONE;
        st.errors++;
        return;
    }
    if (st.phase == PH_SETTLE && t >= st.t_phase) {
        if (opt.mode == MODE_IDLE) {
            st.rss_after_kib = read_rss_kib(opt.pid);
            st.phase = PH_DONE;
        } else {
            st.phase = PH_RUN;
            st.t_pub = st.t_ack = t;
            begin_measure(t);
            conn *pub = &st.conns[st.nconns - 1];
            if (pub->state == C_OPEN && opt.rate <= 0)
                send_messages(pub, opt.window, t);
        }
    }
    if (st.phase == PH_RUN && opt.mode == MODE_BCAST && opt.rate > 0 &&
        t < st.t_end) {
        /* Fixed rate: catch up with the schedule, at most 1000 per turn. */
        uint64_t due = (uint64_t)((double)(t - st.t_pub) / 1e9 * opt.rate);
        conn *pub = &st.conns[st.nconns - 1];
        if (due > st.pub_sent && pub->state == C_OPEN) {
            uint64_t k = due - st.pub_sent;
            if (k > 1000)
                k = 1000;
            send_messages(pub, (unsigned)k, t);
        }
    }
    if (st.phase == PH_RUN && opt.mode == MODE_BCAST && opt.rate <= 0 &&
        t - st.t_ack > 5 * NS_PER_S) {
        /* A server that skips the sender never acks the window. */
        set_error("the publisher received none of its own messages for 5 s "
                  "(does the server skip the sender? then use --rate)");
        st.errors++;
        st.phase = PH_DONE;
        return;
    }
    if (st.phase == PH_RUN && !st.measuring && t >= st.t_measure) {
        st.measuring = true;
        getrusage(RUSAGE_SELF, &st.ru_measure);
        st.srv_cpu_measure = read_cpu_ticks(opt.pid);
        st.extra_measure = extra_ticks();
        st.lg_core = pinned_core(0);
        st.srv_core = opt.pid > 0 ? pinned_core(opt.pid) : -1;
        if (st.srv_core == st.lg_core)
            st.srv_core = -1; /* shared core: no telling who is who */
        st.lg_core_ticks = read_core_ticks(st.lg_core);
        st.srv_core_ticks = read_core_ticks(st.srv_core);
        st.lg_self_ticks = read_cpu_ticks((long)getpid());
    }
    if (st.phase == PH_RUN && t >= st.t_end)
        st.phase = PH_DONE;
}

static int next_timeout_ms(uint64_t t)
{
    uint64_t next = UINT64_MAX;

    if (st.phase == PH_CONNECT)
        next = st.t_begin + secs(opt.timeout);
    else if (st.phase == PH_SETTLE)
        next = st.t_phase;
    else if (st.phase == PH_RUN) {
        if (opt.mode == MODE_BCAST && opt.rate > 0)
            return 1;
        next = t < st.t_measure ? st.t_measure : st.t_end;
    }
    if (next == UINT64_MAX)
        return 1000;
    if (next <= t)
        return 0;
    uint64_t ms = (next - t + 999999) / 1000000;
    return ms > 1000 ? 1000 : (int)ms;
}

/* ---- setup --------------------------------------------------------------- */

static void raise_nofile(unsigned need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        /* Only root may raise the hard limit; try, then give up clearly. */
        rl.rlim_max = need;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("cannot raise the open files limit to %u: %s (ulimit -n)", need,
            strerror(errno));
}

static void resolve(void)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&st.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&st.addr;

    memset(&st.addr, 0, sizeof(st.addr));
    const char *h = strcmp(opt.host, "localhost") == 0 ? "127.0.0.1" : opt.host;
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        /* Load goes to this machine only: 127.0.0.0/8. */
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            die("refusing %s: only loopback addresses are allowed", h);
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opt.port);
        st.addr_len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            die("refusing %s: only loopback addresses are allowed", h);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opt.port);
        st.addr_len = sizeof(*a6);
    } else {
        die("--host must be a numeric loopback address, not %s", h);
    }
    st.addr2 = st.addr;
    if (st.addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&st.addr2)->sin_port =
            htons((uint16_t)opt.port2);
    else
        ((struct sockaddr_in6 *)&st.addr2)->sin6_port =
            htons((uint16_t)opt.port2);
}

/* Builds a complete masked client frame for msg. Every message of the run
 * uses the same mask key: the server still unmasks every byte, and building
 * the frame once keeps masking off the load generator's hot path. (RFC 6455
 * asks for unpredictable keys to protect proxies from cache poisoning; there
 * is no proxy on loopback.) */
static uint8_t *build_frame(const char *msg, size_t *out_len)
{
    size_t len = strlen(msg);
    uint8_t *f = xrealloc(NULL, len + WS_MAX_HEADER);
    size_t h = ws_put_header(f, opt.binary ? WS_OP_BINARY : WS_OP_TEXT, true,
                             len, st.mask);
    memcpy(f + h, msg, len);
    ws_mask(f + h, len, st.mask, 0);
    *out_len = h + len;
    return f;
}

static char *default_message(void)
{
    /* The identity envelope with 64 bytes of data: 94 bytes in all, the size
     * the reference figures were measured with. */
    static char buf[128];
    snprintf(buf, sizeof(buf), "{\"event\":\"identity\",\"data\":\"%s\"}",
             "0123456789abcdef0123456789abcdef"
             "0123456789abcdef0123456789abcdef");
    return buf;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: sb_loadgen echo|idle|broadcast [options]\n"
        "  --host ADDR        loopback address of the server (127.0.0.1)\n"
        "  --port N           server port (3000)\n"
        "  --path P           request path (/)\n"
        "  --conns N          connections (echo 100, idle 10000,\n"
        "                     broadcast 10000 subscribers)\n"
        "  --label S          name echoed in the output line\n"
        "  --duration S       measured seconds (10)\n"
        "  --warmup S         seconds before measuring (2)\n"
        "  --timeout S        give up opening connections after S (30)\n"
        "  --connect-window N handshakes in progress at once (256)\n"
        "  --no-spin          sleep in epoll_wait instead of polling\n"
        "echo:\n"
        "  --inflight P       messages in flight per connection (1)\n"
        "  --message STR      text to send (identity envelope, 64-byte data)\n"
        "  --expect STR       check that each reply equals STR\n"
        "  --binary           send binary frames instead of text\n"
        "  --pid PID          also report the server's CPU use\n"
        "idle:\n"
        "  --pid PID          server process whose VmRSS is read (required)\n"
        "  --settle S         wait after the last handshake (1)\n"
        "broadcast:\n"
        "  --port2 N          every other subscriber connects to port N (a\n"
        "                     second node; the publisher stays on --port)\n"
        "  --extra-pid PID    add PID's CPU to extra_cpu (repeatable, 4)\n"
        "  --join STR         text each subscriber sends once (required)\n"
        "  --message STR      text the publisher sends\n"
        "  --expect STR       check that each delivery equals STR\n"
        "  --window W         publisher keeps at most W unacknowledged (64);\n"
        "                     it joins too and counts its own copies as acks\n"
        "  --rate R           publish R msgs/s instead (publisher does not "
        "join)\n"
        "  --settle S         wait after the joins before publishing (1)\n");
}

static double parse_num(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0)
        die("bad value for --%s: %s", what, s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum {
        OPT_HOST = 256,
        OPT_PORT,
        OPT_PATH,
        OPT_CONNS,
        OPT_LABEL,
        OPT_DURATION,
        OPT_WARMUP,
        OPT_TIMEOUT,
        OPT_CWIN,
        OPT_INFLIGHT,
        OPT_MESSAGE,
        OPT_EXPECT,
        OPT_BINARY,
        OPT_PID,
        OPT_SETTLE,
        OPT_JOIN,
        OPT_WINDOW,
        OPT_RATE,
        OPT_NO_SPIN,
        OPT_PORT2,
        OPT_EXTRA_PID,
        OPT_HELP
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"path", required_argument, NULL, OPT_PATH},
        {"conns", required_argument, NULL, OPT_CONNS},
        {"label", required_argument, NULL, OPT_LABEL},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"connect-window", required_argument, NULL, OPT_CWIN},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"message", required_argument, NULL, OPT_MESSAGE},
        {"expect", required_argument, NULL, OPT_EXPECT},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"pid", required_argument, NULL, OPT_PID},
        {"settle", required_argument, NULL, OPT_SETTLE},
        {"join", required_argument, NULL, OPT_JOIN},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"rate", required_argument, NULL, OPT_RATE},
        {"no-spin", no_argument, NULL, OPT_NO_SPIN},
        {"port2", required_argument, NULL, OPT_PORT2},
        {"extra-pid", required_argument, NULL, OPT_EXTRA_PID},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};

    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (strcmp(argv[1], "echo") == 0)
        opt.mode = MODE_ECHO;
    else if (strcmp(argv[1], "idle") == 0)
        opt.mode = MODE_IDLE;
    else if (strcmp(argv[1], "broadcast") == 0)
        opt.mode = MODE_BCAST;
    else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        exit(0);
    } else {
        usage(stderr);
        exit(2);
    }
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_HOST:
            opt.host = optarg;
            break;
        case OPT_PORT:
            opt.port = (int)parse_num(optarg, "port");
            break;
        case OPT_PATH:
            opt.path = optarg;
            break;
        case OPT_CONNS:
            opt.conns = (unsigned)parse_num(optarg, "conns");
            break;
        case OPT_LABEL:
            opt.label = optarg;
            break;
        case OPT_DURATION:
            opt.duration = parse_num(optarg, "duration");
            break;
        case OPT_WARMUP:
            opt.warmup = parse_num(optarg, "warmup");
            break;
        case OPT_TIMEOUT:
            opt.timeout = parse_num(optarg, "timeout");
            break;
        case OPT_CWIN:
            opt.connect_window = (unsigned)parse_num(optarg, "connect-window");
            break;
        case OPT_INFLIGHT:
            opt.inflight = (unsigned)parse_num(optarg, "inflight");
            break;
        case OPT_MESSAGE:
            opt.message = optarg;
            break;
        case OPT_EXPECT:
            opt.expect = optarg;
            break;
        case OPT_BINARY:
            opt.binary = true;
            break;
        case OPT_PID:
            opt.pid = (long)parse_num(optarg, "pid");
            break;
        case OPT_PORT2:
            opt.port2 = (int)parse_num(optarg, "port2");
            break;
        case OPT_EXTRA_PID:
            if (opt.nextra == 4)
                die("at most 4 --extra-pid");
            opt.extra_pids[opt.nextra++] = (long)parse_num(optarg, "extra-pid");
            break;
        case OPT_SETTLE:
            opt.settle = parse_num(optarg, "settle");
            break;
        case OPT_JOIN:
            opt.join = optarg;
            break;
        case OPT_WINDOW:
            opt.window = (unsigned)parse_num(optarg, "window");
            break;
        case OPT_RATE:
            opt.rate = parse_num(optarg, "rate");
            break;
        case OPT_NO_SPIN:
            opt.spin = false;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc)
        die("unexpected argument: %s", argv[optind]);
    if (opt.port <= 0 || opt.port > 65535)
        die("bad --port");
    if (opt.conns == 0)
        opt.conns = opt.mode == MODE_ECHO ? 100 : 10000;
    if (opt.inflight == 0 || opt.inflight > 65536)
        die("--inflight must be 1..65536");
    if (opt.connect_window == 0)
        opt.connect_window = 1;
    if (opt.duration <= 0 || opt.duration > 3600)
        die("--duration must be in (0, 3600] seconds");
    if (opt.warmup > 3600 || opt.settle > 3600 || opt.timeout > 3600)
        die("times are limited to an hour");
    if (opt.mode == MODE_IDLE && opt.pid <= 0)
        die("idle needs --pid of the server");
    if (opt.mode == MODE_BCAST) {
        if (!opt.join)
            die("broadcast needs --join");
        if (opt.rate > 0)
            opt.pub_join = false;
        else if (opt.window == 0)
            die("--window must be at least 1");
    }
    if (!opt.message)
        opt.message = default_message();
}

/* ---- report -------------------------------------------------------------- */

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void report(uint64_t t_done)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double span = (double)(t_done - st.t_measure) / 1e9;
    if (span <= 0)
        span = 1e-9;
    double lg_cpu =
        ((double)(ru.ru_utime.tv_sec - st.ru_measure.ru_utime.tv_sec) +
         (double)(ru.ru_stime.tv_sec - st.ru_measure.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec - st.ru_measure.ru_utime.tv_usec) / 1e6 +
         (double)(ru.ru_stime.tv_usec - st.ru_measure.ru_stime.tv_usec) / 1e6) /
        span;
    /* The share of the window spent handling events (polling excluded): near
     * 1.0, the load generator itself may be the limit. */
    double lg_busy = (double)st.busy_ns / 1e9 / span;
    double srv_cpu = -1;
    uint64_t srv_ticks = 0;
    if (opt.pid > 0 && st.srv_cpu_measure) {
        srv_ticks = read_cpu_ticks(opt.pid);
        srv_cpu = (double)(srv_ticks - st.srv_cpu_measure) /
                  (double)sysconf(_SC_CLK_TCK) / span;
    }
    /* Other processes on our two cores during the window: builds or tests
     * running beside the benchmark. Above a few percent the figures are
     * suspect (run.sh repeats such runs). */
    double other_lg =
        other_share(st.lg_core, st.lg_core_ticks, st.lg_self_ticks,
                    read_cpu_ticks((long)getpid()), span);
    double other_srv = srv_ticks
                           ? other_share(st.srv_core, st.srv_core_ticks,
                                         st.srv_cpu_measure, srv_ticks, span)
                           : -1;
    double other = other_lg > other_srv ? other_lg : other_srv;
    const char *err = st.first_error[0] ? st.first_error : "";

    switch (opt.mode) {
    case MODE_ECHO: {
        double rate = (double)st.replies / span;
        printf("mode=echo label=%s conns=%u inflight=%u msg_bytes=%zu "
               "duration_s=%.3f replies=%" PRIu64 " msgs_per_s=%.0f "
               "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
               "max_us=%.1f mean_us=%.1f mismatches=%" PRIu64
               " unexpected=%" PRIu64 " errors=%" PRIu64
               " lg_cpu=%.2f lg_busy=%.2f srv_cpu=%.2f other_cpu=%.2f\n",
               opt.label, opt.conns, opt.inflight, strlen(opt.message), span,
               st.replies, rate, us(hist_percentile(&st.lat, 50)),
               us(hist_percentile(&st.lat, 90)),
               us(hist_percentile(&st.lat, 99)),
               us(hist_percentile(&st.lat, 99.9)), us(st.lat.max),
               hist_mean(&st.lat) / 1000.0, st.mismatches, st.unexpected,
               st.errors, lg_cpu, lg_busy, srv_cpu, other);
        printf("# %s echo, %u conns x %u in flight: %.0f msgs/s, latency "
               "p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us%s%s\n",
               opt.label, opt.conns, opt.inflight, rate,
               us(hist_percentile(&st.lat, 50)),
               us(hist_percentile(&st.lat, 99)),
               us(hist_percentile(&st.lat, 99.9)), us(st.lat.max),
               err[0] ? "; error: " : "", err);
        break;
    }
    case MODE_IDLE: {
        double per = st.opened
                         ? (double)(st.rss_after_kib - st.rss_before_kib) /
                               (double)st.opened
                         : 0;
        printf("mode=idle label=%s conns=%u opened=%u rss_before_kib=%ld "
               "rss_after_kib=%ld kib_per_conn=%.2f errors=%" PRIu64 "\n",
               opt.label, opt.conns, st.opened, st.rss_before_kib,
               st.rss_after_kib, per, st.errors);
        printf("# %s idle: %u connections open, server RSS %ld -> %ld KiB, "
               "%.2f KiB per connection%s%s\n",
               opt.label, st.opened, st.rss_before_kib, st.rss_after_kib, per,
               err[0] ? "; error: " : "", err);
        break;
    }
    case MODE_BCAST: {
        double dps = (double)st.deliveries / span;
        double pps = (double)st.published / span;
        double extra_cpu = opt.nextra
                               ? (double)(extra_ticks() - st.extra_measure) /
                                     (double)sysconf(_SC_CLK_TCK) / span
                               : -1;
        printf("mode=broadcast label=%s subscribers=%u window=%u rate=%.0f "
               "msg_bytes=%zu duration_s=%.3f deliveries=%" PRIu64
               " deliveries_per_s=%.0f published=%" PRIu64
               " published_per_s=%.0f fanout=%.1f mismatches=%" PRIu64
               " errors=%" PRIu64
               " lg_cpu=%.2f lg_busy=%.2f srv_cpu=%.2f other_cpu=%.2f"
               " extra_cpu=%.2f\n",
               opt.label, opt.conns, opt.rate > 0 ? 0 : opt.window, opt.rate,
               strlen(opt.message), span, st.deliveries, dps, st.published, pps,
               st.published ? (double)st.deliveries / (double)st.published
                            : 0.0,
               st.mismatches, st.errors, lg_cpu, lg_busy, srv_cpu, other,
               extra_cpu);
        printf("# %s broadcast to %u subscribers: %.0f deliveries/s, %.0f "
               "messages published/s%s%s\n",
               opt.label, opt.conns, dps, pps, err[0] ? "; error: " : "", err);
        break;
    }
    }
    fflush(stdout);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    resolve();

    st.nconns = opt.conns + (opt.mode == MODE_BCAST ? 1 : 0);
    raise_nofile(st.nconns + 64);
    if (getrandom(&st.xorshift, sizeof(st.xorshift), 0) < 0 || !st.xorshift)
        st.xorshift = (uint64_t)now_ns() | 1;
    uint64_t m = rnd64();
    memcpy(st.mask, &m, 4);
    st.frame = build_frame(opt.message, &st.frame_len);
    if (opt.join)
        st.join_frame = build_frame(opt.join, &st.join_frame_len);
    st.expect_len = opt.expect ? strlen(opt.expect) : 0;
    hist_init(&st.lat);
    st.t_measure = UINT64_MAX;
    st.t_end = UINT64_MAX;

    st.conns = calloc(st.nconns, sizeof(conn));
    if (!st.conns)
        die("out of memory");
    uint64_t *slots = NULL;
    if (opt.mode == MODE_ECHO) {
        slots = calloc((size_t)st.nconns * opt.inflight, sizeof(uint64_t));
        if (!slots)
            die("out of memory");
    }
    for (unsigned i = 0; i < st.nconns; i++) {
        conn *c = &st.conns[i];
        c->fd = -1;
        c->state = C_FREE;
        switch (opt.mode) {
        case MODE_ECHO:
            c->role = ROLE_ECHO;
            c->slots = slots + (size_t)i * opt.inflight;
            break;
        case MODE_IDLE:
            c->role = ROLE_IDLE;
            break;
        case MODE_BCAST:
            c->role = i + 1 == st.nconns ? ROLE_PUB : ROLE_SUB;
            break;
        }
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    st.ep = epoll_create1(EPOLL_CLOEXEC);
    if (st.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    st.rx_cap = RX_CHUNK;
    st.rx = xrealloc(NULL, st.rx_cap);

    if (opt.mode == MODE_IDLE) {
        st.rss_before_kib = read_rss_kib(opt.pid);
        if (st.rss_before_kib < 0)
            die("cannot read VmRSS of pid %ld", opt.pid);
    }
    st.t_begin = now_ns();
    st.phase = PH_CONNECT;

    /* The load generator owns its core, so it polls instead of sleeping:
     * on a VM, a halted vCPU takes tens of microseconds to wake, and that
     * would be added to every round trip (measured here: a fast echo at 1 in
     * flight fell from ~175k to ~50k msgs/s). Idle mode has nothing to
     * hurry for. */
    bool spin = opt.spin && opt.mode != MODE_IDLE;
    struct epoll_event evs[MAX_EVENTS];
    while (st.phase != PH_DONE && !interrupted) {
        start_more_conns();
        uint64_t t = now_ns();
        advance(t);
        if (st.phase == PH_DONE)
            break;
        if (st.opened + st.opening == 0 && st.started == st.nconns)
            die("every connection failed: %s", st.first_error);
        int n =
            epoll_wait(st.ep, evs, MAX_EVENTS, spin ? 0 : next_timeout_ms(t));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        if (n == 0)
            continue;
        uint64_t t_wake = now_ns();
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->state == C_DEAD)
                continue;
            if (evs[i].events & EPOLLOUT)
                on_writable(c);
            if (c->state != C_DEAD &&
                (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                if (c->state == C_CONNECTING)
                    on_writable(c); /* reports the connect error */
                else
                    on_readable(c);
            }
        }
        if (st.measuring && t_wake < st.t_end)
            st.busy_ns += now_ns() - t_wake;
    }
    uint64_t t_done = now_ns();
    if (st.t_end != UINT64_MAX && t_done > st.t_end)
        t_done = st.t_end;
    if (st.t_measure == UINT64_MAX)
        st.t_measure = t_done;
    if (opt.mode == MODE_IDLE && st.rss_after_kib == 0)
        st.rss_after_kib = read_rss_kib(opt.pid);
    st.phase = PH_DONE;
    report(t_done);

    for (unsigned i = 0; i < st.nconns; i++)
        conn_abort(&st.conns[i]);
    if (interrupted)
        return 130;
    if (opt.mode == MODE_IDLE && st.opened < opt.conns)
        return 1;
    return st.errors ? 1 : 0;
}

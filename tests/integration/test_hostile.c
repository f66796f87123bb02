/*
 * hostile — issue 5 item 7: for about ten seconds 200 hostile clients throw
 * every kind of bad input we know at one server while 20 well-behaved
 * clients keep sending `echo` requests with ids. Each well-behaved request
 * must be answered exactly once, none lost, no well-behaved client
 * disconnected; afterwards the server still serves a new client, its memory
 * (VmRSS) is back within 10 % of a baseline taken after a warm-up, and it
 * exits 0 on SIGTERM (srv_stop asserts that).
 *
 * Each kind of bad input is one function (KINDS lists them) that makes one
 * hostile connection, misbehaves, and checks the outcome the README
 * promises: an exception on a connection that stays usable, a close code,
 * an HTTP refusal, or a dropped connection. Outcomes that fall short of RFC
 * 6455 in known ways that cost no one else anything (libwebsockets 4.1.6
 * serves unmasked frames, for one) are counted and printed as known gaps
 * rather than failed; anything else fails the test. A hostile client is a
 * thread that runs kinds in a seeded pseudo-random order (its first run is kind
 * index mod the number of kinds, so every kind runs), which keeps a run
 * repeatable enough to debug. Under SB_TEST_WRAPPER (valgrind) the server
 * is some 20-50 times slower: fewer clients, slower well-behaved senders
 * and longer waits keep the test under five minutes there, and VmRSS (that
 * of valgrind itself) is not checked; nor is it in a sanitizer build
 * (SB_TEST_SANITIZE), where ASan keeps freed memory in quarantine.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "harness.h"

/* The limits the hostile kinds run into. max_message_size has to hold the
 * deep-nesting message (10^5 levels: 200 KB), so it is 256k, not smaller;
 * the depth limit must then be what refuses that message. unknown_event =
 * exception gives unknown events an outcome to check. */
static const char *const LIMITS = "max_message_size = 256k\n"
                                  "max_json_depth = 32\n"
                                  "rate_limit = 1000\n"
                                  "rate_burst = 200\n"
                                  "max_send_queue = 256k\n"
                                  "handshake_timeout = 2\n"
                                  "unknown_event = exception\n";
#define MAX_MESSAGE (256 * 1024)
#define RATE_BURST  200

/* How much of everything; see the top of the file for the wrapper case. */
typedef struct scale {
    int hostile;        /* hostile clients (threads) */
    int good;           /* well-behaved clients */
    int hostile_ms;     /* how long the hostile phase lasts */
    int good_period_ms; /* between two requests of one good client */
    int wait_ms;        /* the longest wait for any one answer */
} scale;

static const scale NATIVE = {200, 20, 10000, 10, 10000};
static const scale WRAPPED = {50, 10, 10000, 40, 60000};

static scale g;
static sb_srv srv;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* The server's open file descriptors: back to the count it had with only
 * the good clients connected means every hostile connection is gone. */
static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool wait_fds_at_most(pid_t pid, int want, int timeout_ms)
{
    for (int64_t end = now_ms() + timeout_ms;; sleep_ms(50)) {
        if (fd_count(pid) <= want)
            return true;
        if (now_ms() > end)
            return false;
    }
}

/* ---- payloads built once, shared read-only by every thread --------------- */

static char *deep_msg, *oversize_msg, *slow_request, *frag_piece;
static size_t deep_len, oversize_len, slow_request_len, frag_piece_len;
static unsigned char *flood_frames, *ping_frames;
static size_t flood_len, ping_len;
#define FLOOD_MESSAGES 1500
#define FLOOD_PINGS    500

/* {"event":"identity","data":"xxx…"} of `total` bytes. */
static char *identity_of_len(size_t total, size_t *len)
{
    char *m = malloc(total + 1);
    ck_assert_ptr_nonnull(m);
    int o = snprintf(m, total + 1, "{\"event\":\"identity\",\"data\":\"");
    memset(m + o, 'x', total - (size_t)o - 2);
    memcpy(m + total - 2, "\"}", 3);
    *len = total;
    return m;
}

/* Frames glued into one buffer, so a flood reaches the server in as few
 * reads as the socket allows. */
static unsigned char *glue_frames(int opcode, const char *fmt, int count,
                                  size_t *len)
{
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t cap = (size_t)count * 64, o = 0;
    unsigned char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < count; i++) {
        char payload[32];
        int n = snprintf(payload, sizeof(payload), fmt, i);
        size_t flen;
        unsigned char *f =
            ws_encode_frame(opcode, 1, 0, mask, payload, (size_t)n, &flen);
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_le(o + flen, cap);
        memcpy(buf + o, f, flen);
        o += flen;
        free(f);
    }
    *len = o;
    return buf;
}

static void payloads_make(void)
{
    /* 10^5 levels of arrays as the data of an echo: 200 KB, under
     * max_message_size, so that the depth limit is what answers. */
    size_t depth = 100000;
    deep_msg = malloc(2 * depth + 64);
    ck_assert_ptr_nonnull(deep_msg);
    size_t o =
        (size_t)sprintf(deep_msg, "{\"event\":\"echo\",\"id\":9,\"data\":");
    memset(deep_msg + o, '[', depth);
    memset(deep_msg + o + depth, ']', depth);
    o += 2 * depth;
    deep_msg[o++] = '}';
    deep_len = o;
    oversize_msg = identity_of_len(MAX_MESSAGE + 50 * 1024, &oversize_len);
    /* 100 KB requests whose replies are 100 KB: 150 of them are far more
     * than the kernel buffers plus max_send_queue hold. */
    slow_request = identity_of_len(100 * 1024, &slow_request_len);
    frag_piece_len = 100 * 1024;
    frag_piece = malloc(frag_piece_len);
    ck_assert_ptr_nonnull(frag_piece);
    memset(frag_piece, 'x', frag_piece_len);
    flood_frames =
        glue_frames(WS_OP_TEXT, "{\"event\":\"identity\",\"data\":%d}",
                    FLOOD_MESSAGES, &flood_len);
    ping_frames = glue_frames(WS_OP_PING, "ping %d", FLOOD_PINGS, &ping_len);
}

static void payloads_free(void)
{
    free(deep_msg);
    free(oversize_msg);
    free(slow_request);
    free(frag_piece);
    free(flood_frames);
    free(ping_frames);
}

/* ---- hostile clients: helpers -------------------------------------------- */

typedef struct hostile {
    int index;
    unsigned seed;  /* rand_r state: the run's order and choices */
    char why[200];  /* why the last run was not what the README promises */
    bool gap;       /* the run met a known gap (why says which) */
    uint64_t bytes; /* sent, for the report */
} hostile;

/* Records why a run failed; returns false for `return unexpected(...)`. */
static bool unexpected(hostile *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool unexpected(hostile *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof(h->why), fmt, ap);
    va_end(ap);
    return false;
}

/* An outcome that falls short of RFC 6455 or the README but is known (how
 * libwebsockets 4.1.6 behaves, or a limit's known weakness) and costs no one
 * else anything: counted and printed apart, not failed, so that the gap
 * stays visible until the server closes it. */
static bool known_gap(hostile *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool known_gap(hostile *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof(h->why), fmt, ap);
    va_end(ap);
    h->gap = true;
    return true;
}

static unsigned rnd(hostile *h, unsigned n)
{
    return (unsigned)rand_r(&h->seed) % n;
}

static ws_client *h_connect(hostile *h)
{
    ws_client *c = ws_connect("127.0.0.1", srv.port, "/", NULL, g.wait_ms);
    if (!c)
        unexpected(h, "connect: %s", ws_last_error());
    return c;
}

/* Sends; a failure is the server's doing only when the kind expects the
 * connection to stay, so callers decide what it means. */
static int h_send(hostile *h, ws_client *c, const char *text)
{
    h->bytes += strlen(text);
    return ws_send_text(c, text, strlen(text));
}

/* The next data message or close frame; pings and pongs are skipped (and
 * pongs counted). As ws_recv. */
static int next_message(ws_client *c, ws_frame *f, int *pongs)
{
    int64_t end = now_ms() + g.wait_ms;
    for (;;) {
        int left = (int)(end - now_ms());
        int rc = ws_recv_message(c, left > 0 ? left : 0, f);
        if (rc != 1)
            return rc;
        if (f->opcode != WS_OP_PING && f->opcode != WS_OP_PONG)
            return 1;
        if (f->opcode == WS_OP_PONG && pongs)
            (*pongs)++;
        ws_frame_free(f);
    }
}

/* One exception (whose text holds needle, if given) and nothing else. */
static bool expect_exception(hostile *h, ws_client *c, const char *sent,
                             const char *needle)
{
    ws_frame f;
    int rc = next_message(c, &f, NULL);
    if (rc != 1)
        return unexpected(h, "no exception for %.60s: %s", sent,
                          rc ? ws_error(c) : "timeout");
    bool ok = f.opcode == WS_OP_TEXT &&
              strstr((char *)f.data, "{\"event\":\"exception\"") &&
              (!needle || strstr((char *)f.data, needle));
    if (!ok)
        unexpected(h, "for %.50s got opcode %d: %.100s", sent, f.opcode,
                   (char *)f.data);
    ws_frame_free(&f);
    return ok;
}

/* After bad input that the README says leaves the connection open: it still
 * serves, in order, after whatever came before. */
static bool expect_alive(hostile *h, ws_client *c, int *pongs)
{
    static const char req[] =
        "{\"event\":\"echo\",\"data\":\"alive\",\"id\":7}";
    if (h_send(h, c, req) < 0)
        return unexpected(h, "connection not kept open: %s", ws_error(c));
    ws_frame f;
    int rc = next_message(c, &f, pongs);
    if (rc != 1)
        return unexpected(h, "no answer after bad input: %s",
                          rc ? ws_error(c) : "timeout");
    bool ok = f.opcode == WS_OP_TEXT && strcmp((char *)f.data, req) == 0;
    if (!ok)
        unexpected(h, "after bad input got opcode %d: %.100s", f.opcode,
                   (char *)f.data);
    ws_frame_free(&f);
    return ok;
}

static bool expect_close(hostile *h, ws_client *c, int want)
{
    int code = 0;
    char reason[128];
    if (ws_expect_close(c, g.wait_ms, &code, reason, sizeof(reason)) < 0)
        return unexpected(h, "waited for close %d: %s", want, ws_error(c));
    if (code != want)
        return unexpected(h, "closed with %d (%s), not %d", code,
                          code == -1 ? "no close frame" : reason, want);
    return true;
}

/* Sends each text and expects an exception holding needle for each, then
 * that the connection still serves. */
static bool exceptions_for(hostile *h, const char *const *texts, unsigned n,
                           const char *needle)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    bool ok = true;
    for (unsigned i = 0, count = 1 + rnd(h, 4); ok && i < count; i++) {
        const char *t = texts[rnd(h, n)];
        ok = h_send(h, c, t) == 0 ? expect_exception(h, c, t, needle)
                                  : unexpected(h, "send: %s", ws_error(c));
    }
    ok = ok && expect_alive(h, c, NULL);
    ws_close(c);
    return ok;
}

#define COUNT(a) (unsigned)(sizeof(a) / sizeof((a)[0]))

/* A plain TCP connection, for what is not WebSocket at all. */
static int raw_connect(hostile *h)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)srv.port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        unexpected(h, "tcp connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void raw_send(hostile *h, int fd, const void *p, size_t len)
{
    h->bytes += len;
    /* The server may hang up first: that is an outcome, not an error. */
    (void)send(fd, p, len, MSG_NOSIGNAL);
}

/* Reads until the server ends the connection, keeping the first bytes in
 * head. The bytes read, or -1 if it was still open after the wait. */
static long raw_until_eof(int fd, char *head, size_t headlen)
{
    long total = 0;
    head[0] = 0;
    for (int64_t end = now_ms() + g.wait_ms; now_ms() < end;) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return total;
        if (n < 0)
            continue; /* SO_RCVTIMEO: look at the clock again */
        if ((size_t)total < headlen - 1) {
            size_t k = (size_t)n < headlen - 1 - (size_t)total
                           ? (size_t)n
                           : headlen - 1 - (size_t)total;
            memcpy(head + total, buf, k);
            head[total + (long)k] = 0;
        }
        total += n;
    }
    return -1;
}

/* ---- the kinds of bad input ---------------------------------------------- */

static bool k_malformed_json(hostile *h)
{
    static const char *const t[] = {
        "{\"event\":",
        "not json",
        "",
        "{\"event\":\"echo\",}",
        "{\"event\":\"echo\" \"data\":1}",
        "{'event':'echo'}",
        "[",
        "{\"event\":\"echo\",\"data\":tru}",
        "{\"event\":\"echo\",\"data\":\"unterminated}",
        "{\"event\":\"echo\",\"data\":01}",
        "{\"event\":\"echo\"}}",
        "{\"event\":\"echo\",\"data\":\"\\x41\"}",
        "{\"event\":\"echo\",\"data\":NaN}",
    };
    return exceptions_for(h, t, COUNT(t), NULL);
}

static bool k_not_object(hostile *h)
{
    static const char *const t[] = {
        "[1,2]", "\"event\"", "42", "null", "true", "[{\"event\":\"echo\"}]",
        "-0.5e3"};
    return exceptions_for(h, t, COUNT(t), "Message must be a JSON object");
}

static bool k_missing_event(hostile *h)
{
    static const char *const t[] = {
        "{}", "{\"data\":1}", "{\"id\":5,\"data\":[1]}", "{\"Event\":\"echo\"}",
        "{\"events\":\"echo\",\"id\":\"x\"}"};
    return exceptions_for(h, t, COUNT(t), "Message has no \\\"event\\\"");
}

static bool k_event_not_string(hostile *h)
{
    static const char *const t[] = {
        "{\"event\":42}", "{\"event\":null}", "{\"event\":[\"echo\"]}",
        "{\"event\":{\"name\":\"echo\"}}", "{\"event\":true,\"id\":3}"};
    return exceptions_for(h, t, COUNT(t), "\\\"event\\\" must be a string");
}

static bool k_huge_event_name(hostile *h)
{
    /* From just over the 255-byte limit to about 100 KB. */
    size_t n = 256 + rnd(h, 100000);
    char *m = malloc(n + 32);
    ck_assert_ptr_nonnull(m);
    int o = sprintf(m, "{\"event\":\"");
    memset(m + o, 'e', n);
    strcpy(m + (size_t)o + n, "\"}");
    const char *t[] = {m};
    bool ok = exceptions_for(h, t, 1, "\\\"event\\\" is longer than");
    free(m);
    return ok;
}

static bool k_deep_nesting(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    h->bytes += deep_len;
    bool ok = ws_send_text(c, deep_msg, deep_len) == 0
                  ? expect_exception(h, c, "10^5 levels", "deeper than 32")
                  : unexpected(h, "send: %s", ws_error(c));
    ok = ok && expect_alive(h, c, NULL);
    ws_close(c);
    return ok;
}

static bool k_oversize(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    /* The server closes after the frame header; the rest may not go. */
    h->bytes += oversize_len;
    ws_send_text(c, oversize_msg, oversize_len);
    bool ok = expect_close(h, c, WS_CLOSE_TOO_BIG);
    ws_close(c);
    return ok;
}

static bool k_oversize_fragments(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    /* Three 100 KB fragments: each under the limit, together over it. */
    static const char head[] = "{\"event\":\"identity\",\"data\":\"";
    int rc = ws_send_frame(c, WS_OP_TEXT, 0, head, strlen(head));
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = ws_send_frame(c, WS_OP_CONT, i == 2, frag_piece, frag_piece_len);
    h->bytes += 3 * frag_piece_len;
    bool ok = expect_close(h, c, WS_CLOSE_TOO_BIG);
    ws_close(c);
    return ok;
}

static bool k_invalid_utf8(hostile *h)
{
    static const char *const bad[] = {
        "\xc3\x28",         /* a lead byte without its continuation */
        "\xff",             /* never valid */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* a UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\x80",             /* a lone continuation byte */
    };
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    char m[128];
    int n = snprintf(m, sizeof(m), "{\"event\":\"echo\",\"data\":\"a%sb\"}",
                     bad[rnd(h, COUNT(bad))]);
    h->bytes += (size_t)n;
    if (rnd(h, 2)) {
        ws_send_text(c, m, (size_t)n);
    } else {
        /* Split in the middle of the bad sequence, across fragments. */
        size_t cut = strlen("{\"event\":\"echo\",\"data\":\"a") + 1;
        ws_send_frame(c, WS_OP_TEXT, 0, m, cut);
        ws_send_frame(c, WS_OP_CONT, 1, m + cut, (size_t)n - cut);
    }
    bool ok = expect_close(h, c, WS_CLOSE_INVALID_DATA);
    ws_close(c);
    return ok;
}

/* After a frame that breaks RFC 6455 the server must _Fail the WebSocket
 * Connection_ (section 7.1.7): a close with 1002 (it SHOULD send one) or
 * just the end of the TCP connection. Returns the close code, -1 for an end
 * without a close frame, or 0 if the connection stayed open (*frame then
 * holds the data message that came instead, if any). */
static int failed_with(ws_client *c, ws_frame *frame)
{
    memset(frame, 0, sizeof(*frame));
    for (int64_t end = now_ms() + g.wait_ms; now_ms() < end;) {
        ws_frame f;
        int rc = ws_recv_message(c, (int)(end - now_ms()), &f);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (f.opcode == WS_OP_CLOSE) {
            int code = f.len >= 2 ? f.data[0] << 8 | f.data[1] : 1005;
            ws_frame_free(&f);
            return code;
        }
        if (f.opcode == WS_OP_TEXT || f.opcode == WS_OP_BINARY) {
            *frame = f;
            return 0;
        }
        ws_frame_free(&f);
    }
    return 0;
}

static bool protocol_error(hostile *h, int opcode, int fin, int rsv, int masked,
                           const void *payload, size_t len)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    h->bytes += len;
    ws_send_frame_ex(c, opcode, fin, rsv, masked, payload, len);
    ws_frame f;
    int code = failed_with(c, &f);
    bool ok = code == -1 || code == WS_CLOSE_PROTOCOL_ERROR ||
              unexpected(h, "opcode %d fin %d rsv %d: %s %d %.60s", opcode, fin,
                         rsv, code ? "closed with" : "still open", code,
                         f.data ? (char *)f.data : "");
    ws_frame_free(&f);
    ws_close(c);
    return ok;
}

static bool k_unmasked(hostile *h)
{
    /* RFC 6455 5.1: a server MUST close the connection on an unmasked
     * frame. lws 4.1.6 serves it like any other. */
    static const char m[] = "{\"event\":\"echo\",\"data\":1,\"id\":1}";
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    ws_set_masking(c, 0);
    h->bytes += strlen(m);
    ws_send_text(c, m, strlen(m));
    ws_frame f;
    int code = failed_with(c, &f);
    bool ok = code == -1 || code == WS_CLOSE_PROTOCOL_ERROR;
    if (!ok && code == 0 && f.data && strcmp((char *)f.data, m) == 0)
        ok = known_gap(h, "an unmasked frame is served, not refused");
    else if (!ok)
        unexpected(h, "%s %d %.60s", code ? "closed with" : "still open", code,
                   f.data ? (char *)f.data : "");
    ws_frame_free(&f);
    ws_close(c);
    return ok;
}

static bool k_reserved_opcode(hostile *h)
{
    static const int ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    return protocol_error(h, ops[rnd(h, COUNT(ops))], 1, 0, 1, "x", 1);
}

static bool k_rsv_bits(hostile *h)
{
    static const char m[] = "{\"event\":\"echo\",\"data\":1}";
    return protocol_error(h, rnd(h, 2) ? WS_OP_TEXT : WS_OP_PING, 1,
                          1 + (int)rnd(h, 7), 1, m, strlen(m));
}

static bool k_bare_continuation(hostile *h)
{
    static const char m[] = "{\"event\":\"echo\",\"data\":1}";
    return protocol_error(h, WS_OP_CONT, (int)rnd(h, 2), 0, 1, m, strlen(m));
}

static bool k_big_control_frame(hostile *h)
{
    static const int ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    char p[1000];
    memset(p, 'c', sizeof(p));
    p[0] = 0x03; /* a close code of 1000, for the close frames */
    p[1] = (char)0xe8;
    if (rnd(h, 4) == 0) /* a fragmented control frame is as bad */
        return protocol_error(h, WS_OP_PING, 0, 0, 1, p, 10);
    return protocol_error(h, ops[rnd(h, COUNT(ops))], 1, 0, 1, p,
                          126 + rnd(h, sizeof(p) - 126));
}

static bool k_bad_close_frame(hostile *h)
{
    /* Close payloads RFC 6455 (7.4) makes a protocol error. */
    static const struct {
        unsigned char bytes[3];
        size_t len;
        const char *what;
    } bad[] = {
        {{0x03, 0xe7}, 2, "code 999"},
        {{0x03, 0xed}, 2, "code 1005"},
        {{0x03, 0xee}, 2, "code 1006"},
        {{0x13, 0x88}, 2, "code 5000"},
        {{0x00, 0x00}, 2, "code 0"},
        {{0x03}, 1, "a 1-byte payload"},
        {{0x03, 0xe8, 0xff}, 3, "a reason that is not UTF-8"},
    };
    unsigned i = rnd(h, COUNT(bad));
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    ws_send_frame(c, WS_OP_CLOSE, 1, bad[i].bytes, bad[i].len);
    ws_frame f;
    int code = failed_with(c, &f);
    bool ok = code == -1 || code == WS_CLOSE_PROTOCOL_ERROR;
    /* lws answers some of them as if they were valid (code 5000 echoed, a
     * 1-byte payload with an empty close); the connection still ends. */
    if (!ok && code > 0 && ws_wait_eof(c, g.wait_ms) == 0)
        ok = known_gap(h, "a close with %s is answered with %d, not 1002",
                       bad[i].what, code);
    else if (!ok)
        unexpected(h, "a close with %s: %s %d %.60s", bad[i].what,
                   code ? "closed with" : "still open", code,
                   f.data ? (char *)f.data : "");
    ws_frame_free(&f);
    ws_close(c);
    return ok;
}

static bool k_ping_flood(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    h->bytes += ping_len;
    if (ws_send_raw_bytes(c, ping_frames, ping_len) < 0) {
        bool ok = unexpected(h, "send: %s", ws_error(c));
        ws_close(c);
        return ok;
    }
    int pongs = 0;
    bool ok = expect_alive(h, c, &pongs);
    /* Pongs may be coalesced, but at least one must come. */
    for (int64_t end = now_ms() + g.wait_ms; ok && !pongs && now_ms() < end;) {
        ws_frame f;
        int rc = ws_recv(c, 100, &f);
        if (rc < 0)
            ok = unexpected(h, "closed after a ping flood: %s", ws_error(c));
        if (rc == 1) {
            pongs += f.opcode == WS_OP_PONG;
            ws_frame_free(&f);
        }
    }
    if (ok && !pongs)
        ok = unexpected(h, "no pong for %d pings", FLOOD_PINGS);
    ws_close(c);
    return ok;
}

static bool k_message_flood(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    h->bytes += flood_len;
    ws_send_raw_bytes(c, flood_frames, flood_len);
    /* Replies for the burst, rate-limit exceptions, then 1008; or, when
     * nothing more comes for a while, the flood was all read and dropped. */
    int replies = 0, exceptions = 0, code = 0;
    bool ok = true;
    for (;;) {
        ws_frame f;
        int rc = ws_recv_message(c, g.wait_ms / 4, &f);
        if (rc < 0) {
            ok = unexpected(h, "flood: dropped after %d replies: %s", replies,
                            ws_error(c));
            break;
        }
        if (rc == 0)
            break;
        if (f.opcode == WS_OP_PING || f.opcode == WS_OP_PONG) {
            ws_frame_free(&f);
            continue;
        }
        if (f.opcode == WS_OP_CLOSE) {
            code = f.len >= 2 ? f.data[0] << 8 | f.data[1] : -1;
            ws_frame_free(&f);
            break;
        }
        if (strstr((char *)f.data, "Rate limit exceeded"))
            exceptions++;
        else
            replies++;
        ws_frame_free(&f);
    }
    /* The bucket refills while the flood is read, and each message let
     * through starts a new run of refusals with its own exception: at most
     * one exception per reply beyond the burst. */
    if (ok && (exceptions < 1 || exceptions > replies - RATE_BURST + 1 ||
               replies < RATE_BURST || replies >= FLOOD_MESSAGES ||
               (code && code != WS_CLOSE_POLICY)))
        ok = unexpected(h, "flood: %d replies, %d exceptions, close %d",
                        replies, exceptions, code);
    /* The README: "a client that keeps sending a whole burst more is
     * closed with 1008". A client is forgiven once its bucket is half full
     * again, so a server too busy to read the flood but in pieces far apart
     * may see no flood at all: rate-limited, not closed. Counted apart, so
     * that it shows if it becomes the rule. */
    if (ok && !code)
        ok = known_gap(h,
                       "%d messages at once: %d replies, %d exceptions, "
                       "not closed",
                       FLOOD_MESSAGES, replies, exceptions);
    ws_close(c);
    return ok;
}

static bool k_half_open_handshake(hostile *h)
{
    static const char *const parts[] = {
        "", "G", "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"};
    int fd = raw_connect(h);
    if (fd < 0)
        return false;
    const char *p = parts[rnd(h, COUNT(parts))];
    raw_send(h, fd, p, strlen(p));
    /* ...and silence: handshake_timeout (2 s) must drop it. */
    char head[64];
    long n = raw_until_eof(fd, head, sizeof(head));
    close(fd);
    if (n < 0)
        return unexpected(h,
                          "half-open handshake (%zu bytes) still open after %d "
                          "ms",
                          strlen(p), g.wait_ms);
    if (n > 0)
        return unexpected(h, "half-open handshake answered: %.60s", head);
    return true;
}

static bool k_garbage_http(hostile *h)
{
    int fd = raw_connect(h);
    if (fd < 0)
        return false;
    unsigned char junk[2048];
    size_t n = 1 + rnd(h, sizeof(junk) - 4);
    for (size_t i = 0; i < n; i++)
        junk[i] = (unsigned char)rnd(h, 256);
    /* Half the time it ends like a request would, so it is parsed whole. */
    if (rnd(h, 2)) {
        memcpy(junk + n, "\r\n\r\n", 4);
        n += 4;
    }
    raw_send(h, fd, junk, n);
    char head[128];
    long got = raw_until_eof(fd, head, sizeof(head));
    close(fd);
    /* An HTTP error or nothing, and the connection ends. */
    if (got < 0)
        return unexpected(h, "garbage instead of HTTP: still open after %d ms",
                          g.wait_ms);
    if (got > 0 && !(strncmp(head, "HTTP/1.", 7) == 0 && head[9] == '4'))
        return unexpected(h, "garbage instead of HTTP answered: %.60s", head);
    return true;
}

static bool k_wrong_version(hostile *h)
{
    static const char *const versions[] = {"8", "12", "14", "99", "abc", ""};
    const char *v = versions[rnd(h, COUNT(versions))];
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket"
                     "\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                     "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: %s"
                     "\r\n\r\n",
                     v);
    ws_http_response r;
    memset(&r, 0, sizeof(r));
    h->bytes += (size_t)n;
    int rc = ws_http_raw("127.0.0.1", srv.port, req, (size_t)n, g.wait_ms, &r);
    int status = r.status;
    ws_http_response_free(&r);
    /* RFC 6455 4.4: abort the handshake with an HTTP error such as 426.
     * lws 4.1.6 upgrades whatever the version says. */
    if (rc == 0 && status == 101)
        return known_gap(h, "Sec-WebSocket-Version '%s' is upgraded (101)", v);
    if (rc < 0 || status < 400 || status > 499)
        return unexpected(h, "Sec-WebSocket-Version %s: HTTP %d (%s)", v,
                          status, rc < 0 ? ws_last_error() : "");
    return true;
}

static bool k_huge_http_headers(hostile *h)
{
    int fd = raw_connect(h);
    if (fd < 0)
        return false;
    size_t n = 8192 + rnd(h, 64 * 1024);
    char *req = malloc(n + 256);
    ck_assert_ptr_nonnull(req);
    int o = sprintf(req, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ");
    memset(req + o, 'f', n);
    strcpy(req + (size_t)o + n,
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n");
    raw_send(h, fd, req, strlen(req));
    free(req);
    char head[128];
    long got = raw_until_eof(fd, head, sizeof(head));
    close(fd);
    if (got < 0)
        return unexpected(h, "%zu-byte header: still open after %d ms", n,
                          g.wait_ms);
    if (strncmp(head, "HTTP/1.1 101", 12) == 0)
        return unexpected(h, "%zu-byte header: upgraded", n);
    return true;
}

static bool k_dropped_mid_frame(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    /* A frame of up to 200 KB, cut anywhere after its first byte. */
    size_t len = 1 + rnd(h, 200 * 1024), flen;
    static const unsigned char mask[4] = {1, 2, 3, 4};
    unsigned char *f =
        ws_encode_frame(WS_OP_TEXT, 1, 0, mask, frag_piece,
                        len < frag_piece_len ? len : frag_piece_len, &flen);
    ck_assert_ptr_nonnull(f);
    size_t cut = 1 + rnd(h, (unsigned)flen - 1);
    h->bytes += cut;
    ws_send_raw_bytes(c, f, cut);
    free(f);
    if (rnd(h, 2)) {
        /* A reset instead of a FIN. */
        struct linger lg = {1, 0};
        setsockopt(ws_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    ws_close(c);
    /* Nothing to see here; the server must just carry on. */
    return true;
}

static bool k_slow_reader(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    /* A bounded receive buffer (autotuning may grow one to 32 MB): what
     * the server writes stays on its side. Much smaller, and reading it all
     * back afterwards crawls. */
    int small = 64 * 1024;
    setsockopt(ws_fd(c), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    ws_set_timeout(c, 2000);
    int sent = 0;
    /* 150 requests for 100 KB replies (15 MB) and no reading: once the
     * server stops reading us (it closed us), sends time out. */
    for (; sent < 150; sent++) {
        if (ws_send_text(c, slow_request, slow_request_len) < 0)
            break;
        h->bytes += slow_request_len;
    }
    /* Closed with 1008 (or 1001 by the keepalive); or, when the client
     * took longer to read its way to the close frame than the close may
     * wait for an answer (the server's shutdown_timeout + 1 s, under
     * valgrind), just dropped. */
    int code = 0;
    char reason[128];
    bool ok = true;
    /* The server reaches this client's unread requests only as fast as
     * 200 others let it: on a loaded machine that takes a while. */
    if (ws_expect_close(c, 3 * g.wait_ms, &code, reason, sizeof(reason)) < 0) {
#ifdef SB_TEST_SANITIZE
        /* Under ASan the server reads so slowly that this client's sends
         * time out after a few dozen requests, and the kernel's buffers
         * then hold every reply: the server keeps nothing for it and has
         * nothing to close it for (keepalive drops it later). */
        ok = known_gap(h, "slow reader left open: the kernel holds its "
                          "replies (ASan build)");
#else
        /* Or it was never over max_send_queue: the kernel's buffers took
         * the replies made before the server stopped reading it, and once
         * it reads (waiting for the close reads what comes first) it is a
         * slow reader that reads, which is kept (issue 18.5). */
        ok = true;
#endif
    } else if (code == 1001 && strcmp(reason, "Keepalive timeout") == 0) {
        /* It read nothing for longer than the keepalive allows (a ping
         * and an interval with no pong and no byte acknowledged): the
         * server may close it for that before its queue is over the
         * limit, as it does under valgrind. */
        ok = true;
    } else if (code != WS_CLOSE_POLICY && code != -1)
        ok = unexpected(h,
                        "slow reader (%d requests sent): closed with %d "
                        "(%s), not 1008",
                        sent, code, reason);
    ws_close(c);
    return ok;
}

static bool k_connect_cycles(hostile *h)
{
    for (unsigned i = 0, n = 5 + rnd(h, 16); i < n; i++) {
        ws_client *c = h_connect(h);
        if (!c)
            return false;
        unsigned how = rnd(h, 3);
        bool ok = true;
        if (how == 1) {
            /* A clean close: the server echoes the code. */
            ws_send_close(c, WS_CLOSE_NORMAL, "bye");
            ok = expect_close(h, c, WS_CLOSE_NORMAL);
        } else if (how == 2) {
            /* A request, and gone before the reply. */
            h_send(h, c, "{\"event\":\"echo\",\"data\":1,\"id\":1}");
        }
        ws_close(c);
        if (!ok)
            return false;
    }
    return true;
}

static bool k_bad_ids(hostile *h)
{
    static const char *const t[] = {
        "{\"event\":\"echo\",\"id\":[1]}",
        "{\"event\":\"echo\",\"id\":{}}",
        "{\"event\":\"echo\",\"data\":1,\"id\":true}",
        "{\"event\":\"echo\",\"id\":null}",
        "{\"id\":{\"a\":[1]},\"event\":\"echo\"}",
        "{\"event\":\"echo\",\"id\":false,\"data\":\"x\"}"};
    return exceptions_for(h, t, COUNT(t),
                          "\\\"id\\\" must be a number or a string");
}

static bool k_binary_garbage(hostile *h)
{
    ws_client *c = h_connect(h);
    if (!c)
        return false;
    bool ok = true;
    for (unsigned i = 0, count = 1 + rnd(h, 4); ok && i < count; i++) {
        unsigned char junk[1024];
        size_t n = 1 + rnd(h, sizeof(junk));
        for (size_t k = 0; k < n; k++)
            junk[k] = (unsigned char)rnd(h, 256);
        junk[0] = 0x01; /* never the start of a JSON text */
        h->bytes += n;
        ok = ws_send_binary(c, junk, n) == 0
                 ? expect_exception(h, c, "binary garbage", NULL)
                 : unexpected(h, "send: %s", ws_error(c));
    }
    ok = ok && expect_alive(h, c, NULL);
    ws_close(c);
    return ok;
}

static bool k_unknown_event(hostile *h)
{
    static const char *const t[] = {"{\"event\":\"nope\",\"data\":1,\"id\":1}",
                                    "{\"event\":\"ECHO\"}",
                                    "{\"event\":\"echo \"}",
                                    "{\"event\":\"\\u00e9cho\",\"data\":[1,2]}",
                                    "{\"event\":\"identity\\u0000\"}",
                                    "{\"event\":\"\"}"};
    /* No handler, an empty name or a NUL in it: an exception each. */
    return exceptions_for(h, t, COUNT(t), NULL);
}

static bool k_wrong_path(hostile *h)
{
    /* Paths that are not "/" once lws has decoded and normalised them
     * ("/a/.." is "/" and is upgraded, rightly). */
    static const char *const paths[] = {"/nope", "/nope/", "/%41",
                                        "/index.html", "/../etc/passwd"};
    const char *p = paths[rnd(h, COUNT(paths))];
    int status = ws_connect_status("127.0.0.1", srv.port, p, NULL, g.wait_ms);
    if (status != 404)
        return unexpected(h, "upgrade to %s: HTTP %d", p, status);
    return true;
}

typedef struct kind {
    const char *name;
    bool (*run)(hostile *h);
} kind;

static const kind KINDS[] = {
    {"malformed JSON", k_malformed_json},
    {"not an object", k_not_object},
    {"no event", k_missing_event},
    {"event not a string", k_event_not_string},
    {"huge event name", k_huge_event_name},
    {"10^5 nesting", k_deep_nesting},
    {"oversize message", k_oversize},
    {"oversize in fragments", k_oversize_fragments},
    {"invalid UTF-8", k_invalid_utf8},
    {"unmasked frame", k_unmasked},
    {"reserved opcode", k_reserved_opcode},
    {"RSV bits", k_rsv_bits},
    {"bare continuation", k_bare_continuation},
    {"control frame > 125", k_big_control_frame},
    {"bad close frame", k_bad_close_frame},
    {"ping flood", k_ping_flood},
    {"message flood", k_message_flood},
    {"half-open handshake", k_half_open_handshake},
    {"garbage for HTTP", k_garbage_http},
    {"wrong WS version", k_wrong_version},
    {"huge HTTP header", k_huge_http_headers},
    {"wrong path", k_wrong_path},
    {"dropped mid-frame", k_dropped_mid_frame},
    {"slow reader", k_slow_reader},
    {"connect cycles", k_connect_cycles},
    {"bad ids", k_bad_ids},
    {"binary garbage", k_binary_garbage},
    {"unknown events", k_unknown_event},
};
#define NKINDS COUNT(KINDS)
_Static_assert(sizeof(KINDS) / sizeof(KINDS[0]) >= 20,
               "issue 5 asks for at least 20 kinds of bad input");

typedef struct kind_stats {
    atomic_int runs, bad, gaps;
    char why[200]; /* the first unexpected outcome, under why_lock */
    char gap[200]; /* the first known gap met, likewise */
} kind_stats;

static kind_stats kstats[NKINDS];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong hostile_bytes;

static void run_kind(hostile *h, unsigned k)
{
    h->why[0] = 0;
    h->gap = false;
    bool ok = KINDS[k].run(h);
    atomic_fetch_add(&kstats[k].runs, 1);
    if (ok && !h->gap)
        return;
    atomic_fetch_add(ok ? &kstats[k].gaps : &kstats[k].bad, 1);
    char *first = ok ? kstats[k].gap : kstats[k].why;
    pthread_mutex_lock(&why_lock);
    if (!first[0])
        snprintf(first, sizeof(kstats[k].why), "%s", h->why);
    pthread_mutex_unlock(&why_lock);
}

static int64_t hostile_deadline;

static void *hostile_main(void *arg)
{
    hostile *h = arg;
    unsigned k = (unsigned)h->index % NKINDS;
    do {
        run_kind(h, k);
        k = rnd(h, NKINDS);
    } while (now_ms() < hostile_deadline);
    atomic_fetch_add(&hostile_bytes, h->bytes);
    return NULL;
}

/* count hostile clients at once, each running kinds until ms have passed
 * (one run at least). With count = NKINDS and ms = 0 that is one run of
 * every kind, the warm-up. */
static void hostile_phase(int count, int ms)
{
    hostile_deadline = now_ms() + ms;
    hostile *hs = calloc((size_t)count, sizeof(*hs));
    pthread_t *th = calloc((size_t)count, sizeof(*th));
    ck_assert(hs && th);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < count; i++) {
        hs[i].index = i;
        hs[i].seed = 0x5eed0000u + (unsigned)i; /* repeatable choices */
        ck_assert_int_eq(pthread_create(&th[i], &attr, hostile_main, &hs[i]),
                         0);
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < count; i++)
        pthread_join(th[i], NULL);
    free(hs);
    free(th);
}

/* ---- well-behaved clients ----------------------------------------------- */

#define GOOD_WINDOW  8 /* requests in flight, well under rate_burst */
#define GOOD_MAX_IDS (1 << 16)

typedef struct good {
    int index;
    ws_client *c;
    pthread_t thread;
    int sent, answered;
    unsigned char *seen; /* per id: answered already */
    char why[256];       /* the first thing that went wrong, "" if none */
} good;

static atomic_int good_stop;

static int good_request(const good *gc, int id, char *buf, size_t len)
{
    return snprintf(buf, len, "{\"event\":\"echo\",\"data\":%d,\"id\":%d}",
                    gc->index * 1000000 + id, id);
}

/* Checks one reply: an echo of a request of ours not answered before. */
static bool good_reply(good *gc, const ws_frame *f)
{
    int data = 0, id = -1, end = 0;
    char want[96];
    if (f->opcode != WS_OP_TEXT ||
        sscanf((const char *)f->data,
               "{\"event\":\"echo\",\"data\":%d,\"id\":%d}%n", &data, &id,
               &end) != 2 ||
        (size_t)end != f->len || id < 0 || id >= gc->sent) {
        snprintf(gc->why, sizeof(gc->why),
                 "unexpected frame (opcode %d): %.150s", f->opcode,
                 (const char *)f->data);
        return false;
    }
    good_request(gc, id, want, sizeof(want));
    if (strcmp(want, (const char *)f->data) != 0) {
        snprintf(gc->why, sizeof(gc->why), "reply %.100s to %s",
                 (const char *)f->data, want);
        return false;
    }
    if (gc->seen[id]) {
        snprintf(gc->why, sizeof(gc->why), "id %d answered twice", id);
        return false;
    }
    gc->seen[id] = 1;
    gc->answered++;
    return true;
}

/* Sends a paced stream of requests, at most GOOD_WINDOW in flight, until
 * told to stop; then reads the answers still due. */
static void *good_main(void *arg)
{
    good *gc = arg;
    int64_t next = now_ms(), progress = now_ms();
    for (;;) {
        int inflight = gc->sent - gc->answered;
        bool stopping = atomic_load(&good_stop);
        if (stopping && inflight == 0)
            break;
        int64_t t = now_ms();
        if (!stopping && inflight < GOOD_WINDOW && t >= next &&
            gc->sent < GOOD_MAX_IDS) {
            char req[96];
            int n = good_request(gc, gc->sent, req, sizeof(req));
            if (ws_send_text(gc->c, req, (size_t)n) < 0) {
                snprintf(gc->why, sizeof(gc->why), "send: %s", ws_error(gc->c));
                break;
            }
            if (inflight == 0)
                progress = t;
            gc->sent++;
            /* Paced from the schedule, not from now: a stall is not
             * made up for with a burst beyond the window. */
            next = next + g.good_period_ms > t ? next + g.good_period_ms
                                               : t + g.good_period_ms;
            continue;
        }
        int wait = (int)(next - t);
        if (stopping || inflight >= GOOD_WINDOW || wait > 50 || wait < 0)
            wait = 50;
        ws_frame f;
        int rc = ws_recv_message(gc->c, wait, &f);
        if (rc < 0) {
            snprintf(gc->why, sizeof(gc->why), "disconnected: %s",
                     ws_error(gc->c));
            break;
        }
        if (rc == 0) {
            if (inflight && now_ms() - progress > g.wait_ms) {
                snprintf(gc->why, sizeof(gc->why),
                         "%d request(s) unanswered for %d ms", inflight,
                         g.wait_ms);
                break;
            }
            continue;
        }
        bool ok = true;
        if (f.opcode == WS_OP_PING)
            ws_send_pong(gc->c, f.data, f.len);
        else if (f.opcode != WS_OP_PONG)
            ok = good_reply(gc, &f);
        ws_frame_free(&f);
        if (!ok)
            break;
        progress = now_ms();
    }
    return NULL;
}

/* ---- the test ------------------------------------------------------------ */

START_TEST(test_hostile_traffic)
{
    const char *wrap = getenv("SB_TEST_WRAPPER");
    bool wrapped = wrap && *wrap;
    g = wrapped ? WRAPPED : NATIVE;
    /* VmRSS means something only with glibc's malloc: not valgrind's, nor
     * ASan's, which keeps freed memory in quarantine. */
#ifdef SB_TEST_SANITIZE
    const char *rss_skip = " (ASan's quarantine: not checked)";
#else
    const char *rss_skip = wrapped ? " (valgrind's: not checked)" : NULL;
#endif
    payloads_make();
    srv_start_default(&srv, LIMITS);

    good *goods = calloc((size_t)g.good, sizeof(*goods));
    ck_assert_ptr_nonnull(goods);
    for (int i = 0; i < g.good; i++) {
        goods[i].index = i;
        goods[i].c = cli_connect(&srv);
        goods[i].seen = calloc(GOOD_MAX_IDS, 1);
        ck_assert_ptr_nonnull(goods[i].seen);
    }
    /* With only the good clients connected: what "all hostile connections
     * are gone" looks like. */
    sleep_ms(200);
    int fds_quiet = fd_count(srv.pid);
    for (int i = 0; i < g.good; i++)
        ck_assert_int_eq(
            pthread_create(&goods[i].thread, NULL, good_main, &goods[i]), 0);

    /* Warm-up: every kind once, at once, beside the good traffic, so that
     * the baseline includes what the server keeps after first use
     * (allocator arenas, lazily made tables). */
    hostile_phase((int)NKINDS, 0);
    ck_assert_msg(wait_fds_at_most(srv.pid, fds_quiet, g.wait_ms),
                  "after warm-up the server still has %d fds (%d before)",
                  fd_count(srv.pid), fds_quiet);
    sleep_ms(500);
    long rss_before = rss_kib(srv.pid);
    memset(kstats, 0, sizeof(kstats));
    atomic_store(&hostile_bytes, 0);

    int64_t t0 = now_ms();
    hostile_phase(g.hostile, g.hostile_ms);
    int64_t hostile_ms = now_ms() - t0;

    /* The hostile clients closed their ends; the server must have let go
     * of every one of them. */
    bool drained = wait_fds_at_most(srv.pid, fds_quiet, 3 * g.wait_ms);
    int fds_after = fd_count(srv.pid);
    /* Memory may go back to the system a little after the last close (a
     * server may give it back from a timer): a few seconds to get there. */
    long rss_bound = rss_before + rss_before / 10, rss_after;
    for (int64_t end = now_ms() + 5000;; sleep_ms(100)) {
        rss_after = rss_kib(srv.pid);
        if (rss_skip || rss_after <= rss_bound || now_ms() > end)
            break;
    }

    /* The server serves a newcomer... */
    ws_client *late = cli_connect(&srv);
    cli_send(late, "{\"event\":\"echo\",\"data\":\"late\",\"id\":\"x\"}");
    cli_expect(late, "{\"event\":\"echo\",\"data\":\"late\",\"id\":\"x\"}");
    ws_close(late);

    atomic_store(&good_stop, 1);
    long sent = 0, answered = 0;
    for (int i = 0; i < g.good; i++) {
        pthread_join(goods[i].thread, NULL);
        sent += goods[i].sent;
        answered += goods[i].answered;
    }

    printf("hostile: %d clients for %lld ms, %zu kinds, %llu KiB sent\n",
           g.hostile, (long long)hostile_ms, (size_t)NKINDS,
           (unsigned long long)(atomic_load(&hostile_bytes) / 1024));
    int runs = 0;
    for (unsigned k = 0; k < NKINDS; k++) {
        int r = atomic_load(&kstats[k].runs), b = atomic_load(&kstats[k].bad);
        int gp = atomic_load(&kstats[k].gaps);
        runs += r;
        printf("  %-22s %5d runs %4d unexpected%s%s\n", KINDS[k].name, r, b,
               b ? ": " : "", b ? kstats[k].why : "");
        if (gp)
            printf("  %-22s %5d known gap: %s\n", "", gp, kstats[k].gap);
    }
    printf("hostile: %d runs; good: %d clients, %ld sent, %ld answered\n", runs,
           g.good, sent, answered);
    printf("server: VmRSS %ld KiB after warm-up, %ld KiB after (%+.1f %%)%s; "
           "fds %d, %d after\n",
           rss_before, rss_after,
           100.0 * (double)(rss_after - rss_before) / (double)rss_before,
           rss_skip ? rss_skip : "", fds_quiet, fds_after);
    fflush(stdout);

    for (int i = 0; i < g.good; i++) {
        ck_assert_msg(!goods[i].why[0], "good client %d: %s\n%s", i,
                      goods[i].why, srv_logtail(&srv));
        ck_assert_int_eq(goods[i].answered, goods[i].sent);
        ws_close(goods[i].c);
        free(goods[i].seen);
    }
    free(goods);
    for (unsigned k = 0; k < NKINDS; k++) {
        ck_assert_msg(kstats[k].runs > 0, "kind '%s' never ran", KINDS[k].name);
        ck_assert_msg(kstats[k].bad == 0, "%s: %d of %d runs unexpected: %s",
                      KINDS[k].name, (int)kstats[k].bad, (int)kstats[k].runs,
                      kstats[k].why);
    }
    ck_assert_msg(drained, "%d hostile connection(s) still open on the server",
                  fds_after - fds_quiet);
    /* Growth here is either a leak or freed heap that malloc keeps (the
     * hostile peak is some 10 MB of buffers): malloc_trim(0) in the server
     * tells them apart. */
    if (!rss_skip)
        ck_assert_msg(rss_after <= rss_bound,
                      "VmRSS grew from %ld to %ld KiB after the hostile "
                      "clients left",
                      rss_before, rss_after);
    payloads_free();
    srv_stop(&srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    /* Native runs take about 20 s; under valgrind a few minutes. */
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_hostile_traffic);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

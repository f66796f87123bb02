/*
 * wsio — see wsio.h.
 *
 * A connection taken over is one uv_poll_t on a descriptor of its own (a
 * duplicate of lws' made just before lws let go of it), a frame parser's
 * state, and the client record the server already had. Reading goes into
 * one buffer for the whole loop: a frame that ends in the read is handed to
 * the server in place, unmasked; only a control frame split between reads
 * is gathered (at most 125 bytes, for as long as it takes). A data frame
 * split between reads goes up piece by piece, as lws handed it over, and
 * the server reassembles it as before.
 *
 * Writing is the server's send queue as before, written with send(); what
 * the kernel does not take stays at the head of the queue and waits for the
 * socket to become writable.
 *
 * Batching: with io_uring (liburing, `io_uring = true`, a kernel that allows
 * it), a socket found readable in the poll phase is not read there but
 * listed; at the end of the phase the listed sockets are read with one
 * submission, each into its own slice of the loop's read area, and handled
 * in turn; the replies they queue, like every queue the turn filled, are
 * written with one submission too. Every operation carries MSG_DONTWAIT, so
 * the kernel completes each within the submission, exactly as recv() and
 * send() would (a short write, EAGAIN), and nothing is ever in flight
 * between two loop turns. The syscalls a message costs, two of about
 * 0.6 us each on a machine with today's speculation mitigations, become two
 * per loop turn. Without io_uring every socket is read when it is found
 * readable and written at the end of the phase, one syscall each.
 *
 * Closing: a close frame from the client is answered (or, when it answers
 * ours, completes the handshake), a protocol error is answered with our
 * close; either way the TCP connection closes once our close frame is
 * written. It closes with shutdown() first and then waits, reading and
 * dropping, for the client's FIN (at most SB_WSIO_LINGER_MS): a close() with
 * unread bytes resets the connection, and a reset can destroy our close
 * frame before the client has read it. The client record is gone by then.
 */
#include "wsio.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h> /* LWS_PRE: the send queue's headroom */
#ifdef SB_HAVE_LIBURING
#include <liburing.h>
#endif

#include "client.h"
#include "envelope.h"
#include "frame.h"
#include "log.h"

/* How long a closed connection waits for the client's FIN. */
#define SB_WSIO_LINGER_MS 2000

/* Batching: the sockets one submission reads or writes at most, and the
 * read area they share (a slice each: the area over how many are read,
 * between 16 KiB and 256 KiB). Only the pages reads reach are resident. */
#define SB_WSIO_BATCH     64
#define SB_WSIO_AREA      (1024 * 1024)
#define SB_WSIO_SLICE_MAX (256 * 1024)
#define SB_NOT_DONE       INT_MIN

typedef struct sb_wsio {
    uv_poll_t poll; /* data: this */
    sb_client *c;   /* NULL once the client is gone (lingering) */
    sb_server *s;   /* for a lingering one */
    sb_ws_parser parser;
    unsigned char *ctl; /* a control frame split between reads */
    uint64_t linger_until;
    struct sb_wsio *next, *prev; /* in the reap or linger list */
    int fd;
    int events; /* what the poll handle waits for */
    uint8_t ctl_len;
    bool want_write; /* waiting for the socket to take the rest */
    bool finish;     /* close TCP once the queue is written */
    bool failed;     /* drop what the client sends from now on */
    bool reaping;    /* on the reap list */
    bool clean;      /* ...to close with shutdown() and a linger */
    bool to_read;    /* on the list of sockets to read (batching) */
    bool to_write;   /* on the list of queues to write (batching) */
} sb_wsio;

typedef struct sb_wsio_shared {
    unsigned char *buf; /* SB_WSIO_READ_SIZE, or the area (batching) */
    bool area;          /* buf is the mapped SB_WSIO_AREA */
    const sb_wsio_ops *ops;
#ifdef SB_HAVE_LIBURING
    struct io_uring ring;
#endif
    bool batching;        /* the ring is there */
    sb_wsio **to_read;    /* readable sockets of this poll phase */
    sb_wsio **to_write;   /* queues to write at the end of the flush */
    size_t nread, nwrite; /* each list has room for `room` */
    size_t room;
    struct sb_wsio *reap;   /* to close at the end of the turn */
    struct sb_wsio *linger; /* closed, waiting for the client's FIN */
    uv_timer_t linger_timer;
    size_t count; /* poll handles open */
} sb_wsio_shared;

static void on_poll(uv_poll_t *h, int status, int events);

static void set_events(sb_wsio *io, int events)
{
    if (io->events == events)
        return;
    io->events = events;
    if (events)
        uv_poll_start(&io->poll, events, on_poll);
    else
        uv_poll_stop(&io->poll);
}

/* ---- the batching lists -------------------------------------------- */

/* Lists io on `list` (to_read or to_write); false when there is no room and
 * none can be made (the caller then does at once what the list defers). */
static bool list_add(sb_wsio_shared *w, sb_wsio ***list, size_t *n, sb_wsio *io)
{
    if (*n == w->room) {
        size_t room = w->room ? w->room * 2 : 256;
        sb_wsio **r = realloc(w->to_read, room * sizeof(*r));
        if (!r)
            return false;
        w->to_read = r;
        sb_wsio **t = realloc(w->to_write, room * sizeof(*t));
        if (!t)
            return false;
        w->to_write = t;
        w->room = room;
    }
    (*list)[(*n)++] = io;
    return true;
}

/* A socket closed while listed is taken off (its entry emptied). */
static void list_forget(sb_wsio_shared *w, sb_wsio *io)
{
    for (size_t i = 0; io->to_read && i < w->nread; i++)
        if (w->to_read[i] == io)
            w->to_read[i] = NULL;
    for (size_t i = 0; io->to_write && i < w->nwrite; i++)
        if (w->to_write[i] == io)
            w->to_write[i] = NULL;
    io->to_read = io->to_write = false;
}

#ifdef SB_HAVE_LIBURING
/* Submits the `k` operations prepared on the ring and collects their
 * results into res[n] (by the index each carries), filled with
 * SB_NOT_DONE. Each carries MSG_DONTWAIT: the kernel completes
 * it within the submission. When the ring fails, it is given up for good
 * (logged) and what it did not do is left for the caller to do with a
 * plain syscall. */
static void ring_run(sb_wsio_shared *w, unsigned k, size_t n, ssize_t *res)
{
    int sub = io_uring_submit(&w->ring);
    unsigned want = sub > 0 ? (unsigned)sub : 0, got = 0;
    while (got < want) {
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe(&w->ring, &cqe);
        if (r == -EINTR)
            continue;
        if (r < 0)
            break;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            if (cqe->user_data < n)
                res[cqe->user_data] = cqe->res;
            seen++;
        }
        io_uring_cq_advance(&w->ring, seen);
        got += seen;
    }
    if (sub == (int)k && got >= want)
        return;
    sb_log_warn("server",
                "io_uring failed (%s): the own data path reads and writes "
                "with recv() and send() from now on",
                strerror(sub < 0 ? -sub : EIO));
    io_uring_queue_exit(&w->ring);
    w->batching = false;
}
#endif

/* One read or write of a batch; len 0: none. */
typedef struct sb_io_op {
    int fd;
    unsigned char *buf;
    size_t len;
} sb_io_op;

/* Does the n reads (or writes) of a batch: with one ring submission when
 * there are two or more and the ring is there (one costs the same syscall
 * either way, and less work with recv()/send()), else one syscall each,
 * and for what a failing ring left undone. res[i]: bytes, or -errno;
 * SB_NOT_DONE where len is 0. */
static void run_ops(sb_wsio_shared *w, bool writing, const sb_io_op *op,
                    size_t n, ssize_t *res)
{
    for (size_t i = 0; i < n; i++)
        res[i] = SB_NOT_DONE;
#ifdef SB_HAVE_LIBURING
    size_t todo = 0;
    for (size_t i = 0; i < n; i++)
        todo += op[i].len > 0;
    unsigned k = 0;
    for (size_t i = 0; w->batching && todo > 1 && i < n; i++) {
        if (!op[i].len)
            continue;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        if (!sqe)
            break;
        if (writing)
            io_uring_prep_send(sqe, op[i].fd, op[i].buf, op[i].len,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            io_uring_prep_recv(sqe, op[i].fd, op[i].buf, op[i].len,
                               MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, i);
        k++;
    }
    if (k)
        ring_run(w, k, n, res);
#else
    (void)w; /* no ring in a build without liburing */
#endif
    for (size_t i = 0; i < n; i++) {
        if (!op[i].len || res[i] != SB_NOT_DONE)
            continue;
        ssize_t r = writing
                        ? send(op[i].fd, op[i].buf, op[i].len,
                               MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(op[i].fd, op[i].buf, op[i].len, MSG_DONTWAIT);
        res[i] = r < 0 ? -errno : r;
    }
}

static void on_io_closed(uv_handle_t *h)
{
    sb_wsio *io = h->data;
    sb_server *s = io->s;
    close(io->fd);
    s->wsio->count--;
    free(io->ctl);
    free(io);
    s->wsio->ops->freed(s);
}

static void close_io(sb_wsio *io)
{
    uv_close((uv_handle_t *)&io->poll, on_io_closed);
}

/* ---- lingering ---------------------------------------------------------- */

static void linger_unlink(sb_wsio_shared *w, sb_wsio *io)
{
    if (io->prev)
        io->prev->next = io->next;
    else
        w->linger = io->next;
    if (io->next)
        io->next->prev = io->prev;
    io->next = io->prev = NULL;
}

static void on_linger_timer(uv_timer_t *t)
{
    sb_server *s = t->data;
    sb_wsio_shared *w = s->wsio;
    uint64_t now = uv_now(s->loop);
    for (sb_wsio *io = w->linger, *next; io; io = next) {
        next = io->next;
        if (now >= io->linger_until) {
            linger_unlink(w, io);
            close_io(io);
        }
    }
    if (!w->linger)
        uv_timer_stop(t);
}

/* A closed connection's socket is readable: drop what came, and close it
 * at the client's FIN (or an error). */
static void linger_read(sb_wsio *io)
{
    sb_wsio_shared *w = io->s->wsio;
    ssize_t n = recv(io->fd, w->buf, SB_WSIO_READ_SIZE, 0);
    if (n > 0 ||
        (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return;
    linger_unlink(w, io);
    close_io(io);
}

/* ---- closing ------------------------------------------------------------ */

static void reap_later(sb_wsio *io, bool clean)
{
    if (io->reaping)
        return;
    sb_wsio_shared *w = io->s->wsio;
    io->reaping = true;
    io->clean = clean;
    io->next = w->reap;
    w->reap = io;
}

void sb_wsio_drop(sb_client *c)
{
    reap_later(c->io, false);
}

/* The socket failed or the client went away without a close handshake:
 * the hooks see our code, the client's, or 1006. */
static void lost(sb_client *c)
{
    c->closing = true;
    c->killed = true;
    sb_client_undirty(c);
    sb_wsio_drop(c);
}

void sb_wsio_reap(sb_server *s)
{
    sb_wsio_shared *w = s->wsio;
    if (!w)
        return;
    while (w->reap) {
        sb_wsio *io = w->reap;
        w->reap = io->next;
        io->next = NULL;
        sb_client *c = io->c;
        io->c = NULL;
        list_forget(w, io);
        free(io->ctl);
        io->ctl = NULL;
        w->ops->closed(c);
        c->io = NULL;
        free(c);
        if (io->clean && !s->destroyed && shutdown(io->fd, SHUT_WR) == 0) {
            io->linger_until = uv_now(s->loop) + SB_WSIO_LINGER_MS;
            io->prev = NULL;
            io->next = w->linger;
            if (w->linger)
                w->linger->prev = io;
            w->linger = io;
            set_events(io, UV_READABLE);
            if (!uv_is_active((uv_handle_t *)&w->linger_timer))
                uv_timer_start(&w->linger_timer, on_linger_timer, 250, 250);
        } else {
            close_io(io);
        }
    }
}

void sb_wsio_fail(sb_client *c, int code, const char *reason)
{
    sb_wsio *io = c->io;
    if (!c->closing)
        sb_client_close(c, code, reason);
    io->failed = true;
    io->finish = true;
    if (!c->killed)
        sb_client_mark_dirty(c); /* the flush closes it once written */
}

/* ---- writing ------------------------------------------------------------ */

static size_t queue_len(const sb_client *c)
{
    return c->tx.len > LWS_PRE ? c->tx.len - LWS_PRE : 0;
}

/* After a write of c's `n` queued bytes returned `w` (bytes, or -errno;
 * n = 0: nothing was written): drops what went, waits for the socket to
 * take the rest. -1 when the connection is broken. */
static int wrote(sb_client *c, size_t n, ssize_t w)
{
    sb_wsio *io = c->io;
    if (n) {
        if (w < 0) {
            if (w != -EAGAIN && w != -EWOULDBLOCK && w != -EINTR)
                return -1;
            w = 0;
        }
        if ((size_t)w == n) {
            c->tx.len = 0;
            if (c->tx.cap > SB_KEEP_BUFFER_MAX)
                sb_buf_free(&c->tx);
            n = 0;
        } else {
            memmove(c->tx.data + LWS_PRE, c->tx.data + LWS_PRE + w,
                    n - (size_t)w);
            c->tx.len -= (size_t)w;
            n -= (size_t)w;
            io->want_write = true;
        }
    } else {
        n = queue_len(c);
    }
    /* As with lws' leftovers: a client whose socket takes none of our
     * bytes meets the stall rule (server.c) even below max_send_queue. */
    c->tx_blocked = n > 0;
    if (!n)
        c->stalled_since_ms = 0;
    else if (!c->stalled_since_ms)
        c->stalled_since_ms = uv_now(c->server->loop);
    set_events(io, UV_READABLE | (io->want_write ? UV_WRITABLE : 0));
    sb_client_flushed(c);
    if (!n && io->finish && !c->killed)
        reap_later(io, true);
    return 0;
}

int sb_wsio_flush(sb_client *c)
{
    sb_wsio *io = c->io;
    if (io->reaping || io->to_write)
        return 0;
    size_t n = queue_len(c);
    if (!n || io->want_write)
        return wrote(c, 0, 0);
    sb_wsio_shared *w = c->server->wsio;
    if (w->batching && list_add(w, &w->to_write, &w->nwrite, io)) {
        io->to_write = true; /* sb_wsio_write_listed() */
        return 0;
    }
    ssize_t r = send(io->fd, c->tx.data + LWS_PRE, n, MSG_NOSIGNAL);
    return wrote(c, n, r < 0 ? -errno : r);
}

bool sb_wsio_write_listed(sb_server *s)
{
    sb_wsio_shared *w = s->wsio;
    if (!w || !w->nwrite)
        return false;
    /* The sends are prepared here, from the queues as they are now, and
     * submitted at once: nothing can change a queue in between. */
    for (size_t at = 0; at < w->nwrite;) {
        size_t n =
            w->nwrite - at < SB_WSIO_BATCH ? w->nwrite - at : SB_WSIO_BATCH;
        sb_io_op op[SB_WSIO_BATCH];
        ssize_t res[SB_WSIO_BATCH];
        for (size_t i = 0; i < n; i++) {
            sb_wsio *io = w->to_write[at + i];
            op[i].len = 0;
            if (io) {
                io->to_write = false;
                if (io->reaping) {
                    w->to_write[at + i] = NULL;
                } else if (!io->want_write) {
                    op[i].fd = io->fd;
                    op[i].buf = (unsigned char *)io->c->tx.data + LWS_PRE;
                    op[i].len = queue_len(io->c);
                }
            }
        }
        run_ops(w, true, op, n, res);
        for (size_t i = 0; i < n; i++) {
            sb_wsio *io = w->to_write[at + i];
            if (io && wrote(io->c, op[i].len, res[i]) < 0)
                lost(io->c);
        }
        at += n;
    }
    w->nwrite = 0;
    return true;
}

/* ---- reading ------------------------------------------------------------ */

static void pong(sb_client *c, const unsigned char *p, size_t n)
{
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return; /* closing: no answer is owed any more */
    if (sb_buf_append(&c->tx, p, n) < 0) {
        sb_client_frame_abort(c, start);
        return;
    }
    sb_client_frame_end(c, start, SB_WS_PONG);
}

/* A close from the client (RFC 6455 5.5.1, 7.4): the answer to ours
 * completes the handshake; otherwise we echo it (code and reason, as lws
 * did), or fail the
 * connection when its payload cannot be (1002; 1007 for a reason that is
 * not UTF-8). Either way TCP closes once our close frame is written. */
static void peer_close(sb_wsio *io, sb_client *c, const unsigned char *p,
                       size_t n)
{
    int code = n >= 2 ? (p[0] << 8) | p[1] : 1005;
    if (c->close_sent) {
        c->peer_close_code = code;
        io->finish = true;
        io->failed = true;
        sb_client_mark_dirty(c);
        return;
    }
    const char *bad = NULL;
    int answer = 1002;
    if (n == 1)
        bad = "Close payload of one byte";
    else if (n >= 2 && !sb_ws_close_code_valid(code))
        bad = "Invalid close code";
    else if (n > 2 && !sb_utf8_valid((const char *)p + 2, n - 2)) {
        bad = "Close reason is not UTF-8";
        answer = 1007;
    }
    if (bad) {
        sb_log_debug("server", "client %llu: %s, closing with %d",
                     (unsigned long long)c->id, bad, answer);
        sb_wsio_fail(c, answer, bad);
        return;
    }
    c->peer_close_code = code;
    long start = sb_client_frame_begin(c);
    if (start >= 0) {
        if (sb_buf_append(&c->tx, p, n) < 0)
            sb_client_frame_abort(c, start);
        else
            sb_client_frame_end(c, start, SB_WS_CLOSE);
    }
    c->closing = true;
    c->close_sent = true;
    /* A client that does not take our answer is dropped like one that
     * does not answer our close (server.c's sweep). */
    c->path.close_by_ms =
        uv_now(c->server->loop) +
        (c->server->config->server.shutdown_timeout + 1) * 1000ull;
    io->finish = true;
    io->failed = true;
    if (!c->killed)
        sb_client_mark_dirty(c);
}

static void control(sb_wsio *io, sb_client *c, const sb_ws_chunk *ch)
{
    const unsigned char *p = ch->data;
    size_t n = ch->len;
    if (!ch->first || ch->remaining) {
        /* Split between reads: gather it (at most 125 bytes). */
        if (ch->first) {
            free(io->ctl);
            io->ctl = malloc(125);
            io->ctl_len = 0;
        }
        if (!io->ctl) {
            lost(c);
            return;
        }
        memcpy(io->ctl + io->ctl_len, p, n);
        io->ctl_len = (uint8_t)(io->ctl_len + n);
        if (ch->remaining)
            return;
        p = io->ctl;
        n = io->ctl_len;
    }
    c->last_heard_ms = uv_now(c->server->loop);
    if (ch->opcode == SB_WS_PING)
        pong(c, p, n);
    else if (ch->opcode == SB_WS_CLOSE)
        peer_close(io, c, p, n);
    free(io->ctl);
    io->ctl = NULL;
}

/* What a read of the socket into buf returned: bytes, or -errno. */
static void got_bytes(sb_wsio *io, sb_client *c, unsigned char *buf,
                      ssize_t got)
{
    sb_wsio_shared *w = c->server->wsio;
    if (got <= 0) {
        if (got == -EAGAIN || got == -EWOULDBLOCK || got == -EINTR)
            return;
        lost(c); /* the client's FIN, or a reset */
        return;
    }
    if (io->failed)
        return; /* closing after an error or a close: dropped */
    size_t len = (size_t)got, pos = 0;
    while (pos < len) {
        sb_ws_chunk ch;
        const char *why = NULL;
        int r = sb_ws_parse(&io->parser, buf, len, &pos, &ch, &why);
        if (r == SB_WS_MORE)
            break;
        if (r == SB_WS_ERROR) {
            sb_log_debug("server",
                         "client %llu: protocol error (%s), closing with "
                         "1002",
                         (unsigned long long)c->id, why);
            sb_wsio_fail(c, 1002, why);
            return;
        }
        if (ch.opcode >= SB_WS_CLOSE)
            control(io, c, &ch);
        else if (!c->closing)
            w->ops->data(c, (const char *)ch.data, ch.len, ch.fin, ch.remaining,
                         ch.message == SB_WS_BINARY);
        if (io->failed || io->reaping || c->killed)
            return;
    }
}

static void read_some(sb_wsio *io, sb_client *c)
{
    sb_wsio_shared *w = c->server->wsio;
    ssize_t got = recv(io->fd, w->buf, SB_WSIO_READ_SIZE, 0);
    got_bytes(io, c, w->buf, got < 0 ? -errno : got);
}

void sb_wsio_read_listed(sb_server *s)
{
    sb_wsio_shared *w = s->wsio;
    if (!w)
        return;
    /* Handling a socket's messages may close any other listed one: it is
     * then marked (reaping, killed) and skipped, and freed only later. */
    for (size_t at = 0; at < w->nread;) {
        size_t n =
            w->nread - at < SB_WSIO_BATCH ? w->nread - at : SB_WSIO_BATCH;
        size_t slice = SB_WSIO_AREA / n;
        if (slice > SB_WSIO_SLICE_MAX)
            slice = SB_WSIO_SLICE_MAX;
        sb_io_op op[SB_WSIO_BATCH];
        ssize_t res[SB_WSIO_BATCH];
        for (size_t i = 0; i < n; i++) {
            sb_wsio *io = w->to_read[at + i];
            op[i].len = 0;
            if (io && !io->reaping) {
                op[i].fd = io->fd;
                op[i].buf = w->buf + i * slice;
                op[i].len = slice;
            }
        }
        run_ops(w, false, op, n, res);
        for (size_t i = 0; i < n; i++) {
            sb_wsio *io = w->to_read[at + i];
            if (!io)
                continue;
            io->to_read = false;
            if (!io->reaping)
                got_bytes(io, io->c, op[i].buf, res[i]);
        }
        at += n;
    }
    w->nread = 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sb_wsio *io = h->data;
    sb_client *c = io->c;
    if (!c) {
        linger_read(io);
        return;
    }
    if (io->reaping)
        return;
    if (status < 0) {
        lost(c);
        return;
    }
    if (events & UV_WRITABLE) {
        io->want_write = false;
        if (sb_wsio_flush(c) < 0) {
            lost(c);
            return;
        }
    }
    if (events & UV_READABLE) {
        sb_wsio_shared *w = c->server->wsio;
        if (io->to_read)
            ; /* read at the end of the phase */
        else if (w->batching && list_add(w, &w->to_read, &w->nread, io))
            io->to_read = true;
        else
            read_some(io, c);
    }
}

/* ---- setting up --------------------------------------------------------- */

int sb_wsio_adopt(sb_client *c, int fd)
{
    sb_server *s = c->server;
    sb_wsio *io = calloc(1, sizeof(*io));
    if (!io)
        return -1;
    if (uv_poll_init(s->loop, &io->poll, fd) != 0) {
        free(io);
        return -1;
    }
    io->poll.data = io;
    io->c = c;
    io->s = s;
    io->fd = fd;
    c->io = io;
    s->wsio->count++;
    set_events(io, UV_READABLE);
    return 0;
}

int sb_wsio_fd(const sb_client *c)
{
    return c->io->fd;
}

void sb_wsio_trim(sb_server *s)
{
    /* Nothing stays in the area between loop turns: what a read brings is
     * handed up, or copied, before the turn ends. */
    if (s->wsio && s->wsio->area)
        madvise(s->wsio->buf, SB_WSIO_AREA, MADV_DONTNEED);
}

bool sb_wsio_batching(const sb_server *s)
{
    return s->wsio && s->wsio->batching;
}

size_t sb_wsio_count(const sb_server *s)
{
    return s->wsio ? s->wsio->count : 0;
}

#ifdef SB_HAVE_LIBURING
/* Sets the ring up for batching; false (logged) when the kernel refuses
 * io_uring (too old, a seccomp filter as in containers, the
 * kernel.io_uring_disabled sysctl). */
static bool ring_init(sb_wsio_shared *w)
{
    /* Mapped, so that its pages can be given back after a burst
     * (sb_wsio_trim); zero-filled, so that a memory checker that cannot
     * see the kernel write into it (valgrind) finds it defined. */
    void *area = mmap(NULL, SB_WSIO_AREA, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return false;
    int r = io_uring_queue_init(2 * SB_WSIO_BATCH, &w->ring, 0);
    if (r < 0) {
        sb_log_info("server",
                    "io_uring is not available (%s): the own data path "
                    "reads and writes with recv() and send()",
                    strerror(-r));
        munmap(area, SB_WSIO_AREA);
        return false;
    }
    free(w->buf);
    w->buf = area;
    w->area = true;
    return true;
}
#endif

int sb_wsio_init(sb_server *s, const sb_wsio_ops *ops)
{
    sb_wsio_shared *w = calloc(1, sizeof(*w));
    if (!w || !(w->buf = malloc(SB_WSIO_READ_SIZE))) {
        free(w);
        return -1;
    }
#ifdef SB_HAVE_LIBURING
    if (s->config->server.io_uring)
        w->batching = ring_init(w);
#endif
    w->ops = ops;
    uv_timer_init(s->loop, &w->linger_timer);
    w->linger_timer.data = s;
    uv_unref((uv_handle_t *)&w->linger_timer);
    s->wsio = w;
    return 0;
}

void sb_wsio_shutdown(sb_server *s)
{
    sb_wsio_shared *w = s->wsio;
    if (!w)
        return;
    for (sb_client *c = s->clients; c; c = c->next)
        if (c->io) {
            c->killed = true;
            c->closing = true;
            sb_wsio_drop(c);
        }
    sb_wsio_reap(s); /* s->destroyed: no linger */
    while (w->linger) {
        sb_wsio *io = w->linger;
        linger_unlink(w, io);
        close_io(io);
    }
    uv_close((uv_handle_t *)&w->linger_timer, NULL);
}

void sb_wsio_free(sb_server *s)
{
    sb_wsio_shared *w = s->wsio;
    if (!w)
        return;
#ifdef SB_HAVE_LIBURING
    if (w->batching)
        io_uring_queue_exit(&w->ring);
#endif
    free(w->to_read);
    free(w->to_write);
    if (w->area)
        munmap(w->buf, SB_WSIO_AREA);
    else
        free(w->buf);
    free(w);
    s->wsio = NULL;
}

/*
 * server — libwebsockets on the application's libuv loop.
 *
 * Three choices shape this file (see shared/LWS-NOTES.md for the figures):
 *   - lws runs on our uv_loop_t (a "foreign loop"), so timers, signals and
 *     later file watches and thread-pool completions share the one thread;
 *   - replies are not written from WRITEABLE round trips: every client that
 *     got frames during a loop turn is put on a dirty list, and a uv_check
 *     handle (which runs right after the poll phase that read the requests)
 *     writes each client's whole queue with one raw write. Frames queued
 *     before the poll phase (timers, then libuv's pending and idle
 *     callbacks: plugin timers, file-watch reloads, lws' own timers) are
 *     written by a uv_prepare handle, which runs after them and just
 *     before the loop blocks in poll: without it they would wait for the
 *     next wake-up, up to a whole timer interval. Posts, work completions,
 *     signals and admin requests run inside the poll phase, so the check
 *     handle covers them; close callbacks, after the check, are caught by
 *     the next turn's prepare, before that turn blocks;
 *   - shutdown closes every client with 1001 itself (lws_context_destroy()
 *     would just drop them), waits a bounded time for the close handshakes,
 *     and destroys the context from inside the loop and once more after it,
 *     the order that leaves valgrind clean;
 *   - after the upgrade a plain connection is taken over: wsio.c reads,
 *     writes and closes it from then on, and lws lets go of it (see
 *     takeover()). lws keeps the listeners, HTTP, the upgrade and TLS; the
 *     receive logic below (receive()) serves both.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "envelope.h"
#include "fdlimit.h"
#include "listen.h"
#include "log.h"
#include "sockstat.h"
#include "static.h"
#include "wsio.h"

/* A client whose socket takes no bytes for this long is dropped. */
#define SB_SEND_STALL_MS 10000

/* How long the listeners stop accepting when the process is out of
 * descriptors: long enough that a full process does not spin on a listen
 * socket that stays readable, short enough that clients barely notice. */
#define SB_ACCEPT_PAUSE_MS 250

/* A keepalive ping's payload: lws reports a pong to us only when it
 * carries bytes, and a pong echoes the ping's. */
static const char keepalive_payload[] = "sb";

/* One of lws' listen sockets, as libuv watches it. lws 4.1.6 has no call to
 * stop a listener for a while; its libuv event lib watches each listen
 * socket with a uv_poll_t on our loop, found by its descriptor at start. */
typedef struct sb_listen_watch {
    uv_poll_t *poll;
    uv_poll_cb cb; /* lws' callback, to start it again */
    bool gateway;  /* a gateway's (else the admin listener's) */
    bool stopped;
} sb_listen_watch;

sb_server *sb_server_instance;

static void finish(sb_server *s);
static void on_shutdown_timer(uv_timer_t *t);

void sb_peer_address(struct lws *wsi, char *buf, size_t len)
{
    buf[0] = 0;
    lws_get_peer_simple(wsi, buf, len);
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; operators
     * and allow-lists know them as a.b.c.d. */
    if (strncmp(buf, "::ffff:", 7) == 0 && strchr(buf + 7, '.'))
        memmove(buf, buf + 7, strlen(buf + 7) + 1);
}

static sb_server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- lists -------------------------------------------------------------- */

static void clients_link(sb_server *s, sb_client *c)
{
    c->prev = NULL;
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->nclients++;
}

static void clients_unlink(sb_server *s, sb_client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->nclients--;
}

/* How many descriptors are taken, about, when one numbered `fd` was just
 * accepted. accept() hands out the lowest free one, so a high number means
 * nearly all below it are taken; but a connection taken over moves to a
 * descriptor of its own and lws frees its first one, which the next
 * accept() gets again: so the connections are counted too (lws' and the
 * own path's, on top of what the process had open when it started). */
static unsigned long fds_in_use(const sb_server *s, int fd)
{
    unsigned long counted =
        s->fd_base + s->lws_conns + (unsigned long)sb_wsio_count(s);
    return fd > 0 && (unsigned long)fd > counted ? (unsigned long)fd : counted;
}

/* ---- writing ------------------------------------------------------------ */

/* Writes the client's queued frames in one raw write. lws keeps whatever the
 * kernel does not take and sends it before the next WRITEABLE callback;
 * while it holds such leftovers we must not write (the order would break),
 * so we wait for WRITEABLE instead. Then what is left of the queue counts
 * against max_send_queue and send_queue_budget (sb_client_flushed). Returns
 * -1 when the connection is broken. */
static int flush_client(sb_client *c)
{
    if (!c->wsi)
        return sb_wsio_flush(c);
    bool stuck = lws_partial_buffered(c->wsi);
    /* How long the kernel has refused this client's bytes: a client that
     * reads nothing stops lws reading it too, so its queue may never pass
     * max_send_queue; the sweep closes it after SB_SEND_STALL_MS. */
    if (!stuck) {
        c->stalled_since_ms = 0;
        c->lws_held = 0;
    } else if (!c->stalled_since_ms) {
        c->stalled_since_ms = uv_now(c->server->loop);
    }
    if (c->tx.len > LWS_PRE) {
        if (stuck) {
            lws_callback_on_writable(c->wsi);
        } else {
            size_t n = c->tx.len - LWS_PRE;
            int w = lws_write(c->wsi, (unsigned char *)c->tx.data + LWS_PRE, n,
                              LWS_WRITE_RAW);
            if (w < 0 || (size_t)w != n) {
                sb_log_debug("server", "client %llu: write failed",
                             (unsigned long long)c->id);
                return -1;
            }
            c->tx.len = 0;
            if (c->tx.cap > SB_KEEP_BUFFER_MAX)
                sb_buf_free(&c->tx);
            /* lws keeps what the kernel did not take: at most what we
             * wrote. It counts against the client's max_send_queue and the
             * budget until lws has sent it. */
            c->lws_held = lws_partial_buffered(c->wsi) ? n : 0;
        }
    }
    sb_client_flushed(c);
    return 0;
}

static void flush_dirty(sb_server *s)
{
again:
    while (s->dirty) {
        sb_client *c = s->dirty;
        sb_client_undirty(c);
        if (!c->wsi && c->killed) {
            sb_wsio_drop(c); /* sb_client_kill() on the own path */
            continue;
        }
        if (c->defer_flush) {
            /* After lws' own frames (a pong): WRITEABLE writes it. Until
             * then the socket counts as not taking our bytes, so a peer
             * whose socket never becomes writable meets the stall rule. */
            if (!c->stalled_since_ms)
                c->stalled_since_ms = uv_now(s->loop);
            lws_callback_on_writable(c->wsi);
            sb_client_flushed(c); /* its queue counts meanwhile */
            continue;
        }
        if (flush_client(c) < 0 && !c->close_code) {
            /* The socket is broken: drop it. */
            c->closing = true;
            c->close_code = LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
            c->tx.len = 0;
            if (c->wsi)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK,
                                LWS_TO_KILL_ASYNC);
            else
                sb_client_kill(c, LWS_CLOSE_STATUS_ABNORMAL_CLOSE);
        }
    }
    /* The own path's queues, written together (wsio.c); what that frees
     * may close others (send_queue_budget), which are dirty again. */
    if (sb_wsio_write_listed(s) && s->dirty)
        goto again;
}

static void takeover_turn(sb_server *s);

/* After the poll phase: the own path's reads (wsio.c lists the readable
 * sockets to read them together), the replies to what it read, posts,
 * completions;
 * then the connections to take over from lws, and the closes of those
 * taken over. */
static void on_flush_check(uv_check_t *h)
{
    sb_server *s = h->data;
    sb_wsio_read_listed(s);
    flush_dirty(s);
    takeover_turn(s);
    if (s->dirty)
        flush_dirty(s); /* what a takeover's first read queued: none yet */
    sb_wsio_reap(s);
}

/* Before the loop blocks: what timers and other callbacks that run
 * before the poll phase queued. Usually nothing, which costs one test. */
static void on_flush_prepare(uv_prepare_t *h)
{
    sb_server *s = h->data;
    if (s->dirty)
        flush_dirty(s);
    sb_wsio_reap(s);
}

/* Sends the close frame with our code. From lws callbacks, the caller
 * returns -1 so that lws sends it and completes the close; on the own path
 * the connection fails (our close, then TCP closes). */
static int close_now(sb_client *c, int code, const char *reason)
{
    if (!c->wsi) {
        sb_wsio_fail(c, code, reason);
        return -1;
    }
    c->closing = true;
    c->close_code = code;
    lws_close_reason(c->wsi, (enum lws_close_status)code,
                     (unsigned char *)reason, strlen(reason));
    return -1;
}

/* ---- receiving ---------------------------------------------------------- */

static int too_big(sb_client *c)
{
    c->server->stats.exceptions_by[SB_EXC_TOO_BIG]++;
    sb_log_info("server",
                "client %llu: message over max_message_size (%zu), "
                "closing with 1009",
                (unsigned long long)c->id, sb_client_conf(c)->max_message_size);
    sb_buf_free(&c->rx);
    sb_client_undirty(c);
    flush_client(c);
    return close_now(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too big");
}

/* A complete message goes up to the layer that routes it (the message hook
 * is the one every server has). */
static inline int dispatch(sb_client *c, const char *buf, size_t len, bool text)
{
    const sb_server_hooks *h = &c->server->hooks;
    return h->message(h->ctx, c, buf, len, text);
}

/* The message rate limit: a message over it is dropped with one exception
 * for the burst; a client that keeps sending a whole burst more while
 * over it is closed with 1008. */
static bool admit(sb_client *c)
{
    const sb_server_conf *conf = sb_client_conf(c);
    if (!conf->rate_limit ||
        sb_rate_take(&c->rate, conf, uv_now(c->server->loop))) {
        /* Forgiven only once it has calmed down: a steady flood that the
         * refill lets through now and then is still a flood. */
        if (!conf->rate_limit || c->rate.tokens >= conf->rate_burst / 2.0)
            c->rate.strikes = 0;
        return true;
    }
    c->server->stats.exceptions_by[SB_EXC_RATE_LIMITED]++;
    if (++c->rate.strikes == 1) {
        char why[96];
        snprintf(why, sizeof(why),
                 "Rate limit exceeded: at most %u messages per second",
                 conf->rate_limit);
        sb_send_exception(c, why, NULL, (sb_span){NULL, 0}, (sb_span){NULL, 0});
    } else if (c->rate.strikes > conf->rate_burst) {
        sb_log_info("server",
                    "client %llu: still over rate_limit, closing "
                    "with 1008",
                    (unsigned long long)c->id);
        sb_client_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                        "Rate limit exceeded");
    }
    return false;
}

/* RFC 6455: a text message that is not UTF-8 fails the connection. lws
 * could check every byte of every text frame itself; the envelope scan
 * already validates what it accepts, so only a message it refused is
 * checked again (dispatch.c). */
static int bad_utf8(sb_client *c)
{
    sb_log_debug("server",
                 "client %llu: text that is not UTF-8, closing "
                 "with 1007",
                 (unsigned long long)c->id);
    sb_client_undirty(c);
    flush_client(c);
    return close_now(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "Invalid UTF-8");
}

/* A piece of a data frame, from lws or the own path: `frame_fin` is the
 * frame's FIN bit, `remaining` what the frame still has to come, `binary`
 * the message's type. */
static int receive(sb_client *c, const char *in, size_t len, bool frame_fin,
                   uint64_t remaining, bool binary)
{
    if (c->closing)
        return 0;
    size_t max = sb_client_conf(c)->max_message_size;
    bool final = frame_fin && remaining == 0;

    c->last_active_ms = c->last_heard_ms = uv_now(c->server->loop);
    if (c->rx.len == 0 && final) {
        /* The common case: a whole message in one piece, handled in place. */
        if (len > max)
            return too_big(c);
        if (admit(c) && dispatch(c, in, len, !binary))
            return bad_utf8(c);
        return 0;
    }
    if (c->rx.len == 0) {
        c->rx_binary = binary;
        c->rx_checked = 0;
        c->rx_fragmented = false;
    }
    /* A frame without FIN: the message has more frames, and a ping may
     * come between them (one large frame in several reads has no room for
     * one). */
    if (!frame_fin)
        c->rx_fragmented = true;
    if (c->rx.len + len + remaining > max)
        return too_big(c);
    if (sb_buf_append(&c->rx, in, len) < 0) {
        sb_log_error("server",
                     "client %llu: out of memory reassembling a "
                     "message",
                     (unsigned long long)c->id);
        return close_now(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
                         "Out of memory");
    }
    /* A text message that stops being UTF-8 fails at the fragment that
     * breaks it, not at its end (RFC 6455 8.1 allows either). */
    if (!c->rx_binary) {
        size_t tail;
        if (!sb_utf8_valid_prefix(c->rx.data + c->rx_checked,
                                  c->rx.len - c->rx_checked, &tail) ||
            (final && tail)) {
            c->rx.len = 0;
            return bad_utf8(c);
        }
        c->rx_checked = c->rx.len - tail;
    }
    if (final) {
        /* The reply to a message of several frames waits for lws to answer
         * any ping that came among them (lws answers pings itself, in
         * WRITEABLE). The own path queued its pongs in order already. */
        c->defer_flush = c->rx_fragmented && c->wsi;
        bool bad =
            admit(c) && dispatch(c, c->rx.data, c->rx.len, !c->rx_binary);
        c->rx.len = 0;
        if (bad)
            return bad_utf8(c);
        if (c->rx.cap > SB_KEEP_BUFFER_MAX)
            sb_buf_free(&c->rx);
    }
    return 0;
}

/* ---- taking connections over from lws ----------------------------------- */

/* How many times a connection is looked at before it is left to lws: each
 * look that finds lws holding bytes of it (a frame it has begun, a ping it
 * owes a pong for) waits for the next frame lws hands over. */
#define SB_TAKEOVER_TRIES  8
#define SB_TAKEOVER_LISTED 0x80

static void takeover_list(sb_server *s, sb_client *c)
{
    if (c->takeover & SB_TAKEOVER_LISTED)
        return;
    if (s->ntakeover == s->takeover_cap) {
        size_t cap = s->takeover_cap ? s->takeover_cap * 2 : 64;
        sb_client_id *grown = realloc(s->takeover, cap * sizeof(*grown));
        if (!grown) {
            c->takeover = 0; /* lws keeps it */
            return;
        }
        s->takeover = grown;
        s->takeover_cap = cap;
    }
    c->takeover |= SB_TAKEOVER_LISTED;
    s->takeover[s->ntakeover++] = c->id;
}

/* What lws read of a client is exactly what the server has accounted for
 * (the upgrade request, then every frame lws handed over): lws holds no
 * byte of it, so the next byte on the socket starts a frame. A frame lws
 * read without handing it over (a ping) or a frame it has begun makes the
 * counts differ, and the connection is looked at again later. */
static bool lws_holds_nothing(sb_client *c)
{
    uint64_t read;
    return !c->lws_msg_open && !c->path.lws.frame_left && !c->rx.len &&
           !c->defer_flush && !lws_partial_buffered(c->wsi) &&
           sb_sockstat_bytes_read(lws_get_socket_fd(c->wsi), &read) == 0 &&
           read == c->path.lws.read;
}

static void takeover(sb_server *s, sb_client *c)
{
    c->takeover &= (uint8_t)~SB_TAKEOVER_LISTED;
    if (c->closing || !c->takeover)
        return;
    if (c->path.lws.read == UINT64_MAX) {
        /* The turn it was established in. lws has read the request, and
         * with it whatever the client sent before it had our 101 (RFC 6455
         * 4.1 forbids that, some do it): lws keeps such bytes for its next
         * pass ("forced service"). With nothing of the kind pending, what
         * lws read is the request alone, and the count starts there; else
         * the request's length is unknown and lws keeps the connection. */
        uint64_t read;
        if (!lws_service_adjust_timeout(lws_get_context(c->wsi), 1, 0) ||
            sb_sockstat_bytes_read(lws_get_socket_fd(c->wsi), &read) != 0) {
            sb_log_debug("server",
                         "client %llu stays with libwebsockets: it may "
                         "hold bytes sent with the request",
                         (unsigned long long)c->id);
            c->takeover = 0;
            return;
        }
        c->path.lws.read = read;
    }
    if (!lws_holds_nothing(c)) {
        c->takeover--; /* the next frame lists it again */
        sb_log_debug("server",
                     "client %llu: libwebsockets holds part of it; %s",
                     (unsigned long long)c->id,
                     c->takeover ? "looking again after its next frame"
                                 : "it stays with libwebsockets");
        return;
    }
    struct lws *wsi = c->wsi;
    int lfd = lws_get_socket_fd(wsi);
    int fd = fcntl(lfd, F_DUPFD_CLOEXEC, lfd); /* above: see the upgrade */
    if (fd < 0 || sb_wsio_adopt(c, fd) != 0) {
        sb_log_debug("server", "client %llu stays with libwebsockets: %s",
                     (unsigned long long)c->id,
                     fd < 0 ? strerror(errno) : "no poll handle");
        if (fd >= 0)
            close(fd);
        c->takeover = 0;
        return;
    }
    c->takeover = 0;
    c->wsi = NULL;
    c->lws_held = 0;
    c->path.close_by_ms = 0;
    /* lws lets go: with this reason it neither sends a close frame nor
     * shuts the socket down (lib/core-net/close.c, 4.1.6); it closes its
     * own descriptor, and its callbacks see no client any more. */
    lws_set_wsi_user(wsi, NULL);
    lws_close_free_wsi(wsi, LWS_CLOSE_STATUS_NOSTATUS_CONTEXT_DESTROY,
                       "taken over");
    if (c->tx.len > LWS_PRE)
        sb_client_mark_dirty(c);
}

/* After the poll phase, outside lws' callbacks: lws has finished with
 * the reads that established or fed these clients. */
static void takeover_turn(sb_server *s)
{
    for (size_t i = 0; i < s->ntakeover; i++) {
        sb_client *c = sb_clients_find(&s->table, s->takeover[i]);
        if (c && c->wsi)
            takeover(s, c);
    }
    s->ntakeover = 0;
}

/* A piece of a data frame from lws: counted for the takeover, then
 * received. */
static int on_receive(sb_client *c, const char *in, size_t len)
{
    size_t remaining = lws_remaining_packet_payload(c->wsi);
    bool fin = lws_is_final_fragment(c->wsi);
    if (c->takeover && c->path.lws.read == UINT64_MAX)
        c->takeover = 0; /* a frame before the first look: see takeover() */
    if (c->takeover) {
        if (!c->path.lws.frame_left) {
            /* A frame's first piece: its header, as a client writes it
             * (masked, the shortest length); one written otherwise makes
             * the counts differ, and the takeover waits. */
            uint64_t total = len + remaining;
            c->path.lws.read += 6 + (total > 0xffff ? 8 : total > 125 ? 2 : 0);
        }
        c->path.lws.read += len;
        c->path.lws.frame_left = remaining;
        c->lws_msg_open = !fin;
        if (!remaining && fin)
            takeover_list(c->server, c);
    }
    return receive(c, in, len, fin, remaining, lws_frame_is_binary(c->wsi));
}

static void own_data(sb_client *c, const char *p, size_t len, bool frame_fin,
                     uint64_t remaining, bool binary)
{
    (void)receive(c, p, len, frame_fin, remaining, binary);
}

static void on_closed(sb_server *s, sb_client *c);
static void trim_soon(sb_server *s);

static void own_closed(sb_client *c)
{
    on_closed(c->server, c);
}

static const sb_wsio_ops own_ops = {own_data, own_closed, trim_soon};

/* ---- connection lifecycle ---------------------------------------------- */

/* Answers a refused upgrade with an HTTP status; >0 tells lws we did. */
static int refuse_upgrade(struct lws *wsi, unsigned code, const char *why)
{
    sb_log_debug("server", "upgrade refused with HTTP %u: %s", code, why);
    if (lws_return_http_status(wsi, code, why))
        return -1;
    return 1;
}

/* The gateway a request is for: its listener (vhost) and exact path. */
static size_t gateway_of(sb_server *s, struct lws *wsi, const char *path)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    for (size_t g = 0; g < s->config->ngateways; g++)
        if (s->vhosts[s->listener_of[g]] == vh &&
            strcmp(s->config->gateways[g].conf.path, path) == 0)
            return g;
    return SIZE_MAX;
}

static void pending_drop(sb_server *s, struct lws *wsi, sb_pending *out)
{
    for (size_t i = 0; i < s->npending; i++) {
        if (s->pending[i].wsi != wsi)
            continue;
        if (out) {
            *out = s->pending[i];
        } else {
            json_decref(s->pending[i].identity);
            free(s->pending[i].subprotocol);
        }
        s->pending[i] = s->pending[--s->npending];
        return;
    }
}

/* The query arguments, which lws keeps URL-decoded, one fragment each:
 * joined back with '&'. "" when there are none. */
static void copy_query(struct lws *wsi, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    char frag[1024];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
                                      WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        int w = snprintf(buf + o, len - o, "%s%s", o ? "&" : "", frag);
        if (w < 0 || (size_t)w >= len - o)
            break;
        o += (size_t)w;
    }
}

/* The name of the subprotocol list `list` ("a,b") at `i`, or NULL past
 * its end; *len gets its length. */
static const char *list_item(const char *list, size_t i, size_t *len)
{
    for (; list && i; i--) {
        list = strchr(list, ',');
        if (list)
            list++;
    }
    if (!list)
        return NULL;
    const char *comma = strchr(list, ',');
    *len = comma ? (size_t)(comma - list) : strlen(list);
    return list;
}

static bool list_has(const char *list, const char *name, size_t len)
{
    size_t n;
    const char *item;
    for (size_t i = 0; (item = list_item(list, i, &n)); i++)
        if (n == len && memcmp(item, name, len) == 0)
            return true;
    return false;
}

/* What a gateway accepts: its `subprotocols`, or lws' protocol name as
 * before the key existed. */
static const char *accepted_of(const sb_server_conf *conf)
{
    return conf->subprotocols ? conf->subprotocols : "switchboard";
}

/* Decides the subprotocol of an upgrade to gateway g: the first the client
 * offers that the gateway accepts (RFC 6455 4.2.2). lws 4.1.6 decides it
 * too, after us, as the first offered name that any gateway of the
 * listener accepts, and drops the connection without an answer when there
 * is none or the list is long: those cases are refused here with an HTTP
 * status instead. Returns NULL to accept (*chosen: the name, malloc'd, or
 * NULL when the client offered none), or why it refuses. */
static const char *choose_subprotocol(sb_server *s, struct lws *wsi, size_t g,
                                      char **chosen)
{
    *chosen = NULL;
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
    if (total <= 0)
        return NULL;
    char offer[128];
    if (total >= (int)sizeof(offer) - 1 ||
        lws_hdr_copy(wsi, offer, sizeof(offer) - 1, WSI_TOKEN_PROTOCOL) < 0)
        return "Sec-WebSocket-Protocol too long";
    const char *mine = accepted_of(&s->config->gateways[g].conf);
    const char *first_known = NULL; /* what lws will pick */
    for (const char *p = offer; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - name);
        if (!len)
            continue;
        if (len > 63)
            return "Sec-WebSocket-Protocol name too long";
        bool known = false;
        for (size_t o = 0; o < s->config->ngateways && !known; o++)
            known =
                s->listener_of[o] == s->listener_of[g] &&
                list_has(accepted_of(&s->config->gateways[o].conf), name, len);
        if (!known)
            continue;
        if (!first_known)
            first_known = name;
        if (list_has(mine, name, len)) {
            if (name != first_known)
                return "Subprotocol offered after one of another path";
            *chosen = strndup(name, len);
            return *chosen ? NULL : "Out of memory";
        }
    }
    return "No supported subprotocol";
}

static int on_confirm_upgrade(sb_server *s, struct lws *wsi)
{
    sb_handshake hs;
    memset(&hs, 0, offsetof(sb_handshake, scratch));
    hs.used = 0;
    hs.wsi = wsi;
    if (lws_hdr_copy(wsi, hs.path, sizeof(hs.path), WSI_TOKEN_GET_URI) < 0)
        return refuse_upgrade(wsi, HTTP_STATUS_REQ_URI_TOO_LONG,
                              "URI too long");
    size_t g = gateway_of(s, wsi, hs.path);
    if (g == SIZE_MAX)
        return refuse_upgrade(wsi, HTTP_STATUS_NOT_FOUND, "Not Found");
    /* RFC 6455 4.4: only version 13 is spoken; lws upgrades any. */
    char version[8];
    if (lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_VERSION) < 0 ||
        strcmp(version, "13") != 0)
        return refuse_upgrade(wsi, 426, "Unsupported WebSocket version");
    const sb_server_conf *conf = &s->config->gateways[g].conf;
    /* lws 4.1.6 reads at most 255 bytes of Sec-WebSocket-Extensions and
     * then drops the connection without an answer (server-ws.c,
     * lws_extension_server_handshake): answer it instead. */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_EXTENSIONS) >= 255)
        return refuse_upgrade(wsi, HTTP_STATUS_BAD_REQUEST,
                              "Sec-WebSocket-Extensions too long");
    if (s->stopping)
        return refuse_upgrade(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                              "Shutting down");
    /* Near the descriptor limit (see fds_in_use()), the last ones are kept
     * for the admin listener and the process itself. */
    if (fds_in_use(s, lws_get_socket_fd(wsi)) >= s->fd_limit - SB_FD_HEADROOM) {
        static sb_log_limit lim = SB_LOG_LIMIT_INIT;
        s->stats.fd_refused++;
        sb_log_limited(&lim, SB_LOG_WARN, "server",
                       "near the descriptor limit (%lu): refusing a client "
                       "with HTTP 503",
                       s->fd_limit);
        return refuse_upgrade(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                              "Server at its connection limit");
    }
    if (conf->max_connections &&
        s->gateway_clients[g] >= conf->max_connections) {
        sb_log_warn("server",
                    "max_connections (%u) of gateway '%s' reached: "
                    "refusing a client with HTTP 503",
                    conf->max_connections, s->config->gateways[g].name);
        return refuse_upgrade(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                              "Too many connections");
    }
    char origin[512];
    if (conf->allowed_origins &&
        !sb_origin_allowed(conf, lws_hdr_copy(wsi, origin, sizeof(origin),
                                              WSI_TOKEN_ORIGIN) > 0
                                     ? origin
                                     : NULL)) {
        sb_log_info("server",
                    "gateway '%s': refusing origin '%s' with HTTP "
                    "403",
                    s->config->gateways[g].name, origin);
        return refuse_upgrade(wsi, HTTP_STATUS_FORBIDDEN, "Origin not allowed");
    }
    sb_peer_address(wsi, hs.remote, sizeof(hs.remote));
    if (conf->max_connections_per_ip &&
        sb_ip_count(&s->ips, hs.remote) >= conf->max_connections_per_ip) {
        sb_log_info("server",
                    "gateway '%s': %s has %u connections already; "
                    "refusing with HTTP 429",
                    s->config->gateways[g].name, hs.remote,
                    conf->max_connections_per_ip);
        return refuse_upgrade(wsi, 429,
                              "Too many connections from this "
                              "address");
    }
    char *subprotocol;
    const char *why = choose_subprotocol(s, wsi, g, &subprotocol);
    if (why)
        return refuse_upgrade(wsi, HTTP_STATUS_BAD_REQUEST, why);
    /* Handshake hooks see the request before it is answered. */
    hs.gateway = g;
    hs.gateway_name = s->config->gateways[g].name;
    copy_query(wsi, hs.query, sizeof(hs.query));
    int status =
        s->hooks.handshake ? s->hooks.handshake(s->hooks.ctx, g, &hs) : SB_OK;
    if (status != SB_OK) {
        json_decref(hs.identity);
        free(subprotocol);
        return refuse_upgrade(wsi, (unsigned)status,
                              status == 401   ? "Unauthorized"
                              : status == 429 ? "Too Many Requests"
                                              : "Refused");
    }
    if (s->npending == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 8;
        sb_pending *grown = realloc(s->pending, cap * sizeof(*grown));
        if (!grown) {
            json_decref(hs.identity);
            free(subprotocol);
            return refuse_upgrade(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                                  "Out of memory");
        }
        s->pending = grown;
        s->pending_cap = cap;
    }
    s->pending[s->npending++] = (sb_pending){wsi, g, hs.identity, subprotocol};
    return 0;
}

/* The names of lws' header tokens without their ':' (lws spells them
 * "user-agent:"), filled once: a kept handshake names a header by its
 * token's number, one byte, instead of the name (hundreds of bytes of
 * names on a browser's request, for every connection's life). */
static const char *header_names[WSI_TOKEN_COUNT];
static char header_names_text[2048];

static void header_names_init(void)
{
    if (header_names[WSI_TOKEN_HOST])
        return;
    size_t used = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *name =
            (const char *)lws_token_to_string((enum lws_token_indexes)t);
        size_t nlen = name ? strlen(name) : 0;
        /* Header tokens end with ':'; the others are request parts. */
        if (nlen < 2 || name[nlen - 1] != ':' || name[0] == ':' ||
            used + nlen > sizeof(header_names_text))
            continue;
        memcpy(header_names_text + used, name, nlen - 1);
        header_names_text[used + nlen - 1] = '\0';
        header_names[t] = header_names_text + used;
        used += nlen;
    }
}

/* Keeps path, query and the headers lws knows, for client_info(): lws
 * frees its header table once the connection is upgraded. */
static void capture_handshake(sb_client *c, struct lws *wsi)
{
    _Static_assert(WSI_TOKEN_COUNT < 256, "a header's token is one byte");
    sb_buf b = {0};
    char value[1024];
    int bad = 0;
    header_names_init();
    if (lws_hdr_copy(wsi, value, sizeof(value), WSI_TOKEN_GET_URI) < 0)
        value[0] = 0;
    bad |= sb_buf_append(&b, value, strlen(value) + 1);
    copy_query(wsi, value, sizeof(value));
    bad |= sb_buf_append(&b, value, strlen(value) + 1);
    /* The address too: the socket is gone by the disconnect log line. */
    sb_peer_address(wsi, value, sizeof(value));
    bad |= sb_buf_append(&b, value, strlen(value) + 1);
    for (int t = 1; t < WSI_TOKEN_COUNT && !bad; t++) {
        /* The upgrade's own mechanics say nothing about the client and
         * would cost every connection their bytes. */
        if (!header_names[t] || t == WSI_TOKEN_UPGRADE ||
            t == WSI_TOKEN_CONNECTION || t == WSI_TOKEN_KEY ||
            t == WSI_TOKEN_VERSION || t == WSI_TOKEN_EXTENSIONS)
            continue;
        if (lws_hdr_total_length(wsi, (enum lws_token_indexes)t) <= 0)
            continue;
        if (lws_hdr_copy(wsi, value, sizeof(value), (enum lws_token_indexes)t) <
            0)
            continue;
        bad |= sb_buf_append_byte(&b, (char)t) ||
               sb_buf_append(&b, value, strlen(value) + 1);
    }
    if (bad) {
        sb_buf_free(&b);
        return;
    }
    /* Kept for the client's life: no slack. */
    char *fit = realloc(b.data, b.len);
    c->handshake = fit ? fit : b.data;
    /* A few KiB at most: lws' header table. */
    c->handshake_len = (uint32_t)b.len;
}

bool sb_client_handshake(const sb_client *c, sb_handshake_view *v)
{
    if (!c->handshake) {
        *v = (sb_handshake_view){"", "", "?", NULL, NULL};
        return false;
    }
    const char *p = c->handshake;
    v->path = p;
    p += strlen(p) + 1;
    v->query = p;
    p += strlen(p) + 1;
    v->remote = p;
    p += strlen(p) + 1;
    v->headers = p;
    v->end = c->handshake + c->handshake_len;
    return true;
}

bool sb_handshake_next_header(const sb_handshake_view *v, const char **pos,
                              const char **name, const char **value)
{
    const char *p = *pos ? *pos : v->headers;
    if (!p || p >= v->end)
        return false;
    *name = header_names[(unsigned char)*p];
    p++;
    *value = p;
    *pos = p + strlen(p) + 1;
    return true;
}

const char *sb_client_remote(const sb_client *c)
{
    sb_handshake_view v;
    sb_client_handshake(c, &v);
    return v.remote;
}

/* A connect (code 0) or disconnect line: at info with log_connections,
 * else at debug. JSON lines carry the facts as fields too. */
static void log_connection(sb_server *s, const sb_client *c, int code)
{
    sb_log_level level =
        s->config->server.log_connections ? SB_LOG_INFO : SB_LOG_DEBUG;
    if (level > sb_log_get_level())
        return;
    const char *gw = s->config->gateways[c->gateway].name;
    const char *remote = sb_client_remote(c);
    sb_log_field f[] = {{"client", NULL, (long long)c->id},
                        {"remote", remote, 0},
                        {"gateway", gw, 0},
                        {"code", NULL, code}};
    if (code)
        sb_log_fields(level, "server", f, 4,
                      "client %llu (%s) disconnected from gateway '%s' with "
                      "%d",
                      (unsigned long long)c->id, remote, gw, code);
    else
        sb_log_fields(level, "server", f, 3,
                      "client %llu connected from %s to gateway '%s'",
                      (unsigned long long)c->id, remote, gw);
}

static int on_established(sb_server *s, struct lws *wsi)
{
    sb_pending pend = {NULL, 0, NULL, NULL};
    pending_drop(s, wsi, &pend);
    if (!pend.wsi) {
        /* Every upgrade passes CONFIRM_UPGRADE first; never expected. */
        sb_log_error("server", "a connection was established without a "
                               "handshake decision; dropping it");
        return -1;
    }
    /* The record is ours, not lws' per-session memory: it outlives the
     * wsi when the connection is taken over (freed at WSI_DESTROY, or by
     * wsio.c). */
    sb_client *c = calloc(1, sizeof(*c));
    if (!c) {
        json_decref(pend.identity);
        free(pend.subprotocol);
        sb_log_error("server", "out of memory for a client; dropping it");
        return -1;
    }
    lws_set_wsi_user(wsi, c);
    c->id = ++s->next_id;
    c->wsi = wsi;
    c->server = s;
    c->rooms.owner = c;
    c->gateway = pend.gateway;
    c->identity = pend.identity;
    c->subprotocol = pend.subprotocol;
    c->last_active_ms = c->last_heard_ms = uv_now(s->loop);
    if (sb_clients_add(&s->table, c) < 0) {
        json_decref(c->identity);
        free(c->subprotocol);
        c->subprotocol = NULL;
        c->server = NULL;
        return -1;
    }
    capture_handshake(c, wsi);
    if (s->track_ips) {
        char peer[64] = "";
        sb_peer_address(wsi, peer, sizeof(peer));
        c->ip = sb_ip_acquire(&s->ips, peer);
    }
    clients_link(s, c);
    s->gateway_clients[c->gateway]++;
    s->stats.connections_total++;
    s->gateway_stats[c->gateway].connections_total++;
    log_connection(s, c, 0);
    const char *refuser =
        s->hooks.connect ? s->hooks.connect(s->hooks.ctx, c) : NULL;
    c->accepted = true;
    if (refuser) {
        sb_log_info("server", "client %llu refused by plugin '%s'",
                    (unsigned long long)c->id, refuser);
        return close_now(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                         "Connection refused");
    }
    /* A plain connection is taken over at this turn's check, when lws has
     * read nothing of it but the request (else once it has handed over
     * what it read with it). */
    if (s->wsio && !lws_is_ssl(wsi)) {
        c->path.lws.read = UINT64_MAX; /* counted at the check */
        c->takeover = SB_TAKEOVER_TRIES;
        takeover_list(s, c);
    }
    return 0;
}

static void on_trim(uv_timer_t *t)
{
    malloc_trim(0);
    sb_wsio_trim(t->data);
}

static void on_closed(sb_server *s, sb_client *c)
{
    if (!c || !c->server)
        return; /* never established, or taken over */
    /* Whoever closed first named the code; no close at all is 1006. */
    int code = c->close_code        ? c->close_code
               : c->peer_close_code ? c->peer_close_code
                                    : LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
    /* Whatever the hooks try to send it goes nowhere: it is closing. */
    c->closing = true;
    sb_client_undirty(c);
    s->send_bytes -= c->accounted;
    c->accounted = 0;
    if (c->accepted && s->hooks.disconnect)
        s->hooks.disconnect(s->hooks.ctx, c, code);
    /* After the hooks, so that they could still see the client's rooms and
     * state; from here on its id is stale. */
    sb_rooms_leave_all(&s->rooms, &c->rooms);
    if (s->hooks.forget)
        s->hooks.forget(s->hooks.ctx, c);
    sb_slot_set_free(&c->seen);
    json_decref(c->identity);
    sb_clients_remove(&s->table, c->id);
    sb_ip_release(&s->ips, c->ip);
    c->ip = NULL;
    clients_unlink(s, c);
    s->gateway_clients[c->gateway]--;
    log_connection(s, c, code);
    free(c->handshake);
    c->handshake = NULL;
    free(c->subprotocol);
    c->subprotocol = NULL;
    sb_buf_free(&c->rx);
    sb_buf_free(&c->tx);
    c->server = NULL;
    trim_soon(s);
}

/* glibc keeps freed memory for reuse: a second after connections close
 * (and after a taken-over socket's linger ends), give it back to the
 * system, so the server's size follows its load down as well as up (one
 * trim a second at most during a burst of closes, and one after it). */
static void trim_soon(sb_server *s)
{
    if (!s->destroyed && !uv_is_active((uv_handle_t *)&s->trim_timer))
        uv_timer_start(&s->trim_timer, on_trim, 1000, 0);
}

/* RFC 6455 7.1.7, failing the connection: our close frame goes out now,
 * after what is queued, and the TCP connection closes without waiting for
 * the client's answer. Returns false when it could not be written (lws
 * holds bytes of an earlier write, or the client is already closing). */
static bool fail_now(sb_client *c, int code, const char *reason)
{
    if (c->closing || lws_partial_buffered(c->wsi))
        return false;
    sb_client_close(c, code, reason);
    sb_client_undirty(c);
    c->defer_flush = false;
    return !c->killed && flush_client(c) == 0 && !lws_partial_buffered(c->wsi);
}

/* A close from the client. lws 4.1.6 replaces a code that may not be sent
 * (below 1000, 1004-1006, 1012-2999) by 1002 before we see it, but echoes
 * everything else: a 1-byte payload, a code of 5000 or more, a reason that
 * is not UTF-8. Those fail the connection here (1002, or 1007 for the
 * reason). */
static int on_peer_close(sb_client *c, const unsigned char *in, size_t len)
{
    int code = len >= 2 ? (in[0] << 8) | in[1] : LWS_CLOSE_STATUS_NO_STATUS;
    const char *bad = NULL;
    int answer = LWS_CLOSE_STATUS_PROTOCOL_ERR;
    if (len == 1)
        bad = "Close payload of one byte";
    else if (len >= 2 && code >= 5000)
        bad = "Invalid close code";
    else if (len > 2 && !sb_utf8_valid((const char *)in + 2, len - 2)) {
        bad = "Close reason is not UTF-8";
        answer = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
    }
    if (bad && !c->close_sent) {
        sb_log_debug("server", "client %llu: %s, closing with %d",
                     (unsigned long long)c->id, bad, answer);
        fail_now(c, answer, bad);
        c->closing = true;
        /* -1: lws closes the connection without echoing the close. */
        return -1;
    }
    c->closing = true;
    c->peer_close_code = code;
    /* 0: lws echoes the close and completes it. Non-zero: it just closes,
     * which is right when this is the answer to our close. */
    return c->close_sent;
}

/* lws found a protocol error (reserved bits, a bad opcode, a fragmented
 * control frame...) and is closing with its code. It would send its close
 * and then wait up to 5 s for the client's, which its parser, stopped in
 * the middle of the bad frame, may never see. Our close goes out now
 * instead; shutting down our side of the socket makes lws' own close
 * write fail, upon which it closes at once. */
static void on_lws_failed(sb_client *c)
{
    const unsigned char *p = lws_get_close_payload(c->wsi);
    int n = lws_get_close_length(c->wsi);
    char reason[124];
    size_t rlen = n > 2 ? (size_t)n - 2 : 0;
    if (rlen >= sizeof(reason))
        rlen = sizeof(reason) - 1;
    memcpy(reason, p + 2, rlen);
    reason[rlen] = 0;
    int code = (p[0] << 8) | p[1];
    sb_log_debug("server", "client %llu: protocol error (%s), closing with %d",
                 (unsigned long long)c->id, reason, code);
    if (fail_now(c, code, reason))
        shutdown(lws_get_socket_fd(c->wsi), SHUT_WR);
    c->closing = true;
    if (!c->close_code)
        c->close_code = code;
}

static int on_writeable(sb_client *c)
{
    c->defer_flush = false;
    return flush_client(c) < 0 ? -1 : 0;
}

/* The `static` folder of the listener a request came in on, or NULL. */
static const char *static_root_of(sb_server *s, struct lws *wsi)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    for (size_t g = 0; g < s->config->ngateways; g++)
        if (s->vhosts[s->listener_of[g]] == vh &&
            s->config->gateways[g].conf.static_dir)
            return s->config->gateways[g].conf.static_dir;
    return NULL;
}

static int on_http(struct lws *wsi, sb_server *s, const char *in)
{
    /* A listener with a `static` folder serves it (upgrades never get
     * here: they are confirmed above). */
    const char *root = static_root_of(s, wsi);
    if (root)
        return sb_static_serve(wsi, root, in ? in : "/");
    char uri[1024];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    bool ws_path = n >= 0 && gateway_of(s, wsi, uri) != SIZE_MAX;
    /* Plain HTTP is not served here: a gateway's path says how to use it,
     * anything else does not exist. */
    if (lws_return_http_status(wsi, ws_path ? 426 : HTTP_STATUS_NOT_FOUND,
                               ws_path ? "WebSocket upgrade required"
                                       : "Not Found"))
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- descriptors -------------------------------------------------------- */

static void on_accept_resume(uv_timer_t *t)
{
    sb_server *s = t->data;
    for (size_t i = 0; i < s->nlisten_watch; i++) {
        sb_listen_watch *w = &s->listen_watch[i];
        if (w->stopped)
            uv_poll_start(w->poll, UV_READABLE, w->cb);
        w->stopped = false;
    }
    s->accept_paused = false;
}

/* Stops the gateways' listeners (and the admin's too when `all`) for
 * SB_ACCEPT_PAUSE_MS: the pending connections wait in the kernel's accept
 * queue meanwhile instead of making lws retry accept() in a loop. */
static void find_listen_poll(uv_handle_t *h, void *arg);
static bool is_adopt_poll(const sb_server *s, const uv_handle_t *h);

static void pause_accepting(sb_server *s, bool all, const char *why)
{
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    if (s->destroyed || s->stopping)
        return;
    /* Found when first needed: by then every listener exists, the admin
     * listener (opened after the server starts) too. */
    if (!s->listen_watch)
        uv_walk(s->loop, find_listen_poll, s);
    if (!s->listen_watch)
        return;
    bool stopped_any = false;
    for (size_t i = 0; i < s->nlisten_watch; i++) {
        sb_listen_watch *w = &s->listen_watch[i];
        if (w->stopped || !(w->gateway || all))
            continue;
        w->cb = w->poll->poll_cb;
        uv_poll_stop(w->poll);
        w->stopped = stopped_any = true;
    }
    if (!stopped_any)
        return;
    if (!s->accept_paused)
        s->stats.accept_pauses++;
    s->accept_paused = true;
    sb_log_limited(&lim, SB_LOG_WARN, "server",
                   "%s: not accepting connections for %d ms", why,
                   SB_ACCEPT_PAUSE_MS);
    uv_timer_start(&s->accept_timer, on_accept_resume, SB_ACCEPT_PAUSE_MS, 0);
}

static void find_listen_poll(uv_handle_t *h, void *arg)
{
    sb_server *s = arg;
    uv_os_fd_t fd;
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (h->type != UV_POLL || uv_fileno(h, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        !listening)
        return;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int port = -1;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
        port = sa.ss_family == AF_INET6
                   ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                   : ntohs(((struct sockaddr_in *)&sa)->sin_port);
    sb_listen_watch w = {(uv_poll_t *)h, NULL, false, false};
    for (size_t v = 0; v < s->nvhosts; v++)
        if (lws_get_vhost_listen_port(s->vhosts[v]) == port)
            w.gateway = true;
    if (is_adopt_poll(s, h))
        w.gateway = true;
    sb_listen_watch *grown =
        realloc(s->listen_watch, (s->nlisten_watch + 1) * sizeof(*grown));
    if (!grown)
        return;
    s->listen_watch = grown;
    s->listen_watch[s->nlisten_watch++] = w;
}

/* ---- accepting ourselves (workers) -------------------------------------- */

/* An inherited SO_REUSEPORT socket (listen.h) of one vhost. */
typedef struct sb_adopt_listener {
    uv_poll_t poll;
    int fd;
    struct lws_vhost *vh;
    sb_server *s;
    bool open; /* the poll is initialised and not closed */
} sb_adopt_listener;

static int *inherited_fds;
static size_t ninherited;

void sb_server_inherit_listeners(const int *fds, size_t n)
{
    free(inherited_fds);
    inherited_fds = NULL;
    ninherited = 0;
    if (!n)
        return;
    inherited_fds = malloc(n * sizeof(*fds));
    if (!inherited_fds)
        return;
    memcpy(inherited_fds, fds, n * sizeof(*fds));
    ninherited = n;
}

static int on_filter_connection(sb_server *s, int fd);

/* What lws' own listener does on a readable socket: accept, then the
 * descriptor check, then lws takes it (in HTTP mode, TLS if the vhost has
 * it). A bounded batch per wake-up keeps the other listeners served. */
static void on_adopt_readable(uv_poll_t *h, int status, int events)
{
    sb_adopt_listener *a = h->data;
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    (void)events;
    if (status < 0 || a->s->stopping)
        return;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            sb_log_limited(&lim, SB_LOG_ERROR, "server", "accept: %s",
                           strerror(errno));
            pause_accepting(a->s, true, strerror(errno));
            return;
        }
        if (on_filter_connection(a->s, fd)) {
            close(fd);
            return;
        }
        /* On failure lws has closed fd itself. */
        if (!lws_adopt_socket_vhost(a->vh, fd))
            sb_log_limited(&lim, SB_LOG_ERROR, "server",
                           "libwebsockets did not take a connection");
    }
}

static int adopt_start(sb_server *s, size_t v, struct lws_vhost *vh)
{
    sb_adopt_listener *a = &s->adopt[v];
    a->fd = inherited_fds[v];
    a->vh = vh;
    a->s = s;
    if (uv_poll_init_socket(s->loop, &a->poll, a->fd) != 0)
        return -1;
    a->poll.data = a;
    a->open = true;
    uv_poll_start(&a->poll, UV_READABLE, on_adopt_readable);
    s->nadopt = v + 1;
    return 0;
}

/* Stops accepting: the worker's copy of each socket closes, the master's
 * keeps the slot's queue. */
static void adopt_stop(sb_server *s)
{
    for (size_t v = 0; v < s->nadopt; v++) {
        sb_adopt_listener *a = &s->adopt[v];
        if (!a->open)
            continue;
        a->open = false;
        uv_close((uv_handle_t *)&a->poll, NULL);
        close(a->fd);
    }
}

static bool is_adopt_poll(const sb_server *s, const uv_handle_t *h)
{
    for (size_t v = 0; v < s->nadopt; v++)
        if ((const uv_handle_t *)&s->adopt[v].poll == h)
            return true;
    return false;
}

int sb_server_gateway_port(const sb_server *s, size_t g)
{
    if (!s->vhosts || !s->config || g >= s->config->ngateways)
        return 0;
    size_t v = s->listener_of[g];
    if (v < s->nadopt)
        return sb_listen_port(s->adopt[v].fd);
    return s->vhosts[v] ? lws_get_vhost_listen_port(s->vhosts[v]) : 0;
}

/* A connection to a gateway that got one of the last descriptors is closed
 * at once (no 503: answering would need the descriptor to stay open while
 * the request arrives), and the gateways pause. */
static int on_filter_connection(sb_server *s, int fd)
{
    if (fds_in_use(s, fd) < s->fd_limit - SB_FD_CUTOFF)
        return 0;
    s->stats.fd_refused++;
    pause_accepting(s, false, "out of descriptors for clients");
    return 1;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    sb_client *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return on_filter_connection(server_of(wsi), (int)(intptr_t)in);
    case LWS_CALLBACK_RECEIVE_PONG:
        c->last_heard_ms = uv_now(c->server->loop);
        if (c->takeover && c->path.lws.read == UINT64_MAX)
            c->takeover = 0; /* see on_receive() */
        if (c->takeover) {
            c->path.lws.read += 6 + len; /* a whole frame, under 126 */
            takeover_list(c->server, c);
        }
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return on_confirm_upgrade(server_of(wsi), wsi);
    case LWS_CALLBACK_HTTP:
        return on_http(wsi, server_of(wsi), in);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        /* A static file sent whole: keep the connection for the next. */
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(server_of(wsi), wsi);
    case LWS_CALLBACK_RECEIVE:
        return on_receive(c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(c);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return on_peer_close(c, in, len);
    case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:
        /* lws is closing the connection: after an error of its own (a
         * protocol error it found), it set a close reason we did not. */
        if (c && c->server && !c->closing && lws_get_close_length(wsi) >= 2)
            on_lws_failed(c);
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(server_of(wsi), c);
        return 0;
    case LWS_CALLBACK_WSI_CREATE: /* an accepted connection */
        server_of(wsi)->lws_conns++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* An upgrade that was accepted but never established. */
        if (server_of(wsi)) {
            pending_drop(server_of(wsi), wsi, NULL);
            if (server_of(wsi)->lws_conns) /* listeners were not counted */
                server_of(wsi)->lws_conns--;
            /* Also a connection that never became a client (a refused
             * upgrade, HTTP, a taken-over one's wsi) frees memory. */
            trim_soon(server_of(wsi));
        }
        free(c); /* after CLOSED; NULL once taken over */
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- timers and signals ------------------------------------------------- */

/* Queues a ping (our own frame, in order after what is queued). */
static void send_ping(sb_client *c, uint64_t now)
{
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return;
    if (sb_buf_append(&c->tx, keepalive_payload,
                      sizeof(keepalive_payload) - 1) < 0) {
        sb_client_frame_abort(c, start);
        return;
    }
    c->ping_sent_ms = now;
    sb_client_frame_end(c, start, SB_WS_PING);
}

/* True when the peer is still taking in what we sent before the ping:
 * bytes of ours have not all reached it (queued here, held by lws, or
 * unacknowledged in the kernel) and its TCP acknowledged more of them
 * since the last look. Its pong cannot come before it reads that far, so
 * it is alive; a peer that takes nothing is left to the stall rule. */
static int client_fd(const sb_client *c)
{
    return c->wsi ? lws_get_socket_fd(c->wsi) : sb_wsio_fd(c);
}

static bool still_reading(sb_client *c)
{
    int fd = client_fd(c);
    uint64_t unacked = 0, acked;
    bool pending = c->tx.len > LWS_PRE || c->lws_held ||
                   (sb_sockstat_unacked(fd, &unacked) == 0 && unacked > 0);
    if (!pending || sb_sockstat_bytes_acked(fd, &acked) != 0 ||
        acked == c->acked_bytes) {
        return false;
    }
    c->acked_bytes = acked;
    return true;
}

/* Keepalive: anything the client sends proves it is there, so a ping
 * goes out only after ping_interval of silence; a client that sends
 * nothing, not even the pong, for another interval is closed with 1001
 * (its close frame is sent when the socket takes it; one that takes
 * nothing is dropped by the stall rule or the close timeout). */
static void keepalive(sb_client *c, uint64_t now)
{
    uint64_t interval = (uint64_t)sb_client_conf(c)->ping_interval * 1000;
    if (!interval || c->closing)
        return;
    if (c->ping_sent_ms && c->last_heard_ms >= c->ping_sent_ms)
        c->ping_sent_ms = 0; /* heard from since the ping */
    if (!c->ping_sent_ms) {
        if (now - c->last_heard_ms >= interval)
            send_ping(c, now);
    } else if (now - c->ping_sent_ms >= interval) {
        if (still_reading(c)) {
            /* The ping waits behind what it has not read yet, and it is
             * reading: the interval starts again (the stall rule drops it
             * if it stops reading). */
            c->ping_sent_ms = now;
            return;
        }
        sb_log_debug("server", "client %llu: no pong, closing",
                     (unsigned long long)c->id);
        sb_client_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "Keepalive timeout");
    }
}

/* The stall rule: a client whose socket has taken none of our bytes for
 * SB_SEND_STALL_MS is dropped. Taken means acknowledged by the peer's TCP
 * stack, which a slow but steady reader keeps doing even while lws holds
 * leftovers of our writes. Returns true when it dropped the client. */
static bool stalled(sb_client *c, uint64_t now)
{
    if (!c->stalled_since_ms || c->killed)
        return false;
    uint64_t acked;
    if (sb_sockstat_bytes_acked(client_fd(c), &acked) == 0 &&
        acked != c->acked_bytes) {
        c->acked_bytes = acked;
        c->stalled_since_ms = now; /* still reading */
        return false;
    }
    if (now - c->stalled_since_ms < SB_SEND_STALL_MS)
        return false;
    static sb_log_limit lim = SB_LOG_LIMIT_INIT;
    sb_log_limited(&lim, SB_LOG_INFO, "server",
                   "client %llu reads nothing; dropping it",
                   (unsigned long long)c->id);
    /* A close frame would not get through either: drop it (1008 for the
     * hooks), and its buffers with it. */
    sb_client_kill(c, LWS_CLOSE_STATUS_POLICY_VIOLATION);
    return true;
}

static void on_sweep(uv_timer_t *t)
{
    sb_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (sb_client *c = s->clients; c; c = c->next) {
        if (stalled(c, now))
            continue;
        if (!c->wsi && c->closing && c->path.close_by_ms &&
            now >= c->path.close_by_ms && !c->killed) {
            /* No answer to our close in time (lws' close-ack timeout). */
            sb_client_kill(c, c->close_code);
            continue;
        }
        keepalive(c, now);
        uint64_t limit = (uint64_t)sb_client_conf(c)->idle_timeout * 1000;
        if (limit && !c->closing && now - c->last_active_ms >= limit) {
            sb_log_debug("server", "client %llu idle, closing",
                         (unsigned long long)c->id);
            sb_client_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "Idle timeout");
        }
    }
    sb_log_limit_flush(0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    sb_server *s = h->data;
    if (s->stopping) { /* a worker's: see sb_server_stop() */
        sb_log_info("server", "%s received again: already shutting down",
                    signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    sb_log_info("server", "%s received, shutting down",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
    sb_server_stop(s);
}

/* lws' lines. Its errors can come once per connection or, for a failed
 * accept(), once per attempt: they are rate-limited. lws 4.1.6 returns
 * from a failed accept() (EMFILE, ENFILE, ENOBUFS...) with the listen
 * socket still readable, so it would try again at once, forever: the
 * line is also our only notice of it, and the listeners pause. */
static void on_lws_log(int level, const char *line)
{
    static sb_log_limit accept_lim = SB_LOG_LIMIT_INIT;
    static sb_log_limit lws_lim = SB_LOG_LIMIT_INIT;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    int err = 0;
    const char *acc = strstr(line, "accept: errno ");
    if (acc && sscanf(acc, "accept: errno %d", &err) == 1) {
        sb_log_limited(&accept_lim, SB_LOG_ERROR, "lws", "accept: %s",
                       strerror(err));
        if (sb_server_instance)
            pause_accepting(sb_server_instance, true, strerror(err));
        return;
    }
    sb_log_level lv = level == LLL_ERR ? SB_LOG_ERROR : SB_LOG_DEBUG;
    if (lv == SB_LOG_ERROR)
        sb_log_limited(&lws_lim, lv, "lws", "%.*s", (int)n, line);
    else
        sb_log(lv, "lws", "%.*s", (int)n, line);
}

/* ---- start and stop ----------------------------------------------------- */

/* The template of every listener's protocols: lws' "switchboard", the
 * one a client that offers no subprotocol gets (build_protocols()). */
static struct lws_protocols protocols[] = {
    {.name = "switchboard",
     .callback = callback,
     .per_session_data_size = 0, /* the client record is ours */
     .rx_buffer_size = 0,
     .tx_packet_size = 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* The protocol list of listener v. Without `subprotocols` on any of its
 * gateways, the template as it is. Otherwise a first entry without a
 * name, for clients that offer none (lws matches an offered name to no
 * empty one), then one per name its gateways accept; all share the one
 * callback, lws binding the connection to the entry it agreed. NULL when
 * out of memory. */
static struct lws_protocols *build_protocols(sb_server *s, size_t v)
{
    const sb_config *cfg = s->config;
    size_t n = 1;
    bool lists = false;
    for (size_t g = 0; g < cfg->ngateways; g++)
        if (s->listener_of[g] == v) {
            const char *l = accepted_of(&cfg->gateways[g].conf);
            lists |= cfg->gateways[g].conf.subprotocols != NULL;
            n += 1;
            for (; *l; l++)
                n += *l == ',';
        }
    struct lws_protocols *list = calloc(n + 1, sizeof(*list));
    if (!list)
        return NULL;
    list[0] = protocols[0];
    if (!lists)
        return list;
    list[0].name = "";
    size_t used = 1;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        if (s->listener_of[g] != v)
            continue;
        size_t len;
        const char *item;
        const char *l = accepted_of(&cfg->gateways[g].conf);
        for (size_t i = 0; (item = list_item(l, i, &len)); i++) {
            size_t k = 1;
            while (k < used && !(strlen(list[k].name) == len &&
                                 memcmp(list[k].name, item, len) == 0))
                k++;
            if (k < used)
                continue;
            char *name = strndup(item, len);
            if (!name)
                break;
            list[used] = protocols[0];
            list[used++].name = name;
        }
    }
    return list;
}

static void free_protocols(struct lws_protocols *list)
{
    for (size_t i = 1; list && list[i].name; i++)
        free((char *)list[i].name);
    free(list);
}

/* An lws context on our loop, with no vhost yet. Only the first one does
 * OpenSSL's global init: lws 4.1.6 also takes new SSL and SSL_CTX ex-data
 * indexes there, into globals (lib/tls/openssl/openssl-tls.c:145-149),
 * and a second init would orphan the first context's vhosts: their client
 * SSL_CTX, tagged under the old index, is never freed
 * (openssl-ssl.c:149-153). A vhost's TLS needs the option on the vhost
 * only (lib/tls/tls-server.c:51-56). */
static struct lws_context *new_context(sb_server *s, bool first)
{
    const sb_config *cfg = s->config;
    void *loops[] = {s->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    for (size_t g = 0; g < cfg->ngateways && first; g++)
        if (cfg->gateways[g].conf.tls_cert)
            info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.user = s;
    info.port = CONTEXT_PORT_NO_LISTEN;
    /* Bounds every network round trip lws waits for, the upgrade first. */
    info.timeout_secs = cfg->server.handshake_timeout;
    return lws_create_context(&info);
}

/* lws_context_destroy() on every context: the first call from inside the
 * loop (lws closes its uv handles), the second after uv_run() returned. */
static void destroy_contexts(sb_server *s)
{
    for (size_t v = 1; s->listener_lws && v < s->config->ngateways; v++)
        if (s->listener_lws[v])
            lws_context_destroy(s->listener_lws[v]);
    if (s->lws)
        lws_context_destroy(s->lws);
}

static bool same_host(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* One vhost per distinct host:port, shared by the gateways on it. */
static int create_listeners(sb_server *s)
{
    const sb_config *cfg = s->config;
    s->vhosts = calloc(cfg->ngateways, sizeof(*s->vhosts));
    s->listener_of = calloc(cfg->ngateways, sizeof(*s->listener_of));
    s->gateway_clients = calloc(cfg->ngateways, sizeof(*s->gateway_clients));
    s->vhost_protocols = calloc(cfg->ngateways, sizeof(*s->vhost_protocols));
    if (!s->vhosts || !s->listener_of || !s->gateway_clients ||
        !s->vhost_protocols)
        return -1;
    /* Every gateway's listener first: a listener's protocols are those of
     * all the gateways on it. */
    size_t nlisteners = 0;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        const sb_server_conf *conf = &cfg->gateways[g].conf;
        size_t h = 0;
        while (h < g && !(cfg->gateways[h].conf.port == conf->port &&
                          same_host(cfg->gateways[h].conf.host, conf->host)))
            h++;
        s->listener_of[g] = h < g ? s->listener_of[h] : nlisteners++;
    }
    /* lws keeps a pointer to the retry policy: one per vhost, static for
     * the life of the process (there is one server). */
    static lws_retry_bo_t retry[64];
    if (ninherited) {
        if (ninherited != nlisteners) {
            sb_log_error("server",
                         "%zu inherited listening socket(s) for %zu "
                         "listener(s)",
                         ninherited, nlisteners);
            return -1;
        }
        s->adopt = calloc(nlisteners, sizeof(*s->adopt));
        if (!s->adopt)
            return -1;
    }
    s->listener_lws = calloc(cfg->ngateways, sizeof(*s->listener_lws));
    if (!s->listener_lws)
        return -1;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        const sb_server_conf *conf = &cfg->gateways[g].conf;
        /* Listeners are numbered in the order of their first gateway: one
         * already made serves this gateway too (same port, other path). */
        if (s->listener_of[g] < s->nvhosts)
            continue;
        if (s->nvhosts >= sizeof(retry) / sizeof(retry[0])) {
            sb_log_error("server", "more than %zu listeners",
                         sizeof(retry) / sizeof(retry[0]));
            return -1;
        }
        /* Keepalive is ours (the sweep): lws' own counts seconds in 16
         * bits and pings whatever the traffic. A policy with no hang-up
         * turns it off; without one, lws would ping at 300 s and hang up
         * at 310 s. */
        lws_retry_bo_t *r = &retry[s->nvhosts];
        r->secs_since_valid_ping = 0;
        r->secs_since_valid_hangup = 0;
        struct lws_context_creation_info vinfo;
        memset(&vinfo, 0, sizeof(vinfo));
        vinfo.options = LWS_SERVER_OPTION_LIBUV;
        /* Under workers the socket is the master's (accept_start()). */
        vinfo.port = ninherited ? CONTEXT_PORT_NO_LISTEN_SERVER : conf->port;
        vinfo.iface = conf->host && *conf->host ? conf->host : NULL;
        /* lws 4.1 binds an IPv4 address given to an IPv6 socket as "::",
         * i.e. every interface: for an IPv4 host, listen on IPv4 only. */
        struct in_addr v4;
        if (vinfo.iface && inet_pton(AF_INET, vinfo.iface, &v4) == 1)
            vinfo.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        s->vhost_protocols[s->nvhosts] = build_protocols(s, s->nvhosts);
        if (!s->vhost_protocols[s->nvhosts])
            return -1;
        vinfo.protocols = s->vhost_protocols[s->nvhosts];
        /* A client that does not finish its upgrade in time is dropped:
         * these are per vhost in lws 4.1. */
        vinfo.timeout_secs = cfg->server.handshake_timeout;
        vinfo.timeout_secs_ah_idle = cfg->server.handshake_timeout;
        vinfo.keepalive_timeout = (int)cfg->server.handshake_timeout;
        if (conf->tls_cert || conf->tls_key) {
            if (!conf->tls_cert || !conf->tls_key) {
                sb_log_error("server",
                             "gateway '%s': tls_cert and tls_key "
                             "go together",
                             cfg->gateways[g].name);
                return -1;
            }
            /* wss:// on this listener. Our raw writes go through lws' TLS
             * layer like its own. */
            vinfo.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
            vinfo.ssl_cert_filepath = conf->tls_cert;
            vinfo.ssl_private_key_filepath = conf->tls_key;
        }
        /* lws keeps the pointer: the config's string outlives the vhost. */
        vinfo.vhost_name = cfg->gateways[g].name;
        vinfo.retry_and_idle_policy = r;
        /* Once a request's headers are in, lws 4.1.6 rebinds the
         * connection to lws_select_vhost(context, listen_port, Host)
         * (lib/roles/http/server/server.c:2039-2046, in
         * lws_handshake_server()), which without a vhost named like the
         * Host falls back to the first vhost of the context on the same
         * listen_port (server.c:402-412), and its TLS SNI callback swaps
         * the certificate the same way (lib/tls/openssl/openssl-server.c:
         * 132-142). Under workers no vhost listens, all have listen_port
         * -2 (CONTEXT_PORT_NO_LISTEN_SERVER); in one process two listeners
         * may have the same port on two hosts. Such a listener gets a
         * context of its own on the same loop, where it is the only one
         * on its port. */
        struct lws_context *ctx = s->lws;
        bool own = ninherited && s->nvhosts > 0;
        for (size_t h = 0; h < g && !ninherited; h++)
            own |= cfg->gateways[h].conf.port == conf->port;
        if (own) {
            ctx = s->listener_lws[s->nvhosts] = new_context(s, false);
            if (!ctx) {
                sb_log_error("server",
                             "gateway '%s': cannot create its libwebsockets "
                             "context",
                             cfg->gateways[g].name);
                return -1;
            }
        }
        struct lws_vhost *vh = lws_create_vhost(ctx, &vinfo);
        if (!vh) {
            sb_log_error("server",
                         "gateway '%s': cannot listen on %s:%d (is the port "
                         "in use?)",
                         cfg->gateways[g].name, vinfo.iface ? vinfo.iface : "*",
                         conf->port);
            return -1;
        }
        s->listener_of[g] = s->nvhosts;
        s->vhosts[s->nvhosts++] = vh;
        if (ninherited && adopt_start(s, s->nvhosts - 1, vh) < 0) {
            sb_log_error("server", "gateway '%s': cannot watch its socket",
                         cfg->gateways[g].name);
            return -1;
        }
    }
    for (size_t g = 0; g < cfg->ngateways; g++) {
        const sb_server_conf *conf = &cfg->gateways[g].conf;
        sb_log_info("server", "gateway '%s' listening on ws://%s:%d%s",
                    cfg->gateways[g].name,
                    conf->host && *conf->host ? conf->host : "*",
                    sb_server_gateway_port(s, g), conf->path);
        if (conf->static_dir)
            sb_log_info("server", "gateway '%s' serves files from %s",
                        cfg->gateways[g].name, conf->static_dir);
    }
    return 0;
}

int sb_server_start(sb_server *s, const sb_config *cfg,
                    const sb_server_hooks *hooks, uv_loop_t *loop)
{
    memset(s, 0, sizeof(*s));
    s->hooks = *hooks;
    s->config = cfg;
    s->loop = loop;
    s->fd_limit = sb_fdlimit_soft();

    lws_set_log_level(LLL_ERR |
                          (sb_log_get_level() >= SB_LOG_DEBUG ? LLL_WARN : 0),
                      on_lws_log);

    /* lws' own writes (close, pong, the handshake) may be bigger than
     * rx_buffer_size, and our raw writes are whole queues: let lws send
     * them in one piece. */
    size_t max_queue = 0;
    for (size_t g = 0; g < cfg->ngateways; g++)
        if (cfg->gateways[g].conf.max_send_queue > max_queue)
            max_queue = cfg->gateways[g].conf.max_send_queue;
    protocols[0].tx_packet_size = max_queue + 4096;
    /* The per-connection receive buffer: memory per idle client against
     * bytes per read under pipelining (README, Performance). */
    protocols[0].rx_buffer_size = cfg->server.rx_buffer_size;

    for (size_t g = 0; g < cfg->ngateways; g++)
        if (cfg->gateways[g].conf.max_connections_per_ip)
            s->track_ips = true;
    s->lws = new_context(s, true);
    if (!s->lws) {
        sb_log_error("server", "cannot create the libwebsockets context");
        return -1;
    }
    sb_server_instance = s;
    /* Signals first: a client (or a test) may send SIGTERM or SIGHUP as
     * soon as the port answers, and the default action would kill us. */
    uv_signal_init(loop, &s->sig_int);
    uv_signal_init(loop, &s->sig_term);
    s->sig_int.data = s->sig_term.data = s;
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    if (s->hooks.starting)
        s->hooks.starting(s->hooks.ctx, s);
    if (create_listeners(s) < 0) {
        adopt_stop(s);
        uv_close((uv_handle_t *)&s->sig_int, NULL);
        uv_close((uv_handle_t *)&s->sig_term, NULL);
        if (s->hooks.stopped)
            s->hooks.stopped(s->hooks.ctx, s);
        /* The same two-step destroy as a normal stop: let lws close its
         * uv handles, then free the rest in sb_server_free(). */
        destroy_contexts(s);
        uv_run(loop, UV_RUN_DEFAULT);
        return -1;
    }

    uv_check_init(loop, &s->flush_check);
    s->flush_check.data = s;
    uv_check_start(&s->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&s->flush_check);
    uv_prepare_init(loop, &s->flush_prepare);
    s->flush_prepare.data = s;
    uv_prepare_start(&s->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&s->flush_prepare);
    /* The own data path, unless lws is to read every connection. */
    if (cfg->server.own_data_path && sb_wsio_init(s, &own_ops) < 0)
        sb_log_warn("server", "out of memory for the own data path: "
                              "libwebsockets reads every connection");

    uv_timer_init(loop, &s->sweep_timer);
    s->sweep_timer.data = s;
    /* Idle clients and clients that read nothing, once a second. */
    uv_timer_start(&s->sweep_timer, on_sweep, 1000, 1000);
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    uv_timer_init(loop, &s->trim_timer);
    s->trim_timer.data = s;
    uv_unref((uv_handle_t *)&s->trim_timer);
    uv_timer_init(loop, &s->accept_timer);
    s->accept_timer.data = s;
    uv_unref((uv_handle_t *)&s->accept_timer);
    /* What the process holds before any client: the lowest free number. */
    int lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
    if (lowest >= 0) {
        s->fd_base = (unsigned long)lowest;
        close(lowest);
    }
    return 0;
}

static void finish(sb_server *s)
{
    if (s->destroyed)
        return;
    s->destroyed = true;
    if (s->nclients)
        sb_log_warn("server",
                    "%u client(s) did not complete the close "
                    "handshake in time; dropping them",
                    s->nclients);
    uv_close((uv_handle_t *)&s->flush_check, NULL);
    uv_close((uv_handle_t *)&s->flush_prepare, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    /* Closing them restored the default action; a worker's late second
     * stop (sb_server_stop()) must not kill it while it unloads. */
    if (s->adopt) {
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
    }
    uv_close((uv_handle_t *)&s->sweep_timer, NULL);
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&s->trim_timer, NULL);
    uv_close((uv_handle_t *)&s->accept_timer, NULL);
    /* lws closes its listen sockets' polls: stopped or not, they are its. */
    free(s->listen_watch);
    s->listen_watch = NULL;
    s->nlisten_watch = 0;
    sb_wsio_shutdown(s); /* the taken-over clients lws does not know */
    if (s->hooks.stopped)
        s->hooks.stopped(s->hooks.ctx, s);
    /* First of the two destroys: from inside the loop, so lws can close its
     * own uv handles; uv_run() then returns. */
    destroy_contexts(s);
}

/* The drain: done when every client is gone and no plugin work is running
 * or queued, or when shutdown_timeout has passed since the stop. Work still
 * running then cannot be stopped (it is a thread); the process exits when
 * it returns. */
static void on_shutdown_timer(uv_timer_t *t)
{
    sb_server *s = t->data;
    size_t work =
        s->hooks.pending_work ? s->hooks.pending_work(s->hooks.ctx) : 0;
    bool late = uv_now(s->loop) >= s->stop_deadline_ms;
    if (!late && (s->nclients || work)) {
        uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 20, 0);
        return;
    }
    if (work)
        sb_log_warn("server",
                    "%zu work item(s) of plugins still pending "
                    "after shutdown_timeout; waiting for them to return",
                    work);
    finish(s);
}

void sb_server_stop(sb_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    /* A second signal then kills a single process (the default action). A
     * worker keeps its handlers: it gets the stop from its master and often
     * from others too (systemd's KillMode=control-group, Ctrl-C to the
     * terminal's process group, its parent-death signal), and must drain
     * once, not die of the second one. */
    if (!s->adopt) {
        uv_signal_stop(&s->sig_int);
        uv_signal_stop(&s->sig_term);
    }
    uv_timer_stop(&s->sweep_timer);
    on_accept_resume(&s->accept_timer); /* lws closes what it watches */
    uv_timer_stop(&s->accept_timer);
    adopt_stop(s); /* and we what we watch */
    s->stop_deadline_ms =
        uv_now(s->loop) + (uint64_t)s->config->server.shutdown_timeout * 1000;
    /* With [recovery], 1012 (service restart): come back and resume. */
    int code = s->config->recovery.enabled ? 1012 : LWS_CLOSE_STATUS_GOINGAWAY;
    if (s->nclients)
        sb_log_info("server", "closing %u client(s) with %d", s->nclients,
                    code);
    for (sb_client *c = s->clients; c; c = c->next)
        sb_client_close(c, code, "Server shutting down");
    uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 0, 0);
}

void sb_server_free(sb_server *s)
{
    destroy_contexts(s); /* the second destroy, after uv_run */
    s->lws = NULL;
    sb_wsio_free(s);
    free(s->takeover);
    free(s->listener_lws);
    free(s->listen_watch);
    free(s->adopt);
    sb_server_inherit_listeners(NULL, 0); /* the next start listens itself */
    for (size_t i = 0; i < s->npending; i++)
        json_decref(s->pending[i].identity);
    free(s->pending);
    for (size_t v = 0; s->vhost_protocols && v < s->config->ngateways; v++)
        free_protocols(s->vhost_protocols[v]);
    free(s->vhost_protocols);
    free(s->vhosts);
    free(s->listener_of);
    free(s->gateway_clients);
    sb_clients_free(&s->table);
    sb_rooms_free(&s->rooms);
    sb_ip_free(&s->ips);
    sb_server_instance = NULL;
    memset(s, 0, sizeof(*s));
}

/*
 * lws_echo_server — a libwebsockets echo server to test the test client.
 *
 * Usage: lws_echo_server PORT [LWS_LOG_LEVEL]
 *
 * Listens on 127.0.0.1:PORT. With PORT 0 the kernel picks the port, and
 * "listening on 127.0.0.1:N" on stdout says which once it accepts. Every
 * complete message is echoed back with its type, fragmented ones once
 * joined, so the client is checked against an independent WebSocket
 * implementation rather than against itself. Pings, pongs and the closing
 * handshake are left to libwebsockets' defaults: the tests record what it
 * does. SIGTERM or SIGINT ends it with status 0 after freeing everything,
 * so it can run under valgrind too.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

/* Bigger messages close the connection: the tests never send one, and a
 * bug must not eat the machine's memory. */
#define ECHO_MAX_MESSAGE ((size_t)64 << 20)

struct echo_msg {
    struct echo_msg *next;
    int binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
};

/* Per connection: the message being received, and replies not yet sent
 * (a client may pipeline many messages before one is written back). */
struct echo_conn {
    struct echo_msg *cur;
    size_t cur_cap;
    int in_message;
    struct echo_msg *head, *tail;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void conn_free(struct echo_conn *ec)
{
    free(ec->cur);
    ec->cur = NULL;
    while (ec->head) {
        struct echo_msg *m = ec->head;
        ec->head = m->next;
        free(m);
    }
    ec->tail = NULL;
}

static int append(struct echo_conn *ec, const void *in, size_t len)
{
    size_t want = (ec->cur ? ec->cur->len : 0) + len;
    if (want > ECHO_MAX_MESSAGE)
        return -1;
    if (!ec->cur || want > ec->cur_cap) {
        size_t cap = ec->cur_cap ? ec->cur_cap * 2 : 4096;
        while (cap < want)
            cap *= 2;
        struct echo_msg *m = realloc(ec->cur, sizeof(*m) + LWS_PRE + cap);
        if (!m)
            return -1;
        if (!ec->cur)
            m->len = 0;
        ec->cur = m;
        ec->cur_cap = cap;
    }
    if (len)
        memcpy(ec->cur->buf + LWS_PRE + ec->cur->len, in, len);
    ec->cur->len += len;
    return 0;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    struct echo_conn *ec = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(ec, 0, sizeof(*ec));
        break;

    case LWS_CALLBACK_RECEIVE:
        /* lws hands over a message in pieces (per frame and per read);
         * the message starts with the first piece after the last one
         * ended, and ends when the final frame has no payload left. */
        if (!ec->in_message) {
            if (append(ec, NULL, 0) < 0)
                return -1;
            ec->cur->binary = lws_frame_is_binary(wsi);
            ec->in_message = 1;
        }
        if (append(ec, in, len) < 0)
            return -1;
        if (lws_is_final_fragment(wsi) &&
            lws_remaining_packet_payload(wsi) == 0) {
            ec->cur->next = NULL;
            if (ec->tail)
                ec->tail->next = ec->cur;
            else
                ec->head = ec->cur;
            ec->tail = ec->cur;
            ec->cur = NULL;
            ec->cur_cap = 0;
            ec->in_message = 0;
            lws_callback_on_writable(wsi);
        }
        break;

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct echo_msg *m = ec->head;
        if (!m)
            break;
        /* One lws_write per message: lws keeps any part the socket did
         * not take and delays the next writable callback until it has
         * gone. */
        int n = lws_write(wsi, m->buf + LWS_PRE, m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < 0 || (size_t)n < m->len)
            return -1;
        ec->head = m->next;
        if (!ec->head)
            ec->tail = NULL;
        free(m);
        if (ec->head)
            lws_callback_on_writable(wsi);
        break;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *p = in;
            lwsl_notice("peer close %d, %zu reason bytes\n", p[0] << 8 | p[1],
                        len - 2);
        }
        break;

    case LWS_CALLBACK_CLOSED:
        conn_free(ec);
        break;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"echo", callback_echo, sizeof(struct echo_conn), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [LWS_LOG_LEVEL]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    lws_set_log_level(argc == 3 ? atoi(argv[2]) : LLL_ERR | LLL_WARN, NULL);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws_create_context failed\n");
        return 1;
    }
    if (port == 0) {
        printf(
            "listening on 127.0.0.1:%d\n",
            lws_get_vhost_listen_port(lws_get_vhost_by_name(ctx, "default")));
        fflush(stdout);
    }

    /* A signal interrupts the poll inside lws_service, so the flag is
     * seen at once (or at lws' next housekeeping wakeup if it lands just
     * before the poll). */
    while (!interrupted)
        if (lws_service(ctx, 0) < 0)
            break;
    lws_context_destroy(ctx);
    return 0;
}

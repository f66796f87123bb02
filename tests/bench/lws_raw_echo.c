/*
 * lws_raw_echo — the benchmark's baseline: a WebSocket echo server written
 * the textbook libwebsockets way, on the same library Switchboard uses.
 *
 * Every received fragment is copied into a queued message, and the reply goes
 * out from LWS_CALLBACK_SERVER_WRITEABLE with one lws_write() per message,
 * asking for another writeable callback while more are queued. Default poll
 * event loop, default buffer sizes, no extensions. This is what "a plain lws
 * server" costs; Switchboard is measured against it.
 *
 * Usage: lws_raw_echo PORT [--host ADDR] [--rx-buffer BYTES]
 * Listens on 127.0.0.1 unless told otherwise; exits on SIGINT or SIGTERM.
 */
#include <libwebsockets.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A queued reply. The payload follows the struct, after LWS_PRE bytes that
 * lws_write() may use for the frame header. */
typedef struct echo_msg {
    struct echo_msg *next;
    size_t len;
    int flags; /* lws_write() protocol and fragment flags */
    unsigned char buf[];
} echo_msg;

/* Per connection: a FIFO of replies. Kept to a few pointers so that idle
 * connections cost what lws itself costs. */
typedef struct echo_pss {
    echo_msg *head;
    echo_msg *tail;
    unsigned count;
    int rx_paused;
} echo_pss;

/* Stop reading from a client that has this many replies queued: a client
 * that never reads must not make the server grow without bound. */
#define ECHO_MAX_QUEUED 256

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void free_queue(echo_pss *pss)
{
    while (pss->head) {
        echo_msg *m = pss->head;
        pss->head = m->next;
        free(m);
    }
    pss->tail = NULL;
    pss->count = 0;
}

static int echo_callback(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    echo_pss *pss = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(pss, 0, sizeof(*pss));
        return 0;

    case LWS_CALLBACK_RECEIVE: {
        echo_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
        if (!m)
            return -1;
        m->next = NULL;
        m->len = len;
        m->flags = lws_write_ws_flags(
            lws_frame_is_binary(wsi) ? LWS_WRITE_BINARY : LWS_WRITE_TEXT,
            lws_is_first_fragment(wsi), lws_is_final_fragment(wsi));
        if (len)
            memcpy(m->buf + LWS_PRE, in, len);
        if (pss->tail)
            pss->tail->next = m;
        else
            pss->head = m;
        pss->tail = m;
        if (++pss->count >= ECHO_MAX_QUEUED && !pss->rx_paused) {
            lws_rx_flow_control(wsi, 0);
            pss->rx_paused = 1;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        echo_msg *m = pss->head;
        if (!m)
            return 0;
        int n = lws_write(wsi, m->buf + LWS_PRE, m->len,
                          (enum lws_write_protocol)m->flags);
        if (n < (int)m->len)
            return -1;
        pss->head = m->next;
        if (!pss->head)
            pss->tail = NULL;
        pss->count--;
        free(m);
        if (pss->rx_paused && pss->count < ECHO_MAX_QUEUED / 2) {
            lws_rx_flow_control(wsi, 1);
            pss->rx_paused = 0;
        }
        /* One message per callback: the textbook round trip. */
        if (pss->head)
            lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_CLOSED:
        free_queue(pss);
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    size_t rx_buffer = 0; /* 0: lws' default, pt_serv_buf_size (4096) */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--rx-buffer") == 0 && i + 1 < argc)
            rx_buffer = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!port && atoi(argv[i]) > 0)
            port = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: lws_raw_echo PORT [--host ADDR] "
                            "[--rx-buffer BYTES]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: lws_raw_echo PORT [--host ADDR] "
                        "[--rx-buffer BYTES]\n");
        return 2;
    }

    /* First in the list: a client that names no subprotocol gets it. */
    const struct lws_protocols protocols[] = {
        {"echo", echo_callback, sizeof(echo_pss), rx_buffer, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0}};

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* Explicit vhosts: lws_create_context() succeeds even when the port is
     * taken, lws_create_vhost() does not. */
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws_raw_echo: lws_create_context failed\n");
        return 1;
    }
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = host;
    info.protocols = protocols;
    if (!lws_create_vhost(ctx, &info)) {
        fprintf(stderr, "lws_raw_echo: cannot listen on %s:%d\n", host, port);
        lws_context_destroy(ctx);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    printf("lws_raw_echo listening on ws://%s:%d/ (lws %s)\n", host, port,
           lws_get_library_version());
    fflush(stdout);
    /* The signal interrupts poll(), so lws_service() returns and the flag
     * is seen. */
    while (!stop && lws_service(ctx, 0) >= 0)
        ;
    lws_context_destroy(ctx);
    return 0;
}

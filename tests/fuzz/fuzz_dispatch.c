/*
 * fuzz_dispatch — libFuzzer target for the frame path: one complete message
 * from a client, through the envelope, the router, a real plugin handler
 * and the reply code, into the client's send queue. It is the path every
 * byte from the network takes, minus libwebsockets.
 *
 * The server and the client are built by hand, without sockets: a config
 * read from a small INI (in a memfd), the plugin host with the bundled
 * nest-example plugin and the test probe loaded from the plugin folder as
 * the server would load them, and one accepted client. After each input the
 * client's send queue is checked and emptied (as a flush would):
 *   - it holds only whole, final, unmasked text frames with minimal length
 *     encoding, back to back, and nothing else;
 *   - every payload is valid JSON per jansson (which also checks UTF-8;
 *     integers beyond 64 bits read as reals, as the server accepts them);
 *   - every `exception` has the documented shape;
 *   - an input that is not a valid envelope gets exactly one frame, an
 *     `exception`.
 * Any broken promise aborts, which the fuzzer keeps as a crash.
 */
#include <jansson.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bridge.h"
#include "client.h"
#include "config.h"
#include "dispatch.h"
#include "envelope.h"
#include "host_api.h"
#include "log.h"
#include "plugin_host.h"
#include "server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sb_config cfg;
static uv_loop_t loop; /* the host's post() handle needs one; never run */
static sb_plugin_host host;
static sb_server srv;
static sb_client cli;

/* The send queue must never close the client here: a close would reach
 * libwebsockets, which this harness does not have. */
static const char ini[] = "[server]\n"
                          "unknown_event = exception\n"
                          "max_send_queue = 1g\n"
                          "log_level = warn\n"
                          "[plugin.nest]\n"
                          "file = " SB_FUZZ_PLUGIN_DIR "/nest-example.so\n"
                          "[plugin.probe]\n"
                          "file = " SB_FUZZ_PLUGIN_DIR "/test-probe.so\n"
                          "journal = /dev/null\n";

static void die(const char *why, const char *detail)
{
    fprintf(stderr, "fuzz_dispatch: %s%s%s\n", why, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

/* What the server does when the client goes and at shutdown, so that
 * LeakSanitizer's check at exit sees only real leaks. */
static void teardown(void)
{
    sb_plugin_host_disconnect(&host, cli.id, 1001, &cli.seen);
    sb_slot_set_free(&cli.seen);
    sb_rooms_leave_all(&srv.rooms, &cli.rooms);
    sb_client_slots_release(&cli);
    json_decref(cli.identity);
    sb_clients_remove(&srv.table, cli.id);
    sb_buf_free(&cli.tx);
    sb_buf_free(&cli.rx);
    sb_server_instance = NULL;
    sb_plugin_host_free(&host);
    uv_run(&loop, UV_RUN_NOWAIT); /* frees the host's closed handles */
    uv_loop_close(&loop);
    sb_clients_free(&srv.table);
    sb_rooms_free(&srv.rooms);
    sb_bridge_cleanup();
    sb_config_free(&cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd = memfd_create("fuzz-dispatch.ini", MFD_CLOEXEC);
    if (fd < 0 || write(fd, ini, sizeof(ini) - 1) != (ssize_t)sizeof(ini) - 1)
        die("cannot write the config", NULL);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (sb_config_load(&cfg, path) != 0)
        die("bad config", cfg.nerrors ? cfg.errors[0] : NULL);
    close(fd);
    sb_log_set_level((sb_log_level)cfg.server.log_level);

    if (uv_loop_init(&loop) != 0 ||
        sb_plugin_host_init(&host, &loop, cfg.gateways, cfg.ngateways) != 0)
        die("cannot set up the plugin host", NULL);
    sb_bridge_plugin_host(&host);
    for (size_t i = 0; i < cfg.nplugins; i++) {
        char err[1024];
        if (sb_plugin_host_load(&host, &cfg.plugins[i], err, sizeof(err)))
            die("cannot load a plugin", err);
    }
    sb_plugin_host_ready(&host);

    /* One server, one client on the default gateway, found by id as the
     * host calls find it. */
    srv.config = &cfg;
    srv.plugins = &host;
    srv.loop = &loop;
    srv.next_id = 2;
    cli.id = 1;
    cli.server = &srv;
    cli.rooms.owner = &cli;
    cli.gateway = 0;
    srv.clients = &cli;
    srv.nclients = 1;
    if (sb_clients_add(&srv.table, &cli) != 0)
        die("out of memory", NULL);
    sb_server_instance = &srv;
    const sb_plugin *refuser = NULL;
    sb_plugin_host_connect(&host, cli.gateway, cli.id, &cli.seen, &refuser);
    if (refuser)
        die("a plugin refused the client", NULL);
    cli.accepted = true;
    atexit(teardown);
    return 0;
}

static void die_json(const char *why, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    fprintf(stderr, "fuzz_dispatch: %s: %s\n", why, text ? text : "?");
    abort();
}

/* Checks an `exception` object's shape (README, "The wire protocol"). */
static void check_exception(const json_t *o)
{
    const json_t *d = json_object_get(o, "data");
    const char *status = json_string_value(json_object_get(d, "status"));
    if (!json_is_object(d) || !status || strcmp(status, "error") != 0 ||
        !json_is_string(json_object_get(d, "message")))
        die_json("malformed exception", o);
    const json_t *cause = json_object_get(d, "cause");
    if (cause && !json_is_string(json_object_get(cause, "pattern")))
        die_json("exception cause without a pattern", o);
    const json_t *id = json_object_get(o, "id");
    if (id && !json_is_number(id) && !json_is_string(id))
        die_json("exception id neither number nor string", o);
}

/* Walks the queued frames; returns how many, and how many exceptions. */
static size_t check_queue(size_t *exceptions)
{
    *exceptions = 0;
    if (cli.tx.len == 0)
        return 0;
    if (cli.tx.len < LWS_PRE)
        die("send queue shorter than its headroom", NULL);
    const unsigned char *p = (const unsigned char *)cli.tx.data + LWS_PRE;
    const unsigned char *end = (const unsigned char *)cli.tx.data + cli.tx.len;
    size_t frames = 0;
    while (p < end) {
        if (end - p < 2)
            die("truncated frame header", NULL);
        if (p[0] != (0x80 | SB_WS_TEXT))
            die("not a final text frame without RSV bits", NULL);
        if (p[1] & 0x80)
            die("a server frame is masked", NULL);
        size_t len = p[1] & 0x7f, hlen = 2;
        if (len == 126) {
            if (end - p < 4)
                die("truncated 16-bit length", NULL);
            len = (size_t)p[2] << 8 | p[3];
            hlen = 4;
            if (len < 126)
                die("16-bit length for a short payload", NULL);
        } else if (len == 127) {
            if (end - p < 10)
                die("truncated 64-bit length", NULL);
            uint64_t l = 0;
            for (int i = 2; i < 10; i++)
                l = l << 8 | p[i];
            if (l >> 63 || l <= 0xffff)
                die("bad 64-bit length", NULL);
            len = (size_t)l;
            hlen = 10;
        }
        if ((size_t)(end - p) - hlen < len)
            die("payload runs past the queue", NULL);
        const char *payload = (const char *)p + hlen;
        json_error_t jerr;
        /* JSON_DECODE_INT_AS_REAL: integers beyond 64 bits are valid JSON
         * and pass through as the client wrote them. */
        json_t *v = json_loadb(
            payload, len,
            JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
        if (!v)
            die("payload is not valid JSON", jerr.text);
        const json_t *ev = json_object_get(v, "event");
        if (json_is_string(ev) &&
            strcmp(json_string_value(ev), "exception") == 0) {
            check_exception(v);
            (*exceptions)++;
        }
        json_decref(v);
        frames++;
        p += hlen + len;
    }
    return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    sb_dispatch(&cli, buf, size, false);
    if (cli.closing)
        die("the client was closed", "dispatch must never close a client");

    size_t exceptions;
    size_t frames = check_queue(&exceptions);
    sb_envelope env;
    if (sb_envelope_parse(buf, size, sb_client_conf(&cli)->max_json_depth,
                          &env) != SB_ENV_OK &&
        (frames != 1 || exceptions != 1))
        die("a bad envelope did not get exactly one exception", env.error);

    /* What a flush does once the frames are written. */
    cli.tx.len = 0;
    cli.dirty = false;
    cli.dirty_prev = cli.dirty_next = NULL;
    srv.dirty = NULL;
    return 0;
}

/*
 * metrics — see metrics.h.
 *
 * A scrape walks the gateways, each gateway's routes, the plugins and the
 * clients once, on the loop thread, so it sees one consistent moment and
 * needs no locks; counting in the hot path stays a plain increment.
 *
 * Two labels need a word. Events are per gateway (a router each), so every
 * per-event series carries `gateway` too. And the per-event message
 * counters get one more series per gateway, event="": for messages
 * received, those that reached no handler (bad envelopes, unknown events);
 * for messages sent, every frame that was not a handler's reply (pushes,
 * broadcasts, exceptions). Event names are never empty, so "" cannot clash
 * with one, and summing over `event` gives the gateway's totals.
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>

#include "cluster.h"
#include "plugin_host.h"
#include "recovery.h"
#include "server.h"
#include "wsio.h"

/* The same bounds as `le` values, written once by hand so that they read
 * as decimals rather than as printf's exponents. */
static const char *const bound_text[SB_DISPATCH_BUCKETS] = {
    "0.00000025", "0.0000005", "0.000001", "0.0000025", "0.000005", "0.00001",
    "0.000025",   "0.00005",   "0.0001",   "0.00025",   "0.0005",   "0.001",
    "0.0025",     "0.005",     "0.01",     "0.1"};

/* ---- the text format ---------------------------------------------------- */

int sb_prom_family(sb_buf *b, const char *name, const char *type,
                   const char *help)
{
    int bad = sb_buf_append_str(b, "# HELP ") || sb_buf_append_str(b, name) ||
              sb_buf_append_byte(b, ' ');
    for (const char *p = help; *p && !bad; p++) {
        if (*p == '\\')
            bad = sb_buf_append_str(b, "\\\\");
        else if (*p == '\n')
            bad = sb_buf_append_str(b, "\\n");
        else
            bad = sb_buf_append_byte(b, *p);
    }
    bad = bad || sb_buf_append_str(b, "\n# TYPE ") ||
          sb_buf_append_str(b, name) || sb_buf_append_byte(b, ' ') ||
          sb_buf_append_str(b, type) || sb_buf_append_byte(b, '\n');
    return bad ? -1 : 0;
}

int sb_prom_escape(sb_buf *b, const char *value)
{
    int bad = 0;
    for (const char *p = value; *p && !bad; p++) {
        if (*p == '\\')
            bad = sb_buf_append_str(b, "\\\\");
        else if (*p == '"')
            bad = sb_buf_append_str(b, "\\\"");
        else if (*p == '\n')
            bad = sb_buf_append_str(b, "\\n");
        else
            bad = sb_buf_append_byte(b, *p);
    }
    return bad ? -1 : 0;
}

/* "name{a="x",b="y"" without the closing brace (for `le` to follow), or
 * just the name when there are no labels and no more to come. */
static int series_open(sb_buf *b, const char *name, const char *suffix,
                       const sb_prom_label *labels, size_t nlabels, bool more)
{
    int bad = sb_buf_append_str(b, name) || sb_buf_append_str(b, suffix);
    if (nlabels || more)
        bad = bad || sb_buf_append_byte(b, '{');
    for (size_t i = 0; i < nlabels && !bad; i++)
        bad = (i && sb_buf_append_byte(b, ',')) ||
              sb_buf_append_str(b, labels[i].name) ||
              sb_buf_append_str(b, "=\"") ||
              sb_prom_escape(b, labels[i].value) || sb_buf_append_byte(b, '"');
    return bad ? -1 : 0;
}

static int series_value(sb_buf *b, bool braces, const char *value)
{
    int bad = (braces && sb_buf_append_byte(b, '}')) ||
              sb_buf_append_byte(b, ' ') || sb_buf_append_str(b, value) ||
              sb_buf_append_byte(b, '\n');
    return bad ? -1 : 0;
}

int sb_prom_sample(sb_buf *b, const char *name, const sb_prom_label *labels,
                   size_t nlabels, uint64_t value)
{
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64, value);
    if (series_open(b, name, "", labels, nlabels, false) < 0)
        return -1;
    return series_value(b, nlabels > 0, num);
}

int sb_prom_histogram(sb_buf *b, const char *name, const sb_prom_label *labels,
                      size_t nlabels, const uint64_t *bucket, uint64_t sum_ns)
{
    char num[48];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= SB_DISPATCH_BUCKETS; i++) {
        cumulative += bucket[i];
        snprintf(num, sizeof(num), "%" PRIu64, cumulative);
        const char *le = i < SB_DISPATCH_BUCKETS ? bound_text[i] : "+Inf";
        int bad = series_open(b, name, "_bucket", labels, nlabels, true) ||
                  (nlabels && sb_buf_append_byte(b, ',')) ||
                  sb_buf_append_str(b, "le=\"") || sb_buf_append_str(b, le) ||
                  sb_buf_append_byte(b, '"') || series_value(b, true, num);
        if (bad)
            return -1;
    }
    snprintf(num, sizeof(num), "%" PRIu64 ".%09" PRIu64, sum_ns / 1000000000u,
             sum_ns % 1000000000u);
    if (series_open(b, name, "_sum", labels, nlabels, false) < 0 ||
        series_value(b, nlabels > 0, num) < 0)
        return -1;
    snprintf(num, sizeof(num), "%" PRIu64, cumulative);
    if (series_open(b, name, "_count", labels, nlabels, false) < 0 ||
        series_value(b, nlabels > 0, num) < 0)
        return -1;
    return 0;
}

/* ---- the page ----------------------------------------------------------- */

#define FAMILY(name, type, help)                                               \
    if (sb_prom_family(b, name, type, help) < 0)                               \
        return -1;
#define SAMPLE(name, labels, n, value)                                         \
    if (sb_prom_sample(b, name, labels, n, value) < 0)                         \
        return -1;

static int render_messages(sb_buf *b, const sb_server *s)
{
    const sb_config *cfg = s->config;
    FAMILY("switchboard_messages_received_total", "counter",
           "Messages received, by gateway and event. event=\"\": messages "
           "that reached no handler (malformed envelopes, unknown events).")
    for (size_t g = 0; g < cfg->ngateways; g++) {
        sb_prom_label l[2] = {{"gateway", cfg->gateways[g].name},
                              {"event", ""}};
        size_t pos = 0;
        for (const sb_route *r;
             (r = sb_router_next(&s->plugins->routers[g], &pos));) {
            l[1].value = r->event;
            SAMPLE("switchboard_messages_received_total", l, 2,
                   r->stats.received)
        }
        l[1].value = "";
        SAMPLE("switchboard_messages_received_total", l, 2,
               s->gateway_stats[g].unrouted)
    }
    FAMILY("switchboard_messages_sent_total", "counter",
           "Messages (WebSocket frames) sent, by gateway and event: a "
           "handler's replies count for its event. event=\"\": everything "
           "else (pushes, broadcasts, room messages, exceptions).")
    for (size_t g = 0; g < cfg->ngateways; g++) {
        const sb_gateway_stats *gs = &s->gateway_stats[g];
        sb_prom_label l[2] = {{"gateway", cfg->gateways[g].name},
                              {"event", ""}};
        size_t pos = 0;
        for (const sb_route *r;
             (r = sb_router_next(&s->plugins->routers[g], &pos));) {
            l[1].value = r->event;
            SAMPLE("switchboard_messages_sent_total", l, 2, r->stats.sent)
        }
        l[1].value = "";
        SAMPLE("switchboard_messages_sent_total", l, 2, gs->sent - gs->replies)
    }
    return 0;
}

static int render_dispatch(sb_buf *b, const sb_server *s)
{
    const sb_config *cfg = s->config;
    char help[256];
    snprintf(help, sizeof(help),
             "Time spent in event handlers, by gateway and event. Sampled: "
             "1 in %llu messages of each event is timed, so _count is about "
             "1/%llu of the messages received.",
             (unsigned long long)SB_DISPATCH_SAMPLE,
             (unsigned long long)SB_DISPATCH_SAMPLE);
    FAMILY("switchboard_dispatch_seconds", "histogram", help)
    for (size_t g = 0; g < cfg->ngateways; g++) {
        sb_prom_label l[2] = {{"gateway", cfg->gateways[g].name},
                              {"event", ""}};
        size_t pos = 0;
        for (const sb_route *r;
             (r = sb_router_next(&s->plugins->routers[g], &pos));) {
            l[1].value = r->event;
            if (sb_prom_histogram(b, "switchboard_dispatch_seconds", l, 2,
                                  r->stats.bucket, r->stats.time_ns) < 0)
                return -1;
        }
    }
    return 0;
}

static int render_plugins(sb_buf *b, const sb_server *s)
{
    FAMILY("switchboard_plugin_info", "gauge",
           "Plugins in service (always 1): instance name, the plugin's "
           "version, its generation (1, +1 per reload) and the ABI it was "
           "built for.")
    for (size_t i = 0; i < s->plugins->count; i++) {
        const sb_plugin *p = s->plugins->plugins[i];
        char gen[24], abi[16];
        snprintf(gen, sizeof(gen), "%" PRIu64, p->generation);
        snprintf(abi, sizeof(abi), "%u.%u", (unsigned)p->desc->abi_major,
                 (unsigned)p->desc->abi_minor);
        sb_prom_label l[4] = {{"name", p->name},
                              {"version", p->desc->version},
                              {"generation", gen},
                              {"abi", abi}};
        SAMPLE("switchboard_plugin_info", l, 4, 1)
    }
    return 0;
}

/* The broker of a [cluster] (cluster.h); nothing without one. */
static int render_cluster(sb_buf *b)
{
    const sb_cluster_stats *st = sb_cluster_get_stats();
    if (!st)
        return 0;
    FAMILY("switchboard_cluster_up", "gauge",
           "1 while both connections to the cluster's Redis are up, else 0.")
    SAMPLE("switchboard_cluster_up", NULL, 0, sb_cluster_up() ? 1 : 0)
    FAMILY("switchboard_cluster_reconnects_total", "counter",
           "Times the broker came back after a loss.")
    SAMPLE("switchboard_cluster_reconnects_total", NULL, 0, st->reconnects)
    FAMILY("switchboard_cluster_messages_total", "counter",
           "Bus messages, by direction: out (published by this node), in "
           "(received from Redis, this node's own included).")
    sb_prom_label out = {"direction", "out"}, in = {"direction", "in"};
    SAMPLE("switchboard_cluster_messages_total", &out, 1, st->published)
    SAMPLE("switchboard_cluster_messages_total", &in, 1, st->received)
    FAMILY("switchboard_cluster_deliveries_total", "counter",
           "Frames queued to this node's clients from bus messages.")
    SAMPLE("switchboard_cluster_deliveries_total", NULL, 0, st->deliveries)
    FAMILY("switchboard_cluster_drops_total", "counter",
           "What the broker link dropped, by reason: bad_input (malformed or "
           "foreign bus messages), unavailable (calls refused while the "
           "broker was down or over max_pending), unrouted (messages for a "
           "node or client that is gone), redis_error (error replies), "
           "timeout (connections dropped by a deadline).")
    sb_prom_label r[5] = {{"reason", "bad_input"},
                          {"reason", "unavailable"},
                          {"reason", "unrouted"},
                          {"reason", "redis_error"},
                          {"reason", "timeout"}};
    SAMPLE("switchboard_cluster_drops_total", &r[0], 1, st->bad_input)
    SAMPLE("switchboard_cluster_drops_total", &r[1], 1, st->refused)
    SAMPLE("switchboard_cluster_drops_total", &r[2], 1, st->unrouted)
    SAMPLE("switchboard_cluster_drops_total", &r[3], 1, st->errors)
    SAMPLE("switchboard_cluster_drops_total", &r[4], 1, st->timeouts)
    FAMILY("switchboard_cluster_room_channels", "gauge",
           "Room channels this node is subscribed to (rooms with local "
           "members).")
    SAMPLE("switchboard_cluster_room_channels", NULL, 0, sb_cluster_channels())
    return 0;
}

/* Session recovery ([recovery], recovery.h); nothing without it. */
static int render_recovery(sb_buf *b)
{
    sb_recovery_stats st;
    if (!sb_recovery_get_stats(&st))
        return 0;
    FAMILY("switchboard_recovery_sessions", "gauge",
           "Sessions of dropped clients kept for a resume now.")
    SAMPLE("switchboard_recovery_sessions", NULL, 0, st.sessions)
    FAMILY("switchboard_recovery_history_rooms", "gauge",
           "Rooms that keep a history now.")
    SAMPLE("switchboard_recovery_history_rooms", NULL, 0, st.history_rooms)
    FAMILY("switchboard_recovery_history_bytes", "gauge",
           "Bytes of the room messages kept in every history.")
    SAMPLE("switchboard_recovery_history_bytes", NULL, 0, st.history_bytes)
    FAMILY("switchboard_recovery_resumes_total", "counter",
           "sb:resume answered, by result: resumed (the session was found), "
           "fresh (unknown, expired, used or another identity's token), "
           "unavailable (a fresh session: Redis failed, [cluster]).")
    sb_prom_label res = {"result", "resumed"}, fresh = {"result", "fresh"},
                  unav = {"result", "unavailable"};
    SAMPLE("switchboard_recovery_resumes_total", &res, 1, st.resumed)
    SAMPLE("switchboard_recovery_resumes_total", &fresh, 1, st.fresh)
    SAMPLE("switchboard_recovery_resumes_total", &unav, 1, st.unavailable)
    FAMILY("switchboard_recovery_rooms_total", "counter",
           "Rooms of resumed sessions, by recovered: true (replayed whole), "
           "false (history lost, trimmed or over max_recover).")
    sb_prom_label yes = {"recovered", "true"}, no = {"recovered", "false"};
    SAMPLE("switchboard_recovery_rooms_total", &yes, 1, st.rooms_recovered)
    SAMPLE("switchboard_recovery_rooms_total", &no, 1, st.rooms_lost)
    return 0;
}

int sb_metrics_render(sb_buf *b, const sb_server *s)
{
    const sb_config *cfg = s->config;
    FAMILY("switchboard_connections", "gauge",
           "WebSocket clients connected now, by gateway.")
    for (size_t g = 0; g < cfg->ngateways; g++) {
        sb_prom_label l = {"gateway", cfg->gateways[g].name};
        SAMPLE("switchboard_connections", &l, 1,
               s->gateway_clients ? s->gateway_clients[g] : 0)
    }
    FAMILY("switchboard_connections_total", "counter",
           "WebSocket clients accepted since start, by gateway.")
    for (size_t g = 0; g < cfg->ngateways; g++) {
        sb_prom_label l = {"gateway", cfg->gateways[g].name};
        SAMPLE("switchboard_connections_total", &l, 1,
               s->gateway_stats[g].connections_total)
    }
    if (render_messages(b, s) < 0)
        return -1;
    FAMILY("switchboard_exceptions_total", "counter",
           "Messages that got an `exception` reply, by reason; unknown_event "
           "counts unknown events also when they are ignored, rate_limited "
           "every message dropped (one exception a burst), too_big and "
           "send_queue_full clients closed with 1009 and 1008 (send_queue_full "
           "also those closed for send_queue_budget).")
    for (int r = 0; r < SB_EXC_COUNT; r++) {
        sb_prom_label l = {"reason", sb_exc_reason_name((sb_exc_reason)r)};
        SAMPLE("switchboard_exceptions_total", &l, 1, s->stats.exceptions_by[r])
    }
    if (render_dispatch(b, s) < 0)
        return -1;
    FAMILY("switchboard_send_queue_bytes", "gauge",
           "Bytes queued for clients and not yet written to their sockets, "
           "by gateway.")
    uint64_t queued[SB_MAX_GATEWAYS] = {0};
    for (const sb_client *c = s->clients; c; c = c->next)
        if (c->tx.len > LWS_PRE && c->gateway < SB_MAX_GATEWAYS)
            queued[c->gateway] += c->tx.len - LWS_PRE;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        sb_prom_label l = {"gateway", cfg->gateways[g].name};
        SAMPLE("switchboard_send_queue_bytes", &l, 1, queued[g])
    }
    FAMILY("switchboard_send_memory_bytes", "gauge",
           "Bytes of all send queues together, with what libwebsockets still "
           "holds of earlier writes (an upper bound): what send_queue_budget "
           "limits.")
    SAMPLE("switchboard_send_memory_bytes", NULL, 0, s->send_bytes)
    FAMILY("switchboard_fd_refused_total", "counter",
           "Connections refused because the process was near its descriptor "
           "limit: HTTP 503, or closed at once for the last few descriptors.")
    SAMPLE("switchboard_fd_refused_total", NULL, 0, s->stats.fd_refused)
    FAMILY("switchboard_accept_pauses_total", "counter",
           "Times the listeners stopped accepting for 250 ms: out of "
           "descriptors, or accept() failed.")
    SAMPLE("switchboard_accept_pauses_total", NULL, 0, s->stats.accept_pauses)
    FAMILY("switchboard_connections_own_path", "gauge",
           "Clients whose connection the server reads and writes itself "
           "since their upgrade; libwebsockets reads the others (TLS, or "
           "own_data_path = false).")
    uint64_t own = 0;
    for (const sb_client *c = s->clients; c; c = c->next)
        own += c->io != NULL;
    SAMPLE("switchboard_connections_own_path", NULL, 0, own)
    FAMILY("switchboard_own_path_io_uring", "gauge",
           "1 when the own data path reads and writes a loop turn's sockets "
           "with one io_uring submission each; 0 when with one recv() and "
           "send() each (io_uring = false, a build without liburing, or a "
           "kernel that refuses io_uring: the log says which).")
    SAMPLE("switchboard_own_path_io_uring", NULL, 0,
           (uint64_t)sb_wsio_batching(s))
    FAMILY("switchboard_reloads_total", "counter",
           "Reloads (SIGHUP, POST /reload, file watches), by result: ok (per "
           "plugin loaded, replaced or removed), failed (the old version kept "
           "serving), or unchanged (nothing to apply).")
    sb_prom_label ok = {"result", "ok"}, failed = {"result", "failed"},
                  unchanged = {"result", "unchanged"};
    SAMPLE("switchboard_reloads_total", &ok, 1, s->stats.reloads_ok)
    SAMPLE("switchboard_reloads_total", &failed, 1, s->stats.reloads_failed)
    SAMPLE("switchboard_reloads_total", &unchanged, 1,
           s->stats.reloads_unchanged)
    if (render_cluster(b) < 0 || render_recovery(b) < 0)
        return -1;
    return render_plugins(b, s);
}

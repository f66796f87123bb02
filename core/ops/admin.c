/*
 * admin — see admin.h.
 *
 * Every answer is built whole in memory and written with one lws_write()
 * right after its headers; lws keeps whatever the socket does not take and
 * finishes the transaction once it is sent, so the handler never waits for
 * WRITEABLE. Bodies are small (a few KiB of metrics per dozen events).
 *
 * A request with a body (a POST) is answered only after the body has been
 * read and thrown away: answering first would leave its bytes to be taken
 * for the next request on a kept-alive connection.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "cluster.h"
#include "log.h"
#include "plugin_host.h"
#include "metrics.h"
#include "reload.h"
#include "version.h"

/* The largest request body read (and discarded); more is refused. */
#define ADMIN_MAX_BODY (64 * 1024)

typedef struct sb_admin {
    struct lws_vhost *vhost;
    char *token;         /* owned copy; NULL: no authentication */
    uint64_t started_ns; /* uv_hrtime() at start, for uptime */
    uint64_t started_ms; /* wall clock at start, ms since the epoch */
} sb_admin;

enum method { M_GET, M_POST, M_OTHER };

/* Per HTTP connection (lws' per-session memory, zeroed by lws). */
typedef struct admin_session {
    /* The request whose body is being read, answered once it is. */
    bool pending;
    enum method method;
    char path[32];
} admin_session;

static sb_server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- answers ------------------------------------------------------------ */

/* Writes status, headers and body (body->data from LWS_PRE on; may be
 * empty), then ends the transaction. 0, or -1 to drop the connection. */
static int respond(struct lws *wsi, unsigned status, const char *type,
                   const sb_buf *body, const char *header, const char *value)
{
    unsigned char head[LWS_PRE + 512];
    unsigned char *start = head + LWS_PRE, *p = start;
    unsigned char *end = head + sizeof(head) - 1;
    size_t n = body->len > LWS_PRE ? body->len - LWS_PRE : 0;
    if (lws_add_http_common_headers(wsi, status, type, n, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &p, end) ||
        (header &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)header,
                                     (const unsigned char *)value,
                                     (int)strlen(value), &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (n && lws_write(wsi, (unsigned char *)body->data + LWS_PRE, n,
                       LWS_WRITE_HTTP_FINAL) < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Room for lws in front of a body. 0, or -1 when out of memory. */
static int body_begin(sb_buf *b)
{
    if (sb_buf_reserve(b, LWS_PRE + 256) < 0)
        return -1;
    b->len = LWS_PRE;
    return 0;
}

/* Answers with a JSON document (stolen; NULL is taken as out of memory). */
static int respond_json(struct lws *wsi, unsigned status, json_t *doc,
                        const char *header, const char *value)
{
    sb_buf b = {0};
    /* Six significant digits: a reload's duration in ms needs no more. */
    const size_t flags = JSON_INDENT(2) | JSON_REAL_PRECISION(6);
    size_t need = doc ? json_dumpb(doc, NULL, 0, flags) : 0;
    int rc = -1;
    if (need && body_begin(&b) == 0 && sb_buf_reserve(&b, need + 1) == 0) {
        b.len += json_dumpb(doc, b.data + b.len, need, flags);
        b.data[b.len++] = '\n';
        rc = respond(wsi, status, "application/json", &b, header, value);
    } else {
        sb_log_error("admin", "out of memory answering a request");
    }
    json_decref(doc);
    sb_buf_free(&b);
    return rc;
}

/* {"error": why} with the status. */
static int respond_error(struct lws *wsi, unsigned status, const char *why,
                         const char *header, const char *value)
{
    return respond_json(wsi, status, json_pack("{ss}", "error", why), header,
                        value);
}

static int respond_text(struct lws *wsi, unsigned status, const char *text)
{
    sb_buf b = {0};
    int rc = -1;
    if (body_begin(&b) == 0 && sb_buf_append_str(&b, text) == 0)
        rc = respond(wsi, status, "text/plain; charset=utf-8", &b, NULL, NULL);
    sb_buf_free(&b);
    return rc;
}

/* ---- what is asked ------------------------------------------------------ */

/* Ready: not stopping, and every gateway listening. Every plugin the
 * config requires is loaded too, by construction: main.c loads them all
 * before the server starts (or does not start it), this listener opens
 * only after the gateways, and the loop answers its first request only
 * after the plugins' ready hooks ran. A reload never leaves a required
 * plugin out: a failed one keeps its old version serving. */
static bool is_ready(const sb_server *s)
{
    if (s->stopping || s->destroyed || !s->vhosts)
        return false;
    for (size_t g = 0; g < s->config->ngateways; g++)
        if (!s->vhosts[s->listener_of[g]])
            return false;
    return true;
}

static int answer_metrics(struct lws *wsi, const sb_server *s)
{
    sb_buf b = {0};
    int rc = -1;
    if (body_begin(&b) == 0 && sb_metrics_render(&b, s) == 0)
        rc = respond(wsi, HTTP_STATUS_OK,
                     "text/plain; version=0.0.4; "
                     "charset=utf-8",
                     &b, NULL, NULL);
    else
        sb_log_error("admin", "out of memory rendering /metrics");
    sb_buf_free(&b);
    return rc;
}

/* "2026-11-26T14:03:07.123Z" for ms since the epoch. */
static json_t *iso_time(uint64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char text[64];
    gmtime_r(&secs, &tm);
    snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(text);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The events a plugin handles, sorted: its routes in the first gateway it
 * serves (it subscribes the same events on every one). */
static json_t *plugin_events(const sb_server *s, const sb_plugin *p)
{
    json_t *events = json_array();
    for (size_t g = 0; g < s->config->ngateways; g++) {
        if (!sb_plugin_serves(p, g))
            continue;
        const sb_router *rt = &s->plugins->routers[g];
        size_t total = sb_router_count(rt), n = 0, pos = 0;
        const char **names = calloc(total ? total : 1, sizeof(*names));
        for (const sb_route *r; names && (r = sb_router_next(rt, &pos));)
            if (r->owner == p)
                names[n++] = r->event;
        if (names)
            qsort(names, n, sizeof(*names), by_name);
        for (size_t i = 0; names && i < n; i++)
            json_array_append_new(events, json_string(names[i]));
        free(names);
        break;
    }
    return events;
}

static json_t *status_plugins(const sb_server *s)
{
    json_t *list = json_array();
    for (size_t i = 0; i < s->plugins->count; i++) {
        const sb_plugin *p = s->plugins->plugins[i];
        char abi[16];
        snprintf(abi, sizeof(abi), "%u.%u", (unsigned)p->desc->abi_major,
                 (unsigned)p->desc->abi_minor);
        json_t *gateways = json_array();
        for (size_t g = 0; g < s->config->ngateways; g++)
            if (sb_plugin_serves(p, g))
                json_array_append_new(gateways,
                                      json_string(s->config->gateways[g].name));
        json_array_append_new(
            list, json_pack("{ss ss ss ss ss sI so* so* so*}", "name", p->name,
                            "plugin", p->desc->name, "version",
                            p->desc->version, "abi", abi, "file", p->file,
                            "generation", (json_int_t)p->generation,
                            "loaded_at", iso_time(p->loaded_at_ms), "gateways",
                            gateways, "events", plugin_events(s, p)));
    }
    return list;
}

static json_t *status_gateways(const sb_server *s)
{
    json_t *list = json_array();
    for (size_t g = 0; g < s->config->ngateways; g++) {
        const sb_server_conf *conf = &s->config->gateways[g].conf;
        int port = sb_server_gateway_port(s, g);
        json_array_append_new(
            list, json_pack("{ss ss ss si ss sI}", "name",
                            s->config->gateways[g].name, "host",
                            conf->host && *conf->host ? conf->host : "*",
                            "scheme", conf->tls_cert ? "wss" : "ws", "port",
                            port ? port : conf->port, "path", conf->path,
                            "connections", (json_int_t)s->gateway_clients[g]));
    }
    return list;
}

static int answer_status(struct lws *wsi, const sb_server *s)
{
    const sb_admin *a = s->admin;
    char abi[16];
    snprintf(abi, sizeof(abi), "%d.%d", SB_ABI_MAJOR, SB_ABI_MINOR);
    json_t *reloads =
        json_pack("{sI sI sI}", "ok", (json_int_t)s->stats.reloads_ok, "failed",
                  (json_int_t)s->stats.reloads_failed, "unchanged",
                  (json_int_t)s->stats.reloads_unchanged);
    json_t *cluster = NULL;
    if (sb_cluster_instance) {
        const sb_cluster_stats *st = sb_cluster_get_stats();
        cluster = json_pack(
            "{ss sI ss sb sI sI sI sI sI sI sI sI}", "broker",
            sb_cluster_state(), "node", (json_int_t)sb_cluster_node(), "name",
            sb_cluster_node_name(), "connected", sb_cluster_up(), "reconnects",
            (json_int_t)st->reconnects, "messages_out",
            (json_int_t)st->published, "messages_in", (json_int_t)st->received,
            "bad_input", (json_int_t)st->bad_input, "unavailable",
            (json_int_t)st->refused, "unrouted", (json_int_t)st->unrouted,
            "timeouts", (json_int_t)st->timeouts, "room_channels",
            (json_int_t)sb_cluster_channels());
    }
    json_t *doc = json_pack(
        "{ss ss sI so* sI sb sb sI so* so* so*}", "version", SB_VERSION, "abi",
        abi, "pid", (json_int_t)getpid(), "started_at", iso_time(a->started_ms),
        "uptime_s", (json_int_t)((uv_hrtime() - a->started_ns) / 1000000000u),
        "ready", is_ready(s), "stopping", s->stopping, "connections",
        (json_int_t)s->nclients, "gateways", status_gateways(s), "plugins",
        status_plugins(s), "reloads", reloads);
    if (doc && cluster)
        json_object_set_new(doc, "cluster", cluster);
    else
        json_decref(cluster);
    return respond_json(wsi, HTTP_STATUS_OK, doc, NULL, NULL);
}

static int answer_reload(struct lws *wsi, sb_server *s)
{
    char peer[64] = "?";
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    if (s->stopping)
        return respond_error(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                             "shutting down", NULL, NULL);
    sb_log_info("admin", "reload requested by %s (POST /reload)", peer);
    json_t *summary = NULL;
    int failures = sb_reload_run(s, &summary);
    /* A failed reload changed nothing, but it did not do what was asked:
     * a 5xx, so that `curl -f` and scripts notice. */
    return respond_json(
        wsi, failures ? HTTP_STATUS_INTERNAL_SERVER_ERROR : HTTP_STATUS_OK,
        summary, NULL, NULL);
}

/* ---- requests ----------------------------------------------------------- */

/* The request carries "Authorization: Bearer <token>" with our token. The
 * comparison takes the same time whatever the bytes, so timing tells an
 * attacker nothing about how much of a guess was right. */
static bool authorized(struct lws *wsi, const sb_admin *a)
{
    if (!a->token)
        return true;
    char value[1024];
    int n =
        lws_hdr_copy(wsi, value, sizeof(value), WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n < 7 || strncasecmp(value, "Bearer ", 7) != 0)
        return false;
    const char *given = value + 7;
    while (*given == ' ')
        given++;
    size_t glen = strlen(given);
    while (glen && given[glen - 1] == ' ')
        glen--;
    size_t wlen = strlen(a->token);
    unsigned diff = glen != wlen;
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)(a->token[i] ^ (i < glen ? given[i] : 0));
    return diff == 0;
}

static int answer(struct lws *wsi, sb_server *s, const char *path,
                  enum method method)
{
    bool post = method == M_POST;
    static const char *const get_paths[] = {"/healthz", "/readyz", "/metrics",
                                            "/status"};
    bool get_path = false;
    for (size_t i = 0; i < sizeof(get_paths) / sizeof(get_paths[0]); i++)
        get_path = get_path || strcmp(path, get_paths[i]) == 0;
    bool reload_path = strcmp(path, "/reload") == 0;

    sb_log_debug("admin", "%s %s",
                 post              ? "POST"
                 : method == M_GET ? "GET"
                                   : "(other method)",
                 path);
    if (!authorized(wsi, s->admin))
        return respond_error(
            wsi, HTTP_STATUS_UNAUTHORIZED,
            "a valid 'Authorization: Bearer' token is "
            "required",
            "www-authenticate:", "Bearer realm=\"switchboard\"");
    if (!get_path && !reload_path)
        return respond_error(wsi, HTTP_STATUS_NOT_FOUND, "no such endpoint",
                             NULL, NULL);
    if (method == M_OTHER || post != reload_path)
        return respond_error(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED,
                             "method not allowed",
                             "allow:", reload_path ? "POST" : "GET");
    if (reload_path)
        return answer_reload(wsi, s);
    if (strcmp(path, "/healthz") == 0)
        return respond_text(wsi, HTTP_STATUS_OK, "ok\n");
    /* A node whose broker is down still serves its own clients: it stays
     * ready (taking every node out of service when Redis fails would turn
     * a cluster problem into an outage), and says so. */
    if (strcmp(path, "/readyz") == 0 && is_ready(s) && sb_cluster_instance)
        return respond_text(wsi, HTTP_STATUS_OK,
                            sb_cluster_up() ? "ready\nbroker connected\n"
                                            : "ready\nbroker down\n");
    if (strcmp(path, "/readyz") == 0)
        return is_ready(s) ? respond_text(wsi, HTTP_STATUS_OK, "ready\n")
                           : respond_text(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                                          s->stopping ? "shutting down\n"
                                                      : "not ready\n");
    if (strcmp(path, "/metrics") == 0)
        return answer_metrics(wsi, s);
    return answer_status(wsi, s);
}

/* When to answer follows lws' rules for request bodies (lws 4.1,
 * lws_http_action()): a body announced by Content-Length is read first, and
 * the answer waits for LWS_CALLBACK_HTTP_BODY_COMPLETION, which lws also
 * sends for a POST with an explicit "Content-Length: 0". A POST, PUT or
 * PATCH without Content-Length is taken by lws to carry up to 100 MB: it is
 * answered at once and its connection closed, or lws would read the next
 * request as that body. */
static int on_request(struct lws *wsi, admin_session *as, const char *uri)
{
    enum method method =
        lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0    ? M_GET
        : lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0 ? M_POST
                                                            : M_OTHER;
    char length[24];
    bool has_length = lws_hdr_copy(wsi, length, sizeof(length),
                                   WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    long long body = has_length ? atoll(length) : 0;
    if (body > ADMIN_MAX_BODY) {
        /* Not worth reading: answer, and close rather than keep alive. */
        respond_error(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE,
                      "request body too large", NULL, NULL);
        return -1;
    }
    if (body > 0 || (method == M_POST && has_length)) {
        as->pending = true;
        as->method = method;
        snprintf(as->path, sizeof(as->path), "%s", uri);
        return 0;
    }
    int rc = answer(wsi, server_of(wsi), uri, method);
    return method == M_GET ? rc : -1;
}

static int admin_callback(struct lws *wsi, enum lws_callback_reasons reason,
                          void *user, void *in, size_t len)
{
    admin_session *as = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* No WebSocket here; the gateways have their own ports. */
        if (lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
                                   "No WebSocket on the admin port"))
            return -1;
        return 1;
    case LWS_CALLBACK_HTTP:
        return on_request(wsi, as, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        return 0; /* read and dropped */
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!as->pending)
            return 0;
        as->pending = false;
        return answer(wsi, server_of(wsi), as->path, as->method);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static struct lws_protocols admin_protocols[] = {
    {.name = "switchboard-admin",
     .callback = admin_callback,
     .per_session_data_size = sizeof(admin_session),
     .rx_buffer_size = 0,
     .tx_packet_size = 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* ---- start and stop ----------------------------------------------------- */

int sb_admin_start(sb_server *s)
{
    const sb_admin_conf *conf = &s->config->admin;
    if (!conf->port)
        return 0;
    sb_admin *a = calloc(1, sizeof(*a));
    if (!a || (conf->token && !(a->token = strdup(conf->token)))) {
        free(a);
        sb_log_error("admin", "out of memory");
        return -1;
    }
    a->started_ns = uv_hrtime();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a->started_ms =
        (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    s->admin = a;

    const char *host = conf->host ? conf->host : "127.0.0.1";
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.port = conf->port;
    info.iface = host;
    /* lws 4.1 copies an IPv4 address given for an IPv6 socket into the
     * wrong place and binds "::", every interface: an IPv4 address gets an
     * IPv4 socket. */
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.protocols = admin_protocols;
    info.vhost_name = "admin";
    a->vhost = lws_create_vhost(s->lws, &info);
    if (!a->vhost) {
        sb_log_error("admin", "cannot listen on %s:%d (is the port in use?)",
                     host, conf->port);
        return -1;
    }
    sb_log_info("admin", "listening on http://%s:%d/ (%s)", host,
                lws_get_vhost_listen_port(a->vhost),
                a->token ? "bearer token required" : "no token");
    return 0;
}

void sb_admin_free(sb_server *s)
{
    if (!s->admin)
        return;
    free(s->admin->token);
    free(s->admin);
    s->admin = NULL;
}

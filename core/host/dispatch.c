/*
 * dispatch — the hot path of a message.
 *
 * The envelope is validated whole by one scan that builds no tree; `data`
 * stays raw text unless the handler asks for it as a json_t. Replies are
 * composed straight into the client's send queue: a pass-through reply is a
 * memcpy, a json_t reply is encoded by jansson into a reused scratch buffer.
 * Nothing here allocates per message in the steady state.
 */
#include "dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "crash.h"
#include "log.h"
#include "plugin_host.h"
#include "server.h"

/* Reused encoding buffer for json_t replies (loop thread only). */
static sb_buf scratch;

static bool span_is_null(sb_span s)
{
    return s.ptr && s.len == 4 && memcmp(s.ptr, "null", 4) == 0;
}

/* Whether every object key in v is UTF-8. jansson 2.14's encoder checks
 * string values but ignores its own failure on a key (one made with a
 * _nocheck call) and goes on, writing broken JSON. A value nested deeper
 * than SB_ENCODE_MAX_DEPTH (or one that contains itself, which jansson
 * refuses too) is refused rather than walked for ever. */
#define SB_ENCODE_MAX_DEPTH 10000
static bool keys_valid(json_t *v, unsigned depth)
{
    if (depth > SB_ENCODE_MAX_DEPTH)
        return false;
    const char *key;
    json_t *member;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, key, member)
        {
            if (!sb_utf8_valid(key, strlen(key)) ||
                !keys_valid(member, depth + 1))
                return false;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, member)
        {
            if (!keys_valid(member, depth + 1))
                return false;
        }
    }
    return true;
}

/* Encodes a json_t into `scratch`. 0, or -1 (SB_ERR_JSON / NOMEM). */
static int encode(json_t *v)
{
    if (!keys_valid(v, 0))
        return SB_ERR_JSON;
    size_t need = json_dumpb(v, scratch.data, scratch.cap,
                             JSON_COMPACT | JSON_ENCODE_ANY);
    if (need == 0)
        return SB_ERR_JSON;
    if (need > scratch.cap) {
        scratch.len = 0;
        if (sb_buf_reserve(&scratch, need) < 0)
            return SB_ERR_NOMEM;
        need = json_dumpb(v, scratch.data, scratch.cap,
                          JSON_COMPACT | JSON_ENCODE_ANY);
        if (need == 0)
            return SB_ERR_JSON;
    }
    scratch.len = need;
    return SB_OK;
}

/* Appends {"event":E[,"data":D][,"id":I]}, D and I being JSON text.
 * 0, or -1 when out of memory. */
static int append_envelope(sb_buf *b, const char *event, size_t event_len,
                           const char *data, size_t data_len, sb_span id)
{
    int bad = sb_buf_append(b, "{\"event\":", 9) ||
              sb_json_append_string(b, event, event_len);
    if (!bad && data)
        bad = sb_buf_append(b, ",\"data\":", 8) ||
              sb_buf_append(b, data, data_len);
    if (!bad && id.ptr)
        bad =
            sb_buf_append(b, ",\"id\":", 6) || sb_buf_append(b, id.ptr, id.len);
    if (!bad)
        bad = sb_buf_append_byte(b, '}');
    return bad ? -1 : 0;
}

/* Queues {"event":E[,"data":D][,"id":I]} where D is JSON text. */
static int queue_envelope(sb_client *c, const char *event, size_t event_len,
                          const char *data, size_t data_len, sb_span id)
{
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return sb_client_queue_status(c);
    if (append_envelope(&c->tx, event, event_len, data, data_len, id) < 0) {
        sb_client_frame_abort(c, start);
        return SB_ERR_NOMEM;
    }
    return sb_client_frame_end(c, start, SB_WS_TEXT);
}

/* Runs the event guards of the plugins serving the message's gateway, up
 * to the first that denies: returns non-zero or calls fail() (its message
 * recorded in the message). Returns that guard's status, *denier being its
 * plugin (NULL when none denied). */
static int run_guards(sb_plugin_host *h, size_t gateway, sb_message *m,
                      const sb_plugin **denier)
{
    *denier = NULL;
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->guard || !sb_plugin_serves(p, gateway))
            continue;
        sb_crash_enter(p->name, "event guard", NULL);
        int rc = p->guard(p, m, p->guard_ud);
        sb_crash_leave();
        /* A guard that called fail() denies, whatever it returned. */
        if (rc != SB_OK || m->failed) {
            *denier = p;
            return rc;
        }
    }
    return SB_OK;
}

/* The name and meaning of a callback's return value, for the log. */
static void describe_status(int rc, char *out, size_t outlen)
{
    static const char *const names[] = {
        "SB_OK",         "SB_ERR_INVALID",   "SB_ERR_STATE",
        "SB_ERR_EXISTS", "SB_ERR_NOT_FOUND", "SB_ERR_NOMEM",
        "SB_ERR_CLOSED", "SB_ERR_LIMIT",     "SB_ERR_JSON",
        "SB_ERR_FAILED", "SB_ERR_CANCELLED"};
    if (rc <= 0 && rc > -(int)(sizeof(names) / sizeof(names[0])))
        snprintf(out, outlen, "%s: %s", names[-rc], sb_host_table.strerror(rc));
    else if (rc > 0)
        /* Positive values are taken for errno codes, a common C habit. */
        snprintf(out, outlen, "as errno: %s", strerror(rc));
    else
        snprintf(out, outlen, "not an sb_status; as -errno: %s", strerror(-rc));
}

/* A guard or handler that reported failure without saying why: the client
 * only gets "Internal server error", so the operator and the plugin's
 * author get the details. At most one such line a second, so that a
 * broken handler cannot flood the log; the next line counts the rest. */
static void warn_silent_failure(const sb_server *s, const sb_plugin *p,
                                const char *what, const char *event, int rc)
{
    static uint64_t next_ms;
    static unsigned long quiet;
    uint64_t now = uv_now(s->loop);
    if (now < next_ms) {
        quiet++;
        return;
    }
    next_ms = now + 1000;
    char desc[128];
    describe_status(rc, desc, sizeof(desc));
    char more[64] = "";
    if (quiet)
        snprintf(more, sizeof(more), " (and %lu more such failures)", quiet);
    quiet = 0;
    sb_log_warn("dispatch",
                "plugin '%s': the %s of event '%s' returned %d (%s) without "
                "calling fail(); the client got \"Internal server error\". "
                "Use `return host->fail(msg, \"...\")` to tell it why%s",
                p ? p->name : "?", what, event, rc, desc, more);
}

/* A raw gateway's message (`envelope = none`): the whole payload goes to
 * the frame hook of the plugin serving the gateway, after its guards. A
 * guard or hook that fails is logged and counted; the client gets nothing,
 * there being no error message in a protocol the gateway does not know. */
int sb_dispatch_raw(sb_client *c, const char *buf, size_t len, bool text)
{
    static const sb_envelope none; /* event "", no data, no id */
    sb_server *s = c->server;
    s->stats.messages_received++;
    if (text && !sb_utf8_valid(buf, len))
        return SB_DISPATCH_BAD_UTF8;
    const sb_plugin *owner = sb_plugin_host_frame_owner(s->plugins, c->gateway);
    if (!owner) {
        s->gateway_stats[c->gateway].unrouted++;
        return 0;
    }
    sb_message m;
    memset(&m, 0, offsetof(sb_message, fail_text));
    m.client = c;
    m.env = &none;
    m.frame = buf ? buf : "";
    m.frame_len = len;
    m.binary = !text;
    const sb_plugin *culprit;
    sb_exc_reason failure = SB_EXC_GUARD_DENIED;
    int rc = run_guards(s->plugins, c->gateway, &m, &culprit);
    if (rc == SB_OK && !m.failed) {
        failure = SB_EXC_HANDLER_FAILED;
        culprit = owner;
        sb_plugin *p = (sb_plugin *)owner;
        sb_crash_enter(p->name, "frame hook", NULL);
        rc = p->frame(p, &m, p->frame_ud);
        sb_crash_leave();
    }
    if (rc != SB_OK || m.failed) {
        s->stats.exceptions_by[failure]++;
        if (!m.failed)
            warn_silent_failure(s, culprit,
                                failure == SB_EXC_GUARD_DENIED ? "guard"
                                                               : "frame hook",
                                "(raw)", rc);
        sb_log_debug("dispatch", "client %llu: %s of a raw message failed: %s",
                     (unsigned long long)c->id,
                     failure == SB_EXC_GUARD_DENIED ? "guard" : "frame hook",
                     m.failed ? m.fail_text : "no reason given");
    }
    return 0;
}

int sb_dispatch(sb_client *c, const char *buf, size_t len, bool text)
{
    sb_server *s = c->server;
    const sb_server_conf *conf = sb_client_conf(c);
    sb_envelope env;

    s->stats.messages_received++;
    sb_env_status st = sb_envelope_parse(buf, len, conf->max_json_depth, &env);
    /* A document the scan accepts is valid UTF-8, so text frames are only
     * checked on the way to an error: not UTF-8 at all is a protocol
     * matter (close 1007), not a JSON one. */
    if (st != SB_ENV_OK && text && !sb_utf8_valid(buf, len))
        return SB_DISPATCH_BAD_UTF8;
    if (st != SB_ENV_OK) {
        s->stats.exceptions_by[sb_exc_of_env(st)]++;
        s->gateway_stats[c->gateway].unrouted++;
        sb_log_debug("dispatch", "client %llu: %s", (unsigned long long)c->id,
                     env.error);
        sb_send_exception(c, env.error, NULL, (sb_span){0}, env.id);
        return 0;
    }
    const sb_route *route = sb_router_find(&s->plugins->routers[c->gateway],
                                           env.event, env.event_len);
    if (!route) {
        s->stats.unknown_events++;
        s->stats.exceptions_by[SB_EXC_UNKNOWN_EVENT]++;
        s->gateway_stats[c->gateway].unrouted++;
        sb_log_debug("dispatch", "client %llu: no handler for '%s'",
                     (unsigned long long)c->id, env.event);
        if (sb_client_conf(c)->unknown_event == SB_UNKNOWN_EXCEPTION) {
            char why[SB_EVENT_MAX + 48];
            snprintf(why, sizeof(why), "There is no handler for event '%s'",
                     env.event);
            sb_send_exception(c, why, env.event, env.data, env.id);
        }
        return 0;
    }

    sb_message m;
    m.client = c;
    m.env = &env;
    m.route = route;
    m.frame = NULL;
    m.data = NULL;
    m.data_loaded = 0;
    m.failed = 0;
    /* The route's own count picks the messages whose handler is timed
     * (router.h: SB_DISPATCH_SAMPLE). */
    sb_route_stats *rs = sb_route_stats_of(route);
    bool timed = (rs->received++ & (SB_DISPATCH_SAMPLE - 1)) == 0;
    sb_exc_reason failure = SB_EXC_GUARD_DENIED;
    /* Guards run first, in config order; a denial is an exception like a
     * failed handler's. */
    const sb_plugin *culprit;
    int rc = run_guards(s->plugins, c->gateway, &m, &culprit);
    if (rc == SB_OK && !m.failed) {
        failure = SB_EXC_HANDLER_FAILED;
        culprit = route->owner;
        sb_crash_enter(route->owner->name, "handler of event", env.event);
        uint64_t t0 = timed ? uv_hrtime() : 0;
        rc = route->fn(route->owner, &m, route->udata);
        if (timed)
            sb_route_observe(rs, uv_hrtime() - t0);
        sb_crash_leave();
    }
    /* A recorded failure is sent whatever the callback returned. */
    if (rc != SB_OK || m.failed) {
        s->stats.exceptions_by[failure]++;
        const char *why = m.failed ? m.fail_text : "Internal server error";
        if (!m.failed)
            warn_silent_failure(s, culprit,
                                failure == SB_EXC_GUARD_DENIED ? "guard"
                                                               : "handler",
                                env.event, rc);
        sb_log_debug("dispatch", "client %llu: %s of '%s' failed: %s",
                     (unsigned long long)c->id,
                     failure == SB_EXC_GUARD_DENIED ? "guard" : "handler",
                     env.event, why);
        sb_send_exception(c, why, env.event, env.data, env.id);
    }
    if (m.data)
        json_decref(m.data);
    return 0;
}

/* ---- host table: the message being handled ---------------------------- */

/* An event name from a plugin: a client routes on it, so one that is not
 * UTF-8 is refused rather than repaired into a name nobody handles. */
static bool event_ok(const char *event)
{
    return event && *event && sb_utf8_valid(event, strlen(event));
}

int sb_envelope_compose(sb_buf *b, const char *event, json_t *data, sb_span id)
{
    int rc = SB_OK;
    if (!event_ok(event)) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    bool has_data = data != NULL;
    if (data)
        rc = encode(data);
    json_decref(data);
    if (rc != SB_OK)
        return rc;
    return append_envelope(b, event, strlen(event),
                           has_data ? scratch.data : NULL, scratch.len, id) < 0
               ? SB_ERR_NOMEM
               : SB_OK;
}

/* Frames queued to the gateway so far: the difference across a reply call
 * is what that reply queued (client.c counts every frame). */
static uint64_t sent_so_far(const sb_message *m)
{
    return m->client->server->gateway_stats[m->client->gateway].sent;
}

/* Counts what a handler's reply queued, for its route and gateway. */
static int count_reply(const sb_message *m, uint64_t before, int rc)
{
    sb_gateway_stats *gs =
        &m->client->server->gateway_stats[m->client->gateway];
    sb_route_stats_of(m->route)->sent += gs->sent - before;
    gs->replies += gs->sent - before;
    return rc;
}

const char *sb_msg_gateway(const sb_message *m)
{
    return m ? m->client->server->config->gateways[m->client->gateway].name
             : NULL;
}

const void *sb_msg_frame(const sb_message *m, size_t *len, int *binary)
{
    if (len)
        *len = m && m->frame ? m->frame_len : 0;
    if (binary)
        *binary = m && m->frame ? m->binary : 0;
    return m ? m->frame : NULL;
}

const char *sb_msg_event(const sb_message *m)
{
    return m ? m->env->event : NULL;
}

sb_client_id sb_msg_client(const sb_message *m)
{
    return m ? m->client->id : 0;
}

json_t *sb_msg_data(sb_message *m)
{
    if (!m || !m->env->data.ptr)
        return NULL;
    if (!m->data_loaded) {
        m->data_loaded = 1;
        /* The scan already validated this text with jansson's own rules, so
         * decoding can fail only for lack of memory. */
        m->data = sb_json_decode(m->env->data.ptr, m->env->data.len);
    }
    return m->data;
}

const char *sb_msg_data_raw(const sb_message *m, size_t *len)
{
    if (!m || !m->env->data.ptr) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = m->env->data.len;
    return m->env->data.ptr;
}

const char *sb_msg_id_raw(const sb_message *m, size_t *len)
{
    if (!m || !m->env->id.ptr) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = m->env->id.len;
    return m->env->id.ptr;
}

int sb_msg_reply(sb_message *m, const char *event, json_t *data)
{
    int rc;
    if (!m || !m->route || !event_ok(event)) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    uint64_t before = sent_so_far(m);
    if (!data) {
        rc = queue_envelope(m->client, event, strlen(event), NULL, 0,
                            m->env->id);
    } else if ((rc = encode(data)) == SB_OK) {
        rc = queue_envelope(m->client, event, strlen(event), scratch.data,
                            scratch.len, m->env->id);
    }
    json_decref(data);
    return count_reply(m, before, rc);
}

int sb_msg_reply_raw(sb_message *m, const char *event, const char *json,
                     size_t len)
{
    if (!m || !m->route || !event_ok(event) || !json)
        return SB_ERR_INVALID;
    sb_span value;
    char why[64];
    if (sb_json_validate(json, len,
                         m->client->server->config->server.max_json_depth,
                         &value, why, sizeof(why)) != SB_ENV_OK)
        return SB_ERR_JSON;
    uint64_t before = sent_so_far(m);
    return count_reply(m, before,
                       queue_envelope(m->client, event, strlen(event),
                                      value.ptr, value.len, m->env->id));
}

int sb_msg_reply_value(sb_message *m, json_t *value)
{
    int rc = SB_OK;
    if (!m || !m->route) {
        json_decref(value);
        return SB_ERR_INVALID;
    }
    uint64_t before = sent_so_far(m);
    if (value && !json_is_null(value) && (rc = encode(value)) == SB_OK)
        rc = sb_client_send_text(m->client, scratch.data, scratch.len);
    json_decref(value);
    return count_reply(m, before, rc);
}

int sb_msg_reply_data(sb_message *m)
{
    if (!m || !m->route)
        return SB_ERR_INVALID;
    sb_span d = m->env->data;
    if (!d.ptr || span_is_null(d))
        return SB_OK;
    uint64_t before = sent_so_far(m);
    return count_reply(m, before, sb_client_send_text(m->client, d.ptr, d.len));
}

/* The first fail() wins: it is usually the cause, and later ones its
 * consequences. The text goes on the wire, so it is made valid UTF-8 and,
 * when too long, cut on a character boundary with a visible marker. */
int sb_msg_fail(sb_message *m, const char *fmt, ...)
{
    if (!m || m->failed)
        return SB_ERR_FAILED;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = snprintf(text, sizeof(text), "(unprintable message)");
    size_t len = (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1;
    sb_utf8_repair(m->fail_text, sizeof(m->fail_text), text, len,
                   (size_t)n >= sizeof(text), NULL);
    m->failed = 1;
    return SB_ERR_FAILED;
}

void sb_dispatch_cleanup(void)
{
    sb_buf_free(&scratch);
}

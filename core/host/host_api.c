/*
 * host_api — see host_api.h.
 *
 * One process serves one sb_server, so the entries that take only an id
 * find it through sb_server_instance (NULL outside serving, e.g. under -t:
 * then every id is stale).
 */
#include "host_api.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libwebsockets.h>

#include "async.h"
#include "cluster.h"
#include "crash.h"
#include "dispatch.h"
#include "plugin_host.h"
#include "recovery.h"
#include "rooms.h"
#include "server.h"

/* Reused buffers (loop thread only): the JSON of one outgoing message, and
 * the same framed once for sending to many clients. */
static sb_buf text_buf, frame_buf;

/* One question about a room; its answer reaches the plugin once, later,
 * unless the plugin was released meanwhile (then it is dropped). */
typedef struct presence_req {
    sb_plugin *p; /* NULL once the plugin was released */
    sb_presence_fn fn;
    void *udata;
    char *room;
    int status;
    size_t count;
    json_t *members;
    struct presence_req *prev, *next;
} presence_req;

static presence_req *presence_pending;

static sb_client *client_of(sb_client_id id)
{
    sb_server *s = sb_server_instance;
    if (!s)
        return NULL;
    sb_client *c = sb_clients_find(&s->table, id);
    return c && c->server ? c : NULL;
}

/* An id another node of the cluster owns (never in one process). */
static bool remote(sb_client_id id)
{
    if (!sb_cluster_instance)
        return false;
    uint32_t node = sb_cluster_node_of(id);
    return node != 0 && node != sb_cluster_node();
}

static sb_buf gateway_names; /* a plugin's gateways for a broadcast */

void sb_host_api_cleanup(void)
{
    sb_buf_free(&text_buf);
    sb_buf_free(&frame_buf);
    sb_buf_free(&gateway_names);
}

/* ---- per-client slots ---------------------------------------------------- */

static sb_client_slot *slot_of(sb_client *c, const sb_plugin *p, bool grow)
{
    if (p->slot < c->nslots)
        return &c->slots[p->slot];
    if (!grow)
        return NULL;
    sb_client_slot *slots = realloc(c->slots, (p->slot + 1) * sizeof(*slots));
    if (!slots)
        return NULL;
    memset(slots + c->nslots, 0, (p->slot + 1 - c->nslots) * sizeof(*slots));
    c->slots = slots;
    c->nslots = p->slot + 1;
    return &c->slots[p->slot];
}

static void slot_release(sb_client_slot *sl, const char *plugin)
{
    json_decref(sl->state);
    sl->state = NULL;
    if (sl->data && sl->destroy) {
        sb_crash_enter(plugin, "client data destructor", NULL);
        sl->destroy(sl->data);
        sb_crash_leave();
    }
    sl->data = NULL;
    sl->destroy = NULL;
}

/* Whether `p` may use per-client slots now: SB_OK, or why not.
 *
 * A retired version (replaced by a reload, removed, or being unloaded)
 * shares its slot with the version that replaced it, or is about to lose
 * it: a pointer it kept there would name a destructor in an image that is
 * dlclosed once its work is done, and a state it set would overwrite its
 * successor's. A version not serving yet (the init of a reload's new build
 * or of an added plugin) has no slot of its own: p->slot is still 0, some
 * other instance's. So both are refused, and a get answers NULL. */
static int slot_denied(const sb_plugin *p)
{
    if (p->handed_over || p->unloading)
        return SB_ERR_RETIRED;
    return p->serving ? SB_OK : SB_ERR_STATE;
}

void sb_client_slots_release(sb_client *c)
{
    const sb_plugin_host *h = c->server ? c->server->plugins : NULL;
    for (size_t i = 0; i < c->nslots; i++) {
        /* Named for the crash report: a destructor is plugin code. */
        const char *owner =
            h && c->slots[i].destroy ? sb_plugin_host_slot_owner(h, i) : NULL;
        slot_release(&c->slots[i], owner ? owner : "?");
    }
    free(c->slots);
    c->slots = NULL;
    c->nslots = 0;
}

void sb_api_release_plugin(const sb_plugin *p, bool keep_state)
{
    /* Its presence questions get no answer: the plugin is going. */
    for (presence_req *q = presence_pending; q; q = q->next)
        if (q->p == p)
            q->p = NULL;
    sb_server *s = sb_server_instance;
    if (!s || !p->desc)
        return;
    for (sb_client *c = s->clients; c; c = c->next) {
        if (p->slot >= c->nslots)
            continue;
        sb_client_slot *sl = &c->slots[p->slot];
        json_t *state = keep_state ? sl->state : NULL;
        if (keep_state)
            sl->state = NULL;
        slot_release(sl, p->name);
        sl->state = state;
    }
}

int sb_api_client_state_set(sb_plugin *p, sb_client_id client, json_t *value)
{
    int denied = p ? slot_denied(p) : SB_OK;
    if (denied != SB_OK) {
        json_decref(value);
        return denied;
    }
    sb_client *c = p ? client_of(client) : NULL;
    sb_client_slot *sl = c ? slot_of(c, p, value != NULL) : NULL;
    if (!sl) {
        json_decref(value);
        return !p      ? SB_ERR_INVALID
               : !c    ? SB_ERR_NOT_FOUND
               : value ? SB_ERR_NOMEM
                       : SB_OK;
    }
    json_decref(sl->state);
    sl->state = value;
    if (c->recovery) /* its live record, in a cluster */
        sb_recovery_touch(c);
    return SB_OK;
}

json_t *sb_api_client_state_get(sb_plugin *p, sb_client_id client)
{
    sb_client *c = p && slot_denied(p) == SB_OK ? client_of(client) : NULL;
    sb_client_slot *sl = c ? slot_of(c, p, false) : NULL;
    return sl ? sl->state : NULL;
}

int sb_api_client_data_set(sb_plugin *p, sb_client_id client, void *ptr,
                           sb_destroy_fn destroy)
{
    if (!p)
        return SB_ERR_INVALID;
    int denied = slot_denied(p);
    if (denied != SB_OK)
        return denied;
    sb_client *c = client_of(client);
    if (!c)
        return SB_ERR_NOT_FOUND;
    sb_client_slot *sl = slot_of(c, p, true);
    if (!sl)
        return SB_ERR_NOMEM;
    if (sl->data && sl->destroy && sl->data != ptr) {
        sb_crash_enter(p->name, "client data destructor", NULL);
        sl->destroy(sl->data);
        sb_crash_leave();
    }
    sl->data = ptr;
    sl->destroy = destroy;
    return SB_OK;
}

void *sb_api_client_data_get(sb_plugin *p, sb_client_id client)
{
    sb_client *c = p && slot_denied(p) == SB_OK ? client_of(client) : NULL;
    sb_client_slot *sl = c ? slot_of(c, p, false) : NULL;
    return sl ? sl->data : NULL;
}

/* ---- client info -----------------------------------------------------------
 */

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 when the byte at s
 * does not start one. s is NUL-terminated. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char b = s[0];
    if (b < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (b >= 0xc2 && b <= 0xdf)
        n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0; /* overlong */
        else if (b == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90; /* overlong */
        else if (b == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string of the handshake text s. Bytes that are not UTF-8 (a
 * query that decodes to any bytes, a header in Latin-1) would make jansson
 * refuse the string: each such byte becomes U+FFFD instead, and `field` is
 * appended to *marked (created on first use). NULL only when out of
 * memory. The caller owns the result. */
static json_t *handshake_text(const char *s, const char *field, json_t **marked)
{
    size_t len = strlen(s);
    if (sb_utf8_valid(s, len))
        return json_stringn(s, len);
    sb_buf b = {0};
    int bad = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        bad |= n ? sb_buf_append(&b, p, n)
                 : sb_buf_append(&b, "\xef\xbf\xbd", 3); /* U+FFFD */
        p += n ? n : 1;
    }
    json_t *v = bad ? NULL : json_stringn(b.len ? b.data : "", b.len);
    sb_buf_free(&b);
    if (v) {
        if (!*marked)
            *marked = json_array();
        json_array_append_new(*marked, json_string(field));
    }
    return v;
}

json_t *sb_api_client_info(sb_client_id client)
{
    sb_client *c = client_of(client);
    if (!c)
        return NULL;
    json_t *headers = json_object();
    json_t *marked = NULL; /* fields whose bytes were not UTF-8 */
    json_t *path = NULL, *query = NULL;
    sb_handshake_view hs;
    if (sb_client_handshake(c, &hs)) {
        path = handshake_text(hs.path, "path", &marked);
        query = handshake_text(hs.query, "query", &marked);
        const char *pos = NULL, *name, *value;
        while (sb_handshake_next_header(&hs, &pos, &name, &value))
            json_object_set_new(headers, name,
                                handshake_text(value, name, &marked));
    }
    json_t *identity = c->identity ? json_incref(c->identity) : json_null();
    json_t *info = json_pack("{s:I,s:s,s:s,s:o,s:o,s:o,s:o}", "id",
                             (json_int_t)c->id, "remote", hs.remote, "gateway",
                             c->server->config->gateways[c->gateway].name,
                             "path", path ? path : json_string(""), "query",
                             query ? query : json_string(""), "headers",
                             headers, "identity", identity);
    if (info && c->subprotocol)
        json_object_set_new(info, "subprotocol", json_string(c->subprotocol));
    if (info && marked)
        json_object_set_new(info, "not_utf8", marked);
    else
        json_decref(marked);
    return info;
}

json_t *sb_api_client_identity(sb_client_id client)
{
    sb_client *c = client_of(client);
    return c ? c->identity : NULL;
}

int sb_api_client_close(sb_client_id client, int code, const char *reason)
{
    sb_client *c = client_of(client);
    bool far = !c && remote(client);
    if (!c && !far)
        return SB_ERR_NOT_FOUND;
    /* Only the codes RFC 6455 lets an endpoint send. */
    bool valid = (code >= 1000 && code <= 1003) ||
                 (code >= 1007 && code <= 1014) ||
                 (code >= 3000 && code <= 4999);
    if (!valid)
        return SB_ERR_INVALID;
    if (c && c->closing)
        return SB_ERR_CLOSED;
    /* A close frame's reason is UTF-8 of at most 123 bytes, or the client
     * fails the connection instead of closing it: repair and cut it. */
    char text[124];
    reason = reason ? reason : "";
    sb_utf8_repair(text, sizeof(text), reason, strlen(reason), false, NULL);
    if (far)
        return sb_cluster_close(client, code, text);
    sb_client_close(c, code, text);
    return SB_OK;
}

/* ---- sending ---------------------------------------------------------------
 */

/* {"event":E,"data":D[,"id":I]} into text_buf. Steals data. */
static int compose(const char *event, json_t *data, sb_span id)
{
    if (!event || !*event) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    text_buf.len = 0;
    return sb_envelope_compose(&text_buf, event, data, id);
}

/* text_buf framed once into frame_buf, for many clients. */
static int frame_once(void)
{
    unsigned char head[10];
    size_t hlen = sb_ws_header_write(head, SB_WS_TEXT, text_buf.len);
    frame_buf.len = 0;
    if (sb_buf_append(&frame_buf, head, hlen) < 0 ||
        sb_buf_append(&frame_buf, text_buf.data, text_buf.len) < 0)
        return SB_ERR_NOMEM;
    return SB_OK;
}

/* An id from a plugin goes out as JSON text: it must be one number or one
 * string. */
static bool valid_id(const char *id, size_t id_len, sb_span *out)
{
    char why[64];
    if (sb_json_validate(id, id_len, 1, out, why, sizeof(why)) != SB_ENV_OK)
        return false;
    return out->ptr[0] == '"' || out->ptr[0] == '-' ||
           isdigit((unsigned char)out->ptr[0]);
}

int sb_api_send_exception(sb_plugin *p, sb_client_id to, const char *id,
                          size_t id_len, const char *message)
{
    sb_client *c = client_of(to);
    if (!p || !message)
        return SB_ERR_INVALID;
    bool far = !c && remote(to);
    if (!c && !far)
        return SB_ERR_NOT_FOUND;
    sb_span ids = {NULL, 0};
    if (id && !valid_id(id, id_len, &ids))
        return SB_ERR_INVALID;
    size_t len = strlen(message);
    if (sb_utf8_valid(message, len))
        return far ? sb_cluster_exception(to, ids.ptr, ids.len, message)
                   : sb_send_exception(c, message, NULL, (sb_span){NULL, 0},
                                       ids);
    /* Text for people: bytes that are not UTF-8 become U+FFFD (3 bytes
     * at most for each), rather than failing the client's connection. */
    char *fixed = len < SIZE_MAX / 3 ? malloc(3 * len + 1) : NULL;
    if (!fixed)
        return SB_ERR_NOMEM;
    sb_utf8_repair(fixed, 3 * len + 1, message, len, false, NULL);
    int rc = far ? sb_cluster_exception(to, ids.ptr, ids.len, fixed)
                 : sb_send_exception(c, fixed, NULL, (sb_span){NULL, 0}, ids);
    free(fixed);
    return rc;
}

int sb_api_send(sb_plugin *p, sb_client_id to, const char *event, json_t *data)
{
    return sb_api_send_ack(p, to, event, data, NULL, 0);
}

int sb_api_send_ack(sb_plugin *p, sb_client_id to, const char *event,
                    json_t *data, const char *id, size_t id_len)
{
    sb_client *c = client_of(to);
    bool far = !c && remote(to);
    if (!c && !far) {
        json_decref(data);
        return SB_ERR_NOT_FOUND;
    }
    sb_span ids = {NULL, 0};
    if (id && !valid_id(id, id_len, &ids)) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    int rc = compose(event, data, ids);
    if (rc != SB_OK)
        return rc;
    if (far)
        return sb_cluster_send(to, text_buf.data, text_buf.len);
    return sb_client_send_text(c, text_buf.data, text_buf.len);
}

/* In a cluster, a broadcast goes through the broker to every node (this
 * one too: see room_send). It returns the clients of the plugin's gateways
 * on this node, the count a plugin got before, less the one left out. */
static int cluster_broadcast(sb_server *s, sb_plugin *p, const char *event,
                             json_t *data, sb_client_id except)
{
    int rc = compose(event, data, (sb_span){NULL, 0});
    if (rc != SB_OK)
        return rc;
    gateway_names.len = 0;
    unsigned local = 0;
    for (size_t g = 0; g < s->config->ngateways; g++) {
        if (!sb_plugin_serves(p, g))
            continue;
        if ((gateway_names.len && sb_buf_append_byte(&gateway_names, ',')) ||
            sb_buf_append_str(&gateway_names, s->config->gateways[g].name))
            return SB_ERR_NOMEM;
        local += s->gateway_clients[g];
    }
    if (!gateway_names.len)
        return 0;
    rc = sb_cluster_broadcast(gateway_names.data, gateway_names.len,
                              text_buf.data, text_buf.len, except);
    if (rc != SB_OK)
        return rc;
    sb_client *x = except ? client_of(except) : NULL;
    if (x && sb_plugin_serves(p, x->gateway) && local)
        local--;
    return (int)local;
}

int sb_api_broadcast(sb_plugin *p, const char *event, json_t *data,
                     sb_client_id except)
{
    sb_server *s = sb_server_instance;
    if (!p) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    if (!s) {
        json_decref(data);
        return 0;
    }
    if (sb_cluster_instance)
        return cluster_broadcast(s, p, event, data, except);
    int rc = compose(event, data, (sb_span){NULL, 0});
    if (rc != SB_OK || (rc = frame_once()) != SB_OK)
        return rc;
    int sent = 0;
    for (sb_client *c = s->clients; c; c = c->next) {
        if (c->id == except || c->closing || !sb_plugin_serves(p, c->gateway))
            continue;
        if (sb_client_send_frames(c, frame_buf.data, frame_buf.len) == SB_OK)
            sent++;
    }
    return sent;
}

/* ---- raw frames (1.3) ---------------------------------------------------- */

static bool raw_gateway(const sb_client *c)
{
    return sb_client_conf(c)->envelope == SB_ENVELOPE_NONE;
}

/* One frame holding `len` bytes of data into frame_buf, for many clients.
 * SB_ERR_INVALID for text that is not UTF-8. */
static int frame_raw(const void *data, size_t len, int binary)
{
    if (!data && len)
        return SB_ERR_INVALID;
    if (!binary && !sb_utf8_valid(data, len))
        return SB_ERR_INVALID;
    unsigned char head[SB_WS_MAX_HEADER];
    size_t hlen =
        sb_ws_header_write(head, binary ? SB_WS_BINARY : SB_WS_TEXT, len);
    frame_buf.len = 0;
    if (sb_buf_append(&frame_buf, head, hlen) < 0 ||
        (len && sb_buf_append(&frame_buf, data, len) < 0))
        return SB_ERR_NOMEM;
    return SB_OK;
}

int sb_api_send_frame(sb_plugin *p, sb_client_id to, const void *data,
                      size_t len, int binary)
{
    if (!p)
        return SB_ERR_INVALID;
    sb_client *c = client_of(to);
    if (!c)
        return SB_ERR_NOT_FOUND;
    if (!raw_gateway(c) || (!data && len) ||
        (!binary && !sb_utf8_valid(data, len)))
        return SB_ERR_INVALID;
    long start = sb_client_frame_begin(c);
    if (start < 0)
        return sb_client_queue_status(c);
    if (len && sb_buf_append(&c->tx, data, len) < 0) {
        sb_client_frame_abort(c, start);
        return SB_ERR_NOMEM;
    }
    return sb_client_frame_end(c, start, binary ? SB_WS_BINARY : SB_WS_TEXT);
}

int sb_api_broadcast_frame(sb_plugin *p, const void *data, size_t len,
                           int binary, sb_client_id except)
{
    sb_server *s = sb_server_instance;
    if (!p)
        return SB_ERR_INVALID;
    int rc = frame_raw(data, len, binary);
    if (rc != SB_OK || !s)
        return rc;
    int sent = 0;
    for (sb_client *c = s->clients; c; c = c->next) {
        if (c->id == except || c->closing || !raw_gateway(c) ||
            !sb_plugin_serves(p, c->gateway))
            continue;
        if (sb_client_send_frames(c, frame_buf.data, frame_buf.len) == SB_OK)
            sent++;
    }
    return sent;
}

int sb_api_room_send_frame(sb_plugin *p, const char *room, const void *data,
                           size_t len, int binary, sb_client_id except)
{
    sb_server *s = sb_server_instance;
    if (!p || !room)
        return SB_ERR_INVALID;
    int rc = frame_raw(data, len, binary);
    if (rc != SB_OK)
        return rc;
    sb_room *r = s ? sb_rooms_find(&s->rooms, room) : NULL;
    if (!r)
        return 0;
    int sent = 0;
    /* Stable during the loop, as in room_send. */
    for (size_t i = 0; i < r->count; i++) {
        sb_client *c = r->members[i].links->owner;
        if (c->id == except || c->closing || !raw_gateway(c))
            continue;
        if (sb_client_send_frames(c, frame_buf.data, frame_buf.len) == SB_OK)
            sent++;
    }
    return sent;
}

const char *sb_api_client_subprotocol(sb_client_id client)
{
    sb_client *c = client_of(client);
    return c ? c->subprotocol : NULL;
}

/* ---- rooms -----------------------------------------------------------------
 */

int sb_api_room_join(sb_plugin *p, sb_client_id client, const char *room)
{
    if (!p || !room || !*room)
        return SB_ERR_INVALID;
    sb_client *c = client_of(client);
    if (!c)
        return SB_ERR_NOT_FOUND;
    if (sb_rooms_join(&c->server->rooms, &c->rooms, room) < 0)
        return SB_ERR_NOMEM;
    if (c->recovery) {
        sb_recovery_joined(c, room);
        sb_recovery_touch(c);
    }
    return SB_OK;
}

int sb_api_room_leave(sb_plugin *p, sb_client_id client, const char *room)
{
    if (!p || !room)
        return SB_ERR_INVALID;
    sb_client *c = client_of(client);
    if (!c || sb_rooms_leave(&c->server->rooms, &c->rooms, room) < 0)
        return SB_ERR_NOT_FOUND;
    if (c->recovery)
        sb_recovery_touch(c);
    return SB_OK;
}

static int room_deliver(sb_room *r, sb_client_id except);

/* With [recovery], a room that keeps history numbers and keeps every
 * message, members or not (a member that dropped will ask for it). */
static int history_room_send(sb_server *s, const char *room, const char *event,
                             json_t *data, sb_client_id except)
{
    int rc = compose(event, data, (sb_span){NULL, 0});
    if (rc != SB_OK || (rc = sb_recovery_stamp(room, &text_buf, except)) < 0)
        return rc;
    sb_room *r = sb_rooms_find(&s->rooms, room);
    if (!r)
        return 0;
    if ((rc = frame_once()) != SB_OK)
        return rc;
    return room_deliver(r, except);
}

/* In a cluster, a room message is published once, and every node with
 * members (this one included) delivers it when it comes back from Redis:
 * so every member sees the room's messages in one order, whichever node
 * sent them. Returns the room's members on this node (the count a plugin
 * got before), less the one left out. */
static int cluster_room_send(sb_server *s, const char *room, const char *event,
                             json_t *data, sb_client_id except)
{
    if (!*room) {
        json_decref(data);
        return 0;
    }
    int rc = compose(event, data, (sb_span){NULL, 0});
    if (rc != SB_OK)
        return rc;
    if (sb_recovery_instance &&
        (rc = sb_recovery_prefix(room, &text_buf)) != 0) {
        if (rc < 0)
            return rc;
        rc = sb_cluster_history_send(room, text_buf.data, text_buf.len, except);
    } else {
        rc = sb_cluster_room_send(room, text_buf.data, text_buf.len, except);
    }
    if (rc != SB_OK)
        return rc;
    sb_room *r = sb_rooms_find(&s->rooms, room);
    int n = r ? (int)r->count : 0;
    if (n && except && sb_api_room_has(NULL, except, room))
        n--;
    return n;
}

int sb_api_room_send(sb_plugin *p, const char *room, const char *event,
                     json_t *data, sb_client_id except)
{
    sb_server *s = sb_server_instance;
    if (!p || !room) {
        json_decref(data);
        return SB_ERR_INVALID;
    }
    if (sb_cluster_instance && s)
        return cluster_room_send(s, room, event, data, except);
    if (sb_recovery_instance)
        return history_room_send(s, room, event, data, except);
    sb_room *r = s ? sb_rooms_find(&s->rooms, room) : NULL;
    if (!r) {
        json_decref(data);
        return 0;
    }
    int rc = compose(event, data, (sb_span){NULL, 0});
    if (rc != SB_OK || (rc = frame_once()) != SB_OK)
        return rc;
    return room_deliver(r, except);
}

/* To the room's members on this node (frame_buf), but `except`. */
static int room_deliver(sb_room *r, sb_client_id except)
{
    int sent = 0;
    /* Sending never removes a member (a client over its queue limit is
     * closed, and leaves its rooms only when lws reports it closed), so the
     * member array is stable during the loop. */
    for (size_t i = 0; i < r->count; i++) {
        sb_client *c = r->members[i].links->owner;
        if (c->id == except || c->closing)
            continue;
        if (sb_client_send_frames(c, frame_buf.data, frame_buf.len) == SB_OK)
            sent++;
    }
    return sent;
}

int sb_api_room_has(sb_plugin *p, sb_client_id client, const char *room)
{
    sb_client *c = room ? client_of(client) : NULL;
    for (size_t i = 0; c && i < c->rooms.n; i++)
        if (strcmp(c->rooms.v[i].room->name, room) == 0)
            return 1;
    return 0;
}

size_t sb_api_room_count(sb_plugin *p, const char *room)
{
    sb_server *s = sb_server_instance;
    sb_room *r = s && room ? sb_rooms_find(&s->rooms, room) : NULL;
    return r ? r->count : 0;
}

/* ---- presence: room_count_cluster, room_members ------------------------ */

static void presence_answer(presence_req *q)
{
    if (q->p) {
        sb_crash_enter(q->p->name, "presence callback", NULL);
        q->fn(q->p, q->status, q->room, q->count, q->members, q->udata);
        sb_crash_leave();
    }
    if (q->prev)
        q->prev->next = q->next;
    else
        presence_pending = q->next;
    if (q->next)
        q->next->prev = q->prev;
    json_decref(q->members);
    free(q->room);
    free(q);
}

static void on_cluster_presence(void *udata, int status, size_t count,
                                json_t *members)
{
    presence_req *q = udata;
    q->status = status;
    q->count = count;
    q->members = members;
    presence_answer(q);
}

static void on_local_presence(sb_plugin *p, void *udata)
{
    presence_answer(udata);
}

static int presence(sb_plugin *p, const char *room, bool list,
                    sb_presence_fn fn, void *udata)
{
    if (!p || !room || !*room || !fn)
        return SB_ERR_INVALID;
    if (!p->serving || p->handed_over || p->unloading)
        return SB_ERR_STATE;
    presence_req *q = calloc(1, sizeof(*q));
    if (!q || !(q->room = strdup(room))) {
        free(q);
        return SB_ERR_NOMEM;
    }
    *q = (presence_req){.p = p,
                        .fn = fn,
                        .udata = udata,
                        .room = q->room,
                        .next = presence_pending};
    if (presence_pending)
        presence_pending->prev = q;
    presence_pending = q;
    int rc;
    if (sb_cluster_instance) {
        rc = sb_cluster_presence(room, list, on_cluster_presence, q);
    } else {
        /* One process: the answer is known now, and given on the next
         * loop turn like a cluster's. */
        sb_server *s = sb_server_instance;
        sb_room *r = s ? sb_rooms_find(&s->rooms, room) : NULL;
        q->count = r ? r->count : 0;
        if (list) {
            q->members = json_array();
            for (size_t i = 0; r && q->members && i < r->count; i++)
                json_array_append_new(
                    q->members,
                    json_integer((json_int_t)r->members[i].links->owner->id));
        }
        rc = list && !q->members ? SB_ERR_NOMEM
                                 : sb_api_post(p, on_local_presence, q);
    }
    if (rc != SB_OK) {
        q->p = NULL;
        presence_answer(q);
    }
    return rc;
}

int sb_api_room_count_cluster(sb_plugin *p, const char *room, sb_presence_fn fn,
                              void *udata)
{
    return presence(p, room, false, fn, udata);
}

int sb_api_room_members(sb_plugin *p, const char *room, sb_presence_fn fn,
                        void *udata)
{
    return presence(p, room, true, fn, udata);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *sb_api_client_rooms(sb_plugin *p, sb_client_id client)
{
    sb_client *c = client_of(client);
    if (!c)
        return NULL;
    const char **names = malloc((c->rooms.n ? c->rooms.n : 1) * sizeof(*names));
    if (!names)
        return NULL;
    for (size_t i = 0; i < c->rooms.n; i++)
        names[i] = c->rooms.v[i].room->name;
    qsort(names, c->rooms.n, sizeof(*names), by_name);
    json_t *list = json_array();
    for (size_t i = 0; i < c->rooms.n; i++)
        json_array_append_new(list, json_string(names[i]));
    free(names);
    return list;
}

/* ---- the handshake being decided ------------------------------------------
 */

const char *sb_api_handshake_path(const sb_handshake *hs)
{
    return hs ? hs->path : NULL;
}

const char *sb_api_handshake_query(const sb_handshake *hs)
{
    return hs ? hs->query : NULL;
}

const char *sb_api_handshake_remote(const sb_handshake *hs)
{
    return hs ? hs->remote : NULL;
}

const char *sb_api_handshake_gateway(const sb_handshake *hs)
{
    return hs ? hs->gateway_name : NULL;
}

/* Room in the scratch area for one value handed to a hook. */
static char *scratch_take(sb_handshake *hs, size_t *room)
{
    if (hs->used >= sizeof(hs->scratch) - 1)
        return NULL;
    *room = sizeof(hs->scratch) - hs->used;
    return hs->scratch + hs->used;
}

const char *sb_api_handshake_query_arg(sb_handshake *hs, const char *name)
{
    if (!hs || !name || !*name)
        return NULL;
    size_t room;
    char *buf = scratch_take(hs, &room);
    char key[128];
    if (!buf || strlen(name) + 2 > sizeof(key))
        return NULL;
    snprintf(key, sizeof(key), "%s=", name);
    const char *v = lws_get_urlarg_by_name(hs->wsi, key, buf, (int)room);
    if (!v)
        return NULL;
    hs->used += strlen(buf) + 1;
    return v;
}

const char *sb_api_handshake_header(sb_handshake *hs, const char *name)
{
    if (!hs || !name || !*name)
        return NULL;
    size_t room, nlen = strlen(name);
    char *buf = scratch_take(hs, &room);
    if (!buf)
        return NULL;
    /* A header lws knows by token... */
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *tn =
            (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (!tn || strlen(tn) != nlen + 1 || tn[nlen] != ':' ||
            strncasecmp(tn, name, nlen) != 0)
            continue;
        if (lws_hdr_total_length(hs->wsi, (enum lws_token_indexes)t) <= 0)
            return NULL;
        int n =
            lws_hdr_copy(hs->wsi, buf, (int)room, (enum lws_token_indexes)t);
        if (n < 0)
            return NULL;
        hs->used += (size_t)n + 1;
        return buf;
    }
    /* ...or any other, which lws keeps by its lower-case name and colon. */
    char key[128];
    if (nlen + 2 > sizeof(key))
        return NULL;
    for (size_t i = 0; i < nlen; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[nlen] = ':';
    key[nlen + 1] = 0;
    if (lws_hdr_custom_length(hs->wsi, key, (int)nlen + 1) < 0)
        return NULL;
    int n = lws_hdr_custom_copy(hs->wsi, buf, (int)room, key, (int)nlen + 1);
    if (n < 0)
        return NULL;
    hs->used += (size_t)n + 1;
    return buf;
}

int sb_api_handshake_set_identity(sb_handshake *hs, json_t *identity)
{
    if (!hs) {
        json_decref(identity);
        return SB_ERR_INVALID;
    }
    json_decref(hs->identity);
    hs->identity = identity;
    return SB_OK;
}

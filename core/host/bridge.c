/*
 * bridge — see bridge.h.
 */
#include "bridge.h"

#include <string.h>

#include "async.h"
#include "cluster.h"
#include "dispatch.h"
#include "host_api.h"
#include "log.h"
#include "recovery.h"
#include "reload.h"

static int on_handshake(void *ctx, size_t gateway, sb_handshake *hs)
{
    return sb_plugin_host_handshake(ctx, gateway, hs);
}

static const char *on_connect(void *ctx, sb_client *c)
{
    const sb_plugin *refuser = NULL;
    if (sb_recovery_instance)
        sb_recovery_connect(c); /* sb:session goes first */
    sb_plugin_host_connect(ctx, c->gateway, c->id, &c->seen, &refuser);
    return refuser ? refuser->name : NULL;
}

/* The plugins' JSON state of a client, {plugin: state}, or NULL. */
static json_t *client_states(const sb_plugin_host *ph, const sb_client *c)
{
    json_t *states = NULL;
    for (size_t i = 0; i < c->nslots; i++) {
        const char *owner =
            c->slots[i].state ? sb_plugin_host_slot_owner(ph, i) : NULL;
        if (!owner)
            continue;
        if (!states && !(states = json_object()))
            return NULL;
        json_object_set(states, owner, c->slots[i].state);
    }
    return states;
}

/* The same, for a live record in a cluster. */
static json_t *live_states(void *ctx, const sb_client *c)
{
    return client_states(ctx, c);
}

static void on_disconnect(void *ctx, sb_client *c, int code)
{
    /* Kept as it was, before the disconnect hooks change anything. */
    if (c->recovery) {
        if (sb_recovery_keeps(c))
            sb_recovery_save(c, client_states(ctx, c));
        else
            sb_recovery_drop(c); /* its live record, in a cluster */
    }
    sb_plugin_host_disconnect(ctx, c->id, code, &c->seen);
}

static void on_forget(void *ctx, sb_client *c)
{
    (void)ctx;
    sb_client_slots_release(c);
    if (c->recovery)
        sb_recovery_forget(c);
}

/* A resume answered: the session's state goes back to the plugins that
 * kept it (by instance name), and they hear of the resume. */
static void resumed(sb_plugin_host *ph, sb_client *c, sb_resumed *r)
{
    const char *name;
    json_t *state;
    json_object_foreach(r->states, name, state)
    {
        for (size_t i = 0; i < ph->count; i++) {
            sb_plugin *p = ph->plugins[i];
            if (strcmp(p->name, name) == 0 && sb_plugin_serves(p, c->gateway))
                sb_api_client_state_set(p, c->id, json_incref(state));
        }
    }
    if (r->previous) /* not for a fresh session */
        sb_plugin_host_session_resumed(ph, c->id, r->previous, r->rooms,
                                       &c->seen, sb_api_client_state_get);
    json_decref(r->states);
    json_decref(r->rooms);
}

static void resumed_later(void *ctx, sb_client *c, sb_resumed *r)
{
    resumed(ctx, c, r);
}

/* A client's first message with [recovery]: a resume, or dispatched. */
static int first_message(void *ctx, sb_client *c, const char *buf, size_t len,
                         bool text)
{
    sb_resumed r;
    if (text && sb_recovery_first(c, buf, len, &r)) {
        if (!r.pending) /* else answered later: resumed_later() */
            resumed(ctx, c, &r);
        return 0;
    }
    c->recovery->first = false;
    return sb_dispatch(c, buf, len, text);
}

/* The message hook when every gateway has the JSON envelope. */
static int on_message(void *ctx, sb_client *c, const char *buf, size_t len,
                      bool text)
{
    (void)ctx;
    return sb_dispatch(c, buf, len, text);
}

/* on_message when some gateway is raw (`envelope = none`; on_starting puts
 * it in place), so that the JSON-only path does not even look. */
static int on_message_mixed(void *ctx, sb_client *c, const char *buf,
                            size_t len, bool text)
{
    (void)ctx;
    return sb_dispatch_any(c, buf, len, text);
}

/* on_message with [recovery] (on_starting puts it in place), so that the
 * path without it does not even look. Only clients of JSON gateways have
 * sessions. */
static int on_message_resumable(void *ctx, sb_client *c, const char *buf,
                                size_t len, bool text)
{
    if (c->recovery && c->recovery->first)
        return first_message(ctx, c, buf, len, text);
    if (c->recovery && c->recovery->pending)
        return sb_recovery_hold(c, buf, len, text);
    return sb_dispatch_any(c, buf, len, text);
}

static void on_starting(void *ctx, sb_server *s)
{
    s->plugins = ctx;
    for (size_t g = 0; g < s->config->ngateways; g++)
        if (s->config->gateways[g].conf.envelope != SB_ENVELOPE_JSON)
            s->hooks.message = on_message_mixed;
    sb_cluster_attach(s);         /* nothing without [cluster] */
    if (sb_recovery_start(s) < 0) /* nothing without [recovery] */
        sb_log_warn("server", "session recovery is off (out of memory)");
    else if (sb_recovery_instance) {
        s->hooks.message = on_message_resumable;
        sb_recovery_on_resumed(resumed_later, ctx);
        sb_recovery_on_states(live_states, ctx);
    }
    if (sb_reload_start(s) < 0)
        sb_log_warn("server", "hot reload is unavailable (out of memory)");
}

static void on_stopped(void *ctx, sb_server *s)
{
    sb_reload_stop(s);
    /* Clients whose close handshake did not finish in shutdown_timeout are
     * dropped after this: in a cluster their sessions go to Redis now,
     * while the broker is still there (sb_cluster_detach waits for the
     * writes, bounded by command_timeout). */
    if (sb_recovery_instance && sb_cluster_instance)
        for (sb_client *c = s->clients; c; c = c->next)
            if (c->recovery && sb_recovery_keeps(c))
                sb_recovery_save(c, client_states(ctx, c));
    sb_recovery_stop();
    sb_cluster_detach();
}

static size_t on_pending_work(void *ctx)
{
    return sb_async_pending(ctx);
}

sb_server_hooks sb_bridge_hooks(sb_plugin_host *ph)
{
    return (sb_server_hooks){
        .ctx = ph,
        .handshake = on_handshake,
        .connect = on_connect,
        .disconnect = on_disconnect,
        .forget = on_forget,
        .message = on_message,
        .starting = on_starting,
        .stopped = on_stopped,
        .pending_work = on_pending_work,
    };
}

/* The host layer's entries of the table every plugin gets: messages and
 * replies (dispatch.c), clients, rooms, timers, work and handshakes
 * (host_api.c). The plugin host filled its own (registration, config,
 * logging) at init. */
static void fill_table(sb_host *t)
{
    t->message_event = sb_msg_event;
    t->message_client = sb_msg_client;
    t->message_data = sb_msg_data;
    t->message_data_raw = sb_msg_data_raw;
    t->message_id_raw = sb_msg_id_raw;
    t->reply = sb_msg_reply;
    t->reply_raw = sb_msg_reply_raw;
    t->reply_value = sb_msg_reply_value;
    t->reply_data = sb_msg_reply_data;
    t->fail = sb_msg_fail;
    t->client_info = sb_api_client_info;
    t->client_identity = sb_api_client_identity;
    t->client_close = sb_api_client_close;
    t->client_state_set = sb_api_client_state_set;
    t->client_state_get = sb_api_client_state_get;
    t->client_data_set = sb_api_client_data_set;
    t->client_data_get = sb_api_client_data_get;
    t->send = sb_api_send;
    t->send_ack = sb_api_send_ack;
    t->broadcast = sb_api_broadcast;
    t->room_join = sb_api_room_join;
    t->room_leave = sb_api_room_leave;
    t->room_send = sb_api_room_send;
    t->room_count = sb_api_room_count;
    t->client_rooms = sb_api_client_rooms;
    t->timer_start = sb_api_timer_start;
    t->timer_stop = sb_api_timer_stop;
    t->work_queue = sb_api_work_queue;
    t->post = sb_api_post;
    t->handshake_path = sb_api_handshake_path;
    t->handshake_query = sb_api_handshake_query;
    t->handshake_query_arg = sb_api_handshake_query_arg;
    t->handshake_header = sb_api_handshake_header;
    t->handshake_remote = sb_api_handshake_remote;
    t->handshake_gateway = sb_api_handshake_gateway;
    t->handshake_set_identity = sb_api_handshake_set_identity;
    t->message_gateway = sb_msg_gateway;
    t->send_exception = sb_api_send_exception;
    t->room_has = sb_api_room_has;
    /* 1.3 */
    t->message_frame = sb_msg_frame;
    t->send_frame = sb_api_send_frame;
    t->broadcast_frame = sb_api_broadcast_frame;
    t->room_send_frame = sb_api_room_send_frame;
    t->client_subprotocol = sb_api_client_subprotocol;
    t->room_count_cluster = sb_api_room_count_cluster;
    t->room_members = sb_api_room_members;
}

void sb_bridge_plugin_host(sb_plugin_host *ph)
{
    fill_table(&ph->table);
    ph->release_clients = sb_api_release_plugin;
}

void sb_bridge_cleanup(void)
{
    sb_dispatch_cleanup();
    sb_host_api_cleanup();
}

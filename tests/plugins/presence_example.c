/*
 * presence — who is in which room, and who has gone quiet. The worked
 * example of docs/sdk.md (which quotes this file whole); the test suite
 * builds it and talks to it, so the guide's code is known to work.
 *
 *   join {"room":R,"name":N} → {"event":"joined","data":{"room":R,
 *                               "members":K}}, and the others in R get
 *                               {"event":"presence","data":{"room":R,
 *                               "name":N,"status":"online"}}
 *   who                      → {"event":"who","data":{"room":R,
 *                               "members":K}}
 *   away_ms (config, default 30000) after a client's last event, R hears
 *   "status":"away"; its next event brings "online" back; when it
 *   disconnects, R hears "offline".
 *
 * A client is in one room at a time. Its name, room and away timer live in
 * the host's per-client state, so the plugin keeps no table of clients, and
 * nothing of it outlives the client.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <switchboard/plugin.h>

static const sb_host *host; /* the same table for every instance */

typedef struct presence {
    int64_t away_ms;
} presence;

/* Rooms are shared by every plugin: ours are "<instance>:<room>". */
static void room_key(char *out, size_t len, sb_plugin *p, const char *room)
{
    snprintf(out, len, "%s:%s", host->plugin_name(p), room);
}

/* Replaces the client's state (the old value is released by the host). */
static void keep(sb_plugin *p, sb_client_id id, const char *name,
                 const char *room, uint64_t timer, int away)
{
    host->client_state_set(p, id,
                           json_pack("{s:s,s:s,s:I,s:b}", "name", name, "room",
                                     room, "timer", (json_int_t)timer, "away",
                                     away));
}

/* Tells the client's room how it is, except `except` (0: nobody). */
static void announce(sb_plugin *p, json_t *state, const char *status,
                     sb_client_id except)
{
    const char *room = json_string_value(json_object_get(state, "room"));
    const char *name = json_string_value(json_object_get(state, "name"));
    char key[256];
    room_key(key, sizeof(key), p, room);
    host->room_send(p, key, "presence",
                    json_pack("{s:s,s:s,s:s}", "room", room, "name", name,
                              "status", status),
                    except);
}

/* The away timer fired. The client id rides in udata (cast: pointers are
 * 64 bits wide where Switchboard runs), so there is nothing to free if the
 * timer never fires, and a client gone meanwhile is just a NULL state. */
static void on_away(sb_plugin *p, uint64_t timer, void *udata)
{
    sb_client_id id = (sb_client_id)(uintptr_t)udata;
    json_t *state = host->client_state_get(p, id); /* borrowed */
    if (!state)
        return;
    announce(p, state, "away", 0);
    keep(p, id, json_string_value(json_object_get(state, "name")),
         json_string_value(json_object_get(state, "room")), 0, 1);
}

/* (Re)starts the client's away timer and records it in its state. */
static void touch(sb_plugin *p, presence *pr, sb_client_id id, const char *name,
                  const char *room, uint64_t old_timer)
{
    uint64_t timer = 0;
    /* A one-shot timer that already fired has a stale id: NOT_FOUND, and
     * no harm done. */
    host->timer_stop(p, old_timer);
    host->timer_start(p, (uint64_t)pr->away_ms, 0, on_away,
                      (void *)(uintptr_t)id, &timer);
    keep(p, id, name, room, timer, 0);
}

/* A guard that never denies: it sees every event of the client's gateway
 * before its handler runs, whichever plugin handles it, and counts it as a
 * sign of life. */
static int on_event(sb_plugin *p, sb_message *msg, void *udata)
{
    sb_client_id id = host->message_client(msg);
    json_t *state = host->client_state_get(p, id);
    if (!state)
        return SB_OK;   /* not in a room */
    json_incref(state); /* touch() replaces it; keep it for announce() */
    if (json_is_true(json_object_get(state, "away")))
        announce(p, state, "online", id);
    touch(p, udata, id, json_string_value(json_object_get(state, "name")),
          json_string_value(json_object_get(state, "room")),
          (uint64_t)json_integer_value(json_object_get(state, "timer")));
    json_decref(state);
    return SB_OK;
}

static int on_join(sb_plugin *p, sb_message *msg, void *udata)
{
    sb_client_id id = host->message_client(msg);
    const char *room, *name;
    if (json_unpack(host->message_data(msg), "{s:s,s:s}", "room", &room, "name",
                    &name) != 0)
        return host->fail(msg, "join wants {\"room\":R,\"name\":N}");
    if (host->client_state_get(p, id))
        return host->fail(msg, "already in a room");
    char key[256];
    room_key(key, sizeof(key), p, room);
    int rc = host->room_join(p, id, key);
    if (rc != SB_OK)
        return host->fail(msg, "cannot join: %s", host->strerror(rc));
    touch(p, udata, id, name, room, 0);
    announce(p, host->client_state_get(p, id), "online", id);
    return host->reply(msg, "joined",
                       json_pack("{s:s,s:i}", "room", room, "members",
                                 (int)host->room_count(p, key)));
}

static int on_who(sb_plugin *p, sb_message *msg, void *udata)
{
    json_t *state = host->client_state_get(p, host->message_client(msg));
    if (!state)
        return host->fail(msg, "not in a room");
    const char *room = json_string_value(json_object_get(state, "room"));
    char key[256];
    room_key(key, sizeof(key), p, room);
    return host->reply(msg, "who",
                       json_pack("{s:s,s:i}", "room", room, "members",
                                 (int)host->room_count(p, key)));
}

/* The client is gone. Its state and rooms are still there during this
 * hook (the host drops them right after), but it can no longer be sent
 * to: hence `except`. */
static void on_disconnect(sb_plugin *p, sb_client_id id, int code, void *udata)
{
    json_t *state = host->client_state_get(p, id);
    if (!state)
        return;
    host->timer_stop(
        p, (uint64_t)json_integer_value(json_object_get(state, "timer")));
    announce(p, state, "offline", id);
}

static void on_unload(sb_plugin *p, void *udata)
{
    free(udata); /* timers and client state are the host's to drop */
}

static int presence_init(sb_plugin *p, const sb_host *h)
{
    host = h;
    presence *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return host->plugin_error(p, "out of memory");
    int rc =
        host->config_int_range(p, "away_ms", 30000, 1, INT64_MAX, &pr->away_ms);
    if (rc == SB_OK)
        rc = host->subscribe(p, "join", on_join, pr);
    if (rc == SB_OK)
        rc = host->subscribe(p, "who", on_who, pr);
    if (rc != SB_OK) {
        free(pr); /* the host has recorded why: pass rc on */
        return rc;
    }
    host->on_guard(p, on_event, pr);
    host->on_disconnect(p, on_disconnect, pr);
    host->on_unload(p, on_unload, pr);
    return SB_OK;
}

SB_PLUGIN_DEFINE("presence", "1.0.0", presence_init);

/*
 * chat — chat rooms: `join`, `leave`, `say`, `rooms` and `who`, on the host's
 * rooms.
 *
 * The plugin keeps no membership of its own: the host's rooms are the one
 * record of who is where, so a client that disconnects leaves every room
 * without any code here, and the fan-out of `said` is the host's room_send(),
 * which serialises the message once for all members.
 *
 * Rooms are shared by every plugin of the process, so chat names its rooms
 * "<instance>:<room>" ("chat:lobby" for [plugin.chat]). Instance names hold
 * no ':', so a chat client can neither join nor talk into another plugin's
 * room (the clock's subscribers, say), and `rooms` lists only chat rooms.
 * Another plugin may still post into a chat room by that full name.
 *
 * Client input is validated before anything is done with it, and every
 * refusal is a host->fail() with a sentence the client can act on.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/plugin.h>

/* One instance's state ([plugin.NAME] section), handed to every callback as
 * udata and freed by the unload hook: two chat instances (on two gateways)
 * share nothing. */
typedef struct chat {
    const sb_host *host;
    const char *name;       /* the instance name: borrowed until unload */
    size_t prefix_len;      /* strlen(name) + 1, for the ':' */
    size_t max_room_length; /* bytes, config `max_room_length` */
    size_t max_text_length; /* bytes, config `max_text_length` */
} chat;

/* "<instance>:<room>" in a new string (free() it), or NULL when out of
 * memory. `room` has been validated: no NUL inside, so strlen is its
 * length. */
static char *host_room(const chat *c, const char *room)
{
    size_t len = strlen(room);
    char *full = malloc(c->prefix_len + len + 1);
    if (!full)
        return NULL;
    memcpy(full, c->name, c->prefix_len - 1);
    full[c->prefix_len - 1] = ':';
    memcpy(full + c->prefix_len, room, len + 1);
    return full;
}

/* The request's data as an object, or a failure recorded on msg. The
 * object is borrowed from the host (valid during the handler). */
static int data_object(const chat *c, sb_message *msg, json_t **out)
{
    json_t *data = c->host->message_data(msg);
    /* Set on every path: the compiler cannot know that fail() never
     * returns SB_OK, and the callers test only the status. */
    *out = NULL;
    if (!json_is_object(data))
        return c->host->fail(msg, "data must be an object");
    *out = data;
    return SB_OK;
}

/* data.room, checked: a non-empty string of at most max_room_length bytes.
 * A NUL inside is refused too: C strings would cut the name there and
 * "a\u0000b" would silently be room "a". */
static int get_room(const chat *c, sb_message *msg, json_t *data,
                    const char **room)
{
    json_t *v = json_object_get(data, "room");
    *room = NULL;
    if (!json_is_string(v))
        return c->host->fail(msg, "room must be a string");
    size_t len = json_string_length(v);
    if (len == 0)
        return c->host->fail(msg, "room must not be empty");
    if (len > c->max_room_length)
        return c->host->fail(msg, "room is longer than %zu bytes",
                             c->max_room_length);
    if (strlen(json_string_value(v)) != len)
        return c->host->fail(msg, "room must not contain NUL characters");
    *room = json_string_value(v);
    return SB_OK;
}

/* Whether `client` is in host room `full`. The ABI has no membership test,
 * so this scans the client's room list (short: the rooms one client is in). */
static bool is_member(const chat *c, sb_plugin *p, sb_client_id client,
                      const char *full)
{
    json_t *rooms = c->host->client_rooms(p, client);
    bool found = false;
    for (size_t i = 0; i < json_array_size(rooms) && !found; i++)
        found = strcmp(json_string_value(json_array_get(rooms, i)), full) == 0;
    json_decref(rooms);
    return found;
}

/* {"event":"join","data":{"room":R}} → {"event":"joined","data":{"room":R,
 * "members":N}}, N counting the sender. Joining twice is not an error. */
static int on_join(sb_plugin *p, sb_message *msg, void *udata)
{
    chat *c = udata;
    json_t *data;
    const char *room;
    int rc;
    if ((rc = data_object(c, msg, &data)) != SB_OK ||
        (rc = get_room(c, msg, data, &room)) != SB_OK)
        return rc;
    char *full = host_room(c, room);
    if (!full)
        return SB_ERR_NOMEM;
    rc = c->host->room_join(p, c->host->message_client(msg), full);
    size_t members = c->host->room_count(p, full);
    free(full);
    if (rc != SB_OK)
        return c->host->fail(msg, "cannot join room %s: %s", room,
                             c->host->strerror(rc));
    return c->host->reply(
        msg, "joined",
        json_pack("{s:s, s:I}", "room", room, "members", (json_int_t)members));
}

/* {"event":"leave","data":{"room":R}} → {"event":"left","data":{"room":R}};
 * leaving a room one is not in fails. */
static int on_leave(sb_plugin *p, sb_message *msg, void *udata)
{
    chat *c = udata;
    json_t *data;
    const char *room;
    int rc;
    if ((rc = data_object(c, msg, &data)) != SB_OK ||
        (rc = get_room(c, msg, data, &room)) != SB_OK)
        return rc;
    char *full = host_room(c, room);
    if (!full)
        return SB_ERR_NOMEM;
    rc = c->host->room_leave(p, c->host->message_client(msg), full);
    free(full);
    if (rc == SB_ERR_NOT_FOUND)
        return c->host->fail(msg, "not a member of room %s", room);
    if (rc != SB_OK)
        return c->host->fail(msg, "cannot leave room %s: %s", room,
                             c->host->strerror(rc));
    return c->host->reply(msg, "left", json_pack("{s:s}", "room", room));
}

/* {"event":"say","data":{"room":R,"text":T}} → every member of R, the
 * sender included, gets {"event":"said","data":{"room":R,"from":ID,
 * "text":T}}. Only members may talk into a room. */
static int on_say(sb_plugin *p, sb_message *msg, void *udata)
{
    chat *c = udata;
    json_t *data;
    const char *room;
    int rc;
    if ((rc = data_object(c, msg, &data)) != SB_OK ||
        (rc = get_room(c, msg, data, &room)) != SB_OK)
        return rc;
    json_t *text = json_object_get(data, "text");
    if (!json_is_string(text))
        return c->host->fail(msg, "text must be a string");
    if (json_string_length(text) > c->max_text_length)
        return c->host->fail(msg, "text is longer than %zu bytes",
                             c->max_text_length);

    sb_client_id from = c->host->message_client(msg);
    char *full = host_room(c, room);
    if (!full)
        return SB_ERR_NOMEM;
    if (!is_member(c, p, from, full)) {
        free(full);
        return c->host->fail(msg, "not a member of room %s", room);
    }
    /* "O" takes a reference to the text value rather than copying it, which
     * also keeps any NUL inside it. room_send steals the object. */
    rc = c->host->room_send(p, full, "said",
                            json_pack("{s:s, s:I, s:O}", "room", room, "from",
                                      (json_int_t)from, "text", text),
                            0);
    free(full);
    if (rc < 0)
        return c->host->fail(msg, "cannot send to room %s: %s", room,
                             c->host->strerror(rc));
    return SB_OK;
}

/* {"event":"rooms"} → {"event":"rooms","data":[the sender's chat rooms]},
 * sorted (the host sorts, and a common prefix keeps the order). */
static int on_rooms(sb_plugin *p, sb_message *msg, void *udata)
{
    chat *c = udata;
    json_t *all = c->host->client_rooms(p, c->host->message_client(msg));
    json_t *mine = json_array();
    if (!all || !mine) {
        json_decref(all);
        json_decref(mine);
        return SB_ERR_NOMEM;
    }
    for (size_t i = 0; i < json_array_size(all); i++) {
        const char *full = json_string_value(json_array_get(all, i));
        if (full && strncmp(full, c->name, c->prefix_len - 1) == 0 &&
            full[c->prefix_len - 1] == ':')
            json_array_append_new(mine, json_string(full + c->prefix_len));
    }
    json_decref(all);
    return c->host->reply(msg, "rooms", mine);
}

/* A `who` waiting for the host's answer (room_members() is asynchronous:
 * in a cluster Redis is asked). */
typedef struct who_req {
    chat *c;
    sb_client_id client;
    size_t id_len;
    char id[]; /* the request's "id" as JSON text, id_len bytes */
} who_req;

static int by_id(const void *a, const void *b)
{
    json_int_t x = json_integer_value(*(json_t *const *)a);
    json_int_t y = json_integer_value(*(json_t *const *)b);
    return (x > y) - (x < y);
}

static void on_members(sb_plugin *p, int status, const char *room, size_t count,
                       json_t *members, void *udata)
{
    who_req *w = udata;
    chat *c = w->c;
    const char *id = w->id_len ? w->id : NULL;
    if (status != SB_OK) {
        c->host->send_exception(p, w->client, id, w->id_len,
                                "cannot list the room's members now");
    } else {
        /* Sorted, so that every client sees the same list. */
        size_t n = json_array_size(members);
        json_t **v = malloc((n ? n : 1) * sizeof(*v));
        json_t *list = json_array();
        for (size_t i = 0; v && i < n; i++)
            v[i] = json_array_get(members, i);
        if (v)
            qsort(v, n, sizeof(*v), by_id);
        for (size_t i = 0; v && list && i < n; i++)
            json_array_append(list, v[i]);
        free(v);
        c->host->send_ack(p, w->client, "who",
                          json_pack("{s:s, s:o}", "room", room + c->prefix_len,
                                    "members", list),
                          id, w->id_len);
    }
    free(w);
}

/* {"event":"who","data":{"room":R}} → {"event":"who","data":{"room":R,
 * "members":[ids]}}: every member, on every node of a cluster, sorted. */
static int on_who(sb_plugin *p, sb_message *msg, void *udata)
{
    chat *c = udata;
    json_t *data;
    const char *room;
    int rc;
    if ((rc = data_object(c, msg, &data)) != SB_OK ||
        (rc = get_room(c, msg, data, &room)) != SB_OK)
        return rc;
    /* A host older than ABI 1.3 has no room_members(). */
    if (c->host->size < offsetof(sb_host, room_members) + sizeof(void *))
        return c->host->fail(msg, "who needs Switchboard with ABI 1.3");
    size_t id_len = 0;
    const char *id = c->host->message_id_raw(msg, &id_len);
    who_req *w = malloc(sizeof(*w) + id_len);
    char *full = host_room(c, room);
    if (!w || !full) {
        free(w);
        free(full);
        return SB_ERR_NOMEM;
    }
    w->c = c;
    w->client = c->host->message_client(msg);
    w->id_len = id ? id_len : 0;
    if (w->id_len)
        memcpy(w->id, id, id_len);
    rc = c->host->room_members(p, full, on_members, w);
    free(full);
    if (rc != SB_OK) {
        free(w);
        return c->host->fail(msg, "cannot list room %s: %s", room,
                             c->host->strerror(rc));
    }
    return SB_OK;
}

static void chat_unload(sb_plugin *p, void *udata)
{
    free(udata);
}

/* Reads a length limit: an integer from `min` up, `def` when absent. The
 * host's range-checked getter names the key, the section and the range. */
static int config_length(sb_plugin *p, const sb_host *h, const char *key,
                         int64_t def, int64_t min, size_t *out)
{
    int64_t v;
    int rc = h->config_int_range(p, key, def, min, INT64_MAX, &v);
    if (rc == SB_OK)
        *out = (size_t)v;
    return rc;
}

static int chat_init(sb_plugin *p, const sb_host *h)
{
    chat cfg = {.host = h, .name = h->plugin_name(p)};
    cfg.prefix_len = strlen(cfg.name) + 1;
    int rc;
    if ((rc = config_length(p, h, "max_room_length", 64, 1,
                            &cfg.max_room_length)) != SB_OK ||
        (rc = config_length(p, h, "max_text_length", 4096, 0,
                            &cfg.max_text_length)) != SB_OK)
        return rc;

    chat *c = malloc(sizeof(*c));
    if (!c)
        return h->plugin_error(p, "out of memory");
    *c = cfg;
    static const struct {
        const char *event;
        sb_event_fn fn;
    } events[] = {{"join", on_join},
                  {"leave", on_leave},
                  {"say", on_say},
                  {"rooms", on_rooms},
                  {"who", on_who}};
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if ((rc = h->subscribe(p, events[i].event, events[i].fn, c)) != SB_OK) {
            free(c);
            return h->plugin_error(p, "cannot subscribe '%s': %s",
                                   events[i].event, h->strerror(rc));
        }
    }
    /* Last, so that no failure above leaves a hook that would free c a
     * second time. */
    if ((rc = h->on_unload(p, chat_unload, c)) != SB_OK) {
        free(c);
        return h->plugin_error(p, "cannot register unload: %s",
                               h->strerror(rc));
    }
    return SB_OK;
}

SB_PLUGIN_DEFINE("chat", "1.0.0", chat_init);

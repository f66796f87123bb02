/*
 * recovery — see recovery.h.
 */
#include "recovery.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "client.h"
#include "config.h"
#include "dispatch.h"
#include "envelope.h"
#include "hash.h"
#include "log.h"
#include "rooms.h"
#include "table.h"

#define TOKEN_BYTES 18 /* 144 random bits: 24 URL-safe characters */
#define TOKEN_LEN   24
#define EPOCH_LEN   12 /* 72 random bits */
#define SWEEP_MS    1000

_Static_assert(sizeof(((struct sb_recovery_live *)0)->token) == TOKEN_LEN + 1,
               "a live client's token");

typedef struct session {
    char token[TOKEN_LEN + 1];
    uint64_t hash;
    sb_client_id previous;
    uint32_t gateway;
    json_t *identity; /* NULL: none */
    json_t *rooms;    /* array of names */
    json_t *states;   /* {plugin: state} or NULL */
    uint64_t expires_ms;
} session;

typedef struct hist_msg {
    uint64_t offset;
    uint64_t at_ms;
    sb_client_id except;
    size_t len;
    char text[]; /* the whole envelope, "room" and "offset" included */
} hist_msg;

typedef struct history {
    char *name;
    uint64_t hash;
    char epoch[EPOCH_LEN + 1];
    uint64_t offset; /* of the last message, 0 before any */
    hist_msg **ring; /* history_size entries, allocated on the first */
    size_t head, count;
    size_t bytes;
    uint64_t last_ms; /* of the last message or join */
} history;

struct sb_recovery {
    sb_server *server;
    const sb_recovery_conf *conf;
    sb_table sessions; /* by token */
    sb_table rooms;    /* history by room name */
    uv_timer_t sweep;
    sb_buf scratch;
    size_t history_bytes; /* of every room */
    sb_recovery_stats stats;
};

struct sb_recovery *sb_recovery_instance;

static uint64_t now_ms(void)
{
    return uv_now(sb_recovery_instance->server->loop);
}

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* `n` random URL-safe characters (6 bits each) and a NUL into out. */
static int random_text(char *out, size_t n)
{
    unsigned char bytes[64];
    size_t need = (n * 6 + 7) / 8;
    size_t got = 0;
    while (got < need) {
        ssize_t r = getrandom(bytes + got, need - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++) {
        size_t bit = i * 6;
        unsigned v = (unsigned)bytes[bit / 8] << 8 |
                     (bit / 8 + 1 < need ? bytes[bit / 8 + 1] : 0);
        out[i] = b64url[(v >> (10 - bit % 8)) & 63];
    }
    out[n] = 0;
    return 0;
}

static bool session_eq(const void *item, const void *key)
{
    return strcmp(((const session *)item)->token, key) == 0;
}

static bool history_eq(const void *item, const void *key)
{
    return strcmp(((const history *)item)->name, key) == 0;
}

static uint64_t text_hash(const char *s)
{
    return sb_hash_bytes(s, strlen(s));
}

static void session_free(session *se)
{
    json_decref(se->identity);
    json_decref(se->rooms);
    json_decref(se->states);
    free(se);
}

static void history_drop_oldest(history *h)
{
    hist_msg *m = h->ring[h->head];
    h->bytes -= m->len;
    sb_recovery_instance->history_bytes -= m->len;
    free(m);
    h->ring[h->head] = NULL;
    h->head = (h->head + 1) % sb_recovery_instance->conf->history_size;
    h->count--;
}

static void history_free(history *h)
{
    while (h->count)
        history_drop_oldest(h);
    free(h->ring);
    free(h->name);
    free(h);
}

static hist_msg *history_at(const history *h, size_t i)
{
    return h->ring[(h->head + i) % sb_recovery_instance->conf->history_size];
}

static bool keeps_history(const char *room)
{
    char **p = sb_recovery_instance->conf->room_prefixes;
    if (!p)
        return true;
    for (; *p; p++)
        if (strncmp(room, *p, strlen(*p)) == 0)
            return true;
    return false;
}

/* The room's history, created (with a new epoch) when `create`. */
static history *history_of(const char *room, bool create)
{
    struct sb_recovery *r = sb_recovery_instance;
    uint64_t hash = text_hash(room);
    history *h = sb_table_find(&r->rooms, hash, history_eq, room);
    if (h || !create)
        return h;
    h = calloc(1, sizeof(*h));
    if (!h || !(h->name = strdup(room)) ||
        random_text(h->epoch, EPOCH_LEN) < 0 ||
        sb_table_add(&r->rooms, hash, h) < 0) {
        if (h)
            free(h->name);
        free(h);
        return NULL;
    }
    h->hash = hash;
    h->last_ms = now_ms();
    return h;
}

/* ---- the sweep ----------------------------------------------------------- */

static bool session_expired(void *item, void *ctx)
{
    session *se = item;
    if (se->expires_ms > *(uint64_t *)ctx)
        return false;
    session_free(se);
    return true;
}

/* Drops the messages older than history_ttl; a history with none left
 * whose room has been quiet and empty for history_ttl goes too (a later
 * message starts a new epoch). */
static bool history_expired(void *item, void *ctx)
{
    struct sb_recovery *r = sb_recovery_instance;
    history *h = item;
    uint64_t now = *(uint64_t *)ctx,
             ttl = (uint64_t)r->conf->history_ttl * 1000;
    while (h->count && now - history_at(h, 0)->at_ms >= ttl)
        history_drop_oldest(h);
    if (h->count || now - h->last_ms < ttl ||
        sb_rooms_find(&r->server->rooms, h->name))
        return false;
    history_free(h);
    return true;
}

static void on_sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ms();
    sb_table_remove_if(&sb_recovery_instance->sessions, session_expired, &now);
    sb_table_remove_if(&sb_recovery_instance->rooms, history_expired, &now);
}

int sb_recovery_start(sb_server *s)
{
    if (!s->config->recovery.enabled || sb_recovery_instance)
        return 0;
    struct sb_recovery *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->server = s;
    r->conf = &s->config->recovery;
    uv_timer_init(s->loop, &r->sweep);
    uv_timer_start(&r->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    sb_recovery_instance = r;
    return 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    free(h->data);
}

static bool drop_session(void *item, void *ctx)
{
    (void)ctx;
    session_free(item);
    return true;
}

static bool drop_history(void *item, void *ctx)
{
    (void)ctx;
    history_free(item);
    return true;
}

void sb_recovery_stop(void)
{
    struct sb_recovery *r = sb_recovery_instance;
    if (!r)
        return;
    sb_table_remove_if(&r->sessions, drop_session, NULL);
    sb_table_remove_if(&r->rooms, drop_history, NULL);
    sb_table_free(&r->sessions);
    sb_table_free(&r->rooms);
    sb_buf_free(&r->scratch);
    for (sb_client *c = r->server->clients; c; c = c->next)
        sb_recovery_forget(c);
    sb_recovery_instance = NULL;
    uv_timer_stop(&r->sweep);
    r->sweep.data = r;
    uv_close((uv_handle_t *)&r->sweep, on_sweep_closed);
}

/* ---- live clients -------------------------------------------------------- */

/* {"event":"sb:NAME","data":<data>} to c. Steals data. */
static void send_event(sb_client *c, const char *event, json_t *data)
{
    sb_buf *b = &sb_recovery_instance->scratch;
    b->len = 0;
    if (sb_envelope_compose(b, event, data, (sb_span){NULL, 0}) == SB_OK)
        sb_client_send_text(c, b->data, b->len);
}

void sb_recovery_connect(sb_client *c)
{
    struct sb_recovery *r = sb_recovery_instance;
    if (!r || sb_client_conf(c)->envelope != SB_ENVELOPE_JSON || c->recovery)
        return;
    struct sb_recovery_live *live = calloc(1, sizeof(*live));
    if (!live || random_text(live->token, TOKEN_LEN) < 0) {
        free(live);
        sb_log_warn("recovery", "client %llu: no session token",
                    (unsigned long long)c->id);
        return;
    }
    live->first = true;
    c->recovery = live;
    send_event(c, "sb:session",
               json_pack("{s:I,s:s,s:I}", "client", (json_int_t)c->id, "token",
                         live->token, "ttl", (json_int_t)r->conf->session_ttl));
}

bool sb_recovery_keeps(const sb_client *c)
{
    if (!sb_recovery_instance || !c->recovery)
        return false;
    if (c->close_code) /* we closed first */
        return c->close_code == 1001 || c->close_code == 1006 ||
               c->close_code == 1011 || c->close_code == 1012;
    if (c->peer_close_code) /* the client did */
        return c->peer_close_code != 1000 && c->peer_close_code != 1001;
    return true; /* no close at all: 1006 */
}

void sb_recovery_save(sb_client *c, json_t *states)
{
    struct sb_recovery *r = sb_recovery_instance;
    session *se = r && c->recovery ? calloc(1, sizeof(*se)) : NULL;
    json_t *rooms = se ? json_array() : NULL;
    if (!rooms) {
        free(se);
        json_decref(states);
        return;
    }
    for (uint32_t i = 0; i < c->rooms.n; i++)
        json_array_append_new(rooms, json_string(c->rooms.v[i].room->name));
    memcpy(se->token, c->recovery->token, sizeof(se->token));
    se->hash = text_hash(se->token);
    se->previous = c->id;
    se->gateway = c->gateway;
    se->identity = json_incref(c->identity);
    se->rooms = rooms;
    se->states = states;
    se->expires_ms = now_ms() + (uint64_t)r->conf->session_ttl * 1000;
    if (sb_table_add(&r->sessions, se->hash, se) < 0)
        session_free(se);
}

void sb_recovery_forget(sb_client *c)
{
    free(c->recovery);
    c->recovery = NULL;
}

/* ---- room messages ------------------------------------------------------- */

int sb_recovery_stamp(const char *room, sb_buf *text, sb_client_id except)
{
    struct sb_recovery *r = sb_recovery_instance;
    if (!*room || !keeps_history(room))
        return 0;
    history *h = history_of(room, true);
    if (!h)
        return SB_ERR_NOMEM;
    if (!h->ring &&
        !(h->ring = calloc(r->conf->history_size, sizeof(hist_msg *))))
        return SB_ERR_NOMEM;
    /* {"event":E,"data":D} → {"event":E,"data":D,"room":R,"offset":N} */
    char num[32];
    int nlen = snprintf(num, sizeof(num), ",\"offset\":%llu}",
                        (unsigned long long)(h->offset + 1));
    text->len--; /* the closing brace */
    if (sb_buf_append(text, ",\"room\":", 8) < 0 ||
        sb_json_append_string(text, room, strlen(room)) < 0 ||
        sb_buf_append(text, num, (size_t)nlen) < 0)
        return SB_ERR_NOMEM;
    hist_msg *m = malloc(sizeof(*m) + text->len);
    if (!m)
        return SB_ERR_NOMEM;
    h->offset++;
    m->offset = h->offset;
    m->at_ms = h->last_ms = now_ms();
    m->except = except;
    m->len = text->len;
    memcpy(m->text, text->data, text->len);
    size_t cap = r->conf->history_size;
    while (h->count &&
           (h->count == cap || h->bytes + m->len > r->conf->history_bytes))
        history_drop_oldest(h);
    h->ring[(h->head + h->count) % cap] = m;
    h->count++;
    h->bytes += m->len;
    r->history_bytes += m->len;
    return 1;
}

void sb_recovery_joined(sb_client *c, const char *room)
{
    if (!c->recovery || !keeps_history(room))
        return;
    history *h = history_of(room, true);
    if (!h)
        return;
    h->last_ms = now_ms();
    send_event(c, "sb:joined",
               json_pack("{s:s,s:s,s:I}", "room", room, "epoch", h->epoch,
                         "offset", (json_int_t)h->offset));
}

/* ---- resume -------------------------------------------------------------- */

/* Whether `room` can be recovered whole from the client's position
 * {"epoch","offset"}: the same epoch, nothing trimmed since, at most
 * max_recover missing. */
static bool recoverable(const history *h, json_t *pos)
{
    if (!h || !json_is_object(pos))
        return false;
    const char *epoch = json_string_value(json_object_get(pos, "epoch"));
    json_t *off = json_object_get(pos, "offset");
    if (!epoch || strcmp(epoch, h->epoch) != 0 || !json_is_integer(off))
        return false;
    json_int_t n = json_integer_value(off);
    if (n < 0 || (uint64_t)n > h->offset)
        return false;
    uint64_t missing = h->offset - (uint64_t)n;
    if (missing > sb_recovery_instance->conf->max_recover)
        return false;
    uint64_t first = h->count ? history_at(h, 0)->offset : h->offset + 1;
    return first <= (uint64_t)n + 1;
}

static void replay(sb_client *c, const history *h, uint64_t after,
                   sb_client_id previous)
{
    for (size_t i = 0; i < h->count; i++) {
        const hist_msg *m = history_at(h, i);
        if (m->offset > after && m->except != previous)
            sb_client_send_text(c, m->text, m->len);
    }
}

bool sb_recovery_first(sb_client *c, const char *buf, size_t len,
                       sb_resumed *out)
{
    struct sb_recovery *r = sb_recovery_instance;
    memset(out, 0, sizeof(*out));
    if (!r || !c->recovery || !c->recovery->first)
        return false;
    c->recovery->first = false;
    static const char tag[] = "\"sb:resume\"";
    if (len < sizeof(tag) ||
        !memmem(buf, len < 64 ? len : 64, tag, sizeof(tag) - 1))
        return false;
    json_t *msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const char *event = json_string_value(json_object_get(msg, "event"));
    if (!event || strcmp(event, "sb:resume") != 0) {
        json_decref(msg);
        return false;
    }
    json_t *data = json_object_get(msg, "data");
    const char *token = json_string_value(json_object_get(data, "token"));
    json_t *asked = json_object_get(data, "rooms");
    session *se = NULL;
    if (token && strlen(token) == TOKEN_LEN) {
        uint64_t hash = text_hash(token);
        se = sb_table_find(&r->sessions, hash, session_eq, token);
        /* Another identity's token resumes nothing (and stays for its
         * owner); a matching one is used up. */
        if (se && (se->gateway != c->gateway || se->expires_ms <= now_ms() ||
                   !(se->identity
                         ? c->identity && json_equal(se->identity, c->identity)
                         : !c->identity)))
            se = NULL;
        if (se)
            sb_table_remove(&r->sessions, hash, session_eq, token);
    }
    json_t *rooms = json_object();
    struct {
        const history *h;
        uint64_t after;
    } *todo = NULL;
    size_t ntodo = 0;
    if (se) {
        size_t i;
        json_t *name;
        todo = calloc(json_array_size(se->rooms) + 1, sizeof(*todo));
        json_array_foreach(se->rooms, i, name)
        {
            const char *room = json_string_value(name);
            if (sb_rooms_join(&r->server->rooms, &c->rooms, room) < 0)
                continue;
            if (!keeps_history(room)) {
                json_object_set_new(rooms, room,
                                    json_pack("{s:b}", "recovered", 0));
                continue;
            }
            history *h = history_of(room, true);
            if (!h)
                continue;
            json_t *pos = json_object_get(asked, room);
            bool ok = todo && recoverable(h, pos);
            if (ok)
                r->stats.rooms_recovered++;
            else
                r->stats.rooms_lost++;
            json_object_set_new(rooms, room,
                                json_pack("{s:b,s:s,s:I}", "recovered", ok,
                                          "epoch", h->epoch, "offset",
                                          (json_int_t)h->offset));
            if (ok && todo) {
                todo[ntodo].h = h;
                todo[ntodo].after = (uint64_t)json_integer_value(
                    json_object_get(pos, "offset"));
                ntodo++;
            }
        }
    }
    json_t *answer =
        json_pack("{s:I,s:o,s:s,s:O}", "client", (json_int_t)c->id, "previous",
                  se ? json_integer((json_int_t)se->previous) : json_null(),
                  "token", c->recovery->token, "rooms", rooms);
    send_event(c, "sb:resumed", answer);
    /* In one process nothing can arrive between the answer and the replay:
     * the replay is queued now, and live messages after it. */
    for (size_t i = 0; i < ntodo; i++)
        replay(c, todo[i].h, todo[i].after, se->previous);
    free(todo);
    if (se)
        r->stats.resumed++;
    else
        r->stats.fresh++;
    if (se) {
        out->previous = se->previous;
        out->states = se->states;
        se->states = NULL;
        session_free(se);
    }
    out->rooms = rooms;
    json_decref(msg);
    return true;
}

bool sb_recovery_get_stats(sb_recovery_stats *out)
{
    const struct sb_recovery *r = sb_recovery_instance;
    if (!r)
        return false;
    *out = r->stats;
    out->sessions = r->sessions.count;
    out->history_rooms = r->rooms.count;
    out->history_bytes = r->history_bytes;
    return true;
}

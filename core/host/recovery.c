/*
 * recovery — see recovery.h.
 */
#include "recovery.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "clients.h"
#include "cluster.h"
#include "config.h"
#include "dispatch.h"
#include "envelope.h"
#include "hash.h"
#include "log.h"
#include "random.h"
#include "rooms.h"
#include "table.h"

#define TOKEN_BYTES 18 /* 144 random bits: 24 URL-safe characters */
#define TOKEN_LEN   24
#define EPOCH_LEN   12 /* 72 random bits */
#define SWEEP_MS    1000
#define HELD_MAX    (1u << 20) /* a client's messages held during a resume */
#define NODE_DIGITS 7          /* SB_CLUSTER_MAX_NODE is 2097151 */
#define FLUSH_MS    10         /* live records: the writes' coalescing */
#define FLUSH_BATCH 256        /* live records per script call */
#define FIRST_WAIT                                                             \
    1000 /* ms a new client's record may wait for its                          \
            first message */

_Static_assert(sizeof(((struct sb_recovery_live *)0)->token) ==
                   TOKEN_LEN + 1 + NODE_DIGITS + 1,
               "a live client's token: 24 characters, '.', the node");
_Static_assert(SB_CLUSTER_MAX_NODE <= 9999999, "a node has at most 7 digits");

typedef struct session {
    char token[sizeof(((struct sb_recovery_live *)0)->token)];
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
    /* With [cluster]: sessions and history in Redis. */
    bool cluster;
    sb_recovery_resumed_fn resumed_fn;
    void *resumed_ctx;
    struct resume_op *ops; /* resumes under way */
    uv_timer_t wait;       /* looks at those waiting for subscriptions */
    int open_timers;       /* at the stop: closes to wait for */
    /* Live records ([cluster]): PREFIX ls:NODE, field TOKEN. */
    sb_recovery_states_fn states_fn;
    void *states_ctx;
    sb_client_id *dirty; /* clients whose record awaits a write */
    size_t ndirty, dirty_cap;
    char (*gone)[sizeof(((struct sb_recovery_live *)0)->token)];
    size_t ngone, gone_cap; /* tokens whose record awaits a delete */
    uv_timer_t flush;
    bool flush_armed;
    char live_key[128];  /* PREFIX ls:NODE */
    uint64_t reconnects; /* the broker's, when the records were written */
    sb_buf texts[FLUSH_BATCH];
};

struct sb_recovery *sb_recovery_instance;

static uint64_t now_ms(void)
{
    return uv_now(sb_recovery_instance->server->loop);
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
        sb_random_text(h->epoch, EPOCH_LEN) < 0 ||
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

/* ---- in a cluster: sessions and history in Redis ------------------------- */

static void send_event(sb_client *c, const char *event, json_t *data);
static void send_joined(sb_client *c, const char *room, const char *epoch,
                        uint64_t offset);
static void send_resumed(sb_client *c, bool found, sb_client_id previous,
                         json_t *rooms);

static bool cluster_keeps(const char *room)
{
    return sb_recovery_instance && *room && keeps_history(room);
}

/* The node knows a joiner's position: sb:joined. */
static void cluster_position(uint64_t client, const char *room,
                             const char *epoch, uint64_t offset)
{
    struct sb_recovery *r = sb_recovery_instance;
    sb_client *c = r ? sb_clients_find(&r->server->table, client) : NULL;
    if (!c || !c->recovery || c->closing)
        return;
    if (!epoch) {
        sb_log_warn("recovery",
                    "client %llu: the position of room %s is unknown (Redis "
                    "failed): no sb:joined",
                    (unsigned long long)client, room);
        return;
    }
    send_joined(c, room, epoch, offset);
}

/* What a session must match to be resumed: "GATEWAY\nIDENTITY\n", the
 * identity as canonical JSON. NULL when out of memory. */
static char *session_owner(uint32_t gateway, json_t *identity)
{
    char *id = identity ? json_dumps(identity, JSON_COMPACT | JSON_SORT_KEYS |
                                                   JSON_ENCODE_ANY)
                        : strdup("null");
    if (!id)
        return NULL;
    size_t n = strlen(id) + 32;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%u\n%s\n", gateway, id);
    free(id);
    return out;
}

static int session_key(char *out, size_t size, const char *token)
{
    int n = snprintf(out, size, "%ss:%s", sb_cluster_prefix(), token);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* A session as Redis keeps it (in s:TOKEN, and as a live record):
 * "OWNER{"p":ID,"r":[ROOMS],"s":STATES}". */
static int record_text(sb_buf *out, uint32_t gateway, json_t *identity,
                       sb_client_id previous, json_t *rooms, json_t *states)
{
    char *owner = session_owner(gateway, identity);
    json_t *v = json_pack("{s:I,s:O,s:O?}", "p", (json_int_t)previous, "r",
                          rooms, "s", states);
    char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    int rc = owner && body && sb_buf_append_str(out, owner) == 0 &&
                     sb_buf_append_str(out, body) == 0
                 ? 0
                 : -1;
    free(owner);
    free(body);
    return rc;
}

/* A live record a resume took is replaced by this mark, so that nothing
 * the old connection's node writes after (a rewrite, its drop's session)
 * brings a used token back. The mark goes with the old connection's drop,
 * or with the hash (session_ttl after its node's end). */
#define TAKEN "!"

/* Moves a dropped client's session to PREFIX s:TOKEN (PX session_ttl) and
 * deletes its live record, unless a resume took that record meanwhile:
 * then nothing. */
static const char save_script[] =
    "local was = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "if was == '" TAKEN "' then return 0 end\n"
    "redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\n"
    "return 1\n";

static void cluster_save(const session *se)
{
    struct sb_recovery *r = sb_recovery_instance;
    char key[128], ttl[24];
    sb_buf val = {0};
    int rc = SB_ERR_NOMEM;
    if (session_key(key, sizeof(key), se->token) > 0 &&
        record_text(&val, se->gateway, se->identity, se->previous, se->rooms,
                    se->states) == 0) {
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)r->conf->session_ttl * 1000);
        const char *argv[] = {"EVAL", save_script, "2",      r->live_key,
                              key,    se->token,   val.data, ttl};
        size_t lens[] = {
            4,           sizeof(save_script) - 1, 1,       strlen(r->live_key),
            strlen(key), strlen(se->token),       val.len, strlen(ttl)};
        rc = sb_cluster_command(8, argv, lens, NULL, NULL);
    }
    if (rc != SB_OK)
        sb_log_warn("recovery",
                    "client %llu: its session could not be kept in Redis "
                    "(%s)",
                    (unsigned long long)se->previous,
                    rc == SB_ERR_UNAVAILABLE ? "broker unavailable"
                                             : "out of memory");
    sb_buf_free(&val);
}

/* ---- live records: PREFIX ls:NODE, field TOKEN ----------------------------
 */

/* ARGV[1] the hash's TTL, then per record: TOKEN, what ('w': write, but
 * not over the mark of a taken record; 'd': delete), the text. */
static const char write_script[] =
    "for i = 2, #ARGV, 3 do\n"
    "  local f = ARGV[i]\n"
    "  if ARGV[i + 1] == 'd' then redis.call('HDEL', KEYS[1], f)\n"
    "  elseif redis.call('HGET', KEYS[1], f) ~= '" TAKEN "' then\n"
    "    redis.call('HSET', KEYS[1], f, ARGV[i + 2])\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
    "return 0\n";

static void on_flush(uv_timer_t *t);

static void flush_arm(struct sb_recovery *r)
{
    if (r->flush_armed)
        return;
    r->flush_armed = true;
    uv_timer_start(&r->flush, on_flush, FLUSH_MS, 0);
}

static int push_dirty(struct sb_recovery *r, sb_client_id id)
{
    if (r->ndirty == r->dirty_cap) {
        size_t cap = r->dirty_cap ? r->dirty_cap * 2 : 64;
        sb_client_id *d = realloc(r->dirty, cap * sizeof(*d));
        if (!d)
            return -1;
        r->dirty = d;
        r->dirty_cap = cap;
    }
    r->dirty[r->ndirty++] = id;
    return 0;
}

static void mark_dirty(struct sb_recovery *r, sb_client *c)
{
    if (c->recovery->dirty) {
        flush_arm(r); /* it may have waited for a first message */
        return;
    }
    if (push_dirty(r, c->id) < 0) {
        sb_log_warn("recovery",
                    "client %llu: its live record is not written (out of "
                    "memory)",
                    (unsigned long long)c->id);
        return;
    }
    c->recovery->dirty = true;
    flush_arm(r);
}

/* A batch's write failed: its clients are written again. */
static void on_written(void *udata, json_t *reply)
{
    sb_client_id *ids = udata;
    struct sb_recovery *r = sb_recovery_instance;
    if (r && (!reply || json_object_get(reply, "error"))) {
        for (size_t i = 1; i <= ids[0]; i++) {
            sb_client *c = sb_clients_find(&r->server->table, ids[i]);
            if (c && c->recovery && !c->closing)
                mark_dirty(r, c);
        }
    }
    free(ids);
}

/* Writes the dirty records and deletes the gone ones, FLUSH_BATCH per
 * script call, pipelined on the command connection. */
static void on_flush(uv_timer_t *t)
{
    struct sb_recovery *r = t->data;
    r->flush_armed = false;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)r->conf->session_ttl * 1000);
    static const char *argv[5 + 3 * FLUSH_BATCH];
    static size_t lens[5 + 3 * FLUSH_BATCH];
    sb_buf *texts = r->texts;
    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = write_script;
    lens[1] = sizeof(write_script) - 1;
    argv[2] = "1";
    lens[2] = 1;
    argv[3] = r->live_key;
    lens[3] = strlen(r->live_key);
    argv[4] = ttl;
    lens[4] = strlen(ttl);
    sb_client_id *todo = r->dirty;
    size_t ntodo = r->ndirty, di = 0, gi = 0;
    r->dirty = NULL;
    r->ndirty = r->dirty_cap = 0;
    bool down = false;
    size_t gone_from = 0; /* the deletes not sent */
    while (!down && (di < ntodo || gi < r->ngone)) {
        size_t n = 0;
        gone_from = gi;
        sb_client_id *ids = malloc((FLUSH_BATCH + 1) * sizeof(*ids));
        if (!ids)
            break;
        ids[0] = 0;
        for (; gi < r->ngone && n < FLUSH_BATCH; gi++, n++) {
            argv[5 + 3 * n] = r->gone[gi];
            lens[5 + 3 * n] = strlen(r->gone[gi]);
            argv[6 + 3 * n] = "d";
            lens[6 + 3 * n] = 1;
            argv[7 + 3 * n] = "";
            lens[7 + 3 * n] = 0;
        }
        for (; di < ntodo && n < FLUSH_BATCH; di++) {
            sb_client *c = sb_clients_find(&r->server->table, todo[di]);
            if (!c || !c->recovery || !c->recovery->dirty)
                continue;
            struct sb_recovery_live *live = c->recovery;
            /* A new client's record waits for its first message (at most
             * FIRST_WAIT), and a resuming one's for the answer, so that
             * what they do first (a join, the resume) costs no write of
             * its own. */
            if (live->pending ||
                (live->first && now_ms() - live->since_ms < FIRST_WAIT)) {
                if (push_dirty(r, c->id) < 0)
                    live->dirty = false;
                continue;
            }
            json_t *rooms = json_array();
            for (uint32_t i = 0; rooms && i < c->rooms.n; i++)
                json_array_append_new(rooms,
                                      json_string(c->rooms.v[i].room->name));
            json_t *states =
                r->states_fn ? r->states_fn(r->states_ctx, c) : NULL;
            sb_buf *b = &texts[n];
            b->len = 0;
            int ok = rooms ? record_text(b, c->gateway, c->identity, c->id,
                                         rooms, states)
                           : -1;
            json_decref(rooms);
            json_decref(states);
            live->dirty = false;
            if (ok < 0) {
                sb_log_warn("recovery",
                            "client %llu: its live record is not written "
                            "(out of memory)",
                            (unsigned long long)c->id);
                continue;
            }
            argv[5 + 3 * n] = live->token;
            lens[5 + 3 * n] = strlen(live->token);
            argv[6 + 3 * n] = "w";
            lens[6 + 3 * n] = 1;
            argv[7 + 3 * n] = b->data;
            lens[7 + 3 * n] = b->len;
            ids[++ids[0]] = c->id;
            live->written = true;
            n++;
        }
        if (!n) {
            free(ids);
            break;
        }
        if (sb_cluster_command((int)(5 + 3 * n), argv, lens, on_written, ids) ==
            SB_OK)
            continue;
        /* Broker down: nothing of the batch was sent. Its records and
         * deletes (and those not reached) go once it is back (the sweep
         * tries every second). */
        down = true;
        for (size_t i = 1; i <= ids[0]; i++) {
            sb_client *c = sb_clients_find(&r->server->table, ids[i]);
            if (c && c->recovery && push_dirty(r, c->id) == 0)
                c->recovery->dirty = true;
        }
        free(ids);
    }
    for (; di < ntodo; di++) {
        sb_client *c = sb_clients_find(&r->server->table, todo[di]);
        if (c && c->recovery && c->recovery->dirty && push_dirty(r, c->id) < 0)
            c->recovery->dirty = false;
    }
    free(todo);
    if (!down)
        gone_from = r->ngone;
    if (gone_from && gone_from < r->ngone)
        memmove(r->gone, r->gone + gone_from,
                (r->ngone - gone_from) * sizeof(*r->gone));
    r->ngone -= gone_from;
    for (size_t i = 0; i < FLUSH_BATCH; i++)
        if (texts[i].cap > 4096) /* a big one is not kept */
            sb_buf_free(&texts[i]);
}

void sb_recovery_touch(sb_client *c)
{
    struct sb_recovery *r = sb_recovery_instance;
    if (r && r->cluster && c->recovery && !c->closing)
        mark_dirty(r, c);
}

void sb_recovery_drop(sb_client *c)
{
    struct sb_recovery *r = sb_recovery_instance;
    struct sb_recovery_live *live = c->recovery;
    if (!r || !r->cluster || !live)
        return;
    live->dirty = false;
    if (!live->written)
        return;
    live->written = false;
    if (r->ngone == r->gone_cap) {
        size_t cap = r->gone_cap ? r->gone_cap * 2 : 64;
        void *g = realloc(r->gone, cap * sizeof(*r->gone));
        if (!g)
            return; /* the field stays until the hash expires */
        r->gone = g;
        r->gone_cap = cap;
    }
    memcpy(r->gone[r->ngone++], live->token, sizeof(live->token));
    flush_arm(r);
}

void sb_recovery_on_states(sb_recovery_states_fn fn, void *ctx)
{
    if (!sb_recovery_instance)
        return;
    sb_recovery_instance->states_fn = fn;
    sb_recovery_instance->states_ctx = ctx;
}

/* Every second: the live records' hash lives session_ttl after the node's
 * last sign of life; the records a broker loss kept back are written. */
static void live_refresh(struct sb_recovery *r)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)r->conf->session_ttl * 1000);
    const char *argv[] = {"PEXPIRE", r->live_key, ttl};
    size_t lens[] = {7, strlen(r->live_key), strlen(ttl)};
    if (!sb_cluster_up())
        return;
    sb_cluster_command(3, argv, lens, NULL, NULL);
    /* The broker came back (it may have restarted empty): every record is
     * written again. */
    uint64_t reconnects = sb_cluster_get_stats()->reconnects;
    if (reconnects != r->reconnects) {
        r->reconnects = reconnects;
        for (sb_client *c = r->server->clients; c; c = c->next)
            if (c->recovery && !c->closing)
                mark_dirty(r, c);
    }
    if (r->ndirty || r->ngone)
        flush_arm(r);
}

/* Takes a session if its owner matches: single use, and a token shown
 * with another identity leaves it for its owner. The kept session
 * (KEYS[1], s:TOKEN) first, else the live record (KEYS[2], ls:NODE, field
 * ARGV[2]) of a client whose node crashed or that is still connected
 * there: [TEXT, 1 when it was live]. */
static const char take_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local live = 0\n"
    "if not v and KEYS[2] then\n"
    "  v = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "  live = 1\n"
    "end\n"
    "if not v or v == '" TAKEN "' then return nil end\n"
    "if string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end\n"
    "if live == 1 then redis.call('HSET', KEYS[2], ARGV[2], '" TAKEN "')\n"
    "else redis.call('DEL', KEYS[1]) end\n"
    "return {v, live}\n";

typedef struct resume_op {
    struct resume_op *next;
    sb_client_id client;
    json_t *asked;   /* {R: {epoch, offset}} from the client, or NULL */
    json_t *session; /* {"p","r","s"} once taken */
    json_t *answer;  /* {R: {recovered, epoch, offset}} */
    json_t *replay;  /* {R: [texts]} */
    json_t *tops;    /* {R: offset}: held messages up to it are dropped */
    size_t reads;    /* replies awaited */
    int inflight;    /* commands whose callback has not run */
    bool waiting;    /* for the node's subscriptions */
    bool dead;       /* recovery stopped: free when inflight is 0 */
    bool failed;     /* Redis could not answer: a fresh session */
    uint64_t deadline_ms;
} resume_op;

static void op_free(resume_op *op)
{
    json_decref(op->asked);
    json_decref(op->session);
    json_decref(op->answer);
    json_decref(op->replay);
    json_decref(op->tops);
    free(op);
}

static void op_unlink(resume_op *op)
{
    struct sb_recovery *r = sb_recovery_instance;
    for (resume_op **p = r ? &r->ops : NULL; p && *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            return;
        }
}

static void cancel_ops(struct sb_recovery *r)
{
    resume_op *op = r->ops;
    r->ops = NULL;
    while (op) {
        resume_op *next = op->next;
        sb_cluster_release(op->client, NULL, NULL);
        if (op->inflight)
            op->dead = true;
        else
            op_free(op);
        op = next;
    }
}

/* A callback's op: NULL (and freed when nothing else is in flight) if
 * recovery stopped. */
static resume_op *op_back(resume_op *op)
{
    op->inflight--;
    if (!op->dead && sb_recovery_instance)
        return op;
    if (!op->inflight)
        op_free(op);
    return NULL;
}

static bool keep_held(void *ctx, const char *room, uint64_t offset)
{
    json_t *top = json_object_get(ctx, room);
    return !offset || !top || offset > (uint64_t)json_integer_value(top);
}

/* Answers the resume: sb:resumed, each recovered room's replay, what came
 * live meanwhile (without what the replay had), the plugins' hook, then
 * the messages the client sent meanwhile. */
static void op_finish(resume_op *op)
{
    struct sb_recovery *r = sb_recovery_instance;
    op_unlink(op);
    sb_client *c = sb_clients_find(&r->server->table, op->client);
    if (!c || !c->recovery) {
        sb_cluster_release(op->client, NULL, NULL);
        op_free(op);
        return;
    }
    json_t *rooms = op->answer ? op->answer : json_object();
    op->answer = NULL;
    sb_client_id previous =
        (sb_client_id)json_integer_value(json_object_get(op->session, "p"));
    send_resumed(c, op->session != NULL, previous, rooms);
    const char *room;
    json_t *texts;
    json_object_foreach(op->replay, room, texts)
    {
        size_t i;
        json_t *t;
        json_array_foreach(texts, i, t)
            sb_client_send_text(c, json_string_value(t), json_string_length(t));
    }
    sb_cluster_release(op->client, keep_held, op->tops);
    if (op->session)
        r->stats.resumed++;
    else if (op->failed)
        r->stats.unavailable++;
    else
        r->stats.fresh++;
    sb_resumed out = {.previous = previous, .rooms = rooms};
    if (op->session)
        out.states = json_incref(json_object_get(op->session, "s"));
    else
        out.previous = 0;
    struct sb_recovery_live *live = c->recovery;
    live->pending = false;
    if (live->dirty) /* its record waited for the resume */
        flush_arm(r);
    if (r->resumed_fn)
        r->resumed_fn(r->resumed_ctx, c, &out);
    else {
        json_decref(out.states);
        json_decref(out.rooms);
    }
    op_free(op);
    /* What the client sent meanwhile, in order. */
    sb_buf held = live->held;
    live->held = (sb_buf){0};
    for (size_t at = 0; at + 5 <= held.len;) {
        uint32_t len;
        memcpy(&len, held.data + at, 4);
        bool text = held.data[at + 4];
        at += 5;
        if (c->closing)
            break;
        if (sb_dispatch(c, held.data + at, len, text) != 0)
            sb_client_close(c, 1007, "Invalid UTF-8");
        at += len;
    }
    sb_buf_free(&held);
}

/* One room's read: recovered only whole (the same epoch, nothing trimmed,
 * at most max_recover missing), and then its replay. */
static void on_read(void *udata, json_t *reply)
{
    void **pair = udata;
    resume_op *op = pair[0];
    char *room = pair[1];
    free(pair);
    if (!(op = op_back(op))) {
        free(room);
        return;
    }
    struct sb_recovery *r = sb_recovery_instance;
    const char *epoch = json_string_value(json_array_get(reply, 0));
    json_t *o = json_array_get(reply, 1);
    json_t *entries = json_array_get(reply, 2);
    json_t *pos = json_object_get(op->asked, room);
    const char *want = json_string_value(json_object_get(pos, "epoch"));
    json_t *woff = json_object_get(pos, "offset");
    bool ok = false;
    json_t *texts = json_array();
    if (epoch && json_is_integer(o) && want && json_is_integer(woff) &&
        strcmp(want, epoch) == 0 && json_integer_value(woff) >= 0 &&
        json_integer_value(woff) <= json_integer_value(o) &&
        (uint64_t)(json_integer_value(o) - json_integer_value(woff)) <=
            r->conf->max_recover) {
        uint64_t after = (uint64_t)json_integer_value(woff),
                 top = (uint64_t)json_integer_value(o);
        json_int_t prev = json_integer_value(json_object_get(op->session, "p"));
        uint64_t next = after + 1;
        size_t i;
        json_t *e;
        json_array_foreach(entries, i, e)
        {
            uint64_t id = strtoull(
                json_string_value(json_array_get(e, 0)) ?: "0", NULL, 10);
            if (id != next || id > top)
                break;
            json_t *f = json_array_get(e, 1), *text = NULL;
            uint64_t except = 0;
            for (size_t j = 0; j + 1 < json_array_size(f); j += 2) {
                const char *k = json_string_value(json_array_get(f, j));
                json_t *v = json_array_get(f, j + 1);
                if (k && strcmp(k, "m") == 0)
                    text = v;
                else if (k && strcmp(k, "x") == 0)
                    except = strtoull(json_string_value(v) ?: "0", NULL, 10);
            }
            if (!json_is_string(text))
                break;
            if (except != (uint64_t)prev)
                json_array_append(texts, text);
            next++;
        }
        ok = next == top + 1;
    }
    if (ok)
        r->stats.rooms_recovered++;
    else
        r->stats.rooms_lost++;
    if (epoch && json_is_integer(o)) {
        json_object_set_new(op->answer, room,
                            json_pack("{s:b,s:s,s:O}", "recovered", ok, "epoch",
                                      epoch, "offset", o));
        json_object_set(op->tops, room, o);
    } else {
        json_object_set_new(op->answer, room,
                            json_pack("{s:b}", "recovered", 0));
    }
    if (ok)
        json_object_set(op->replay, room, texts);
    json_decref(texts);
    free(room);
    if (--op->reads == 0)
        op_finish(op);
}

/* The node's subscriptions to the session's history rooms are confirmed
 * (or it waited command_timeout): each room's position and stream. */
static void op_read(resume_op *op)
{
    struct sb_recovery *r = sb_recovery_instance;
    op->waiting = false;
    size_t i;
    json_t *name;
    op->reads = 1; /* held until every read is sent */
    json_array_foreach(json_object_get(op->session, "r"), i, name)
    {
        const char *room = json_string_value(name);
        if (!room || !keeps_history(room))
            continue;
        if (!sb_cluster_room_ready(room)) {
            /* Not subscribed within command_timeout: what reaches the
             * client live is not known to follow any position. */
            r->stats.rooms_lost++;
            json_object_set_new(op->answer, room,
                                json_pack("{s:b}", "recovered", 0));
            continue;
        }
        json_t *pos = json_object_get(op->asked, room);
        json_t *off = json_object_get(pos, "offset");
        json_int_t after = json_integer_value(off);
        if (after < 0)
            after = 0;
        void **pair = malloc(2 * sizeof(void *));
        char *copy = strdup(room);
        if (pair && copy) {
            pair[0] = op;
            pair[1] = copy;
            op->inflight++;
            op->reads++;
            if (sb_cluster_read_room(room, (uint64_t)after,
                                     r->conf->max_recover + 1, on_read,
                                     pair) == SB_OK)
                continue;
            op->inflight--;
            op->reads--;
        }
        free(pair);
        free(copy);
        r->stats.rooms_lost++;
        json_object_set_new(op->answer, room,
                            json_pack("{s:b}", "recovered", 0));
    }
    if (--op->reads == 0)
        op_finish(op);
}

static bool op_ready(const resume_op *op)
{
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(op->session, "r"), i, name)
    {
        const char *room = json_string_value(name);
        if (room && keeps_history(room) && !sb_cluster_room_ready(room))
            return false;
    }
    return true;
}

static void on_wait(uv_timer_t *t)
{
    struct sb_recovery *r = t->data;
    bool more = false;
    for (resume_op *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (!op->waiting)
            continue;
        if (!sb_clients_find(&r->server->table, op->client)) {
            op_finish(op); /* frees it */
        } else if (op_ready(op) || now_ms() >= op->deadline_ms) {
            if (!op_ready(op))
                sb_log_warn("recovery",
                            "client %llu: subscriptions not confirmed within "
                            "command_timeout: those rooms are not recovered",
                            (unsigned long long)op->client);
            op_read(op);
        } else {
            more = true;
        }
    }
    if (!more)
        uv_timer_stop(t);
}

/* A live record was taken: the connection it describes may still be open
 * (a half-open TCP connection its node has not noticed yet, or the same
 * token in two places). Its node closes it with 1008, which keeps no
 * session; its record is gone, so nothing of it is written again. A dead
 * node's client gets nothing: the close goes to no one. */
static void take_over(sb_client_id old)
{
    struct sb_recovery *r = sb_recovery_instance;
    static const char reason[] = "Session resumed elsewhere";
    if (!old)
        return;
    if (sb_cluster_node_of(old) == sb_cluster_node()) {
        sb_client *c = sb_clients_find(&r->server->table, old);
        if (c && !c->closing) {
            sb_log_info("recovery",
                        "client %llu: its session was resumed by another "
                        "connection: closing it with 1008",
                        (unsigned long long)old);
            sb_client_close(c, 1008, reason);
        }
    } else {
        sb_cluster_close(old, 1008, reason);
    }
}

/* The session taken (or not): join its rooms, hold their live messages
 * for the client, and read the rooms once subscribed. */
static void on_taken(void *udata, json_t *reply)
{
    resume_op *op = op_back(udata);
    if (!op)
        return;
    struct sb_recovery *r = sb_recovery_instance;
    sb_client *c = sb_clients_find(&r->server->table, op->client);
    const char *v = json_string_value(json_array_get(reply, 0));
    if (!reply || json_object_get(reply, "error")) {
        op->failed = true;
        sb_log_warn("recovery",
                    "client %llu: Redis could not answer its resume: a fresh "
                    "session",
                    (unsigned long long)op->client);
    }
    const char *body = v ? strchr(v, '\n') : NULL;
    body = body ? strchr(body + 1, '\n') : NULL;
    if (body)
        op->session = json_loads(body + 1, 0, NULL);
    if (op->session && json_integer_value(json_array_get(reply, 1)) == 1)
        take_over((sb_client_id)json_integer_value(
            json_object_get(op->session, "p")));
    if (!op->session || !c) {
        json_decref(op->session);
        op->session = NULL;
        op_finish(op);
        return;
    }
    if (sb_cluster_hold(c->id) != SB_OK) {
        json_decref(op->session);
        op->session = NULL;
        op_finish(op);
        return;
    }
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(op->session, "r"), i, name)
    {
        const char *room = json_string_value(name);
        if (!room || sb_rooms_join(&r->server->rooms, &c->rooms, room) < 0)
            continue;
        sb_recovery_touch(c);
        if (!keeps_history(room))
            json_object_set_new(op->answer, room,
                                json_pack("{s:b}", "recovered", 0));
    }
    op->waiting = true;
    op->deadline_ms = now_ms() + sb_cluster_command_timeout_ms();
    r->wait.data = r;
    if (op_ready(op))
        op_read(op);
    else
        uv_timer_start(&r->wait, on_wait, 5, 5);
}

/* A token's node: 0 for one without (24 characters: a kept session
 * only), N for "24 characters.N", -1 for anything else. */
static int token_node(const char *token)
{
    size_t n = strlen(token);
    if (n == TOKEN_LEN)
        return 0;
    if (n < TOKEN_LEN + 2 || n > TOKEN_LEN + 1 + NODE_DIGITS ||
        token[TOKEN_LEN] != '.')
        return -1;
    unsigned long node = 0;
    for (const char *p = token + TOKEN_LEN + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        node = node * 10 + (unsigned long)(*p - '0');
    }
    return node >= 1 && node <= SB_CLUSTER_MAX_NODE ? (int)node : -1;
}

static void cluster_resume(sb_client *c, const char *token, json_t *asked)
{
    struct sb_recovery *r = sb_recovery_instance;
    resume_op *op = calloc(1, sizeof(*op));
    if (!op) {
        c->recovery->pending = false;
        return;
    }
    op->client = c->id;
    op->asked = json_incref(asked);
    op->answer = json_object();
    op->replay = json_object();
    op->tops = json_object();
    op->next = r->ops;
    r->ops = op;
    c->recovery->pending = true;
    char key[128];
    char *owner = session_owner(c->gateway, c->identity);
    int rc = SB_ERR_INVALID;
    char live[128];
    /* Its own token resumes nothing (and would take its own record). */
    int node = token && strcmp(token, c->recovery->token) != 0
                   ? token_node(token)
                   : -1;
    if (owner && node >= 0 && session_key(key, sizeof(key), token) > 0 &&
        snprintf(live, sizeof(live), "%sls:%d", sb_cluster_prefix(), node) <
            (int)sizeof(live)) {
        const char *argv[] = {"EVAL", take_script,         node ? "2" : "1",
                              key,    node ? live : owner, owner,
                              token};
        size_t lens[] = {4,
                         sizeof(take_script) - 1,
                         1,
                         strlen(key),
                         strlen(argv[4]),
                         strlen(owner),
                         strlen(token)};
        op->inflight++;
        rc = sb_cluster_command(node ? 7 : 5, argv, lens, on_taken, op);
        if (rc != SB_OK)
            op->inflight--;
    }
    free(owner);
    if (rc == SB_ERR_UNAVAILABLE) {
        op->failed = true;
        sb_log_warn("recovery",
                    "client %llu: the broker is unavailable: a fresh session",
                    (unsigned long long)c->id);
    }
    if (rc != SB_OK)
        op_finish(op);
}

void sb_recovery_on_resumed(sb_recovery_resumed_fn fn, void *ctx)
{
    if (!sb_recovery_instance)
        return;
    sb_recovery_instance->resumed_fn = fn;
    sb_recovery_instance->resumed_ctx = ctx;
}

int sb_recovery_hold(sb_client *c, const char *buf, size_t len, bool text)
{
    struct sb_recovery_live *live = c->recovery;
    uint32_t n = (uint32_t)len;
    unsigned char t = text;
    if (live->held.len + len + 5 > HELD_MAX ||
        sb_buf_append(&live->held, &n, 4) < 0 ||
        sb_buf_append(&live->held, &t, 1) < 0 ||
        sb_buf_append(&live->held, buf, len) < 0) {
        sb_log_warn("recovery",
                    "client %llu: more than %u bytes sent while its resume "
                    "is answered: closing with 1008",
                    (unsigned long long)c->id, HELD_MAX);
        sb_client_close(c, 1008, "Too much sent during a resume");
    }
    return 0;
}

int sb_recovery_prefix(const char *room, sb_buf *text)
{
    if (!*room || !keeps_history(room))
        return 0;
    text->len--; /* the closing brace */
    if (sb_buf_append(text, ",\"room\":", 8) < 0 ||
        sb_json_append_string(text, room, strlen(room)) < 0 ||
        sb_buf_append(text, ",\"offset\":", 10) < 0)
        return SB_ERR_NOMEM;
    return 1;
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
    if (sb_recovery_instance->cluster)
        live_refresh(sb_recovery_instance);
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
    uv_timer_init(s->loop, &r->wait);
    uv_timer_init(s->loop, &r->flush);
    r->flush.data = r;
    sb_recovery_instance = r;
    if (sb_cluster_instance) {
        r->cluster = true;
        snprintf(r->live_key, sizeof(r->live_key), "%sls:%u",
                 sb_cluster_prefix(), sb_cluster_node());
        r->reconnects = sb_cluster_get_stats()->reconnects;
        sb_cluster_history(r->conf->history_size, r->conf->history_ttl,
                           cluster_keeps, cluster_position);
    }
    return 0;
}

/* Both timers closed: the instance goes. */
static void on_timer_closed(uv_handle_t *h)
{
    struct sb_recovery *r = h->data;
    if (--r->open_timers == 0)
        free(r);
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
    cancel_ops(r);
    if (r->cluster) {
        /* The sessions to keep were moved to s:TOKEN (the bridge saved
         * them before): what is left of the node's live records goes. */
        const char *argv[] = {"DEL", r->live_key};
        size_t lens[] = {3, strlen(r->live_key)};
        sb_cluster_command(2, argv, lens, NULL, NULL);
        sb_cluster_history(0, 0, NULL, NULL);
    }
    free(r->dirty);
    free(r->gone);
    for (size_t i = 0; i < FLUSH_BATCH; i++)
        sb_buf_free(&r->texts[i]);
    sb_recovery_instance = NULL;
    r->open_timers = 3;
    r->sweep.data = r->wait.data = r->flush.data = r;
    uv_timer_stop(&r->sweep);
    uv_close((uv_handle_t *)&r->sweep, on_timer_closed);
    uv_timer_stop(&r->wait);
    uv_close((uv_handle_t *)&r->wait, on_timer_closed);
    uv_timer_stop(&r->flush);
    uv_close((uv_handle_t *)&r->flush, on_timer_closed);
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

/* {"event":"sb:joined","data":{"room":R,"epoch":E,"offset":N}} */
static void send_joined(sb_client *c, const char *room, const char *epoch,
                        uint64_t offset)
{
    send_event(c, "sb:joined",
               json_pack("{s:s,s:s,s:I}", "room", room, "epoch", epoch,
                         "offset", (json_int_t)offset));
}

/* {"event":"sb:resumed","data":{"client":ID,"previous":OLD or null,
 * "token":T2,"rooms":ROOMS}}; rooms borrowed. */
static void send_resumed(sb_client *c, bool found, sb_client_id previous,
                         json_t *rooms)
{
    send_event(
        c, "sb:resumed",
        json_pack("{s:I,s:o,s:s,s:O}", "client", (json_int_t)c->id, "previous",
                  found ? json_integer((json_int_t)previous) : json_null(),
                  "token", c->recovery->token, "rooms", rooms));
}

void sb_recovery_connect(sb_client *c)
{
    struct sb_recovery *r = sb_recovery_instance;
    if (!r || sb_client_conf(c)->envelope != SB_ENVELOPE_JSON || c->recovery)
        return;
    struct sb_recovery_live *live = calloc(1, sizeof(*live));
    if (!live || sb_random_text(live->token, TOKEN_LEN) < 0) {
        free(live);
        sb_log_warn("recovery", "client %llu: no session token",
                    (unsigned long long)c->id);
        return;
    }
    if (r->cluster) /* where its live record is */
        snprintf(live->token + TOKEN_LEN, sizeof(live->token) - TOKEN_LEN,
                 ".%u", sb_cluster_node());
    live->first = true;
    c->recovery = live;
    if (r->cluster) {
        live->since_ms = now_ms();
        mark_dirty(r, c);
    }
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
    if (r->cluster) {
        cluster_save(se);
        c->recovery->dirty = c->recovery->written = false;
        session_free(se);
        return;
    }
    if (sb_table_add(&r->sessions, se->hash, se) < 0)
        session_free(se);
}

void sb_recovery_forget(sb_client *c)
{
    if (c->recovery)
        sb_buf_free(&c->recovery->held);
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
    if (sb_recovery_instance->cluster) {
        sb_cluster_join_position(c->id, room);
        return;
    }
    history *h = history_of(room, true);
    if (!h)
        return;
    h->last_ms = now_ms();
    send_joined(c, room, h->epoch, h->offset);
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
    if (c->recovery->dirty) /* its record waited for this */
        flush_arm(r);
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
    if (r->cluster) {
        cluster_resume(c, token, asked);
        out->pending = true;
        json_decref(msg);
        return true;
    }
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
    send_resumed(c, se != NULL, se ? se->previous : 0, rooms);
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

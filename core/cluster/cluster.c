/*
 * cluster — see cluster.h.
 *
 * hiredis 0.14 in short: a context is freed by
 * hiredis after its disconnect callback (or a failed connect), every
 * pending callback then runs with a NULL reply, and a subscribed context
 * takes no other command. So: one context for commands and one for
 * subscriptions; every callback checks ac->data (set to NULL on a context
 * we let go of) and a NULL reply; no PING on the subscriber (its reply is
 * never delivered): a probe published to our own node channel shows that
 * it still receives. Deadlines, backoff, probes and the heartbeat run on
 * one repeating uv timer. The event hooks are our own (below).
 *
 * Subscriptions follow the local rooms (sb_rooms.changed): a room's first
 * local member subscribes its channel, its last unsubscribes it. hiredis
 * forgets a channel's callback when the UNSUBSCRIBE reply comes, so a
 * channel is never subscribed again before that reply: each has a state,
 * and a room that comes back meanwhile is subscribed again on the reply.
 *
 * History ([recovery]): a room message of a history room is one script
 * (epoch, offset, stream, publish). Each channel of a history room keeps
 * the (epoch, offset) this node delivered last: the first message or the
 * position read once the subscription is confirmed sets it; a later offset
 * with a hole holds what arrives and fills the hole with XRANGE, or tells
 * the members sb:resync when the stream no longer has it; another epoch is
 * an sb:resync too. Holds (sb_cluster_hold) keep a resuming client's room
 * messages aside, with their offsets, until its replay is sent.
 */
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <switchboard/plugin.h>

#include "bus.h"
#include "client.h"
#include "conn.h"
#include "envelope.h"
#include "frame.h"
#include "hash.h"
#include "log.h"
#include "random.h"
#include "rooms.h"
#include "table.h"

#define TICK_MS     100
#define BATCH       512 /* channels per SUBSCRIBE, members per SADD */
#define MAX_CHANNEL 1024

typedef struct conn {
    struct sb_cluster *cl;
    const char *what; /* "commands" or "subscriber", for the log */
    redisAsyncContext *ac;
    bool ready;           /* the handshake (AUTH, SELECT, PING) answered */
    uint64_t started_ms;  /* of the connect attempt: its deadline */
    uint64_t retry_at_ms; /* when to connect again; 0: not scheduled */
    unsigned attempts;    /* failed in a row: the backoff */
    uint64_t outstanding; /* replies awaited (commands) */
    uint64_t progress_ms; /* last reply, or first command awaited */
    char why[160];        /* the last failure, for the log */
} conn;

enum chan_state { CH_NONE, CH_SUB, CH_UNSUB };

/* A room message kept back: while a gap is filled (chan.held), or for a
 * client whose resume is answered (hold.msgs). */
typedef struct held_msg {
    struct held_msg *next;
    uint64_t offset;
    uint64_t except;
    char *room; /* hold.msgs only */
    char epoch[65];
    size_t len;
    char text[];
} held_msg;

/* A room channel this node is, or is getting, subscribed to. */
typedef struct chan {
    char *room;
    uint64_t hash;
    enum chan_state state;
    bool want;      /* the room has local members */
    bool confirmed; /* Redis answered the SUBSCRIBE: messages reach us */
    /* History rooms: what this node delivered last, and a gap being
     * filled (messages after it held meanwhile). */
    bool has_pos;
    bool filling;
    bool reading; /* the position is being read */
    char epoch[65];
    uint64_t last;
    held_msg *held, **held_tail;
    uint64_t *waiters; /* clients told their position once it is known */
    size_t nwaiters;
} chan;

/* A client whose room messages are kept aside (sb_cluster_hold). */
typedef struct hold {
    uint64_t client;
    held_msg *msgs, **tail;
} hold;

struct sb_cluster {
    const sb_cluster_conf *conf;
    uv_loop_t *loop;
    char *password;
    char node_name[128];
    uint32_t node;
    char node_str[16];
    size_t plen; /* strlen(conf->prefix) */
    sb_server *server;
    conn cmd, sub;
    uv_timer_t tick;
    bool tick_open;
    sb_table chans;
    sb_cluster_stats stats;
    bool up, ever_up, told_down;
    uint64_t down_since_ms;
    uint64_t heartbeat_at_ms;
    uint64_t probe_sent_ms; /* 0: no probe awaited */
    uint64_t sub_heard_ms;  /* last anything on the subscriber */
    sb_buf out, chname, frame, text;
    /* History ([recovery]): */
    bool history;
    unsigned history_size, history_ttl_ms;
    bool (*keeps)(const char *room);
    sb_cluster_position_fn position;
    char append_sha[48]; /* of the append script on this connection */
    sb_table holds;      /* by client id */
    sb_buf hist;
};

sb_cluster *sb_cluster_instance;

static void chan_free(chan *ch);
static void held_free(struct held_msg *m);
static void read_position(sb_cluster *cl, chan *ch);
static void load_scripts(sb_cluster *cl);

static sb_log_limit lim_bad, lim_err, lim_unrouted;

static uint64_t now_ms(const sb_cluster *cl)
{
    return uv_now(cl->loop);
}

static struct timeval tv_of(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000,
                            .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static const char *where(const sb_cluster_conf *cf, char *buf, size_t len)
{
    if (cf->redis_unix)
        snprintf(buf, len, "unix:%s", cf->redis_unix);
    else
        snprintf(buf, len, "%s:%d", cf->redis_host, cf->redis_port);
    return buf;
}

/* ---- start: the password and a node number (blocking, bounded) ---------- */

static char *read_password(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read password_file %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    char line[1024];
    char *pw = NULL;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        pw = strdup(line);
    }
    fclose(f);
    if (!pw || !*pw) {
        free(pw);
        snprintf(err, errlen, "password_file %s holds no password", path);
        return NULL;
    }
    return pw;
}

/* A reply that is an error, or none: its text into err. */
static bool sync_failed(redisContext *c, redisReply *r, const char *what,
                        char *err, size_t errlen)
{
    if (r && r->type != REDIS_REPLY_ERROR)
        return false;
    snprintf(err, errlen, "%s: %s", what,
             r              ? r->str
             : c->errstr[0] ? c->errstr
                            : "no reply");
    return true;
}

static redisContext *sync_connect(const sb_cluster *cl, char *err,
                                  size_t errlen)
{
    const sb_cluster_conf *cf = cl->conf;
    struct timeval tv = tv_of(cf->connect_timeout_ms);
    redisContext *c =
        cf->redis_unix
            ? redisConnectUnixWithTimeout(cf->redis_unix, tv)
            : redisConnectWithTimeout(cf->redis_host, cf->redis_port, tv);
    char at[300];
    if (!c || c->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s: %s",
                 where(cf, at, sizeof(at)), c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv_of(cf->command_timeout_ms));
    redisReply *r;
    if (cl->password) {
        r = redisCommand(c, "AUTH %s", cl->password);
        bool bad =
            sync_failed(c, r, "Redis refused the password (AUTH)", err, errlen);
        freeReplyObject(r);
        if (bad) {
            redisFree(c);
            return NULL;
        }
    }
    if (cf->redis_db) {
        r = redisCommand(c, "SELECT %d", cf->redis_db);
        bool bad = sync_failed(c, r, "SELECT", err, errlen);
        freeReplyObject(r);
        if (bad) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

int sb_cluster_open(const sb_cluster_conf *conf, uv_loop_t *loop, char *err,
                    size_t errlen)
{
    sb_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cl->conf = conf;
    cl->loop = loop;
    cl->plen = strlen(conf->prefix);
    if (conf->node) {
        snprintf(cl->node_name, sizeof(cl->node_name), "%s", conf->node);
    } else {
        char host[64] = "node";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(cl->node_name, sizeof(cl->node_name), "%s-%ld", host,
                 (long)getpid());
    }
    if (conf->password_file &&
        !(cl->password = read_password(conf->password_file, err, errlen))) {
        free(cl);
        return -1;
    }
    redisContext *c = sync_connect(cl, err, errlen);
    if (!c) {
        free(cl->password);
        free(cl);
        return -1;
    }
    /* A node number no live node holds: INCR, then claim its heartbeat
     * key with NX (after a Redis restart the counter starts again). */
    for (int tries = 0; tries < 64 && !cl->node; tries++) {
        redisReply *r = redisCommand(c, "INCR %snode_seq", conf->prefix);
        if (sync_failed(c, r, "INCR", err, errlen) ||
            r->type != REDIS_REPLY_INTEGER) {
            if (r && r->type != REDIS_REPLY_ERROR)
                snprintf(err, errlen, "INCR: unexpected reply");
            freeReplyObject(r);
            break;
        }
        uint32_t n = (uint32_t)(((unsigned long long)r->integer - 1) %
                                SB_CLUSTER_MAX_NODE) +
                     1;
        freeReplyObject(r);
        r = redisCommand(c, "SET %salive:%u %s NX PX %u", conf->prefix, n,
                         cl->node_name, conf->node_ttl_ms);
        if (sync_failed(c, r, "SET", err, errlen)) {
            freeReplyObject(r);
            break;
        }
        if (r->type == REDIS_REPLY_STATUS)
            cl->node = n;
        freeReplyObject(r);
    }
    redisFree(c);
    if (!cl->node) {
        if (!*err)
            snprintf(err, errlen, "no free node number in Redis");
        free(cl->password);
        free(cl);
        return -1;
    }
    snprintf(cl->node_str, sizeof(cl->node_str), "%u", cl->node);
    cl->cmd = (conn){.cl = cl, .what = "commands"};
    cl->sub = (conn){.cl = cl, .what = "subscriber"};
    sb_cluster_instance = cl;
    char at[300];
    sb_log_info("cluster", "node %u ('%s') on Redis at %s", cl->node,
                cl->node_name, where(conf, at, sizeof(at)));
    return 0;
}

/* ---- hiredis on our loop ------------------------------------------------- */

/* The event hooks hiredis calls, on one uv_poll_t per context: the design
 * of hiredis' adapters/libuv.h (0.14), with two of its bugs fixed. It
 * returns from the poll callback on an error status, and libuv reports
 * POLLERR (a unix socket reset by a Redis killed with our bytes unread) as
 * one and stops the poll: the loss would go unseen until a deadline. Here
 * an error is handed to hiredis as readable, and its read finds the error.
 * And a failed uv_poll_init no longer leaks. */
typedef struct uv_events {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t handle;
    int events;
} uv_events;

static void ev_poll(uv_poll_t *h, int status, int events)
{
    uv_events *p = h->data;
    if (status != 0)
        events = UV_READABLE;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_set(uv_events *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, ev_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d)
{
    uv_events *p = d;
    ev_set(p, p->events | UV_READABLE);
}

static void ev_del_read(void *d)
{
    uv_events *p = d;
    ev_set(p, p->events & ~UV_READABLE);
}

static void ev_add_write(void *d)
{
    uv_events *p = d;
    ev_set(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *d)
{
    uv_events *p = d;
    ev_set(p, p->events & ~UV_WRITABLE);
}

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *d)
{
    uv_events *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    uv_events *p = calloc(1, sizeof(*p));
    if (!p || uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->ac = ac;
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- connections --------------------------------------------------------- */

static void conn_open(conn *k);
static void on_ready(conn *k);

/* Both connections up or not: the state the log, /readyz and the calls
 * see. Logged once on each change. */
static void update_state(sb_cluster *cl)
{
    bool up = cl->cmd.ready && cl->sub.ready;
    if (up == cl->up)
        return;
    cl->up = up;
    char at[300];
    if (up) {
        if (cl->ever_up) {
            cl->stats.reconnects++;
            sb_log_info("cluster",
                        "broker back after %.1f s: cross-node delivery "
                        "resumed",
                        (double)(now_ms(cl) - cl->down_since_ms) / 1000.0);
        } else {
            sb_log_info("cluster", "connected to Redis at %s",
                        where(cl->conf, at, sizeof(at)));
        }
        cl->ever_up = true;
        cl->told_down = false;
    } else {
        cl->down_since_ms = now_ms(cl);
        conn *k = cl->cmd.ready ? &cl->sub : &cl->cmd;
        sb_log_warn("cluster",
                    "lost the broker at %s (%s connection: %s): local "
                    "service goes on, cross-node delivery is stopped until "
                    "it is back",
                    where(cl->conf, at, sizeof(at)), k->what,
                    k->why[0] ? k->why : "closed");
        cl->told_down = true;
    }
}

static void schedule_retry(conn *k)
{
    sb_cluster *cl = k->cl;
    uint64_t delay = cl->conf->reconnect_min_ms;
    for (unsigned i = 0; i < k->attempts && delay < cl->conf->reconnect_max_ms;
         i++)
        delay *= 2;
    if (delay > cl->conf->reconnect_max_ms)
        delay = cl->conf->reconnect_max_ms;
    /* Jitter: between half and all of it, so nodes do not reconnect in
     * step after a Redis restart. */
    delay = delay / 2 + (uint64_t)rand() % (delay / 2 + 1);
    k->attempts++;
    k->retry_at_ms = now_ms(cl) + delay;
}

/* The connection is gone (hiredis freed it, or we let go of it). */
static void conn_lost(conn *k, const char *why)
{
    sb_cluster *cl = k->cl;
    bool was_ready = k->ready;
    k->ready = false;
    k->ac = NULL;
    k->outstanding = 0;
    if (why)
        snprintf(k->why, sizeof(k->why), "%s", why);
    if (k == &cl->sub) {
        /* Redis forgot our subscriptions: keep the rooms we want. */
        size_t pos = 0;
        chan *ch;
        while ((ch = sb_table_next(&cl->chans, &pos))) {
            ch->state = CH_NONE;
            ch->confirmed = false;
        }
        cl->probe_sent_ms = 0;
    }
    if (!cl->ever_up && !cl->told_down) {
        char at[300];
        sb_log_warn("cluster",
                    "cannot reach Redis at %s (%s connection: %s); retrying "
                    "with backoff",
                    where(cl->conf, at, sizeof(at)), k->what, k->why);
        cl->told_down = true;
    } else if (!was_ready) {
        sb_log_debug("cluster", "%s connection failed: %s", k->what, k->why);
    }
    if (!cl->server) /* detached: no reconnecting */
        return;
    schedule_retry(k);
    update_state(cl);
}

/* Lets go of a live context (a deadline, a refusal): its callbacks run
 * with NULL replies and see no conn. */
static void conn_drop(conn *k, const char *why)
{
    redisAsyncContext *ac = k->ac;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    conn_lost(k, why);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    conn *k = ac->data;
    if (!k || status == REDIS_OK)
        return;
    /* hiredis frees ac after this. */
    ac->data = NULL;
    conn_lost(k, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    conn *k = ac->data;
    if (!k)
        return;
    ac->data = NULL;
    conn_lost(k, status == REDIS_OK ? "closed"
                 : ac->errstr[0]    ? ac->errstr
                                    : "connection lost");
}

enum hello_step { HELLO_AUTH = 1, HELLO_SELECT, HELLO_PING };

static void on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    conn *k = ac->data;
    redisReply *r = reply;
    if (!k || !r)
        return;
    sb_cluster *cl = k->cl;
    enum hello_step step = (enum hello_step)(intptr_t)priv;
    if (r->type == REDIS_REPLY_ERROR) {
        cl->stats.errors++;
        char why[200];
        snprintf(why, sizeof(why), "%s: %s",
                 step == HELLO_AUTH     ? "Redis refused the password (AUTH)"
                 : step == HELLO_SELECT ? "SELECT failed"
                                        : "PING failed",
                 r->str);
        sb_log_limited(&lim_err, SB_LOG_ERROR, "cluster", "%s connection: %s",
                       k->what, why);
        conn_drop(k, why);
        return;
    }
    if (step != HELLO_PING)
        return;
    k->ready = true;
    k->attempts = 0;
    k->why[0] = '\0';
    k->progress_ms = now_ms(cl);
    on_ready(k);
    update_state(cl);
}

static void conn_open(conn *k)
{
    sb_cluster *cl = k->cl;
    const sb_cluster_conf *cf = cl->conf;
    k->retry_at_ms = 0;
    k->started_ms = now_ms(cl);
    redisAsyncContext *ac =
        cf->redis_unix ? redisAsyncConnectUnix(cf->redis_unix)
                       : redisAsyncConnect(cf->redis_host, cf->redis_port);
    if (!ac || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        conn_lost(k, why);
        return;
    }
    if (ev_attach(ac, cl->loop) < 0) {
        redisAsyncFree(ac);
        conn_lost(k, "cannot attach to the loop");
        return;
    }
    ac->data = k;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    k->ac = ac;
    /* Queued now, sent once connected, answered in order. */
    if (cl->password)
        redisAsyncCommand(ac, on_hello, (void *)(intptr_t)HELLO_AUTH, "AUTH %s",
                          cl->password);
    if (cf->redis_db)
        redisAsyncCommand(ac, on_hello, (void *)(intptr_t)HELLO_SELECT,
                          "SELECT %d", cf->redis_db);
    redisAsyncCommand(ac, on_hello, (void *)(intptr_t)HELLO_PING, "PING");
}

/* ---- commands ------------------------------------------------------------ */

/* A reply on the command connection: progress for the deadline. */
static conn *cmd_reply(redisAsyncContext *ac, redisReply *r)
{
    conn *k = ac->data;
    if (!k || !r)
        return NULL;
    if (k->outstanding)
        k->outstanding--;
    k->progress_ms = now_ms(k->cl);
    if (r->type == REDIS_REPLY_ERROR) {
        k->cl->stats.errors++;
        sb_log_limited(&lim_err, SB_LOG_WARN, "cluster",
                       "Redis answered an error: %s", r->str);
    }
    return k;
}

static void on_cmd(redisAsyncContext *ac, void *reply, void *priv)
{
    cmd_reply(ac, reply);
}

/* A PUBLISH to a node channel: 0 receivers means that node is gone. */
static void on_node_publish(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    conn *k = cmd_reply(ac, r);
    if (k && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        k->cl->stats.unrouted++;
        sb_log_limited(&lim_unrouted, SB_LOG_INFO, "cluster",
                       "a message for node %u found no receiver (the node "
                       "is gone)",
                       (unsigned)(uintptr_t)priv);
    }
}

/* Sends a command if the broker takes it now. */
static int cmd_argv(sb_cluster *cl, redisCallbackFn *fn, void *priv, int argc,
                    const char **argv, const size_t *lens)
{
    conn *k = &cl->cmd;
    if (!k->ready || sdslen((sds)k->ac->c.obuf) > cl->conf->max_pending) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    if (redisAsyncCommandArgv(k->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return SB_ERR_NOMEM;
    if (k->outstanding++ == 0)
        k->progress_ms = now_ms(cl);
    return SB_OK;
}

/* PREFIX + parts into cl->chname (NUL-terminated). */
static int key_of(sb_cluster *cl, sb_buf *b, const char *a, const char *room,
                  const char *tail)
{
    b->len = 0;
    if (sb_buf_append(b, cl->conf->prefix, cl->plen) < 0 ||
        sb_buf_append_str(b, a) < 0 || (room && sb_buf_append_str(b, room)) ||
        (tail && sb_buf_append_str(b, tail)) || sb_buf_append_byte(b, 0) < 0)
        return -1;
    b->len--;
    return 0;
}

static int publish(sb_cluster *cl, redisCallbackFn *fn, void *priv)
{
    const char *argv[] = {"PUBLISH", cl->chname.data, cl->out.data};
    size_t lens[] = {7, cl->chname.len, cl->out.len};
    int rc = cmd_argv(cl, fn, priv, 3, argv, lens);
    if (rc == SB_OK)
        cl->stats.published++;
    return rc;
}

static void heartbeat(sb_cluster *cl)
{
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%u", cl->conf->node_ttl_ms);
    if (key_of(cl, &cl->chname, "alive:", cl->node_str, NULL) < 0)
        return;
    const char *argv[] = {"SET", cl->chname.data, cl->node_name, "PX", ttl};
    size_t lens[] = {3, cl->chname.len, strlen(cl->node_name), 2, strlen(ttl)};
    cmd_argv(cl, on_cmd, NULL, 5, argv, lens);
    cl->heartbeat_at_ms = now_ms(cl) + cl->conf->node_ttl_ms / 3;
}

/* ---- presence ------------------------------------------------------------ */

/* Removes every presence entry of node ARGV[2]. */
static const char clear_script[] =
    "local p, n = ARGV[1], ARGV[2]\n"
    "for _, room in ipairs(redis.call('SMEMBERS', p..'nr:'..n)) do\n"
    "  redis.call('DEL', p..'m:'..room..':'..n)\n"
    "  redis.call('SREM', p..'mn:'..room, n)\n"
    "end\n"
    "redis.call('DEL', p..'nr:'..n)\n"
    "return 1\n";

/* The members of room ARGV[2] on live nodes (count or list); entries of
 * nodes whose heartbeat expired are removed on the way. */
static const char presence_script[] =
    "local p, room, mode = ARGV[1], ARGV[2], ARGV[3]\n"
    "local total, out = 0, {}\n"
    "for _, n in ipairs(redis.call('SMEMBERS', p..'mn:'..room)) do\n"
    "  local key = p..'m:'..room..':'..n\n"
    "  if redis.call('EXISTS', p..'alive:'..n) == 0 then\n"
    "    redis.call('DEL', key)\n"
    "    redis.call('SREM', p..'mn:'..room, n)\n"
    "    redis.call('SREM', p..'nr:'..n, room)\n"
    "  elseif mode == 'count' then\n"
    "    total = total + redis.call('SCARD', key)\n"
    "  else\n"
    "    for _, id in ipairs(redis.call('SMEMBERS', key)) do\n"
    "      out[#out + 1] = id\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if mode == 'count' then return total end\n"
    "return out\n";

static bool room_confirmed(sb_cluster *cl, const char *room);
static void presence_node(sb_cluster *cl, const char *room, bool add);

/* One room's local members into Redis: SADD m:ROOM:N ids (in batches),
 * SADD nr:N ROOM, and SADD mn:ROOM N once our subscription to the room is
 * confirmed. */
static void presence_register(sb_cluster *cl, const sb_room *room)
{
    const char *argv[BATCH + 2];
    size_t lens[BATCH + 2];
    char ids[BATCH][24];
    char key[MAX_CHANNEL + 64];
    int klen = snprintf(key, sizeof(key), "%sm:%s:%s", cl->conf->prefix,
                        room->name, cl->node_str);
    if (klen < 0 || (size_t)klen >= sizeof(key))
        return;
    for (size_t i = 0; i < room->count;) {
        int argc = 2;
        argv[0] = "SADD";
        lens[0] = 4;
        argv[1] = key;
        lens[1] = (size_t)klen;
        for (; i < room->count && argc < BATCH + 2; i++, argc++) {
            const sb_client *c = room->members[i].links->owner;
            int n = snprintf(ids[argc - 2], sizeof(ids[0]), "%" PRIu64, c->id);
            argv[argc] = ids[argc - 2];
            lens[argc] = (size_t)n;
        }
        cmd_argv(cl, on_cmd, NULL, argc, argv, lens);
    }
    if (key_of(cl, &cl->chname, "nr:", cl->node_str, NULL) == 0) {
        const char *a[] = {"SADD", cl->chname.data, room->name};
        size_t l[] = {4, cl->chname.len, strlen(room->name)};
        cmd_argv(cl, on_cmd, NULL, 3, a, l);
    }
    if (room_confirmed(cl, room->name))
        presence_node(cl, room->name, true);
}

/* Whether this node is listed among the room's (mn:ROOM): only while its
 * subscription is confirmed, so that a member counted by a presence call
 * is one the room's messages reach. */
static void presence_node(sb_cluster *cl, const char *room, bool add)
{
    if (!cl->cmd.ready || key_of(cl, &cl->chname, "mn:", room, NULL) < 0)
        return;
    const char *a[] = {add ? "SADD" : "SREM", cl->chname.data, cl->node_str};
    size_t l[] = {4, cl->chname.len, strlen(cl->node_str)};
    cmd_argv(cl, on_cmd, NULL, 3, a, l);
}

/* After (re)connecting: what Redis says of this node is replaced by what
 * it has now (members that left while Redis was away included). */
static void presence_resync(sb_cluster *cl)
{
    const char *argv[] = {"EVAL", clear_script, "0", cl->conf->prefix,
                          cl->node_str};
    size_t lens[] = {4, sizeof(clear_script) - 1, 1, cl->plen,
                     strlen(cl->node_str)};
    if (cmd_argv(cl, on_cmd, NULL, 5, argv, lens) != SB_OK || !cl->server)
        return;
    size_t pos = 0;
    sb_room *room;
    while ((room = sb_table_next(&cl->server->rooms.t, &pos)))
        presence_register(cl, room);
}

static void presence_change(sb_cluster *cl, const sb_room *room,
                            const sb_client *c, bool joined)
{
    if (!cl->cmd.ready)
        return; /* presence_resync() at the reconnect */
    char id[24];
    int idlen = snprintf(id, sizeof(id), "%" PRIu64, c->id);
    if (key_of(cl, &cl->chname, "m:", room->name, NULL) < 0 ||
        sb_buf_append_byte(&cl->chname, ':') < 0 ||
        sb_buf_append_str(&cl->chname, cl->node_str) < 0)
        return;
    const char *argv[] = {joined ? "SADD" : "SREM", cl->chname.data, id};
    size_t lens[] = {4, cl->chname.len, (size_t)idlen};
    cmd_argv(cl, on_cmd, NULL, 3, argv, lens);
    bool edge = joined ? room->count == 1 : room->count == 0;
    if (!edge)
        return;
    if (!joined)
        presence_node(cl, room->name, false); /* added on confirmation */
    if (key_of(cl, &cl->chname, "nr:", cl->node_str, NULL) == 0) {
        const char *a[] = {argv[0], cl->chname.data, room->name};
        size_t l[] = {4, cl->chname.len, strlen(room->name)};
        cmd_argv(cl, on_cmd, NULL, 3, a, l);
    }
}

typedef struct presence_req {
    sb_cluster_presence_fn fn;
    void *udata;
    bool list;
} presence_req;

static void on_presence(redisAsyncContext *ac, void *reply, void *priv)
{
    presence_req *req = priv;
    redisReply *r = reply;
    cmd_reply(ac, r);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        req->fn(req->udata, SB_ERR_UNAVAILABLE, 0, NULL);
    } else if (!req->list) {
        req->fn(req->udata, SB_OK,
                r->type == REDIS_REPLY_INTEGER && r->integer > 0
                    ? (size_t)r->integer
                    : 0,
                NULL);
    } else {
        json_t *ids = json_array();
        for (size_t i = 0;
             ids && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING)
                json_array_append_new(
                    ids, json_integer((json_int_t)strtoll(e->str, NULL, 10)));
        }
        req->fn(req->udata, ids ? SB_OK : SB_ERR_NOMEM, json_array_size(ids),
                ids);
    }
    free(req);
}

int sb_cluster_presence(const char *room, bool list, sb_cluster_presence_fn fn,
                        void *udata)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl || !cl->cmd.ready)
        return SB_ERR_UNAVAILABLE;
    presence_req *req = malloc(sizeof(*req));
    if (!req)
        return SB_ERR_NOMEM;
    *req = (presence_req){fn, udata, list};
    const char *mode = list ? "list" : "count";
    const char *argv[] = {"EVAL", presence_script, "0", cl->conf->prefix, room,
                          mode};
    size_t lens[] = {
        4,           sizeof(presence_script) - 1, 1, cl->plen, strlen(room),
        strlen(mode)};
    int rc = cmd_argv(cl, on_presence, req, 6, argv, lens);
    if (rc != SB_OK)
        free(req);
    return rc;
}

/* ---- subscriptions ------------------------------------------------------- */

static bool chan_eq(const void *item, const void *key)
{
    return strcmp(((const chan *)item)->room, key) == 0;
}

static chan *chan_find(sb_cluster *cl, const char *room, uint64_t h)
{
    return sb_table_find(&cl->chans, h, chan_eq, room);
}

static bool room_confirmed(sb_cluster *cl, const char *room)
{
    chan *ch = chan_find(cl, room, sb_hash_bytes(room, strlen(room)));
    return ch && ch->want && ch->confirmed;
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv);

/* SUBSCRIBE (or UNSUBSCRIBE) of room channels, up to BATCH at a time. */
static void sub_rooms(sb_cluster *cl, const char *verb, chan **v, size_t n)
{
    if (!cl->sub.ready || !n)
        return;
    const char *argv[BATCH + 1];
    size_t lens[BATCH + 1];
    sb_buf names = {0};
    size_t *offs = malloc(n * sizeof(*offs));
    if (!offs)
        return;
    for (size_t i = 0; i < n; i++) {
        offs[i] = names.len;
        if (sb_buf_append(&names, cl->conf->prefix, cl->plen) < 0 ||
            sb_buf_append_str(&names, "r:") < 0 ||
            sb_buf_append(&names, v[i]->room, strlen(v[i]->room) + 1) < 0) {
            free(offs);
            sb_buf_free(&names);
            return;
        }
    }
    for (size_t i = 0; i < n;) {
        int argc = 1;
        argv[0] = verb;
        lens[0] = strlen(verb);
        for (; i < n && argc < BATCH + 1; i++, argc++) {
            argv[argc] = names.data + offs[i];
            lens[argc] = strlen(argv[argc]);
        }
        redisAsyncCommandArgv(cl->sub.ac, on_sub, cl, argc, argv, lens);
    }
    free(offs);
    sb_buf_free(&names);
}

/* Writes what a context has buffered now rather than at the next poll: a
 * join's SUBSCRIBE and presence reach Redis before the client's answer
 * does, so what the client does next (a message from another node, a
 * question) comes after them. */
static void flush_now(conn *k)
{
    if (k->ready && k->ac)
        redisAsyncHandleWrite(k->ac);
}

static void chan_sub(sb_cluster *cl, chan *ch)
{
    ch->state = CH_SUB;
    sub_rooms(cl, "SUBSCRIBE", &ch, 1);
}

/* The room now has local members (want) or none. */
static void chan_want(sb_cluster *cl, const char *room, bool want)
{
    uint64_t h = sb_hash_bytes(room, strlen(room));
    chan *ch = chan_find(cl, room, h);
    if (!ch) {
        if (!want)
            return;
        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->room = strdup(room)) ||
            sb_table_add(&cl->chans, h, ch) < 0) {
            if (ch)
                free(ch->room);
            free(ch);
            sb_log_error("cluster", "out of memory: room %s not subscribed",
                         room);
            return;
        }
        ch->hash = h;
    }
    ch->want = want;
    if (!want) { /* a later member starts from a new position */
        ch->has_pos = false;
        ch->filling = false;
        held_free(ch->held);
        ch->held = NULL;
    }
    if (!cl->sub.ready) {
        if (!want) {
            sb_table_remove(&cl->chans, h, chan_eq, room);
            chan_free(ch);
        }
        return;
    }
    if (want && ch->state == CH_NONE) {
        chan_sub(cl, ch);
    } else if (!want && ch->state == CH_SUB) {
        ch->state = CH_UNSUB;
        ch->confirmed = false;
        sub_rooms(cl, "UNSUBSCRIBE", &ch, 1);
    }
    /* CH_UNSUB with want: subscribed again when the reply comes. */
}

/* On a (re)connected subscriber: our node channel, the broadcasts, and
 * every room with local members. */
static void subscribe_all(sb_cluster *cl)
{
    char node_ch[128], bc[128];
    snprintf(node_ch, sizeof(node_ch), "%sn:%s", cl->conf->prefix,
             cl->node_str);
    snprintf(bc, sizeof(bc), "%sb", cl->conf->prefix);
    const char *argv[] = {"SUBSCRIBE", node_ch, bc};
    size_t lens[] = {9, strlen(node_ch), strlen(bc)};
    redisAsyncCommandArgv(cl->sub.ac, on_sub, cl, 3, argv, lens);
    size_t n = 0, pos = 0;
    chan *ch;
    chan **v = malloc((cl->chans.count ? cl->chans.count : 1) * sizeof(*v));
    if (!v)
        return;
    /* Collect first: sb_table_remove_if would reorder a walk. */
    while ((ch = sb_table_next(&cl->chans, &pos)))
        if (ch->want) {
            ch->state = CH_SUB;
            v[n++] = ch;
        }
    sub_rooms(cl, "SUBSCRIBE", v, n);
    free(v);
}

static bool drop_unwanted(void *item, void *ctx)
{
    chan *ch = item;
    if (ch->want)
        return false;
    chan_free(ch);
    return true;
}

static void on_ready(conn *k)
{
    sb_cluster *cl = k->cl;
    if (k == &cl->cmd) {
        load_scripts(cl);
        heartbeat(cl);
        presence_resync(cl);
    } else {
        sb_table_remove_if(&cl->chans, drop_unwanted, NULL);
        cl->sub_heard_ms = now_ms(cl);
        subscribe_all(cl);
    }
}

/* ---- delivery from the bus ----------------------------------------------- */

static void bad_input(sb_cluster *cl, const char *channel, const char *why)
{
    cl->stats.bad_input++;
    sb_log_limited(&lim_bad, SB_LOG_WARN, "cluster",
                   "dropped a bad message on channel %.200s: %s", channel, why);
}

/* text framed once into cl->frame. */
static int frame_text(sb_cluster *cl, const char *text, size_t len)
{
    unsigned char head[10];
    size_t hlen = sb_ws_header_write(head, SB_WS_TEXT, len);
    cl->frame.len = 0;
    return sb_buf_append(&cl->frame, head, hlen) < 0 ||
                   sb_buf_append(&cl->frame, text, len) < 0
               ? -1
               : 0;
}

/* ---- history: appends, gaps, positions, holds ([recovery]) --------------- */

/* Appends a room message and publishes it, atomically: a new epoch (the
 * node's candidate ARGV[1]) when the room has none (and its stream goes),
 * the next offset, the stamped text into the capped stream under the id
 * OFFSET-0, both keys' expiry, and the bus message with epoch and offset. */
static const char append_script[] =
    "local meta, stream = KEYS[1], KEYS[2]\n"
    "if redis.call('HSETNX', meta, 'e', ARGV[1]) == 1 then\n"
    "  redis.call('DEL', stream)\n"
    "end\n"
    "local e = redis.call('HGET', meta, 'e')\n"
    "local o = redis.call('HINCRBY', meta, 'o', 1)\n"
    "local text = ARGV[6] .. o .. '}'\n"
    "redis.call('XADD', stream, 'MAXLEN', ARGV[2], o .. '-0', 'm', text,\n"
    "           'x', ARGV[7])\n"
    "redis.call('PEXPIRE', meta, ARGV[3])\n"
    "redis.call('PEXPIRE', stream, ARGV[3])\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5] .. e .. ' ' .. o .. '\\n' .. "
    "text)\n"
    "return o\n";

/* A room's position {epoch, offset} (made when it has none), and with
 * ARGV[3] its stream from that id on, at most ARGV[4] entries. */
static const char position_script[] =
    "local meta, stream = KEYS[1], KEYS[2]\n"
    "if redis.call('HSETNX', meta, 'e', ARGV[1]) == 1 then\n"
    "  redis.call('DEL', stream)\n"
    "  redis.call('HSET', meta, 'o', 0)\n"
    "end\n"
    "redis.call('PEXPIRE', meta, ARGV[2])\n"
    "local v = redis.call('HMGET', meta, 'e', 'o')\n"
    "local o = tonumber(v[2] or '0')\n"
    "if ARGV[3] then\n"
    "  return {v[1], o, redis.call('XRANGE', stream, ARGV[3], '+', 'COUNT',\n"
    "                              ARGV[4])}\n"
    "end\n"
    "return {v[1], o}\n";

#define EPOCH_LEN 12 /* 72 random bits */

/* PREFIX KIND ROOM into out; -1 when too long. */
static int hkey(const sb_cluster *cl, char *out, size_t size, const char *kind,
                const char *room)
{
    int n = snprintf(out, size, "%s%s%s", cl->conf->prefix, kind, room);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

static json_t *json_of_reply(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return json_stringn_nocheck(r->str, r->len);
    case REDIS_REPLY_INTEGER:
        return json_integer((json_int_t)r->integer);
    case REDIS_REPLY_ERROR:
        return json_pack("{s:s%}", "error", r->str, r->len);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < r->elements; i++)
            json_array_append_new(a, json_of_reply(r->element[i]));
        return a;
    }
    default:
        return json_null();
    }
}

typedef struct cmd_req {
    sb_cluster_reply_fn fn;
    void *udata;
} cmd_req;

static void on_generic(redisAsyncContext *ac, void *reply, void *priv)
{
    cmd_req *req = priv;
    redisReply *r = reply;
    cmd_reply(ac, r);
    json_t *j = r ? json_of_reply(r) : NULL;
    if (req->fn)
        req->fn(req->udata, j);
    json_decref(j);
    free(req);
}

int sb_cluster_command(int argc, const char **argv, const size_t *lens,
                       sb_cluster_reply_fn fn, void *udata)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return SB_ERR_UNAVAILABLE;
    cmd_req *req = malloc(sizeof(*req));
    if (!req)
        return SB_ERR_NOMEM;
    *req = (cmd_req){fn, udata};
    int rc = cmd_argv(cl, on_generic, req, argc, argv, lens);
    if (rc != SB_OK)
        free(req);
    return rc;
}

unsigned sb_cluster_command_timeout_ms(void)
{
    return sb_cluster_instance ? sb_cluster_instance->conf->command_timeout_ms
                               : 0;
}

const char *sb_cluster_prefix(void)
{
    return sb_cluster_instance ? sb_cluster_instance->conf->prefix : "";
}

void sb_cluster_history(unsigned history_size, unsigned history_ttl_s,
                        bool (*keeps)(const char *room),
                        sb_cluster_position_fn position)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return;
    cl->history = keeps != NULL;
    cl->history_size = history_size;
    cl->history_ttl_ms = history_ttl_s * 1000;
    cl->keeps = keeps;
    cl->position = position;
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    redisReply *r = reply;
    conn *k = cmd_reply(ac, r);
    if (k && r->type == REDIS_REPLY_STRING &&
        r->len < sizeof(k->cl->append_sha))
        memcpy(k->cl->append_sha, r->str, r->len + 1);
}

static void load_scripts(sb_cluster *cl)
{
    cl->append_sha[0] = 0;
    if (!cl->history)
        return;
    const char *argv[] = {"SCRIPT", "LOAD", append_script};
    size_t lens[] = {6, 4, sizeof(append_script) - 1};
    cmd_argv(cl, on_script_loaded, NULL, 3, argv, lens);
}

/* What an append needs again if Redis forgot the script (NOSCRIPT). */
typedef struct append_req {
    uint64_t except;
    size_t rlen, plen;
    char data[]; /* room NUL prefix */
} append_req;

static int append(sb_cluster *cl, const char *room, const char *prefix,
                  size_t len, uint64_t except, bool by_sha);

static void on_append(redisAsyncContext *ac, void *reply, void *priv)
{
    append_req *req = priv;
    redisReply *r = reply;
    conn *k = ac->data;
    if (k && r && r->type == REDIS_REPLY_ERROR &&
        strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* SCRIPT FLUSH: send it whole, and load it again. */
        if (k->outstanding)
            k->outstanding--;
        sb_cluster *cl = k->cl;
        append(cl, req->data, req->data + req->rlen + 1, req->plen, req->except,
               false);
        load_scripts(cl);
    } else {
        cmd_reply(ac, r);
    }
    free(req);
}

static int append(sb_cluster *cl, const char *room, const char *prefix,
                  size_t len, uint64_t except, bool by_sha)
{
    char meta[MAX_CHANNEL + 64], stream[MAX_CHANNEL + 64],
        chn[MAX_CHANNEL + 64];
    char head[48], exc[24], cand[EPOCH_LEN + 1], size[16], ttl[16];
    if (hkey(cl, meta, sizeof(meta), "hm:", room) < 0 ||
        hkey(cl, stream, sizeof(stream), "hs:", room) < 0 ||
        hkey(cl, chn, sizeof(chn), "r:", room) < 0)
        return SB_ERR_INVALID;
    if (sb_random_text(cand, EPOCH_LEN) < 0)
        return SB_ERR_NOMEM;
    snprintf(head, sizeof(head), "sb1 r %" PRIu64 " ", except);
    snprintf(exc, sizeof(exc), "%" PRIu64, except);
    snprintf(size, sizeof(size), "%u", cl->history_size);
    snprintf(ttl, sizeof(ttl), "%u", cl->history_ttl_ms);
    size_t rlen = strlen(room);
    append_req *req = malloc(sizeof(*req) + rlen + 1 + len);
    if (!req)
        return SB_ERR_NOMEM;
    req->except = except;
    req->rlen = rlen;
    req->plen = len;
    memcpy(req->data, room, rlen + 1);
    memcpy(req->data + rlen + 1, prefix, len);
    by_sha = by_sha && cl->append_sha[0];
    const char *argv[] = {by_sha ? "EVALSHA" : "EVAL",
                          by_sha ? cl->append_sha : append_script,
                          "2",
                          meta,
                          stream,
                          cand,
                          size,
                          ttl,
                          chn,
                          head,
                          prefix,
                          exc};
    size_t lens[12];
    for (int i = 0; i < 12; i++) /* the prefix is not NUL-terminated */
        lens[i] = i == 10 ? len : strlen(argv[i]);
    int rc = cmd_argv(cl, on_append, req, 12, argv, lens);
    if (rc != SB_OK)
        free(req);
    else
        cl->stats.published++;
    return rc;
}

int sb_cluster_history_send(const char *room, const char *prefix, size_t len,
                            uint64_t except)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    return append(cl, room, prefix, len, except, true);
}

/* ---- holds --------------------------------------------------------------- */

static bool hold_eq(const void *item, const void *key)
{
    return ((const hold *)item)->client == *(const uint64_t *)key;
}

static uint64_t id_hash(uint64_t id)
{
    return sb_hash_bytes((const char *)&id, sizeof(id));
}

int sb_cluster_hold(uint64_t client)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return SB_ERR_UNAVAILABLE;
    if (sb_table_find(&cl->holds, id_hash(client), hold_eq, &client))
        return SB_OK;
    hold *h = calloc(1, sizeof(*h));
    if (!h)
        return SB_ERR_NOMEM;
    h->client = client;
    h->tail = &h->msgs;
    if (sb_table_add(&cl->holds, id_hash(client), h) < 0) {
        free(h);
        return SB_ERR_NOMEM;
    }
    return SB_OK;
}

static held_msg *held_new(const char *room, const char *epoch, size_t elen,
                          uint64_t offset, uint64_t except, const char *text,
                          size_t len)
{
    held_msg *m = malloc(sizeof(*m) + len + 1);
    if (!m)
        return NULL;
    m->next = NULL;
    m->offset = offset;
    m->except = except;
    m->room = room ? strdup(room) : NULL;
    if (elen >= sizeof(m->epoch))
        elen = sizeof(m->epoch) - 1;
    memcpy(m->epoch, epoch ? epoch : "", epoch ? elen : 0);
    m->epoch[epoch ? elen : 0] = 0;
    m->len = len;
    memcpy(m->text, text, len);
    m->text[len] = 0;
    return m;
}

static void held_free(held_msg *m)
{
    while (m) {
        held_msg *next = m->next;
        free(m->room);
        free(m);
        m = next;
    }
}

static void hold_free(hold *h)
{
    held_free(h->msgs);
    free(h);
}

void sb_cluster_release(uint64_t client,
                        bool (*keep)(void *ctx, const char *room,
                                     uint64_t offset),
                        void *ctx)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return;
    hold *h = sb_table_remove(&cl->holds, id_hash(client), hold_eq, &client);
    if (!h)
        return;
    sb_client *c =
        cl->server ? sb_clients_find(&cl->server->table, client) : NULL;
    for (held_msg *m = h->msgs; c && m; m = m->next)
        if (!c->closing && (!keep || keep(ctx, m->room, m->offset)) &&
            sb_client_send_text(c, m->text, m->len) == SB_OK)
            cl->stats.deliveries++;
    hold_free(h);
}

static bool drop_hold(void *item, void *ctx)
{
    (void)ctx;
    hold_free(item);
    return true;
}

/* ---- history deliveries -------------------------------------------------- */

/* A room's text to its local members but `except`; a held client keeps
 * it aside with its offset. */
static void deliver_text(sb_cluster *cl, const char *room, const char *text,
                         size_t len, uint64_t except, uint64_t offset)
{
    sb_server *s = cl->server;
    sb_room *r = s ? sb_rooms_find(&s->rooms, room) : NULL;
    if (!r || frame_text(cl, text, len) < 0)
        return;
    for (size_t i = 0; i < r->count; i++) {
        sb_client *c = r->members[i].links->owner;
        if (c->id == except || c->closing)
            continue;
        hold *h;
        if (cl->holds.count &&
            (h = sb_table_find(&cl->holds, id_hash(c->id), hold_eq, &c->id))) {
            held_msg *m = held_new(room, NULL, 0, offset, 0, text, len);
            if (m) {
                *h->tail = m;
                h->tail = &m->next;
            }
            continue;
        }
        if (sb_client_send_frames(c, cl->frame.data, cl->frame.len) == SB_OK)
            cl->stats.deliveries++;
    }
}

static sb_log_limit lim_resync;

/* The node cannot give its members the room's messages since their
 * position: they are told where it goes on from. */
static void send_resync(sb_cluster *cl, chan *ch)
{
    sb_buf *b = &cl->hist;
    b->len = 0;
    char tail[96];
    int n = snprintf(tail, sizeof(tail),
                     ",\"epoch\":\"%s\",\"offset\":%" PRIu64 "}}", ch->epoch,
                     ch->last);
    if (sb_buf_append_str(b, "{\"event\":\"sb:resync\",\"data\":{\"room\":") <
            0 ||
        sb_json_append_string(b, ch->room, strlen(ch->room)) < 0 ||
        sb_buf_append(b, tail, (size_t)n) < 0)
        return;
    sb_log_limited(&lim_resync, SB_LOG_INFO, "cluster",
                   "room %.200s: messages lost before offset %" PRIu64
                   " (epoch %s): its members are told to resync",
                   ch->room, ch->last, ch->epoch);
    /* Copied: deliver_text frames into cl->frame, not cl->hist. */
    deliver_text(cl, ch->room, b->data, b->len, 0, 0);
}

static void tell_waiters(sb_cluster *cl, chan *ch, bool known)
{
    uint64_t *w = ch->waiters;
    size_t n = ch->nwaiters;
    ch->waiters = NULL;
    ch->nwaiters = 0;
    for (size_t i = 0; i < n && cl->position; i++)
        cl->position(w[i], ch->room, known ? ch->epoch : NULL, ch->last);
    free(w);
}

static void chan_accept(sb_cluster *cl, chan *ch, const char *epoch,
                        size_t elen, uint64_t offset, uint64_t except,
                        const char *text, size_t len);

static void hold_in_chan(chan *ch, const char *epoch, size_t elen,
                         uint64_t offset, uint64_t except, const char *text,
                         size_t len)
{
    held_msg *m = held_new(NULL, epoch, elen, offset, except, text, len);
    if (!m)
        return;
    if (!ch->held)
        ch->held_tail = &ch->held;
    *ch->held_tail = m;
    ch->held_tail = &m->next;
}

/* The gap is filled as far as it goes (or not at all): the rest up to
 * `target` is lost (a resync), then the held messages are taken. */
static void fill_done(sb_cluster *cl, chan *ch, uint64_t target)
{
    if (ch->last < target) {
        ch->last = target;
        send_resync(cl, ch);
    }
    ch->filling = false;
    held_msg *m = ch->held;
    ch->held = NULL;
    for (held_msg *p = m; p; p = p->next)
        chan_accept(cl, ch, p->epoch, strlen(p->epoch), p->offset, p->except,
                    p->text, p->len);
    held_free(m);
}

typedef struct fill_req {
    uint64_t target;
    char room[];
} fill_req;

static void on_fill(redisAsyncContext *ac, void *reply, void *priv)
{
    fill_req *req = priv;
    redisReply *r = reply;
    conn *k = cmd_reply(ac, r);
    sb_cluster *cl = sb_cluster_instance;
    chan *ch = cl ? chan_find(cl, req->room,
                              sb_hash_bytes(req->room, strlen(req->room)))
                  : NULL;
    if (!ch || !ch->filling || !cl->server) {
        free(req);
        return;
    }
    size_t filled = 0;
    for (size_t i = 0; k && r->type == REDIS_REPLY_ARRAY && i < r->elements;
         i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            break;
        uint64_t id = strtoull(e->element[0]->str, NULL, 10);
        if (id != ch->last + 1)
            break;
        const redisReply *f = e->element[1];
        const redisReply *text = NULL;
        uint64_t except = 0;
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            if (f->element[j]->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(f->element[j]->str, "m") == 0)
                text = f->element[j + 1];
            else if (strcmp(f->element[j]->str, "x") == 0)
                except = strtoull(f->element[j + 1]->str, NULL, 10);
        }
        if (!text || text->type != REDIS_REPLY_STRING)
            break;
        deliver_text(cl, ch->room, text->str, text->len, except, id);
        ch->last = id;
        filled++;
    }
    if (filled)
        sb_log_limited(&lim_resync, SB_LOG_INFO, "cluster",
                       "room %.200s: %zu message(s) this node missed filled "
                       "from the stream",
                       ch->room, filled);
    fill_done(cl, ch, req->target);
    free(req);
}

/* Messages last+1 .. target from the stream, before anything held. */
static void start_fill(sb_cluster *cl, chan *ch, uint64_t target)
{
    ch->filling = true;
    char stream[MAX_CHANNEL + 64], from[32], to[32];
    fill_req *req = malloc(sizeof(*req) + strlen(ch->room) + 1);
    if (!req || hkey(cl, stream, sizeof(stream), "hs:", ch->room) < 0) {
        free(req);
        fill_done(cl, ch, target);
        return;
    }
    req->target = target;
    strcpy(req->room, ch->room);
    snprintf(from, sizeof(from), "%" PRIu64 "-0", ch->last + 1);
    snprintf(to, sizeof(to), "%" PRIu64 "-0", target);
    const char *argv[] = {"XRANGE", stream, from, to};
    size_t lens[] = {6, strlen(stream), strlen(from), strlen(to)};
    if (cmd_argv(cl, on_fill, req, 4, argv, lens) != SB_OK) {
        free(req);
        fill_done(cl, ch, target);
    }
}

static void chan_accept(sb_cluster *cl, chan *ch, const char *epoch,
                        size_t elen, uint64_t offset, uint64_t except,
                        const char *text, size_t len)
{
    if (ch->filling) {
        hold_in_chan(ch, epoch, elen, offset, except, text, len);
        return;
    }
    bool first = !ch->has_pos;
    if (elen >= sizeof(ch->epoch))
        elen = sizeof(ch->epoch) - 1;
    if (first || strlen(ch->epoch) != elen ||
        memcmp(ch->epoch, epoch, elen) != 0) {
        memcpy(ch->epoch, epoch, elen);
        ch->epoch[elen] = 0;
        ch->last = offset ? offset - 1 : 0;
        ch->has_pos = true;
        if (!first) /* a new epoch: what the members hold is gone */
            send_resync(cl, ch);
    }
    if (offset <= ch->last)
        return; /* delivered already (a gap fill brought it) */
    if (offset > ch->last + 1) {
        hold_in_chan(ch, epoch, elen, offset, except, text, len);
        start_fill(cl, ch, offset - 1);
        return;
    }
    deliver_text(cl, ch->room, text, len, except, offset);
    ch->last = offset;
    if (first && !ch->reading && ch->nwaiters)
        tell_waiters(cl, ch, true);
}

static void deliver_history(sb_cluster *cl, const char *room,
                            const sb_bus_msg *m)
{
    chan *ch = chan_find(cl, room, sb_hash_bytes(room, strlen(room)));
    if (!ch || !ch->want)
        return;
    chan_accept(cl, ch, m->epoch, m->epoch_len, m->offset, m->client, m->body,
                m->body_len);
}

/* ---- positions ----------------------------------------------------------- */

static void on_position(redisAsyncContext *ac, void *reply, void *priv)
{
    char *room = priv;
    redisReply *r = reply;
    conn *k = cmd_reply(ac, r);
    sb_cluster *cl = sb_cluster_instance;
    chan *ch =
        cl ? chan_find(cl, room, sb_hash_bytes(room, strlen(room))) : NULL;
    free(room);
    if (!ch)
        return;
    ch->reading = false;
    if (k && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_INTEGER && cl->server) {
        const redisReply *e = r->element[0];
        uint64_t o = (uint64_t)r->element[1]->integer;
        bool same = ch->has_pos && strlen(ch->epoch) == e->len &&
                    memcmp(ch->epoch, e->str, e->len) == 0;
        if (!ch->has_pos || !same) {
            bool was = ch->has_pos;
            snprintf(ch->epoch, sizeof(ch->epoch), "%.*s", (int)e->len, e->str);
            ch->last = o;
            ch->has_pos = true;
            if (was && !ch->filling)
                send_resync(cl, ch);
        } else if (o > ch->last && !ch->filling) {
            /* Missed while the subscription was away. */
            start_fill(cl, ch, o);
        }
    }
    tell_waiters(cl, ch, ch->has_pos);
}

/* On a confirmed subscription to a history room: where the room is (the
 * messages after it reach this node), or what it missed meanwhile. */
static void read_position(sb_cluster *cl, chan *ch)
{
    char meta[MAX_CHANNEL + 64], stream[MAX_CHANNEL + 64], cand[EPOCH_LEN + 1],
        ttl[16];
    char *room = strdup(ch->room);
    if (!room || hkey(cl, meta, sizeof(meta), "hm:", ch->room) < 0 ||
        hkey(cl, stream, sizeof(stream), "hs:", ch->room) < 0 ||
        sb_random_text(cand, EPOCH_LEN) < 0) {
        free(room);
        tell_waiters(cl, ch, ch->has_pos);
        return;
    }
    snprintf(ttl, sizeof(ttl), "%u", cl->history_ttl_ms);
    const char *argv[] = {"EVAL", position_script, "2", meta, stream, cand,
                          ttl};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    ch->reading = true;
    if (cmd_argv(cl, on_position, room, 7, argv, lens) != SB_OK) {
        ch->reading = false;
        free(room);
        tell_waiters(cl, ch, ch->has_pos);
    }
}

int sb_cluster_read_room(const char *room, uint64_t after, unsigned count,
                         sb_cluster_reply_fn fn, void *udata)
{
    sb_cluster *cl = sb_cluster_instance;
    char meta[MAX_CHANNEL + 64], stream[MAX_CHANNEL + 64], cand[EPOCH_LEN + 1],
        ttl[16], from[32], cnt[16];
    if (!cl)
        return SB_ERR_UNAVAILABLE;
    if (hkey(cl, meta, sizeof(meta), "hm:", room) < 0 ||
        hkey(cl, stream, sizeof(stream), "hs:", room) < 0)
        return SB_ERR_INVALID;
    if (sb_random_text(cand, EPOCH_LEN) < 0)
        return SB_ERR_NOMEM;
    snprintf(ttl, sizeof(ttl), "%u", cl->history_ttl_ms);
    snprintf(from, sizeof(from), "%" PRIu64 "-0", after + 1);
    snprintf(cnt, sizeof(cnt), "%u", count);
    const char *argv[] = {
        "EVAL", position_script, "2", meta, stream, cand, ttl, from, cnt};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    return sb_cluster_command(9, argv, lens, fn, udata);
}

void sb_cluster_join_position(uint64_t client, const char *room)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl || !cl->position)
        return;
    chan *ch = chan_find(cl, room, sb_hash_bytes(room, strlen(room)));
    if (!ch) {
        cl->position(client, room, NULL, 0);
        return;
    }
    if (ch->confirmed && ch->has_pos && !ch->reading) {
        cl->position(client, room, ch->epoch, ch->last);
        return;
    }
    uint64_t *w = realloc(ch->waiters, (ch->nwaiters + 1) * sizeof(*w));
    if (!w) {
        cl->position(client, room, NULL, 0);
        return;
    }
    w[ch->nwaiters++] = client;
    ch->waiters = w;
}

bool sb_cluster_room_ready(const char *room)
{
    sb_cluster *cl = sb_cluster_instance;
    chan *ch =
        cl ? chan_find(cl, room, sb_hash_bytes(room, strlen(room))) : NULL;
    return ch && ch->want && ch->confirmed && !ch->reading;
}

/* Frees a channel and what it holds. */
static void chan_free(chan *ch)
{
    held_free(ch->held);
    free(ch->waiters);
    free(ch->room);
    free(ch);
}

static void deliver_room(sb_cluster *cl, const char *room, const sb_bus_msg *m)
{
    if (m->epoch_len && !(m->epoch_len == 1 && m->epoch[0] == '-') &&
        cl->history) {
        deliver_history(cl, room, m);
        return;
    }
    deliver_text(cl, room, m->body, m->body_len, m->client, 0);
}

static void deliver_broadcast(sb_cluster *cl, const sb_bus_msg *m)
{
    sb_server *s = cl->server;
    const sb_config *cfg = s->config;
    uint64_t mask = 0;
    const char *p = m->gateways, *end = m->gateways + m->gateways_len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = (size_t)((comma ? comma : end) - p);
        for (size_t g = 0; g < cfg->ngateways; g++)
            if (strlen(cfg->gateways[g].name) == n &&
                memcmp(cfg->gateways[g].name, p, n) == 0)
                mask |= 1ull << g;
        p += n + 1;
    }
    if (!mask || frame_text(cl, m->body, m->body_len) < 0)
        return;
    for (sb_client *c = s->clients; c; c = c->next) {
        if (c->id == m->client || c->closing || !(mask & (1ull << c->gateway)))
            continue;
        if (sb_client_send_frames(c, cl->frame.data, cl->frame.len) == SB_OK)
            cl->stats.deliveries++;
    }
}

static void deliver_one(sb_cluster *cl, const sb_bus_msg *m)
{
    sb_client *c = sb_clients_find(&cl->server->table, m->client);
    if (!c || !c->server || c->closing) {
        cl->stats.unrouted++;
        return;
    }
    /* Texts held NUL-terminated for the net layer's calls. */
    cl->text.len = 0;
    size_t tlen = m->body_len - (m->kind == 'x' ? m->id_len : 0);
    const char *t = m->body + (m->kind == 'x' ? m->id_len : 0);
    if (m->kind != 's' && (sb_buf_append(&cl->text, t, tlen) < 0 ||
                           sb_buf_append_byte(&cl->text, 0) < 0))
        return;
    switch (m->kind) {
    case 's':
        if (sb_client_send_text(c, m->body, m->body_len) == SB_OK)
            cl->stats.deliveries++;
        break;
    case 'x':
        if (sb_send_exception(
                c, cl->text.data, NULL, (sb_span){NULL, 0},
                (sb_span){m->id_len ? m->body : NULL, m->id_len}) == SB_OK)
            cl->stats.deliveries++;
        break;
    case 'c':
        sb_client_close(c, m->code, cl->text.data);
        break;
    }
}

static void on_message(sb_cluster *cl, const redisReply *chr,
                       const redisReply *msg)
{
    const char *ch = chr->str;
    size_t plen = cl->plen;
    if (chr->len <= plen || memcmp(ch, cl->conf->prefix, plen) != 0) {
        bad_input(cl, ch, "not our channel");
        return;
    }
    sb_bus_msg m;
    if (sb_bus_parse(msg->str, msg->len, &m) < 0) {
        bad_input(cl, ch, "not a Switchboard bus message");
        return;
    }
    const char *rest = ch + plen;
    if (m.kind == 'p')
        return; /* a probe: hearing it was the point */
    cl->stats.received++;
    if (!cl->server)
        return;
    if (rest[0] == 'r' && rest[1] == ':' && m.kind == 'r' &&
        strlen(rest + 2) == chr->len - plen - 2)
        deliver_room(cl, rest + 2, &m);
    else if (strcmp(rest, "b") == 0 && m.kind == 'b')
        deliver_broadcast(cl, &m);
    else if (rest[0] == 'n' &&
             (m.kind == 's' || m.kind == 'x' || m.kind == 'c'))
        deliver_one(cl, &m);
    else
        bad_input(cl, ch, "wrong kind for the channel");
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    sb_cluster *cl = priv;
    conn *k = ac->data;
    redisReply *r = reply;
    if (!k || !r)
        return;
    cl->sub_heard_ms = now_ms(cl);
    if (r->type == REDIS_REPLY_ERROR) {
        cl->stats.errors++;
        sb_log_limited(&lim_err, SB_LOG_WARN, "cluster",
                       "subscriber: Redis answered an error: %s", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *type = r->element[0]->str;
    const redisReply *chr = r->element[1];
    if (strcmp(type, "message") == 0) {
        if (r->element[2]->type == REDIS_REPLY_STRING)
            on_message(cl, chr, r->element[2]);
        return;
    }
    bool sub = strcmp(type, "subscribe") == 0;
    if ((!sub && strcmp(type, "unsubscribe") != 0) || chr->len < cl->plen + 2 ||
        memcmp(chr->str + cl->plen, "r:", 2) != 0)
        return;
    const char *room = chr->str + cl->plen + 2;
    uint64_t h = sb_hash_bytes(room, strlen(room));
    chan *c = chan_find(cl, room, h);
    if (sub) {
        if (c && c->state == CH_SUB && c->want && !c->confirmed) {
            c->confirmed = true;
            presence_node(cl, room, true);
            if (cl->history && cl->keeps(room))
                read_position(cl, c);
        }
        return;
    }
    if (!c || c->state != CH_UNSUB)
        return;
    if (c->want) {
        chan_sub(cl, c);
    } else {
        sb_table_remove(&cl->chans, h, chan_eq, room);
        chan_free(c);
    }
}

/* ---- the tick: deadlines, reconnects, heartbeat, probe ------------------- */

/* Reads what has arrived on a context before a deadline is judged: after
 * the process itself was held up (a loaded machine), timers run before the
 * poll, and the answer may be waiting in the socket. */
static void read_pending(conn *k)
{
    if (k->ac && (k->ac->c.flags & REDIS_CONNECTED))
        redisAsyncHandleRead(k->ac);
}

static void check_conn(sb_cluster *cl, conn *k, uint64_t now)
{
    if (!k->ac) {
        if (k->retry_at_ms && now >= k->retry_at_ms)
            conn_open(k);
        return;
    }
    bool late =
        (!k->ready && now - k->started_ms > cl->conf->connect_timeout_ms) ||
        (k->ready && k->outstanding &&
         now - k->progress_ms > cl->conf->command_timeout_ms);
    if (!late)
        return;
    read_pending(k);
    if (!k->ac)
        return; /* the read found the connection closed */
    if (!k->ready && now - k->started_ms > cl->conf->connect_timeout_ms) {
        cl->stats.timeouts++;
        conn_drop(k, "no answer within connect_timeout");
    } else if (k->ready && k->outstanding &&
               now - k->progress_ms > cl->conf->command_timeout_ms) {
        cl->stats.timeouts++;
        conn_drop(k, "no reply within command_timeout");
    }
}

static void on_tick(uv_timer_t *t)
{
    sb_cluster *cl = t->data;
    uint64_t now = now_ms(cl);
    check_conn(cl, &cl->cmd, now);
    check_conn(cl, &cl->sub, now);
    if (cl->cmd.ready && now >= cl->heartbeat_at_ms)
        heartbeat(cl);
    if (!cl->cmd.ready || !cl->sub.ready)
        return;
    if (cl->probe_sent_ms && cl->sub_heard_ms < cl->probe_sent_ms) {
        if (now - cl->probe_sent_ms > cl->conf->command_timeout_ms) {
            read_pending(&cl->sub);
            if (cl->sub.ready && cl->sub_heard_ms < cl->probe_sent_ms) {
                cl->stats.timeouts++;
                conn_drop(&cl->sub, "our own probe did not come back");
            }
        }
        return;
    }
    uint64_t quiet_since = cl->sub_heard_ms;
    if (now - quiet_since >= cl->conf->probe_interval_ms) {
        sb_bus_msg m = {.kind = 'p', .client = cl->node};
        cl->out.len = 0;
        if (sb_bus_header(&cl->out, &m) == 0 &&
            key_of(cl, &cl->chname, "n:", cl->node_str, NULL) == 0 &&
            publish(cl, on_cmd, NULL) == SB_OK) {
            cl->stats.published--; /* probes are not traffic */
            cl->probe_sent_ms = now;
        }
    }
}

/* ---- serving ------------------------------------------------------------- */

static void on_room_changed(void *ctx, const sb_room *room, sb_client *c,
                            bool joined)
{
    sb_cluster *cl = ctx;
    if (joined ? room->count == 1 : room->count == 0) {
        chan_want(cl, room->name, joined);
        flush_now(&cl->sub);
    }
    presence_change(cl, room, c, joined);
    flush_now(&cl->cmd);
}

void sb_cluster_attach(sb_server *s)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return;
    cl->server = s;
    s->next_id = (sb_client_id)cl->node << SB_CLUSTER_NODE_SHIFT;
    s->rooms.changed = on_room_changed;
    s->rooms.changed_ctx = cl;
    uv_timer_init(cl->loop, &cl->tick);
    cl->tick.data = cl;
    cl->tick_open = true;
    uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&cl->tick);
    conn_open(&cl->cmd);
    conn_open(&cl->sub);
}

/* What the command connection still has to send and hear (sessions kept
 * at shutdown), bounded by command_timeout: the loop no longer runs. */
static void drain(sb_cluster *cl)
{
    conn *k = &cl->cmd;
    uint64_t start = uv_hrtime() / 1000000;
    while (k->ready && k->ac && k->outstanding) {
        uint64_t now = uv_hrtime() / 1000000;
        if (now - start >= cl->conf->command_timeout_ms) {
            sb_log_warn("cluster",
                        "%" PRIu64 " command(s) unanswered at shutdown",
                        k->outstanding);
            return;
        }
        redisAsyncHandleWrite(k->ac);
        if (!k->ac)
            return;
        struct pollfd pfd = {.fd = k->ac->c.fd, .events = POLLIN};
        int left = (int)(cl->conf->command_timeout_ms - (now - start));
        if (poll(&pfd, 1, left < 10 ? left : 10) > 0)
            redisAsyncHandleRead(k->ac);
    }
}

void sb_cluster_detach(void)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl || !cl->server)
        return;
    bool was_up = cl->cmd.ready;
    drain(cl);
    cl->server->rooms.changed = NULL;
    cl->server = NULL;
    conn_drop(&cl->cmd, "stopping");
    conn_drop(&cl->sub, "stopping");
    if (cl->tick_open) {
        uv_close((uv_handle_t *)&cl->tick, NULL);
        cl->tick_open = false;
    }
    if (!was_up)
        return; /* our keys expire with node_ttl */
    /* Leave nothing behind: a short blocking exchange at shutdown. */
    char err[256] = "";
    redisContext *c = sync_connect(cl, err, sizeof(err));
    if (!c) {
        sb_log_warn("cluster", "cannot clear this node's presence: %s", err);
        return;
    }
    redisReply *r = redisCommand(c, "EVAL %s 0 %s %s", clear_script,
                                 cl->conf->prefix, cl->node_str);
    freeReplyObject(r);
    r = redisCommand(c, "DEL %salive:%s", cl->conf->prefix, cl->node_str);
    freeReplyObject(r);
    redisFree(c);
}

void sb_cluster_free(void)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return;
    size_t pos = 0;
    chan *ch;
    while ((ch = sb_table_next(&cl->chans, &pos)))
        chan_free(ch);
    sb_table_free(&cl->chans);
    sb_table_remove_if(&cl->holds, drop_hold, NULL);
    sb_table_free(&cl->holds);
    sb_buf_free(&cl->hist);
    sb_buf_free(&cl->out);
    sb_buf_free(&cl->chname);
    sb_buf_free(&cl->frame);
    sb_buf_free(&cl->text);
    free(cl->password);
    free(cl);
    sb_cluster_instance = NULL;
}

/* ---- what the host layer calls ------------------------------------------- */

bool sb_cluster_up(void)
{
    return sb_cluster_instance && sb_cluster_instance->up;
}

uint32_t sb_cluster_node(void)
{
    return sb_cluster_instance ? sb_cluster_instance->node : 0;
}

const char *sb_cluster_node_name(void)
{
    return sb_cluster_instance ? sb_cluster_instance->node_name : "";
}

const sb_cluster_stats *sb_cluster_get_stats(void)
{
    return sb_cluster_instance ? &sb_cluster_instance->stats : NULL;
}

const char *sb_cluster_state(void)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl)
        return "none";
    if (cl->up)
        return "connected";
    return cl->ever_up ? "down" : "connecting";
}

size_t sb_cluster_channels(void)
{
    return sb_cluster_instance ? sb_cluster_instance->chans.count : 0;
}

/* header + body into cl->out. */
static int message(sb_cluster *cl, const sb_bus_msg *m, const char *body,
                   size_t len)
{
    cl->out.len = 0;
    if (sb_bus_header(&cl->out, m) < 0 ||
        sb_buf_append(&cl->out, body, len) < 0)
        return SB_ERR_NOMEM;
    return SB_OK;
}

int sb_cluster_room_send(const char *room, const char *text, size_t len,
                         uint64_t except)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    sb_bus_msg m = {.kind = 'r', .client = except};
    int rc = message(cl, &m, text, len);
    if (rc != SB_OK || key_of(cl, &cl->chname, "r:", room, NULL) < 0)
        return SB_ERR_NOMEM;
    return publish(cl, on_cmd, NULL);
}

int sb_cluster_broadcast(const char *gateways, size_t glen, const char *text,
                         size_t len, uint64_t except)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    sb_bus_msg m = {.kind = 'b',
                    .client = except,
                    .gateways = gateways,
                    .gateways_len = glen};
    int rc = message(cl, &m, text, len);
    if (rc != SB_OK || key_of(cl, &cl->chname, "b", NULL, NULL) < 0)
        return SB_ERR_NOMEM;
    return publish(cl, on_cmd, NULL);
}

/* To the node channel of `to`'s node. */
static int to_node(sb_cluster *cl, uint64_t to)
{
    char n[16];
    uint32_t node = sb_cluster_node_of(to);
    snprintf(n, sizeof(n), "%u", node);
    if (key_of(cl, &cl->chname, "n:", n, NULL) < 0)
        return SB_ERR_NOMEM;
    return publish(cl, on_node_publish, (void *)(uintptr_t)node);
}

int sb_cluster_send(uint64_t to, const char *text, size_t len)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    sb_bus_msg m = {.kind = 's', .client = to};
    int rc = message(cl, &m, text, len);
    return rc != SB_OK ? rc : to_node(cl, to);
}

int sb_cluster_exception(uint64_t to, const char *id, size_t id_len,
                         const char *msg)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    sb_bus_msg m = {.kind = 'x', .client = to, .id_len = id ? id_len : 0};
    int rc = message(cl, &m, id ? id : "", id ? id_len : 0);
    if (rc == SB_OK && sb_buf_append_str(&cl->out, msg) < 0)
        rc = SB_ERR_NOMEM;
    return rc != SB_OK ? rc : to_node(cl, to);
}

int sb_cluster_close(uint64_t to, int code, const char *reason)
{
    sb_cluster *cl = sb_cluster_instance;
    if (!cl->up) {
        cl->stats.refused++;
        return SB_ERR_UNAVAILABLE;
    }
    sb_bus_msg m = {.kind = 'c', .client = to, .code = code};
    int rc = message(cl, &m, reason, strlen(reason));
    return rc != SB_OK ? rc : to_node(cl, to);
}

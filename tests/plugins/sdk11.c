/*
 * sdk11 — a test plugin that drives every ABI 1.1 call the bundled plugins
 * (chat, clock, auth, work) do not: clients by id, per-client state and
 * data, sending to ids and broadcasting, event guards, post() from a thread
 * of the plugin's own, timers stopped from their own callback, the typed
 * config getters and message_gateway(). Hooks and destructors write one
 * line each to a journal file, prefixed with the instance name, so that a
 * test can check what ran, when, and in which instance.
 *
 * Config keys:
 *   journal = FILE        required (config_require)
 *   role = full | guard   guard: only the guard and the journal, no events,
 *                         so that a second instance can sit beside a full one
 *   deny_key = K          the guard denies data with "K": true (default
 *                         "forbidden"); "silent": true denies without fail()
 *   limit, verbose, ratio, greeting: read by the typed getters ("config")
 *   send_in_disconnect, post_in_unload: booleans that make the plugin call
 *                         the host at the edges of a client's or its own life
 *
 * A handshake hook attaches {"user":U,"query":<handshake_query()>} to a
 * client that connects with ?user=U, for client_identity() and client_info().
 *
 * Events (role full), each answering {"event":E,"data":...}:
 *   whoami                  {"id","plugin","gateway"}
 *   info {"id"?}            client_info() of the sender or of id (null: stale)
 *   identity {"id"?}        client_identity() (null when none)
 *   close {"id"?,"code","reason"}  client_close(); for the sender, the reply
 *                           comes first ({"self":true}) and the rc goes to
 *                           the journal
 *   count / count_of {"id"} a counter in client_state; state_clear
 *   data_set {"tag"} / data_get     client_data with a journaling destructor
 *   send {"to","event","data"}      {"rc"}
 *   broadcast {"data","except_me"}  {"count"}
 *   post {"delay_ms"}       a pthread sleeps, then post()s; the loop sends
 *                           "posted" {"on_loop","from_thread"}
 *   ticks {"every_ms","stop_after"}  "tick" {"n"} each time, then
 *                           "ticks_done" {"rc","again"} from timer_stop()
 *                           called inside the callback (and a second time)
 *   oneshot                 "oneshot" {"timer"} after 10 ms
 *   timer_stop {"timer"}    {"rc"}
 *   config                  the typed getters' values
 *   echo                    the data back (for guards)
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <switchboard/plugin.h>

typedef struct sdk sdk;

/* A thread started by `post`: kept on a list so that unload can join any
 * thread whose post never ran. */
typedef struct post_job {
    sdk *s;
    sb_plugin *plugin;
    sb_client_id client;
    long delay_ms;
    pthread_t thread;
    pthread_t poster; /* pthread_self() of the thread that called post() */
    struct post_job *next;
} post_job;

/* A repeating timer started by `ticks`: timers stopped by the host at
 * unload do not tell the plugin, so their udata is listed here to be freed
 * by the unload hook. */
typedef struct tick_job {
    sdk *s;
    sb_client_id client;
    uint64_t timer;
    int n, stop_after;
    struct tick_job *next;
} tick_job;

/* What client_data_set() keeps: the destructor gets only this pointer, so
 * it carries the instance it journals to. */
typedef struct tagged {
    sdk *s;
    char tag[64];
} tagged;

struct sdk {
    const sb_host *host;
    const char *name;
    FILE *journal;
    const char *deny_key;
    bool send_in_disconnect, post_in_unload;
    pthread_t loop_thread; /* init runs on the loop thread */
    pthread_mutex_t lock;  /* guards jobs: threads read their own job only */
    post_job *jobs;
    tick_job *ticks;
    /* The typed config values, answered by `config`. */
    int64_t limit, absent_int; /* absent_int: never in the config */
    int verbose;
    double ratio;
    const char *greeting;
};

static void note(sdk *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(sdk *s, const char *fmt, ...)
{
    va_list ap;
    fprintf(s->journal, "%s ", s->name);
    va_start(ap, fmt);
    vfprintf(s->journal, fmt, ap);
    va_end(ap);
    fputc('\n', s->journal);
    fflush(s->journal);
}

/* data.KEY as a client id, or `def` when the data has no such number. */
static sb_client_id id_arg(sdk *s, sb_message *m, const char *key,
                           sb_client_id def)
{
    json_t *v = json_object_get(s->host->message_data(m), key);
    return json_is_integer(v) ? (sb_client_id)json_integer_value(v) : def;
}

static json_int_t int_arg(sdk *s, sb_message *m, const char *key,
                          json_int_t def)
{
    json_t *v = json_object_get(s->host->message_data(m), key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

/* ---- clients by id ------------------------------------------------------ */

static int on_whoami(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    return s->host->reply(m, "whoami",
                          json_pack("{s:I,s:s,s:s}", "id",
                                    (json_int_t)s->host->message_client(m),
                                    "plugin", s->host->plugin_name(p),
                                    "gateway", s->host->message_gateway(m)));
}

static int on_info(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = id_arg(s, m, "id", s->host->message_client(m));
    json_t *info = s->host->client_info(id);
    return s->host->reply(m, "info", info ? info : json_null());
}

static int on_identity(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = id_arg(s, m, "id", s->host->message_client(m));
    json_t *who = s->host->client_identity(id); /* borrowed */
    return s->host->reply(m, "identity", who ? json_incref(who) : json_null());
}

static int on_close(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id self = s->host->message_client(m);
    sb_client_id id = id_arg(s, m, "id", self);
    int code = (int)int_arg(s, m, "code", 1000);
    const char *reason =
        json_string_value(json_object_get(s->host->message_data(m), "reason"));
    if (id != self) {
        int rc = s->host->client_close(id, code, reason);
        return s->host->reply(m, "close", json_pack("{s:i}", "rc", rc));
    }
    /* The close goes out after what is queued: the reply first. */
    s->host->reply(m, "close", json_pack("{s:b}", "self", 1));
    int rc = s->host->client_close(id, code, reason);
    int again = s->host->client_close(id, code, reason);
    int late = s->host->reply(m, "late", NULL);
    note(s, "close self rc=%d again=%d late=%d", rc, again, late);
    return SB_OK;
}

/* ---- per-client state --------------------------------------------------- */

static json_int_t counter_of(sdk *s, sb_plugin *p, sb_client_id id)
{
    json_t *state = s->host->client_state_get(p, id); /* borrowed */
    return json_integer_value(json_object_get(state, "n"));
}

static int on_count(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = s->host->message_client(m);
    json_int_t n = counter_of(s, p, id) + 1;
    int rc = s->host->client_state_set(p, id, json_pack("{s:I}", "n", n));
    if (rc != SB_OK)
        return s->host->fail(m, "client_state_set: %s", s->host->strerror(rc));
    return s->host->reply(m, "count", json_integer(n));
}

static int on_count_of(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = id_arg(s, m, "id", 0);
    json_t *state = s->host->client_state_get(p, id);
    /* Setting state on a stale id must fail and still release the value. */
    int rc =
        state ? SB_OK : s->host->client_state_set(p, id, json_string("leak?"));
    return s->host->reply(
        m, "count_of", json_pack("{s:O?,s:i}", "state", state, "set_rc", rc));
}

static int on_state_clear(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = s->host->message_client(m);
    int rc = s->host->client_state_set(p, id, NULL);
    return s->host->reply(m, "state_clear",
                          json_pack("{s:i,s:b}", "rc", rc, "gone",
                                    s->host->client_state_get(p, id) == NULL));
}

static void tagged_destroy(void *ptr)
{
    tagged *t = ptr;
    note(t->s, "destroy %s", t->tag);
    free(t);
}

static int on_data_set(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    const char *tag =
        json_string_value(json_object_get(s->host->message_data(m), "tag"));
    if (!tag)
        return s->host->fail(m, "data_set wants a tag");
    tagged *t = calloc(1, sizeof(*t));
    if (!t)
        return s->host->fail(m, "out of memory");
    t->s = s;
    snprintf(t->tag, sizeof(t->tag), "%s", tag);
    int rc = s->host->client_data_set(p, s->host->message_client(m), t,
                                      tagged_destroy);
    if (rc != SB_OK)
        free(t);
    return s->host->reply(m, "data_set", json_pack("{s:i}", "rc", rc));
}

static int on_data_get(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    sb_client_id id = id_arg(s, m, "id", s->host->message_client(m));
    tagged *t = s->host->client_data_get(p, id);
    return s->host->reply(m, "data_get", t ? json_string(t->tag) : json_null());
}

/* ---- sending ------------------------------------------------------------ */

static int on_send(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    json_t *d = s->host->message_data(m);
    const char *event = json_string_value(json_object_get(d, "event"));
    json_t *data = json_object_get(d, "data");
    int rc = s->host->send(p, id_arg(s, m, "to", 0), event ? event : "sent",
                           data ? json_incref(data) : NULL);
    return s->host->reply(m, "send", json_pack("{s:i}", "rc", rc));
}

static int on_broadcast(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    json_t *d = s->host->message_data(m);
    json_t *data = json_object_get(d, "data");
    sb_client_id except = json_is_true(json_object_get(d, "except_me"))
                              ? s->host->message_client(m)
                              : 0;
    int n = s->host->broadcast(p, "broadcast", data ? json_incref(data) : NULL,
                               except);
    return s->host->reply(m, "broadcast", json_pack("{s:i}", "count", n));
}

static int on_echo(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    json_t *d = s->host->message_data(m);
    return s->host->reply(m, "echo", d ? json_incref(d) : NULL);
}

/* ---- post() from a thread of the plugin's own --------------------------- */

static void on_posted(sb_plugin *p, void *ud)
{
    post_job *job = ud;
    sdk *s = job->s;
    /* The thread's last act was post(): joining it does not block. */
    pthread_join(job->thread, NULL);
    pthread_mutex_lock(&s->lock);
    for (post_job **pp = &s->jobs; *pp; pp = &(*pp)->next)
        if (*pp == job) {
            *pp = job->next;
            break;
        }
    pthread_mutex_unlock(&s->lock);
    bool on_loop = pthread_equal(pthread_self(), s->loop_thread);
    bool from_thread = !pthread_equal(job->poster, s->loop_thread);
    int rc = s->host->send(
        p, job->client, "posted",
        json_pack("{s:b,s:b}", "on_loop", on_loop, "from_thread", from_thread));
    note(s, "posted to %llu rc=%d", (unsigned long long)job->client, rc);
    free(job);
}

static void *post_thread(void *arg)
{
    post_job *job = arg;
    struct timespec ts = {job->delay_ms / 1000,
                          (job->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    job->poster = pthread_self();
    /* The job belongs to the loop once posted: touch nothing after. */
    const sb_host *host = job->s->host;
    int rc = host->post(job->plugin, on_posted, job);
    if (rc != SB_OK)
        fprintf(stderr, "sdk11: post failed: %s\n", host->strerror(rc));
    return NULL;
}

static int on_post(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    post_job *job = calloc(1, sizeof(*job));
    if (!job)
        return s->host->fail(m, "out of memory");
    job->s = s;
    job->plugin = p;
    job->client = s->host->message_client(m);
    job->delay_ms = (long)int_arg(s, m, "delay_ms", 0);
    pthread_mutex_lock(&s->lock);
    job->next = s->jobs;
    s->jobs = job;
    int err = pthread_create(&job->thread, NULL, post_thread, job);
    if (err) {
        s->jobs = job->next;
        free(job);
    }
    pthread_mutex_unlock(&s->lock);
    if (err)
        return s->host->fail(m, "pthread_create failed");
    return s->host->reply(m, "post", json_pack("{s:b}", "started", 1));
}

/* ---- timers ------------------------------------------------------------- */

static void tick_free(sdk *s, tick_job *t)
{
    for (tick_job **pp = &s->ticks; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    free(t);
}

static void on_tick(sb_plugin *p, uint64_t timer, void *ud)
{
    tick_job *t = ud;
    sdk *s = t->s;
    t->n++;
    int rc = s->host->send(p, t->client, "tick", json_pack("{s:i}", "n", t->n));
    if (rc == SB_ERR_NOT_FOUND || t->n >= t->stop_after) {
        /* Stopping a timer from its own callback is allowed; a second stop
         * finds nothing. */
        int stop = s->host->timer_stop(p, timer);
        int again = s->host->timer_stop(p, timer);
        s->host->send(p, t->client, "ticks_done",
                      json_pack("{s:i,s:i,s:b}", "rc", stop, "again", again,
                                "same_id", timer == t->timer));
        tick_free(s, t);
    }
}

static int on_ticks(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    tick_job *t = calloc(1, sizeof(*t));
    if (!t)
        return s->host->fail(m, "out of memory");
    t->s = s;
    t->client = s->host->message_client(m);
    t->stop_after = (int)int_arg(s, m, "stop_after", 3);
    json_int_t every = int_arg(s, m, "every_ms", 20);
    int rc = s->host->timer_start(p, (uint64_t)every, (uint64_t)every, on_tick,
                                  t, &t->timer);
    if (rc != SB_OK) {
        free(t);
        return s->host->fail(m, "timer_start: %s", s->host->strerror(rc));
    }
    t->next = s->ticks;
    s->ticks = t;
    return s->host->reply(m, "ticks",
                          json_pack("{s:I}", "timer", (json_int_t)t->timer));
}

/* A one-shot timer's job is on the same list as the repeating ones, so
 * that unload frees it if the timer never fired. */
static void on_oneshot_fired(sb_plugin *p, uint64_t timer, void *ud)
{
    tick_job *t = ud;
    sdk *s = t->s;
    s->host->send(p, t->client, "oneshot",
                  json_pack("{s:I}", "timer", (json_int_t)timer));
    tick_free(s, t); /* the id is stale now: nothing to stop */
}

static int on_oneshot(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    tick_job *t = calloc(1, sizeof(*t));
    if (!t)
        return s->host->fail(m, "out of memory");
    t->s = s;
    t->client = s->host->message_client(m);
    int rc = s->host->timer_start(p, 10, 0, on_oneshot_fired, t, &t->timer);
    if (rc != SB_OK) {
        free(t);
        return s->host->fail(m, "timer_start: %s", s->host->strerror(rc));
    }
    t->next = s->ticks;
    s->ticks = t;
    return s->host->reply(m, "oneshot",
                          json_pack("{s:I}", "timer", (json_int_t)t->timer));
}

static int on_timer_stop(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    int rc = s->host->timer_stop(p, (uint64_t)int_arg(s, m, "timer", 0));
    return s->host->reply(m, "timer_stop", json_pack("{s:i}", "rc", rc));
}

/* ---- config ------------------------------------------------------------- */

static int on_config(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    return s->host->reply(
        m, "config",
        json_pack("{s:I,s:I,s:b,s:f,s:s}", "limit", (json_int_t)s->limit,
                  "absent_int", (json_int_t)s->absent_int, "verbose",
                  s->verbose, "ratio", s->ratio, "greeting", s->greeting));
}

/* ---- hooks -------------------------------------------------------------- */

static int on_guard(sb_plugin *p, sb_message *m, void *ud)
{
    sdk *s = ud;
    const char *event = s->host->message_event(m);
    json_t *d = s->host->message_data(m);
    note(s, "guard %s", event);
    if (json_is_true(json_object_get(d, s->deny_key)))
        return s->host->fail(m, "%s denies '%s'", s->name, event);
    if (json_is_true(json_object_get(d, "silent")))
        return SB_ERR_INVALID;
    return SB_OK;
}

static int on_handshake(sb_plugin *p, sb_handshake *hs, void *ud)
{
    sdk *s = ud;
    /* ?user=NAME attaches {"user":NAME,"query":<handshake_query()>}. */
    const char *user = s->host->handshake_query_arg(hs, "user");
    if (user)
        s->host->handshake_set_identity(
            hs, json_pack("{s:s,s:s}", "user", user, "query",
                          s->host->handshake_query(hs)));
    return SB_OK;
}

static int on_connect(sb_plugin *p, sb_client_id id, void *ud)
{
    note(ud, "connect %llu", (unsigned long long)id);
    return SB_OK;
}

static void on_disconnect(sb_plugin *p, sb_client_id id, int code, void *ud)
{
    sdk *s = ud;
    tagged *t = s->host->client_data_get(p, id);
    note(s, "disconnect %llu %d count=%lld data=%s", (unsigned long long)id,
         code, (long long)counter_of(s, p, id), t ? t->tag : "-");
    if (s->send_in_disconnect) {
        /* The header: "the id is already stale for sending". */
        int rc = s->host->send(p, id, "bye", NULL);
        note(s, "bye %llu rc=%d", (unsigned long long)id, rc);
    }
}

static void on_ready(sb_plugin *p, void *ud)
{
    note(ud, "ready");
}

static void on_late_post(sb_plugin *p, void *ud)
{
    sdk *s = ud;
    note(s, "late post ran");
}

static void sdk_free(sdk *s)
{
    pthread_mutex_lock(&s->lock);
    post_job *jobs = s->jobs;
    s->jobs = NULL;
    pthread_mutex_unlock(&s->lock);
    while (jobs) {
        post_job *next = jobs->next;
        pthread_join(jobs->thread, NULL);
        free(jobs);
        jobs = next;
    }
    while (s->ticks)
        tick_free(s, s->ticks);
    if (s->journal)
        fclose(s->journal);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void on_unload(sb_plugin *p, void *ud)
{
    sdk *s = ud;
    if (s->post_in_unload) {
        /* post() is "safe from any thread": is it safe this late? */
        int rc = s->host->post(p, on_late_post, s);
        note(s, "unload post rc=%d", rc);
    }
    note(s, "unload");
    sdk_free(s);
}

/* ---- init --------------------------------------------------------------- */

static const struct {
    const char *event;
    sb_event_fn fn;
} routes[] = {
    {"whoami", on_whoami},
    {"info", on_info},
    {"identity", on_identity},
    {"close", on_close},
    {"count", on_count},
    {"count_of", on_count_of},
    {"state_clear", on_state_clear},
    {"data_set", on_data_set},
    {"data_get", on_data_get},
    {"send", on_send},
    {"broadcast", on_broadcast},
    {"echo", on_echo},
    {"post", on_post},
    {"ticks", on_ticks},
    {"oneshot", on_oneshot},
    {"timer_stop", on_timer_stop},
    {"config", on_config},
};

/* Reads the typed keys. Each getter records a message naming the key and
 * the section when it fails, so init only passes the status on. */
static int read_config(sdk *s, sb_plugin *p)
{
    const sb_host *h = s->host;
    const char *journal, *role;
    int rc, flag;
    if ((rc = h->config_require(p, "journal", &journal)) != SB_OK)
        return rc;
    s->journal = fopen(journal, "a");
    if (!s->journal)
        return h->plugin_error(p, "cannot open journal %s", journal);
    if ((rc = h->config_string(p, "role", "full", &role)) != SB_OK ||
        (rc = h->config_string(p, "deny_key", "forbidden", &s->deny_key)) !=
            SB_OK ||
        (rc = h->config_string(p, "greeting", "hello", &s->greeting)) !=
            SB_OK ||
        (rc = h->config_int(p, "limit", 10, &s->limit)) != SB_OK ||
        (rc = h->config_int(p, "absent_int", -7, &s->absent_int)) != SB_OK ||
        (rc = h->config_bool(p, "verbose", 0, &s->verbose)) != SB_OK ||
        (rc = h->config_double(p, "ratio", 0.5, &s->ratio)) != SB_OK)
        return rc;
    if ((rc = h->config_bool(p, "send_in_disconnect", 0, &flag)) != SB_OK)
        return rc;
    s->send_in_disconnect = flag;
    if ((rc = h->config_bool(p, "post_in_unload", 0, &flag)) != SB_OK)
        return rc;
    s->post_in_unload = flag;
    if (strcmp(role, "guard") == 0)
        return 1;
    if (strcmp(role, "full") != 0)
        return h->plugin_error(p, "role must be full or guard, not '%s'", role);
    return SB_OK;
}

static int sdk_init(sb_plugin *p, const sb_host *host)
{
    sdk *s = calloc(1, sizeof(*s));
    if (!s)
        return host->plugin_error(p, "out of memory");
    s->host = host;
    s->name = host->plugin_name(p);
    s->loop_thread = pthread_self();
    pthread_mutex_init(&s->lock, NULL);
    int rc = read_config(s, p);
    if (rc < 0) {
        sdk_free(s);
        return rc;
    }
    bool guard_only = rc == 1;
    if (!guard_only) {
        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
            rc = host->subscribe(p, routes[i].event, routes[i].fn, s);
            if (rc != SB_OK) {
                /* Passing the status on keeps the host's own message (which
                 * names the other plugin and the gateway). */
                sdk_free(s);
                return rc;
            }
        }
        host->on_handshake(p, on_handshake, s);
        host->on_connect(p, on_connect, s);
        host->on_disconnect(p, on_disconnect, s);
    }
    host->on_guard(p, on_guard, s);
    host->on_ready(p, on_ready, s);
    host->on_unload(p, on_unload, s);
    return SB_OK;
}

SB_PLUGIN_DEFINE("sdk11", "1.1.0", sdk_init);

/*
 * reloadable — a plugin built several times (BUILD="a", "b", "fail") to be
 * swapped under a running server by the reload tests.
 *
 *   ask   {data:N, id:N} → {"event":"ask","data":{"n":N,"build":B},"id":N}
 *   who                  → {"event":"who","data":{"build":B,"generation":G,
 *                           "count":C,"resumed":R}}
 *   count                → increments the instance counter (handed over
 *                           to the next version), answers it
 *   mine                 → increments this client's own counter, kept by
 *                           the host as client state (survives reloads)
 *   slow  {data:GATE, id} → work on the thread pool that waits until the
 *                           file GATE exists, then post()s; its completion
 *                           tries client_data_set/client_state_set and
 *                           answers {"event":"slow","data":{"build":B,
 *                           "post":RC,"data_set":RC,"state_set":RC}}; the
 *                           post answers {"event":"slow-post",...}. Made
 *                           to outlive a reload that retires this version.
 *
 * Also: a disconnect hook (and no connect hook) that logs "client N left
 * build B (CODE)"; `init_work_ms = N` queues N ms of work in init whose
 * completion logs "init work of build B: STATUS"; the "fail" build tries
 * client_data_set() on client 1 during its init (logged) before refusing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/plugin.h>

#ifndef BUILD
#error "BUILD must name the build"
#endif

typedef struct reloadable {
    const sb_host *host;
    json_int_t count;   /* handed over from version to version */
    json_int_t resumed; /* clients announced to this version */
} reloadable;

static int on_ask(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    json_t *d = r->host->message_data(m);
    return r->host->reply(
        m, "ask",
        json_pack("{s:O,s:s}", "n", d ? d : json_null(), "build", BUILD));
}

static int on_who(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    return r->host->reply(m, "who",
                          json_pack("{s:s,s:I,s:I,s:I}", "build", BUILD,
                                    "generation",
                                    (json_int_t)r->host->plugin_generation(p),
                                    "count", r->count, "resumed", r->resumed));
}

static int on_count(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    return r->host->reply(m, "count", json_integer(++r->count));
}

static int on_mine(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    sb_client_id c = r->host->message_client(m);
    json_t *old = r->host->client_state_get(p, c);
    json_int_t n = json_integer_value(old) + 1;
    r->host->client_state_set(p, c, json_integer(n));
    return r->host->reply(m, "mine", json_integer(n));
}

/* ---- slow work that outlives its version ---------------------------- */

typedef struct slow_job {
    const sb_host *host;
    sb_plugin *plugin;
    sb_client_id client;
    char *gate;  /* the file whose existence lets the work finish */
    char id[32]; /* the request's id as JSON text, or "" */
    int post_rc; /* what post() said, from the pool thread */
} slow_job;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void slow_posted(sb_plugin *p, void *ud)
{
    slow_job *j = ud;
    j->host->send(p, j->client, "slow-post",
                  json_pack("{s:s}", "build", BUILD));
    free(j->gate);
    free(j);
}

/* Pool thread: wait for the gate (at most a minute), then post. */
static void slow_run(void *ud)
{
    slow_job *j = ud;
    for (int waited = 0; waited < 60000 && access(j->gate, F_OK) != 0;
         waited += 10)
        sleep_ms(10);
    /* The post gets its own copy: the completion may run first. */
    slow_job *copy = malloc(sizeof(*copy));
    if (!copy) {
        j->post_rc = SB_ERR_NOMEM;
        return;
    }
    *copy = *j;
    copy->gate = strdup(j->gate);
    j->post_rc = j->host->post(j->plugin, slow_posted, copy);
    if (j->post_rc != SB_OK) {
        free(copy->gate);
        free(copy);
    }
}

static void slow_data_free(void *ptr)
{
    free(ptr);
}

static void slow_done(sb_plugin *p, int status, void *ud)
{
    slow_job *j = ud;
    const sb_host *h = j->host;
    int *mark = malloc(sizeof(*mark));
    int data_rc = h->client_data_set(p, j->client, mark, slow_data_free);
    if (data_rc != SB_OK)
        free(mark); /* not taken: still ours */
    int state_rc = h->client_state_set(p, j->client, json_string(BUILD));
    h->send_ack(p, j->client, "slow",
                json_pack("{s:s,s:i,s:i,s:i,s:i}", "build", BUILD, "status",
                          status, "post", j->post_rc, "data_set", data_rc,
                          "state_set", state_rc),
                j->id[0] ? j->id : NULL, strlen(j->id));
    free(j->gate);
    free(j);
}

static int on_slow(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    json_t *gate = r->host->message_data(m);
    if (!json_is_string(gate))
        return r->host->fail(m, "slow needs the gate file's path");
    slow_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->gate = strdup(json_string_value(gate)))) {
        free(j);
        return SB_ERR_NOMEM;
    }
    j->host = r->host;
    j->plugin = p;
    j->client = r->host->message_client(m);
    size_t idlen;
    const char *id = r->host->message_id_raw(m, &idlen);
    if (id && idlen < sizeof(j->id))
        memcpy(j->id, id, idlen);
    int rc = r->host->work_queue(p, slow_run, slow_done, j);
    if (rc != SB_OK) {
        free(j->gate);
        free(j);
        return r->host->fail(m, "work_queue: %s", r->host->strerror(rc));
    }
    r->host->log(p, SB_LOG_INFO, "slow work queued by build %s", BUILD);
    return SB_OK;
}

static void on_disconnect(sb_plugin *p, sb_client_id c, int code, void *ud)
{
    reloadable *r = ud;
    r->host->log(p, SB_LOG_INFO, "client %llu left build %s (%d)",
                 (unsigned long long)c, BUILD, code);
}

/* ---- work queued by init ---------------------------------------------- */

typedef struct init_work {
    const sb_host *host;
    long ms;
} init_work;

static void init_work_run(void *ud)
{
    sleep_ms(((init_work *)ud)->ms);
}

static void init_work_done(sb_plugin *p, int status, void *ud)
{
    init_work *w = ud;
    w->host->log(p, SB_LOG_INFO, "init work of build %s: %s", BUILD,
                 w->host->strerror(status));
    free(w);
}

static json_t *on_export(sb_plugin *p, void *ud)
{
    reloadable *r = ud;
    return json_pack("{s:I}", "count", r->count);
}

static void on_import(sb_plugin *p, json_t *state, void *ud)
{
    reloadable *r = ud;
    r->count = json_integer_value(json_object_get(state, "count"));
}

static void on_resume(sb_plugin *p, sb_client_id c, json_t *state, void *ud)
{
    reloadable *r = ud;
    r->resumed++;
}

static void on_unload(sb_plugin *p, void *ud)
{
    free(ud);
}

static void fail_data_free(void *ptr)
{
    (void)ptr;
}

static int reloadable_init(sb_plugin *p, const sb_host *host)
{
    if (BUILD[0] == 'f') {
        /* A pointer into this image, offered while the build is not (and
         * never will be) serving: the host must not keep it. */
        static int mark;
        int rc = host->client_data_set(p, 1, &mark, fail_data_free);
        host->log(p, SB_LOG_INFO, "build fail: client_data_set in init: %d",
                  rc);
        return host->plugin_error(p, "init refused on purpose (build %s)",
                                  BUILD);
    }
    int64_t init_ms = 0;
    int rc = host->config_int(p, "init_work_ms", 0, &init_ms);
    if (rc != SB_OK)
        return rc;
    reloadable *r = calloc(1, sizeof(*r));
    if (!r)
        return host->plugin_error(p, "out of memory");
    r->host = host;
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"ask", on_ask},
                  {"who", on_who},
                  {"count", on_count},
                  {"mine", on_mine},
                  {"slow", on_slow}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (host->subscribe(p, routes[i].event, routes[i].fn, r) != SB_OK) {
            free(r);
            return host->plugin_error(p, "cannot subscribe %s",
                                      routes[i].event);
        }
    host->on_export(p, on_export, r);
    host->on_import(p, on_import, r);
    host->on_resume(p, on_resume, r);
    host->on_unload(p, on_unload, r);
    host->on_disconnect(p, on_disconnect, r);
    if (init_ms > 0) {
        init_work *w = malloc(sizeof(*w));
        rc = w ? SB_OK : SB_ERR_NOMEM;
        if (w) {
            *w = (init_work){host, (long)init_ms};
            rc = host->work_queue(p, init_work_run, init_work_done, w);
        }
        if (rc != SB_OK) {
            free(w);
            free(r);
            return host->plugin_error(p, "work_queue: %s", host->strerror(rc));
        }
    }
    return SB_OK;
}

SB_PLUGIN_DEFINE("reloadable", "build-" BUILD, reloadable_init);

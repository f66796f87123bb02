/*
 * timing — a test plugin that sends from callbacks outside the poll phase
 * of the loop (timers, post() from a thread, work completions) and stamps
 * each message with the moment its callback ran, so that a test can tell
 * how long the message waited in the server before reaching the socket.
 *
 * The stamp is CLOCK_MONOTONIC in ms (a real), which every process of the
 * machine shares, so the test client compares it with its own clock.
 *
 * Config: interval_ms (default 800): the repeating timer's interval, long
 * on purpose so that a send left waiting for the loop's next wake-up shows.
 *
 * Events (each message sent is {"event":E,"data":{"t":<ms>,"n":N}}):
 *   tick {"count":K}   a repeating timer of interval_ms sends "tick" K times
 *                      to the sender, then stops
 *   once               a one-shot timer of interval_ms sends "once"
 *   post {"delay_ms"}  a thread of the plugin's own sleeps, then post()s;
 *                      the post callback sends "posted"
 *   work {"delay_ms"}  work that sleeps on the thread pool; its completion
 *                      sends "worked"
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <switchboard/plugin.h>

#define MAX_THREADS 16

typedef struct timing {
    const sb_host *host;
    int64_t interval_ms;
    pthread_t threads[MAX_THREADS]; /* joined at unload */
    int nthreads;
} timing;

/* One timer, post or work item: who gets the message and what it is. */
typedef struct job {
    timing *t;
    sb_plugin *plugin;
    sb_client_id client;
    const char *event;
    long delay_ms;
    int count, sent;
} job;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void stamp_send(job *j)
{
    j->sent++;
    j->t->host->send(j->plugin, j->client, j->event,
                     json_pack("{s:f,s:i}", "t", mono_ms(), "n", j->sent));
}

static job *job_new(timing *t, sb_plugin *p, sb_message *m, const char *event)
{
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->t = t;
    j->plugin = p;
    j->client = t->host->message_client(m);
    j->event = event;
    json_t *d = t->host->message_data(m);
    j->count = (int)json_integer_value(json_object_get(d, "count"));
    j->delay_ms = (long)json_integer_value(json_object_get(d, "delay_ms"));
    return j;
}

/* ---- timers ---- */

static void on_tick(sb_plugin *p, uint64_t timer, void *ud)
{
    job *j = ud;
    stamp_send(j);
    if (j->sent >= j->count) {
        j->t->host->timer_stop(p, timer);
        free(j);
    }
}

static int on_tick_event(sb_plugin *p, sb_message *m, void *ud)
{
    timing *t = ud;
    job *j = job_new(t, p, m, "tick");
    if (!j)
        return t->host->fail(m, "out of memory");
    if (j->count <= 0)
        j->count = 1;
    uint64_t id;
    int rc = t->host->timer_start(p, (uint64_t)t->interval_ms,
                                  (uint64_t)t->interval_ms, on_tick, j, &id);
    if (rc != SB_OK) {
        free(j);
        return t->host->fail(m, "timer_start: %s", t->host->strerror(rc));
    }
    return SB_OK;
}

static void on_once(sb_plugin *p, uint64_t timer, void *ud)
{
    stamp_send(ud);
    free(ud);
}

static int on_once_event(sb_plugin *p, sb_message *m, void *ud)
{
    timing *t = ud;
    job *j = job_new(t, p, m, "once");
    if (!j)
        return t->host->fail(m, "out of memory");
    int rc =
        t->host->timer_start(p, (uint64_t)t->interval_ms, 0, on_once, j, NULL);
    if (rc != SB_OK) {
        free(j);
        return t->host->fail(m, "timer_start: %s", t->host->strerror(rc));
    }
    return SB_OK;
}

/* ---- post() from a thread ---- */

static void on_posted(sb_plugin *p, void *ud)
{
    stamp_send(ud);
    free(ud);
}

static void *post_thread(void *arg)
{
    job *j = arg;
    sleep_ms(j->delay_ms);
    if (j->t->host->post(j->plugin, on_posted, j) != SB_OK)
        free(j); /* the plugin is going away */
    return NULL;
}

static int on_post_event(sb_plugin *p, sb_message *m, void *ud)
{
    timing *t = ud;
    if (t->nthreads == MAX_THREADS)
        return t->host->fail(m, "too many threads");
    job *j = job_new(t, p, m, "posted");
    if (!j)
        return t->host->fail(m, "out of memory");
    if (pthread_create(&t->threads[t->nthreads], NULL, post_thread, j) != 0) {
        free(j);
        return t->host->fail(m, "pthread_create failed");
    }
    t->nthreads++;
    return SB_OK;
}

/* ---- work ---- */

static void work_sleep(void *ud)
{
    job *j = ud;
    sleep_ms(j->delay_ms);
}

static void work_done(sb_plugin *p, int status, void *ud)
{
    if (status == SB_OK)
        stamp_send(ud);
    free(ud);
}

static int on_work_event(sb_plugin *p, sb_message *m, void *ud)
{
    timing *t = ud;
    job *j = job_new(t, p, m, "worked");
    if (!j)
        return t->host->fail(m, "out of memory");
    int rc = t->host->work_queue(p, work_sleep, work_done, j);
    if (rc != SB_OK) {
        free(j);
        return t->host->fail(m, "work_queue: %s", t->host->strerror(rc));
    }
    return SB_OK;
}

static void on_unload(sb_plugin *p, void *ud)
{
    timing *t = ud;
    /* Every thread has posted (or been refused) by now or does so soon:
     * none may outlive the plugin's code. */
    for (int i = 0; i < t->nthreads; i++)
        pthread_join(t->threads[i], NULL);
    free(t);
}

static int timing_init(sb_plugin *p, const sb_host *host)
{
    timing *t = calloc(1, sizeof(*t));
    if (!t)
        return host->plugin_error(p, "out of memory");
    t->host = host;
    int rc = host->config_int(p, "interval_ms", 800, &t->interval_ms);
    if (rc != SB_OK) {
        free(t);
        return rc;
    }
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"tick", on_tick_event},
                  {"once", on_once_event},
                  {"post", on_post_event},
                  {"work", on_work_event}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        rc = host->subscribe(p, routes[i].event, routes[i].fn, t);
        if (rc != SB_OK) {
            free(t);
            return rc;
        }
    }
    host->on_unload(p, on_unload, t);
    return SB_OK;
}

SB_PLUGIN_DEFINE("timing", "1.0.0", timing_init);

/*
 * async — see async.h.
 *
 * Timers: one uv_timer_t per plugin timer, freed in its close callback. A
 * timer stopped from inside its own callback is only marked, and closed
 * once the callback returns, so the callback never runs on freed memory.
 *
 * Work: uv_queue_work() on libuv's thread pool; the completion runs on the
 * loop thread and calls the plugin's done callback with SB_OK or, when
 * uv_cancel() caught it still queued, SB_ERR_CANCELLED.
 *
 * Posts: a mutex-protected list and one uv_async_t per host; libuv
 * coalesces wake-ups, so the callback drains the whole list each time.
 *
 * Retiring a plugin (replaced, removed, or at shutdown) is two steps. At
 * once: no new timers or work, timers stopped, queued work cancelled. Then,
 * when its last running work has completed (the SDK promises that running
 * work is waited for, so its post() calls are still taken meanwhile): its
 * post queue is closed, what it posted runs, and the plugin is finalized.
 * Between the two it sits on the host's retiring list, which the host's
 * teardown waits on before it destroys the post lock.
 */
#include "async.h"

#include <stdlib.h>

#include "crash.h"
#include "log.h"

typedef struct sb_timer {
    uv_timer_t handle;
    uint64_t id;
    sb_plugin *plugin;
    sb_timer_fn fn;
    void *udata;
    bool repeating;
    bool firing;  /* inside fn */
    bool stopped; /* timer_stop() was called */
    struct sb_timer *prev, *next;
} sb_timer;

typedef struct sb_work {
    uv_work_t req;
    sb_plugin *plugin;
    sb_work_fn work;
    sb_done_fn done;
    void *udata;
    struct sb_work *prev, *next;
} sb_work;

typedef struct sb_post {
    sb_plugin *plugin;
    sb_post_fn fn;
    void *udata;
    struct sb_post *next;
} sb_post;

static void run_posts(sb_plugin_host *h, const sb_plugin *only);

/* ---- timers ---------------------------------------------------------------
 */

static void timer_unlink(sb_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->plugin->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void timer_free(uv_handle_t *h)
{
    free(h->data);
}

static void timer_close(sb_timer *t)
{
    timer_unlink(t);
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, timer_free);
}

static void on_timer(uv_timer_t *h)
{
    sb_timer *t = h->data;
    t->firing = true;
    sb_crash_enter(t->plugin->name, "timer callback", NULL);
    t->fn(t->plugin, t->id, t->udata);
    sb_crash_leave();
    t->firing = false;
    if (t->stopped || !t->repeating)
        timer_close(t);
}

int sb_api_timer_start(sb_plugin *p, uint64_t delay_ms, uint64_t repeat_ms,
                       sb_timer_fn fn, void *udata, uint64_t *timer)
{
    if (!p || !fn)
        return SB_ERR_INVALID;
    if (p->unloading)
        return SB_ERR_STATE;
    sb_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return SB_ERR_NOMEM;
    t->id = ++p->next_timer_id;
    t->plugin = p;
    t->fn = fn;
    t->udata = udata;
    t->repeating = repeat_ms != 0;
    uv_timer_init(p->host->loop, &t->handle);
    t->handle.data = t;
    uv_timer_start(&t->handle, on_timer, delay_ms, repeat_ms);
    /* A plugin's timer never keeps a stopping server alive. */
    uv_unref((uv_handle_t *)&t->handle);
    t->next = p->timers;
    if (p->timers)
        p->timers->prev = t;
    p->timers = t;
    if (timer)
        *timer = t->id;
    return SB_OK;
}

int sb_api_timer_stop(sb_plugin *p, uint64_t timer)
{
    if (!p)
        return SB_ERR_INVALID;
    for (sb_timer *t = p->timers; t; t = t->next) {
        if (t->id != timer || t->stopped)
            continue;
        t->stopped = true;
        if (t->firing)
            uv_timer_stop(&t->handle); /* closed when the callback returns */
        else
            timer_close(t);
        return SB_OK;
    }
    return SB_ERR_NOT_FOUND;
}

/* ---- work -----------------------------------------------------------------
 */

static void work_run(uv_work_t *req)
{
    sb_work *w = req->data;
    sb_crash_enter(w->plugin->name, "work function", NULL);
    w->work(w->udata);
    sb_crash_leave();
}

static void retiring_unlink(sb_plugin *p)
{
    sb_plugin **at = &p->host->retiring;
    while (*at && *at != p)
        at = &(*at)->retiring_next;
    if (*at)
        *at = p->retiring_next;
    p->retiring_next = NULL;
}

/* No work of p runs any more: close its post queue (under the lock, so a
 * thread posting now either gets in before or is refused), run what it
 * posted, and let it go. */
static void drain(sb_plugin *p, void (*finalize)(sb_plugin *p))
{
    sb_plugin_host *h = p->host;
    uv_mutex_lock(&h->post_lock);
    p->posts_closed = true;
    uv_mutex_unlock(&h->post_lock);
    run_posts(h, p);
    finalize(p);
}

static void work_after(uv_work_t *req, int status)
{
    sb_work *w = req->data;
    sb_plugin *p = w->plugin;
    if (w->prev)
        w->prev->next = w->next;
    else
        p->work = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (w->done) {
        sb_crash_enter(p->name, "work completion", NULL);
        w->done(p, status == UV_ECANCELED ? SB_ERR_CANCELLED : SB_OK, w->udata);
        sb_crash_leave();
    }
    free(w);
    p->host->work_pending--;
    /* The last completion of a plugin being retired lets it go. */
    if (p->unloading && !p->work && p->on_drained) {
        void (*finalize)(sb_plugin *) = p->on_drained;
        p->on_drained = NULL;
        retiring_unlink(p);
        drain(p, finalize);
    }
}

int sb_api_work_queue(sb_plugin *p, sb_work_fn work, sb_done_fn done,
                      void *udata)
{
    if (!p || !work)
        return SB_ERR_INVALID;
    if (p->unloading)
        return SB_ERR_STATE;
    sb_work *w = calloc(1, sizeof(*w));
    if (!w)
        return SB_ERR_NOMEM;
    w->plugin = p;
    w->work = work;
    w->done = done;
    w->udata = udata;
    w->req.data = w;
    if (uv_queue_work(p->host->loop, &w->req, work_run, work_after) != 0) {
        free(w);
        return SB_ERR_STATE;
    }
    w->next = p->work;
    if (p->work)
        p->work->prev = w;
    p->work = w;
    p->host->work_pending++;
    return SB_OK;
}

/* ---- posts ----------------------------------------------------------------
 */

/* Runs the posts taken off the queue; those of `only` (if not NULL) are
 * run and the others put back, for draining one plugin at unload. */
static void run_posts(sb_plugin_host *h, const sb_plugin *only)
{
    uv_mutex_lock(&h->post_lock);
    sb_post *list = h->posts;
    h->posts = h->posts_tail = NULL;
    uv_mutex_unlock(&h->post_lock);
    sb_post *keep = NULL, **keep_tail = &keep;
    while (list) {
        sb_post *next = list->next;
        if (only && list->plugin != only) {
            list->next = NULL;
            *keep_tail = list;
            keep_tail = &list->next;
        } else {
            sb_crash_enter(list->plugin->name, "post callback", NULL);
            list->fn(list->plugin, list->udata);
            sb_crash_leave();
            free(list);
        }
        list = next;
    }
    if (keep) {
        /* Put the others back in front, keeping their order. */
        sb_post *last = keep;
        while (last->next)
            last = last->next;
        uv_mutex_lock(&h->post_lock);
        last->next = h->posts;
        if (!h->posts)
            h->posts_tail = last;
        h->posts = keep;
        uv_mutex_unlock(&h->post_lock);
    }
}

static void on_post(uv_async_t *a)
{
    run_posts(a->data, NULL);
}

int sb_api_post(sb_plugin *p, sb_post_fn fn, void *udata)
{
    if (!p || !fn)
        return SB_ERR_INVALID;
    sb_post *post = malloc(sizeof(*post));
    if (!post)
        return SB_ERR_NOMEM;
    *post = (sb_post){p, fn, udata, NULL};
    sb_plugin_host *h = p->host;
    uv_mutex_lock(&h->post_lock);
    /* A retiring plugin takes posts as long as work of it runs (the work
     * itself may post its result); once drained, none: they would run
     * after its unload hook, on freed state. (Read under the lock: set on
     * the loop.) */
    if (h->post_closed || p->posts_closed) {
        uv_mutex_unlock(&h->post_lock);
        free(post);
        return SB_ERR_STATE;
    }
    if (h->posts_tail)
        h->posts_tail->next = post;
    else
        h->posts = post;
    h->posts_tail = post;
    uv_mutex_unlock(&h->post_lock);
    uv_async_send(&h->post_async);
    return SB_OK;
}

int sb_async_init(sb_plugin_host *h)
{
    if (uv_mutex_init(&h->post_lock) != 0)
        return -1;
    if (uv_async_init(h->loop, &h->post_async, on_post) != 0) {
        uv_mutex_destroy(&h->post_lock);
        return -1;
    }
    h->post_async.data = h;
    uv_unref((uv_handle_t *)&h->post_async);
    return 0;
}

void sb_async_close(sb_plugin_host *h)
{
    uv_mutex_lock(&h->post_lock);
    h->post_closed = true;
    uv_mutex_unlock(&h->post_lock);
    run_posts(h, NULL);
    uv_close((uv_handle_t *)&h->post_async, NULL);
    uv_mutex_destroy(&h->post_lock);
}

void sb_async_retire(sb_plugin *p, void (*finalize)(sb_plugin *p))
{
    p->unloading = true;
    while (p->timers)
        timer_close(p->timers);
    for (sb_work *w = p->work; w; w = w->next)
        uv_cancel((uv_req_t *)&w->req);
    if (p->work) {
        /* Running work cannot be stopped: its completion finishes the
         * job (work_after). Cancelled work completes the same way. */
        p->on_drained = finalize;
        p->retiring_next = p->host->retiring;
        p->host->retiring = p;
        return;
    }
    drain(p, finalize);
}

size_t sb_async_pending(const sb_plugin_host *h)
{
    return h ? h->work_pending : 0;
}

/*
 * reload — see reload.h.
 *
 * A reload is planned before anything is touched: the new config is parsed
 * and compared with the running one. Then, in one loop callback:
 *   1. removed plugins are taken out (their events become unknown);
 *   2. each changed plugin's new build is loaded under a private image and
 *      its init run with its routes only staged — on failure the old
 *      version goes on serving; on success the two are swapped, the old
 *      version's exported state is handed to the new one, every connected
 *      client is announced to it (resume hook), and the old version is
 *      retired (unloaded once none of its work is running);
 *   3. added plugins are loaded and told about connected clients.
 * Server settings that cannot change in a running process are reported and
 * left as they were.
 *
 * File watches: one uv_fs_event per folder holding a watched plugin file
 * (watching the folder sees a file replaced by rename, which is how builds
 * and installers write). An event starts a settle timer; the file is taken
 * only once its size and mtime stayed the same for a whole settle period,
 * so a half-copied .so is never loaded.
 */
#include "reload.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "crash.h"
#include "host_api.h"
#include "log.h"
#include "plugin_host.h"

#define SETTLE_MS 300

typedef struct sb_watch {
    uv_fs_event_t handle;
    struct sb_reloader *r;
    char *dir;
    struct sb_watch *next;
} sb_watch;

/* A plugin file being watched: its instance name and where it is. */
typedef struct sb_watched {
    char *name;
    char *dir, *base;
    uv_timer_t settle;
    struct sb_reloader *r;
    bool seen; /* last_size/last_mtime hold an observation */
    uint64_t last_size;
    int64_t last_mtime_s, last_mtime_ns;
    struct sb_watched *next;
} sb_watched;

typedef struct sb_reloader {
    sb_server *s;
    sb_config *current; /* the latest config applied (NULL: s->config) */
    sb_watch *watches;
    sb_watched *watched;
} sb_reloader;

static const sb_config *config_now(const sb_reloader *r)
{
    return r->current ? r->current : r->s->config;
}

/* ---- the plan -------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Appends to `out` the keys of a [gateway.NAME] section whose change needs
 * a restart, each as "[gateway.NAME] key". Every per-gateway key is one:
 * the listeners, the lws retry policy (ping_interval), the limits and the
 * TLS context are all made at start, and clients read their gateway's
 * settings from the running config (as for [server]). */
static void gateway_restart_needed(const char *name, const sb_server_conf *a,
                                   const sb_server_conf *b, json_t *out)
{
#define GW_NOTE(key)                                                           \
    json_array_append_new(out, json_sprintf("[gateway.%s] %s", name, key))
#define GW_CMP(field)                                                          \
    if (a->field != b->field)                                                  \
        GW_NOTE(#field);
#define GW_CMPS(field)                                                         \
    if (!str_eq(a->field, b->field))                                           \
        GW_NOTE(#field);
    GW_CMPS(host)
    GW_CMP(port)
    GW_CMPS(path)
    GW_CMP(max_message_size)
    GW_CMP(max_json_depth)
    GW_CMP(max_send_queue)
    GW_CMP(ping_interval)
    GW_CMP(idle_timeout)
    GW_CMP(max_connections)
    GW_CMP(unknown_event)
    GW_CMP(max_connections_per_ip)
    GW_CMP(rate_limit)
    GW_CMP(rate_burst)
    GW_CMPS(allowed_origins)
    GW_CMPS(tls_cert)
    GW_CMPS(tls_key)
    if (!str_eq(a->static_dir, b->static_dir))
        GW_NOTE("static");
#undef GW_CMP
#undef GW_CMPS
#undef GW_NOTE
}

/* Appends to `out` the [server]/[gateway] settings whose change needs a
 * restart. */
static void restart_needed(const sb_config *old, const sb_config *nw,
                           json_t *out)
{
    const sb_server_conf *a = &old->server, *b = &nw->server;
#define CMP(field, name)                                                       \
    if (a->field != b->field)                                                  \
        json_array_append_new(out, json_string(name));
#define CMPS(field, name)                                                      \
    if (!str_eq(a->field, b->field))                                           \
        json_array_append_new(out, json_string(name));
    CMPS(host, "host")
    CMP(port, "port")
    CMPS(path, "path")
    CMP(max_message_size, "max_message_size")
    CMP(max_json_depth, "max_json_depth")
    CMP(max_send_queue, "max_send_queue")
    CMP(ping_interval, "ping_interval")
    CMP(idle_timeout, "idle_timeout")
    CMP(max_connections, "max_connections")
    CMP(unknown_event, "unknown_event")
    CMP(log_level, "log_level")
    CMP(shutdown_timeout, "shutdown_timeout")
    CMP(max_connections_per_ip, "max_connections_per_ip")
    CMP(rate_limit, "rate_limit")
    CMP(rate_burst, "rate_burst")
    CMPS(allowed_origins, "allowed_origins")
    CMPS(tls_cert, "tls_cert")
    CMPS(tls_key, "tls_key")
    CMPS(static_dir, "static")
    CMP(rx_buffer_size, "rx_buffer_size")
    CMP(handshake_timeout, "handshake_timeout")
    CMP(strict_plugin_files, "strict_plugin_files")
    CMP(watch, "watch")
    CMP(send_queue_budget, "send_queue_budget")
    CMP(workers, "workers")
#undef CMP
#undef CMPS
    /* Gateways added, removed or renamed: named as a whole. Otherwise each
     * changed key of each gateway (a gateway's unset keys come from
     * [server], so a [server] change may be named for it too). */
    bool same = old->ngateways == nw->ngateways;
    for (size_t g = 1; same && g < old->ngateways; g++)
        same = str_eq(old->gateways[g].name, nw->gateways[g].name);
    if (!same) {
        json_array_append_new(out, json_string("[gateway.*]"));
        return;
    }
    for (size_t g = 1; g < old->ngateways; g++)
        gateway_restart_needed(old->gateways[g].name, &old->gateways[g].conf,
                               &nw->gateways[g].conf, out);
}

static const sb_plugin_conf *find_conf(const sb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (cfg->plugins[i].enabled && strcmp(cfg->plugins[i].name, name) == 0)
            return &cfg->plugins[i];
    return NULL;
}

static sb_plugin *find_plugin(sb_plugin_host *h, const char *name)
{
    for (size_t i = 0; i < h->count; i++)
        if (strcmp(h->plugins[i]->name, name) == 0)
            return h->plugins[i];
    return NULL;
}

/* The gateways a section names, as a mask over the running gateways;
 * false when it names one the running server does not have. */
static bool gateway_mask(const sb_config *running, const sb_config *cfg,
                         const sb_plugin_conf *pc, uint64_t *mask, char *err,
                         size_t errlen)
{
    *mask = 0;
    for (size_t i = 0; i < pc->ngateways; i++) {
        const char *name = cfg->gateways[pc->gateways[i]].name;
        size_t g = 0;
        while (g < running->ngateways &&
               strcmp(running->gateways[g].name, name) != 0)
            g++;
        if (g == running->ngateways) {
            snprintf(err, errlen,
                     "gateway '%s' is not running (adding a gateway needs a "
                     "restart)",
                     name);
            return false;
        }
        *mask |= UINT64_C(1) << g;
    }
    return true;
}

static bool file_changed(const sb_plugin *p, const char *file)
{
    struct stat st;
    if (strcmp(p->file, file) != 0 || stat(file, &st) < 0)
        return true;
    return p->file_id.dev != (uint64_t)st.st_dev ||
           p->file_id.ino != (uint64_t)st.st_ino ||
           p->file_id.size != (uint64_t)st.st_size ||
           p->file_id.mtime_s != st.st_mtim.tv_sec ||
           p->file_id.mtime_ns != st.st_mtim.tv_nsec;
}

static bool section_changed(const sb_plugin *p, const sb_plugin_conf *pc,
                            uint64_t mask)
{
    if (p->gateways != mask || p->nkeys != pc->nkeys)
        return true;
    for (size_t i = 0; i < pc->nkeys; i++) {
        const char *old = NULL;
        for (size_t k = 0; k < p->nkeys; k++)
            if (strcmp(p->keys[k].key, pc->keys[i].key) == 0)
                old = p->keys[k].value;
        if (!str_eq(old, pc->keys[i].value))
            return true;
    }
    return false;
}

/* ---- doing it -------------------------------------------------------- */

/* Tells a version that starts serving (a reload's new build, an added
 * plugin) about every connected client, and records that it knows them:
 * their disconnects reach it. A client already closing is not announced,
 * and so not its disconnect either (the version it replaced knew it, not
 * this one). */
static void announce_clients(sb_server *s, sb_plugin *p)
{
    for (sb_client *c = s->clients; c; c = c->next) {
        bool told =
            !c->closing && c->accepted && sb_plugin_serves(p, c->gateway);
        sb_slot_set_put(&c->seen, p->slot, told);
        if (!told)
            continue;
        json_t *state = p->slot < c->nslots ? c->slots[p->slot].state : NULL;
        if (p->resume) {
            sb_crash_enter(p->name, "resume hook", NULL);
            p->resume(p, c->id, state, p->resume_ud);
            sb_crash_leave();
        } else if (p->connect) {
            /* A plugin without a resume hook learns of the client as of a
             * new one; it cannot refuse it any more. */
            sb_crash_enter(p->name, "connect hook", NULL);
            p->connect(p, c->id, p->connect_ud);
            sb_crash_leave();
        }
    }
    if (p->ready) {
        sb_crash_enter(p->name, "ready hook", NULL);
        p->ready(p, p->ready_ud);
        sb_crash_leave();
    }
}

/* A copy of pc with the gateway indexes of the running server. */
static sb_plugin_conf conf_for_running(const sb_plugin_conf *pc, uint64_t mask,
                                       size_t *gws)
{
    sb_plugin_conf out = *pc;
    out.gateways = gws;
    out.ngateways = 0;
    for (size_t g = 0; g < 64; g++)
        if (mask & (UINT64_C(1) << g))
            gws[out.ngateways++] = g;
    return out;
}

static void note_failure(json_t *failed, const char *name, const char *err)
{
    sb_log_error("reload", "plugin '%s': %s; the running version stays", name,
                 err);
    json_array_append_new(failed,
                          json_pack("{s:s,s:s}", "plugin", name, "error", err));
}

/* Replaces `old` by a new build from pc. Returns the swap time in µs, or
 * -1 after logging why it failed (old keeps serving). */
static long replace_plugin(sb_server *s, sb_plugin *old,
                           const sb_plugin_conf *pc, char *err, size_t errlen)
{
    sb_plugin_host *h = s->plugins;
    sb_plugin *np = sb_plugin_host_open(h, pc, old, err, errlen);
    if (!np)
        return -1;
    uint64_t t0 = uv_hrtime();
    json_t *state = NULL;
    if (old->export_state) {
        sb_crash_enter(old->name, "export hook", NULL);
        state = old->export_state(old, old->export_state_ud);
        sb_crash_leave();
    }
    if (sb_plugin_host_swap(h, old, np) < 0) {
        json_decref(state);
        snprintf(err, errlen, "out of memory swapping the versions");
        sb_plugin_retire(np);
        return -1;
    }
    /* The old version's per-client pointers go now, while its destructors
     * are certainly mapped and before the new version can set its own in
     * the same slot; the JSON state stays for the new version. */
    if (h->release_clients)
        h->release_clients(old, true);
    old->released = true;
    if (np->import_state) {
        sb_crash_enter(np->name, "import hook", NULL);
        np->import_state(np, state, np->import_state_ud);
        sb_crash_leave();
    }
    json_decref(state);
    announce_clients(s, np);
    long us = (long)((uv_hrtime() - t0) / 1000);
    sb_plugin_retire(old);
    sb_log_info("reload", "plugin '%s' now at generation %llu (%s)", np->name,
                (unsigned long long)np->generation, np->desc->version);
    return us;
}

static void watches_rebuild(sb_reloader *r);

int sb_reload_run(sb_server *s, json_t **summary)
{
    sb_reloader *r = s->reloader;
    uint64_t started = uv_hrtime();
    json_t *added = json_array(), *changed = json_array(),
           *removed = json_array(), *failed = json_array(),
           *restart = json_array();
    long longest_swap = 0;
    int failures = 0;

    sb_config *nw = calloc(1, sizeof(*nw));
    if (!nw || sb_config_load(nw, s->config->file) != 0) {
        for (size_t i = 0; nw && i < nw->nerrors; i++) {
            sb_log_error("reload", "%s", nw->errors[i]);
            json_array_append_new(failed, json_pack("{s:s,s:s}", "plugin", "",
                                                    "error", nw->errors[i]));
        }
        if (!nw)
            note_failure(failed, "", "out of memory");
        sb_config_free(nw);
        free(nw);
        failures = 1;
        s->stats.reloads_failed++;
        sb_log_error("reload", "the new config does not load; nothing "
                               "changed");
        goto done;
    }
    restart_needed(s->config, nw, restart);
    if (json_array_size(restart)) {
        char keys[2048] = "";
        size_t i;
        json_t *k;
        json_array_foreach(restart, i, k)
        {
            size_t n = strlen(keys);
            snprintf(keys + n, sizeof(keys) - n, "%s%s", i ? ", " : "",
                     json_string_value(k));
        }
        sb_log_warn("reload",
                    "changed settings need a restart and keep "
                    "their running values: %s",
                    keys);
    }

    sb_plugin_host *h = s->plugins;
    /* 1. removed (or disabled) */
    for (size_t i = h->count; i-- > 0;) {
        sb_plugin *p = h->plugins[i];
        if (find_conf(nw, p->name))
            continue;
        json_array_append_new(removed, json_string(p->name));
        sb_log_info("reload", "plugin '%s' removed from the config", p->name);
        sb_plugin_host_remove(h, p);
        s->stats.reloads_ok++;
    }
    /* 2. changed, 3. added — in config order */
    for (size_t i = 0; i < nw->nplugins; i++) {
        const sb_plugin_conf *pc = &nw->plugins[i];
        if (!pc->enabled)
            continue;
        char err[1024] = "";
        uint64_t mask;
        size_t gws[64];
        if (!gateway_mask(s->config, nw, pc, &mask, err, sizeof(err))) {
            note_failure(failed, pc->name, err);
            failures++;
            s->stats.reloads_failed++;
            continue;
        }
        sb_plugin_conf run = conf_for_running(pc, mask, gws);
        sb_plugin *old = find_plugin(h, pc->name);
        if (old) {
            if (!file_changed(old, pc->file) && !section_changed(old, pc, mask))
                continue;
            long us = replace_plugin(s, old, &run, err, sizeof(err));
            if (us < 0) {
                note_failure(failed, pc->name, err);
                failures++;
                s->stats.reloads_failed++;
                continue;
            }
            if (us > longest_swap)
                longest_swap = us;
            json_array_append_new(changed, json_string(pc->name));
            s->stats.reloads_ok++;
        } else {
            sb_plugin *np =
                sb_plugin_host_open(h, &run, NULL, err, sizeof(err));
            if (np && sb_plugin_host_add(h, np) < 0) {
                snprintf(err, sizeof(err), "out of memory");
                sb_plugin_retire(np);
                np = NULL;
            }
            if (!np) {
                note_failure(failed, pc->name, err);
                failures++;
                s->stats.reloads_failed++;
                continue;
            }
            announce_clients(s, np);
            json_array_append_new(added, json_string(pc->name));
            s->stats.reloads_ok++;
        }
    }
    if (r) {
        if (r->current)
            sb_config_free(r->current);
        free(r->current);
        r->current = nw;
        watches_rebuild(r);
    } else {
        sb_config_free(nw);
        free(nw);
    }

    /* Every reload is counted, also one that had nothing to do. */
    if (!failures && !json_array_size(added) && !json_array_size(changed) &&
        !json_array_size(removed))
        s->stats.reloads_unchanged++;

done:;
    double ms = (double)(uv_hrtime() - started) / 1e6;
    sb_log_info("reload",
                "%zu added, %zu changed, %zu removed, %d failed; longest "
                "swap %ld µs; %.1f ms in all",
                json_array_size(added), json_array_size(changed),
                json_array_size(removed), failures, longest_swap, ms);
    if (summary)
        *summary = json_pack("{s:b,s:o,s:o,s:o,s:o,s:o,s:I,s:f}", "ok",
                             failures == 0, "added", added, "changed", changed,
                             "removed", removed, "failed", failed,
                             "restart_needed", restart, "longest_swap_us",
                             (json_int_t)longest_swap, "duration_ms", ms);
    else {
        json_decref(added);
        json_decref(changed);
        json_decref(removed);
        json_decref(failed);
        json_decref(restart);
    }
    return failures;
}

/* ---- one plugin, from its file watch ---------------------------------- */

static void reload_one(sb_reloader *r, const char *name)
{
    sb_server *s = r->s;
    sb_plugin *old = find_plugin(s->plugins, name);
    const sb_config *cfg = config_now(r);
    const sb_plugin_conf *pc = find_conf(cfg, name);
    if (!old || !pc || !file_changed(old, pc->file)) {
        s->stats.reloads_unchanged++;
        return;
    }
    char err[1024] = "";
    uint64_t mask;
    size_t gws[64];
    long us = -1;
    if (gateway_mask(s->config, cfg, pc, &mask, err, sizeof(err))) {
        sb_plugin_conf run = conf_for_running(pc, mask, gws);
        us = replace_plugin(s, old, &run, err, sizeof(err));
    }
    if (us < 0) {
        sb_log_error("reload", "plugin '%s': %s; the running version stays",
                     name, err);
        s->stats.reloads_failed++;
        return;
    }
    s->stats.reloads_ok++;
    sb_log_info("reload",
                "plugin '%s' replaced after its file changed; "
                "swap %ld µs",
                name, us);
}

static void on_settle(uv_timer_t *t)
{
    sb_watched *w = t->data;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", w->dir, w->base);
    struct stat st;
    if (stat(path, &st) < 0) {
        w->seen = false; /* gone (mid-rename?): wait for the next event */
        return;
    }
    bool same = w->seen && w->last_size == (uint64_t)st.st_size &&
                w->last_mtime_s == st.st_mtim.tv_sec &&
                w->last_mtime_ns == st.st_mtim.tv_nsec;
    w->seen = true;
    w->last_size = (uint64_t)st.st_size;
    w->last_mtime_s = st.st_mtim.tv_sec;
    w->last_mtime_ns = st.st_mtim.tv_nsec;
    if (!same) {
        /* Still being written: look again a settle period later. */
        uv_timer_start(&w->settle, on_settle, SETTLE_MS, 0);
        return;
    }
    w->seen = false;
    reload_one(w->r, w->name);
}

static void on_fs_event(uv_fs_event_t *handle, const char *filename, int events,
                        int status)
{
    sb_watch *watch = handle->data;
    if (status < 0 || !filename)
        return;
    for (sb_watched *w = watch->r->watched; w; w = w->next)
        if (strcmp(w->dir, watch->dir) == 0 && strcmp(w->base, filename) == 0)
            uv_timer_start(&w->settle, on_settle, SETTLE_MS, 0);
}

static void free_watch(uv_handle_t *h)
{
    sb_watch *w = h->data;
    free(w->dir);
    free(w);
}

static void free_watched(uv_handle_t *h)
{
    sb_watched *w = h->data;
    free(w->name);
    free(w->dir);
    free(w->base);
    free(w);
}

static void watches_clear(sb_reloader *r)
{
    while (r->watches) {
        sb_watch *w = r->watches;
        r->watches = w->next;
        uv_fs_event_stop(&w->handle);
        uv_close((uv_handle_t *)&w->handle, free_watch);
    }
    while (r->watched) {
        sb_watched *w = r->watched;
        r->watched = w->next;
        uv_timer_stop(&w->settle);
        uv_close((uv_handle_t *)&w->settle, free_watched);
    }
}

static bool wants_watch(const sb_config *cfg, const sb_plugin_conf *pc)
{
    const char *v = sb_plugin_conf_get(pc, "watch");
    bool on;
    return v ? sb_config_parse_bool(v, &on) && on : cfg->server.watch;
}

static void watches_rebuild(sb_reloader *r)
{
    watches_clear(r);
    const sb_config *cfg = config_now(r);
    uv_loop_t *loop = r->s->loop;
    for (size_t i = 0; i < cfg->nplugins; i++) {
        const sb_plugin_conf *pc = &cfg->plugins[i];
        if (!pc->enabled || !pc->file || !wants_watch(cfg, pc))
            continue;
        char *copy1 = strdup(pc->file), *copy2 = strdup(pc->file);
        sb_watched *w = calloc(1, sizeof(*w));
        if (!copy1 || !copy2 || !w) {
            free(copy1);
            free(copy2);
            free(w);
            continue;
        }
        w->name = strdup(pc->name);
        w->dir = strdup(dirname(copy1));
        w->base = strdup(basename(copy2));
        free(copy1);
        free(copy2);
        w->r = r;
        uv_timer_init(loop, &w->settle);
        w->settle.data = w;
        uv_unref((uv_handle_t *)&w->settle);
        w->next = r->watched;
        r->watched = w;
        bool have = false;
        for (sb_watch *d = r->watches; d; d = d->next)
            have = have || strcmp(d->dir, w->dir) == 0;
        if (have)
            continue;
        sb_watch *d = calloc(1, sizeof(*d));
        if (!d || !(d->dir = strdup(w->dir))) {
            free(d);
            continue;
        }
        d->r = r;
        uv_fs_event_init(loop, &d->handle);
        d->handle.data = d;
        int rc = uv_fs_event_start(&d->handle, on_fs_event, d->dir, 0);
        if (rc < 0) {
            sb_log_warn("reload", "cannot watch %s: %s", d->dir,
                        uv_strerror(rc));
            uv_close((uv_handle_t *)&d->handle, free_watch);
            continue;
        }
        uv_unref((uv_handle_t *)&d->handle);
        d->next = r->watches;
        r->watches = d;
        sb_log_info("reload", "watching %s for new plugin builds", d->dir);
    }
}

/* ---- start and stop ---------------------------------------------------- */

static void on_hup(uv_signal_t *h, int signum)
{
    sb_server *s = h->data;
    sb_log_info("reload", "SIGHUP received: reloading %s", s->config->file);
    sb_reload_run(s, NULL);
}

int sb_reload_start(sb_server *s)
{
    sb_reloader *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->s = s;
    s->reloader = r;
    uv_signal_init(s->loop, &s->sig_hup);
    s->sig_hup.data = s;
    uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
    uv_unref((uv_handle_t *)&s->sig_hup);
    watches_rebuild(r);
    return 0;
}

void sb_reload_stop(sb_server *s)
{
    sb_reloader *r = s->reloader;
    if (!r)
        return;
    uv_signal_stop(&s->sig_hup);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    watches_clear(r);
    if (r->current) {
        sb_config_free(r->current);
        free(r->current);
    }
    free(r);
    s->reloader = NULL;
}

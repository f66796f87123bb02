/*
 * plugin_host — dlopen, the descriptor checks, init, and the registration
 * half of the host function table.
 *
 * The refusal reasons are the contract an operator reads when a plugin does
 * not load, so each is its own sentence naming the file and both ABI numbers
 * where they matter. A refused plugin leaves nothing behind: its routes are
 * dropped and its file is closed before the error is returned.
 */
#include "plugin_host.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crash.h"
#include "dispatch.h"
#include "log.h"
#include "version.h"

/* The descriptor fields every 1.x plugin has (up to and including init). */
#define SB_DESC_MIN_SIZE                                                       \
    (offsetof(sb_plugin_desc, init) + sizeof(((sb_plugin_desc *)0)->init))

/* ---- host table: registration ------------------------------------------ */

static int host_subscribe(sb_plugin *p, const char *event, sb_event_fn fn,
                          void *udata)
{
    if (!p || !event || !*event || !fn)
        return SB_ERR_INVALID;
    if (!p->in_init)
        return SB_ERR_STATE;
    const sb_route *existing = NULL;
    int rc = sb_router_add(&p->host->router, event, p, fn, udata, &existing);
    if (rc == SB_ERR_EXISTS) {
        p->conflict = true;
        snprintf(p->error, sizeof(p->error),
                 "event '%s' is already handled by plugin '%s'", event,
                 existing->owner->name);
    }
    return rc;
}

#define HOOK_SETTER(kind, type)                                                \
    static int host_on_##kind(sb_plugin *p, type fn, void *udata)              \
    {                                                                          \
        if (!p || !fn)                                                         \
            return SB_ERR_INVALID;                                             \
        if (!p->in_init)                                                       \
            return SB_ERR_STATE;                                               \
        p->kind = fn;                                                          \
        p->kind##_ud = udata;                                                  \
        return SB_OK;                                                          \
    }
HOOK_SETTER(ready, sb_ready_fn)
HOOK_SETTER(connect, sb_connect_fn)
HOOK_SETTER(disconnect, sb_disconnect_fn)
HOOK_SETTER(unload, sb_unload_fn)

/* ---- host table: the plugin itself ------------------------------------- */

static const char *host_plugin_name(const sb_plugin *p)
{
    return p ? p->name : NULL;
}

static const char *host_config_get(const sb_plugin *p, const char *key)
{
    if (!p || !key)
        return NULL;
    for (size_t i = 0; i < p->nkeys; i++)
        if (strcmp(p->keys[i].key, key) == 0)
            return p->keys[i].value;
    return NULL;
}

static int host_plugin_error(sb_plugin *p, const char *fmt, ...)
{
    if (!p || !fmt)
        return SB_ERR_FAILED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    return SB_ERR_FAILED;
}

static void host_log(const sb_plugin *p, sb_log_level level, const char *fmt,
                     ...)
{
    if (!fmt || (int)level < SB_LOG_ERROR || level > SB_LOG_DEBUG ||
        level > sb_log_get_level())
        return;
    char tag[160];
    snprintf(tag, sizeof(tag), "plugin %s", p ? p->name : "?");
    va_list ap;
    va_start(ap, fmt);
    sb_logv(level, tag, fmt, ap);
    va_end(ap);
}

static const char *host_strerror(int status)
{
    switch (status) {
    case SB_OK:
        return "success";
    case SB_ERR_INVALID:
        return "invalid argument";
    case SB_ERR_STATE:
        return "not allowed now";
    case SB_ERR_EXISTS:
        return "already exists";
    case SB_ERR_NOT_FOUND:
        return "not found";
    case SB_ERR_NOMEM:
        return "out of memory";
    case SB_ERR_CLOSED:
        return "client is closing";
    case SB_ERR_LIMIT:
        return "limit reached";
    case SB_ERR_JSON:
        return "invalid JSON";
    case SB_ERR_FAILED:
        return "failed";
    default:
        return "unknown status";
    }
}

const sb_host sb_host_table = {
    .size = sizeof(sb_host),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .host_version = SB_VERSION,
    .subscribe = host_subscribe,
    .on_ready = host_on_ready,
    .on_connect = host_on_connect,
    .on_disconnect = host_on_disconnect,
    .on_unload = host_on_unload,
    .plugin_name = host_plugin_name,
    .config_get = host_config_get,
    .plugin_error = host_plugin_error,
    .log = host_log,
    .strerror = host_strerror,
    .message_event = sb_msg_event,
    .message_client = sb_msg_client,
    .message_data = sb_msg_data,
    .message_data_raw = sb_msg_data_raw,
    .message_id_raw = sb_msg_id_raw,
    .reply = sb_msg_reply,
    .reply_raw = sb_msg_reply_raw,
    .reply_value = sb_msg_reply_value,
    .reply_data = sb_msg_reply_data,
    .fail = sb_msg_fail,
};

/* ---- loading ------------------------------------------------------------ */

void sb_plugin_host_init(sb_plugin_host *h)
{
    memset(h, 0, sizeof(*h));
    sb_router_init(&h->router);
}

static void plugin_free(sb_plugin *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nkeys; i++) {
        free(p->keys[i].key);
        free(p->keys[i].value);
    }
    free(p->keys);
    free(p->name);
    free(p->file);
    free(p);
}

static sb_plugin *plugin_new(sb_plugin_host *h, const sb_plugin_conf *pc)
{
    sb_plugin *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->host = h;
    p->name = strdup(pc->name);
    p->file = strdup(pc->file);
    p->keys = calloc(pc->nkeys ? pc->nkeys : 1, sizeof(*p->keys));
    if (!p->name || !p->file || !p->keys) {
        plugin_free(p);
        return NULL;
    }
    for (size_t i = 0; i < pc->nkeys; i++) {
        p->keys[i].key = strdup(pc->keys[i].key);
        p->keys[i].value = strdup(pc->keys[i].value);
        p->keys[i].line = pc->keys[i].line;
        p->nkeys++;
        if (!p->keys[i].key || !p->keys[i].value) {
            plugin_free(p);
            return NULL;
        }
    }
    return p;
}

/* Opens the file; on failure explains why in words an operator can act on. */
static void *open_file(const char *file, char *err, size_t errlen)
{
    struct stat st;
    if (stat(file, &st) < 0) {
        snprintf(err, errlen, "cannot load %s: %s", file,
                 errno == ENOENT ? "file not found" : strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot load %s: not a regular file", file);
        return NULL;
    }
    dlerror();
    void *dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen,
                 "cannot load %s: not a loadable shared object (%s)", file,
                 why ? why : "unknown error");
    }
    return dl;
}

static int check_descriptor(const sb_plugin_desc *d, const char *file,
                            char *err, size_t errlen)
{
    if (d->magic != SB_PLUGIN_MAGIC) {
        snprintf(err, errlen,
                 "cannot load %s: '%s' has a bad magic number (0x%08x): not a "
                 "Switchboard plugin descriptor",
                 file, SB_PLUGIN_SYMBOL, d->magic);
        return -1;
    }
    if (d->abi_major != SB_ABI_MAJOR) {
        snprintf(err, errlen,
                 "cannot load %s: built for plugin ABI %u.%u, this host "
                 "speaks %u.%u: major versions differ",
                 file, d->abi_major, d->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR);
        return -1;
    }
    if (d->abi_minor > SB_ABI_MINOR) {
        snprintf(err, errlen,
                 "cannot load %s: built for plugin ABI %u.%u, newer than this "
                 "host's %u.%u: upgrade Switchboard",
                 file, d->abi_major, d->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR);
        return -1;
    }
    if (d->size < SB_DESC_MIN_SIZE) {
        snprintf(err, errlen,
                 "cannot load %s: descriptor is %u bytes, smaller than the "
                 "%zu bytes of ABI %u.0",
                 file, d->size, (size_t)SB_DESC_MIN_SIZE, SB_ABI_MAJOR);
        return -1;
    }
    if (!d->init || !d->name) {
        snprintf(err, errlen, "cannot load %s: descriptor has no %s", file,
                 d->init ? "name" : "init function");
        return -1;
    }
    return 0;
}

int sb_plugin_host_load(sb_plugin_host *h, const sb_plugin_conf *pc, char *err,
                        size_t errlen)
{
    void *dl = open_file(pc->file, err, errlen);
    if (!dl)
        return -1;
    dlerror();
    const sb_plugin_desc *d = dlsym(dl, SB_PLUGIN_SYMBOL);
    if (!d) {
        snprintf(err, errlen,
                 "cannot load %s: no '%s' symbol: not a Switchboard plugin "
                 "(did you use SB_PLUGIN_DEFINE?)",
                 pc->file, SB_PLUGIN_SYMBOL);
        dlclose(dl);
        return -1;
    }
    if (check_descriptor(d, pc->file, err, errlen) < 0) {
        dlclose(dl);
        return -1;
    }
    sb_plugin **grown = realloc(h->plugins, (h->count + 1) * sizeof(*grown));
    sb_plugin *p = grown ? plugin_new(h, pc) : NULL;
    if (grown)
        h->plugins = grown;
    if (!p) {
        snprintf(err, errlen, "cannot load %s: out of memory", pc->file);
        dlclose(dl);
        return -1;
    }
    p->dl = dl;
    p->desc = d;

    p->in_init = true;
    sb_crash_enter(p->name, "init", NULL);
    int rc = d->init(p, &sb_host_table);
    sb_crash_leave();
    p->in_init = false;
    if (rc != SB_OK || p->conflict) {
        if (rc == SB_OK && p->unload) {
            /* init succeeded: let it clean up */
            sb_crash_enter(p->name, "unload hook", NULL);
            p->unload(p, p->unload_ud);
            sb_crash_leave();
        }
        if (rc != SB_OK)
            snprintf(err, errlen, "cannot load %s: init failed: %s", pc->file,
                     p->error[0] ? p->error : "no reason given");
        else
            snprintf(err, errlen, "cannot load %s: %s", pc->file, p->error);
        sb_router_remove_owner(&h->router, p);
        dlclose(dl);
        plugin_free(p);
        return -1;
    }
    h->plugins[h->count++] = p;
    sb_log_info("plugins", "loaded plugin '%s' (%s %s, ABI %u.%u) from %s",
                p->name, d->name, d->version ? d->version : "?", d->abi_major,
                d->abi_minor, p->file);
    return 0;
}

void sb_plugin_host_free(sb_plugin_host *h)
{
    for (size_t i = h->count; i-- > 0;) {
        sb_plugin *p = h->plugins[i];
        if (p->unload) {
            sb_crash_enter(p->name, "unload hook", NULL);
            p->unload(p, p->unload_ud);
            sb_crash_leave();
        }
        sb_router_remove_owner(&h->router, p);
        sb_log_info("plugins", "unloaded plugin '%s'", p->name);
        dlclose(p->dl);
        plugin_free(p);
    }
    free(h->plugins);
    sb_router_free(&h->router);
    memset(h, 0, sizeof(*h));
}

/* ---- hook runners ------------------------------------------------------- */

void sb_plugin_host_ready(sb_plugin_host *h)
{
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->ready)
            continue;
        sb_crash_enter(p->name, "ready hook", NULL);
        p->ready(p, p->ready_ud);
        sb_crash_leave();
    }
}

size_t sb_plugin_host_connect(sb_plugin_host *h, sb_client_id id,
                              const sb_plugin **refuser)
{
    *refuser = NULL;
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->connect)
            continue;
        sb_crash_enter(p->name, "connect hook", NULL);
        int rc = p->connect(p, id, p->connect_ud);
        sb_crash_leave();
        if (rc != SB_OK) {
            *refuser = p;
            return i;
        }
    }
    return h->count;
}

void sb_plugin_host_disconnect(sb_plugin_host *h, sb_client_id id, int code,
                               size_t upto)
{
    bool accepted = upto >= h->count;
    if (upto > h->count)
        upto = h->count;
    for (size_t i = upto; i-- > 0;) {
        sb_plugin *p = h->plugins[i];
        /* A refused client is news only to plugins whose connect hook saw
         * it and accepted it. */
        if (p->disconnect && (accepted || p->connect)) {
            sb_crash_enter(p->name, "disconnect hook", NULL);
            p->disconnect(p, id, code, p->disconnect_ud);
            sb_crash_leave();
        }
    }
}

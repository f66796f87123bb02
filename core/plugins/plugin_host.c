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
#include <math.h>
#include <strings.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <elf.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "crash.h"
#include "filecheck.h"
#include "log.h"
#include "version.h"

/* The descriptor fields every 1.x plugin has (up to and including init). */
#define SB_DESC_MIN_SIZE                                                       \
    (offsetof(sb_plugin_desc, init) + sizeof(((sb_plugin_desc *)0)->init))

/* ---- host table: registration ------------------------------------------ */

/* An event is unique within a gateway: a plugin's events are checked on
 * every gateway it serves, and a clash on any of them refuses the plugin.
 * The route is only staged here; sb_plugin_host_add() commits it. The
 * version being replaced by a reload does not count as a clash. */
static int host_subscribe(sb_plugin *p, const char *event, sb_event_fn fn,
                          void *udata)
{
    if (!p || !event || !*event || !fn)
        return SB_ERR_INVALID;
    if (!p->in_init)
        return SB_ERR_STATE;
    for (size_t i = 0; i < p->nstaged; i++)
        if (strcmp(p->staged[i].event, event) == 0)
            return SB_ERR_EXISTS;
    sb_plugin_host *h = p->host;
    size_t len = strlen(event);
    for (size_t g = 0; g < h->ngateways; g++) {
        if (!sb_plugin_serves(p, g))
            continue;
        const sb_route *r = sb_router_find(&h->routers[g], event, len);
        if (r && r->owner != p->replacing) {
            p->conflict = true;
            snprintf(p->error, sizeof(p->error),
                     "event '%s' is already handled by plugin '%s' (gateway "
                     "'%s')",
                     event, r->owner->name, h->gateways[g].name);
            return SB_ERR_EXISTS;
        }
    }
    sb_staged_route *grown =
        realloc(p->staged, (p->nstaged + 1) * sizeof(*grown));
    char *copy = grown ? strdup(event) : NULL;
    if (grown)
        p->staged = grown;
    if (!copy)
        return SB_ERR_NOMEM;
    p->staged[p->nstaged++] = (sb_staged_route){copy, fn, udata};
    return SB_OK;
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
HOOK_SETTER(handshake, sb_handshake_fn)
HOOK_SETTER(guard, sb_guard_fn)
HOOK_SETTER(export_state, sb_export_fn)
HOOK_SETTER(import_state, sb_import_fn)
HOOK_SETTER(resume, sb_resume_fn)
HOOK_SETTER(session_resumed, sb_session_fn)

/* A raw gateway has one frame hook: a clash on any raw gateway the
 * plugin serves refuses it, like a subscribe's. */
static int host_on_frame(sb_plugin *p, sb_frame_fn fn, void *udata)
{
    if (!p || !fn)
        return SB_ERR_INVALID;
    if (!p->in_init)
        return SB_ERR_STATE;
    sb_plugin_host *h = p->host;
    for (size_t g = 0; g < h->ngateways; g++) {
        if (!sb_plugin_serves(p, g) ||
            h->gateways[g].conf.envelope != SB_ENVELOPE_NONE)
            continue;
        const sb_plugin *o = sb_plugin_host_frame_owner(h, g);
        if (o && o != p && o != p->replacing) {
            p->conflict = true;
            snprintf(p->error, sizeof(p->error),
                     "plugin '%s' already takes the frames of gateway '%s'",
                     o->name, h->gateways[g].name);
            return SB_ERR_EXISTS;
        }
    }
    p->frame = fn;
    p->frame_ud = udata;
    return SB_OK;
}

const sb_plugin *sb_plugin_host_frame_owner(const sb_plugin_host *h,
                                            size_t gateway)
{
    for (size_t i = 0; i < h->count; i++)
        if (h->plugins[i]->frame && sb_plugin_serves(h->plugins[i], gateway))
            return h->plugins[i];
    return NULL;
}

static uint64_t host_plugin_generation(const sb_plugin *p)
{
    return p ? p->generation : 0;
}

static uint64_t host_plugin_loaded_at(const sb_plugin *p)
{
    return p ? p->loaded_at_ms : 0;
}

/* ---- host table: the plugin itself ------------------------------------- */

static const char *host_plugin_name(const sb_plugin *p)
{
    return p ? p->name : NULL;
}

/* Remembers that init looked `key` up, present or not: after init, a key
 * of the section that neither the host nor the plugin asked for is a typo
 * (check_keys). Out of memory only loses the record, which at worst turns
 * into an "unknown key" refusal. */
static void note_asked(sb_plugin *p, const char *key)
{
    for (size_t i = 0; i < p->nasked; i++)
        if (strcmp(p->asked[i], key) == 0)
            return;
    char **grown = realloc(p->asked, (p->nasked + 1) * sizeof(*grown));
    if (!grown)
        return;
    p->asked = grown;
    if ((p->asked[p->nasked] = strdup(key)))
        p->nasked++;
}

static const char *host_config_get(const sb_plugin *p, const char *key)
{
    if (!p || !key)
        return NULL;
    /* Every getter comes here; only init's reads are recorded. The handle
     * is the host's own object, const only to the plugin. */
    if (p->in_init)
        note_asked((sb_plugin *)p, key);
    for (size_t i = 0; i < p->nkeys; i++)
        if (strcmp(p->keys[i].key, key) == 0)
            return p->keys[i].value;
    return NULL;
}

/* ---- host table: typed config getters (1.1) ---------------------------- */

/* Looks the key up; on a bad value records why (for init to return). */
static int config_bad(sb_plugin *p, const char *key, const char *value,
                      const char *expected)
{
    snprintf(p->error, sizeof(p->error),
             "bad value '%s' for '%s' in [plugin.%s] (expected %s)", value, key,
             p->name, expected);
    return SB_ERR_INVALID;
}

static int host_config_string(sb_plugin *p, const char *key, const char *def,
                              const char **out)
{
    if (!p || !key || !out)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = v ? v : def;
    return SB_OK;
}

static int host_config_require(sb_plugin *p, const char *key, const char **out)
{
    if (!p || !key || !out)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = v;
    if (v && *v)
        return SB_OK;
    snprintf(p->error, sizeof(p->error), "%s required key '%s' in [plugin.%s]",
             v ? "empty" : "missing", key, p->name);
    return SB_ERR_NOT_FOUND;
}

/* A whole number with an optional k, m or g suffix (binary), signed, in
 * 64 bits: the config file's own parser (config.c). */
static bool parse_int(const char *v, int64_t *out)
{
    bool negative;
    unsigned long long n;
    if (!sb_config_parse_scaled(v, true, &negative, &n) ||
        n > (negative ? (unsigned long long)INT64_MAX + 1 : INT64_MAX))
        return false;
    if (!negative)
        *out = (int64_t)n;
    else
        *out = n > INT64_MAX ? INT64_MIN : -(int64_t)n;
    return true;
}

static int host_config_int(sb_plugin *p, const char *key, int64_t def,
                           int64_t *out)
{
    if (!p || !key || !out)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = def;
    if (!v)
        return SB_OK;
    if (!parse_int(v, out)) {
        *out = def;
        return config_bad(p, key, v,
                          "an integer, optionally with a k, m or g suffix");
    }
    return SB_OK;
}

/* 1.3: config_int with bounds, so that plugins stop writing their own. */
static int host_config_int_range(sb_plugin *p, const char *key, int64_t def,
                                 int64_t min, int64_t max, int64_t *out)
{
    if (!p || !key || !out || min > max)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = def;
    if (!v)
        return SB_OK;
    int64_t n;
    if (!parse_int(v, &n) || n < min || n > max) {
        char expected[96];
        snprintf(expected, sizeof(expected), "an integer from %lld to %lld",
                 (long long)min, (long long)max);
        return config_bad(p, key, v, expected);
    }
    *out = n;
    return SB_OK;
}

static int host_config_bool(sb_plugin *p, const char *key, int def, int *out)
{
    if (!p || !key || !out)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = def;
    if (!v)
        return SB_OK;
    bool flag;
    if (sb_config_parse_bool(v, &flag)) {
        *out = flag;
        return SB_OK;
    }
    return config_bad(p, key, v, "true/false, yes/no, on/off or 1/0");
}

static int host_config_double(sb_plugin *p, const char *key, double def,
                              double *out)
{
    if (!p || !key || !out)
        return SB_ERR_INVALID;
    const char *v = host_config_get(p, key);
    *out = def;
    if (!v)
        return SB_OK;
    errno = 0;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d))
        return config_bad(p, key, v, "a number");
    *out = d;
    return SB_OK;
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
    case SB_ERR_CANCELLED:
        return "cancelled";
    case SB_ERR_RETIRED:
        return "this plugin version is retired";
    case SB_ERR_UNAVAILABLE:
        return "the cluster's broker is unavailable";
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
    /* 1.1 */
    .on_handshake = host_on_handshake,
    .on_guard = host_on_guard,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .config_bool = host_config_bool,
    .config_double = host_config_double,
    .config_require = host_config_require,
    /* 1.2 */
    .on_export = host_on_export_state,
    .on_import = host_on_import_state,
    .on_resume = host_on_resume,
    .plugin_generation = host_plugin_generation,
    .plugin_loaded_at = host_plugin_loaded_at,
    /* 1.3 */
    .config_int_range = host_config_int_range,
    .on_frame = host_on_frame,
    .on_session_resumed = host_on_session_resumed,
};

/* ---- loading ------------------------------------------------------------ */

int sb_plugin_host_init(sb_plugin_host *h, uv_loop_t *loop,
                        const sb_gateway_conf *gateways, size_t ngateways)
{
    memset(h, 0, sizeof(*h));
    h->loop = loop;
    h->gateways = gateways;
    h->ngateways = ngateways;
    h->strict_files = true;
    h->table = sb_host_table;
    h->routers = calloc(ngateways ? ngateways : 1, sizeof(*h->routers));
    if (!h->routers)
        return -1;
    for (size_t g = 0; g < ngateways; g++)
        sb_router_init(&h->routers[g]);
    if (sb_async_init(h) < 0) {
        free(h->routers);
        h->routers = NULL;
        return -1;
    }
    return 0;
}

static void remove_routes(sb_plugin_host *h, const sb_plugin *p)
{
    for (size_t g = 0; g < h->ngateways; g++)
        sb_router_remove_owner(&h->routers[g], p);
}

/* Puts the routes init staged into the routers. Conflicts were ruled out
 * at subscribe time, so this fails only for lack of memory. */
static int commit_routes(sb_plugin_host *h, sb_plugin *p)
{
    for (size_t i = 0; i < p->nstaged; i++)
        for (size_t g = 0; g < h->ngateways; g++)
            if (sb_plugin_serves(p, g) &&
                sb_router_add(&h->routers[g], p->staged[i].event, p,
                              p->staged[i].fn, p->staged[i].udata,
                              NULL) != SB_OK) {
                remove_routes(h, p);
                return -1;
            }
    return 0;
}

static void plugin_free(sb_plugin *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nkeys; i++) {
        free(p->keys[i].key);
        free(p->keys[i].value);
    }
    for (size_t i = 0; i < p->nstaged; i++)
        free(p->staged[i].event);
    for (size_t i = 0; i < p->nasked; i++)
        free(p->asked[i]);
    free(p->asked);
    free(p->staged);
    free(p->keys);
    free(p->name);
    free(p->file);
    if (p->image_path) /* normally gone already (finalize) */
        unlink(p->image_path);
    free(p->image_path);
    free(p);
}

static sb_plugin *plugin_new(sb_plugin_host *h, const sb_plugin_conf *pc)
{
    sb_plugin *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->host = h;
    p->image_fd = -1;
    for (size_t i = 0; i < pc->ngateways; i++)
        p->gateways |= UINT64_C(1) << pc->gateways[i];
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

/* Copies the plugin file and loads the copy.
 *
 * Why not dlopen(file): the dynamic loader returns the already loaded
 * object for a path it knows, so a new build at the same path would never
 * load next to the old one; and a file overwritten in place while mapped
 * crashes the process. A private copy per load avoids both.
 *
 * The copy is a real file, NAME.gGEN.PID.SEQ.so in a runtime folder only
 * the server can write, so that gdb, valgrind and perf can read the
 * plugin's symbols from the path in /proc/PID/maps. It is removed after
 * dlclose (finalize), and copies left by a server that died are removed
 * when the next one first loads a plugin. When no such folder is usable the
 * copy is an in-memory file (memfd, "sb:NAME:gGEN") as before, which the
 * tools cannot open. */
static bool elf_complete(int fd, uint64_t size, const char **why);

/* The runtime folder, chosen once per process; "" when none is usable. */
static char runtime_dir[PATH_MAX];
static bool runtime_chosen;
static uint64_t image_seq;

/* Whether `dir` is a folder of ours that nobody else can write and where
 * mapped code may run. `create`: make it (0700) when absent. */
static bool runtime_usable(const char *dir, bool create, char *why,
                           size_t whylen)
{
    struct stat st;
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
        return false;
    }
    if (lstat(dir, &st) != 0) {
        snprintf(why, whylen, "%s: %s", dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, whylen, "%s is not a directory", dir);
        return false;
    }
    if (st.st_uid != geteuid()) {
        snprintf(why, whylen, "%s is owned by uid %lu, not the server's %lu",
                 dir, (unsigned long)st.st_uid, (unsigned long)geteuid());
        return false;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, whylen, "%s is writable by %s (mode %04o)", dir,
                 st.st_mode & S_IWOTH ? "others" : "group",
                 (unsigned)(st.st_mode & 07777));
        return false;
    }
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_NOEXEC)) {
        snprintf(why, whylen, "%s is on a noexec file system", dir);
        return false;
    }
    return true;
}

/* Removes the copies of servers that are gone: NAME.gGEN.PID.SEQ.so whose
 * PID no longer runs (a crash, SIGKILL). */
static void remove_stale_images(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        /* ...gGEN.PID.SEQ.so: PID is the third dot-field from the end. */
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(len - 3), e->d_name);
        char *seq = strrchr(name, '.');
        if (!seq)
            continue;
        *seq = '\0';
        char *pid_s = strrchr(name, '.');
        if (!pid_s || pid_s[1] == '\0' || pid_s - name < 3 ||
            !strstr(name, ".g"))
            continue;
        char *end;
        long pid = strtol(pid_s + 1, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            sb_log_info("plugins", "removed %s/%s, left by process %ld", dir,
                        e->d_name, pid);
    }
    closedir(d);
}

static const char *choose_runtime_dir(void)
{
    if (runtime_chosen)
        return runtime_dir;
    runtime_chosen = true;
    char why[PATH_MAX + 128] = "";
    const char *env = getenv("RUNTIME_DIRECTORY"); /* systemd */
    if (env && *env) {
        /* Several folders are separated by ':': the first is ours. */
        snprintf(runtime_dir, sizeof(runtime_dir), "%.*s",
                 (int)strcspn(env, ":"), env);
        if (runtime_usable(runtime_dir, false, why, sizeof(why)))
            goto chosen;
        sb_log_warn("plugins", "not using $RUNTIME_DIRECTORY: %s", why);
    }
    env = getenv("XDG_RUNTIME_DIR");
    if (env && *env) {
        snprintf(runtime_dir, sizeof(runtime_dir), "%s/switchboard", env);
        if (runtime_usable(runtime_dir, true, why, sizeof(why)))
            goto chosen;
        sb_log_warn("plugins", "not using $XDG_RUNTIME_DIR: %s", why);
    }
    snprintf(runtime_dir, sizeof(runtime_dir), "/tmp/switchboard-%lu",
             (unsigned long)geteuid());
    if (runtime_usable(runtime_dir, true, why, sizeof(why)))
        goto chosen;
    sb_log_warn("plugins",
                "no private runtime folder for plugin copies (%s): plugins "
                "load from in-memory copies, whose symbols gdb, valgrind "
                "and perf cannot read",
                why);
    runtime_dir[0] = '\0';
    return runtime_dir;
chosen:
    sb_log_debug("plugins", "plugin copies go to %s", runtime_dir);
    remove_stale_images(runtime_dir);
    return runtime_dir;
}

/* Makes the file the copy goes to: a new file in the runtime folder, or a
 * memfd. Returns its descriptor (read-write) or -1 with err written. */
static int image_create(sb_plugin *p, const char *file, char *err,
                        size_t errlen)
{
    const char *dir = choose_runtime_dir();
    if (*dir) {
        snprintf(p->image_name, sizeof(p->image_name), "%s.g%llu.%ld.%llu.so",
                 p->name, (unsigned long long)p->generation, (long)getpid(),
                 (unsigned long long)++image_seq);
        if (asprintf(&p->image_path, "%s/%s", dir, p->image_name) < 0) {
            p->image_path = NULL;
            snprintf(err, errlen, "cannot load %s: out of memory", file);
            return -1;
        }
        int fd = open(p->image_path,
                      O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0500);
        if (fd >= 0)
            return fd;
        snprintf(err, errlen, "cannot load %s: creating its copy %s: %s", file,
                 p->image_path, strerror(errno));
        free(p->image_path);
        p->image_path = NULL;
        return -1;
    }
    snprintf(p->image_name, sizeof(p->image_name), "sb:%s:g%llu", p->name,
             (unsigned long long)p->generation);
    int fd = memfd_create(p->image_name, MFD_CLOEXEC);
    if (fd < 0)
        snprintf(err, errlen, "cannot load %s: memfd_create: %s", file,
                 strerror(errno));
    return fd;
}

/* Drops the copy (after dlclose, or when the load failed). */
static void image_remove(sb_plugin *p)
{
    if (p->image_path) {
        unlink(p->image_path);
        free(p->image_path);
        p->image_path = NULL;
    }
}

static void *open_image(sb_plugin *p, const char *file, char *err,
                        size_t errlen)
{
    struct stat st;
    int in = open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0 || fstat(in, &st) < 0) {
        snprintf(err, errlen, "cannot load %s: %s", file,
                 errno == ENOENT ? "file not found" : strerror(errno));
        if (in >= 0)
            close(in);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot load %s: not a regular file", file);
        close(in);
        return NULL;
    }
    if (p->host->strict_files &&
        sb_file_check_trusted_fd(in, file, err, errlen) < 0) {
        close(in);
        return NULL;
    }
    p->file_id = (sb_file_id){st.st_dev, st.st_ino, (uint64_t)st.st_size,
                              st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    int fd = image_create(p, file, err, errlen);
    if (fd < 0) {
        close(in);
        return NULL;
    }
    char buf[65536];
    ssize_t n;
    uint64_t copied = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(fd, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
        copied += (uint64_t)n;
    }
    close(in);
    if (n < 0) {
        snprintf(err, errlen, "cannot load %s: copying it: %s", file,
                 strerror(errno));
        close(fd);
        image_remove(p);
        return NULL;
    }
    const char *why_not;
    if (!elf_complete(fd, copied, &why_not)) {
        snprintf(err, errlen,
                 "cannot load %s: not a loadable shared object (%s)", file,
                 why_not);
        close(fd);
        image_remove(p);
        return NULL;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    dlerror();
    void *dl =
        dlopen(p->image_path ? p->image_path : path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        /* dlerror names the copy; the operator knows the file. */
        const char *colon = why ? strstr(why, ": ") : NULL;
        snprintf(err, errlen,
                 "cannot load %s: not a loadable shared object (%s)", file,
                 colon ? colon + 2
                 : why ? why
                       : "unknown error");
        close(fd);
        image_remove(p);
        return NULL;
    }
    if (p->image_path)
        close(fd); /* the path names it while it is mapped */
    else
        p->image_fd = fd; /* the memfd lives as long as the object */
    return dl;
}

/* Whether the image holds every byte its ELF headers promise. The dynamic
 * loader maps segments without checking the file's length, and touching a
 * page past the end of a truncated file is SIGBUS: a half-copied build
 * must be refused here, not crash the server in dlopen(). */
static bool elf_complete(int fd, uint64_t size, const char **why)
{
    Elf64_Ehdr eh;
    *why = "not an ELF file";
    if (size < sizeof(eh) || pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return false;
    *why = "not a 64-bit ELF shared object for this machine";
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN ||
        eh.e_phentsize != sizeof(Elf64_Phdr))
        return false;
    *why = "truncated (incomplete copy?)";
    if (eh.e_phoff > size ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > size - eh.e_phoff ||
        (eh.e_shnum &&
         (eh.e_shoff > size ||
          (uint64_t)eh.e_shnum * eh.e_shentsize > size - eh.e_shoff)))
        return false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
            sizeof(ph))
            return false;
        if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
            return false;
    }
    return true;
}

/* The keys of a [plugin.NAME] section the host itself reads (config.c,
 * reload.c): never the plugin's business. */
static const char *const host_keys[] = {"file", "enabled", "optional",
                                        "gateways", "watch"};

static bool key_known(const sb_plugin *p, const char *key)
{
    for (size_t i = 0; i < sizeof(host_keys) / sizeof(host_keys[0]); i++)
        if (strcmp(host_keys[i], key) == 0)
            return true;
    for (size_t i = 0; i < p->nasked; i++)
        if (strcmp(p->asked[i], key) == 0)
            return true;
    return false;
}

/* After a successful init: the keys of the section that neither the host
 * nor the plugin's init asked for, worded like [server]'s unknown keys.
 * Returns how many; writes the sentence to err. */
static size_t check_keys(const sb_plugin *p, char *err, size_t errlen)
{
    size_t unknown = 0, at = 0;
    int first_line = 0;
    char names[512] = "";
    for (size_t i = 0; i < p->nkeys; i++) {
        if (key_known(p, p->keys[i].key))
            continue;
        if (!unknown++)
            first_line = p->keys[i].line;
        if (at < sizeof(names))
            at += (size_t)snprintf(names + at, sizeof(names) - at, "%s'%s'",
                                   unknown > 1 ? ", " : "", p->keys[i].key);
    }
    if (!unknown)
        return 0;
    char reads[512] = "";
    at = 0;
    for (size_t i = 0; i < p->nasked && at < sizeof(reads); i++)
        at += (size_t)snprintf(reads + at, sizeof(reads) - at, "%s%s",
                               i ? ", " : "", p->asked[i]);
    /* A sentence longer than err is cut; the key names come first. */
    const char *intro = p->nasked ? "it reads: " : "it reads no keys";
    int w = unknown == 1
                ? snprintf(err, errlen,
                           "line %d: unknown key %s in [plugin.%s] (%s%s)",
                           first_line, names, p->name, intro, reads)
                : snprintf(err, errlen, "unknown keys %s in [plugin.%s] (%s%s)",
                           names, p->name, intro, reads);
    if (w < 0)
        snprintf(err, errlen, "unknown keys in [plugin.%s]", p->name);
    return unknown;
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

/* Whether the object is gone from the address space after dlclose: a
 * plugin that pins itself (a thread still running, RTLD_NODELETE) would
 * otherwise leak a mapping at every reload. */
static bool image_mapped(const sb_plugin *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[PATH_MAX + 128];
    char needle[PATH_MAX + 16];
    if (p->image_path)
        snprintf(needle, sizeof(needle), "%s\n", p->image_path);
    else
        snprintf(needle, sizeof(needle), "/memfd:%s ", p->image_name);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* The last step of every unload: nothing of the plugin can run any more
 * (async.c saw to its timers, work and posts). */
static void finalize(sb_plugin *p)
{
    sb_plugin_host *h = p->host;
    if (p->serving && !p->released && h->release_clients)
        h->release_clients(p, p->handed_over);
    if (p->unload) {
        sb_crash_enter(p->name, "unload hook", NULL);
        p->unload(p, p->unload_ud);
        sb_crash_leave();
    }
    if (h->routers)
        remove_routes(h, p);
    if (p->dl) {
        dlclose(p->dl);
        if (image_mapped(p))
            sb_log_warn("plugins",
                        "plugin '%s' (generation %llu) is still mapped after "
                        "dlclose: a thread or RTLD_NODELETE keeps it",
                        p->name, (unsigned long long)p->generation);
    }
    if (p->image_fd >= 0)
        close(p->image_fd);
    image_remove(p);
    if (p->announce_unload)
        sb_log_info("plugins", "unloaded plugin '%s' (generation %llu)",
                    p->name, (unsigned long long)p->generation);
    plugin_free(p);
}

void sb_plugin_retire(sb_plugin *p)
{
    sb_async_retire(p, finalize);
}

sb_plugin *sb_plugin_host_open(sb_plugin_host *h, const sb_plugin_conf *pc,
                               const sb_plugin *replacing, char *err,
                               size_t errlen)
{
    /* A section without `file` (or `file =` empty) was reported by the
     * config parser; -t still comes here and must not crash. */
    if (!pc->file || !*pc->file) {
        snprintf(err, errlen, "cannot load [plugin.%s]: it has no 'file'",
                 pc->name ? pc->name : "?");
        return NULL;
    }
    sb_plugin *p = plugin_new(h, pc);
    if (!p) {
        snprintf(err, errlen, "cannot load %s: out of memory", pc->file);
        return NULL;
    }
    p->generation = replacing ? replacing->generation + 1 : 1;
    p->replacing = replacing;
    p->dl = open_image(p, pc->file, err, errlen);
    if (!p->dl) {
        plugin_free(p);
        return NULL;
    }
    dlerror();
    const sb_plugin_desc *d = dlsym(p->dl, SB_PLUGIN_SYMBOL);
    if (!d)
        snprintf(err, errlen,
                 "cannot load %s: no '%s' symbol: not a Switchboard plugin "
                 "(did you use SB_PLUGIN_DEFINE?)",
                 pc->file, SB_PLUGIN_SYMBOL);
    if (!d || check_descriptor(d, pc->file, err, errlen) < 0) {
        finalize(p);
        return NULL;
    }
    p->desc = d;
    p->loaded_at_ms = (uint64_t)time(NULL) * 1000;
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) == 0)
        p->loaded_at_ms =
            (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;

    p->in_init = true;
    sb_crash_enter(p->name, "init", NULL);
    int rc = d->init(p, &h->table);
    sb_crash_leave();
    p->in_init = false;
    if (rc != SB_OK || p->conflict) {
        if (rc != SB_OK)
            snprintf(err, errlen, "cannot load %s: init failed: %s", pc->file,
                     p->error[0] ? p->error : "no reason given");
        else
            snprintf(err, errlen, "cannot load %s: %s", pc->file, p->error);
        /* The unload hook is for a plugin whose init succeeded; a failed
         * init must have cleaned up after itself. */
        if (rc != SB_OK)
            p->unload = NULL;
        sb_plugin_retire(p);
        return NULL;
    }
    /* Plugins declare their keys by reading them (1.3). One built against
     * an older minor may read some only later, with config_get: for it an
     * unknown key is a warning. */
    char why[1024];
    if (check_keys(p, why, sizeof(why))) {
        if (d->abi_minor >= 3) {
            snprintf(err, errlen, "cannot load %s: %s", pc->file, why);
            sb_plugin_retire(p);
            return NULL;
        }
        sb_log_warn("plugins",
                    "plugin '%s': %s (built for ABI %u.%u, so only a "
                    "warning; for ABI 1.3 and later it is an error)",
                    p->name, why, d->abi_major, d->abi_minor);
    }
    return p;
}

int sb_plugin_host_add(sb_plugin_host *h, sb_plugin *p)
{
    sb_plugin **grown = realloc(h->plugins, (h->count + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    h->plugins = grown;
    if (commit_routes(h, p) < 0)
        return -1;
    p->slot = h->next_slot++;
    p->serving = true;
    p->replacing = NULL;
    p->announce_unload = true;
    h->plugins[h->count++] = p;
    const sb_plugin_desc *d = p->desc;
    sb_log_info("plugins",
                "loaded plugin '%s' (%s %s, ABI %u.%u, generation %llu) from "
                "%s",
                p->name, d->name, d->version ? d->version : "?", d->abi_major,
                d->abi_minor, (unsigned long long)p->generation, p->file);
    return 0;
}

int sb_plugin_host_load(sb_plugin_host *h, const sb_plugin_conf *pc, char *err,
                        size_t errlen)
{
    sb_plugin *p = sb_plugin_host_open(h, pc, NULL, err, errlen);
    if (!p)
        return -1;
    if (sb_plugin_host_add(h, p) < 0) {
        snprintf(err, errlen, "cannot load %s: out of memory", pc->file);
        sb_plugin_retire(p);
        return -1;
    }
    return 0;
}

int sb_plugin_host_load_config(sb_plugin_host *h, const sb_config *cfg,
                               bool keep_going)
{
    int fatal = 0;
    for (size_t i = 0; i < cfg->nplugins; i++) {
        const sb_plugin_conf *pc = &cfg->plugins[i];
        if (!pc->enabled) {
            sb_log_info("plugins", "plugin '%s' is disabled", pc->name);
            continue;
        }
        char err[1024];
        if (sb_plugin_host_load(h, pc, err, sizeof(err)) == 0)
            continue;
        if (pc->optional) {
            sb_log_warn("plugins", "plugin '%s' (optional) skipped: %s",
                        pc->name, err);
            continue;
        }
        sb_log_error("plugins", "plugin '%s': %s", pc->name, err);
        fatal++;
        if (!keep_going)
            break;
    }
    return fatal;
}

int sb_plugin_host_swap(sb_plugin_host *h, sb_plugin *old, sb_plugin *np)
{
    size_t at = 0;
    while (at < h->count && h->plugins[at] != old)
        at++;
    if (at == h->count)
        return -1;
    remove_routes(h, old);
    if (commit_routes(h, np) < 0) {
        /* Out of memory halfway: put the old version's routes back (its
         * staged list is kept for this) and leave it serving. */
        commit_routes(h, old);
        return -1;
    }
    np->slot = old->slot; /* clients' JSON state carries over */
    np->serving = true;
    np->replacing = NULL;
    np->announce_unload = true;
    old->handed_over = true;
    h->plugins[at] = np;
    return 0;
}

void sb_plugin_host_remove(sb_plugin_host *h, sb_plugin *p)
{
    size_t at = 0;
    while (at < h->count && h->plugins[at] != p)
        at++;
    if (at == h->count)
        return;
    memmove(&h->plugins[at], &h->plugins[at + 1],
            (h->count - at - 1) * sizeof(*h->plugins));
    h->count--;
    remove_routes(h, p);
    sb_plugin_retire(p);
}

const char *sb_plugin_host_slot_owner(const sb_plugin_host *h, size_t slot)
{
    for (size_t i = 0; i < h->count; i++)
        if (h->plugins[i]->slot == slot)
            return h->plugins[i]->name;
    for (const sb_plugin *p = h->retiring; p; p = p->retiring_next)
        if (p->serving && p->slot == slot)
            return p->name;
    return NULL;
}

void sb_plugin_host_free(sb_plugin_host *h)
{
    for (size_t i = h->count; i-- > 0;)
        sb_plugin_retire(h->plugins[i]);
    free(h->plugins);
    h->plugins = NULL;
    h->count = 0;
    /* Running work cannot be stopped, and its completion, the posts it
     * made and the unload hook after them use the routers and the post
     * lock: turn the loop until the last retiring plugin is finalized (the
     * pending work keeps the loop alive, so this never spins). This is
     * where -t and a refused start wait for work an init queued. */
    while (h->retiring)
        uv_run(h->loop, UV_RUN_ONCE);
    if (h->routers) {
        for (size_t g = 0; g < h->ngateways; g++)
            sb_router_free(&h->routers[g]);
        free(h->routers);
        h->routers = NULL;
        sb_async_close(h);
    }
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

int sb_plugin_host_handshake(sb_plugin_host *h, size_t gateway,
                             sb_handshake *hs)
{
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->handshake || !sb_plugin_serves(p, gateway))
            continue;
        sb_crash_enter(p->name, "handshake hook", NULL);
        int rc = p->handshake(p, hs, p->handshake_ud);
        sb_crash_leave();
        if (rc != SB_OK) {
            /* Anything that is not an HTTP error status is a plain "no". */
            int status = rc >= 400 && rc <= 599 ? rc : 403;
            sb_log_debug("plugins", "plugin '%s' refused a handshake (%d)",
                         p->name, status);
            return status;
        }
    }
    return SB_OK;
}

/* ---- which plugins know a client ---------------------------------------- */

bool sb_plugin_host_connect(sb_plugin_host *h, size_t gateway, sb_client_id id,
                            sb_slot_set *seen, const sb_plugin **refuser)
{
    *refuser = NULL;
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->connect || !sb_plugin_serves(p, gateway))
            continue;
        sb_crash_enter(p->name, "connect hook", NULL);
        int rc = p->connect(p, id, p->connect_ud);
        sb_crash_leave();
        if (rc != SB_OK) {
            /* A refused client is news only to plugins whose connect hook
             * saw it and accepted it. */
            *refuser = p;
            return false;
        }
        sb_slot_set_put(seen, p->slot, true);
    }
    /* Accepted: the plugins without a connect hook know it too. (Out of
     * memory here only for slots past 63, i.e. after dozens of plugins
     * were added at run time: those then miss its disconnect.) */
    for (size_t i = 0; i < h->count; i++)
        if (sb_plugin_serves(h->plugins[i], gateway))
            sb_slot_set_put(seen, h->plugins[i]->slot, true);
    return true;
}

void sb_plugin_host_session_resumed(
    sb_plugin_host *h, sb_client_id id, sb_client_id previous, json_t *rooms,
    const sb_slot_set *seen, json_t *(*state_of)(sb_plugin *p, sb_client_id id))
{
    for (size_t i = 0; i < h->count; i++) {
        sb_plugin *p = h->plugins[i];
        if (!p->session_resumed || !sb_slot_set_has(seen, p->slot))
            continue;
        sb_crash_enter(p->name, "session hook", NULL);
        p->session_resumed(p, id, previous, state_of(p, id), rooms,
                           p->session_resumed_ud);
        sb_crash_leave();
    }
}

void sb_plugin_host_disconnect(sb_plugin_host *h, sb_client_id id, int code,
                               const sb_slot_set *seen)
{
    for (size_t i = h->count; i-- > 0;) {
        sb_plugin *p = h->plugins[i];
        if (!p->disconnect || !sb_slot_set_has(seen, p->slot))
            continue;
        sb_crash_enter(p->name, "disconnect hook", NULL);
        p->disconnect(p, id, code, p->disconnect_ud);
        sb_crash_leave();
    }
}

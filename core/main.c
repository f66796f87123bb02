/*
 * main — the command line: read the config, load the plugins, serve until
 * SIGINT/SIGTERM, and undo it all in reverse. Under `workers = N` (N > 1)
 * it first becomes the master (supervisor.h) over the listening sockets it
 * opens (listen.h), and each worker goes on from there as one process
 * would. Only wiring lives here.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "admin.h"
#include "bridge.h"
#include "cluster.h"
#include "config.h"
#include "crash.h"
#include "fdlimit.h"
#include "listen.h"
#include "log.h"
#include "master_admin.h"
#include "plugin_host.h"
#include "server.h"
#include "supervisor.h"
#include "version.h"

/* The config read without -c. An installed binary (PREFIX/BINDIR/
 * switchboard) reads PREFIX/SYSCONFDIR/switchboard/switchboard.ini, found
 * from /proc/self/exe, so that a tree installed with --prefix or moved
 * keeps finding its own; the binary of the build tree reads the source
 * tree's etc/switchboard.ini; anything else etc/switchboard.ini in the
 * current folder. (SB_INSTALL_* and SB_BUILD_* come from core/CMakeLists.) */
static const char *default_config(void)
{
    static char path[PATH_MAX + 64];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return "etc/switchboard.ini";
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return "etc/switchboard.ini";
    *slash = '\0'; /* exe is now the folder */
    if (strcmp(exe, SB_BUILD_EXE_DIR) == 0)
        return SB_SOURCE_DIR "/etc/switchboard.ini";
    size_t dlen = strlen(exe), blen = strlen(SB_INSTALL_BINDIR);
    if (SB_INSTALL_BINDIR[0] != '/' && dlen > blen &&
        strcmp(exe + dlen - blen, SB_INSTALL_BINDIR) == 0 &&
        exe[dlen - blen - 1] == '/') {
        exe[dlen - blen - 1] = '\0'; /* the prefix */
        if (SB_INSTALL_SYSCONFDIR[0] == '/')
            snprintf(path, sizeof(path), "%s/switchboard/switchboard.ini",
                     SB_INSTALL_SYSCONFDIR);
        else
            snprintf(path, sizeof(path),
                     "%s/" SB_INSTALL_SYSCONFDIR "/switchboard/switchboard.ini",
                     exe);
        return path;
    }
    return "etc/switchboard.ini";
}

/* The master's SIGHUP: re-read the config that the workers it respawns
 * from now on start from (the running ones reload it themselves). Kept
 * only if it is valid and keeps the listeners and the worker count, which
 * the master's sockets are made for. */
typedef struct master_ctx {
    sb_config *cfg;
    const char *path;
    int admin_fd; /* -1: no [admin] port */
} master_ctx;

/* The master's admin listener has a connection (master_admin.h). */
static void master_admin_ready(void *arg, const sb_worker_slot *slots,
                               unsigned n)
{
    master_ctx *m = arg;
    sb_master_admin_serve(m->admin_fd, &m->cfg->admin, slots, n);
}

static bool same_text(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

/* What the master's sockets and admin listener were made for. */
static bool same_listeners(const sb_config *a, const sb_config *b)
{
    if (a->server.workers != b->server.workers ||
        a->ngateways != b->ngateways || a->admin.port != b->admin.port ||
        !same_text(a->admin.host, b->admin.host) ||
        !same_text(a->admin.token, b->admin.token))
        return false;
    size_t fa[SB_MAX_GATEWAYS], fb[SB_MAX_GATEWAYS];
    size_t na = sb_listen_distinct(a, fa), nb = sb_listen_distinct(b, fb);
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        const sb_server_conf *x = &a->gateways[fa[i]].conf;
        const sb_server_conf *y = &b->gateways[fb[i]].conf;
        if (x->port != y->port || (!x->host != !y->host) ||
            (x->host && strcmp(x->host, y->host) != 0))
            return false;
    }
    return true;
}

static void master_hup(void *arg)
{
    master_ctx *m = arg;
    sb_config next;
    int problems = sb_config_load(&next, m->path);
    if (problems || !same_listeners(m->cfg, &next)) {
        sb_log_warn("master",
                    "%s: %s; workers started from now on keep the "
                    "previous config",
                    m->path,
                    problems ? "has problems"
                             : "changes the listeners, [admin] "
                               "or the worker count (needs a restart)");
        sb_config_free(&next);
        return;
    }
    sb_config_free(m->cfg);
    *m->cfg = next;
}

/* The master: one SO_REUSEPORT socket per worker slot and listener, kept
 * open for the master's whole life (a dead worker's queue waits for its
 * successor instead of being reset), then the supervision. Returns in a
 * worker with *worker set and its sockets handed to the server; in the
 * master, when every worker is gone, with its exit status. */
static int run_master(sb_config *cfg, const char *path, unsigned *worker)
{
    size_t first[SB_MAX_GATEWAYS];
    size_t nl = sb_listen_distinct(cfg, first);
    unsigned n = cfg->server.workers;
    int *fds = malloc((size_t)n * nl * sizeof(*fds));
    if (!fds) {
        sb_log_error("core", "out of memory");
        return 1;
    }
    size_t opened = 0;
    for (unsigned w = 0; w < n; w++)
        for (size_t l = 0; l < nl; l++) {
            const sb_server_conf *c = &cfg->gateways[first[l]].conf;
            char err[256];
            int fd = sb_listen_open(c->host, c->port, 511, err, sizeof(err));
            if (fd < 0) {
                sb_log_error("core", "gateway '%s': %s (is the port in use?)",
                             cfg->gateways[first[l]].name, err);
                for (size_t i = 0; i < opened; i++)
                    close(fds[i]);
                free(fds);
                return 1;
            }
            fds[opened++] = fd;
        }
    master_ctx m = {cfg, path, -1};
    if (cfg->admin.port) {
        char err[256];
        m.admin_fd = sb_master_admin_open(&cfg->admin, err, sizeof(err));
        if (m.admin_fd < 0) {
            sb_log_error("admin", "%s (is the port in use?)", err);
            for (size_t i = 0; i < opened; i++)
                close(fds[i]);
            free(fds);
            return 1;
        }
        sb_log_info("admin",
                    "listening on http://%s:%d/ for the machine; worker k "
                    "on port %d + k",
                    cfg->admin.host ? cfg->admin.host : "127.0.0.1",
                    cfg->admin.port, cfg->admin.port);
    }
    sb_supervisor_hooks hooks = {master_hup, m.admin_fd, master_admin_ready,
                                 &m};
    int rc = sb_supervise(n, cfg->server.shutdown_timeout, &hooks, worker);
    if (m.admin_fd >= 0)
        close(m.admin_fd);
    if (*worker) {
        /* A worker keeps its own slot's sockets only. */
        for (size_t i = 0; i < opened; i++)
            if (i / nl != *worker - 1)
                close(fds[i]);
        sb_server_inherit_listeners(fds + (size_t)(*worker - 1) * nl, nl);
    } else {
        for (size_t i = 0; i < opened; i++)
            close(fds[i]);
    }
    free(fds);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: switchboard [-c FILE] [-t]\n"
            "A WebSocket gateway whose event handlers are plugins.\n"
            "\n"
            "  -c, --config FILE   read FILE (default: %s)\n"
            "  -t, --check-config  load the config and every plugin, serve "
            "nothing,\n"
            "                      and exit 0 if all is well or 1 with every "
            "reason\n"
            "  -V, --version       print the version and plugin ABI, then "
            "exit\n"
            "  -h, --help          print this help, then exit\n",
            default_config());
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool check_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            printf("switchboard %s (plugin ABI %d.%d)\n", SB_VERSION,
                   SB_ABI_MAJOR, SB_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "switchboard: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }

    if (!path)
        path = default_config();

    signal(SIGPIPE, SIG_IGN);
    sb_crash_install();

    sb_config cfg;
    int problems = sb_config_load(&cfg, path);
    for (size_t i = 0; i < cfg.nerrors; i++)
        sb_log_error("config", "%s", cfg.errors[i]);
    if (!problems) {
        sb_log_set_level((sb_log_level)cfg.server.log_level);
        sb_log_set_format((sb_log_format)cfg.server.log_format);
    }

    /* Before anything opens descriptors (plugins, lws): both -t and the
     * start say whether the gateways' max_connections fit. */
    sb_fdlimit fds;
    if (!problems)
        sb_fdlimit_raise(&cfg, &fds);

    /* Workers: the master stops here, before any plugin or lws. */
    if (!problems && !check_only && cfg.server.workers > 1) {
        unsigned worker = 0;
        int mrc = run_master(&cfg, path, &worker);
        if (!worker) {
            sb_config_free(&cfg);
            return mrc;
        }
        sb_log_set_worker(worker);
        /* Each worker answers on an admin port of its own, which the
         * master's asks (master_admin.h). */
        if (cfg.admin.port)
            cfg.admin.port += (int)worker;
    }

    /* The loop exists before the plugins: their init may start timers. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    sb_plugin_host ph;
    if (sb_plugin_host_init(&ph, &loop, cfg.gateways, cfg.ngateways) < 0) {
        sb_log_error("core", "out of memory");
        sb_config_free(&cfg);
        return 1;
    }
    sb_bridge_plugin_host(&ph);
    ph.strict_files = cfg.server.strict_plugin_files;
    int failed = problems;
    /* A config with problems is not served, but -t still tries the plugins
     * so that it can list every reason at once. */
    if (!problems || check_only)
        failed += sb_plugin_host_load_config(&ph, &cfg, check_only);

    int rc = 0;
    if (check_only) {
        if (failed)
            fprintf(stderr, "switchboard: %s: %d problem(s), test failed\n",
                    path, failed);
        else
            fprintf(stderr, "switchboard: %s: configuration is valid\n", path);
        rc = failed ? 1 : 0;
    } else if (failed) {
        sb_log_error("core", "not starting: %d problem(s) in %s", failed, path);
        rc = 1;
    } else {
        sb_server server;
        memset(&server, 0, sizeof(server));
        sb_server_hooks hooks = sb_bridge_hooks(&ph);
        char err[512] = "";
        /* A node takes its number from Redis before any client gets an
         * id: without the broker at start, it does not start. */
        if (cfg.cluster.enabled &&
            sb_cluster_open(&cfg.cluster, &loop, err, sizeof(err)) < 0) {
            sb_log_error("cluster", "not starting: %s", err);
            rc = 1;
        } else if (sb_server_start(&server, &cfg, &hooks, &loop) == 0) {
            if (cfg.server.workers > 1)
                sb_supervisor_worker_signals(); /* its handlers are up */
            if (sb_admin_start(&server) == 0) {
                sb_plugin_host_ready(&ph);
            } else {
                rc = 1;
                sb_server_stop(&server); /* no client yet: a quick drain */
            }
            uv_run(&loop, UV_RUN_DEFAULT);
            sb_log_info("core", "stopped");
        } else {
            rc = 1;
        }
        /* Every client is gone: then the plugins, in reverse order. */
        sb_admin_free(&server);
        sb_server_free(&server);
        sb_bridge_cleanup();
        sb_plugin_host_free(&ph);
    }
    sb_plugin_host_free(&ph);
    /* Let the handles closed above (timers, the post queue, the broker's
     * connections) finish. */
    uv_run(&loop, UV_RUN_DEFAULT);
    sb_cluster_free();
    if (uv_loop_close(&loop) != 0)
        sb_log_warn("core", "event loop closed with handles still open");
    sb_config_free(&cfg);
    return rc;
}

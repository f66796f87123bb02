/*
 * main — the command line: read the config, load the plugins, serve until
 * SIGINT/SIGTERM, and undo it all in reverse. Only wiring lives here.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "admin.h"
#include "bridge.h"
#include "cluster.h"
#include "config.h"
#include "crash.h"
#include "fdlimit.h"
#include "log.h"
#include "plugin_host.h"
#include "server.h"
#include "version.h"

#define DEFAULT_CONFIG "etc/switchboard.ini"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: switchboard [-c FILE] [-t]\n"
            "A WebSocket gateway whose event handlers are plugins.\n"
            "\n"
            "  -c, --config FILE   read FILE (default: " DEFAULT_CONFIG ")\n"
            "  -t, --check-config  load the config and every plugin, serve "
            "nothing,\n"
            "                      and exit 0 if all is well or 1 with every "
            "reason\n"
            "  -V, --version       print the version and plugin ABI, then "
            "exit\n"
            "  -h, --help          print this help, then exit\n");
}

/* Loads every enabled plugin. Returns the number of failures that must stop
 * the server (a plugin marked optional only warns). With keep_going every
 * plugin is tried, so that -t reports every reason at once. */
static int load_plugins(sb_plugin_host *ph, const sb_config *cfg,
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
        if (sb_plugin_host_load(ph, pc, err, sizeof(err)) == 0)
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONFIG;
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
        failed += load_plugins(&ph, &cfg, check_only);

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

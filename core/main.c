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

#include "config.h"
#include "crash.h"
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

    /* The loop exists before the plugins: their init may start timers. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    sb_plugin_host ph;
    if (sb_plugin_host_init(&ph, &loop, cfg.gateways, cfg.ngateways) < 0) {
        sb_log_error("core", "out of memory");
        sb_config_free(&cfg);
        return 1;
    }
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
        if (sb_server_start(&server, &cfg, &ph, &loop) == 0) {
            sb_plugin_host_ready(&ph);
            uv_run(&loop, UV_RUN_DEFAULT);
            sb_log_info("core", "stopped");
        } else {
            rc = 1;
        }
        /* Every client is gone: then the plugins, in reverse order. */
        sb_server_free(&server);
        sb_plugin_host_free(&ph);
    }
    sb_plugin_host_free(&ph);
    /* Let the handles closed above (timers, the post queue) finish. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        sb_log_warn("core", "event loop closed with handles still open");
    sb_config_free(&cfg);
    return rc;
}

/* init_fails — a plugin whose init refuses with its own message, after having
 * registered an event (which the host must drop). */
#include <switchboard/plugin.h>

static int on_any(sb_plugin *p, sb_message *m, void *ud)
{
    return SB_OK;
}

static int init_fails_init(sb_plugin *p, const sb_host *host)
{
    host->subscribe(p, "never", on_any, NULL);
    return host->plugin_error(
        p, "database unreachable at %s",
        host->config_get(p, "dsn") ? host->config_get(p, "dsn") : "(no dsn)");
}

SB_PLUGIN_DEFINE("init-fails", "1.0.0", init_fails_init);

/* dup_event — subscribes `identity`, which nest-example already owns; the
 * host must refuse it even though its init "succeeds", and run its unload
 * hook so that what init allocated is released. */
#include <stdio.h>

#include <switchboard/plugin.h>

static int on_identity(sb_plugin *p, sb_message *m, void *ud)
{
    return SB_OK;
}

static void on_unload(sb_plugin *p, void *ud)
{
    fprintf(stderr, "dup-event: unload hook ran\n");
}

static int dup_init(sb_plugin *p, const sb_host *host)
{
    host->subscribe(p, "mine", on_identity, NULL);
    host->subscribe(p, "identity", on_identity, NULL); /* ignores the error */
    host->on_unload(p, on_unload, NULL);
    return SB_OK;
}

SB_PLUGIN_DEFINE("dup-event", "1.0.0", dup_init);

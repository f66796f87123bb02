/*
 * echo — sends every message of a raw gateway (`envelope = none`) back to
 * its sender, text as text and binary as binary, byte for byte.
 *
 * What conformance suites (the Autobahn TestSuite's fuzzing client) and
 * load generators expect of a server under test. On a JSON gateway it
 * takes nothing: it registers only a frame hook. See etc/echo.ini.
 */
#include <switchboard/plugin.h>

static const sb_host *host;

static int on_frame(sb_plugin *p, sb_message *msg, void *udata)
{
    (void)udata;
    size_t len;
    int binary;
    const void *data = host->message_frame(msg, &len, &binary);
    int rc = host->send_frame(p, host->message_client(msg), data, len, binary);
    /* A client that is closing, or over its send queue (then closed with
     * 1008), is not the hook's failure. */
    return rc == SB_ERR_CLOSED || rc == SB_ERR_LIMIT ? SB_OK : rc;
}

static int echo_init(sb_plugin *p, const sb_host *h)
{
    host = h;
    if (h->abi_minor < 3)
        return h->plugin_error(p, "needs a host with ABI 1.3 (raw gateways)");
    return h->on_frame(p, on_frame, NULL);
}

SB_PLUGIN_DEFINE("echo", "1.0.0", echo_init);

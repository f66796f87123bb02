/*
 * sessions — a test plugin for session recovery ([recovery], ABI 1.3's
 * on_session_resumed): `keep` stores the message's data as the client's
 * JSON state (client_state_set) and answers `kept`; the session hook sends
 * the resumed client {"event":"resumed_hook","data":{"previous":P,
 * "state":S,"rooms":R}}, so a test sees what the hook was given.
 */
#include <stddef.h>

#include <switchboard/plugin.h>

static const sb_host *host;

static int on_keep(sb_plugin *p, sb_message *msg, void *udata)
{
    (void)udata;
    json_t *data = host->message_data(msg);
    int rc = host->client_state_set(p, host->message_client(msg),
                                    json_deep_copy(data));
    if (rc != SB_OK)
        return host->fail(msg, "cannot keep: %s", host->strerror(rc));
    return host->reply(msg, "kept", json_null());
}

static void on_resumed(sb_plugin *p, sb_client_id client, sb_client_id previous,
                       json_t *state, json_t *rooms, void *udata)
{
    (void)udata;
    host->send(p, client, "resumed_hook",
               json_pack("{s:I,s:O?,s:O?}", "previous", (json_int_t)previous,
                         "state", state, "rooms", rooms));
}

static int init(sb_plugin *p, const sb_host *h)
{
    host = h;
    if (h->size < offsetof(sb_host, on_session_resumed) + sizeof(void *))
        return h->plugin_error(p, "needs a host with on_session_resumed");
    if (h->subscribe(p, "keep", on_keep, NULL) != SB_OK ||
        h->on_session_resumed(p, on_resumed, NULL) != SB_OK)
        return h->plugin_error(p, "cannot register");
    return SB_OK;
}

SB_PLUGIN_DEFINE("sessions", "1.0.0", init);

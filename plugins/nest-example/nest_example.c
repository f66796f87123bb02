/*
 * nest-example — the NestJS "events" gateway, as a Switchboard plugin.
 *
 * This is the reference a plugin author copies. It is the C twin of
 *
 *   @WebSocketGateway(3000)
 *   export class EventsGateway implements OnGatewayConnection,
 *                                         OnGatewayDisconnect {
 *     @SubscribeMessage('events')
 *     onEvent(@MessageBody() data: unknown): Observable<WsResponse<number>> {
 *       return from([1, 2, 3]).pipe(map(item => ({event: 'events',
 *                                                 data: item})));
 *     }
 *     @SubscribeMessage('identity')
 *     async identity(@MessageBody() data: number): Promise<number> {
 *       return data;
 *     }
 *     handleConnection()    { this.logger.log('Client connected'); }
 *     handleDisconnect()    { this.logger.log('Client disconnected'); }
 *   }
 *
 * What to notice:
 *   - the only exported symbol is the descriptor made by SB_PLUGIN_DEFINE;
 *   - everything is registered in init, which may fail with a message;
 *   - `identity` never decodes its data: reply_data() sends the request's
 *     JSON text back byte for byte, so the hot path builds no json_t;
 *   - reply() steals the json_t it is given, so json_integer() needs no
 *     decref here.
 */
#include <switchboard/plugin.h>

/* The host table: valid from init until the unload hook returns. A plugin
 * instance's state would normally live in a struct passed as udata; this
 * plugin has none beyond the table. */
static const sb_host *host;

/* {"event":"events"} → three frames {"event":"events","data":1..3}. */
static int on_events(sb_plugin *p, sb_message *msg, void *udata)
{
    for (int i = 1; i <= 3; i++) {
        int rc = host->reply(msg, "events", json_integer(i));
        if (rc != SB_OK)
            return rc; /* the client is closing or out of memory */
    }
    return SB_OK;
}

/* {"event":"identity","data":X} → X as a bare JSON value (nothing for null
 * or absent data, as NestJS filters them). */
static int on_identity(sb_plugin *p, sb_message *msg, void *udata)
{
    return host->reply_data(msg);
}

static int on_connect(sb_plugin *p, sb_client_id client, void *udata)
{
    host->log(p, SB_LOG_INFO, "Client connected (id %llu)",
              (unsigned long long)client);
    return SB_OK; /* accept; any other value refuses the client */
}

static void on_disconnect(sb_plugin *p, sb_client_id client, int code,
                          void *udata)
{
    host->log(p, SB_LOG_INFO, "Client disconnected (id %llu, code %d)",
              (unsigned long long)client, code);
}

static void on_ready(sb_plugin *p, void *udata)
{
    host->log(p, SB_LOG_INFO, "Gateway initialized");
}

static int nest_example_init(sb_plugin *p, const sb_host *h)
{
    host = h;
    int rc;
    if ((rc = host->subscribe(p, "events", on_events, NULL)) != SB_OK ||
        (rc = host->subscribe(p, "identity", on_identity, NULL)) != SB_OK)
        return host->plugin_error(p, "cannot subscribe: %s",
                                  host->strerror(rc));
    host->on_ready(p, on_ready, NULL);
    host->on_connect(p, on_connect, NULL);
    host->on_disconnect(p, on_disconnect, NULL);
    return SB_OK;
}

SB_PLUGIN_DEFINE("nest-example", "1.0.0", nest_example_init);

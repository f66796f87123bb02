/*
 * clock — `subscribe` / `unsubscribe` to a `tick` every `interval_ms`.
 *
 * One repeating host timer serves every subscriber: at each tick the time
 * is encoded once and room_send() queues the same bytes for all of them.
 * The subscribers are a host room, so the host keeps the list (and drops a
 * client from it when it disconnects); the plugin only owns the timer, which
 * runs while the room has members: started by the first subscriber, stopped
 * when the last one leaves, whether by `unsubscribe` or by disconnecting
 * (the disconnect hook). The room outlives a hot reload and the timer does
 * not, so the ready hook restarts it for subscribers already waiting.
 *
 * The room is named "<instance>:ticks". Rooms are shared by every plugin of
 * the process and instance names hold no ':', so two clock instances (on two
 * gateways) never mix their subscribers, and no other plugin's room name
 * built the same way can collide with it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <switchboard/plugin.h>

#define CLOCK_MIN_INTERVAL_MS 10
#define CLOCK_MAX_INTERVAL_MS 3600000 /* one hour */

/* One instance's state, handed to every callback as udata and freed by the
 * unload hook. */
typedef struct clock_state {
    const sb_host *host;
    int64_t interval_ms; /* config `interval_ms` */
    bool running;        /* `timer` is a live timer id */
    uint64_t timer;
    char room[]; /* "<instance>:ticks" */
} clock_state;

/* Milliseconds since the Unix epoch, from the wall clock: what a client
 * compares with its own Date.now(). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stop_timer(sb_plugin *p, clock_state *c)
{
    if (!c->running)
        return;
    c->host->timer_stop(p, c->timer);
    c->running = false;
}

/* Stops the timer once nobody listens any more. */
static void stop_if_unused(sb_plugin *p, clock_state *c)
{
    if (!c->running || c->host->room_count(p, c->room) != 0)
        return;
    stop_timer(p, c);
    c->host->log(p, SB_LOG_DEBUG, "no subscribers left: timer stopped");
}

static void on_tick(sb_plugin *p, uint64_t timer, void *udata)
{
    clock_state *c = udata;
    int n = c->host->room_send(
        p, c->room, "tick", json_pack("{s:I}", "now", (json_int_t)now_ms()), 0);
    if (n < 0)
        c->host->log(p, SB_LOG_WARN, "cannot send tick: %s",
                     c->host->strerror(n));
    else if (n == 0)
        stop_if_unused(p, c); /* the last subscriber left unnoticed */
}

static int start_timer(sb_plugin *p, clock_state *c, const char *why)
{
    uint64_t ms = (uint64_t)c->interval_ms;
    int rc = c->host->timer_start(p, ms, ms, on_tick, c, &c->timer);
    if (rc == SB_OK) {
        c->running = true;
        c->host->log(p, SB_LOG_DEBUG, "%s: timer started", why);
    }
    return rc;
}

/* {"event":"subscribe"} → {"event":"subscribed","data":{"interval_ms":N}},
 * then a tick every N ms. Subscribing twice is not an error (one stream). */
static int on_subscribe(sb_plugin *p, sb_message *msg, void *udata)
{
    clock_state *c = udata;
    int rc = c->host->room_join(p, c->host->message_client(msg), c->room);
    if (rc != SB_OK)
        return c->host->fail(msg, "cannot subscribe: %s",
                             c->host->strerror(rc));
    if (!c->running && (rc = start_timer(p, c, "first subscriber")) != SB_OK) {
        /* No ticks would come: do not leave the client subscribed. */
        c->host->room_leave(p, c->host->message_client(msg), c->room);
        return c->host->fail(msg, "cannot start the clock: %s",
                             c->host->strerror(rc));
    }
    return c->host->reply(
        msg, "subscribed",
        json_pack("{s:I}", "interval_ms", (json_int_t)c->interval_ms));
}

/* {"event":"unsubscribe"} → {"event":"unsubscribed"}; no tick follows it.
 * Unsubscribing without a subscription fails. */
static int on_unsubscribe(sb_plugin *p, sb_message *msg, void *udata)
{
    clock_state *c = udata;
    int rc = c->host->room_leave(p, c->host->message_client(msg), c->room);
    if (rc == SB_ERR_NOT_FOUND)
        return c->host->fail(msg, "not subscribed");
    if (rc != SB_OK)
        return c->host->fail(msg, "cannot unsubscribe: %s",
                             c->host->strerror(rc));
    stop_if_unused(p, c);
    return c->host->reply(msg, "unsubscribed", NULL);
}

/* A disconnecting client leaves every room by the host's hand, but only
 * after the disconnect hooks (so that they can still see its rooms): here it
 * still counts as a subscriber. Leaving the room now makes the count true,
 * so the last subscriber's disconnect stops the timer at once. (Were the id
 * already unknown here, room_leave() would fail harmlessly, and the next
 * tick, finding nobody, would stop the timer.) */
static void on_disconnect(sb_plugin *p, sb_client_id client, int code,
                          void *udata)
{
    clock_state *c = udata;
    c->host->room_leave(p, client, c->room);
    stop_if_unused(p, c);
}

/* Runs once all plugins are loaded, and again for the new version of this
 * instance after a hot reload. The room is the host's and outlives a
 * reload, but the old version's timer stops with it: if subscribers are
 * waiting, this version's timer takes over, at its own interval. The
 * host swaps versions within one loop callback, so no tick is doubled or
 * lost between the two timers. */
static void on_ready(sb_plugin *p, void *udata)
{
    clock_state *c = udata;
    if (!c->running && c->host->room_count(p, c->room) > 0 &&
        start_timer(p, c, "subscribers kept from before a reload") != SB_OK)
        c->host->log(p, SB_LOG_ERROR,
                     "cannot restart the clock for its "
                     "subscribers");
}

static void clock_unload(sb_plugin *p, void *udata)
{
    /* The host stops a plugin's timers when it unloads; stopping it here too
     * means no tick can ever reach freed state, whatever the order. */
    stop_timer(p, udata);
    free(udata);
}

static int clock_init(sb_plugin *p, const sb_host *h)
{
    int64_t interval;
    int rc = h->config_int_range(p, "interval_ms", 1000, CLOCK_MIN_INTERVAL_MS,
                                 CLOCK_MAX_INTERVAL_MS, &interval);
    if (rc != SB_OK)
        return rc; /* the host recorded why, naming key, section, range */

    const char *name = h->plugin_name(p);
    size_t room_size = strlen(name) + sizeof(":ticks");
    clock_state *c = malloc(sizeof(*c) + room_size);
    if (!c)
        return h->plugin_error(p, "out of memory");
    *c = (clock_state){.host = h, .interval_ms = interval};
    snprintf(c->room, room_size, "%s:ticks", name);

    if ((rc = h->subscribe(p, "subscribe", on_subscribe, c)) != SB_OK ||
        (rc = h->subscribe(p, "unsubscribe", on_unsubscribe, c)) != SB_OK ||
        (rc = h->on_disconnect(p, on_disconnect, c)) != SB_OK ||
        (rc = h->on_ready(p, on_ready, c)) != SB_OK) {
        free(c);
        return h->plugin_error(p, "cannot register: %s", h->strerror(rc));
    }
    /* Last, so that no failure above leaves a hook that would free c a
     * second time. */
    if ((rc = h->on_unload(p, clock_unload, c)) != SB_OK) {
        free(c);
        return h->plugin_error(p, "cannot register unload: %s",
                               h->strerror(rc));
    }
    return SB_OK;
}

SB_PLUGIN_DEFINE("clock", "1.0.0", clock_init);

/*
 * reloadable — a plugin built several times (BUILD="a", "b", "fail") to be
 * swapped under a running server by the reload tests.
 *
 *   ask   {data:N, id:N} → {"event":"ask","data":{"n":N,"build":B},"id":N}
 *   who                  → {"event":"who","data":{"build":B,"generation":G,
 *                           "count":C,"resumed":R}}
 *   count                → increments the instance counter (handed over
 *                           to the next version), answers it
 *   mine                 → increments this client's own counter, kept by
 *                           the host as client state (survives reloads)
 */
#include <stdlib.h>

#include <switchboard/plugin.h>

#ifndef BUILD
#error "BUILD must name the build"
#endif

typedef struct reloadable {
    const sb_host *host;
    json_int_t count;   /* handed over from version to version */
    json_int_t resumed; /* clients announced to this version */
} reloadable;

static int on_ask(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    json_t *d = r->host->message_data(m);
    return r->host->reply(
        m, "ask",
        json_pack("{s:O,s:s}", "n", d ? d : json_null(), "build", BUILD));
}

static int on_who(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    return r->host->reply(m, "who",
                          json_pack("{s:s,s:I,s:I,s:I}", "build", BUILD,
                                    "generation",
                                    (json_int_t)r->host->plugin_generation(p),
                                    "count", r->count, "resumed", r->resumed));
}

static int on_count(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    return r->host->reply(m, "count", json_integer(++r->count));
}

static int on_mine(sb_plugin *p, sb_message *m, void *ud)
{
    reloadable *r = ud;
    sb_client_id c = r->host->message_client(m);
    json_t *old = r->host->client_state_get(p, c);
    json_int_t n = json_integer_value(old) + 1;
    r->host->client_state_set(p, c, json_integer(n));
    return r->host->reply(m, "mine", json_integer(n));
}

static json_t *on_export(sb_plugin *p, void *ud)
{
    reloadable *r = ud;
    return json_pack("{s:I}", "count", r->count);
}

static void on_import(sb_plugin *p, json_t *state, void *ud)
{
    reloadable *r = ud;
    r->count = json_integer_value(json_object_get(state, "count"));
}

static void on_resume(sb_plugin *p, sb_client_id c, json_t *state, void *ud)
{
    reloadable *r = ud;
    r->resumed++;
}

static void on_unload(sb_plugin *p, void *ud)
{
    free(ud);
}

static int reloadable_init(sb_plugin *p, const sb_host *host)
{
    if (BUILD[0] == 'f')
        return host->plugin_error(p, "init refused on purpose (build %s)",
                                  BUILD);
    reloadable *r = calloc(1, sizeof(*r));
    if (!r)
        return host->plugin_error(p, "out of memory");
    r->host = host;
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"ask", on_ask},
                  {"who", on_who},
                  {"count", on_count},
                  {"mine", on_mine}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (host->subscribe(p, routes[i].event, routes[i].fn, r) != SB_OK) {
            free(r);
            return host->plugin_error(p, "cannot subscribe %s",
                                      routes[i].event);
        }
    host->on_export(p, on_export, r);
    host->on_import(p, on_import, r);
    host->on_resume(p, on_resume, r);
    host->on_unload(p, on_unload, r);
    return SB_OK;
}

SB_PLUGIN_DEFINE("reloadable", "build-" BUILD, reloadable_init);

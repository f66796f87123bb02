/*
 * abi10 — a plugin built against the frozen ABI 1.0 header in tests/abi/1.0,
 * not the current SDK: the proof that 1.1 is additive. It uses every call of
 * the 1.0 table (registration, the plugin itself, the message, replies) and
 * every 1.0 hook, and must load and answer under the current host exactly
 * as it did under a 1.0 host.
 *
 * Config: journal = FILE (required), greeting = TEXT (optional).
 *   abi10.host   → {"event":"abi10.host","data":{"major","minor","size_ok",
 *                   "plugin","greeting","version"}}
 *   abi10.echo   → reply() with the decoded data
 *   abi10.raw    → reply_raw() with the data's text
 *   abi10.value  → reply_value(): the data as a bare value
 *   abi10.data   → reply_data(): the data's bytes as a bare value
 *   abi10.fail   → fail(): an exception with "abi10 says no"
 *   abi10.client → {"client":id,"event":name,"has_id":bool}
 * Hooks write "abi10 ready|connect N|disconnect N CODE|unload" lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/plugin.h>

/* This file must see the 1.0 header, or it proves nothing. */
_Static_assert(SB_ABI_MAJOR == 1 && SB_ABI_MINOR == 0,
               "abi10.c must be built against tests/abi/1.0");

typedef struct old {
    const sb_host *host;
    FILE *journal;
} old;

static void note(old *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(old *o, const char *fmt, ...)
{
    va_list ap;
    fputs("abi10 ", o->journal);
    va_start(ap, fmt);
    vfprintf(o->journal, fmt, ap);
    va_end(ap);
    fputc('\n', o->journal);
    fflush(o->journal);
}

static int on_host(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    const sb_host *h = o->host;
    const char *greeting = h->config_get(p, "greeting");
    /* A newer host's table is at least as big as the one this plugin
     * knows: that is what lets it call every 1.0 entry. */
    json_t *d =
        json_pack("{s:i,s:i,s:b,s:s,s:s?,s:b}", "major", h->abi_major, "minor",
                  h->abi_minor, "size_ok", h->size >= sizeof(sb_host), "plugin",
                  h->plugin_name(p), "greeting", greeting, "version",
                  h->host_version && *h->host_version);
    return h->reply(m, "abi10.host", d);
}

static int on_echo(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    json_t *d = o->host->message_data(m);
    return o->host->reply(m, "abi10.echo", d ? json_incref(d) : NULL);
}

static int on_raw(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    size_t len;
    const char *raw = o->host->message_data_raw(m, &len);
    if (!raw)
        return o->host->fail(m, "abi10.raw needs data");
    return o->host->reply_raw(m, "abi10.raw", raw, len);
}

static int on_value(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    json_t *d = o->host->message_data(m);
    return o->host->reply_value(m, d ? json_incref(d) : NULL);
}

static int on_data(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    return o->host->reply_data(m);
}

static int on_fail(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    o->host->log(p, SB_LOG_INFO, "refusing %s as asked",
                 o->host->message_event(m));
    return o->host->fail(m, "abi10 says no (%s)",
                         o->host->strerror(SB_ERR_NOT_FOUND));
}

static int on_client(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    size_t len;
    const char *id = o->host->message_id_raw(m, &len);
    return o->host->reply(m, "abi10.client",
                          json_pack("{s:I,s:s,s:b}", "client",
                                    (json_int_t)o->host->message_client(m),
                                    "event", o->host->message_event(m),
                                    "has_id", id != NULL));
}

static void on_ready(sb_plugin *p, void *ud)
{
    note(ud, "ready");
}

static int on_connect(sb_plugin *p, sb_client_id id, void *ud)
{
    note(ud, "connect %llu", (unsigned long long)id);
    return SB_OK;
}

static void on_disconnect(sb_plugin *p, sb_client_id id, int code, void *ud)
{
    note(ud, "disconnect %llu %d", (unsigned long long)id, code);
}

static void on_unload(sb_plugin *p, void *ud)
{
    old *o = ud;
    note(o, "unload");
    fclose(o->journal);
    free(o);
}

static int abi10_init(sb_plugin *p, const sb_host *host)
{
    const char *path = host->config_get(p, "journal");
    if (!path)
        return host->plugin_error(p, "'journal' is required");
    old *o = calloc(1, sizeof(*o));
    if (!o)
        return host->plugin_error(p, "out of memory");
    o->host = host;
    o->journal = fopen(path, "a");
    if (!o->journal) {
        free(o);
        return host->plugin_error(p, "cannot open journal %s", path);
    }
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"abi10.host", on_host},    {"abi10.echo", on_echo},
                  {"abi10.raw", on_raw},      {"abi10.value", on_value},
                  {"abi10.data", on_data},    {"abi10.fail", on_fail},
                  {"abi10.client", on_client}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = host->subscribe(p, routes[i].event, routes[i].fn, o);
        if (rc != SB_OK) {
            fclose(o->journal);
            free(o);
            return rc;
        }
    }
    host->on_ready(p, on_ready, o);
    host->on_connect(p, on_connect, o);
    host->on_disconnect(p, on_disconnect, o);
    host->on_unload(p, on_unload, o);
    return SB_OK;
}

SB_PLUGIN_DEFINE("abi10", "1.0.0", abi10_init);

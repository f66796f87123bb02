/*
 * probe — a test plugin that exercises every part of ABI 1.0 and writes what
 * the host told it to a journal file, so integration tests can check hooks.
 *
 * Config keys: journal = FILE (required), refuse = N (refuse every client
 * whose id is a multiple of N; 0 = never).
 *   echo  {data}  → {"event":"echo","data":<data decoded and re-encoded>}
 *   raw   {data}  → {"event":"raw","data":<data as raw text>}
 *   fail  {data}  → host->fail(): exception with "probe failed: <data>"
 *   crash-free error without a message → "Internal server error"
 *   info          → {"event":"info","data":{"client":id,"event":...,
 *                    "has_id":bool}}
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <switchboard/plugin.h>

typedef struct probe {
    const sb_host *host;
    FILE *journal;
    unsigned long long refuse;
} probe;

static void note(probe *pr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(probe *pr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(pr->journal, fmt, ap);
    va_end(ap);
    fflush(pr->journal);
}

static int on_echo(sb_plugin *p, sb_message *m, void *ud)
{
    probe *pr = ud;
    json_t *d = pr->host->message_data(m);
    return pr->host->reply(m, "echo", d ? json_incref(d) : NULL);
}

static int on_raw(sb_plugin *p, sb_message *m, void *ud)
{
    probe *pr = ud;
    size_t len;
    const char *raw = pr->host->message_data_raw(m, &len);
    if (!raw)
        return pr->host->fail(m, "raw needs data");
    return pr->host->reply_raw(m, "raw", raw, len);
}

static int on_value(sb_plugin *p, sb_message *m, void *ud)
{
    probe *pr = ud;
    json_t *d = pr->host->message_data(m);
    return pr->host->reply_value(m, d ? json_incref(d) : NULL);
}

static int on_fail(sb_plugin *p, sb_message *m, void *ud)
{
    probe *pr = ud;
    json_t *d = pr->host->message_data(m);
    return pr->host->fail(m, "probe failed: %s",
                          json_is_string(d) ? json_string_value(d) : "?");
}

static int on_error(sb_plugin *p, sb_message *m, void *ud)
{
    return SB_ERR_INVALID; /* no message: the host says "Internal ..." */
}

static int on_info(sb_plugin *p, sb_message *m, void *ud)
{
    probe *pr = ud;
    size_t idlen;
    const char *id = pr->host->message_id_raw(m, &idlen);
    json_t *o = json_pack(
        "{s:I,s:s,s:b,s:b}", "client", (json_int_t)pr->host->message_client(m),
        "event", pr->host->message_event(m), "has_id", id != NULL,
        "late_subscribe",
        pr->host->subscribe(p, "late", on_info, ud) == SB_ERR_STATE);
    return pr->host->reply(m, "info", o);
}

static int on_connect(sb_plugin *p, sb_client_id id, void *ud)
{
    probe *pr = ud;
    if (pr->refuse && id % pr->refuse == 0) {
        note(pr, "refuse %llu\n", (unsigned long long)id);
        return SB_ERR_FAILED;
    }
    note(pr, "connect %llu\n", (unsigned long long)id);
    return SB_OK;
}

static void on_disconnect(sb_plugin *p, sb_client_id id, int code, void *ud)
{
    note(ud, "disconnect %llu %d\n", (unsigned long long)id, code);
}

static void on_ready(sb_plugin *p, void *ud)
{
    note(ud, "ready\n");
}

static void on_unload(sb_plugin *p, void *ud)
{
    probe *pr = ud;
    note(pr, "unload\n");
    fclose(pr->journal);
    free(pr);
}

static int probe_init(sb_plugin *p, const sb_host *host)
{
    const char *path = host->config_get(p, "journal");
    if (!path)
        return host->plugin_error(p, "'journal' is required");
    probe *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return host->plugin_error(p, "out of memory");
    pr->host = host;
    pr->journal = fopen(path, "a");
    if (!pr->journal) {
        free(pr);
        return host->plugin_error(p, "cannot open journal %s", path);
    }
    const char *refuse = host->config_get(p, "refuse");
    pr->refuse = refuse ? strtoull(refuse, NULL, 10) : 0;
    static const struct {
        const char *event;
        sb_event_fn fn;
    } routes[] = {{"echo", on_echo}, {"raw", on_raw},     {"value", on_value},
                  {"fail", on_fail}, {"error", on_error}, {"info", on_info}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = host->subscribe(p, routes[i].event, routes[i].fn, pr);
        if (rc != SB_OK) {
            fclose(pr->journal);
            free(pr);
            return host->plugin_error(p, "subscribe %s: %s", routes[i].event,
                                      host->strerror(rc));
        }
    }
    host->on_ready(p, on_ready, pr);
    host->on_connect(p, on_connect, pr);
    host->on_disconnect(p, on_disconnect, pr);
    host->on_unload(p, on_unload, pr);
    return SB_OK;
}

SB_PLUGIN_DEFINE("probe", "1.0.0", probe_init);

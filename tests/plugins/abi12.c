/*
 * abi12 — a plugin built against the frozen ABI 1.2 header in tests/abi/1.2,
 * not the current SDK: the proof that 1.3 is additive, and that a plugin of
 * an older minor keeps loading when its section has a key it never reads
 * (a warning, not a refusal), its config_get reads counting as declared.
 *
 * Config: greeting = TEXT (config_get), limit = N (config_int).
 *   abi12.host → {"event":"abi12.host","data":{"major","minor","size_ok",
 *                 "greeting","limit","generation"}}
 */
#include <stdio.h>
#include <stdlib.h>

#include <switchboard/plugin.h>

/* This file must see the 1.2 header, or it proves nothing. */
_Static_assert(SB_ABI_MAJOR == 1 && SB_ABI_MINOR == 2,
               "abi12.c must be built against tests/abi/1.2");

typedef struct old {
    const sb_host *host;
    const char *greeting;
    int64_t limit;
} old;

static int on_host(sb_plugin *p, sb_message *m, void *ud)
{
    old *o = ud;
    const sb_host *h = o->host;
    json_t *d =
        json_pack("{s:i,s:i,s:b,s:s?,s:I,s:I}", "major", h->abi_major, "minor",
                  h->abi_minor, "size_ok", h->size >= sizeof(sb_host),
                  "greeting", o->greeting, "limit", (json_int_t)o->limit,
                  "generation", (json_int_t)h->plugin_generation(p));
    return h->reply(m, "abi12.host", d);
}

static void abi12_unload(sb_plugin *p, void *ud)
{
    free(ud);
}

static int abi12_init(sb_plugin *p, const sb_host *h)
{
    old *o = calloc(1, sizeof(*o));
    if (!o)
        return h->plugin_error(p, "out of memory");
    o->host = h;
    /* A 1.0-style read: it counts as declaring the key. */
    o->greeting = h->config_get(p, "greeting");
    int rc = h->config_int(p, "limit", 3, &o->limit);
    if (rc == SB_OK)
        rc = h->subscribe(p, "abi12.host", on_host, o);
    if (rc == SB_OK)
        rc = h->on_unload(p, abi12_unload, o);
    if (rc != SB_OK)
        free(o);
    return rc;
}

SB_PLUGIN_DEFINE("abi12", "1.2.0", abi12_init);

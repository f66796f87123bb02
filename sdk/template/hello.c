/*
 * hello — a copy-and-go Switchboard plugin.
 *
 *   {"event":"hello","data":"Ada"}  →  {"event":"hello","data":"Hello, Ada!"}
 *
 * The greeting comes from the plugin's own config section:
 *   [plugin.hello]
 *   file = /path/to/hello.so
 *   greeting = Hello      ; optional, "Hello" by default
 */
#include <stdio.h>
#include <stdlib.h>

#include <switchboard/plugin.h>

typedef struct hello {
    const sb_host *host;
    const char *greeting; /* borrowed from the config: valid until unload */
} hello;

static int on_hello(sb_plugin *p, sb_message *msg, void *udata)
{
    hello *h = udata;
    json_t *data = h->host->message_data(msg); /* borrowed, may be NULL */
    if (!json_is_string(data))
        return h->host->fail(msg, "hello wants a name (a string)");
    char text[256];
    snprintf(text, sizeof(text), "%s, %s!", h->greeting,
             json_string_value(data));
    return h->host->reply(msg, "hello", json_string(text)); /* stolen */
}

static void on_unload(sb_plugin *p, void *udata)
{
    free(udata);
}

static int hello_init(sb_plugin *p, const sb_host *host)
{
    hello *h = calloc(1, sizeof(*h));
    if (!h)
        return host->plugin_error(p, "out of memory");
    h->host = host;
    /* Every key of the section is read here, in init: the keys read are
     * the plugin's declared keys, and any other one is refused as a typo. */
    int rc = host->config_string(p, "greeting", "Hello", &h->greeting);
    if (rc == SB_OK)
        rc = host->subscribe(p, "hello", on_hello, h);
    if (rc == SB_OK)
        rc = host->on_unload(p, on_unload, h);
    if (rc != SB_OK) {
        /* The host recorded why (the bad key, the event's owner): return
         * its status, do not overwrite that with plugin_error(). */
        free(h);
        return rc;
    }
    return SB_OK;
}

SB_PLUGIN_DEFINE("hello", "0.1.0", hello_init);

/*
 * switchboard/plugin.h — the Switchboard plugin ABI, version 1.0.
 *
 * This is the only header a plugin author needs. It depends on the C standard
 * headers and <jansson.h>, nothing else. A plugin never links against the
 * core: everything it may call reaches it through the host function table
 * (struct sb_host) handed to its init function.
 *
 * The contract, in short:
 *   - A plugin exports exactly one symbol, the descriptor defined by
 *     SB_PLUGIN_DEFINE(). The host refuses a plugin whose ABI major differs
 *     from its own, or whose minor is newer than its own.
 *   - Registrations (subscriptions and hooks) are valid only during init;
 *     every registration belongs to the plugin and is removed when it unloads.
 *   - Every callback runs on the host's single event-loop thread. A plugin is
 *     never called concurrently with itself and must never block.
 *   - Handles (sb_plugin, sb_message) are opaque. An sb_message is valid only
 *     during the callback it was passed to. Anything a plugin keeps beyond a
 *     callback is an id (sb_client_id), never a pointer: a stale id gives an
 *     error code, never a crash.
 *   - Strings and json_t values passed *to* a plugin are borrowed for the
 *     duration of the call. json_t values passed *to* the host are stolen
 *     (jansson's "_new" convention): the host releases them, also on error.
 *   - Within a major version this header only grows: new functions are added
 *     at the end of struct sb_host, never reordered or removed. See
 *     sdk/CHANGES.md for the history.
 */
#ifndef SWITCHBOARD_PLUGIN_H
#define SWITCHBOARD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ------------------------------------------------------------ */

/* The ABI this header describes. A host accepts a plugin built against the
 * same major and a minor no newer than the host's own. */
#define SB_ABI_MAJOR 1
#define SB_ABI_MINOR 0

/* First field of every descriptor: "SBPL" in ASCII. */
#define SB_PLUGIN_MAGIC 0x5342504cu

/* The name of the one symbol a plugin exports. */
#define SB_PLUGIN_SYMBOL "sb_plugin_descriptor"

/* ---- status codes -------------------------------------------------------- */

/* Every host call that can fail returns one of these: 0 is success, every
 * failure is negative. sb_host.strerror() gives a short English text. */
typedef enum sb_status {
    SB_OK = 0,
    SB_ERR_INVALID = -1,   /* an argument is NULL, empty or out of range */
    SB_ERR_STATE = -2,     /* not allowed now (e.g. registering after init) */
    SB_ERR_EXISTS = -3,    /* the event is already subscribed by a plugin */
    SB_ERR_NOT_FOUND = -4, /* no such client (the id is stale) or key */
    SB_ERR_NOMEM = -5,     /* out of memory */
    SB_ERR_CLOSED = -6,    /* the client is closing; nothing more is sent */
    SB_ERR_LIMIT = -7,     /* a configured limit was reached (send queue) */
    SB_ERR_JSON = -8,      /* a value is not valid JSON / cannot be encoded */
    SB_ERR_FAILED = -9     /* returned by fail()/plugin_error(): the caller
                              reports a failure whose message is recorded */
} sb_status;

/* ---- log levels ---------------------------------------------------------- */

typedef enum sb_log_level {
    SB_LOG_ERROR = 0,
    SB_LOG_WARN = 1,
    SB_LOG_INFO = 2,
    SB_LOG_DEBUG = 3
} sb_log_level;

/* ---- opaque handles ------------------------------------------------------ */

/* One loaded plugin instance ([plugin.NAME] section). Owned by the host; valid
 * from init until the unload hook returns. */
typedef struct sb_plugin sb_plugin;

/* The message being handled. Owned by the host; valid only during the event
 * handler it is passed to. */
typedef struct sb_message sb_message;

/* A connected client. Ids are unique for the life of the process and never
 * reused; keep ids, never pointers. */
typedef uint64_t sb_client_id;

/* ---- callback types ------------------------------------------------------ */

/* Handles one event. Return SB_OK when done (whether or not it replied), or
 * the result of host->fail(msg, ...) to send the client an `exception` that
 * carries your message. Any other non-zero value sends an `exception` with the
 * message "Internal server error". */
typedef int (*sb_event_fn)(sb_plugin *plugin, sb_message *msg, void *udata);

/* All plugins are loaded and every listener is up (NestJS afterInit). */
typedef void (*sb_ready_fn)(sb_plugin *plugin, void *udata);

/* A client completed the WebSocket handshake. Return SB_OK to accept it; any
 * other value refuses it: the client is closed with code 1008 before any of
 * its messages is handled. */
typedef int (*sb_connect_fn)(sb_plugin *plugin, sb_client_id client,
                             void *udata);

/* A client is gone. close_code is the WebSocket close code the client sent or
 * was sent (1005 when none was given, 1006 when the connection dropped). The
 * id is already stale for sending; it stays valid as a key. Called only for
 * clients whose connect hooks all accepted. */
typedef void (*sb_disconnect_fn)(sb_plugin *plugin, sb_client_id client,
                                 int close_code, void *udata);

/* The plugin is about to be unloaded (shutdown, or removed from config). Free
 * what init allocated. Registrations are removed by the host afterwards. */
typedef void (*sb_unload_fn)(sb_plugin *plugin, void *udata);

/* ---- the host function table --------------------------------------------- */

/* Handed to init and valid until the unload hook returns. Plugins may keep the
 * pointer. Functions marked "init only" return SB_ERR_STATE elsewhere. */
typedef struct sb_host {
    uint32_t size;      /* sizeof(struct sb_host) in the host: grows only */
    uint16_t abi_major; /* the host's SB_ABI_MAJOR */
    uint16_t abi_minor; /* the host's SB_ABI_MINOR */
    const char *host_version; /* e.g. "0.1.0"; static, never freed */

    /* -- registration (init only) -- */

    /* Routes `event` to fn. `event` is copied. An event has one handler per
     * gateway: SB_ERR_EXISTS if another plugin (or this one) has it. */
    int (*subscribe)(sb_plugin *plugin, const char *event, sb_event_fn fn,
                     void *udata);
    /* Lifecycle hooks; at most one of each kind per plugin (a second call
     * replaces the first). */
    int (*on_ready)(sb_plugin *plugin, sb_ready_fn fn, void *udata);
    int (*on_connect)(sb_plugin *plugin, sb_connect_fn fn, void *udata);
    int (*on_disconnect)(sb_plugin *plugin, sb_disconnect_fn fn, void *udata);
    int (*on_unload)(sb_plugin *plugin, sb_unload_fn fn, void *udata);

    /* -- the plugin itself -- */

    /* The instance name (NAME of [plugin.NAME]). Borrowed, valid until
     * unload. */
    const char *(*plugin_name)(const sb_plugin *plugin);
    /* The raw value of `key` in the plugin's own config section, or NULL when
     * absent. Borrowed, valid until unload. */
    const char *(*config_get)(const sb_plugin *plugin, const char *key);
    /* Records why init failed; the host logs it with the plugin's name.
     * printf-style. Returns SB_ERR_FAILED so that init can
     * `return host->plugin_error(p, "...")`. */
    int (*plugin_error)(sb_plugin *plugin, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;
    /* Writes one log line tagged with the plugin's name. printf-style. */
    void (*log)(const sb_plugin *plugin, sb_log_level level, const char *fmt,
                ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* A short static English text for an sb_status. Never NULL. */
    const char *(*strerror)(int status);

    /* -- the message being handled (event handlers only) -- */

    /* The event name. Borrowed, valid during the handler. */
    const char *(*message_event)(const sb_message *msg);
    /* The sender's id. */
    sb_client_id (*message_client)(const sb_message *msg);
    /* The envelope's `data`, decoded on the first call and cached: NULL when
     * the envelope had no `data`, a JSON null when it said null. Borrowed:
     * valid during the handler; json_incref() it to keep it longer. A handler
     * that never calls this never pays for a decode. */
    json_t *(*message_data)(sb_message *msg);
    /* The envelope's `data` as the exact JSON text the client sent (already
     * validated), or NULL when absent. Not NUL-terminated; *len gets its
     * length. Borrowed, valid during the handler. */
    const char *(*message_data_raw)(const sb_message *msg, size_t *len);
    /* The envelope's `id` as JSON text (a number or a quoted string), or NULL
     * when the request had none. Not NUL-terminated. Borrowed. */
    const char *(*message_id_raw)(const sb_message *msg, size_t *len);

    /* -- replies to the sender (event handlers only) -- */

    /* Sends {"event":event,"data":data} to the sender, with the request's
     * "id" copied when it had one. `data` is stolen (may be NULL: no data
     * key). `event` is copied. */
    int (*reply)(sb_message *msg, const char *event, json_t *data);
    /* Like reply(), with `data` given as JSON text of `len` bytes, validated
     * and copied by the host (SB_ERR_JSON if it is not one JSON value). */
    int (*reply_raw)(sb_message *msg, const char *event, const char *json,
                     size_t len);
    /* Sends `value` as a bare JSON value (NestJS sends a handler's plain
     * return value this way). Stolen. NULL or JSON null sends nothing and
     * returns SB_OK. */
    int (*reply_value)(sb_message *msg, json_t *value);
    /* Sends the request's own `data` back as a bare JSON value, byte for
     * byte, without decoding it. Absent or null data sends nothing. */
    int (*reply_data)(sb_message *msg);
    /* Records why the handler failed; after the handler returns, the sender
     * gets {"event":"exception","data":{"status":"error","message":M,
     * "cause":{"pattern":event,"data":data}}} (with "id" when known).
     * printf-style. Returns SB_ERR_FAILED so that a handler can
     * `return host->fail(msg, "...")`. */
    int (*fail)(sb_message *msg, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;
} sb_host;

/* ---- the descriptor ------------------------------------------------------ */

/* Called once after the host has checked the descriptor. Register here.
 * Return SB_OK, or host->plugin_error(plugin, ...) to refuse loading (the
 * host then drops every registration made so far and unloads the file). */
typedef int (*sb_init_fn)(sb_plugin *plugin, const sb_host *host);

/* The one exported symbol. Fields are only ever added at the end; `size`
 * tells the host how much of it the plugin knows. */
typedef struct sb_plugin_desc {
    uint32_t magic;      /* SB_PLUGIN_MAGIC */
    uint16_t abi_major;  /* SB_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor;  /* SB_ABI_MINOR the plugin was built against */
    uint32_t size;       /* sizeof(struct sb_plugin_desc) at build time */
    const char *name;    /* short name of the plugin (not the instance) */
    const char *version; /* the plugin's own version string */
    sb_init_fn init;
} sb_plugin_desc;

#if defined(__GNUC__)
#define SB_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SB_PLUGIN_EXPORT
#endif

/* Defines the exported descriptor. Use once per plugin, at file scope:
 *
 *     SB_PLUGIN_DEFINE("chat", "1.2.0", chat_init);
 */
#define SB_PLUGIN_DEFINE(name_, version_, init_)                               \
    SB_PLUGIN_EXPORT const sb_plugin_desc sb_plugin_descriptor = {             \
        SB_PLUGIN_MAGIC, SB_ABI_MAJOR,                                         \
        SB_ABI_MINOR,    (uint32_t)sizeof(sb_plugin_desc),                     \
        (name_),         (version_),                                           \
        (init_)}

#ifdef __cplusplus
}
#endif

#endif /* SWITCHBOARD_PLUGIN_H */

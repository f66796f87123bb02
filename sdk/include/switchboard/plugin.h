/*
 * switchboard/plugin.h — the Switchboard plugin ABI, version 1.3.
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
#define SB_ABI_MINOR 3

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
    SB_ERR_FAILED = -9,    /* returned by fail()/plugin_error(): the caller
                              reports a failure whose message is recorded */

    SB_ERR_CANCELLED = -10, /* 1.1: work cancelled before it ran (unload) */
    /* 1.3: a per-client call (client_state_*, client_data_*) from a version
     * of the plugin that was replaced by a reload, removed, or is being
     * unloaded: see "retired versions" below. A plugin built against an
     * older header sees an unknown negative code (strerror() names it). */
    SB_ERR_RETIRED = -11,
    /* 1.3: the call needs the cluster's broker (Redis), which is down or
     * not taking more now; local calls keep working. */
    SB_ERR_UNAVAILABLE = -12
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
 * carries your message (once fail() was called, the exception is sent
 * whatever the handler returns). Any other non-zero value sends an
 * `exception` with the message "Internal server error", and the host logs a
 * warning naming the plugin, the event and the value. */
typedef int (*sb_event_fn)(sb_plugin *plugin, sb_message *msg, void *udata);

/* All plugins are loaded and every listener is up (NestJS afterInit). Also
 * called for a version loaded by a hot reload, or a plugin added at run
 * time, once it serves (1.2). */
typedef void (*sb_ready_fn)(sb_plugin *plugin, void *udata);

/* A client completed the WebSocket handshake. Return SB_OK to accept it; any
 * other value refuses it: the client is closed with code 1008 before any of
 * its messages is handled. */
typedef int (*sb_connect_fn)(sb_plugin *plugin, sb_client_id client,
                             void *udata);

/* A client is gone. close_code is the WebSocket close code the client sent or
 * was sent (1005 when none was given, 1006 when the connection dropped).
 * Nothing can be sent to it any more, but during the hook it is still in
 * its rooms and its state and info can still be read; afterwards its id is
 * stale. Called for every client this plugin's connect hook accepted (and,
 * for a plugin without one, every client that all connect hooks accepted),
 * and for every client a reload announced to this version (resume hook, or
 * connect hook without one); never for a client this plugin refused.
 * Disconnect hooks run in the reverse of config order. */
typedef void (*sb_disconnect_fn)(sb_plugin *plugin, sb_client_id client,
                                 int close_code, void *udata);

/* The plugin is about to be unloaded (shutdown, or removed from config). Free
 * what init allocated. Registrations are removed by the host afterwards. */
typedef void (*sb_unload_fn)(sb_plugin *plugin, void *udata);

/* -- 1.1 -- */

/* The WebSocket handshake being decided. Owned by the host; valid only
 * during the handshake hook. */
typedef struct sb_handshake sb_handshake;

/* Decides a handshake before the upgrade is answered. Return SB_OK to accept
 * (optionally after handshake_set_identity()), or an HTTP status from 400 to
 * 599 to refuse the upgrade with it (401, 403, 429...). Hooks run in config
 * order; the first refusal wins and later hooks are not asked. */
typedef int (*sb_handshake_fn)(sb_plugin *plugin, sb_handshake *hs,
                               void *udata);

/* Runs before every event handler of the client's gateway, in config order.
 * Return SB_OK to let the event through, or host->fail(msg, ...) to deny it:
 * the client then gets an `exception` and no handler runs. */
typedef int (*sb_guard_fn)(sb_plugin *plugin, sb_message *msg, void *udata);

/* A timer fired. For a one-shot timer the id is stale afterwards. */
typedef void (*sb_timer_fn)(sb_plugin *plugin, uint64_t timer, void *udata);

/* Runs on a thread-pool thread, never on the loop: it may block, but must
 * call no host function except post(). */
typedef void (*sb_work_fn)(void *udata);

/* The work is over, on the loop thread: status is SB_OK after the work ran,
 * SB_ERR_CANCELLED if it was cancelled before it started (the plugin is
 * being unloaded). Free udata here. */
typedef void (*sb_done_fn)(sb_plugin *plugin, int status, void *udata);

/* What post() asked for, on the loop thread. */
typedef void (*sb_post_fn)(sb_plugin *plugin, void *udata);

/* Releases per-client data (client_data_set), on the loop thread. */
typedef void (*sb_destroy_fn)(void *ptr);

/* -- 1.2: hot reload -- */

/* The old version of a plugin being replaced hands over its state: return a
 * new JSON value (the host releases it) or NULL. Called once, before the
 * new version's import hook; the old version still owns its resources and
 * is unloaded (unload hook) afterwards. */
typedef json_t *(*sb_export_fn)(sb_plugin *plugin, void *udata);

/* The new version receives what the old one exported (borrowed; NULL when
 * nothing was exported). Called after its init, before any event. */
typedef void (*sb_import_fn)(sb_plugin *plugin, json_t *state, void *udata);

/* A client that was already connected when this plugin was (re)loaded: the
 * connect-like hook of a hot reload or of a plugin added at runtime. `state`
 * is what client_state_set() kept for this plugin and client (borrowed, may
 * be NULL). Clients cannot be refused here. */
typedef void (*sb_resume_fn)(sb_plugin *plugin, sb_client_id client,
                             json_t *state, void *udata);

/* -- 1.3: raw gateways -- */

/* One whole message of a raw gateway (`envelope = none`), reassembled from
 * its fragments: read it with message_frame(). Runs after the gateway's
 * event guards, in place of an event handler. Return SB_OK; anything else
 * (or fail()) is logged and counted as a failed handler, and the client
 * gets nothing: a raw gateway has no error message of its own. */
typedef int (*sb_frame_fn)(sb_plugin *plugin, sb_message *msg, void *udata);

/* -- 1.3: cluster -- */

/* The answer to room_count_cluster() or room_members(), on the loop
 * thread, once: status SB_OK with `count` members, and for room_members()
 * `members`, a JSON array of their ids (borrowed for the call; NULL for
 * room_count_cluster()); or SB_ERR_UNAVAILABLE when the cluster's broker
 * could not answer (count 0, members NULL). `room` is borrowed. Not called
 * if the plugin is unloaded or replaced before the answer comes. */
typedef void (*sb_presence_fn)(sb_plugin *plugin, int status, const char *room,
                               size_t count, json_t *members, void *udata);

/* -- 1.3: session recovery -- */

/* A client resumed a session ([recovery]): `client` is its new id,
 * `previous` the id the session had (never called when the resume found
 * no session: that client is a fresh one). `state` is what client_state_set()
 * kept for this plugin, restored on the new id (borrowed, may be NULL). `rooms`
 * is the answer the client got,
 * {"ROOM":{"recovered":true|false,"epoch":E,"offset":N}} (borrowed): the client
 * is a member of each again, and where `recovered` is false it missed messages
 * it will never get (push it a snapshot). Runs after the connect hook of the
 * new id. */
typedef void (*sb_session_fn)(sb_plugin *plugin, sb_client_id client,
                              sb_client_id previous, json_t *state,
                              json_t *rooms, void *udata);

/* ---- retired versions (1.3) ---------------------------------------------- */

/* A version of a plugin is retired when a reload replaces it, when its
 * section is removed from the config, and at shutdown. From then on the
 * host calls none of its hooks or handlers, stops its timers (without a
 * last call) and cancels its queued work. What it may still do:
 *   - its running work completes, and the done callbacks run (SB_OK), on
 *     the loop thread as always;
 *   - it may post() while work of it runs, and every post runs;
 *   - then its unload hook runs, and its image is dlclosed.
 * From those callbacks it may send, close clients, use rooms and log;
 * timer_start() and work_queue() answer SB_ERR_STATE, and the per-client
 * state and data calls SB_ERR_RETIRED: the version that replaced it owns
 * the client slots now, and nothing may point into an image after its
 * dlclose. A plugin built against an older header sees SB_ERR_RETIRED as
 * an unknown negative code: treat every negative code as a failure. */

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
     * gateway: SB_ERR_EXISTS if another plugin (or this one) has it. When
     * another plugin has it, the reason naming both is recorded and the
     * plugin is refused whatever init returns, so init may just return the
     * code. */
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
     * "cause":{"pattern":event,"data":data}}} (with "id" when known),
     * whatever the handler returns. Only the first call per message counts;
     * later ones change nothing. printf-style; the text is made valid UTF-8
     * (U+FFFD for bad bytes) and kept up to 255 bytes, a longer one cut on
     * a character boundary and ending with "…" (U+2026). Returns
     * SB_ERR_FAILED so that a handler can `return host->fail(msg, "...")`. */
    int (*fail)(sb_message *msg, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;

    /* ==== 1.1 ============================================================
     * Everything below exists when host->abi_minor >= 1 (always true for a
     * plugin built against 1.1, since the host refuses newer minors). Calls
     * taking a client id return SB_ERR_NOT_FOUND for a stale id. */

    /* -- clients -- */

    /* A new JSON object describing the client, or NULL for a stale id:
     * {"id":N,"remote":"1.2.3.4","gateway":"default","path":"/",
     *  "query":"a=1","headers":{"host":"...",...},"identity":<or null>}.
     * Header names are lower-case; "headers" holds the request headers
     * libwebsockets knows by name (host, origin, user-agent, cookie,
     * authorization, ...): others are readable only in a handshake hook
     * (handshake_header). "query" is as handshake_query() gives it. The
     * caller owns it (json_decref).
     * Since 1.3 it answers for every live client: in "path", "query" and
     * header values, each byte that is not part of valid UTF-8 (a query
     * such as ?a=%ff decodes to any bytes; a header may be Latin-1) is
     * replaced by U+FFFD, and the object then has a key "not_utf8": an
     * array of the names of the fields so repaired ("path", "query", or
     * the header's name). Without such bytes there is no "not_utf8".
     * (Before 1.3 such a client gave NULL, and such headers were left
     * out.) */
    json_t *(*client_info)(sb_client_id client);
    /* The identity a handshake hook attached, or NULL. Borrowed: valid
     * until the client disconnects; json_incref() to keep it. */
    json_t *(*client_identity)(sb_client_id client);
    /* Closes the client with a close code (1000, 1008, 4000-4999...) and a
     * reason of at most 123 bytes, after what is already queued for it. */
    int (*client_close)(sb_client_id client, int code, const char *reason);

    /* -- per-client state, per plugin instance. Besides the codes below,
     * the four calls answer SB_ERR_RETIRED (1.3) to a retired version
     * (see "retired versions" above), and SB_ERR_STATE during init (the
     * instance has no client slot before it serves); the getters then
     * return NULL. On any error the host keeps nothing: a pointer given
     * to client_data_set() stays the caller's, destroy is not called. -- */

    /* Keeps `value` for this plugin and client (stolen; NULL clears). Kept by
     * the host until the client disconnects, and across hot reloads of the
     * plugin. */
    int (*client_state_set)(sb_plugin *plugin, sb_client_id client,
                            json_t *value);
    /* The value kept by client_state_set, or NULL. Borrowed. */
    json_t *(*client_state_get)(sb_plugin *plugin, sb_client_id client);
    /* Keeps a pointer for this plugin and client; `destroy` (may be NULL) is
     * called with it when replaced, when the client disconnects (after the
     * disconnect hook) and when the plugin unloads. */
    int (*client_data_set)(sb_plugin *plugin, sb_client_id client, void *ptr,
                           sb_destroy_fn destroy);
    /* The pointer kept by client_data_set, or NULL. */
    void *(*client_data_get)(sb_plugin *plugin, sb_client_id client);

    /* -- sending, from any loop-thread callback. send(), send_ack() and
     * client_close() reach any client by id, whatever its gateway;
     * broadcast() reaches the plugin's own gateways; rooms span every
     * gateway. Text on the wire is UTF-8: an event name that is not is
     * refused (SB_ERR_INVALID, here and in reply()/reply_raw()); bytes of
     * a close reason or exception message that are not become U+FFFD. -- */

    /* Sends {"event":event,"data":data} to one client. `data` is stolen
     * (NULL: no data key); `event` is copied. */
    int (*send)(sb_plugin *plugin, sb_client_id to, const char *event,
                json_t *data);
    /* Like send(), with "id" set to `id` (JSON text of `id_len` bytes, as
     * message_id_raw() gave it; copied): an acknowledgement sent after the
     * handler returned, e.g. from a work completion. NULL id: as send(). */
    int (*send_ack)(sb_plugin *plugin, sb_client_id to, const char *event,
                    json_t *data, const char *id, size_t id_len);
    /* Sends {"event":event,"data":data} to every client of the plugin's
     * gateways except `except` (0: none). Serialised once. Stolen. Returns
     * the number of clients it was queued for, or an error. */
    int (*broadcast)(sb_plugin *plugin, const char *event, json_t *data,
                     sb_client_id except);

    /* -- rooms: named sets of clients, shared by every plugin of the
     * process (so that, say, a moderation plugin can reach a chat's room).
     * To keep a room private, prefix its name with plugin_name() and a
     * ':' (instance names never contain ':'). -- */

    /* Adds the client to `room` (created on first join). Joining twice is
     * SB_OK. A client leaves every room when it disconnects. */
    int (*room_join)(sb_plugin *plugin, sb_client_id client, const char *room);
    /* Removes it; SB_ERR_NOT_FOUND if it was not a member. An empty room
     * is deleted. */
    int (*room_leave)(sb_plugin *plugin, sb_client_id client, const char *room);
    /* Sends {"event":event,"data":data} to every member except `except`
     * (0: none). Serialised once; stolen. Returns the number of members it
     * was queued for (0 for an unknown room), or an error. */
    int (*room_send)(sb_plugin *plugin, const char *room, const char *event,
                     json_t *data, sb_client_id except);
    /* The number of members of `room` (0 when it does not exist). */
    size_t (*room_count)(sb_plugin *plugin, const char *room);
    /* A new JSON array of the names of the rooms the client is in, sorted;
     * NULL for a stale id. The caller owns it. */
    json_t *(*client_rooms)(sb_plugin *plugin, sb_client_id client);

    /* -- asynchronous work -- */

    /* Calls fn after delay_ms, then every repeat_ms if it is not 0. *timer
     * (may be NULL) gets an id for timer_stop(). A plugin's timers are
     * stopped when it unloads. */
    int (*timer_start)(sb_plugin *plugin, uint64_t delay_ms, uint64_t repeat_ms,
                       sb_timer_fn fn, void *udata, uint64_t *timer);
    /* Stops a timer; SB_ERR_NOT_FOUND if it already fired (one-shot) or was
     * stopped. Safe from inside its own callback. */
    int (*timer_stop)(sb_plugin *plugin, uint64_t timer);
    /* Runs work(udata) on the thread pool, then done(plugin, status, udata)
     * on the loop thread. Before a plugin unloads, its queued work is
     * cancelled (done gets SB_ERR_CANCELLED) and running work is waited for,
     * so no code of the plugin runs after its unload hook. */
    int (*work_queue)(sb_plugin *plugin, sb_work_fn work, sb_done_fn done,
                      void *udata);
    /* The one call that is safe from any thread: runs fn(plugin, udata) on
     * the loop thread soon. Posts still pending when the plugin unloads run
     * before its unload hook. A plugin being unloaded (or a retired
     * version) still takes posts while any of its work runs (its work
     * function may post its result); once the last work has completed,
     * post() returns SB_ERR_STATE. */
    int (*post)(sb_plugin *plugin, sb_post_fn fn, void *udata);

    /* -- guards (registration: init only) -- */

    int (*on_handshake)(sb_plugin *plugin, sb_handshake_fn fn, void *udata);
    int (*on_guard)(sb_plugin *plugin, sb_guard_fn fn, void *udata);

    /* -- the handshake being decided (handshake hooks only); strings are
     * borrowed for the duration of the hook -- */

    /* The request path without the query, e.g. "/chat". */
    const char *(*handshake_path)(const sb_handshake *hs);
    /* The query arguments, URL-decoded by libwebsockets and joined with
     * '&' ("user=ada&x=1"), or "" when there are none. */
    const char *(*handshake_query)(const sb_handshake *hs);
    /* The URL-decoded value of query argument `name`, or NULL. */
    const char *(*handshake_query_arg)(sb_handshake *hs, const char *name);
    /* The value of request header `name` (any case), or NULL. */
    const char *(*handshake_header)(sb_handshake *hs, const char *name);
    /* The peer's address, e.g. "127.0.0.1" or "::1". */
    const char *(*handshake_remote)(const sb_handshake *hs);
    /* The gateway's name ("default" for [server]). */
    const char *(*handshake_gateway)(const sb_handshake *hs);
    /* Attaches an identity to the client being accepted (stolen), visible
     * to every plugin through client_identity(). A later hook replaces it. */
    int (*handshake_set_identity)(sb_handshake *hs, json_t *identity);

    /* -- typed config getters for the plugin's own section. On a bad value
     * they return SB_ERR_INVALID, on a missing required key
     * SB_ERR_NOT_FOUND, and in both cases record a message naming the key,
     * the section and the expected type, so that init can just
     * `return rc;` and the host logs why. `out` gets the default when the
     * key is absent. Strings are borrowed until unload. -- */

    int (*config_string)(sb_plugin *plugin, const char *key, const char *def,
                         const char **out);
    /* Decimal integers; optional k/m/g suffix (binary). */
    int (*config_int)(sb_plugin *plugin, const char *key, int64_t def,
                      int64_t *out);
    /* true/false, yes/no, on/off, 1/0. */
    int (*config_bool)(sb_plugin *plugin, const char *key, int def, int *out);
    int (*config_double)(sb_plugin *plugin, const char *key, double def,
                         double *out);
    /* A string that must be present and non-empty. */
    int (*config_require)(sb_plugin *plugin, const char *key, const char **out);

    /* -- the message being handled, 1.1 additions -- */

    /* The gateway the message arrived on. Borrowed. */
    const char *(*message_gateway)(const sb_message *msg);

    /* ==== 1.2: hot reload ================================================
     * A [plugin.NAME] section is one instance; reloading it (SIGHUP after
     * its file or section changed, or its file replaced with watch = true)
     * loads the new build next to the old one, runs its init, and only
     * then swaps their registrations between two loop iterations. Every
     * message is handled by exactly one of the two. */

    /* Registration (init only): the handover hooks above. */
    int (*on_export)(sb_plugin *plugin, sb_export_fn fn, void *udata);
    int (*on_import)(sb_plugin *plugin, sb_import_fn fn, void *udata);
    int (*on_resume)(sb_plugin *plugin, sb_resume_fn fn, void *udata);
    /* 1 for the first load of an instance, +1 at every successful reload. */
    uint64_t (*plugin_generation)(const sb_plugin *plugin);
    /* When this generation was loaded, in ms since the Unix epoch. */
    uint64_t (*plugin_loaded_at)(const sb_plugin *plugin);
    /* Sends {"event":"exception","data":{"status":"error","message":M}}
     * to a client after its handler returned (e.g. from a work
     * completion), with "id" set to `id` (JSON text as message_id_raw()
     * gave it; copied; NULL: none). `message` is copied. */
    int (*send_exception)(sb_plugin *plugin, sb_client_id to, const char *id,
                          size_t id_len, const char *message);
    /* 1 if the client is in `room`, 0 if not (also for a stale id). */
    int (*room_has)(sb_plugin *plugin, sb_client_id client, const char *room);

    /* ==== 1.3 ============================================================
     * Plugins declare their keys: every key its init looks up with a config
     * getter (config_get included), present or not, is the plugin's. After
     * a successful init, a key of its section that neither the host (file,
     * enabled, optional, gateways, watch) nor the plugin asked for refuses
     * the plugin, at start, for -t and at a reload:
     *   unknown key 'max_key' in [plugin.tally] (it reads: max_keys)
     * So read every key during init. For a plugin built against 1.0-1.2 it
     * is a warning only. */

    /* config_int() with bounds: `out` gets `def` when the key is absent
     * (`def` is not checked), the value when it is an integer from `min`
     * to `max` inclusive. Otherwise SB_ERR_INVALID, with the message
     * "bad value 'V' for 'KEY' in [plugin.NAME] (expected an integer from
     * MIN to MAX)" recorded for init to return. SB_ERR_INVALID also when
     * min > max. */
    int (*config_int_range)(sb_plugin *plugin, const char *key, int64_t def,
                            int64_t min, int64_t max, int64_t *out);

    /* ---- 1.3: raw gateways and subprotocols ----------------------------
     * A gateway with `envelope = none` carries whole WebSocket messages,
     * text or binary, with no JSON envelope: one plugin serving it takes
     * them through on_frame() and answers with send_frame(). Connect,
     * disconnect and handshake hooks, guards, rooms, per-client state and
     * the limits apply as on a JSON gateway. */

    /* Registration (init only): the plugin's frame hook. A gateway has one:
     * SB_ERR_EXISTS (and the plugin is refused) when another plugin serving
     * one of its raw gateways has one. A plugin serving no raw gateway is
     * never called. */
    int (*on_frame)(sb_plugin *plugin, sb_frame_fn fn, void *udata);
    /* The message's payload: `*len` bytes, `*binary` 1 for a binary
     * message, 0 for text (valid UTF-8: the host checked it). Borrowed,
     * valid during the hook; not NUL-terminated. NULL on a JSON gateway's
     * message. In a guard on a raw gateway, message_event() is "" and
     * message_data() NULL: a guard reads the payload here. */
    const void *(*message_frame)(const sb_message *msg, size_t *len,
                                 int *binary);
    /* Queues one message as a single frame, text (binary = 0: must be
     * valid UTF-8, else SB_ERR_INVALID) or binary, to a client of a raw
     * gateway (SB_ERR_INVALID for a JSON gateway's client). Copied. */
    int (*send_frame)(sb_plugin *plugin, sb_client_id to, const void *data,
                      size_t len, int binary);
    /* The same to every client of the plugin's raw gateways except
     * `except` (0: none), framed once. Returns the number of clients it was
     * queued for, or an error. */
    int (*broadcast_frame)(sb_plugin *plugin, const void *data, size_t len,
                           int binary, sb_client_id except);
    /* The same to the members of `room` that came through a raw gateway
     * (members of JSON gateways are skipped). Returns the number reached
     * (0 for an unknown room), or an error. */
    int (*room_send_frame)(sb_plugin *plugin, const char *room,
                           const void *data, size_t len, int binary,
                           sb_client_id except);
    /* The WebSocket subprotocol agreed with the client (one of its
     * gateway's `subprotocols`), or NULL when none was. Borrowed, valid
     * while the client is connected. Also in client_info() as
     * "subprotocol". */
    const char *(*client_subprotocol)(sb_client_id client);

    /* ---- 1.3: cluster --------------------------------------------------
     * With a [cluster] section several processes (nodes) share one Redis.
     * Cluster-wide: room_send() and broadcast() (every node's members and
     * clients; they return this node's count, and SB_ERR_UNAVAILABLE while
     * the broker is down), send(), send_ack(), send_exception() and
     * client_close() to an id of another node (SB_OK once handed to the
     * broker: a client that is gone there is not reported back), and the
     * two calls below. Local to this node: room_count(), room_has(),
     * client_rooms(), client_info(), client_identity(), the per-client
     * state, room_join()/room_leave() of this node's clients. Client ids
     * are below 2^53 everywhere; in a cluster, id >> 32 is the owning
     * node's number. Without [cluster] every call is as in one process.
     * Check host->size before using these: a 1.2 host lacks them. */

    /* fn gets the number of members of `room` on every live node (members
     * of a node that died stop counting within its [cluster] node_ttl).
     * Asks Redis in a cluster; in one process, answers from the local
     * room. fn is always called later, never before this returns. SB_OK
     * (fn will be called once), SB_ERR_INVALID, SB_ERR_STATE (during init
     * or from a retired version), SB_ERR_UNAVAILABLE (broker down: fn is
     * not called), SB_ERR_NOMEM. */
    int (*room_count_cluster)(sb_plugin *plugin, const char *room,
                              sb_presence_fn fn, void *udata);
    /* Like room_count_cluster(), with the members' ids. */
    int (*room_members)(sb_plugin *plugin, const char *room, sb_presence_fn fn,
                        void *udata);

    /* ---- 1.3: session recovery ----
     * Registers the hook of resumed sessions (init only; SB_ERR_STATE
     * otherwise). Never called without [recovery]. Check host->size: an
     * earlier 1.3 host lacks it. */
    int (*on_session_resumed)(sb_plugin *plugin, sb_session_fn fn, void *udata);
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

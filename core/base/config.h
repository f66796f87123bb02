/*
 * config — reads the INI file (with libinih) into an sb_config.
 *
 * Owns the parsed settings and the list of problems found. Knows nothing of
 * sockets or plugins: it checks [server] keys and values, and collects each
 * [plugin.NAME] section as ordered key/value pairs for the plugin host.
 * Every problem names the file and line. Relative paths are resolved against
 * the folder of the config file.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sb_unknown_event {
    SB_UNKNOWN_IGNORE = 0,   /* count it and send nothing (NestJS) */
    SB_UNKNOWN_EXCEPTION = 1 /* send an `exception` */
} sb_unknown_event;

/* What a gateway's messages are (`envelope`). */
typedef enum sb_envelope_kind {
    SB_ENVELOPE_JSON = 0, /* {"event","data","id"}, routed by event */
    SB_ENVELOPE_NONE = 1  /* raw: whole frames to one plugin's frame hook */
} sb_envelope_kind;

typedef struct sb_config_kv {
    char *key;
    char *value;
    int line;
} sb_config_kv;

typedef struct sb_plugin_conf {
    char *name;         /* NAME in [plugin.NAME] */
    char *file;         /* `file`, resolved against the config folder */
    bool enabled;       /* `enabled`, default true */
    bool optional;      /* `optional`, default false */
    int line;           /* line of the section header */
    sb_config_kv *keys; /* every key of the section, in file order */
    size_t nkeys;
    /* `gateways = a, b`: indexes into sb_config.gateways; every gateway
     * when the key is absent. */
    size_t *gateways;
    size_t ngateways;
} sb_plugin_conf;

typedef struct sb_server_conf {
    char *host;                     /* default NULL = every interface */
    int port;                       /* default 3000 */
    char *path;                     /* default "/" */
    size_t max_message_size;        /* bytes, default 1 MiB */
    unsigned max_json_depth;        /* default 64 */
    size_t max_send_queue;          /* bytes per client, default 1 MiB */
    unsigned ping_interval;         /* seconds, 0 = off; default 30 */
    unsigned idle_timeout;          /* seconds, 0 = off; default 0 */
    unsigned max_connections;       /* 0 = unlimited; default 10000 */
    sb_unknown_event unknown_event; /* default ignore */
    int log_level;                  /* sb_log_level, default info */
    unsigned shutdown_timeout; /* seconds to wait for close handshakes, 5 */
    /* Issue 5/6 keys. Per gateway unless noted "global". */
    unsigned max_connections_per_ip; /* 0 = unlimited; default 0 */
    unsigned rate_limit;        /* messages per second per client, 0 = off */
    unsigned rate_burst;        /* messages allowed at once; default 100 */
    char *allowed_origins;      /* "a b c" (Origin values), NULL = any */
    char *tls_cert, *tls_key;   /* PEM files (resolved), NULL = plain ws */
    size_t rx_buffer_size;      /* global: lws receive buffer per client */
    unsigned handshake_timeout; /* global: seconds to finish the upgrade */
    bool strict_plugin_files;   /* global: refuse writable plugin files */
    bool watch;                 /* global: reload plugins when replaced */
    int log_format;             /* global: sb_log_format, default text */
    bool log_connections;       /* global: connects/disconnects at info */
    /* global: after the upgrade, plain connections are read and written by
     * the server itself (net/wsio.c), not libwebsockets */
    bool own_data_path;
    /* global: the own path batches a loop turn's reads and writes into one
     * io_uring submission each, when the kernel allows io_uring and the
     * build has liburing; otherwise (or false) one recv()/send() each */
    bool io_uring;
    size_t send_queue_budget; /* global: bytes of all send queues, 0 = off;
                                 default 256 MiB */
    unsigned workers;         /* global: worker processes, 1..SB_MAX_WORKERS
                                 (`auto` = online cores); default 1 = one
                                 process, no master */
    /* `static`: the real path of the folder this listener serves over plain
     * HTTP (static.c), NULL = none. Not inherited from [server]. */
    char *static_dir;
    /* `envelope = json|none` (default json), and `subprotocols = a, b`:
     * the WebSocket subprotocols it accepts, kept as "a,b" (each an RFC
     * 7230 token of 1..63 characters), NULL = none. Both inherited from
     * [server]. */
    sb_envelope_kind envelope;
    char *subprotocols;
} sb_server_conf;

/* One listener: [server] is the gateway "default"; each [gateway.NAME] adds
 * one. A gateway's limits are the [server] values unless its section sets
 * them. */
/* Plugins keep the gateways they serve as bits of a uint64_t. */
#define SB_MAX_GATEWAYS 64
/* [server] workers: the most worker processes one master runs. */
#define SB_MAX_WORKERS 256

typedef struct sb_gateway_conf {
    char *name;
    int line;            /* of the section header, 0 for [server] */
    sb_server_conf conf; /* host, port, path and the per-gateway limits */
} sb_gateway_conf;

/* [admin]: the operator's HTTP listener (admin.c). */
typedef struct sb_admin_conf {
    char *host;  /* NULL: 127.0.0.1 */
    int port;    /* 0 (no `port`): no admin listener */
    char *token; /* bearer token every request must carry; NULL: none */
} sb_admin_conf;

/* [cluster]: the Redis broker that joins nodes (core/cluster). Absent: one
 * process, exactly as without it. Durations in milliseconds. */
typedef struct sb_cluster_conf {
    bool enabled;        /* the section is present */
    int line;            /* of its header */
    char *redis_host;    /* redis://HOST:PORT[/DB]; NULL with redis_unix */
    int redis_port;      /* default 6379 */
    int redis_db;        /* default 0 */
    char *redis_unix;    /* unix:/PATH, or NULL */
    char *password_file; /* resolved; its first line is the password */
    char *node;          /* NULL: "<host name>-<pid>" */
    char *prefix;        /* of every key and channel, default "sb:" */
    unsigned connect_timeout_ms; /* default 2000 */
    unsigned command_timeout_ms; /* default 5000 */
    unsigned reconnect_min_ms;   /* default 100 */
    unsigned reconnect_max_ms;   /* default 5000 */
    unsigned node_ttl_ms;        /* heartbeat key TTL, default 15000 */
    unsigned probe_interval_ms;  /* subscriber liveness probe, 5000 */
    size_t max_pending;          /* bytes queued for Redis, default 64 MiB */
} sb_cluster_conf;

/* [recovery]: session recovery (host/recovery.c). Absent: no sessions,
 * no history, the wire exactly as without it. */
typedef struct sb_recovery_conf {
    bool enabled;          /* the section is present */
    int line;              /* of its header */
    unsigned session_ttl;  /* seconds a dropped session is kept, 120 */
    unsigned history_size; /* messages kept per room, 100 */
    size_t history_bytes;  /* bytes of messages kept per room, 1 MiB */
    unsigned history_ttl;  /* seconds a room message is kept, 300 */
    unsigned max_recover;  /* most messages one resume replays, 300 */
    /* `rooms = all` (NULL, the default) or `rooms = a, b`: the room name
     * prefixes whose rooms keep history, as a NULL-terminated list. */
    char **room_prefixes;
} sb_recovery_conf;

typedef struct sb_config {
    char *file; /* the path as given */
    char *dir;  /* its folder, absolute */
    sb_server_conf server;
    sb_admin_conf admin;
    sb_cluster_conf cluster;
    sb_recovery_conf recovery;
    sb_gateway_conf *gateways; /* [0] is "default" ([server]) */
    size_t ngateways;
    sb_plugin_conf *plugins; /* in file order */
    size_t nplugins;
    char **errors; /* "FILE:LINE: message", one per problem */
    size_t nerrors;
} sb_config;

/* Reads `path` into *cfg (which it initialises). Returns 0 when there was no
 * problem, otherwise the number of problems, each in cfg->errors. A missing or
 * unreadable file is one problem. cfg must be freed with sb_config_free()
 * in every case. */
int sb_config_load(sb_config *cfg, const char *path);

/* Frees everything sb_config_load() allocated. Safe on a zeroed struct. */
void sb_config_free(sb_config *cfg);

/* Parses true/false, yes/no, on/off or 1/0 (any case): the booleans of
 * every config value, plugins' included. False when it is none of them. */
bool sb_config_parse_bool(const char *s, bool *out);

/* Parses a whole number with an optional k, m or g suffix (binary: 1k =
 * 1024, 1m = 1024k, 1g = 1024m): the sizes and counts of every config
 * value, plugins' included. With signed_ok a leading '-' or '+' is allowed
 * and *negative (may be NULL) says which; *out gets the magnitude. False
 * when it is not such a number or does not fit 64 bits. */
bool sb_config_parse_scaled(const char *s, bool signed_ok, bool *negative,
                            unsigned long long *out);

/* The value of `key` in a plugin section, or NULL. */
const char *sb_plugin_conf_get(const sb_plugin_conf *pc, const char *key);

#endif

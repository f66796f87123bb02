/*
 * config — turns the operator's INI file into checked [server] settings and
 * ordered [plugin.NAME] key lists for the plugin host. It keeps going after a
 * problem and records each one as "FILE:LINE: message", because an operator
 * running `switchboard -t` wants every reason at once, not one per attempt.
 *
 * Syntax (libinih decides it; these are the defaults Debian builds it with):
 *   - `[section]` headers; anything after the closing ']' is ignored.
 *   - `key = value` or `key: value`: the first '=' or ':' separates, and the
 *     whitespace around key and value is stripped.
 *   - Comments: lines starting with ';' or '#'; an inline comment starts with
 *     ';' preceded by whitespace (`port = 80 ; web`). A '#' inside a value,
 *     or a ';' with no space before it, is part of the value.
 *   - A UTF-8 byte-order mark at the start of the file is skipped.
 *   - A line holds at most 198 characters (libinih reads into a 200-byte
 *     buffer, and would split a longer line in two); longer is an error.
 *   - libinih treats an indented line that follows a key as the next line
 *     of that key's value. We refuse those lines: an accidentally indented
 *     `enabled = no` would otherwise silently become part of the value above.
 *   - Section and key names are case-sensitive; word values are not.
 *
 * Values:
 *   - integers: decimal digits only — no sign, no spaces, no trailing junk.
 *   - sizes: an integer of bytes, optionally followed by one of k/K, m/M,
 *     g/G, all binary (1k = 1024, 1m = 1024k, 1g = 1024m): `1m`, `65536`.
 *   - durations: whole seconds, optionally followed by 's': `30`, `30s`.
 *   - booleans: true/false, yes/no, on/off, 1/0.
 *   - paths (a plugin's `file`): relative ones are resolved against the
 *     folder that holds the config file, so the file can move with its tree.
 */
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the parse in progress ---------------------------------------------- */

/* Debian's libinih is built without INI_HANDLER_LINENO, so the handler never
 * learns a line number; it also calls nothing for a section header (so an
 * empty [plugin.x] or [admin] would go unseen), reports only the first
 * syntax error, and its own count drifts on a line it had to split. So each
 * physical line is handed to libinih on its own, in a frame: two lines
 * before it restore the parser's state (a section, and whether a value is
 * open so that an indented line continues it) and two probe lines after it
 * read the state back. libinih still decides every question of syntax; we
 * only carry its state from one line to the next. */
enum {
    FRAME_SECTION, /* "[a]" or "[b]": any header; see parse_line() */
    FRAME_OPEN,    /* "p=" when a value is open, else an empty line */
    FRAME_LINE,    /* the physical line */
    FRAME_CONT,    /* " sbprobe": a continuation iff a value is still open */
    FRAME_PROBE,   /* "sbprobe=": reports the section after the line */
    FRAME_LINES
};

struct frame {
    const char *text[FRAME_LINES];
    int next;     /* the frame line the reader hands over next */
    int max_line; /* the longest line libinih's buffer holds */
    bool too_long;
    bool oom;
    /* What libinih reported. */
    char *name;  /* the key on FRAME_LINE, or NULL */
    char *value; /* its value */
    bool open_after;
    char *section_after;
};

enum section_kind {
    SEC_NONE,    /* before any header: every key is an error */
    SEC_SERVER,  /* [server] */
    SEC_PLUGIN,  /* [plugin.NAME]: p->plugin indexes cfg->plugins */
    SEC_GATEWAY, /* [gateway.NAME]: p->gateway indexes cfg->gateways */
    SEC_ADMIN,   /* [admin] */
    SEC_CLUSTER, /* [cluster] */
    SEC_RECOV,   /* [recovery] */
    SEC_SKIP     /* a section already reported as wrong: its keys are not */
};

struct parser {
    sb_config *cfg;
    int *error_lines; /* the line of each cfg->errors entry, for ordering */
    bool oom;
    bool value_open; /* libinih would take an indented line as continuation */
    enum section_kind kind;
    size_t plugin;
    size_t gateway;
    /* Which keys each gateway set itself (bit = enum server_key_id); the
     * others are copied from [server] once the whole file is read. */
    unsigned *gateway_set;
    int server_line;  /* of the first [server], 0 if none yet */
    int admin_line;   /* of the first [admin], 0 if none yet */
    int workers_line; /* of [server] workers, 0 if not set */
    int redis_line;   /* of [cluster]'s `redis`, 0 if none yet */
    char *last_key;   /* names the value an indented line would continue */
    struct frame frame;
};

static char *dup_or_oom(struct parser *p, const char *s)
{
    char *d = strdup(s);
    if (!d)
        p->oom = true;
    return d;
}

/* Errors are kept in line order (line 0, the file itself, first) because
 * some are only known at the end — a [plugin.x] without `file` — and an
 * operator reads the list top to bottom next to the file. */
static void add_error(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct parser *p, int line, const char *fmt, ...)
{
    sb_config *cfg = p->cfg;
    char *msg = NULL, *full = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        p->oom = true;
        return;
    }
    n = line > 0 ? asprintf(&full, "%s:%d: %s", cfg->file, line, msg)
                 : asprintf(&full, "%s: %s", cfg->file, msg);
    free(msg);
    if (n < 0) {
        p->oom = true;
        return;
    }
    char **errors = realloc(cfg->errors, (cfg->nerrors + 1) * sizeof(*errors));
    if (errors)
        cfg->errors = errors;
    int *lines = realloc(p->error_lines, (cfg->nerrors + 1) * sizeof(*lines));
    if (lines)
        p->error_lines = lines;
    if (!errors || !lines) {
        free(full);
        p->oom = true;
        return;
    }
    size_t at = cfg->nerrors;
    while (at > 0 && lines[at - 1] > line) {
        errors[at] = errors[at - 1];
        lines[at] = lines[at - 1];
        at--;
    }
    errors[at] = full;
    lines[at] = line;
    cfg->nerrors++;
}

/* ---- values ------------------------------------------------------------- */

/* At least one decimal digit, with no sign and no overflow; *rest points
 * after the digits, for the caller to check what follows. */
static bool parse_digits(const char *s, unsigned long long *out,
                         const char **rest)
{
    unsigned long long v = 0;
    const char *q = s;
    for (; *q >= '0' && *q <= '9'; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (q == s)
        return false;
    *out = v;
    *rest = q;
    return true;
}

static bool parse_integer(const char *s, unsigned long long *out)
{
    const char *rest;
    return parse_digits(s, out, &rest) && *rest == '\0';
}

bool sb_config_parse_scaled(const char *s, bool signed_ok, bool *negative,
                            unsigned long long *out)
{
    bool neg = false;
    if (signed_ok && (*s == '-' || *s == '+'))
        neg = *s++ == '-';
    const char *rest;
    unsigned long long v;
    if (!parse_digits(s, &v, &rest))
        return false;
    unsigned shift = 0;
    switch (*rest) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return false;
    }
    if (shift && rest[1] != '\0')
        return false;
    if (v > (ULLONG_MAX >> shift))
        return false;
    *out = v << shift;
    if (negative)
        *negative = neg;
    return true;
}

static bool parse_size(const char *s, unsigned long long *out)
{
    return sb_config_parse_scaled(s, false, NULL, out);
}

static bool parse_seconds(const char *s, unsigned long long *out)
{
    const char *rest;
    if (!parse_digits(s, out, &rest))
        return false;
    return rest[0] == '\0' || (rest[0] == 's' && rest[1] == '\0');
}

bool sb_config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* sb_log_level_parse() takes lower case only; word values here take any. */
static int parse_log_level(const char *s)
{
    char lower[8];
    size_t n = strlen(s);
    if (n >= sizeof(lower))
        return -1;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)tolower((unsigned char)s[i]);
    return sb_log_level_parse(lower);
}

/* ---- [server] ----------------------------------------------------------- */

enum server_key_id {
    SK_HOST,
    SK_PORT,
    SK_PATH,
    SK_MAX_MESSAGE_SIZE,
    SK_MAX_JSON_DEPTH,
    SK_MAX_SEND_QUEUE,
    SK_PING_INTERVAL,
    SK_IDLE_TIMEOUT,
    SK_MAX_CONNECTIONS,
    SK_UNKNOWN_EVENT,
    SK_LOG_LEVEL,
    SK_SHUTDOWN_TIMEOUT,
    SK_MAX_CONNECTIONS_PER_IP,
    SK_RATE_LIMIT,
    SK_RATE_BURST,
    SK_ALLOWED_ORIGINS,
    SK_TLS_CERT,
    SK_TLS_KEY,
    SK_RX_BUFFER_SIZE,
    SK_HANDSHAKE_TIMEOUT,
    SK_STRICT_PLUGIN_FILES,
    SK_WATCH,
    SK_LOG_FORMAT,
    SK_LOG_CONNECTIONS,
    SK_SEND_QUEUE_BUDGET,
    SK_STATIC,
    SK_ENVELOPE,
    SK_SUBPROTOCOLS,
    SK_WORKERS,
    SK_OWN_DATA_PATH,
    SK_IO_URING
};

/* Keys that only [server] may set: they are process-wide. */
#define SK_GLOBAL_ONLY                                                         \
    ((1u << SK_LOG_LEVEL) | (1u << SK_SHUTDOWN_TIMEOUT) |                      \
     (1u << SK_RX_BUFFER_SIZE) | (1u << SK_HANDSHAKE_TIMEOUT) |                \
     (1u << SK_STRICT_PLUGIN_FILES) | (1u << SK_WATCH) |                       \
     (1u << SK_LOG_FORMAT) | (1u << SK_LOG_CONNECTIONS) |                      \
     (1u << SK_SEND_QUEUE_BUDGET) | (1u << SK_WORKERS) |                       \
     (1u << SK_OWN_DATA_PATH) | (1u << SK_IO_URING))

enum value_kind {
    V_TEXT,
    V_INTEGER,
    V_SIZE,
    V_SECONDS,
    V_WORD,
    V_BOOL,
    V_PATH
};

/* Upper bounds, and why they are where they are: a message is held whole in
 * memory and parsed in one go, and beyond 1 GiB that is a mistake rather
 * than a setting; a day is the longest sensible keepalive or timeout, and
 * keeps seconds * 1000 within an int for timer APIs; libwebsockets counts
 * connections in an int. */
#define SIZE_1G       (1ULL << 30)
#define DAY           86400ULL
#define SECONDS_0_DAY "whole seconds 0..86400, optionally followed by 's'"

static const struct server_key {
    const char *name;
    enum server_key_id id;
    enum value_kind kind;
    unsigned long long min, max;
    const char *expected;
} server_keys[] = {
    {"host", SK_HOST, V_TEXT, 0, 0, "a host name or address"},
    {"port", SK_PORT, V_INTEGER, 1, 65535, "an integer 1..65535"},
    {"path", SK_PATH, V_TEXT, 0, 0,
     "a URL path starting with '/', without spaces"},
    {"max_message_size", SK_MAX_MESSAGE_SIZE, V_SIZE, 64, SIZE_1G,
     "a size 64..1g in bytes, with an optional k, m or g suffix"},
    {"max_json_depth", SK_MAX_JSON_DEPTH, V_INTEGER, 1, 10000,
     "an integer 1..10000"},
    {"max_send_queue", SK_MAX_SEND_QUEUE, V_SIZE, 1, SIZE_MAX,
     "a size of at least 1 byte, with an optional k, m or g suffix"},
    {"ping_interval", SK_PING_INTERVAL, V_SECONDS, 0, DAY,
     SECONDS_0_DAY "; 0 = off"},
    {"idle_timeout", SK_IDLE_TIMEOUT, V_SECONDS, 0, DAY,
     SECONDS_0_DAY "; 0 = off"},
    {"max_connections", SK_MAX_CONNECTIONS, V_INTEGER, 0, INT_MAX,
     "an integer 0..2147483647; 0 = unlimited"},
    {"unknown_event", SK_UNKNOWN_EVENT, V_WORD, 0, 0,
     "'ignore' or 'exception'"},
    {"log_level", SK_LOG_LEVEL, V_WORD, 0, 0,
     "'error', 'warn', 'info' or 'debug'"},
    {"shutdown_timeout", SK_SHUTDOWN_TIMEOUT, V_SECONDS, 0, DAY, SECONDS_0_DAY},
    {"max_connections_per_ip", SK_MAX_CONNECTIONS_PER_IP, V_INTEGER, 0, INT_MAX,
     "an integer 0..2147483647; 0 = unlimited"},
    {"rate_limit", SK_RATE_LIMIT, V_INTEGER, 0, 1000000,
     "messages per second 0..1000000; 0 = off"},
    {"rate_burst", SK_RATE_BURST, V_INTEGER, 1, 1000000,
     "an integer 1..1000000"},
    {"allowed_origins", SK_ALLOWED_ORIGINS, V_TEXT, 0, 0,
     "Origin values separated by spaces or commas"},
    {"tls_cert", SK_TLS_CERT, V_PATH, 0, 0, "a PEM certificate file"},
    {"tls_key", SK_TLS_KEY, V_PATH, 0, 0, "a PEM private key file"},
    {"rx_buffer_size", SK_RX_BUFFER_SIZE, V_SIZE, 128, 1 << 20,
     "a size 128..1m in bytes, with an optional k or m suffix"},
    {"handshake_timeout", SK_HANDSHAKE_TIMEOUT, V_SECONDS, 1, DAY,
     "whole seconds 1..86400, optionally followed by 's'"},
    {"strict_plugin_files", SK_STRICT_PLUGIN_FILES, V_BOOL, 0, 0,
     "true/false, yes/no, on/off or 1/0"},
    {"watch", SK_WATCH, V_BOOL, 0, 0, "true/false, yes/no, on/off or 1/0"},
    {"log_format", SK_LOG_FORMAT, V_WORD, 0, 0, "'text' or 'json'"},
    {"log_connections", SK_LOG_CONNECTIONS, V_BOOL, 0, 0,
     "true/false, yes/no, on/off or 1/0"},
    {"own_data_path", SK_OWN_DATA_PATH, V_BOOL, 0, 0,
     "true/false, yes/no, on/off or 1/0"},
    {"io_uring", SK_IO_URING, V_BOOL, 0, 0,
     "true/false, yes/no, on/off or 1/0"},
    {"workers", SK_WORKERS, V_WORD, 0, 0,
     "an integer 1..256 or 'auto' (one per core)"},
    {"send_queue_budget", SK_SEND_QUEUE_BUDGET, V_SIZE, 0, 1ULL << 40,
     "a size 0..1024g in bytes, with an optional k, m or g suffix; 0 = off"},
    {"static", SK_STATIC, V_PATH, 0, 0,
     "an existing folder, relative to the config file's"},
    {"envelope", SK_ENVELOPE, V_WORD, 0, 0, "'json' or 'none'"},
    {"subprotocols", SK_SUBPROTOCOLS, V_TEXT, 0, 0,
     "subprotocol names (tokens of 1..63 characters) separated by commas"},
};

/* RFC 7230 tchar: what a subprotocol name may hold. */
static bool is_tchar(unsigned char c)
{
    return c > ' ' && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

/* "a, b ,c" -> "a,b,c" (malloc'd), or NULL when a name is empty, too long
 * for libwebsockets (63 characters) or not a token. */
static char *parse_subprotocols(const char *value, bool *oom)
{
    size_t n = strlen(value);
    char *out = malloc(n + 1), *o = out;
    if (!out) {
        *oom = true;
        return NULL;
    }
    const char *v = value;
    for (;;) {
        while (*v == ' ' || *v == '\t')
            v++;
        const char *start = v;
        while (is_tchar((unsigned char)*v))
            v++;
        size_t len = (size_t)(v - start);
        while (*v == ' ' || *v == '\t')
            v++;
        if (len == 0 || len > 63 || (*v && *v != ',')) {
            free(out);
            return NULL;
        }
        if (o != out)
            *o++ = ',';
        memcpy(o, start, len);
        o += len;
        if (!*v++)
            break;
    }
    *o = 0;
    return out;
}

static bool valid_url_path(const char *s)
{
    if (s[0] != '/')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* Checks one [server] value and stores it; false when it is bad. */
static char *resolve_path(struct parser *p, const char *value);

/* Replaces the resolved path `path` (taken) with its real path in *out when
 * it names an existing folder; false when it does not. */
static bool real_folder(struct parser *p, char *path, char **out)
{
    struct stat st;
    char *real = realpath(path, NULL);
    free(path);
    if (!real) {
        if (errno == ENOMEM)
            p->oom = true;
        return errno == ENOMEM; /* out of memory is not the value's fault */
    }
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return false;
    }
    *out = real;
    return true;
}

/* `workers`: 1..SB_MAX_WORKERS, or `auto`, one per online core (capped
 * the same); -1 when it is neither. */
static int parse_workers(const char *value)
{
    unsigned long long n = 0;
    if (strcasecmp(value, "auto") == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores < 1 ? 1 : (unsigned long long)cores;
        return n > SB_MAX_WORKERS ? SB_MAX_WORKERS : (int)n;
    }
    if (!parse_integer(value, &n) || n < 1 || n > SB_MAX_WORKERS)
        return -1;
    return (int)n;
}

static bool server_set(struct parser *p, sb_server_conf *srv,
                       const struct server_key *k, const char *value)
{
    unsigned long long n = 0;
    int word = 0;
    bool ok = false, flag = false;

    switch (k->kind) {
    case V_TEXT:
    case V_PATH:
        ok = k->id == SK_PATH ? valid_url_path(value) : value[0] != '\0';
        break;
    case V_BOOL:
        ok = sb_config_parse_bool(value, &flag);
        break;
    case V_INTEGER:
        ok = parse_integer(value, &n);
        break;
    case V_SIZE:
        ok = parse_size(value, &n);
        break;
    case V_SECONDS:
        ok = parse_seconds(value, &n);
        break;
    case V_WORD:
        if (k->id == SK_LOG_LEVEL) {
            word = parse_log_level(value);
        } else if (k->id == SK_ENVELOPE) {
            word = strcasecmp(value, "json") == 0   ? SB_ENVELOPE_JSON
                   : strcasecmp(value, "none") == 0 ? SB_ENVELOPE_NONE
                                                    : -1;
        } else if (k->id == SK_WORKERS) {
            word = parse_workers(value);
        } else if (k->id == SK_LOG_FORMAT) {
            word = strcasecmp(value, "text") == 0   ? SB_LOG_TEXT
                   : strcasecmp(value, "json") == 0 ? SB_LOG_JSON
                                                    : -1;
        } else {
            word = strcasecmp(value, "ignore") == 0      ? SB_UNKNOWN_IGNORE
                   : strcasecmp(value, "exception") == 0 ? SB_UNKNOWN_EXCEPTION
                                                         : -1;
        }
        ok = word >= 0;
        break;
    }
    if (k->kind == V_INTEGER || k->kind == V_SIZE || k->kind == V_SECONDS)
        ok = ok && n >= k->min && n <= k->max;
    if (!ok)
        return false;

    char *text = NULL;
    if (k->kind == V_PATH) {
        text = resolve_path(p, value);
        if (!text)
            return true; /* not the value's fault */
    } else if (k->id == SK_SUBPROTOCOLS) {
        text = parse_subprotocols(value, &p->oom);
        if (!text)
            return p->oom;
    } else if (k->kind == V_TEXT) {
        text = dup_or_oom(p, value);
        if (!text)
            return true; /* not the value's fault */
    }
    switch (k->id) {
    case SK_HOST:
        free(srv->host);
        srv->host = text;
        break;
    case SK_PATH:
        free(srv->path);
        srv->path = text;
        break;
    case SK_PORT:
        srv->port = (int)n;
        break;
    case SK_MAX_MESSAGE_SIZE:
        srv->max_message_size = (size_t)n;
        break;
    case SK_MAX_JSON_DEPTH:
        srv->max_json_depth = (unsigned)n;
        break;
    case SK_MAX_SEND_QUEUE:
        srv->max_send_queue = (size_t)n;
        break;
    case SK_PING_INTERVAL:
        srv->ping_interval = (unsigned)n;
        break;
    case SK_IDLE_TIMEOUT:
        srv->idle_timeout = (unsigned)n;
        break;
    case SK_MAX_CONNECTIONS:
        srv->max_connections = (unsigned)n;
        break;
    case SK_SHUTDOWN_TIMEOUT:
        srv->shutdown_timeout = (unsigned)n;
        break;
    case SK_UNKNOWN_EVENT:
        srv->unknown_event = (sb_unknown_event)word;
        break;
    case SK_LOG_LEVEL:
        srv->log_level = word;
        break;
    case SK_MAX_CONNECTIONS_PER_IP:
        srv->max_connections_per_ip = (unsigned)n;
        break;
    case SK_RATE_LIMIT:
        srv->rate_limit = (unsigned)n;
        break;
    case SK_RATE_BURST:
        srv->rate_burst = (unsigned)n;
        break;
    case SK_ALLOWED_ORIGINS:
        free(srv->allowed_origins);
        srv->allowed_origins = text;
        break;
    case SK_TLS_CERT:
        free(srv->tls_cert);
        srv->tls_cert = text;
        break;
    case SK_TLS_KEY:
        free(srv->tls_key);
        srv->tls_key = text;
        break;
    case SK_RX_BUFFER_SIZE:
        srv->rx_buffer_size = (size_t)n;
        break;
    case SK_HANDSHAKE_TIMEOUT:
        srv->handshake_timeout = (unsigned)n;
        break;
    case SK_STRICT_PLUGIN_FILES:
        srv->strict_plugin_files = flag;
        break;
    case SK_WATCH:
        srv->watch = flag;
        break;
    case SK_LOG_FORMAT:
        srv->log_format = word;
        break;
    case SK_LOG_CONNECTIONS:
        srv->log_connections = flag;
        break;
    case SK_OWN_DATA_PATH:
        srv->own_data_path = flag;
        break;
    case SK_IO_URING:
        srv->io_uring = flag;
        break;
    case SK_SEND_QUEUE_BUDGET:
        srv->send_queue_budget = (size_t)n;
        break;
    case SK_WORKERS:
        srv->workers = (unsigned)word;
        break;
    case SK_STATIC:
        /* Kept as its real path: the server compares every file's real
         * path against it (static.c). */
        free(srv->static_dir);
        srv->static_dir = NULL;
        if (!real_folder(p, text, &srv->static_dir))
            return false;
        break;
    case SK_ENVELOPE:
        srv->envelope = (sb_envelope_kind)word;
        break;
    case SK_SUBPROTOCOLS:
        free(srv->subprotocols);
        srv->subprotocols = text;
        break;
    }
    return true;
}

static void on_server_key(struct parser *p, int line, const char *name,
                          const char *value)
{
    for (size_t i = 0; i < sizeof(server_keys) / sizeof(server_keys[0]); i++) {
        const struct server_key *k = &server_keys[i];
        if (strcmp(name, k->name) != 0)
            continue;
        if (!server_set(p, &p->cfg->server, k, value))
            add_error(p, line, "bad value '%s' for '%s' (expected %s)", value,
                      name, k->expected);
        if (k->id == SK_WORKERS)
            p->workers_line = line;
        return;
    }
    add_error(p, line, "unknown key '%s' in [server]", name);
}

/* ---- [admin] ------------------------------------------------------------ */

/* The admin listener (admin.c). Its own small table: none of these keys
 * means anything in [server] or a gateway, nor theirs here. */
enum admin_key_id { AK_HOST, AK_PORT, AK_TOKEN };

static const struct admin_key {
    const char *name;
    enum admin_key_id id;
    const char *expected;
} admin_keys[] = {
    {"host", AK_HOST, "a host name or address"},
    {"port", AK_PORT, "an integer 1..65535"},
    {"token", AK_TOKEN,
     "a bearer token: printable ASCII without spaces, quotes or ';'"},
};

/* Clients send the token in a header, and the INI syntax would cut it at
 * " ;": keep to what survives both. */
static bool valid_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~' || *s == '"' || *s == ';' || *s == '\\')
            return false;
    return true;
}

static void on_admin_key(struct parser *p, int line, const char *name,
                         const char *value)
{
    sb_admin_conf *adm = &p->cfg->admin;
    for (size_t i = 0; i < sizeof(admin_keys) / sizeof(admin_keys[0]); i++) {
        const struct admin_key *k = &admin_keys[i];
        if (strcmp(name, k->name) != 0)
            continue;
        unsigned long long n = 0;
        bool ok = false;
        char **text = NULL;
        switch (k->id) {
        case AK_HOST:
            ok = value[0] != '\0';
            text = &adm->host;
            break;
        case AK_PORT:
            ok = parse_integer(value, &n) && n >= 1 && n <= 65535;
            if (ok)
                adm->port = (int)n;
            break;
        case AK_TOKEN:
            ok = valid_token(value);
            text = &adm->token;
            break;
        }
        if (!ok) {
            /* The token's value is a secret: it stays out of the log. */
            add_error(p, line, "bad value %s%s%s for '%s' (expected %s)",
                      k->id == AK_TOKEN ? "" : "'",
                      k->id == AK_TOKEN ? "(not shown)" : value,
                      k->id == AK_TOKEN ? "" : "'", name, k->expected);
        } else if (text) {
            char *copy = dup_or_oom(p, value);
            if (copy) {
                free(*text);
                *text = copy;
            }
        }
        return;
    }
    add_error(p, line, "unknown key '%s' in [admin]", name);
}

/* ---- [cluster] ---------------------------------------------------------- */

/* The broker link (core/cluster). Checked here, without Redis: -t needs
 * none. */
enum cluster_key_id {
    CK_REDIS,
    CK_PASSWORD_FILE,
    CK_NODE,
    CK_PREFIX,
    CK_CONNECT_TIMEOUT,
    CK_COMMAND_TIMEOUT,
    CK_RECONNECT_MIN,
    CK_RECONNECT_MAX,
    CK_NODE_TTL,
    CK_PROBE_INTERVAL,
    CK_MAX_PENDING
};

#define MS_EXPECTED                                                            \
    "a duration 1ms..1h: milliseconds, or a number and 'ms' or 's'"

static const struct cluster_key {
    const char *name;
    enum cluster_key_id id;
    const char *expected;
} cluster_keys[] = {
    {"redis", CK_REDIS, "redis://HOST[:PORT][/DB] or unix:/PATH"},
    {"password_file", CK_PASSWORD_FILE, "a readable file"},
    {"node", CK_NODE,
     "a node name: 1..64 letters, digits, '_', '.', ':' or '-'"},
    {"prefix", CK_PREFIX, "1..32 printable ASCII characters without spaces"},
    {"connect_timeout", CK_CONNECT_TIMEOUT, MS_EXPECTED},
    {"command_timeout", CK_COMMAND_TIMEOUT, MS_EXPECTED},
    {"reconnect_min", CK_RECONNECT_MIN, MS_EXPECTED},
    {"reconnect_max", CK_RECONNECT_MAX, MS_EXPECTED},
    {"node_ttl", CK_NODE_TTL, MS_EXPECTED},
    {"probe_interval", CK_PROBE_INTERVAL, MS_EXPECTED},
    {"max_pending", CK_MAX_PENDING, "a size 64k..1g"},
};

/* "250", "250ms" or "2s": milliseconds, 1 ms to one hour. */
static bool parse_millis(const char *s, unsigned *out)
{
    const char *rest;
    unsigned long long v;
    if (!parse_digits(s, &v, &rest))
        return false;
    if (strcmp(rest, "s") == 0) {
        if (v > 3600)
            return false;
        v *= 1000;
    } else if (rest[0] != '\0' && strcmp(rest, "ms") != 0)
        return false;
    if (v < 1 || v > 3600000)
        return false;
    *out = (unsigned)v;
    return true;
}

/* redis://HOST[:PORT][/DB] (HOST a name, an IPv4 address or [IPv6]) or
 * unix:/PATH; fills cl on success. */
static bool parse_redis_url(struct parser *p, const char *v,
                            sb_cluster_conf *cl)
{
    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] != '/' || strlen(v + 5) >= 108)
            return false;
        char *path = dup_or_oom(p, v + 5);
        if (!path)
            return true;
        free(cl->redis_unix);
        free(cl->redis_host);
        cl->redis_unix = path;
        cl->redis_host = NULL;
        return true;
    }
    if (strncmp(v, "redis://", 8) != 0)
        return false;
    const char *h = v + 8, *end;
    size_t hlen;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end)
            return false;
        h++;
        hlen = (size_t)(end - h);
        end++;
    } else {
        end = h + strcspn(h, ":/");
        hlen = (size_t)(end - h);
    }
    if (hlen == 0 || hlen > 253)
        return false;
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(".-_:", h[i]))
            return false;
    unsigned long long port = 6379, db = 0;
    const char *rest = end;
    if (*rest == ':') {
        if (!parse_digits(rest + 1, &port, &rest) || port < 1 || port > 65535)
            return false;
    }
    if (*rest == '/') {
        if (rest[1] != '\0' &&
            (!parse_digits(rest + 1, &db, &rest) || db > 1000000))
            return false;
        if (*rest == '/')
            rest++;
    }
    if (*rest != '\0')
        return false;
    char *host = strndup(h, hlen);
    if (!host) {
        p->oom = true;
        return true;
    }
    free(cl->redis_host);
    free(cl->redis_unix);
    cl->redis_host = host;
    cl->redis_unix = NULL;
    cl->redis_port = (int)port;
    cl->redis_db = (int)db;
    return true;
}

static bool valid_node_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.:-", *s))
            return false;
    return true;
}

static bool valid_prefix(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return false;
    return true;
}

static void on_cluster_key(struct parser *p, int line, const char *name,
                           const char *value)
{
    sb_cluster_conf *cl = &p->cfg->cluster;
    for (size_t i = 0; i < sizeof(cluster_keys) / sizeof(cluster_keys[0]);
         i++) {
        const struct cluster_key *k = &cluster_keys[i];
        if (strcmp(name, k->name) != 0)
            continue;
        bool ok = false;
        char **text = NULL;
        unsigned long long n;
        switch (k->id) {
        case CK_REDIS:
            ok = parse_redis_url(p, value, cl);
            if (ok)
                p->redis_line = line;
            break;
        case CK_PASSWORD_FILE: {
            char *path = value[0] ? resolve_path(p, value) : NULL;
            ok = path && access(path, R_OK) == 0;
            if (ok) {
                free(cl->password_file);
                cl->password_file = path;
            } else {
                free(path);
            }
            break;
        }
        case CK_NODE:
            ok = valid_node_name(value);
            text = &cl->node;
            break;
        case CK_PREFIX:
            ok = valid_prefix(value);
            text = &cl->prefix;
            break;
        case CK_CONNECT_TIMEOUT:
            ok = parse_millis(value, &cl->connect_timeout_ms);
            break;
        case CK_COMMAND_TIMEOUT:
            ok = parse_millis(value, &cl->command_timeout_ms);
            break;
        case CK_RECONNECT_MIN:
            ok = parse_millis(value, &cl->reconnect_min_ms);
            break;
        case CK_RECONNECT_MAX:
            ok = parse_millis(value, &cl->reconnect_max_ms);
            break;
        case CK_NODE_TTL:
            ok = parse_millis(value, &cl->node_ttl_ms);
            break;
        case CK_PROBE_INTERVAL:
            ok = parse_millis(value, &cl->probe_interval_ms);
            break;
        case CK_MAX_PENDING:
            ok = parse_size(value, &n) && n >= (64u << 10) && n <= SIZE_1G;
            if (ok)
                cl->max_pending = (size_t)n;
            break;
        }
        if (!ok) {
            add_error(p, line,
                      "bad value '%s' for '%s' in [cluster] "
                      "(expected %s)",
                      value, name, k->expected);
        } else if (text) {
            char *copy = dup_or_oom(p, value);
            if (copy) {
                free(*text);
                *text = copy;
            }
        }
        return;
    }
    add_error(p, line, "unknown key '%s' in [cluster]", name);
}

static void cluster_defaults(sb_cluster_conf *cl)
{
    cl->redis_port = 6379;
    cl->connect_timeout_ms = 2000;
    cl->command_timeout_ms = 5000;
    cl->reconnect_min_ms = 100;
    cl->reconnect_max_ms = 5000;
    cl->node_ttl_ms = 15000;
    cl->probe_interval_ms = 5000;
    cl->max_pending = 64u << 20;
}

/* Once the whole file is read: what the keys say together. */
static void finish_cluster(struct parser *p)
{
    sb_cluster_conf *cl = &p->cfg->cluster;
    if (!cl->enabled)
        return;
    if (!cl->redis_host && !cl->redis_unix)
        add_error(p, cl->line, "missing key 'redis' in [cluster]");
    if (cl->reconnect_min_ms > cl->reconnect_max_ms)
        add_error(p, cl->line,
                  "[cluster] reconnect_min (%ums) is above reconnect_max "
                  "(%ums)",
                  cl->reconnect_min_ms, cl->reconnect_max_ms);
    if (cl->node_ttl_ms < 3000)
        add_error(p, cl->line,
                  "[cluster] node_ttl must be at least 3s (the heartbeat "
                  "runs every third of it)");
    if (!cl->prefix)
        cl->prefix = dup_or_oom(p, "sb:");
}

/* ---- [recovery] --------------------------------------------------------- */

static void recovery_defaults(sb_recovery_conf *rc)
{
    rc->session_ttl = 120;
    rc->history_size = 100;
    rc->history_bytes = 1u << 20;
    rc->history_ttl = 300;
    rc->max_recover = 300;
}

static void free_prefixes(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* "all", or a comma-separated list of room name prefixes (each 1..255
 * bytes of printable ASCII without spaces or commas). */
static bool parse_room_prefixes(struct parser *p, const char *v, char ***out)
{
    if (strcmp(v, "all") == 0) {
        free_prefixes(*out);
        *out = NULL;
        return true;
    }
    size_t n = 1;
    for (const char *q = v; *q; q++)
        n += *q == ',';
    char **list = calloc(n + 1, sizeof(*list));
    if (!list) {
        p->oom = true;
        return true;
    }
    size_t k = 0;
    const char *q = v;
    bool ok = true;
    while (ok) {
        while (*q == ' ' || *q == '\t')
            q++;
        const char *e = q;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > q && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t len = (size_t)(end - q);
        if (len == 0 || len > 255)
            ok = false;
        for (const char *c = q; ok && c < end; c++)
            if (*c <= ' ' || *c > '~')
                ok = false;
        if (ok && !(list[k++] = strndup(q, len))) {
            p->oom = true;
            ok = false;
        }
        if (!*e)
            break;
        q = e + 1;
    }
    if (!ok) {
        free_prefixes(list);
        return p->oom;
    }
    free_prefixes(*out);
    *out = list;
    return true;
}

static void on_recovery_key(struct parser *p, int line, const char *name,
                            const char *value)
{
    sb_recovery_conf *rc = &p->cfg->recovery;
    unsigned long long n = 0;
    bool ok;
    const char *expected;
    if (strcmp(name, "session_ttl") == 0) {
        expected = "seconds, 1..86400";
        ok = parse_seconds(value, &n) && n >= 1 && n <= 86400;
        if (ok)
            rc->session_ttl = (unsigned)n;
    } else if (strcmp(name, "history_size") == 0) {
        expected = "a count, 1..100000";
        ok = parse_size(value, &n) && n >= 1 && n <= 100000;
        if (ok)
            rc->history_size = (unsigned)n;
    } else if (strcmp(name, "history_bytes") == 0) {
        expected = "a size, 1k..1g";
        ok = parse_size(value, &n) && n >= 1024 && n <= SIZE_1G;
        if (ok)
            rc->history_bytes = (size_t)n;
    } else if (strcmp(name, "history_ttl") == 0) {
        expected = "seconds, 1..86400";
        ok = parse_seconds(value, &n) && n >= 1 && n <= 86400;
        if (ok)
            rc->history_ttl = (unsigned)n;
    } else if (strcmp(name, "max_recover") == 0) {
        expected = "a count, 1..100000";
        ok = parse_size(value, &n) && n >= 1 && n <= 100000;
        if (ok)
            rc->max_recover = (unsigned)n;
    } else if (strcmp(name, "rooms") == 0) {
        expected = "'all' or room name prefixes separated by commas";
        ok = parse_room_prefixes(p, value, &rc->room_prefixes);
    } else {
        add_error(p, line, "unknown key '%s' in [recovery]", name);
        return;
    }
    if (!ok)
        add_error(p, line,
                  "bad value '%s' for '%s' in [recovery] (expected %s)", value,
                  name, expected);
}

/* ---- [gateway.NAME] ----------------------------------------------------- */

static bool valid_plugin_name(const char *s);

static void gateway_section(struct parser *p, int line, const char *name)
{
    sb_config *cfg = p->cfg;
    p->kind = SEC_SKIP;
    if (!valid_plugin_name(name) || strcmp(name, "default") == 0) {
        add_error(p, line,
                  "bad gateway name '%s' (expected letters, digits, '_', "
                  "'.' or '-'; 'default' is [server])",
                  name);
        return;
    }
    if (cfg->ngateways >= SB_MAX_GATEWAYS) {
        add_error(p, line, "more than %d gateways", SB_MAX_GATEWAYS);
        return;
    }
    for (size_t i = 1; i < cfg->ngateways; i++) {
        if (strcmp(cfg->gateways[i].name, name) == 0) {
            add_error(p, line,
                      "duplicate section [gateway.%s] (first at line %d)", name,
                      cfg->gateways[i].line);
            return;
        }
    }
    sb_gateway_conf *gws =
        realloc(cfg->gateways, (cfg->ngateways + 1) * sizeof(*gws));
    if (gws)
        cfg->gateways = gws;
    unsigned *set =
        gws ? realloc(p->gateway_set, (cfg->ngateways + 1) * sizeof(*set))
            : NULL;
    if (!set) {
        p->oom = true;
        return;
    }
    p->gateway_set = set;
    sb_gateway_conf *g = &gws[cfg->ngateways];
    memset(g, 0, sizeof(*g));
    set[cfg->ngateways] = 0;
    g->name = dup_or_oom(p, name);
    g->line = line;
    if (!g->name)
        return;
    p->gateway = cfg->ngateways++;
    p->kind = SEC_GATEWAY;
}

static void on_gateway_key(struct parser *p, int line, const char *name,
                           const char *value)
{
    for (size_t i = 0; i < sizeof(server_keys) / sizeof(server_keys[0]); i++) {
        const struct server_key *k = &server_keys[i];
        if (strcmp(name, k->name) != 0)
            continue;
        if (SK_GLOBAL_ONLY & (1u << k->id)) {
            add_error(p, line, "key '%s' belongs in [server], not in a gateway",
                      name);
            return;
        }
        sb_gateway_conf *g = &p->cfg->gateways[p->gateway];
        if (!server_set(p, &g->conf, k, value))
            add_error(p, line, "bad value '%s' for '%s' (expected %s)", value,
                      name, k->expected);
        else
            p->gateway_set[p->gateway] |= 1u << k->id;
        return;
    }
    add_error(p, line, "unknown key '%s' in [gateway.%s]", name,
              p->cfg->gateways[p->gateway].name);
}

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Gives every gateway the [server] value of each key it did not set itself,
 * and checks that no two gateways claim the same port and path. */
static void finish_gateways(struct parser *p)
{
    sb_config *cfg = p->cfg;
    const sb_server_conf *srv = &cfg->server;
    sb_gateway_conf *def = &cfg->gateways[0];
    def->conf = *srv;
    def->conf.host = srv->host ? dup_or_oom(p, srv->host) : NULL;
    def->conf.path = dup_or_oom(p, srv->path);
    def->conf.allowed_origins =
        srv->allowed_origins ? dup_or_oom(p, srv->allowed_origins) : NULL;
    def->conf.tls_cert = srv->tls_cert ? dup_or_oom(p, srv->tls_cert) : NULL;
    def->conf.tls_key = srv->tls_key ? dup_or_oom(p, srv->tls_key) : NULL;
    def->conf.static_dir =
        srv->static_dir ? dup_or_oom(p, srv->static_dir) : NULL;
    def->conf.subprotocols =
        srv->subprotocols ? dup_or_oom(p, srv->subprotocols) : NULL;
    for (size_t i = 1; i < cfg->ngateways; i++) {
        sb_server_conf *g = &cfg->gateways[i].conf;
        unsigned set = p->gateway_set[i];
        sb_server_conf own = *g;
        *g = *srv;
        g->host = own.host;
        g->path = own.path;
#define KEEP(id, field)                                                        \
    if (set & (1u << (id)))                                                    \
        g->field = own.field;
        KEEP(SK_PORT, port)
        KEEP(SK_MAX_MESSAGE_SIZE, max_message_size)
        KEEP(SK_MAX_JSON_DEPTH, max_json_depth)
        KEEP(SK_MAX_SEND_QUEUE, max_send_queue)
        KEEP(SK_PING_INTERVAL, ping_interval)
        KEEP(SK_IDLE_TIMEOUT, idle_timeout)
        KEEP(SK_MAX_CONNECTIONS, max_connections)
        KEEP(SK_UNKNOWN_EVENT, unknown_event)
        KEEP(SK_MAX_CONNECTIONS_PER_IP, max_connections_per_ip)
        KEEP(SK_RATE_LIMIT, rate_limit)
        KEEP(SK_RATE_BURST, rate_burst)
        KEEP(SK_ENVELOPE, envelope)
#undef KEEP
        if (!(set & (1u << SK_HOST)) && srv->host)
            g->host = dup_or_oom(p, srv->host);
        g->allowed_origins = own.allowed_origins;
        g->tls_cert = own.tls_cert;
        g->tls_key = own.tls_key;
        /* Not inherited: files are served by the listener (host:port) of
         * the section that names the folder. */
        g->static_dir = own.static_dir;
        g->subprotocols = own.subprotocols;
        if (!(set & (1u << SK_SUBPROTOCOLS)) && srv->subprotocols)
            g->subprotocols = dup_or_oom(p, srv->subprotocols);
        if (!(set & (1u << SK_ALLOWED_ORIGINS)) && srv->allowed_origins)
            g->allowed_origins = dup_or_oom(p, srv->allowed_origins);
        if (!(set & (1u << SK_TLS_CERT)) && srv->tls_cert)
            g->tls_cert = dup_or_oom(p, srv->tls_cert);
        if (!(set & (1u << SK_TLS_KEY)) && srv->tls_key)
            g->tls_key = dup_or_oom(p, srv->tls_key);
        if (!(set & (1u << SK_PATH)))
            g->path = dup_or_oom(p, srv->path);
        if (!g->path)
            return;
        for (size_t j = 0; j < i; j++) {
            const sb_server_conf *o = &cfg->gateways[j].conf;
            if (o->port == g->port && o->path && strcmp(o->path, g->path) == 0)
                add_error(p, cfg->gateways[i].line,
                          "gateway '%s' uses port %d and path %s, like "
                          "gateway '%s'",
                          cfg->gateways[i].name, g->port, g->path,
                          cfg->gateways[j].name);
            /* One listener serves one folder. */
            if (o->port == g->port && o->static_dir && g->static_dir &&
                same_text(o->host, g->host))
                add_error(p, cfg->gateways[i].line,
                          "gateway '%s' sets 'static' on port %d, like "
                          "gateway '%s' (one folder per port)",
                          cfg->gateways[i].name, g->port,
                          cfg->gateways[j].name);
        }
    }
}

/* `gateways = a, b` of a plugin, as indexes; every gateway without it. */
static void finish_plugin_gateways(struct parser *p, sb_plugin_conf *pc)
{
    sb_config *cfg = p->cfg;
    const char *list = sb_plugin_conf_get(pc, "gateways");
    pc->gateways = calloc(cfg->ngateways, sizeof(*pc->gateways));
    if (!pc->gateways) {
        p->oom = true;
        return;
    }
    if (!list) {
        for (size_t i = 0; i < cfg->ngateways; i++)
            pc->gateways[pc->ngateways++] = i;
        return;
    }
    int line = pc->line;
    for (size_t k = 0; k < pc->nkeys; k++)
        if (strcmp(pc->keys[k].key, "gateways") == 0)
            line = pc->keys[k].line;
    size_t bad = 0;
    for (const char *s = list; *s;) {
        s += strspn(s, " ,\t");
        size_t n = strcspn(s, " ,\t");
        if (n == 0)
            break;
        size_t found = cfg->ngateways;
        for (size_t i = 0; i < cfg->ngateways; i++)
            if (strlen(cfg->gateways[i].name) == n &&
                strncmp(cfg->gateways[i].name, s, n) == 0)
                found = i;
        if (found == cfg->ngateways) {
            add_error(p, line,
                      "unknown gateway '%.*s' in 'gateways' of [plugin.%s]",
                      (int)n, s, pc->name);
            bad++;
        } else {
            bool dup = false;
            for (size_t i = 0; i < pc->ngateways; i++)
                dup = dup || pc->gateways[i] == found;
            if (!dup)
                pc->gateways[pc->ngateways++] = found;
        }
        s += n;
    }
    if (pc->ngateways == 0 && bad == 0)
        add_error(p, line, "'gateways' of [plugin.%s] names no gateway",
                  pc->name);
}

/* ---- [plugin.NAME] ------------------------------------------------------ */

static bool valid_plugin_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return false;
    return true;
}

static void plugin_section(struct parser *p, int line, const char *name)
{
    sb_config *cfg = p->cfg;
    p->kind = SEC_SKIP;
    if (!valid_plugin_name(name)) {
        add_error(p, line,
                  "bad plugin name '%s' in [plugin.%s] (expected letters, "
                  "digits, '_', '.' or '-')",
                  name, name);
        return;
    }
    for (size_t i = 0; i < cfg->nplugins; i++) {
        if (strcmp(cfg->plugins[i].name, name) == 0) {
            /* Its keys are not merged into the first: which one the
             * operator meant is a guess we do not make. */
            add_error(p, line,
                      "duplicate section [plugin.%s] (first at line %d)", name,
                      cfg->plugins[i].line);
            return;
        }
    }
    sb_plugin_conf *plugins =
        realloc(cfg->plugins, (cfg->nplugins + 1) * sizeof(*plugins));
    if (!plugins) {
        p->oom = true;
        return;
    }
    cfg->plugins = plugins;
    sb_plugin_conf *pc = &plugins[cfg->nplugins];
    memset(pc, 0, sizeof(*pc));
    pc->name = dup_or_oom(p, name);
    if (!pc->name)
        return;
    pc->enabled = true;
    pc->optional = false;
    pc->line = line;
    p->plugin = cfg->nplugins++;
    p->kind = SEC_PLUGIN;
}

/* Makes `value` absolute against the config folder unless it already is. */
static char *resolve_path(struct parser *p, const char *value)
{
    char *out = NULL;
    if (value[0] == '/')
        return dup_or_oom(p, value);
    if (asprintf(&out, "%s/%s", p->cfg->dir, value) < 0) {
        p->oom = true;
        return NULL;
    }
    return out;
}

static void on_plugin_key(struct parser *p, int line, const char *name,
                          const char *value)
{
    sb_plugin_conf *pc = &p->cfg->plugins[p->plugin];

    if (strcmp(name, "file") == 0) {
        free(pc->file);
        pc->file = NULL;
        if (value[0] == '\0')
            add_error(p, line, "bad value '' for 'file' (expected a path)");
        else
            pc->file = resolve_path(p, value);
    } else if (strcmp(name, "enabled") == 0 || strcmp(name, "optional") == 0) {
        bool *flag = name[0] == 'e' ? &pc->enabled : &pc->optional;
        if (!sb_config_parse_bool(value, flag))
            add_error(p, line,
                      "bad value '%s' for '%s' (expected true/false, "
                      "yes/no, on/off or 1/0)",
                      value, name);
    }

    /* Every key is kept for the plugin, once: a repeated key updates its
     * entry in place, so the last one wins and the order is the first's. */
    for (size_t i = 0; i < pc->nkeys; i++) {
        if (strcmp(pc->keys[i].key, name) == 0) {
            char *v = dup_or_oom(p, value);
            if (v) {
                free(pc->keys[i].value);
                pc->keys[i].value = v;
                pc->keys[i].line = line;
            }
            return;
        }
    }
    sb_config_kv *keys = realloc(pc->keys, (pc->nkeys + 1) * sizeof(*keys));
    if (!keys) {
        p->oom = true;
        return;
    }
    pc->keys = keys;
    sb_config_kv *kv = &keys[pc->nkeys];
    kv->key = dup_or_oom(p, name);
    kv->value = dup_or_oom(p, value);
    kv->line = line;
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return;
    }
    pc->nkeys++;
}

/* ---- what each line turned out to be ------------------------------------ */

/* The line as libinih sees it, whitespace stripped at both ends. */
static const char *strip(const char *s, size_t *len)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

static void on_section(struct parser *p, int line, const char *name,
                       const char *text)
{
    /* libinih cuts a section name at 49 characters without a word; a name
     * it cut is not followed by ']' in the line. */
    size_t len, nlen = strlen(name);
    const char *s = strip(text, &len);
    if (len < nlen + 2 || s[nlen + 1] != ']') {
        add_error(p, line, "section name longer than %zu characters", nlen);
        p->kind = SEC_SKIP;
        return;
    }

    if (strcmp(name, "server") == 0) {
        if (p->server_line)
            add_error(p, line, "duplicate section [server] (first at line %d)",
                      p->server_line);
        else
            p->server_line = line;
        /* Still checked and applied, so that its problems are reported
         * too; the last value of a key wins, as within one section. */
        p->kind = SEC_SERVER;
    } else if (strcmp(name, "admin") == 0) {
        if (p->admin_line)
            add_error(p, line, "duplicate section [admin] (first at line %d)",
                      p->admin_line);
        else
            p->admin_line = line;
        p->kind = SEC_ADMIN;
    } else if (strcmp(name, "cluster") == 0) {
        if (p->cfg->cluster.enabled)
            add_error(p, line, "duplicate section [cluster] (first at line %d)",
                      p->cfg->cluster.line);
        else
            p->cfg->cluster.line = line;
        p->cfg->cluster.enabled = true;
        p->kind = SEC_CLUSTER;
    } else if (strcmp(name, "recovery") == 0) {
        if (p->cfg->recovery.enabled)
            add_error(p, line,
                      "duplicate section [recovery] (first at line %d)",
                      p->cfg->recovery.line);
        else
            p->cfg->recovery.line = line;
        p->cfg->recovery.enabled = true;
        p->kind = SEC_RECOV;
    } else if (strncmp(name, "plugin.", 7) == 0) {
        plugin_section(p, line, name + 7);
    } else if (strncmp(name, "gateway.", 8) == 0) {
        gateway_section(p, line, name + 8);
    } else {
        add_error(p, line,
                  "unknown section [%s] (expected [server], [admin], "
                  "[cluster], [recovery], [gateway.NAME] or [plugin.NAME])",
                  name);
        p->kind = SEC_SKIP;
    }
}

static void on_key(struct parser *p, int line, const char *name,
                   const char *value)
{
    free(p->last_key);
    p->last_key = dup_or_oom(p, name);

    if (p->kind == SEC_SKIP)
        return;
    if (p->kind == SEC_NONE) {
        add_error(p, line, "key '%s' before any section", name);
        return;
    }
    if (name[0] == '\0') {
        add_error(p, line, "key with an empty name");
        return;
    }
    if (p->kind == SEC_SERVER)
        on_server_key(p, line, name, value);
    else if (p->kind == SEC_GATEWAY)
        on_gateway_key(p, line, name, value);
    else if (p->kind == SEC_ADMIN)
        on_admin_key(p, line, name, value);
    else if (p->kind == SEC_CLUSTER)
        on_cluster_key(p, line, name, value);
    else if (p->kind == SEC_RECOV)
        on_recovery_key(p, line, name, value);
    else
        on_plugin_key(p, line, name, value);
}

static void on_continuation(struct parser *p, int line)
{
    if (p->kind == SEC_SKIP)
        return;
    add_error(p, line,
              "indented line continues the value of '%s'; multi-line values "
              "are not supported (remove the indentation)",
              p->last_key ? p->last_key : "");
}

/* ---- running libinih on one framed line --------------------------------- */

static char *frame_reader(char *str, int num, void *stream)
{
    struct frame *f = stream;
    if (f->next == FRAME_LINES || num < 2)
        return NULL;
    const char *text = f->text[f->next++];
    size_t len = strlen(text);
    f->max_line = num - 2; /* room for '\n' and '\0' */
    if (len > (size_t)f->max_line) {
        /* Handing it over in pieces would make the tail a line of its own;
         * an empty line leaves libinih's state as it was. */
        f->too_long = true;
        len = 0;
    }
    memcpy(str, text, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static int frame_handler(void *user, const char *section, const char *name,
                         const char *value)
{
    struct frame *f = user;
    switch (f->next - 1) {
    case FRAME_LINE:
        f->name = strdup(name);
        f->value = strdup(value ? value : "");
        f->oom = f->oom || !f->name || !f->value;
        break;
    case FRAME_CONT:
        f->open_after = true;
        break;
    case FRAME_PROBE:
        f->section_after = strdup(section);
        f->oom = f->oom || !f->section_after;
        break;
    }
    return 1;
}

static void frame_clear(struct frame *f)
{
    free(f->name);
    free(f->value);
    free(f->section_after);
    f->name = f->value = f->section_after = NULL;
    f->open_after = false;
    f->too_long = false;
}

/* Returns libinih's answer: FRAME_LINE + 1 when the line is a syntax
 * error, negative when it ran out of memory. */
static int frame_run(struct frame *f, const char *header, bool open,
                     const char *line)
{
    frame_clear(f);
    f->text[FRAME_SECTION] = header;
    f->text[FRAME_OPEN] = open ? "p=" : "";
    f->text[FRAME_LINE] = line;
    f->text[FRAME_CONT] = " sbprobe";
    f->text[FRAME_PROBE] = "sbprobe=";
    f->next = 0;
    return ini_parse_stream(frame_reader, f, frame_handler, f);
}

static void parse_line(struct parser *p, int line, const char *text)
{
    struct frame *f = &p->frame;
    int rc = frame_run(f, "[a]", p->value_open, text);
    if (rc < 0 || f->oom) {
        p->oom = true;
        return;
    }
    if (f->too_long) {
        add_error(p, line, "line longer than %d characters", f->max_line);
        return;
    }
    if (rc == FRAME_LINE + 1) {
        size_t len;
        const char *s = strip(text, &len);
        add_error(p, line,
                  "syntax error in '%.*s' (expected [section], key = value "
                  "or a comment)",
                  (int)len, s);
        return;
    }

    bool open_after = f->open_after;
    if (f->name) {
        /* A continuation's value is the whole stripped line, while a key's
         * value is only what follows its '=' — always shorter. */
        size_t len;
        const char *s = strip(text, &len);
        if (p->value_open && strlen(f->value) == len &&
            memcmp(f->value, s, len) == 0)
            on_continuation(p, line);
        else
            on_key(p, line, f->name, f->value);
    } else {
        /* A header is the line after which the section is the same
         * whichever section came before it. */
        char *after_a = f->section_after;
        f->section_after = NULL;
        rc = frame_run(f, "[b]", p->value_open, text);
        if (rc < 0 || f->oom || !after_a) {
            free(after_a);
            p->oom = true;
            return;
        }
        if (strcmp(after_a, f->section_after) == 0)
            on_section(p, line, after_a, text);
        free(after_a);
    }
    p->value_open = open_after;
}

/* ---- loading ------------------------------------------------------------ */

static void set_defaults(sb_server_conf *srv)
{
    srv->host = NULL;
    srv->port = 3000;
    srv->max_message_size = 1u << 20;
    srv->max_json_depth = 64;
    srv->max_send_queue = 1u << 20;
    srv->send_queue_budget = 256u << 20;
    srv->ping_interval = 30;
    srv->idle_timeout = 0;
    srv->max_connections = 10000;
    srv->unknown_event = SB_UNKNOWN_IGNORE;
    srv->log_level = SB_LOG_INFO;
    srv->shutdown_timeout = 5;
    srv->max_connections_per_ip = 0;
    srv->rate_limit = 0;
    srv->rate_burst = 100;
    srv->rx_buffer_size = 1600; /* 16 pipelined 100-byte frames per read */
    srv->handshake_timeout = 10;
    srv->strict_plugin_files = true;
    srv->watch = false;
    srv->log_format = SB_LOG_TEXT;
    srv->log_connections = false;
    srv->own_data_path = true;
    srv->io_uring = true;
    srv->workers = 1;
}

/* The absolute folder of `path`; NULL with errno set on failure. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return realpath(".", NULL);
    if (slash == path)
        return realpath("/", NULL);
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return NULL;
    char *abs = realpath(dir, NULL);
    int saved = errno;
    free(dir);
    errno = saved;
    return abs;
}

static void read_file(struct parser *p, FILE *fp)
{
    char *text = NULL;
    size_t cap = 0;
    ssize_t n;
    int line = 0;

    while ((n = getline(&text, &cap, fp)) >= 0) {
        line++;
        if ((size_t)n != strlen(text)) {
            add_error(p, line, "line holds a NUL byte (not a text file?)");
            continue;
        }
        if (n > 0 && text[n - 1] == '\n')
            text[--n] = '\0';
        if (n > 0 && text[n - 1] == '\r')
            text[--n] = '\0';
        /* libinih would skip the mark on its own line 1, which in our frame
         * is the header: so skip it here. */
        const char *start = text;
        if (line == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
            start += 3;
        parse_line(p, line, start);
        if (p->oom)
            break;
    }
    if (ferror(fp))
        add_error(p, 0, "cannot read: %s", strerror(errno));
    free(text);
}

int sb_config_load(sb_config *cfg, const char *path)
{
    struct parser p = {.cfg = cfg};
    FILE *fp = NULL;
    struct stat st;

    memset(cfg, 0, sizeof(*cfg));
    set_defaults(&cfg->server);
    cluster_defaults(&cfg->cluster);
    recovery_defaults(&cfg->recovery);
    cfg->file = dup_or_oom(&p, path);
    cfg->server.path = dup_or_oom(&p, "/");
    /* [server] is the first gateway; its settings are copied in at the end,
     * when the whole section has been read. */
    cfg->gateways = calloc(1, sizeof(*cfg->gateways));
    p.gateway_set = calloc(1, sizeof(*p.gateway_set));
    if (cfg->gateways) {
        cfg->ngateways = 1;
        cfg->gateways[0].name = dup_or_oom(&p, "default");
    }
    if (p.oom || !cfg->gateways || !p.gateway_set)
        goto out;

    fp = fopen(path, "r");
    if (fp && fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(fp);
        fp = NULL;
        errno = EISDIR;
    }
    if (!fp) {
        add_error(&p, 0, "cannot open: %s", strerror(errno));
        goto out;
    }
    cfg->dir = folder_of(path);
    if (!cfg->dir) {
        add_error(&p, 0, "cannot resolve its folder: %s", strerror(errno));
        fclose(fp);
        goto out;
    }
    read_file(&p, fp);
    fclose(fp);

    for (size_t i = 0; i < cfg->nplugins && !p.oom; i++)
        if (!sb_plugin_conf_get(&cfg->plugins[i], "file"))
            add_error(&p, cfg->plugins[i].line,
                      "missing key 'file' in [plugin.%s]",
                      cfg->plugins[i].name);
    if (!p.oom)
        finish_gateways(&p);
    /* lws would share one listening socket between the admin vhost and a
     * gateway's and tell them apart by the Host header: not what anyone
     * means by giving both the same port. */
    for (size_t i = 0; i < cfg->ngateways && cfg->admin.port && !p.oom; i++)
        if (cfg->gateways[i].conf.port == cfg->admin.port) {
            add_error(&p, p.admin_line,
                      "[admin] port %d is the port of gateway '%s' too (the "
                      "admin listener needs a port of its own)",
                      cfg->admin.port, cfg->gateways[i].name);
            break;
        }
    for (size_t i = 0; i < cfg->nplugins && !p.oom; i++)
        finish_plugin_gateways(&p, &cfg->plugins[i]);
    if (!p.oom)
        finish_cluster(&p);
    /* Workers are cluster nodes: without a broker a room or a broadcast
     * would reach only the clients of the worker that sent it. */
    if (!p.oom && cfg->server.workers > 1 && !cfg->cluster.enabled)
        add_error(&p, p.workers_line,
                  "[server] workers = %u needs a [cluster] section (rooms, "
                  "broadcasts and sends must cross the workers, which are "
                  "cluster nodes)",
                  cfg->server.workers);
    /* Under workers, worker k's admin listener is on [admin] port + k. */
    if (!p.oom && cfg->server.workers > 1 && cfg->admin.port) {
        unsigned top = (unsigned)cfg->admin.port + cfg->server.workers;
        if (top > 65535)
            add_error(&p, p.admin_line,
                      "[admin] port %d + %u workers is beyond 65535 (worker k "
                      "listens on port + k)",
                      cfg->admin.port, cfg->server.workers);
        for (size_t i = 0; i < cfg->ngateways && top <= 65535; i++) {
            int gp = cfg->gateways[i].conf.port;
            if (gp > cfg->admin.port && (unsigned)gp <= top) {
                add_error(&p, p.admin_line,
                          "[admin] port %d + %u workers covers the port of "
                          "gateway '%s' (worker k's admin listens on port + k)",
                          cfg->admin.port, cfg->server.workers,
                          cfg->gateways[i].name);
                break;
            }
        }
    }

out:
    if (p.oom)
        add_error(&p, 0, "out of memory");
    frame_clear(&p.frame);
    free(p.gateway_set);
    free(p.last_key);
    free(p.error_lines);
    /* Even when "out of memory" itself could not be recorded, the caller
     * must not take the config for good. */
    if (p.oom && cfg->nerrors == 0)
        return 1;
    return (int)cfg->nerrors;
}

void sb_config_free(sb_config *cfg)
{
    free(cfg->file);
    free(cfg->dir);
    free(cfg->server.host);
    free(cfg->server.path);
    free(cfg->server.allowed_origins);
    free(cfg->server.tls_cert);
    free(cfg->server.tls_key);
    free(cfg->server.static_dir);
    free(cfg->server.subprotocols);
    free(cfg->admin.host);
    free(cfg->admin.token);
    free(cfg->cluster.redis_host);
    free(cfg->cluster.redis_unix);
    free(cfg->cluster.password_file);
    free(cfg->cluster.node);
    free(cfg->cluster.prefix);
    free_prefixes(cfg->recovery.room_prefixes);
    for (size_t i = 0; i < cfg->ngateways; i++) {
        sb_server_conf *g = &cfg->gateways[i].conf;
        free(cfg->gateways[i].name);
        free(g->host);
        free(g->path);
        free(g->allowed_origins);
        free(g->tls_cert);
        free(g->tls_key);
        free(g->static_dir);
        free(g->subprotocols);
    }
    free(cfg->gateways);
    for (size_t i = 0; i < cfg->nplugins; i++) {
        sb_plugin_conf *pc = &cfg->plugins[i];
        free(pc->name);
        free(pc->file);
        free(pc->gateways);
        for (size_t k = 0; k < pc->nkeys; k++) {
            free(pc->keys[k].key);
            free(pc->keys[k].value);
        }
        free(pc->keys);
    }
    free(cfg->plugins);
    for (size_t i = 0; i < cfg->nerrors; i++)
        free(cfg->errors[i]);
    free(cfg->errors);
    memset(cfg, 0, sizeof(*cfg));
}

const char *sb_plugin_conf_get(const sb_plugin_conf *pc, const char *key)
{
    for (size_t i = 0; i < pc->nkeys; i++)
        if (strcmp(pc->keys[i].key, key) == 0)
            return pc->keys[i].value;
    return NULL;
}

/*
 * envelope — the codec between WebSocket text and Switchboard messages.
 *
 * Reading: sb_envelope_parse() validates a whole frame as JSON in one pass
 * (grammar, escapes, surrogate pairs, UTF-8, nesting depth, and jansson's own
 * limits so that a later sb_json_decode() of any part cannot fail) and finds
 * the envelope's `event`, `data` and `id` without building a tree. `data` and
 * `id` are returned as byte spans into the caller's buffer.
 *
 * Writing: helpers that append JSON text to an sb_buf, and make text from
 * plugins fit for the wire (UTF-8).
 *
 * Never allocates while parsing; never touches sockets, plugins or clients.
 */
#ifndef SB_ENVELOPE_H
#define SB_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "buf.h"

/* The longest event name accepted, in bytes once escapes are decoded. */
#define SB_EVENT_MAX 255

typedef struct sb_span {
    const char *ptr; /* NULL when absent */
    size_t len;
} sb_span;

typedef enum sb_env_status {
    SB_ENV_OK = 0,
    SB_ENV_BAD_JSON,         /* not valid JSON (or not valid UTF-8) */
    SB_ENV_TOO_DEEP,         /* nesting deeper than the limit */
    SB_ENV_NOT_OBJECT,       /* valid JSON, but not an object */
    SB_ENV_NO_EVENT,         /* an object without "event" */
    SB_ENV_EVENT_NOT_STRING, /* "event" is not a string */
    SB_ENV_EVENT_INVALID,    /* "event" is empty, too long or contains NUL */
    SB_ENV_BAD_ID            /* "id" is neither a number nor a string */
} sb_env_status;

typedef struct sb_envelope {
    /* The event name, escapes decoded, NUL-terminated. */
    char event[SB_EVENT_MAX + 1];
    size_t event_len;
    /* The exact JSON text of the value of "data" (no surrounding
     * whitespace), or {NULL,0} when the key is absent. */
    sb_span data;
    /* The exact JSON text of the value of "id", or {NULL,0}. Set whenever the
     * document is a valid object, even when another check fails, so that an
     * exception can carry the id. */
    sb_span id;
    /* For failures: a short English reason fit for a client, e.g.
     * "Invalid JSON: unexpected '}' at offset 12". */
    char error[128];
} sb_envelope;

/* Parses and validates `len` bytes. With a duplicate key the last one wins
 * (as in jansson). max_depth counts nested arrays/objects, the envelope object
 * itself being depth 1. Returns SB_ENV_OK or the first problem found; on
 * failure env->error says why. */
sb_env_status sb_envelope_parse(const char *buf, size_t len, unsigned max_depth,
                                sb_envelope *env);

/* Validates that buf holds exactly one JSON value of any type (surrounding
 * whitespace allowed), with the same rules as sb_envelope_parse(). On
 * success *trimmed gets the value's span without the whitespace. */
sb_env_status sb_json_validate(const char *buf, size_t len, unsigned max_depth,
                               sb_span *trimmed, char *error, size_t errlen);

/* Decodes JSON text the scan accepted (NULL only when out of memory).
 * Integers that fit json_int_t stay integers; larger ones, which the scan
 * accepts as JavaScript does, become reals (the nearest double). The caller
 * owns the result. */
json_t *sb_json_decode(const char *text, size_t len);

/* Whether `len` bytes are valid UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). A document sb_envelope_parse()
 * accepts always is; this is for telling why a text frame failed. */
bool sb_utf8_valid(const char *buf, size_t len);
/* The same for text that may go on in a later piece (a fragment): true
 * when `len` bytes are valid UTF-8 except for an unfinished character at
 * the end that could still be completed, whose length (0..3) goes to
 * *tail; false as soon as a byte rules it out. */
bool sb_utf8_valid_prefix(const char *buf, size_t len, size_t *tail);

/* The cut marker of sb_utf8_repair(): "…" (U+2026), 3 bytes. */
#define SB_UTF8_ELLIPSIS     "\xe2\x80\xa6"
#define SB_UTF8_ELLIPSIS_LEN 3

/* Copies `len` bytes of src into dst (room for `cap` bytes, at least 4) as
 * valid UTF-8 with a NUL after it: every byte that does not begin a valid
 * sequence becomes U+FFFD. When the result does not fit in cap - 1 bytes,
 * or `cut` says src itself was already cut short, it is cut on a character
 * boundary and ends with SB_UTF8_ELLIPSIS. Returns the length written;
 * *repaired (may be NULL) tells whether a byte was replaced. For text from
 * plugins that goes on the wire, where a client fails the whole connection
 * on one invalid byte. */
size_t sb_utf8_repair(char *dst, size_t cap, const char *src, size_t len,
                      bool cut, bool *repaired);

/* Appends `len` bytes of UTF-8 text as a quoted JSON string, escaping '"',
 * '\\' and control characters. 0, or -1 on out of memory. */
int sb_json_append_string(sb_buf *b, const char *s, size_t len);

#endif

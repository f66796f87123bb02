/*
 * envelope_oracle — checks the envelope scanner against jansson, the library
 * whose verdicts it promises to reproduce. Shared by the unit test's
 * differential run (tests/unit/test_envelope.c) and the libFuzzer target
 * (tests/fuzz/fuzz_envelope.c), so that both hold the scanner to the same
 * rules. Header-only (static functions) because each includer is a single
 * translation unit.
 *
 * For one input it checks that:
 *  - sb_json_validate() accepts exactly what json_loadb(JSON_DECODE_ANY |
 *    JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL) accepts, with depth up to
 *    jansson's own limit (INT_AS_REAL: an integer beyond 64 bits is valid
 *    JSON, which the scanner accepts, and what matters is only whether it
 *    overflows a double);
 *  - sb_json_decode() of an accepted text equals jansson's tree without
 *    INT_AS_REAL when jansson can read it so, and otherwise has the same
 *    numbers as the INT_AS_REAL tree (which integers stay integers is for
 *    the unit tests to check);
 *  - sb_envelope_parse() at depth 64 says BAD_JSON only for what jansson
 *    rejects and TOO_DEEP only for what jansson rejects or what really nests
 *    deeper than 64, and otherwise reaches the status that jansson's tree
 *    implies, with data/id spans that load to the very values jansson found;
 *    and an id it exposes with BAD_JSON or TOO_DEEP is a number or a string
 *    taken from the input;
 *  - the input's bytes, when valid UTF-8, survive sb_json_append_string();
 *  - sb_utf8_repair() turns any bytes into UTF-8 that fits its buffer, keeps
 *    valid text that fits as it is, and marks a cut.
 *
 * One known jansson 2.14 quirk is folded into the expectation: its lexer
 * loses a raw NUL byte that follows a number or literal, so it accepts
 * "[1\0]". A raw NUL can never be valid otherwise, so "jansson accepted an
 * input containing a NUL" means exactly that quirk, and the scanner must
 * reject it (see core/envelope.c).
 */
#ifndef SB_ENVELOPE_ORACLE_H
#define SB_ENVELOPE_ORACLE_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "envelope.h"

#define ORACLE_FLAGS                                                           \
    (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)
#define ORACLE_STRICT (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Container nesting as the scanner counts it (the top container is 1), for
 * text jansson has accepted. Counted on the text, not on jansson's tree:
 * a duplicate key drops a subtree from the tree, but the scanner still had
 * to read it. */
static unsigned oracle_depth(const char *s, size_t len)
{
    unsigned depth = 0, max = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            max = ++depth > max ? depth : max;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

/* Whether a span loads with jansson to a value equal to want (or both are
 * absent). */
static int oracle_span_is(sb_span sp, json_t *want)
{
    if (!want || !sp.ptr)
        return !want && !sp.ptr;
    json_t *got = json_loadb(sp.ptr, sp.len, ORACLE_FLAGS, NULL);
    int same = got && json_equal(got, want);
    json_decref(got);
    return same;
}

/* `got` (sb_json_decode's tree) against `want` (jansson's INT_AS_REAL
 * tree): the same shape, strings and literals; the same numbers, where
 * an integer of got equals want's real and an integer literal that does
 * not fit 64 bits became a real. */
static int oracle_same_numbers(json_t *got, json_t *want)
{
    if (json_is_integer(got))
        return json_is_real(want) &&
               (double)json_integer_value(got) == json_real_value(want);
    if (json_typeof(got) != json_typeof(want))
        return 0;
    if (json_is_array(got)) {
        if (json_array_size(got) != json_array_size(want))
            return 0;
        for (size_t i = 0; i < json_array_size(got); i++)
            if (!oracle_same_numbers(json_array_get(got, i),
                                     json_array_get(want, i)))
                return 0;
        return 1;
    }
    if (json_is_object(got)) {
        if (json_object_size(got) != json_object_size(want))
            return 0;
        const char *k;
        json_t *v;
        json_object_foreach(got, k, v)
        {
            json_t *w = json_object_get(want, k);
            if (!w || !oracle_same_numbers(v, w))
                return 0;
        }
        return 1;
    }
    return json_equal(got, want);
}

/* sb_json_decode() on text jansson accepted (tree j, INT_AS_REAL). */
static const char *oracle_check_decode(const char *buf, size_t len, json_t *j)
{
    const char *why = NULL;
    json_t *got = sb_json_decode(buf, len);
    json_t *strict = json_loadb(buf, len, ORACLE_STRICT, NULL);
    if (!got)
        why = "sb_json_decode failed on accepted text";
    else if (strict && !json_equal(got, strict))
        why = "sb_json_decode differs from jansson's own decoding";
    else if (!strict && !oracle_same_numbers(got, j))
        why = "sb_json_decode's numbers differ from jansson's reals";
    json_decref(strict);
    json_decref(got);
    return why;
}

static sb_env_status oracle_expected_status(json_t *j)
{
    if (!json_is_object(j))
        return SB_ENV_NOT_OBJECT;
    json_t *ev = json_object_get(j, "event");
    json_t *id = json_object_get(j, "id");
    if (!ev)
        return SB_ENV_NO_EVENT;
    if (!json_is_string(ev))
        return SB_ENV_EVENT_NOT_STRING;
    size_t n = json_string_length(ev);
    if (n == 0 || n > SB_EVENT_MAX || memchr(json_string_value(ev), 0, n))
        return SB_ENV_EVENT_INVALID;
    if (id && !json_is_number(id) && !json_is_string(id))
        return SB_ENV_BAD_ID;
    return SB_ENV_OK;
}

/* The envelope's fields against jansson's tree of the same document. */
static const char *oracle_check_envelope(json_t *j, sb_env_status st,
                                         const sb_envelope *env)
{
    if (st != oracle_expected_status(j))
        return "envelope status differs from jansson's tree";
    if (st != SB_ENV_OK && env->error[0] == '\0')
        return "failure without an error text";
    if (!json_is_object(j))
        return env->data.ptr || env->id.ptr ? "spans set for a non-object"
                                            : NULL;
    json_t *id = json_object_get(j, "id");
    if (id && !json_is_number(id) && !json_is_string(id))
        id = NULL; /* a bad id is not exposed */
    if (!oracle_span_is(env->id, id))
        return "id span differs from jansson";
    if (!oracle_span_is(env->data, json_object_get(j, "data")))
        return "data span differs from jansson";
    if (st == SB_ENV_OK) {
        json_t *ev = json_object_get(j, "event");
        if (env->event_len != json_string_length(ev) ||
            memcmp(env->event, json_string_value(ev), env->event_len) != 0 ||
            env->event[env->event_len] != '\0')
            return "decoded event differs from jansson";
    }
    return NULL;
}

/* Checks one input; NULL when all agree, else what disagreed. */
static const char *sb_envelope_oracle(const char *buf, size_t len)
{
    const char *why = NULL;
    json_t *j = json_loadb(buf, len, ORACLE_FLAGS, NULL);
    if (j && memchr(buf, 0, len)) {
        /* jansson's NUL-swallowing quirk: we must reject. */
        json_decref(j);
        j = NULL;
    }

    sb_span t;
    char err[128];
    sb_env_status v = sb_json_validate(buf, len, 100000, &t, err, sizeof err);
    if ((v == SB_ENV_OK) != (j != NULL)) {
        why = j ? "validate rejects what jansson accepts"
                : "validate accepts what jansson rejects";
        goto out;
    }
    if (v == SB_ENV_OK && !oracle_span_is(t, j)) {
        why = "validate's trimmed span differs from jansson";
        goto out;
    }
    if (v != SB_ENV_OK && err[0] == '\0') {
        why = "validate failed without an error text";
        goto out;
    }
    if (v == SB_ENV_OK && (why = oracle_check_decode(buf, len, j)) != NULL)
        goto out;

    sb_envelope env;
    sb_env_status st = sb_envelope_parse(buf, len, 64, &env);
    if ((st == SB_ENV_TOO_DEEP || st == SB_ENV_BAD_JSON) && env.id.ptr) {
        /* The id found before the failure: a whole number or string. */
        json_t *id = NULL;
        if (env.id.ptr < buf || env.id.ptr + env.id.len > buf + len ||
            !(id = json_loadb(env.id.ptr, env.id.len, ORACLE_FLAGS, NULL)) ||
            !(json_is_number(id) || json_is_string(id)))
            why = "a failure exposes an id that is no number or string";
        json_decref(id);
        if (why)
            goto out;
    }
    if (st == SB_ENV_TOO_DEEP) {
        if (j && oracle_depth(buf, len) <= 64)
            why = "TOO_DEEP for a document within the limit";
    } else if (st == SB_ENV_BAD_JSON) {
        if (j)
            why = "envelope says BAD_JSON for what jansson accepts";
    } else if (!j) {
        why = "envelope accepts what jansson rejects";
    } else if (oracle_depth(buf, len) > 64) {
        why = "envelope missed nesting deeper than 64";
    } else {
        why = oracle_check_envelope(j, st, &env);
    }
    if (why)
        goto out;

    /* Writing: any valid UTF-8 must come back byte for byte. */
    json_t *s = json_stringn(buf, len); /* NULL unless valid UTF-8 */
    if (s) {
        sb_buf b = {0};
        if (sb_json_append_string(&b, buf, len) == 0) {
            json_t *back = json_loadb(b.data, b.len, ORACLE_FLAGS, NULL);
            if (!back || !json_equal(back, s))
                why = "sb_json_append_string did not round-trip";
            json_decref(back);
        }
        sb_buf_free(&b);
    }
    json_decref(s);
    if (why)
        goto out;

    /* Repair: always UTF-8, at most cap - 1 bytes, the input itself when
     * it was UTF-8 and fits, and marked when cut. */
    {
        static char fixed[4096];
        size_t cap = 4 + len % 300;
        bool rep;
        size_t n = sb_utf8_repair(fixed, cap, buf, len, false, &rep);
        json_t *u = json_stringn(fixed, n);
        int was_utf8 = sb_utf8_valid(buf, len);
        if (!u || n > cap - 1 || fixed[n] != '\0')
            why = "sb_utf8_repair wrote something that is not UTF-8";
        else if (rep == was_utf8)
            why = "sb_utf8_repair's `repaired` is wrong";
        else if (was_utf8 && len <= cap - 1 &&
                 (n != len || memcmp(fixed, buf, len) != 0))
            why = "sb_utf8_repair changed valid text that fits";
        else if (n < len && was_utf8 &&
                 (n < SB_UTF8_ELLIPSIS_LEN ||
                  memcmp(fixed + n - SB_UTF8_ELLIPSIS_LEN, SB_UTF8_ELLIPSIS,
                         SB_UTF8_ELLIPSIS_LEN) != 0))
            why = "sb_utf8_repair cut without the marker";
        json_decref(u);
    }
out:
    json_decref(j);
    return why;
}

#endif

/*
 * metrics — the names and the text of what /metrics shows.
 *
 * Owns the vocabulary (exception reasons, the dispatch-time histogram's
 * bounds and sampling) and the Prometheus text exposition format 0.0.4:
 * HELP/TYPE lines, label escaping, histograms. The counters themselves live
 * where they are counted — sb_stats and the per-gateway array on the
 * server, sb_route_stats in each route — and rendering only reads them, at
 * scrape time, on the loop thread.
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "envelope.h"
#include "router.h"

/* Why a client got an `exception` (or, for the last two, was closed). */
typedef enum sb_exc_reason {
    SB_EXC_BAD_JSON,        /* not JSON, or not UTF-8 */
    SB_EXC_TOO_DEEP,        /* deeper than max_json_depth */
    SB_EXC_NOT_OBJECT,      /* JSON, but not an object */
    SB_EXC_NO_EVENT,        /* no "event" */
    SB_EXC_BAD_EVENT,       /* "event" not a string, empty or too long */
    SB_EXC_BAD_ID,          /* "id" neither number nor string */
    SB_EXC_UNKNOWN_EVENT,   /* counted even when unknown_event = ignore */
    SB_EXC_HANDLER_FAILED,  /* the handler returned an error */
    SB_EXC_GUARD_DENIED,    /* a guard refused the message */
    SB_EXC_RATE_LIMITED,    /* dropped over rate_limit (one exception a
                               burst) */
    SB_EXC_TOO_BIG,         /* over max_message_size: closed with 1009 */
    SB_EXC_SEND_QUEUE_FULL, /* over max_send_queue: closed with 1008 */
    SB_EXC_COUNT
} sb_exc_reason;

/* The label value of a reason ("bad_json"...). */
const char *sb_exc_reason_name(sb_exc_reason r);

static inline sb_exc_reason sb_exc_of_env(sb_env_status st)
{
    switch (st) {
    case SB_ENV_TOO_DEEP:
        return SB_EXC_TOO_DEEP;
    case SB_ENV_NOT_OBJECT:
        return SB_EXC_NOT_OBJECT;
    case SB_ENV_NO_EVENT:
        return SB_EXC_NO_EVENT;
    case SB_ENV_EVENT_NOT_STRING:
    case SB_ENV_EVENT_INVALID:
        return SB_EXC_BAD_EVENT;
    case SB_ENV_BAD_ID:
        return SB_EXC_BAD_ID;
    default:
        return SB_EXC_BAD_JSON;
    }
}

/* Timing a handler costs two clock reads (~40 ns together, several per cent
 * of a pass-through message): only every SB_DISPATCH_SAMPLE-th message of
 * a route is timed. A power of two. */
#ifndef SB_DISPATCH_SAMPLE
#define SB_DISPATCH_SAMPLE 8
#endif

/* Upper bounds of the histogram's buckets, in ns, increasing. */
extern const uint64_t sb_dispatch_bounds_ns[SB_DISPATCH_BUCKETS];

static inline void sb_route_observe(sb_route_stats *st, uint64_t ns)
{
    size_t i = 0;
    while (i < SB_DISPATCH_BUCKETS && ns > sb_dispatch_bounds_ns[i])
        i++;
    st->bucket[i]++;
    st->timed++;
    st->time_ns += ns;
}

/* ---- the text format ---------------------------------------------------- */

typedef struct sb_prom_label {
    const char *name;
    const char *value; /* any bytes; escaped when written */
} sb_prom_label;

/* Each returns 0, or -1 when out of memory (b may then hold part of it). */

/* "# HELP name help\n# TYPE name type\n", help escaped as the format says
 * (backslash and newline). */
int sb_prom_family(sb_buf *b, const char *name, const char *type,
                   const char *help);
/* Appends a label value with '\\', '"' and newline escaped. */
int sb_prom_escape(sb_buf *b, const char *value);
/* "name{l1="v1",...} value\n" (no braces without labels). */
int sb_prom_sample(sb_buf *b, const char *name, const sb_prom_label *labels,
                   size_t nlabels, uint64_t value);
/* A histogram of durations: name_bucket{...,le="..."} (cumulative, from
 * per-bucket counts: SB_DISPATCH_BUCKETS bounds and +Inf), name_sum in
 * seconds, name_count. */
int sb_prom_histogram(sb_buf *b, const char *name, const sb_prom_label *labels,
                      size_t nlabels, const uint64_t *bucket, uint64_t sum_ns);

struct sb_server;
/* The whole /metrics page for a running server, appended to b. */
int sb_metrics_render(sb_buf *b, const struct sb_server *s);

#endif

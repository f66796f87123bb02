/*
 * metrics — the names and the text of what /metrics shows.
 *
 * Owns the Prometheus text exposition format 0.0.4 (the vocabulary it
 * shows is where it is counted: exceptions.h, the router's histogram):
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
#include "exceptions.h"
#include "router.h"

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

/*
 * hist — a latency histogram with log-linear buckets, in the manner of
 * HdrHistogram: values below 2^HIST_SUB_BITS each have their own bucket, and
 * every power of two above that is split into 2^(HIST_SUB_BITS-1) equal
 * buckets, so a reported value is never more than 1/128 (0.8 %) above the
 * true one whatever its magnitude. Recording is a shift and an increment, so
 * the load generator can record every message without slowing down.
 *
 * Values are unsigned 64-bit integers (the load generator records
 * nanoseconds). Fixed size, no allocation after hist_init().
 */
#ifndef SB_BENCH_HIST_H
#define SB_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS   8
#define HIST_SUB_COUNT  (1u << HIST_SUB_BITS)
#define HIST_HALF_COUNT (HIST_SUB_COUNT / 2)
/* Up to 2^48 ns (three days) in range; larger values land in the top bucket
 * and still update `max` exactly. */
#define HIST_MAX_SHIFT 40
#define HIST_BUCKETS   (HIST_SUB_COUNT + HIST_MAX_SHIFT * HIST_HALF_COUNT)

typedef struct hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    long double sum; /* for the mean; long double keeps ns sums exact enough */
    uint64_t buckets[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t v);
/* Adds every value recorded in src to dst. */
void hist_merge(hist *dst, const hist *src);
/* The value at percentile p (0..100): the highest value that the bucket
 * holding the ceil(p% * count)-th smallest value can contain, capped at max.
 * 0 when the histogram is empty. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

#endif

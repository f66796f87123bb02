/*
 * hist — log-linear latency histogram (see hist.h for the bucket layout).
 *
 * Bucket index for v >= 2^SUB_BITS: let s = msb(v) - (SUB_BITS - 1), so that
 * v >> s falls in [2^(SUB_BITS-1), 2^SUB_BITS); the index is SUB_COUNT +
 * (s - 1) * HALF_COUNT + (v >> s) - HALF_COUNT. Each bucket thus covers 2^s
 * values, which is at most v / 2^(SUB_BITS-1) wide.
 */
#include "hist.h"

#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB_COUNT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (HIST_SUB_BITS - 1);
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return HIST_SUB_COUNT + (shift - 1) * HIST_HALF_COUNT +
           (unsigned)(v >> shift) - HIST_HALF_COUNT;
}

/* The highest value that lands in bucket i. */
static uint64_t bucket_top(unsigned i)
{
    if (i < HIST_SUB_COUNT)
        return i;
    unsigned rel = i - HIST_SUB_COUNT;
    unsigned shift = rel / HIST_HALF_COUNT + 1;
    uint64_t sub = rel % HIST_HALF_COUNT + HIST_HALF_COUNT;
    return ((sub + 1) << shift) - 1;
}

void hist_init(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_record(hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += (long double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *dst, const hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    /* Rank of the value asked for, 1-based: ceil(p/100 * count), at least 1,
     * computed in integers where possible so that p99 of 100 values is the
     * 99th and not the 100th. */
    long double want = (long double)p / 100.0L * (long double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((long double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top > h->max ? h->max : top;
        }
    }
    return h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

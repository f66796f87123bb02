/* admission — see admission.h. */
#include "admission.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

#include "client.h"

bool sb_origin_allowed(const sb_server_conf *conf, const char *origin)
{
    if (!conf->allowed_origins || !origin)
        return true;
    size_t olen = strlen(origin);
    for (const char *s = conf->allowed_origins; *s;) {
        s += strspn(s, " ,\t");
        size_t n = strcspn(s, " ,\t");
        if (n == 0)
            break;
        if (n == olen && strncmp(s, origin, n) == 0)
            return true;
        s += n;
    }
    return false;
}

static size_t find_slot(const sb_ip_table *t, const char *ip, uint32_t h)
{
    size_t i = h & (t->cap - 1);
    while (t->slots[i] &&
           (t->slots[i]->hash != h || strcmp(t->slots[i]->ip, ip) != 0))
        i = (i + 1) & (t->cap - 1);
    return i;
}

unsigned sb_ip_count(const sb_ip_table *t, const char *ip)
{
    if (!t->cap)
        return 0;
    sb_ip_entry *e = t->slots[find_slot(t, ip, sb_hash_bytes(ip, strlen(ip)))];
    return e ? e->count : 0;
}

static int grow(sb_ip_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    sb_ip_entry **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        sb_ip_entry *e = t->slots[i];
        if (!e)
            continue;
        size_t j = e->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

sb_ip_entry *sb_ip_acquire(sb_ip_table *t, const char *ip)
{
    if ((t->count + 1) * 2 > t->cap && grow(t) < 0)
        return NULL;
    uint32_t h = sb_hash_bytes(ip, strlen(ip));
    size_t i = find_slot(t, ip, h);
    if (!t->slots[i]) {
        sb_ip_entry *e = calloc(1, sizeof(*e));
        if (!e)
            return NULL;
        strncpy(e->ip, ip, sizeof(e->ip) - 1);
        e->hash = h;
        t->slots[i] = e;
        t->count++;
    }
    t->slots[i]->count++;
    return t->slots[i];
}

void sb_ip_release(sb_ip_table *t, sb_ip_entry *e)
{
    if (!e || --e->count > 0)
        return;
    /* Backward-shift deletion keeps probe sequences whole. */
    size_t mask = t->cap - 1;
    size_t i = find_slot(t, e->ip, e->hash);
    t->slots[i] = NULL;
    t->count--;
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = t->slots[j]->hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
    free(e);
}

void sb_ip_free(sb_ip_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i]);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

bool sb_rate_take(sb_client *c, const sb_server_conf *conf, uint64_t now_ms)
{
    double burst = conf->rate_burst;
    if (c->rate_last_ms == 0) {
        c->rate_tokens = burst; /* a new client starts with a full bucket */
    } else {
        c->rate_tokens +=
            (double)(now_ms - c->rate_last_ms) * conf->rate_limit / 1000.0;
        if (c->rate_tokens > burst)
            c->rate_tokens = burst;
    }
    c->rate_last_ms = now_ms;
    if (c->rate_tokens < 1.0)
        return false;
    c->rate_tokens -= 1.0;
    return true;
}

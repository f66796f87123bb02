/* admission — see admission.h. */
#include "admission.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

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

static bool ip_eq(const void *item, const void *key)
{
    return strcmp(((const sb_ip_entry *)item)->ip, key) == 0;
}

static sb_ip_entry *find(const sb_ip_table *t, const char *ip, uint32_t h)
{
    return sb_table_find(&t->t, h, ip_eq, ip);
}

unsigned sb_ip_count(const sb_ip_table *t, const char *ip)
{
    sb_ip_entry *e = find(t, ip, sb_hash_bytes(ip, strlen(ip)));
    return e ? e->count : 0;
}

sb_ip_entry *sb_ip_acquire(sb_ip_table *t, const char *ip)
{
    uint32_t h = sb_hash_bytes(ip, strlen(ip));
    sb_ip_entry *e = find(t, ip, h);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return NULL;
        strncpy(e->ip, ip, sizeof(e->ip) - 1);
        e->hash = h;
        if (sb_table_add(&t->t, h, e) < 0) {
            free(e);
            return NULL;
        }
    }
    e->count++;
    return e;
}

void sb_ip_release(sb_ip_table *t, sb_ip_entry *e)
{
    if (!e || --e->count > 0)
        return;
    sb_table_remove(&t->t, e->hash, ip_eq, e->ip);
    free(e);
}

void sb_ip_free(sb_ip_table *t)
{
    size_t pos = 0;
    for (void *e; (e = sb_table_next(&t->t, &pos));)
        free(e);
    sb_table_free(&t->t);
}

bool sb_rate_take(sb_rate *c, const sb_server_conf *conf, uint64_t now_ms)
{
    double burst = conf->rate_burst;
    if (c->last_ms == 0) {
        c->tokens = burst; /* a new client starts with a full bucket */
    } else {
        c->tokens += (double)(now_ms - c->last_ms) * conf->rate_limit / 1000.0;
        if (c->tokens > burst)
            c->tokens = burst;
    }
    c->last_ms = now_ms;
    if (c->tokens < 1.0)
        return false;
    c->tokens -= 1.0;
    return true;
}

/*
 * bus — see bus.h. Parsing is strict: a field too long, a number with a
 * sign or a leading zero, or a body that is not what the kind says makes
 * the whole message a bad one.
 */
#include "bus.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"

int sb_bus_header(sb_buf *b, const sb_bus_msg *m)
{
    char head[512];
    int n = -1;
    switch (m->kind) {
    case 'r':
        n = snprintf(head, sizeof(head), "sb1 r %" PRIu64 " %.*s %" PRIu64 "\n",
                     m->client, (int)(m->epoch_len ? m->epoch_len : 1),
                     m->epoch_len ? m->epoch : "-", m->offset);
        break;
    case 'b':
        if (m->gateways_len > 400)
            return -1;
        n = snprintf(head, sizeof(head), "sb1 b %" PRIu64 " %.*s\n", m->client,
                     (int)m->gateways_len, m->gateways);
        break;
    case 's':
        n = snprintf(head, sizeof(head), "sb1 s %" PRIu64 "\n", m->client);
        break;
    case 'x':
        n = snprintf(head, sizeof(head), "sb1 x %" PRIu64 " %zu\n", m->client,
                     m->id_len);
        break;
    case 'c':
        n = snprintf(head, sizeof(head), "sb1 c %" PRIu64 " %d\n", m->client,
                     m->code);
        break;
    case 'p':
        n = snprintf(head, sizeof(head), "sb1 p %" PRIu64 "\n", m->client);
        break;
    }
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    return sb_buf_append(b, head, (size_t)n);
}

/* The next space-separated field of [*p, end): 1..max bytes. */
static int field(const char **p, const char *end, const char **out, size_t *len,
                 size_t max)
{
    const char *s = *p;
    const char *q = s;
    while (q < end && *q != ' ')
        q++;
    if (q == s || (size_t)(q - s) > max)
        return -1;
    *out = s;
    *len = (size_t)(q - s);
    *p = q < end ? q + 1 : q;
    return 0;
}

static int number(const char **p, const char *end, uint64_t *out)
{
    const char *s;
    size_t len;
    if (field(p, end, &s, &len, 20) < 0 || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool json_object_text(const char *s, size_t len)
{
    sb_span trimmed;
    char why[64];
    return len && s[0] == '{' &&
           sb_json_validate(s, len, 64, &trimmed, why, sizeof(why)) ==
               SB_ENV_OK &&
           trimmed.ptr == s && trimmed.len == len;
}

int sb_bus_parse(const char *msg, size_t len, sb_bus_msg *out)
{
    memset(out, 0, sizeof(*out));
    const char *nl = memchr(msg, '\n', len < 512 ? len : 512);
    if (!nl || len < 7 || memcmp(msg, "sb1 ", 4) != 0 || msg[5] != ' ')
        return -1;
    const char *p = msg + 6, *end = nl;
    out->kind = msg[4];
    out->body = nl + 1;
    out->body_len = len - (size_t)(nl + 1 - msg);
    uint64_t n;
    int rc = number(&p, end, &out->client);
    switch (out->kind) {
    case 'r':
        rc = rc || field(&p, end, &out->epoch, &out->epoch_len, 64) ||
             number(&p, end, &out->offset);
        rc = rc || !json_object_text(out->body, out->body_len);
        break;
    case 'b':
        rc = rc || field(&p, end, &out->gateways, &out->gateways_len, 400);
        rc = rc || !json_object_text(out->body, out->body_len);
        break;
    case 's':
        rc = rc || out->client == 0 ||
             !json_object_text(out->body, out->body_len);
        break;
    case 'x':
        rc = rc || out->client == 0 || number(&p, end, &n) ||
             n > out->body_len || !sb_utf8_valid(out->body, out->body_len);
        if (!rc)
            out->id_len = (size_t)n;
        break;
    case 'c':
        rc = rc || out->client == 0 || number(&p, end, &n) || n < 1000 ||
             n > 4999 || out->body_len > 123 ||
             !sb_utf8_valid(out->body, out->body_len);
        if (!rc)
            out->code = (int)n;
        break;
    case 'p':
        rc = rc || out->body_len != 0;
        break;
    default:
        rc = -1;
    }
    /* Every field was read: nothing may follow the last one. */
    if (rc || p != end)
        return -1;
    return 0;
}

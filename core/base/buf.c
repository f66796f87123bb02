/* buf — see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

int sb_buf_reserve(sb_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > (size_t)-1 / 2 - b->len)
        return -1;
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sb_buf_append(sb_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (sb_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sb_buf_append_str(sb_buf *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

int sb_buf_append_byte(sb_buf *b, char c)
{
    return sb_buf_append(b, &c, 1);
}

void sb_buf_free(sb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

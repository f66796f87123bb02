/*
 * random — see random.h.
 */
#include "random.h"

#include <sys/random.h>
#include <sys/types.h>

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sb_random_text(char *out, size_t n)
{
    unsigned char bytes[64];
    size_t need = (n * 6 + 7) / 8;
    if (need > sizeof(bytes))
        return -1;
    size_t got = 0;
    while (got < need) {
        ssize_t r = getrandom(bytes + got, need - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++) {
        size_t bit = i * 6;
        unsigned v = (unsigned)bytes[bit / 8] << 8 |
                     (bit / 8 + 1 < need ? bytes[bit / 8 + 1] : 0);
        out[i] = b64url[(v >> (10 - bit % 8)) & 63];
    }
    out[n] = 0;
    return 0;
}

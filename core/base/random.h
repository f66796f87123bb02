/*
 * random — random URL-safe text from the kernel (getrandom): session
 * tokens and history epochs, in one process and in a cluster.
 */
#ifndef SB_RANDOM_H
#define SB_RANDOM_H

#include <stddef.h>

/* `n` random characters of the URL-safe base64 alphabet (6 random bits
 * each; n at most 85) and a NUL into out. 0, or -1 when the kernel gave no
 * randomness. */
int sb_random_text(char *out, size_t n);

#endif

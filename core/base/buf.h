/*
 * buf — a growable byte buffer. Owns its memory; sb_buf_free() releases it.
 * Growth doubles, so appending n bytes costs amortised O(n) and a buffer that
 * is reused (len reset to 0) stops allocating once it is big enough.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stddef.h>

typedef struct sb_buf {
    char *data;
    size_t len;
    size_t cap;
} sb_buf;

/* Makes room for `extra` more bytes after len. 0, or -1 on out of memory. */
int sb_buf_reserve(sb_buf *b, size_t extra);
/* Appends n bytes. 0, or -1 on out of memory (the buffer is unchanged). */
int sb_buf_append(sb_buf *b, const void *p, size_t n);
int sb_buf_append_str(sb_buf *b, const char *s);
int sb_buf_append_byte(sb_buf *b, char c);
/* Releases the memory and zeroes the struct. */
void sb_buf_free(sb_buf *b);

#endif

/*
 * frame — see frame.h.
 */
#include "frame.h"

size_t sb_ws_header_len(size_t len)
{
    if (len < 126)
        return 2;
    if (len <= 0xffff)
        return 4;
    return 10;
}

size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len)
{
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f)); /* FIN, no RSV */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

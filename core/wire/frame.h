/*
 * frame — the headers of the WebSocket frames the server writes (RFC 6455
 * section 5.2): final, unmasked, with a 7-, 16- or 64-bit length.
 *
 * Only bytes: what a frame carries and where it goes are the connections'.
 */
#ifndef SB_FRAME_H
#define SB_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* WebSocket opcodes used by the server. */
#define SB_WS_TEXT   0x1
#define SB_WS_BINARY 0x2
#define SB_WS_CLOSE  0x8
#define SB_WS_PING   0x9

/* The longest header a server frame can have. */
#define SB_WS_MAX_HEADER 10

/* Size of the header of a server frame carrying `len` payload bytes. */
size_t sb_ws_header_len(size_t len);
/* Writes that header to out (at most SB_WS_MAX_HEADER bytes); returns its
 * length. */
size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len);

#endif

/*
 * frame — WebSocket frames (RFC 6455 section 5.2) as bytes: the headers of
 * the frames the server writes (final, unmasked, with a 7-, 16- or 64-bit
 * length), and a parser for the frames clients send (masked), which checks
 * what section 5 requires of them and unmasks their payload in place.
 *
 * Only bytes: what a frame carries and where it goes are the connections'.
 */
#ifndef SB_FRAME_H
#define SB_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* WebSocket opcodes used by the server. */
#define SB_WS_CONT   0x0
#define SB_WS_TEXT   0x1
#define SB_WS_BINARY 0x2
#define SB_WS_CLOSE  0x8
#define SB_WS_PING   0x9
#define SB_WS_PONG   0xa

/* The longest header a server frame can have. */
#define SB_WS_MAX_HEADER 10

/* Size of the header of a server frame carrying `len` payload bytes. */
size_t sb_ws_header_len(size_t len);
/* Writes that header to out (at most SB_WS_MAX_HEADER bytes); returns its
 * length. */
size_t sb_ws_header_write(unsigned char *out, int opcode, size_t len);

/* ---- reading clients' frames ------------------------------------------ */

/* A client's stream between two reads: the header being gathered, or the
 * payload still to come of the current frame, and the data message that is
 * open (a frame without FIN was read). Zeroed, it expects a first frame. */
typedef struct sb_ws_parser {
    uint64_t remaining; /* payload bytes of the current frame not yet seen */
    uint8_t hdr[14];    /* the header, while it comes in pieces */
    uint8_t hlen;       /* header bytes gathered; 0 between frames */
    uint8_t mask[4];
    uint8_t mpos;    /* where in the mask the next payload byte is */
    uint8_t opcode;  /* of the current frame */
    uint8_t message; /* SB_WS_TEXT or SB_WS_BINARY while one is open, or 0 */
    bool fin;        /* of the current frame */
    bool in_payload; /* the header is read, the payload has not all come */
} sb_ws_parser;

/* A piece of a frame's payload, unmasked. A frame comes as one chunk or,
 * when it is split between reads, as several; an empty frame as one empty
 * chunk. */
typedef struct sb_ws_chunk {
    unsigned char *data; /* in the buffer given to sb_ws_parse() */
    size_t len;
    uint64_t remaining; /* payload of the frame still to come after it */
    uint64_t frame_len; /* the whole frame's payload */
    int opcode;         /* the frame's (SB_WS_CONT for a continuation) */
    int message;        /* a data frame's message: SB_WS_TEXT or _BINARY */
    bool fin;           /* the frame's FIN bit */
    bool first;         /* the frame's first chunk */
} sb_ws_chunk;

/* Results of sb_ws_parse(). */
#define SB_WS_ERROR (-1) /* a protocol error: fail the connection, 1002 */
#define SB_WS_MORE  0    /* everything was used: read more */
#define SB_WS_CHUNK 1    /* *out holds the next chunk */

/* Reads the next chunk of buf from *pos (advanced past what it used),
 * unmasking its payload in place. On SB_WS_ERROR, *why says what the
 * client did wrong (reserved bits or opcode, an unmasked frame, a control
 * frame fragmented or over 125 bytes, a length over 2^63, a continuation
 * with no message open, a new message inside an open one); the parser is
 * then of no further use. Lengths need not be minimally encoded. */
int sb_ws_parse(sb_ws_parser *p, unsigned char *buf, size_t len, size_t *pos,
                sb_ws_chunk *out, const char **why);

/* XORs len bytes with the mask, starting at offset `at` of the mask;
 * returns the offset after them. */
unsigned sb_ws_unmask(unsigned char *buf, size_t len, const uint8_t mask[4],
                      unsigned at);

/* True when a client may send this close code (RFC 6455 7.4.1, 7.4.2, and
 * the registry's 1012-1014): 1000-1003, 1007-1014 and 3000-4999. */
bool sb_ws_close_code_valid(int code);

#endif

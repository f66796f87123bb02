/*
 * bus — what one node tells the others through the broker: the text of a
 * bus message (a header line, then a body), written and parsed.
 *
 * Owns the format and its checks, nothing else: no connection, no client.
 * A message is
 *
 *     "sb1 " KIND fields... "\n" BODY
 *
 *   r EXCEPT EPOCH OFFSET   a room message (channel PREFIX "r:" ROOM); BODY
 *                           is the JSON text every local member gets.
 *                           EPOCH "-" and OFFSET 0 for rooms without
 *                           history; with [recovery] the append script
 *                           writes a room's epoch and the message's offset
 *                           (and receivers check them for gaps).
 *   b EXCEPT GATEWAYS       a broadcast (channel PREFIX "b") to the clients
 *                           of the named gateways ("chat,default").
 *   s CLIENT                BODY to one client (channel PREFIX "n:" NODE).
 *   x CLIENT IDLEN          an exception to one client: BODY is the id's
 *                           JSON text (IDLEN bytes, 0: none) and then the
 *                           message text.
 *   c CLIENT CODE           closes a client; BODY is the reason.
 *   p NODE                  a liveness probe a node sends itself.
 *
 * Numbers are decimal without sign or leading zeros. Anything else (another
 * version, a foreign publisher, a cut message) is refused by the parser, so
 * the receiver can count it and drop it.
 */
#ifndef SB_BUS_H
#define SB_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct sb_bus_msg {
    char kind;         /* 'r', 'b', 's', 'x', 'c' or 'p' */
    uint64_t client;   /* r, b: the client left out (0: none); s, x, c:
                          the target; p: the node */
    uint64_t offset;   /* r */
    const char *epoch; /* r: not NUL-terminated */
    size_t epoch_len;
    const char *gateways; /* b: comma-separated names, not NUL-terminated */
    size_t gateways_len;
    int code;      /* c */
    size_t id_len; /* x */
    const char *body;
    size_t body_len;
} sb_bus_msg;

/* Appends the header line of m (up to and with the '\n'). 0, or -1 when
 * out of memory. */
int sb_bus_header(sb_buf *b, const sb_bus_msg *m);

/* Parses a whole message into *out (pointers into msg). 0, or -1 when it
 * is not a well-formed bus message; the body of r, b and s must be one
 * JSON object (at most 64 levels deep). */
int sb_bus_parse(const char *msg, size_t len, sb_bus_msg *out);

#endif

/*
 * wsproto — the few pieces of RFC 6455 that the benchmark's own programs
 * need: the opening handshake's key and accept values, frame headers (both
 * directions) and masking. Used by the load generator (a client: it masks)
 * and by the epoll echo reference server (a server: it unmasks). No I/O and
 * no allocation here; the callers own their buffers.
 */
#ifndef SB_BENCH_WSPROTO_H
#define SB_BENCH_WSPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA
};

/* The longest frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define WS_MAX_HEADER 14
/* Sec-WebSocket-Key is base64 of 16 bytes (24 chars); the accept value is
 * base64 of a SHA-1 digest (28 chars). Sizes include the NUL. */
#define WS_KEY_SIZE    25
#define WS_ACCEPT_SIZE 29

typedef struct ws_frame {
    bool fin;
    bool masked;
    uint8_t opcode;
    uint8_t mask[4];
    size_t header_len; /* bytes before the payload */
    uint64_t len;      /* payload bytes */
} ws_frame;

/* Base64 of 16 bytes taken from `rnd`. */
void ws_make_key(const uint8_t rnd[16], char key[WS_KEY_SIZE]);

/* The Sec-WebSocket-Accept value a server must answer `key` with (key is
 * used as given: callers trim it first). 0 on success, -1 on failure. */
int ws_accept_for_key(const char *key, size_t key_len,
                      char accept[WS_ACCEPT_SIZE]);

/* Writes a frame header for `len` payload bytes into out (at least
 * WS_MAX_HEADER bytes) and returns its length. mask NULL = unmasked (server
 * to client); otherwise the 4 mask bytes are written after the length and the
 * caller masks the payload itself with ws_mask(). */
size_t ws_put_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                     const uint8_t *mask);

/* Reads a frame header from the `avail` bytes at p. Returns 1 when the header
 * is complete (f filled; the payload may still be incomplete), 0 when more
 * bytes are needed, -1 on a protocol error (reserved bits, unknown opcode,
 * 64-bit length with the top bit set, control frame longer than 125 bytes or
 * fragmented). */
int ws_parse_header(const uint8_t *p, size_t avail, ws_frame *f);

/* XORs n bytes in place with the mask, starting `offset` bytes into the
 * payload (so a payload can be unmasked in pieces). */
void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* Case-insensitive search of an HTTP header block (the bytes up to the empty
 * line) for `name`; on success *val and *val_len get the value without
 * surrounding blanks. Returns 0 when found, -1 otherwise. */
int ws_http_header(const char *head, size_t head_len, const char *name,
                   const char **val, size_t *val_len);

#endif

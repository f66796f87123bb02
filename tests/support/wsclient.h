/*
 * wsclient — a small blocking WebSocket client for the test suites.
 *
 * Integration tests talk to the real server over loopback and must be able to
 * send traffic no polite client would (unmasked frames, bare continuations,
 * reserved bits, hand-made bytes), so this client enforces nothing on what it
 * sends and hides nothing of what it receives: every frame, control frames
 * included, is handed to the test as it came off the wire.
 *
 * Every call that waits is bounded: reads take a timeout, writes and the
 * handshake use the client's I/O timeout (the connect timeout until changed
 * with ws_set_timeout), so a misbehaving server fails a test instead of
 * hanging it. Reads go through a buffer, so any number of frames in one TCP
 * segment, or one frame split across many, parse the same. Only loopback
 * addresses are accepted: this is a test tool and never aims anywhere else.
 *
 * Failures return NULL or -1 and leave a reason in ws_error(c), or for calls
 * that have no client yet, in ws_last_error() (per thread).
 */
#ifndef SB_TEST_WSCLIENT_H
#define SB_TEST_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_client ws_client;

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes the tests use most (RFC 6455 section 7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: empty close payload */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
};

/* One frame as received. data is heap memory owned by the frame (free it
 * with ws_frame_free) and always has a NUL after the last byte, so text
 * payloads can be compared as strings; len does not count that NUL. */
typedef struct ws_frame {
    int fin;    /* FIN bit, 0 or 1 */
    int rsv;    /* RSV1..RSV3 as a 3-bit number (RSV1 = 4) */
    int opcode; /* enum ws_opcode or a reserved value, as sent */
    int masked; /* the server masked it (a violation); data is unmasked */
    unsigned char *data;
    size_t len;
} ws_frame;

void ws_frame_free(ws_frame *f);

/* The HTTP answer to an upgrade request (or to ws_http_raw). */
typedef struct ws_http_response {
    int status; /* 0 when no status line could be read */
    char *head; /* status line and headers up to the blank line; heap */
    char *body; /* body per Content-Length, or whatever came with the head */
    size_t body_len;
} ws_http_response;

void ws_http_response_free(ws_http_response *r);
/* Copies the value of the first header called name (case-insensitive,
 * surrounding blanks trimmed) into buf. Returns its length, or -1 if absent;
 * a value longer than buflen - 1 is cut. */
int ws_http_header(const ws_http_response *r, const char *name, char *buf,
                   size_t buflen);

/* ---- connecting ---- */

/* Opens a TCP connection to host:port (a loopback literal such as
 * "127.0.0.1" or "::1", or "localhost"), sends an RFC 6455 upgrade for
 * path_and_query with a fresh random key, and checks for 101 with the right
 * Upgrade, Connection and Sec-WebSocket-Accept. extra_headers is NULL or
 * complete lines, "Name: value\r\n" each. Bytes the server sent after the
 * 101 stay buffered for ws_recv. NULL on failure; see ws_last_error(). */
ws_client *ws_connect(const char *host, int port, const char *path_and_query,
                      const char *extra_headers, int timeout_ms);
/* Same, and fills *resp (when not NULL) with the server's answer whether or
 * not the upgrade succeeded, so a test can look at the status of a refusal
 * or at the headers of a 101. Free it with ws_http_response_free. */
ws_client *ws_connect_ex(const char *host, int port, const char *path_and_query,
                         const char *extra_headers, int timeout_ms,
                         ws_http_response *resp);
/* Tries an upgrade and returns the HTTP status the server answered with: 101
 * on success (the connection is then closed at once), 404, 401, 503...
 * Returns 0 if no HTTP answer came (connection closed, timeout, garbage) and
 * -1 if the TCP connection could not be made. A 101 whose accept key is
 * wrong also returns -1: it is not a usable upgrade. */
int ws_connect_status(const char *host, int port, const char *path_and_query,
                      const char *extra_headers, int timeout_ms);
/* Sends request bytes exactly as given (a hand-made HTTP request, broken or
 * not) on a new connection and reads one HTTP response into *resp. 0 when a
 * status line was read, else -1. For health endpoints and bad handshakes. */
int ws_http_raw(const char *host, int port, const char *request, size_t len,
                int timeout_ms, ws_http_response *resp);
/* Wraps an already connected socket that has no handshake to do (one end of
 * a socketpair, say), so the frame code can be driven by hand-made server
 * bytes. The client owns fd from then on, even on failure. */
ws_client *ws_adopt_fd(int fd, int timeout_ms);
/* The reason the last ws_connect*, ws_http_raw or ws_adopt_fd in this thread
 * failed. */
const char *ws_last_error(void);

/* Closes the socket at once, without a closing handshake, and frees all. */
void ws_close(ws_client *c);
int ws_fd(const ws_client *c);
const char *ws_error(const ws_client *c);
/* The timeout of writes, in ms. */
void ws_set_timeout(ws_client *c, int timeout_ms);
/* Whether ws_send_* mask frames (on by default, as RFC 6455 requires of a
 * client); off sends unmasked frames for protocol-violation tests. */
void ws_set_masking(ws_client *c, int on);
/* The largest frame or reassembled message ws_recv* accept (default
 * 64 MiB); a longer length fails the read instead of allocating it. */
void ws_set_max_message(ws_client *c, size_t max);

/* ---- sending: 0, or -1 with ws_error set ---- */

int ws_send_text(ws_client *c, const void *data, size_t len);
int ws_send_binary(ws_client *c, const void *data, size_t len);
/* One frame with any opcode and FIN, masked per ws_set_masking: text with
 * fin 0 then WS_OP_CONT frames sends a fragmented message. */
int ws_send_frame(ws_client *c, int opcode, int fin, const void *payload,
                  size_t len);
/* Full control: rsv is the 3 RSV bits (RSV1 = 4), masked 1 uses a random
 * mask and 0 none. */
int ws_send_frame_ex(ws_client *c, int opcode, int fin, int rsv, int masked,
                     const void *payload, size_t len);
int ws_send_ping(ws_client *c, const void *payload, size_t len);
int ws_send_pong(ws_client *c, const void *payload, size_t len);
/* A close frame carrying code and reason; code < 0 sends an empty payload,
 * any value 0..65535 is sent as is. reason may be NULL. */
int ws_send_close(ws_client *c, int code, const char *reason);
/* Writes bytes as they are: hand-made frames, half frames, garbage. */
int ws_send_raw_bytes(ws_client *c, const void *bytes, size_t len);

/* Encodes one frame into a new heap buffer (free() it) and stores its size
 * in *out_len: for tests that send frames split or glued at odd places. mask
 * is 4 bytes, or NULL for an unmasked frame. NULL on out of memory. */
unsigned char *ws_encode_frame(int opcode, int fin, int rsv,
                               const unsigned char *mask, const void *payload,
                               size_t len, size_t *out_len);

/* ---- receiving ---- */

/* Reads exactly one frame into *out, whatever its opcode. Returns 1 with a
 * frame, 0 if none was complete within timeout_ms (bytes already read stay
 * buffered for the next call; 0 ms only looks at what has arrived), -1 when
 * the connection was closed (EOF or reset) or broke. *out is zeroed unless
 * 1 is returned. */
int ws_recv(ws_client *c, int timeout_ms, ws_frame *out);
/* Reads the next data message, joining a fragmented one into a single
 * frame with the first frame's opcode and fin 1. Control frames that arrive
 * (even between fragments) are returned as they are, and reassembly goes on
 * at the next call; so does it after a timeout. A continuation with nothing
 * to continue, or a new data frame inside a fragmented message, is a server
 * error: -1. Returns as ws_recv. */
int ws_recv_message(ws_client *c, int timeout_ms, ws_frame *out);
/* Reads, discarding data and ping frames, until a close frame or the end
 * of the connection. Returns 0 then, with *code the close code, 1005
 * (WS_CLOSE_NO_STATUS) for an empty close payload, -2 for a malformed one
 * (1 byte), or -1 for EOF without a close frame; reason (if not NULL) gets
 * the NUL-terminated close reason, cut to reason_len - 1. Returns -1 on
 * timeout or socket error. Sends nothing back: echoing the close is the
 * test's call. */
int ws_expect_close(ws_client *c, int timeout_ms, int *code, char *reason,
                    size_t reason_len);
/* Reads and discards until the server ends the TCP connection: 0 on EOF or
 * reset, -1 on timeout or error. */
int ws_wait_eof(ws_client *c, int timeout_ms);

/* Sec-WebSocket-Accept for a key, into out (at least 29 bytes). 0 or -1. */
int ws_accept_key(const char *key, char *out, size_t out_len);

#endif

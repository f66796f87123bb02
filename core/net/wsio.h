/*
 * wsio — the server's own WebSocket data path. After the upgrade, the
 * server takes a plain connection over from libwebsockets (server.c):
 * from then on this file reads its socket into one buffer shared by the
 * loop, parses its frames (wire/frame.c), answers pings and closes, writes
 * its send queue, and closes its TCP connection. libwebsockets keeps the
 * listeners, HTTP, the upgrade and TLS; a connection taken over costs no
 * libwebsockets memory (its wsi, its receive buffer, its poll handle).
 *
 * Owns the taken-over connections' sockets and poll handles, and the
 * loop's read buffer. What a data frame means is the server's: it hands
 * its receive logic down as sb_wsio_ops.
 */
#ifndef SB_WSIO_H
#define SB_WSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* The size of the loop's read buffer: what one read takes from a socket. */
#define SB_WSIO_READ_SIZE (64 * 1024)

typedef struct sb_wsio_ops {
    /* A piece of a data frame's payload, unmasked: `frame_fin` is the
     * frame's FIN bit, `remaining` what the frame still has to come,
     * `binary` the message's type. The client may be closing afterwards. */
    void (*data)(sb_client *c, const char *p, size_t len, bool frame_fin,
                 uint64_t remaining, bool binary);
    /* The connection is gone: what lws' CLOSED would do (the disconnect
     * hooks). The client is freed right after. */
    void (*closed)(sb_client *c);
    /* A socket's last memory was freed (after its linger): the server may
     * give freed memory back to the system. */
    void (*freed)(sb_server *s);
} sb_wsio_ops;

/* Sets the own path up on the server's loop; -1 when out of memory (the
 * server then leaves every connection to lws). */
int sb_wsio_init(sb_server *s, const sb_wsio_ops *ops);
/* Closes whatever is still open, at the end of the drain. */
void sb_wsio_shutdown(sb_server *s);
/* Frees what init made, after the loop has run the closes. */
void sb_wsio_free(sb_server *s);

/* Takes the connection on socket `fd` (a descriptor of its own) over for
 * `c`, whose parser starts between frames. 0, or -1 (nothing changed). */
int sb_wsio_adopt(sb_client *c, int fd);

/* Writes c's queue, as much as the socket takes; the rest is written when
 * it becomes writable. When writes are batched, it only lists c: the
 * queue goes with the others' at sb_wsio_write_listed(). Returns -1 when
 * the connection is broken. */
int sb_wsio_flush(sb_client *c);

/* Reads the sockets the poll phase found readable, when reads are batched
 * (io_uring), and hands what came up: at the start of the check phase. */
void sb_wsio_read_listed(sb_server *s);

/* Writes the queues sb_wsio_flush() listed, when writes are batched: at the
 * end of each flush. True when there were any. */
bool sb_wsio_write_listed(sb_server *s);

/* Fails the connection (RFC 6455 7.1.7): our close frame after what is
 * queued, then the TCP connection closes without waiting for an answer;
 * what the client sends meanwhile is dropped. */
void sb_wsio_fail(sb_client *c, int code, const char *reason);

/* Closes the connection at the end of this loop turn without a close
 * handshake (after sb_client_kill(), a broken socket, a close that timed
 * out). */
void sb_wsio_drop(sb_client *c);

/* At the end of a loop turn: closes what was dropped or finished its close
 * handshake, running the closed hook and freeing the clients. */
void sb_wsio_reap(sb_server *s);

/* The connection's socket. */
int sb_wsio_fd(const sb_client *c);

/* Gives the read area's pages back to the system (after a burst: with
 * malloc_trim, a second after the last closes). */
void sb_wsio_trim(sb_server *s);

/* Whether reads and writes are batched (io_uring) now. */
bool sb_wsio_batching(const sb_server *s);

/* How many connections the own path holds (clients and closes under way). */
size_t sb_wsio_count(const sb_server *s);

#endif

/*
 * sockstat — what the kernel says about a client's socket.
 *
 * Owns nothing: questions to the TCP stack, so that the server can tell a
 * slow reader that is reading from one that takes nothing, and how much a
 * connection's reader has taken in. Never touches
 * libwebsockets or the send queues.
 */
#ifndef SB_SOCKSTAT_H
#define SB_SOCKSTAT_H

#include <stdint.h>

/* The bytes the peer has acknowledged on TCP socket `fd` since it opened
 * (Linux's tcpi_bytes_acked): it grows as long as the peer reads, whatever
 * lies buffered on our side. Returns 0 and sets *out, or -1 when the kernel
 * cannot tell (not a TCP socket, or a kernel older than 4.1). */
int sb_sockstat_bytes_acked(int fd, uint64_t *out);

/* The bytes written to socket `fd` that the peer has not acknowledged yet
 * (SIOCOUTQ): 0 once everything we wrote reached the peer's buffer.
 * Returns 0 and sets *out, or -1 when the kernel cannot tell. */
int sb_sockstat_unacked(int fd, uint64_t *out);

/* The bytes of the peer that have been read from TCP socket `fd` so far:
 * what it received in order (Linux's tcpi_bytes_received) less what still
 * waits to be read (SIOCINQ), from answers between which nothing arrived.
 * Returns 0 and sets *out, or -1 when the kernel cannot tell. */
int sb_sockstat_bytes_read(int fd, uint64_t *out);

#endif

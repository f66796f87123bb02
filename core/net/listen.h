/*
 * listen — listening sockets the process opens itself, without lws, for
 * worker processes: a master opens one SO_REUSEPORT socket per gateway
 * listener and per worker slot (the kernel spreads connections over them),
 * and each worker accepts on its slot's sockets and hands every connection
 * to lws (server.c, sb_server_inherit_listeners()). lws 4.1.6 as Debian
 * builds it never sets SO_REUSEPORT for a single-threaded process (upstream
 * #2470), hence this file.
 */
#ifndef SB_LISTEN_H
#define SB_LISTEN_H

#include <stddef.h>

struct sb_config;

/* A non-blocking, close-on-exec TCP socket listening on host:port with
 * SO_REUSEADDR and SO_REUSEPORT. host NULL or "" means every interface
 * (IPv6 dual stack, falling back to IPv4), an IPv4 literal IPv4 only, as
 * the gateways' own listeners do. Returns the descriptor, or -1 with the
 * reason in err. */
int sb_listen_open(const char *host, int port, int backlog, char *err,
                   size_t errlen);

/* The gateways' distinct listeners (one per host:port, in the order of
 * their first gateway, which is the order of the server's vhosts): stores
 * the index of each one's first gateway in first[] (room for
 * cfg->ngateways) and returns how many there are. */
size_t sb_listen_distinct(const struct sb_config *cfg, size_t *first);

/* The port a listening socket is bound to, or -1. */
int sb_listen_port(int fd);

#endif

/*
 * listen — opens the SO_REUSEPORT listening sockets of worker processes
 * (listen.h). No lws here: the master, which runs no lws, calls it.
 */
#include "listen.h"
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_one(const struct addrinfo *ai, int backlog, int *saved)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0) {
        *saved = errno;
        return -1;
    }
    int on = 1, off = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        (ai->ai_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, backlog) != 0) {
        *saved = errno;
        close(fd);
        return -1;
    }
    return fd;
}

int sb_listen_open(const char *host, int port, int backlog, char *err,
                   size_t errlen)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *node = host && *host ? host : NULL;
    /* Every interface: the IPv6 wildcard takes IPv4 too (V6ONLY off). */
    hints.ai_family = node ? AF_UNSPEC : AF_INET6;
    int rc = getaddrinfo(node, service, &hints, &res);
    if (rc != 0 && !node) {
        hints.ai_family = AF_INET; /* a machine without IPv6 */
        rc = getaddrinfo(node, service, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s:%d: %s", node ? node : "*", port,
                 gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = open_one(ai, backlog, &saved);
    if (fd < 0 && !node) {
        freeaddrinfo(res);
        res = NULL;
        hints.ai_family = AF_INET;
        if (getaddrinfo(NULL, service, &hints, &res) == 0)
            for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
                fd = open_one(ai, backlog, &saved);
    }
    if (res)
        freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot listen on %s:%d: %s", node ? node : "*",
                 port, strerror(saved));
    return fd;
}

int sb_listen_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    return -1;
}

size_t sb_listen_distinct(const sb_config *cfg, size_t *first)
{
    size_t n = 0;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        const sb_server_conf *c = &cfg->gateways[g].conf;
        size_t h = 0;
        while (h < n) {
            const sb_server_conf *o = &cfg->gateways[first[h]].conf;
            if (o->port == c->port &&
                ((!o->host && !c->host) ||
                 (o->host && c->host && strcmp(o->host, c->host) == 0)))
                break;
            h++;
        }
        if (h == n)
            first[n++] = g;
    }
    return n;
}

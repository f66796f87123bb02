/*
 * sockstat — see sockstat.h.
 *
 * glibc's <netinet/tcp.h> stops its struct tcp_info before the byte
 * counters; the kernel's own header has them, and this file includes no
 * other TCP header so that the two never meet.
 */
#include "sockstat.h"

#include <stddef.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <linux/sockios.h>
#include <linux/tcp.h>

int sb_sockstat_bytes_acked(int fd, uint64_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    /* An older kernel fills less of the struct than we asked for. */
    if (len < offsetof(struct tcp_info, tcpi_bytes_acked) +
                  sizeof(ti.tcpi_bytes_acked))
        return -1;
    *out = ti.tcpi_bytes_acked;
    return 0;
}

int sb_sockstat_unacked(int fd, uint64_t *out)
{
    int n = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0)
        return -1;
    *out = (uint64_t)n;
    return 0;
}

/* Linux's tcpi_bytes_received, or -1. */
static int bytes_received(int fd, uint64_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) +
                  sizeof(ti.tcpi_bytes_received))
        return -1;
    *out = ti.tcpi_bytes_received;
    return 0;
}

int sb_sockstat_bytes_read(int fd, uint64_t *out)
{
    /* Bytes arriving between the two questions would make the count too
     * high: ask for the received count on both sides of the queue's and
     * keep an answer only when nothing came meanwhile. */
    for (int tries = 0; tries < 8; tries++) {
        uint64_t before, after;
        int inq = 0;
        if (fd < 0 || bytes_received(fd, &before) != 0 ||
            ioctl(fd, SIOCINQ, &inq) != 0 || inq < 0 ||
            bytes_received(fd, &after) != 0)
            return -1;
        if (before == after && after >= (uint64_t)inq) {
            *out = after - (uint64_t)inq;
            return 0;
        }
    }
    return -1; /* a stream that never pauses: no answer */
}

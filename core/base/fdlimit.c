/*
 * fdlimit — see fdlimit.h.
 *
 * Every accepted socket is a descriptor; a process at its limit cannot even
 * accept a connection to refuse it. Raising the soft limit is free up to the
 * hard one (systemd's LimitNOFILE, `ulimit -Hn`), so the server does it
 * itself, but only as far as its config needs: libwebsockets allocates and
 * clears two tables of one entry per possible descriptor.
 */
#include "fdlimit.h"

#include <sys/resource.h>

#include "log.h"

static unsigned long soft_in_force;

unsigned long sb_fdlimit_soft(void)
{
    if (!soft_in_force) {
        struct rlimit rl;
        soft_in_force =
            getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                ? (unsigned long)rl.rlim_cur
                : SB_FD_MAX;
    }
    return soft_in_force;
}

bool sb_fdlimit_raise(const sb_config *cfg, sb_fdlimit *out)
{
    unsigned long long sum = 0;
    bool unlimited = false;
    for (size_t g = 0; g < cfg->ngateways; g++) {
        unsigned m = cfg->gateways[g].conf.max_connections;
        if (!m)
            unlimited = true;
        sum += m;
    }
    unsigned long long needed = unlimited ? SB_FD_MAX : sum + SB_FD_SELF;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = rl.rlim_max = 1024;
    }
    unsigned long hard =
        rl.rlim_max == RLIM_INFINITY ? SB_FD_MAX : (unsigned long)rl.rlim_max;
    unsigned long soft =
        rl.rlim_cur == RLIM_INFINITY ? SB_FD_MAX : (unsigned long)rl.rlim_cur;
    unsigned long want = needed < SB_FD_MAX ? (unsigned long)needed : SB_FD_MAX;
    if (want > hard)
        want = hard;
    if (want > soft) {
        struct rlimit nl = {(rlim_t)want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
            soft = want;
        else
            sb_log_warn("core",
                        "cannot raise the descriptor limit from %lu to %lu",
                        soft, want);
    }
    soft_in_force = soft;
    out->soft = soft;
    out->hard = hard;
    out->needed = unlimited ? 0 : (unsigned long)needed;

    unsigned long cap = soft > SB_FD_SELF ? soft - SB_FD_SELF : 0;
    if (unlimited) {
        sb_log_info("core",
                    "descriptor limit %lu: with max_connections = 0, about "
                    "%lu clients can connect in all",
                    soft, cap);
        return true;
    }
    if (needed <= soft)
        return true;
    sb_log_warn("core",
                "the gateways' max_connections add up to %llu, but the "
                "descriptor limit is %lu (hard limit %lu) and the process "
                "keeps %d for itself: at most about %lu clients can connect; "
                "the others get HTTP 503. Raise the hard limit (LimitNOFILE= "
                "in the systemd unit, ulimit -Hn) or lower max_connections",
                sum, soft, hard, SB_FD_SELF, cap);
    return false;
}

/* exceptions — the label names of the reasons (exceptions.h). */
#include "exceptions.h"

static const char *const exc_names[SB_EXC_COUNT] = {
    [SB_EXC_BAD_JSON] = "bad_json",
    [SB_EXC_TOO_DEEP] = "too_deep",
    [SB_EXC_NOT_OBJECT] = "not_object",
    [SB_EXC_NO_EVENT] = "no_event",
    [SB_EXC_BAD_EVENT] = "bad_event",
    [SB_EXC_BAD_ID] = "bad_id",
    [SB_EXC_UNKNOWN_EVENT] = "unknown_event",
    [SB_EXC_HANDLER_FAILED] = "handler_failed",
    [SB_EXC_GUARD_DENIED] = "guard_denied",
    [SB_EXC_RATE_LIMITED] = "rate_limited",
    [SB_EXC_TOO_BIG] = "too_big",
    [SB_EXC_SEND_QUEUE_FULL] = "send_queue_full",
};

const char *sb_exc_reason_name(sb_exc_reason r)
{
    return (unsigned)r < SB_EXC_COUNT ? exc_names[r] : "unknown";
}

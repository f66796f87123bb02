/*
 * exceptions — why a client gets an `exception` event (or is closed), as
 * one vocabulary for whoever counts it (the connections, dispatch) and
 * whoever shows it (metrics).
 *
 * Only names and the mapping from the envelope scan's verdicts: no state.
 */
#ifndef SB_EXCEPTIONS_H
#define SB_EXCEPTIONS_H

#include "envelope.h"

/* Why a client got an `exception` (or, for the last two, was closed). */
typedef enum sb_exc_reason {
    SB_EXC_BAD_JSON,        /* not JSON, or not UTF-8 */
    SB_EXC_TOO_DEEP,        /* deeper than max_json_depth */
    SB_EXC_NOT_OBJECT,      /* JSON, but not an object */
    SB_EXC_NO_EVENT,        /* no "event" */
    SB_EXC_BAD_EVENT,       /* "event" not a string, empty or too long */
    SB_EXC_BAD_ID,          /* "id" neither number nor string */
    SB_EXC_UNKNOWN_EVENT,   /* counted even when unknown_event = ignore */
    SB_EXC_HANDLER_FAILED,  /* the handler returned an error */
    SB_EXC_GUARD_DENIED,    /* a guard refused the message */
    SB_EXC_RATE_LIMITED,    /* dropped over rate_limit (one exception a
                               burst) */
    SB_EXC_TOO_BIG,         /* over max_message_size: closed with 1009 */
    SB_EXC_SEND_QUEUE_FULL, /* over max_send_queue: closed with 1008 */
    SB_EXC_COUNT
} sb_exc_reason;

/* The label value of a reason ("bad_json"...). */
const char *sb_exc_reason_name(sb_exc_reason r);

static inline sb_exc_reason sb_exc_of_env(sb_env_status st)
{
    switch (st) {
    case SB_ENV_TOO_DEEP:
        return SB_EXC_TOO_DEEP;
    case SB_ENV_NOT_OBJECT:
        return SB_EXC_NOT_OBJECT;
    case SB_ENV_NO_EVENT:
        return SB_EXC_NO_EVENT;
    case SB_ENV_EVENT_NOT_STRING:
    case SB_ENV_EVENT_INVALID:
        return SB_EXC_BAD_EVENT;
    case SB_ENV_BAD_ID:
        return SB_EXC_BAD_ID;
    default:
        return SB_EXC_BAD_JSON;
    }
}

#endif

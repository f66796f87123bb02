/*
 * session_client — a test client of session recovery ([recovery], issue
 * 13), shared by the one-process and the cluster tests: a session opened
 * (sb:session), chat:lobby joined with its position (sb:joined), `say`
 * messages sent and checked by offset, a resume (sb:resume / sb:resumed),
 * and a drop without a close frame (1006). Failures are Check assertions
 * (cli_on_failure in harness.h adds what the servers logged).
 */
#ifndef SB_TEST_SESSION_CLIENT_H
#define SB_TEST_SESSION_CLIENT_H

#include <stdbool.h>

#include <jansson.h>

#include "harness.h"

/* The chat plugin (rooms) and the test plugin that keeps per-client
 * state and logs on_session_resumed. */
#define CHAT     "[plugin.chat]\nfile = %P/chat.so\n"
#define SESSIONS "[plugin.sessions]\nfile = %P/test-sessions.so\n"

/* HS256 tokens of secret "sekret" for {"sub":"alice"} and {"sub":"bob"}. */
#define ALICE                                                                  \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."               \
    "XJ1q7TOK53kSmeu1Z_W1SQa3rh9CsAUwK3Bf074b098"
#define BOB                                                                    \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ."                 \
    "opjMx2Wvab58U-JrePidW_pKFzDctAcduigE3PVK5mk"

typedef struct sess {
    ws_client *ws;
    json_int_t id;
    char token[64];
    char epoch[32];
    json_int_t offset; /* of chat:lobby, as the client holds it */
} sess;

/* The next frame must be `event`; returns the whole frame (decref it). */
json_t *sess_expect(ws_client *c, const char *event);

/* Connects to srv (with ?token=JWT when jwt is not NULL) and reads
 * sb:session: the id and a token of at least 128 random bits, URL-safe. */
void sess_open(sess *s, const sb_srv *srv, const char *jwt);
/* Joins chat:lobby and takes its position from sb:joined. With
 * `any_order`, sb:joined may come after the plugin's `joined` (a cluster
 * node may wait for its subscription); else it must come first. */
void sess_join_lobby(sess *s, bool any_order);
/* Sends `say` mN to chat:lobby. */
void sess_say(ws_client *c, int n);
/* The next frame is `said` in chat:lobby at `offset` with text mN. */
void sess_expect_said(sess *s, json_int_t offset, int n);
/* Sends sb:resume for `old` on `s` (a new connection) and returns the
 * sb:resumed data (decref the frame it came in: returned as *frame). */
json_t *sess_resume(sess *s, const sess *old, json_t **frame);
/* The chat:lobby entry of sb:resumed's rooms. */
json_t *sess_lobby(json_t *resumed);
/* Drops the connection without a close frame (1006), then waits `ms` for
 * the server to notice. */
void sess_drop(sess *s, int ms);

#endif

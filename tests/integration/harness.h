/*
 * harness — what every integration test does: write a real INI file, start
 * the real switchboard binary on a free port of 127.0.0.1, talk to it with
 * the test WebSocket client, and stop it, asserting a clean exit.
 *
 * SB_TEST_WRAPPER (environment), when set, is a command line put before the
 * server (e.g. "valgrind --leak-check=full --error-exitcode=99"): the suite
 * then also proves the server leaks nothing, since a leak makes its exit
 * status non-zero.
 */
#ifndef SB_TEST_HARNESS_H
#define SB_TEST_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "proc.h"
#include "wsclient.h"

typedef struct sb_srv {
    pid_t pid;
    int port;
    char dir[256]; /* temp folder: config, log, journal */
    char ini[300];
    char log[300];
    char journal[300];
} sb_srv;

/* Starts a server with [server] host/port plus `server_extra` lines, and
 * `sections` (whole INI sections, may use %J for the journal path, %P for
 * the plugin folder and %D for the test's own temp folder). Fails the test
 * if it does not come up. */
void srv_start(sb_srv *s, const char *server_extra, const char *sections);
/* The same in a folder the test made (mkdtemp) and filled already. */
void srv_start_in(sb_srv *s, const char *dir, const char *server_extra,
                  const char *sections);
/* The standard gateway: nest-example and the probe plugin. */
void srv_start_default(sb_srv *s, const char *server_extra);
/* SIGTERM, wait, assert exit status 0; removes the temp folder. */
void srv_stop(sb_srv *s);
/* Runs the binary with args and returns its exit status; its output goes to
 * out (NUL-terminated, cut to outlen). */
int srv_run(const char *const *args, char *out, size_t outlen);
/* Reads the whole journal / log file into a static buffer. */
const char *srv_journal(const sb_srv *s);
const char *srv_logtext(const sb_srv *s);
/* Its last 3000 characters, for assertion messages. */
const char *srv_logtail(const sb_srv *s);
/* Rewrites the server's INI file with the first `from` replaced by `to`
 * (for reload tests; the caller sends SIGHUP). */
void srv_ini_replace(const sb_srv *s, const char *from, const char *to);
/* Waits until the server log holds `needle` at least `count` times. */
bool srv_log_wait(const sb_srv *s, const char *needle, int count,
                  int timeout_ms);
/* Waits until the journal contains `needle` (hooks run asynchronously). */
bool srv_journal_wait(const sb_srv *s, const char *needle, int timeout_ms);

ws_client *cli_connect(const sb_srv *s);
/* Sends a text message; fails the test on error. */
void cli_send(ws_client *c, const char *text);
/* Receives one data message and asserts it is a text frame equal to want. */
void cli_expect(ws_client *c, const char *want);
/* Asserts that nothing arrives within ms. */
void cli_expect_nothing(ws_client *c, int ms);
/* Called before a cli_recv_json or cli_expect_event fails (e.g. to print
 * the servers' logs); NULL: nothing. */
void cli_on_failure(void (*fn)(void));
/* The next data message within ms, a JSON text (decref it); `what` names
 * what was awaited in a failure. */
json_t *cli_recv_json(ws_client *c, int ms, const char *what);
/* The next message whose event is `event` within SB_TIMEOUT, others
 * skipped (decref it). */
json_t *cli_expect_event(ws_client *c, const char *event);

/* A private Redis for the cluster tests: redis-server on a unix socket in
 * a temporary folder, no persistence. */
typedef struct sb_redis {
    char dir[256];
    char sock[300];
    pid_t pid;
} sb_redis;

/* True when redis-server and redis-cli are installed (else a test exits
 * 77, skipped). */
bool redis_available(void);
/* Starts it (making its folder the first time) and waits until it answers;
 * fails the test otherwise. Again after redis_kill(): a restart, empty. */
void redis_start(sb_redis *r);
/* Runs `redis-cli -s SOCKET ARGS` (output discarded); its exit status. */
int redis_cli(const sb_redis *r, const char *args);
/* Kills it (SIGKILL) and removes its socket; the folder stays. */
void redis_kill(sb_redis *r);
/* Kills it if it runs and removes its folder. */
void redis_free(sb_redis *r);

#define SB_TIMEOUT 5000

#endif

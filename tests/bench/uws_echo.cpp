/*
 * uws_echo — the benchmark's uWebSockets peer: a WebSocket echo server on
 * uWebSockets (plain TCP, no SSL, uSockets' epoll loop, no compression),
 * sending every received message back as it came.
 *
 * Built by tests/bench/run.sh only when BENCH_UWS_SRC names a uWebSockets
 * source folder with its uSockets/ subfolder (a clone with submodules); the
 * benchmark never downloads it.
 *
 * Usage: uws_echo PORT [--host ADDR]
 * Listens on 127.0.0.1 unless told otherwise; exits on SIGINT or SIGTERM.
 */
#include "App.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct PerSocketData {};

us_listen_socket_t *listener = nullptr;
volatile std::sig_atomic_t stopping = 0;

void on_signal(int) { stopping = 1; }

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PORT [--host ADDR]\n", argv[0]);
        return 2;
    }
    int port = std::atoi(argv[1]);
    std::string host = "127.0.0.1";
    for (int i = 2; i < argc; i++) {
        if (std::strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else {
            std::fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    uWS::App app;
    uWS::App::WebSocketBehavior<PerSocketData> behavior = {};
    behavior.compression = uWS::DISABLED;
    behavior.maxPayloadLength = 16 * 1024 * 1024;
    behavior.idleTimeout = 0; /* the idle test keeps connections open */
    behavior.maxBackpressure = 64 * 1024 * 1024;
    behavior.closeOnBackpressureLimit = false;
    behavior.sendPingsAutomatically = false;
    behavior.message = [](auto *ws, std::string_view message, uWS::OpCode op) {
        ws->send(message, op, false);
    };
    app.ws<PerSocketData>("/*", std::move(behavior));
    app.listen(host, port, [&](us_listen_socket_t *ls) {
        listener = ls;
        if (!ls) {
            std::fprintf(stderr, "uws_echo: cannot listen on %s:%d\n", host.c_str(), port);
        }
    });
    if (!listener) {
        return 1;
    }
    /* A timer checks for the signal; closing the listener and every socket
     * lets run() return. */
    us_loop_t *loop = (us_loop_t *)uWS::Loop::get();
    us_timer_t *timer = us_create_timer(loop, 0, 0);
    us_timer_set(
        timer,
        [](us_timer_t *t) {
            if (stopping) {
                us_listen_socket_close(0, listener);
                us_timer_close(t);
                std::exit(0);
            }
        },
        200, 200);
    app.run();
    return 0;
}

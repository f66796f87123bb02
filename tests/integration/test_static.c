/*
 * Static files: `static = DIR` makes a listener answer plain HTTP GET and
 * HEAD from the folder, on the same port as its WebSocket. Each content
 * type, a folder's index.html, HEAD without a body, keep-alive, and each
 * refusal: path traversal (plain and percent-encoded), a symlink leading
 * out of the folder (403; one inside is served), hidden names, missing
 * files (404), other methods (405 with Allow). The WebSocket still works on
 * the same port and path, a gateway on another port does not inherit the
 * folder, and -t refuses a folder that does not exist, a file, and two
 * folders on one port.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static sb_srv srv;
static int side_port;

static void put(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_int_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

#define PUT(dir, name, text) put(dir, name, text, strlen(text))

static const unsigned char png[] = {0x89, 'P',  'N', 'G', '\r', '\n',
                                    0x1a, '\n', 0,   0,   0,    0};

/* www/ with one file per type, a sub-folder, a hidden file and two
 * symlinks; outside/ beside it with a secret. */
static void start(void)
{
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/sb-it-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(srv.dir));
    char www[300], sub[320], out[300], path[400], target[400];
    snprintf(www, sizeof(www), "%s/www", srv.dir);
    snprintf(sub, sizeof(sub), "%s/www/sub", srv.dir);
    snprintf(out, sizeof(out), "%s/outside", srv.dir);
    ck_assert_int_eq(mkdir(www, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    PUT(www, "index.html", "<!doctype html><title>home</title>");
    PUT(www, "app.js", "export const x = 1;\n");
    PUT(www, "style.css", "body { color: red }\n");
    PUT(www, "logo.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    put(www, "logo.png", png, sizeof(png));
    PUT(www, "data.json", "{\"ok\":true}");
    PUT(www, "blob.bin", "raw bytes");
    PUT(www, ".env", "SECRET=hidden");
    PUT(sub, "index.html", "<p>sub</p>");
    PUT(out, "secret.txt", "top secret");
    snprintf(path, sizeof(path), "%s/leak.txt", www);
    snprintf(target, sizeof(target), "%s/secret.txt", out);
    ck_assert_int_eq(symlink(target, path), 0);
    snprintf(path, sizeof(path), "%s/alias.js", www);
    ck_assert_int_eq(symlink("app.js", path), 0);
    snprintf(path, sizeof(path), "%s/outdir", www);
    ck_assert_int_eq(symlink("../outside", path), 0);

    side_port = sb_test_free_port();
    ck_assert_int_gt(side_port, 0);
    char sections[512];
    snprintf(sections, sizeof(sections),
             "[gateway.side]\nport = %d\npath = /side\n"
             "[plugin.nest]\nfile = %%P/nest-example.so\n",
             side_port);
    srv_start_in(&srv, srv.dir, "static = www", sections);
}

/* One request; the response in *r (freed by the caller). */
static void request(int port, const char *method, const char *path,
                    const char *extra, ws_http_response *r)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method,
                     path, extra ? extra : "");
    ck_assert_msg(
        ws_http_raw("127.0.0.1", port, req, (size_t)n, SB_TIMEOUT, r) == 0,
        "%s %s: %s", method, path, ws_last_error());
}

static void expect_file(const char *path, const char *type, const void *body,
                        size_t len)
{
    ws_http_response r;
    request(srv.port, "GET", path, NULL, &r);
    ck_assert_msg(r.status == 200, "GET %s: %d", path, r.status);
    char value[128];
    ck_assert_int_gt(ws_http_header(&r, "Content-Type", value, sizeof(value)),
                     0);
    ck_assert_str_eq(value, type);
    ck_assert_int_gt(
        ws_http_header(&r, "X-Content-Type-Options", value, sizeof(value)), 0);
    ck_assert_str_eq(value, "nosniff");
    ck_assert_uint_eq(r.body_len, len);
    ck_assert_msg(memcmp(r.body, body, len) == 0, "GET %s: body differs", path);
    ws_http_response_free(&r);
}

/* Sends `req` on one connection and reads until `until` has arrived (or
 * the timeout): the bytes received, NUL-terminated, in a static buffer. */
static const char *pipelined(const char *req, const char *until)
{
    static char buf[16384];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)srv.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t n = 0;
    buf[0] = 0;
    for (int waited = 0; waited < SB_TIMEOUT && !strstr(buf, until);) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = 0;
    }
    close(fd);
    return buf;
}

#define EXPECT_TEXT(path, type, text)                                          \
    expect_file(path, type, text, strlen(text))

/* The status of METHOD path, and that the body does not hold `secret`. */
static int status_of(const char *method, const char *path, const char *secret)
{
    ws_http_response r;
    request(srv.port, method, path, NULL, &r);
    int status = r.status;
    if (secret)
        ck_assert_msg(!r.body ||
                          !memmem(r.body, r.body_len, secret, strlen(secret)),
                      "%s %s leaked the file", method, path);
    ws_http_response_free(&r);
    return status;
}

START_TEST(test_content_types)
{
    start();
    EXPECT_TEXT("/index.html", "text/html; charset=utf-8",
                "<!doctype html><title>home</title>");
    EXPECT_TEXT("/app.js", "text/javascript; charset=utf-8",
                "export const x = 1;\n");
    EXPECT_TEXT("/style.css", "text/css; charset=utf-8",
                "body { color: red }\n");
    EXPECT_TEXT("/logo.svg", "image/svg+xml",
                "<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    expect_file("/logo.png", "image/png", png, sizeof(png));
    EXPECT_TEXT("/data.json", "application/json", "{\"ok\":true}");
    EXPECT_TEXT("/blob.bin", "application/octet-stream", "raw bytes");
    /* A folder is its index.html; a query string is not part of the name;
     * a symlink that stays inside the folder is served. */
    EXPECT_TEXT("/", "text/html; charset=utf-8",
                "<!doctype html><title>home</title>");
    EXPECT_TEXT("/sub/", "text/html; charset=utf-8", "<p>sub</p>");
    EXPECT_TEXT("/sub", "text/html; charset=utf-8", "<p>sub</p>");
    EXPECT_TEXT("/app.js?v=2", "text/javascript; charset=utf-8",
                "export const x = 1;\n");
    EXPECT_TEXT("/alias.js", "text/javascript; charset=utf-8",
                "export const x = 1;\n");
    srv_stop(&srv);
}
END_TEST

START_TEST(test_head_and_keepalive)
{
    start();
    /* (Read by hand: a HEAD answer has a Content-Length and no body.) */
    const char *got =
        pipelined("HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n");
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "%s", got);
    ck_assert_msg(strstr(got, "\r\ncontent-length: 20\r\n"), "%s", got);
    ck_assert_msg(strstr(got, "\r\ncontent-type: text/javascript; "
                              "charset=utf-8\r\n"),
                  "%s", got);
    ck_assert_msg(strstr(got, "\r\ncache-control: no-cache\r\n"), "%s", got);
    /* Three requests on one kept-alive connection, the first a HEAD: all
     * answered in order, the HEAD without a body. */
    const char three[] = "HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /data.json HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n";
    got = pipelined(three, "body { color: red }\n");
    const char *first = strstr(got, "HTTP/1.1 200");
    ck_assert_msg(first, "%s", got);
    const char *second = strstr(first + 1, "HTTP/1.1 200");
    ck_assert_msg(second, "%s", got);
    ck_assert_msg(strstr(second + 1, "HTTP/1.1 200"), "%s", got);
    /* Nothing between the HEAD's headers and the next status line. */
    const char *blank = strstr(first, "\r\n\r\n");
    ck_assert_msg(blank && blank + 4 == second, "%s", got);
    ck_assert_msg(strstr(second, "\r\n\r\n{\"ok\":true}HTTP/1.1 200"), "%s",
                  got);
    got = pipelined("HEAD /nope.html HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n");
    ck_assert_msg(strncmp(got, "HTTP/1.1 404", 12) == 0, "%s", got);
    srv_stop(&srv);
}
END_TEST

START_TEST(test_refusals)
{
    start();
    /* Missing files and hidden names. */
    ck_assert_int_eq(status_of("GET", "/nope.html", NULL), 404);
    ck_assert_int_eq(status_of("GET", "/sub/nope.js", NULL), 404);
    ck_assert_int_eq(status_of("GET", "/.env", "SECRET"), 404);
    /* Traversal, however it is spelled, never reaches outside/. */
    const char *walks[] = {
        "/../outside/secret.txt",     "/sub/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt", "/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/..%2foutside%2fsecret.txt", "/%2e%2e%2f%2e%2e%2foutside/secret.txt"};
    for (size_t i = 0; i < sizeof(walks) / sizeof(walks[0]); i++) {
        int st = status_of("GET", walks[i], "top secret");
        ck_assert_msg(st == 403 || st == 404 || st == 400, "%s: %d", walks[i],
                      st);
    }
    /* Symlinks that lead out of the folder: a file and a folder. */
    ck_assert_int_eq(status_of("GET", "/leak.txt", "top secret"), 403);
    ck_assert_int_eq(status_of("GET", "/outdir/secret.txt", "top secret"), 403);
    const char *got =
        pipelined("HEAD /leak.txt HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n");
    ck_assert_msg(strncmp(got, "HTTP/1.1 403", 12) == 0, "%s", got);
    ck_assert(srv_log_wait(&srv, "refusing /leak.txt: it leads out of", 1,
                           SB_TIMEOUT));
    /* Methods other than GET and HEAD: 405 with Allow, body or not. */
    const char *posts[] = {
        "POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "PUT /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "DELETE /app.js HTTP/1.1\r\nHost: x\r\n\r\n",
        "PATCH /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "OPTIONS /app.js HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
        ws_http_response r;
        ck_assert_int_eq(ws_http_raw("127.0.0.1", srv.port, posts[i],
                                     strlen(posts[i]), SB_TIMEOUT, &r),
                         0);
        ck_assert_msg(r.status == 405, "%.7s: %d", posts[i], r.status);
        char allow[64];
        ck_assert_int_gt(ws_http_header(&r, "Allow", allow, sizeof(allow)), 0);
        ck_assert_str_eq(allow, "GET, HEAD");
        ws_http_response_free(&r);
    }
    /* The files are still there for GET, and the server is unharmed. */
    EXPECT_TEXT("/app.js", "text/javascript; charset=utf-8",
                "export const x = 1;\n");
    srv_stop(&srv);
}
END_TEST

START_TEST(test_websocket_beside_files)
{
    start();
    /* The same port and path upgrade as before. */
    ws_client *c = cli_connect(&srv);
    cli_send(c, "{\"event\":\"identity\",\"data\":7}");
    cli_expect(c, "7"); /* nest-example returns the data bare */
    ws_close(c);
    /* A gateway on another port has no folder: plain HTTP is refused there
     * as without `static`, and its WebSocket works. */
    ck_assert_int_eq(sb_test_wait_port(side_port, 30000), 0);
    ws_http_response r;
    request(side_port, "GET", "/app.js", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    ws_http_response_free(&r);
    request(side_port, "GET", "/side", NULL, &r);
    ck_assert_int_eq(r.status, 426);
    ws_http_response_free(&r);
    ws_client *s =
        ws_connect("127.0.0.1", side_port, "/side", NULL, SB_TIMEOUT);
    ck_assert_msg(s != NULL, "%s", ws_last_error());
    ws_close(s);
    ck_assert(srv_log_wait(&srv, "gateway 'default' serves files from ", 1,
                           SB_TIMEOUT));
    srv_stop(&srv);
}
END_TEST

static void write_ini(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_config_checks)
{
    char dir[] = "/tmp/sb-it-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ini[300], text[1024], out[8192], sub[300];
    snprintf(ini, sizeof(ini), "%s/t.ini", dir);
    snprintf(sub, sizeof(sub), "%s/www", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    PUT(dir, "file.txt", "x");
    const char *args[] = {"-t", "-c", ini, NULL};
    const char *pd = SB_TEST_PLUGIN_DIR;

    snprintf(text, sizeof(text),
             "[server]\nport = 3999\nstatic = www\n"
             "[gateway.b]\nport = 4000\nstatic = %s\n"
             "[plugin.n]\nfile = %s/nest-example.so\n",
             sub, pd);
    write_ini(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "configuration is valid"), "%s", out);

    snprintf(text, sizeof(text),
             "[server]\nport = 3999\nstatic = missing\n"
             "[gateway.b]\nport = 4000\nstatic = file.txt\n"
             "[plugin.n]\nfile = %s/nest-example.so\n",
             pd);
    write_ini(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, ":3: bad value 'missing' for 'static' "
                              "(expected an existing folder"),
                  "%s", out);
    ck_assert_msg(strstr(out, ":6: bad value 'file.txt' for 'static'"), "%s",
                  out);

    /* Two folders on one port: which would answer? Refused. */
    snprintf(text, sizeof(text),
             "[server]\nport = 3999\nstatic = www\n"
             "[gateway.b]\npath = /b\nstatic = www\n"
             "[plugin.n]\nfile = %s/nest-example.so\n",
             pd);
    write_ini(ini, text);
    ck_assert_int_eq(srv_run(args, out, sizeof(out)), 1);
    ck_assert_msg(strstr(out, "gateway 'b' sets 'static' on port 3999, like "
                              "gateway 'default'"),
                  "%s", out);
    snprintf(text, sizeof(text), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(text), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("static");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_content_types);
    tcase_add_test(tc, test_head_and_keepalive);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_websocket_beside_files);
    tcase_add_test(tc, test_config_checks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

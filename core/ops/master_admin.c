/*
 * master_admin — the machine-wide admin listener of a master, answering
 * from the workers' own admin listeners (master_admin.h).
 */
#include "master_admin.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "log.h"

#define DEADLINE_MS 1000       /* a request, and each question to a worker */
#define MAX_REQUEST 8192       /* of a request's head */
#define MAX_ANSWER  (8u << 20) /* of a worker's answer */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *admin_host(const sb_admin_conf *conf)
{
    return conf->host ? conf->host : "127.0.0.1";
}

int sb_master_admin_open(const sb_admin_conf *conf, char *err, size_t errlen)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", conf->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;
    int rc = getaddrinfo(admin_host(conf), service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", admin_host(conf), gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family,
                    res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", admin_host(conf),
                 conf->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Waits for fd to be ready for `events` until the deadline; false when it
 * was not. */
static bool wait_fd(int fd, short events, long long deadline)
{
    long long left = deadline - now_ms();
    if (left <= 0)
        return false;
    struct pollfd p = {fd, events, 0};
    int rc;
    while ((rc = poll(&p, 1, (int)left)) < 0 && errno == EINTR)
        ;
    return rc > 0;
}

static bool write_all(int fd, const char *p, size_t n, long long deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Asks worker k's admin listener `method path`: its status code (0 when it
 * did not answer in time) and its body into *body. */
static int ask_worker(const sb_admin_conf *conf, unsigned k, const char *method,
                      const char *path, sb_buf *body)
{
    char service[16];
    snprintf(service, sizeof(service), "%d", conf->port + (int)k);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
    if (getaddrinfo(admin_host(conf), service, &hints, &res) != 0)
        return 0;
    long long deadline = now_ms() + DEADLINE_MS;
    int fd = socket(res->ai_family,
                    res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int status = 0;
    sb_buf in = {0};
    if (fd < 0)
        goto out;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0 &&
        (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline)))
        goto out;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr)
        goto out;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n%s%s%s\r\n",
                     method, path, admin_host(conf),
                     conf->token ? "Authorization: Bearer " : "",
                     conf->token ? conf->token : "", conf->token ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof(req) ||
        !write_all(fd, req, (size_t)n, deadline))
        goto out;
    for (;;) {
        if (sb_buf_reserve(&in, 65536) < 0)
            goto out;
        ssize_t r = recv(fd, in.data + in.len, in.cap - in.len, 0);
        if (r > 0) {
            in.len += (size_t)r;
            if (in.len > MAX_ANSWER)
                goto out;
        } else if (r == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (!wait_fd(fd, POLLIN, deadline))
                goto out;
        } else {
            goto out;
        }
    }
    int code = 0;
    char *head_end = memmem(in.data, in.len, "\r\n\r\n", 4);
    if (!head_end || sscanf(in.data, "HTTP/1.%*d %d", &code) != 1)
        goto out;
    size_t off = (size_t)(head_end + 4 - in.data);
    if (sb_buf_append(body, in.data + off, in.len - off) < 0 ||
        sb_buf_append_byte(body, '\0') < 0)
        goto out;
    body->len--; /* the NUL is not part of it */
    status = code;
out:
    sb_buf_free(&in);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return status;
}

static void respond(int fd, int code, const char *type, const char *body,
                    size_t len, long long deadline)
{
    const char *reason = code == 200   ? "OK"
                         : code == 401 ? "Unauthorized"
                         : code == 404 ? "Not Found"
                         : code == 405 ? "Method Not Allowed"
                         : code == 500 ? "Internal Server Error"
                                       : "Service Unavailable";
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                     "%sConnection: close\r\n\r\n",
                     code, reason, type, len,
                     code == 401 ? "WWW-Authenticate: Bearer\r\n" : "");
    if (write_all(fd, head, (size_t)n, deadline))
        write_all(fd, body, len, deadline);
}

static void respond_json(int fd, int code, json_t *doc, long long deadline)
{
    char *text = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    if (!text) {
        respond(fd, 500, "text/plain", "out of memory\n", 14, deadline);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* over the NUL: the length says where it ends */
    respond(fd, code, "application/json", text, len + 1, deadline);
    free(text);
}

static void respond_error(int fd, int code, const char *msg, long long deadline)
{
    respond_json(fd, code, json_pack("{ss}", "error", msg), deadline);
}

/* ---- /metrics: the workers' families, each once, with a worker label -- */

typedef struct family {
    char *name;
    char *help, *type; /* the first worker's lines, with their newline */
    sb_buf samples;
} family;

typedef struct families {
    family *f;
    size_t n;
} families;

static family *family_get(families *fs, const char *name, size_t len)
{
    for (size_t i = 0; i < fs->n; i++)
        if (strlen(fs->f[i].name) == len &&
            memcmp(fs->f[i].name, name, len) == 0)
            return &fs->f[i];
    family *grown = realloc(fs->f, (fs->n + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    fs->f = grown;
    family *f = &fs->f[fs->n];
    memset(f, 0, sizeof(*f));
    f->name = strndup(name, len);
    if (!f->name)
        return NULL;
    fs->n++;
    return f;
}

/* `name{a="b"} 1` becomes `name{worker="k",a="b"} 1`, `name 1` becomes
 * `name{worker="k"} 1`. */
static void add_sample(family *f, const char *line, size_t len, unsigned k)
{
    size_t name_end = 0;
    while (name_end < len && line[name_end] != '{' && line[name_end] != ' ')
        name_end++;
    char label[32];
    bool braces = name_end < len && line[name_end] == '{';
    snprintf(label, sizeof(label),
             braces ? "{worker=\"%u\"," : "{worker=\"%u\"}", k);
    sb_buf_append(&f->samples, line, name_end);
    sb_buf_append_str(&f->samples, label);
    size_t rest = name_end + (braces ? 1 : 0);
    sb_buf_append(&f->samples, line + rest, len - rest);
    sb_buf_append_byte(&f->samples, '\n');
}

static void merge_metrics(families *fs, const char *text, unsigned k)
{
    family *cur = NULL;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        bool help = len > 7 && strncmp(p, "# HELP ", 7) == 0;
        bool type = len > 7 && strncmp(p, "# TYPE ", 7) == 0;
        if (help || type) {
            const char *name = p + 7;
            size_t nlen = 0;
            while (7 + nlen < len && name[nlen] != ' ')
                nlen++;
            cur = family_get(fs, name, nlen);
            char **slot = cur ? (help ? &cur->help : &cur->type) : NULL;
            if (slot && !*slot)
                *slot = strndup(p, len);
        } else if (len && p[0] != '#' && cur) {
            add_sample(cur, p, len, k);
        }
        p += len + (nl ? 1 : 0);
    }
}

static void serve_metrics(int fd, const sb_admin_conf *conf, unsigned n,
                          long long deadline)
{
    families fs = {NULL, 0};
    unsigned answered = 0;
    for (unsigned k = 1; k <= n; k++) {
        sb_buf body = {0};
        if (ask_worker(conf, k, "GET", "/metrics", &body) == 200 && body.len) {
            merge_metrics(&fs, body.data, k);
            answered++;
        }
        sb_buf_free(&body);
    }
    sb_buf out = {0};
    for (size_t i = 0; i < fs.n; i++) {
        family *f = &fs.f[i];
        if (f->help) {
            sb_buf_append_str(&out, f->help);
            sb_buf_append_byte(&out, '\n');
        }
        if (f->type) {
            sb_buf_append_str(&out, f->type);
            sb_buf_append_byte(&out, '\n');
        }
        sb_buf_append(&out, f->samples.data, f->samples.len);
        free(f->name);
        free(f->help);
        free(f->type);
        sb_buf_free(&f->samples);
    }
    free(fs.f);
    char tail[256];
    snprintf(tail, sizeof(tail),
             "# HELP switchboard_workers_answering Workers whose own /metrics "
             "answered this scrape.\n# TYPE switchboard_workers_answering "
             "gauge\nswitchboard_workers_answering %u\n",
             answered);
    sb_buf_append_str(&out, tail);
    respond(fd, 200, "text/plain; version=0.0.4; charset=utf-8",
            out.data ? out.data : "", out.len, deadline);
    sb_buf_free(&out);
}

/* ---- the others --------------------------------------------------------- */

static void serve_readyz(int fd, const sb_admin_conf *conf,
                         const sb_worker_slot *slots, unsigned n,
                         long long deadline)
{
    sb_buf lines = {0};
    bool all = true;
    for (unsigned k = 1; k <= n; k++) {
        sb_buf body = {0};
        int code =
            slots[k - 1].pid ? ask_worker(conf, k, "GET", "/readyz", &body) : 0;
        bool ready = code == 200;
        all = all && ready;
        char line[128];
        snprintf(line, sizeof(line), "worker %u: %s\n", k,
                 !slots[k - 1].pid ? "restarting"
                 : ready           ? "ready"
                 : code            ? "not ready"
                                   : "no answer");
        sb_buf_append_str(&lines, line);
        sb_buf_free(&body);
    }
    sb_buf out = {0};
    sb_buf_append_str(&out, all ? "ready\n" : "not ready\n");
    sb_buf_append(&out, lines.data, lines.len);
    respond(fd, all ? 200 : 503, "text/plain; charset=utf-8", out.data, out.len,
            deadline);
    sb_buf_free(&lines);
    sb_buf_free(&out);
}

static void serve_each(int fd, const sb_admin_conf *conf,
                       const sb_worker_slot *slots, unsigned n,
                       const char *method, const char *path, long long deadline)
{
    bool reload = strcmp(method, "POST") == 0;
    json_t *workers = json_array();
    bool ok = true;
    long long connections = 0;
    for (unsigned k = 1; k <= n; k++) {
        const sb_worker_slot *w = &slots[k - 1];
        sb_buf body = {0};
        int code = w->pid ? ask_worker(conf, k, method, path, &body) : 0;
        json_t *doc =
            code ? json_loadb(body.data ? body.data : "", body.len, 0, NULL)
                 : NULL;
        sb_buf_free(&body);
        ok = ok && code == 200;
        json_int_t conns =
            json_integer_value(json_object_get(doc, "connections"));
        connections += conns;
        json_t *entry = json_pack("{si sI sI si sb}", "worker", (int)k, "pid",
                                  (json_int_t)w->pid, "restarts",
                                  (json_int_t)w->restarts, "admin_port",
                                  conf->port + (int)k, "running", w->pid != 0);
        if (!reload)
            json_object_set_new(entry, "connections", json_integer(conns));
        json_object_set_new(entry, reload ? "reload" : "status",
                            doc ? doc : json_null());
        json_array_append_new(workers, entry);
    }
    json_t *top = json_pack("{sI si so}", "master_pid", (json_int_t)getpid(),
                            "workers_configured", (int)n, "workers", workers);
    if (reload)
        json_object_set_new(top, "ok", json_boolean(ok));
    else
        json_object_set_new(top, "connections", json_integer(connections));
    respond_json(fd, reload && !ok ? 500 : 200, top, deadline);
}

/* The value of header `name` in the request head, or NULL; cut at the
 * line's end in the copy it returns (static). */
static const char *header(const char *head, const char *name)
{
    static char value[512];
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nlen) == 0 && l[nlen] == ':') {
            l += nlen + 1;
            while (*l == ' ' || *l == '\t')
                l++;
            size_t n = strcspn(l, "\r\n");
            if (n >= sizeof(value))
                return NULL;
            memcpy(value, l, n);
            value[n] = '\0';
            return value;
        }
    }
    return NULL;
}

void sb_master_admin_serve(int lfd, const sb_admin_conf *conf,
                           const sb_worker_slot *slots, unsigned n)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    long long deadline = now_ms() + DEADLINE_MS;
    char head[MAX_REQUEST + 1];
    size_t len = 0;
    while (!memmem(head, len, "\r\n\r\n", 4)) {
        ssize_t r = recv(fd, head + len, MAX_REQUEST - len, 0);
        if (r > 0) {
            len += (size_t)r;
            if (len == MAX_REQUEST)
                goto done;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLIN, deadline))
                goto done;
        } else {
            goto done;
        }
    }
    head[len] = '\0';
    char method[8], path[256];
    if (sscanf(head, "%7s %255s", method, path) != 2)
        goto done;
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    /* The workers are asked with the same token, so their answers never
     * reach anyone who could not ask them directly. */
    if (conf->token) {
        const char *auth = header(head, "Authorization");
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
            strcmp(auth + 7, conf->token) != 0) {
            respond_error(fd, 401,
                          "a valid 'Authorization: Bearer' token is required",
                          deadline);
            goto done;
        }
    }
    bool get = strcmp(method, "GET") == 0;
    bool post = strcmp(method, "POST") == 0;
    /* Each question to a worker has its own second. */
    long long answer_deadline = now_ms() + DEADLINE_MS * (2 + (long long)n);
    if (strcmp(path, "/healthz") == 0 && get)
        respond(fd, 200, "text/plain; charset=utf-8", "ok\n", 3, deadline);
    else if (strcmp(path, "/readyz") == 0 && get)
        serve_readyz(fd, conf, slots, n, answer_deadline);
    else if (strcmp(path, "/metrics") == 0 && get)
        serve_metrics(fd, conf, n, answer_deadline);
    else if (strcmp(path, "/status") == 0 && get)
        serve_each(fd, conf, slots, n, "GET", "/status", answer_deadline);
    else if (strcmp(path, "/reload") == 0 && post)
        serve_each(fd, conf, slots, n, "POST", "/reload", answer_deadline);
    else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
             strcmp(path, "/metrics") == 0 || strcmp(path, "/status") == 0 ||
             strcmp(path, "/reload") == 0)
        respond_error(fd, 405, "method not allowed", deadline);
    else
        respond_error(fd, 404, "no such endpoint", deadline);
done:
    close(fd);
}

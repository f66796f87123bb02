/*
 * static — plain HTTP GET and HEAD of files from a gateway's `static`
 * folder (see static.h).
 *
 * lws 4.1.6's file mounts follow symlinks wherever they point, so files are
 * not served through a mount: each request's path is checked here, resolved
 * with realpath(), and served with lws_serve_http_file() only when the real
 * path lies inside the folder's real path. The folder's real path is taken
 * once, when the config is read. A symlink swapped between the check and
 * the open is outside what this guards: the folder is the operator's.
 */
#include "static.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <libwebsockets.h>

#include "log.h"

/* Every answer says what it is and is not to be sniffed into another type;
 * no-cache keeps a page and its script in step after a deploy. */
static const char common_headers[] = "x-content-type-options: nosniff\r\n"
                                     "cache-control: no-cache\r\n";

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"json", "application/json"},
};

const char *sb_static_content_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* A short text answer. A request that may carry a body we do not read
 * (any method but GET and HEAD) is answered and its connection closed, or
 * lws would take the body for the next request. */
static int respond(struct lws *wsi, unsigned status, const char *text,
                   bool head, bool close)
{
    unsigned char buf[LWS_PRE + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
    size_t len = strlen(text);
    if (lws_add_http_common_headers(wsi, status, "text/plain; charset=utf-8",
                                    len, &p, end) ||
        (status == HTTP_STATUS_METHOD_NOT_ALLOWED &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                     (const unsigned char *)"GET, HEAD", 9, &p,
                                     end)) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"x-content-type-options:",
            (const unsigned char *)"nosniff", 7, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (!head) {
        unsigned char body[LWS_PRE + 128];
        if (len > sizeof(body) - LWS_PRE)
            return -1;
        memcpy(body + LWS_PRE, text, len);
        if (lws_write(wsi, body + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) !=
            (int)len)
            return -1;
    }
    if (close)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static bool inside(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (n == 1) /* root is "/" */
        return real[0] == '/';
    return strncmp(real, root, n) == 0 && real[n] == '/';
}

/* 0 when the request path may name a file: no "..", no hidden names, no
 * control characters; else the HTTP status that refuses it. lws already
 * collapses "/../" while parsing; this does not rely on it. */
static unsigned check_path(const char *uri)
{
    if (uri[0] != '/')
        return HTTP_STATUS_NOT_FOUND;
    for (const char *s = uri; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return HTTP_STATUS_NOT_FOUND;
    for (const char *seg = uri + 1; *seg;) {
        size_t n = strcspn(seg, "/");
        if (n == 2 && seg[0] == '.' && seg[1] == '.')
            return HTTP_STATUS_FORBIDDEN;
        if (n && seg[0] == '.')
            return HTTP_STATUS_NOT_FOUND; /* .git, .env, . */
        seg += n;
        if (*seg == '/')
            seg++;
    }
    return 0;
}

/* The real path of root + uri (a folder's index.html for a folder) when
 * it is a regular file inside root: a heap string, freed by the caller.
 * NULL with *status set otherwise. */
static char *resolve(const char *root, const char *uri, unsigned *status)
{
    char path[PATH_MAX];
    bool folder = uri[strlen(uri) - 1] == '/';
    int n =
        snprintf(path, sizeof(path), "%s%s%s", strcmp(root, "/") ? root : "",
                 uri, folder ? "index.html" : "");
    if (n < 0 || (size_t)n >= sizeof(path)) {
        *status = HTTP_STATUS_REQ_URI_TOO_LONG;
        return NULL;
    }
    for (int pass = 0; pass < 2; pass++) {
        char *real = realpath(path, NULL);
        if (!real) {
            *status =
                errno == EACCES ? HTTP_STATUS_FORBIDDEN : HTTP_STATUS_NOT_FOUND;
            return NULL;
        }
        if (!inside(root, real)) {
            sb_log_info("static", "refusing %s: it leads out of %s", uri, root);
            free(real);
            *status = HTTP_STATUS_FORBIDDEN;
            return NULL;
        }
        struct stat st;
        if (stat(real, &st) == 0 && S_ISREG(st.st_mode))
            return real;
        bool dir = stat(real, &st) == 0 && S_ISDIR(st.st_mode);
        n = snprintf(path, sizeof(path), "%s/index.html", real);
        free(real);
        if (!dir || n < 0 || (size_t)n >= sizeof(path))
            break;
    }
    *status = HTTP_STATUS_NOT_FOUND;
    return NULL;
}

int sb_static_serve(struct lws *wsi, const char *root, const char *uri)
{
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    bool head = !get && lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
    if (!get && !head)
        return respond(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED,
                       "Method Not Allowed\n", false, true);
    unsigned status = check_path(uri);
    char *real = status ? NULL : resolve(root, uri, &status);
    if (!real)
        return respond(wsi, status,
                       status == HTTP_STATUS_FORBIDDEN ? "Forbidden\n"
                       : status == HTTP_STATUS_REQ_URI_TOO_LONG
                           ? "URI Too Long\n"
                           : "Not Found\n",
                       head, false);
    const char *type = sb_static_content_type(real);
    int rc;
    if (head) {
        /* The headers a GET would get, without the body. */
        struct stat st;
        unsigned char buf[LWS_PRE + 512];
        unsigned char *start = buf + LWS_PRE, *p = start,
                      *end = buf + sizeof(buf);
        rc = stat(real, &st) != 0 ||
                     lws_add_http_common_headers(wsi, HTTP_STATUS_OK, type,
                                                 (lws_filepos_t)st.st_size, &p,
                                                 end) ||
                     lws_add_http_header_by_name(
                         wsi, (const unsigned char *)"x-content-type-options:",
                         (const unsigned char *)"nosniff", 7, &p, end) ||
                     lws_add_http_header_by_name(
                         wsi, (const unsigned char *)"cache-control:",
                         (const unsigned char *)"no-cache", 8, &p, end) ||
                     lws_finalize_write_http_header(wsi, start, &p, end) ||
                     lws_http_transaction_completed(wsi)
                 ? -1
                 : 0;
    } else {
        int n = lws_serve_http_file(wsi, real, type, common_headers,
                                    (int)sizeof(common_headers) - 1);
        /* <0: failed; >0: sent whole, and the transaction is to be ended
         * here; 0: lws sends the rest and reports FILE_COMPLETION. */
        rc = n < 0 || (n > 0 && lws_http_transaction_completed(wsi)) ? -1 : 0;
    }
    free(real);
    return rc;
}

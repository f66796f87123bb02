/*
 * static — plain HTTP GET and HEAD of files from a gateway's `static`
 * folder, on the same listener as its WebSocket (so a page and the socket
 * it opens share one origin and one port).
 *
 * Owns the request-path checks, the content types and the answer; knows
 * nothing of clients, plugins or the config file. A file is served only if
 * its real path (symlinks resolved) lies inside the folder's real path;
 * traversal, hidden names, other methods and missing files are refused
 * with 403, 404 or 405.
 */
#ifndef SB_STATIC_H
#define SB_STATIC_H

struct lws;

/* Answers the HTTP request on wsi for `uri` (lws' decoded, normalised path,
 * without the query) from the folder whose real path is `root`. Returns
 * what the lws HTTP callback should return: 0 to keep the connection
 * (the answer is complete or lws is sending the file), -1 to close it. */
int sb_static_serve(struct lws *wsi, const char *root, const char *uri);

/* The Content-Type for a file name, by its extension (case-insensitive);
 * application/octet-stream when unknown. Static storage. */
const char *sb_static_content_type(const char *name);

#endif

/*
 * filecheck — a plugin file is code that the server will run with all its
 * rights, so it must not be replaceable by anyone but root or the server's
 * own user: neither the file nor any folder above it may be writable by
 * group or others, or owned by a third user (sshd's StrictModes rule).
 *
 * Owns nothing; touches only the file system (realpath, stat). Called by the
 * plugin host before it copies and loads a plugin file, and so by `-t` too.
 */
#ifndef SB_FILECHECK_H
#define SB_FILECHECK_H

#include <stddef.h>

/* Returns 0 when `path`, once symlinks are resolved, is a regular file owned
 * by root or by the effective uid and not writable by group or others, and
 * every folder from its own up to / is likewise owned and not writable by
 * group or others -- except that a root-owned folder with the sticky bit
 * (/tmp) is accepted, since nobody else can rename or remove its entries.
 * Otherwise returns -1 and writes one line to err (cut to errlen), e.g.
 * "refusing /x/y.so: /x is writable by others (mode 0777)". */
int sb_file_check_trusted(const char *path, char *err, size_t errlen);

/* The same check for a file the caller has already opened as `fd` from
 * `path`: also refuses unless fd is the very file that path resolves to now
 * (same device and inode). Open, then check, then read only from fd: a
 * symlink on `path` may sit in a folder nobody checked, and be pointed at
 * a trusted file just for the check. */
int sb_file_check_trusted_fd(int fd, const char *path, char *err,
                             size_t errlen);

#endif

/*
 * filecheck — see filecheck.h. The rule is sshd's StrictModes (its
 * safe_path()): the file and every folder above it, up to /, owned by root
 * or by us and writable by nobody else. The path is resolved first, so a
 * symlink is judged by where it leads. The folder holding a symlink is not
 * on the resolved path and is not checked: whoever can write there can
 * point the link elsewhere at any time, which is why the host checks the
 * file it has open (sb_file_check_trusted_fd), and checks at every load.
 *
 * POSIX ACLs need no code of their own: with an ACL, the group bits of
 * st_mode are the ACL mask, so a write grant to any named user or group
 * shows up as "writable by group".
 */
#include "filecheck.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Checks one resolved path and gives its stat in *out (may be NULL); on
 * refusal writes the reason (after the "refusing PATH: " prefix, which the
 * caller owns) and returns -1. */
static int check_node(const char *node, bool want_dir, struct stat *out,
                      char *why, size_t whylen)
{
    struct stat st;
    /* lstat: node comes from realpath(), so a symlink here means the tree
     * changed under us, which is itself a reason to refuse. */
    if (lstat(node, &st) != 0) {
        snprintf(why, whylen, "cannot stat %s: %s", node, strerror(errno));
        return -1;
    }
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s is not a %s", node,
                 want_dir ? "directory" : "regular file");
        return -1;
    }
    uid_t euid = geteuid();
    if (st.st_uid != 0 && st.st_uid != euid) {
        snprintf(why, whylen,
                 "%s is owned by uid %lu, neither root nor the server's "
                 "uid %lu",
                 node, (unsigned long)st.st_uid, (unsigned long)euid);
        return -1;
    }
    mode_t wr = st.st_mode & (S_IWGRP | S_IWOTH);
    /* In a root-owned sticky folder (/tmp) only an entry's owner, the
     * folder's owner or root may rename or remove the entry, so writers
     * there cannot swap ours. */
    if (wr && !(want_dir && st.st_uid == 0 && (st.st_mode & S_ISVTX))) {
        snprintf(why, whylen, "%s is writable by %s (mode %04o)", node,
                 wr == (S_IWGRP | S_IWOTH) ? "group and others"
                 : wr == S_IWGRP           ? "group"
                                           : "others",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    if (out)
        *out = st;
    return 0;
}

/* fd < 0: no open file to match. */
static int check_path(int fd, const char *path, char *err, size_t errlen);

int sb_file_check_trusted(const char *path, char *err, size_t errlen)
{
    return check_path(-1, path, err, errlen);
}

int sb_file_check_trusted_fd(int fd, const char *path, char *err, size_t errlen)
{
    return check_path(fd, path, err, errlen);
}

static int check_path(int fd, const char *path, char *err, size_t errlen)
{
    char real[PATH_MAX];
    struct stat file, opened;
    char why[PATH_MAX + 128];
    int rc = 0;

    if (!realpath(path, real)) {
        snprintf(why, sizeof(why), "cannot resolve it: %s", strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = check_node(real, false, &file, why, sizeof(why));
    if (rc == 0 && fd >= 0) {
        if (fstat(fd, &opened) != 0) {
            snprintf(why, sizeof(why), "cannot stat the open file: %s",
                     strerror(errno));
            rc = -1;
        } else if (opened.st_dev != file.st_dev ||
                   opened.st_ino != file.st_ino) {
            snprintf(why, sizeof(why),
                     "the file opened is not %s (replaced while loading?)",
                     real);
            rc = -1;
        }
    }
    /* Every folder from the file's up to the root, the root included. */
    while (rc == 0) {
        char *slash = strrchr(real, '/');
        if (!slash)
            break; /* realpath() gives absolute paths; be safe anyway */
        if (slash == real) {
            if (real[1] == 0)
                break; /* "/" was checked on the previous turn */
            real[1] = 0;
        } else {
            *slash = 0;
        }
        rc = check_node(real, true, NULL, why, sizeof(why));
    }
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "refusing %s: %s", path, why);
    return rc;
}

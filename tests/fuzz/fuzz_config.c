/*
 * fuzz_config — libFuzzer target for the INI loader (core/config.c on top of
 * libinih). Each input is written to a memfd and loaded through its
 * /proc/self/fd path, so the loader runs exactly as for a file on disk:
 * fopen, getline, the folder lookup. Then it checks what the loader promises
 * its callers -- the return value counts the problems, each problem names
 * the file -- and frees it all, so LeakSanitizer sees any leak on an error
 * path.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

static void fail(const char *why, const char *detail)
{
    fprintf(stderr, "config loader broke a promise: %s (%s)\n", why,
            detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort(); /* the harness, not the loader */

    sb_config cfg;
    int problems = sb_config_load(&cfg, path);
    if (problems < 0 || (size_t)problems != cfg.nerrors)
        fail("return value is not the number of problems", NULL);
    size_t flen = strlen(path);
    for (size_t i = 0; i < cfg.nerrors; i++) {
        const char *e = cfg.errors[i];
        if (!e || strncmp(e, path, flen) != 0 || e[flen] != ':')
            fail("a problem does not start with FILE:", e);
    }
    if (problems == 0) {
        for (size_t i = 0; i < cfg.nplugins; i++) {
            const sb_plugin_conf *pc = &cfg.plugins[i];
            if (!pc->name || !pc->name[0] || !pc->file)
                fail("a good config has a plugin without name or file",
                     pc->name);
        }
    }
    sb_config_free(&cfg);
    return 0;
}

/*
 * fuzz_check — libFuzzer target for the whole `switchboard -t` path: the INI
 * loader on arbitrary text, then the plugin host's checks and loading of
 * every [plugin.NAME] section (sb_plugin_host_load_config, as main() calls
 * it with keep_going), then the teardown main() does. It never serves.
 *
 * Inputs are written as check.ini into a private folder (0700) that also
 * holds copies of a few real plugins that neither write files nor start
 * threads from init: nest-example, chat, clock, auth, test-init-fails,
 * test-dup-event and test-abi12 (a plugin built against the frozen 1.2
 * header). A `file` resolving outside that folder, or into a subfolder, is
 * pointed at a name that does not exist there, so the fuzzer can never
 * load an arbitrary object (or read a FIFO) of the machine; it still
 * reaches "file not found", "not an ELF file" (check.ini itself) and every
 * refusal after a real load: init failures, event clashes, bad and unknown
 * keys. Promises checked: the loader's count of problems, and that the
 * host's count of failures is 0 or more and never exceeds the number of
 * enabled plugins. Any crash, leak or sanitizer report is a finding.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "bridge.h"
#include "config.h"
#include "log.h"
#include "plugin_host.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/sb-fuzz-check-XXXXXX";
static char ini[PATH_MAX];

static const char *const plugins[] = {
    "nest-example.so",    "chat.so",           "clock.so",     "auth.so",
    "test-init-fails.so", "test-dup-event.so", "test-abi12.so"};

static void die(const char *why, const char *detail)
{
    fprintf(stderr, "fuzz_check: %s%s%s\n", why, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out)
        die("cannot copy a plugin", from);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            die("cannot copy a plugin", to);
    fclose(in);
    if (fclose(out) != 0 || chmod(to, 0644) != 0)
        die("cannot copy a plugin", to);
}

static void remove_dir(void)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, plugins[i]);
        unlink(path);
    }
    unlink(ini);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (!mkdtemp(dir))
        die("mkdtemp", dir);
    atexit(remove_dir);
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        char from[PATH_MAX], to[PATH_MAX];
        snprintf(from, sizeof(from), "%s/%s", SB_FUZZ_PLUGIN_DIR, plugins[i]);
        snprintf(to, sizeof(to), "%s/%s", dir, plugins[i]);
        copy_file(from, to);
    }
    snprintf(ini, sizeof(ini), "%s/check.ini", dir);
    /* Errors only: the loader's problems and the plugins' refusals. */
    sb_log_set_level(SB_LOG_ERROR);
    return 0;
}

/* Whether `file` names an entry of the private folder itself. */
static bool inside(const char *file)
{
    size_t n = strlen(dir);
    if (strncmp(file, dir, n) != 0 || file[n] != '/')
        return false;
    const char *rest = file + n + 1;
    return *rest && !strchr(rest, '/') && strcmp(rest, ".") != 0 &&
           strcmp(rest, "..") != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(ini, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        die("cannot write the input", ini); /* the harness, not the core */

    sb_config cfg;
    int problems = sb_config_load(&cfg, ini);
    if (problems < 0 || (size_t)problems != cfg.nerrors)
        die("the loader's return is not its number of problems", NULL);
    size_t enabled = 0;
    for (size_t i = 0; i < cfg.nplugins; i++) {
        sb_plugin_conf *pc = &cfg.plugins[i];
        enabled += pc->enabled;
        if (pc->file && !inside(pc->file)) {
            free(pc->file);
            if (asprintf(&pc->file, "%s/elsewhere.so", dir) < 0)
                die("out of memory", NULL);
        }
    }

    /* What main() does for -t. */
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        die("uv_loop_init", NULL);
    sb_plugin_host ph;
    if (sb_plugin_host_init(&ph, &loop, cfg.gateways, cfg.ngateways) < 0)
        die("sb_plugin_host_init", NULL);
    sb_bridge_plugin_host(&ph); /* as main() does: the whole host table */
    ph.strict_files = true;
    int failed = sb_plugin_host_load_config(&ph, &cfg, true);
    if (failed < 0 || (size_t)failed > enabled)
        die("more failures than enabled plugins", NULL);
    sb_plugin_host_free(&ph);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        die("the loop has handles left after -t", NULL);
    sb_config_free(&cfg);
    return 0;
}

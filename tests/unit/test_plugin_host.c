/* Unit tests for plugin_host: every refusal reason, registrations dropped
 * with a refused or unloaded plugin, config access, and the hook runners.
 * The plugins come from tests/plugins, built like real ones. */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "plugin_host.h"

/* One gateway, as [server] alone gives. */
static const sb_gateway_conf default_gateway = {.name = "default"};
static uv_loop_t loop;

static void host_init(sb_plugin_host *h)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(sb_plugin_host_init(h, &loop, &default_gateway, 1), 0);
}

static void host_free(sb_plugin_host *h)
{
    sb_plugin_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static sb_plugin_conf conf_for(const char *name, const char *file)
{
    static char path[4096];
    static sb_config_kv kv[2];
    if (file[0] == '/')
        snprintf(path, sizeof(path), "%s", file);
    else
        snprintf(path, sizeof(path), "%s/%s", SB_TEST_PLUGIN_DIR, file);
    kv[0] = (sb_config_kv){"file", path, 1};
    kv[1] = (sb_config_kv){"dsn", "pg://db", 2};
    /* Only test-init-fails reads `dsn`: for any other plugin it would be
     * an unknown key (ABI 1.3). */
    size_t nkeys = strstr(file, "init-fails") ? 2 : 1;
    static size_t gateways[] = {0};
    return (sb_plugin_conf){(char *)name, path,  true,     false, 1,
                            kv,           nkeys, gateways, 1};
}

/* Loads and expects a refusal whose text contains every `needle`. */
static void expect_refusal(const char *file, const char *n1, const char *n2)
{
    sb_plugin_host h;
    host_init(&h);
    sb_plugin_conf pc = conf_for("x", file);
    char err[1024] = "";
    ck_assert_int_eq(sb_plugin_host_load(&h, &pc, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, n1), "'%s' lacks '%s'", err, n1);
    if (n2)
        ck_assert_msg(strstr(err, n2), "'%s' lacks '%s'", err, n2);
    ck_assert_uint_eq(h.count, 0);
    ck_assert_uint_eq(sb_router_count(&h.routers[0]), 0);
    host_free(&h);
}

START_TEST(test_missing_file)
{
    expect_refusal("does-not-exist.so", "file not found", "does-not-exist.so");
}
END_TEST

START_TEST(test_not_shared_object)
{
    char path[] = "/tmp/sb-test-notelf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "hello\n", 6), 6);
    close(fd);
    expect_refusal(path, "not a loadable shared object", path);
    unlink(path);
}
END_TEST

START_TEST(test_directory)
{
    expect_refusal("/tmp", "not a regular file", NULL);
}
END_TEST

START_TEST(test_no_descriptor)
{
    expect_refusal("test-bad-none.so", "no 'sb_plugin_descriptor' symbol",
                   "not a Switchboard plugin");
}
END_TEST

START_TEST(test_bad_magic)
{
    expect_refusal("test-bad-magic.so", "bad magic", NULL);
}
END_TEST

START_TEST(test_major_differs)
{
    char want[64];
    snprintf(want, sizeof(want), "built for plugin ABI %d.0", SB_ABI_MAJOR + 1);
    expect_refusal("test-bad-major.so", want, "major versions differ");
}
END_TEST

START_TEST(test_minor_newer)
{
    char want[64];
    snprintf(want, sizeof(want), "ABI %d.%d, newer than this host's %d.%d",
             SB_ABI_MAJOR, SB_ABI_MINOR + 1, SB_ABI_MAJOR, SB_ABI_MINOR);
    expect_refusal("test-bad-minor.so", want, NULL);
}
END_TEST

START_TEST(test_small_descriptor)
{
    expect_refusal("test-bad-size.so", "descriptor is 8 bytes", NULL);
}
END_TEST

START_TEST(test_init_fails)
{
    /* Its own message, with a config value it read, and the event it had
     * subscribed is gone (expect_refusal checks the router is empty). */
    expect_refusal("test-init-fails.so", "init failed",
                   "database unreachable at pg://db");
}
END_TEST

/* A key the plugin's init never read refuses a 1.3 plugin. */
START_TEST(test_unknown_key)
{
    sb_plugin_host h;
    host_init(&h);
    char err[1024] = "";
    sb_plugin_conf pc = conf_for("nest", "nest-example.so");
    pc.nkeys = 2; /* `dsn`, which nest-example does not read */
    ck_assert_int_eq(sb_plugin_host_load(&h, &pc, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "line 2: unknown key 'dsn' in [plugin.nest] "
                              "(it reads no keys)"),
                  "%s", err);
    ck_assert_uint_eq(h.count, 0);
    ck_assert_uint_eq(sb_router_count(&h.routers[0]), 0);
    host_free(&h);
}
END_TEST

START_TEST(test_duplicate_event)
{
    sb_plugin_host h;
    host_init(&h);
    char err[1024] = "";
    sb_plugin_conf a = conf_for("nest", "nest-example.so");
    ck_assert_int_eq(sb_plugin_host_load(&h, &a, err, sizeof(err)), 0);
    ck_assert_uint_eq(sb_router_count(&h.routers[0]), 2);
    sb_plugin_conf b = conf_for("dup", "test-dup-event.so");
    ck_assert_int_eq(sb_plugin_host_load(&h, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "event 'identity' is already handled by "
                              "plugin 'nest'"),
                  "%s", err);
    /* dup-event's other event went with it; nest-example keeps its own. */
    ck_assert_uint_eq(h.count, 1);
    ck_assert_uint_eq(sb_router_count(&h.routers[0]), 2);
    ck_assert_ptr_null(sb_router_find(&h.routers[0], "mine", 4));
    ck_assert_ptr_eq(sb_router_find(&h.routers[0], "identity", 8)->owner,
                     h.plugins[0]);
    host_free(&h);
}
END_TEST

START_TEST(test_load_and_hooks)
{
    char journal[] = "/tmp/sb-test-journal-XXXXXX";
    int fd = mkstemp(journal);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sb_config_kv kv[] = {{"journal", journal, 2}, {"refuse", "3", 3}};
    sb_plugin_conf pc = conf_for("probe", "test-probe.so");
    pc.keys = kv;
    pc.nkeys = 2;

    sb_plugin_host h;
    host_init(&h);
    char err[1024] = "";
    ck_assert_msg(sb_plugin_host_load(&h, &pc, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_uint_eq(h.count, 1);
    ck_assert_str_eq(sb_host_table.config_get(h.plugins[0], "refuse"), "3");
    ck_assert_ptr_null(sb_host_table.config_get(h.plugins[0], "nope"));
    ck_assert_str_eq(sb_host_table.plugin_name(h.plugins[0]), "probe");
    /* Registration outside init is refused. */
    ck_assert_int_eq(
        sb_host_table.on_ready(h.plugins[0], h.plugins[0]->ready, NULL),
        SB_ERR_STATE);

    const sb_plugin *refuser;
    sb_plugin_host_ready(&h);
    sb_slot_set one = {0}, three = {0};
    ck_assert(sb_plugin_host_connect(&h, 0, 1, &one, &refuser));
    ck_assert_ptr_null(refuser);
    ck_assert(sb_slot_set_has(&one, h.plugins[0]->slot));
    ck_assert(!sb_plugin_host_connect(&h, 0, 3, &three, &refuser));
    ck_assert_ptr_eq(refuser, h.plugins[0]);
    ck_assert(!sb_slot_set_has(&three, h.plugins[0]->slot));
    /* The refuser never hears of the client it refused. */
    sb_plugin_host_disconnect(&h, 3, 1000, &three);
    sb_plugin_host_disconnect(&h, 1, 1000, &one);
    host_free(&h);

    FILE *f = fopen(journal, "r");
    char text[256] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(journal);
    ck_assert_str_eq(text, "ready\nconnect 1\nrefuse 3\ndisconnect 1 1000\n"
                           "unload\n");
}
END_TEST

/* Slots past the first 64 live in words grown on demand. */
START_TEST(test_slot_set)
{
    sb_slot_set set = {0};
    size_t slots[] = {0, 5, 63, 64, 130, 1000};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        ck_assert(!sb_slot_set_has(&set, slots[i]));
        ck_assert_int_eq(sb_slot_set_put(&set, slots[i], true), 0);
        ck_assert(sb_slot_set_has(&set, slots[i]));
    }
    ck_assert(!sb_slot_set_has(&set, 6) && !sb_slot_set_has(&set, 65) &&
              !sb_slot_set_has(&set, 999) && !sb_slot_set_has(&set, 5000));
    ck_assert_int_eq(sb_slot_set_put(&set, 130, false), 0);
    ck_assert(!sb_slot_set_has(&set, 130) && sb_slot_set_has(&set, 64));
    /* Removing what was never there grows nothing. */
    size_t words = set.nhigh;
    ck_assert_int_eq(sb_slot_set_put(&set, 9000, false), 0);
    ck_assert_uint_eq(set.nhigh, words);
    sb_slot_set_free(&set);
    ck_assert(!sb_slot_set_has(&set, 0) && set.high == NULL);
}
END_TEST

START_TEST(test_strerror)
{
    for (int s = SB_OK; s >= SB_ERR_RETIRED; s--)
        ck_assert_str_ne(sb_host_table.strerror(s), "unknown status");
    ck_assert_str_eq(sb_host_table.strerror(-1000), "unknown status");
    ck_assert_uint_eq(sb_host_table.size, sizeof(sb_host));
    ck_assert_uint_eq(sb_host_table.abi_major, SB_ABI_MAJOR);
}
END_TEST

/* config_int reads sizes with the config file's own parser (signed, 64
 * bits), and config_int_range adds bounds. A plugin object made by hand:
 * the getters read only its name and section. */
START_TEST(test_config_int)
{
    sb_config_kv kv[] = {{"big", "-2k", 1},
                         {"min", "-9223372036854775808", 2},
                         {"over", "9223372036854775808", 3},
                         {"plus", "+1m", 4},
                         {"junk", "12kb", 5}};
    sb_plugin p;
    memset(&p, 0, sizeof(p));
    p.name = "sized";
    p.keys = kv;
    p.nkeys = sizeof(kv) / sizeof(kv[0]);
    int64_t iv = 0;
    ck_assert_int_eq(sb_host_table.config_int(&p, "big", 0, &iv), SB_OK);
    ck_assert_int_eq(iv, -2048);
    ck_assert_int_eq(sb_host_table.config_int(&p, "min", 0, &iv), SB_OK);
    ck_assert(iv == INT64_MIN);
    ck_assert_int_eq(sb_host_table.config_int(&p, "plus", 0, &iv), SB_OK);
    ck_assert_int_eq(iv, 1048576);
    ck_assert_int_ne(sb_host_table.config_int(&p, "over", 7, &iv), SB_OK);
    ck_assert_int_eq(iv, 7);
    ck_assert_int_ne(sb_host_table.config_int(&p, "junk", 0, &iv), SB_OK);
    ck_assert_int_eq(
        sb_host_table.config_int_range(&p, "big", 0, -4096, 0, &iv), SB_OK);
    ck_assert_int_eq(iv, -2048);
    ck_assert_int_ne(
        sb_host_table.config_int_range(&p, "plus", 0, 0, 1000, &iv), SB_OK);
    ck_assert_ptr_nonnull(strstr(p.error, "from 0 to 1000"));
}
END_TEST

/* The table a plugin gets is whole: the plugin host's own entries plus the
 * host layer's, added by the bridge (a forgotten one would be a NULL call
 * in some plugin). Every function entry is checked, whatever the minor. */
START_TEST(test_table_complete)
{
    sb_plugin_host h;
    host_init(&h);
    sb_bridge_plugin_host(&h);
    ck_assert_ptr_nonnull(h.release_clients);
    const unsigned char *base = (const unsigned char *)&h.table;
    size_t first = offsetof(sb_host, subscribe);
    size_t n = 0;
    for (size_t off = first; off + sizeof(void (*)(void)) <= sizeof(sb_host);
         off += sizeof(void (*)(void)), n++) {
        void (*fn)(void);
        memcpy(&fn, base + off, sizeof(fn));
        ck_assert_msg(fn != NULL, "host table entry %zu is NULL", n);
    }
    ck_assert_uint_gt(n, 50);
    /* The plugin host alone leaves the host layer's entries to the bridge. */
    ck_assert_ptr_null(sb_host_table.send);
    host_free(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin_host");
    TCase *tc = tcase_create("refusals");
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_not_shared_object);
    tcase_add_test(tc, test_directory);
    tcase_add_test(tc, test_no_descriptor);
    tcase_add_test(tc, test_bad_magic);
    tcase_add_test(tc, test_major_differs);
    tcase_add_test(tc, test_minor_newer);
    tcase_add_test(tc, test_small_descriptor);
    tcase_add_test(tc, test_init_fails);
    tcase_add_test(tc, test_duplicate_event);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_slot_set);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("lifecycle");
    tcase_add_test(tl, test_load_and_hooks);
    tcase_add_test(tl, test_strerror);
    tcase_add_test(tl, test_table_complete);
    tcase_add_test(tl, test_config_int);
    suite_add_tcase(s, tl);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

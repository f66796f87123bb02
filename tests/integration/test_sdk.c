/*
 * The SDK as a plugin author meets it: `cmake --install` into a temporary
 * prefix, the installed default config checks out with the installed
 * binary, sdk/template builds out of tree with the CMake package and with
 * pkg-config, and the built plugin loads and answers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static char prefix[64];

static void run(const char *fmt, const char *a, const char *b)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), fmt, a, b);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

static void expect_file(const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", prefix, rel);
    ck_assert_msg(stat(path, &st) == 0, "not installed: %s", rel);
}

START_TEST(test_install_and_template)
{
    char cmd[1024];
    snprintf(prefix, sizeof(prefix), "/tmp/sb-sdk-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(prefix));
    run("cmake --install '%s' --prefix '%s' >/dev/null", SB_TEST_BUILD_DIR,
        prefix);
    expect_file("bin/switchboard");
    expect_file("include/switchboard/plugin.h");
    expect_file("lib/pkgconfig/switchboard-plugin.pc");
    expect_file("lib/cmake/Switchboard/SwitchboardConfig.cmake");
    expect_file("lib/cmake/Switchboard/SwitchboardConfigVersion.cmake");
    expect_file("lib/switchboard/plugins/nest-example.so");
    expect_file("etc/switchboard/switchboard.ini");
    expect_file("lib/systemd/system/switchboard.service");
    /* The unit starts the installed binary on the installed config. */
    char unit_check[1024];
    snprintf(unit_check, sizeof(unit_check),
             "grep -qx 'ExecStart=%s/bin/switchboard -c "
             "%s/etc/switchboard/switchboard.ini' "
             "'%s/lib/systemd/system/switchboard.service'",
             prefix, prefix, prefix);
    ck_assert_msg(system(unit_check) == 0, "%s", unit_check);

    /* The installed binary accepts the installed default config. */
    run("'%s/bin/switchboard' -t -c '%s/etc/switchboard/switchboard.ini' "
        "2>/dev/null",
        prefix, prefix);
    /* ...and reads it without -c, from any folder: its default is the
     * config under its own prefix, not etc/switchboard.ini in the current
     * folder. */
    char out[8192], want[512];
    snprintf(cmd, sizeof(cmd), "cd / && '%s/bin/switchboard' -t 2>&1", prefix);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    snprintf(want, sizeof(want),
             "%s/etc/switchboard/switchboard.ini: configuration is valid",
             prefix);
    ck_assert_msg(strstr(out, want), "'%s' not in:\n%s", want, out);
    snprintf(cmd, sizeof(cmd), "'%s/bin/switchboard' --help", prefix);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    snprintf(want, sizeof(want),
             "(default: %s/etc/switchboard/switchboard.ini)", prefix);
    ck_assert_msg(strstr(out, want), "'%s' not in:\n%s", want, out);

    /* The plugin author's documentation, where a package's goes. */
    expect_file("share/doc/switchboard/sdk.md");
    expect_file("share/doc/switchboard/CHANGES.md");
    expect_file("share/doc/switchboard/template/hello.c");
    expect_file("share/doc/switchboard/template/CMakeLists.txt");
    /* Where installed plugins go, for pkg-config users. */
    snprintf(cmd, sizeof(cmd),
             "test \"$(realpath \"$(PKG_CONFIG_PATH='%s/lib/pkgconfig' "
             "pkg-config --variable=plugindir switchboard-plugin)\")\" = "
             "\"$(realpath '%s/lib/switchboard/plugins')\"",
             prefix, prefix);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);

    /* The template, copied out of the tree, built with the CMake package. */
    run("cp -r '%s/sdk/template' '%s/hello-src'", SB_TEST_SOURCE_DIR, prefix);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && cmake -S hello-src -B hello-build "
             "-DCMAKE_PREFIX_PATH='%s' >/dev/null && cmake --build "
             "hello-build >/dev/null",
             prefix, prefix);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    expect_file("hello-build/hello.so");

    /* ...and with pkg-config and a bare compiler line. */
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && PKG_CONFIG_PATH='%s/lib/pkgconfig' cc -std=c11 -o "
             "hello-pc.so hello-src/hello.c $(PKG_CONFIG_PATH='%s/lib/"
             "pkgconfig' pkg-config --cflags --libs switchboard-plugin) -Wall "
             "-Wextra -Werror -Wno-unused-parameter",
             prefix, prefix, prefix);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    expect_file("hello-pc.so");

    /* Both load and answer. */
    const char *builds[] = {"hello-build/hello.so", "hello-pc.so"};
    for (int i = 0; i < 2; i++) {
        char sections[1024];
        snprintf(sections, sizeof(sections),
                 "[plugin.hello]\nfile = %s/%s\ngreeting = Hi\n", prefix,
                 builds[i]);
        sb_srv srv;
        srv_start(&srv, NULL, sections);
        ws_client *c = cli_connect(&srv);
        cli_send(c, "{\"event\":\"hello\",\"data\":\"Ada\",\"id\":1}");
        cli_expect(c, "{\"event\":\"hello\",\"data\":\"Hi, Ada!\",\"id\":1}");
        cli_send(c, "{\"event\":\"hello\",\"data\":5}");
        cli_expect(c, "{\"event\":\"exception\",\"data\":{\"status\":"
                      "\"error\",\"message\":\"hello wants a name (a "
                      "string)\",\"cause\":{\"pattern\":\"hello\",\"data\":"
                      "5}}}");
        ws_close(c);
        srv_stop(&srv);
    }
    run("rm -rf '%s'%s", prefix, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sdk");
    TCase *tc = tcase_create("sdk");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_install_and_template);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

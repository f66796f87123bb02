/*
 * test_filecheck — the StrictModes rule for plugin files: each case builds
 * a small tree under a fresh folder in /tmp (itself root-owned and sticky,
 * the accepted exception), changes one mode or owner, and checks both the
 * verdict and the reason, since the reason is what an operator reads.
 * Changing an owner needs root: those cases run only when euid is 0, as in
 * CI.
 */
#include "filecheck.h"

#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOBODY 65534

static char top[256]; /* the test's folder, mode 0700 */
static char err[PATH_MAX + 256];

static void setup(void)
{
    snprintf(top, sizeof(top), "/tmp/sb-filecheck-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(top));
    ck_assert_int_eq(chmod(top, 0755), 0);
    err[0] = 0;
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    ck_assert_int_eq(system(cmd), 0);
}

/* TOP/name, in one of four rotating buffers (so up to four paths stay
 * valid at once). */
static const char *at(const char *name)
{
    static char paths[4][PATH_MAX];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", top, name);
    return p;
}

static const char *make_file(const char *name, mode_t mode)
{
    const char *p = at(name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not really ELF\n", f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(p, mode), 0); /* chmod: umask must not interfere */
    return p;
}

static const char *make_dir(const char *name, mode_t mode)
{
    const char *p = at(name);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(chmod(p, mode), 0);
    return p;
}

static void expect_refused(const char *path, const char *reason)
{
    ck_assert_int_eq(sb_file_check_trusted(path, err, sizeof(err)), -1);
    char want[PATH_MAX + 256];
    snprintf(want, sizeof(want), "refusing %s: %s", path, reason);
    ck_assert_str_eq(err, want);
}

static void expect_trusted(const char *path)
{
    ck_assert_msg(sb_file_check_trusted(path, err, sizeof(err)) == 0, "%s",
                  err);
}

START_TEST(test_good_file)
{
    /* Also the /tmp case: the test folder lies in it. */
    expect_trusted(make_file("good.so", 0644));
    expect_trusted(make_file("readonly.so", 0400));
    /* Group and others may read and run it, only not write it. */
    expect_trusted(make_file("exec.so", 0755));
}
END_TEST

START_TEST(test_group_writable_file)
{
    const char *p = make_file("g.so", 0664);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by group (mode 0664)", p);
    expect_refused(p, why);
}
END_TEST

START_TEST(test_other_writable_file)
{
    const char *p = make_file("o.so", 0646);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by others (mode 0646)", p);
    expect_refused(p, why);
}
END_TEST

START_TEST(test_other_writable_dir)
{
    const char *d = make_dir("open", 0777);
    const char *p = make_file("open/p.so", 0644);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by group and others (mode 0777)",
             d);
    expect_refused(p, why);

    /* Higher up the tree counts as much as the file's own folder. */
    ck_assert_int_eq(chmod(d, 0755), 0);
    make_dir("open/deeper", 0755);
    const char *q = make_file("open/deeper/q.so", 0644);
    expect_trusted(q);
    ck_assert_int_eq(chmod(d, 0757), 0);
    snprintf(why, sizeof(why), "%s is writable by others (mode 0757)", d);
    expect_refused(q, why);
}
END_TEST

START_TEST(test_sticky_root_dir)
{
    struct stat st;
    ck_assert_int_eq(stat("/tmp", &st), 0);
    if (st.st_uid == 0 && (st.st_mode & S_ISVTX) && (st.st_mode & S_IWOTH))
        expect_trusted(make_file("in_tmp.so", 0644)); /* /tmp is 1777 */
    if (geteuid() != 0)
        return; /* our own sticky folder would not be root's */
    const char *d = make_dir("sticky", 01777);
    const char *p = make_file("sticky/s.so", 0644);
    expect_trusted(p);
    /* Without the sticky bit anyone could rename s.so away and put theirs. */
    ck_assert_int_eq(chmod(d, 0777), 0);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by group and others (mode 0777)",
             d);
    expect_refused(p, why);
    /* Sticky, but its owner (who may remove any entry) is someone else. */
    ck_assert_int_eq(chmod(d, 01777), 0);
    ck_assert_int_eq(chown(d, NOBODY, NOBODY), 0);
    snprintf(why, sizeof(why),
             "%s is owned by uid %d, neither root nor the server's uid 0", d,
             NOBODY);
    expect_refused(p, why);
}
END_TEST

START_TEST(test_symlink_to_bad_file)
{
    const char *bad = make_file("bad.so", 0666);
    const char *link = at("link.so");
    ck_assert_int_eq(symlink(bad, link), 0);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by group and others (mode 0666)",
             bad);
    expect_refused(link, why);
    /* The link's own mode (always 0777) is not what counts: a link to a
     * good file is fine. */
    const char *good = make_file("good.so", 0644);
    const char *link2 = at("link2.so");
    ck_assert_int_eq(symlink(good, link2), 0);
    expect_trusted(link2);
}
END_TEST

START_TEST(test_symlink_into_bad_dir)
{
    const char *d = make_dir("open", 0775);
    const char *target = make_file("open/t.so", 0644);
    const char *link = at("link.so");
    ck_assert_int_eq(symlink(target, link), 0);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is writable by group (mode 0775)", d);
    expect_refused(link, why);
}
END_TEST

/* The host opens the file, then checks it: the check must be about the
 * file it opened, not whatever the path names a moment later. */
START_TEST(test_open_file_must_match)
{
    const char *good = make_file("good.so", 0644);
    const char *bad = make_file("bad.so", 0666);
    const char *link = at("link.so");
    ck_assert_int_eq(symlink(good, link), 0);
    int fd = open(link, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(sb_file_check_trusted_fd(fd, link, err, sizeof(err)) == 0,
                  "%s", err);
    close(fd);

    /* Opened while the link led to the bad file, checked once it leads to
     * the good one again. */
    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(symlink(bad, link), 0);
    fd = open(link, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(symlink(good, link), 0);
    ck_assert_int_eq(sb_file_check_trusted(link, err, sizeof(err)), 0);
    ck_assert_int_eq(sb_file_check_trusted_fd(fd, link, err, sizeof(err)), -1);
    char real[PATH_MAX], want[PATH_MAX + 128];
    ck_assert_ptr_nonnull(realpath(good, real));
    snprintf(want, sizeof(want),
             "refusing %s: the file opened is not %s (replaced while "
             "loading?)",
             link, real);
    ck_assert_str_eq(err, want);
    close(fd);
}
END_TEST

START_TEST(test_missing_file)
{
    const char *p = at("missing.so");
    expect_refused(p, "cannot resolve it: No such file or directory");
}
END_TEST

START_TEST(test_not_a_regular_file)
{
    const char *d = make_dir("plugin.so", 0755);
    char why[PATH_MAX + 64];
    snprintf(why, sizeof(why), "%s is not a regular file", d);
    expect_refused(d, why);
}
END_TEST

START_TEST(test_owned_by_someone_else)
{
    if (geteuid() != 0)
        return; /* chown to another user needs root */
    const char *p = make_file("theirs.so", 0644);
    ck_assert_int_eq(chown(p, NOBODY, NOBODY), 0);
    char why[PATH_MAX + 96];
    snprintf(why, sizeof(why),
             "%s is owned by uid %d, neither root nor the server's uid 0", p,
             NOBODY);
    expect_refused(p, why);

    /* The same for a folder: its owner could swap the file. */
    const char *d = make_dir("theirs", 0755);
    const char *q = make_file("theirs/q.so", 0644);
    ck_assert_int_eq(chown(d, NOBODY, NOBODY), 0);
    snprintf(why, sizeof(why),
             "%s is owned by uid %d, neither root nor the server's uid 0", d,
             NOBODY);
    expect_refused(q, why);
}
END_TEST

START_TEST(test_err_is_cut_safely)
{
    const char *p = make_file("g.so", 0666);
    char small[16];
    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(sb_file_check_trusted(p, small, sizeof(small)), -1);
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
    ck_assert_int_eq(strncmp(small, "refusing ", 9), 0);
    /* No buffer at all is allowed too: the verdict alone. */
    ck_assert_int_eq(sb_file_check_trusted(p, NULL, 0), -1);
}
END_TEST

static Suite *filecheck_suite(void)
{
    Suite *s = suite_create("filecheck");
    TCase *tc = tcase_create("filecheck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_good_file);
    tcase_add_test(tc, test_group_writable_file);
    tcase_add_test(tc, test_other_writable_file);
    tcase_add_test(tc, test_other_writable_dir);
    tcase_add_test(tc, test_sticky_root_dir);
    tcase_add_test(tc, test_symlink_to_bad_file);
    tcase_add_test(tc, test_symlink_into_bad_dir);
    tcase_add_test(tc, test_open_file_must_match);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_not_a_regular_file);
    tcase_add_test(tc, test_owned_by_someone_else);
    tcase_add_test(tc, test_err_is_cut_safely);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(filecheck_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

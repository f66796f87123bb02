/*
 * No heap allocation per message in the steady state of the identity echo:
 * the real server runs with an LD_PRELOAD shim (tests/support/alloc_count.c)
 * that counts every malloc-family call; after a warm-up, 100,000 more
 * identity messages must cost (almost) none.
 *
 * Skipped where malloc is not glibc's: the sanitizer build (ASan replaces
 * it) and the valgrind stage (so does valgrind).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static sb_srv srv;
static char count_file[] = "/tmp/sb-alloc-XXXXXX";

/* Asks the shim for the count so far. */
static unsigned long allocations(void)
{
    unlink(count_file);
    ck_assert_int_eq(kill(srv.pid, SIGUSR2), 0);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(count_file, "r");
        unsigned long n;
        if (f && fscanf(f, "%lu", &n) == 1) {
            fclose(f);
            return n;
        }
        if (f)
            fclose(f);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("the allocation counter did not answer");
    return 0;
}

/* Sends `count` identity messages in batches of 16 frames per write (as a
 * pipelining client does) and reads every answer. */
static void echo(ws_client *c, int count)
{
    static const char msg[] =
        "{\"event\":\"identity\",\"data\":\"0123456789012345678901234567890"
        "123456789012345678901234567890123\"}";
    unsigned char batch[16 * 160];
    size_t len = 0;
    for (int i = 0; i < 16; i++) {
        unsigned char mask[4] = {1, 2, 3, (unsigned char)i};
        size_t n;
        unsigned char *f =
            ws_encode_frame(WS_OP_TEXT, 1, 0, mask, msg, sizeof(msg) - 1, &n);
        memcpy(batch + len, f, n);
        len += n;
        free(f);
    }
    for (int sent = 0; sent < count; sent += 16) {
        ck_assert_int_eq(ws_send_raw_bytes(c, batch, len), 0);
        for (int i = 0; i < 16; i++) {
            ws_frame f;
            ck_assert_int_eq(ws_recv(c, SB_TIMEOUT, &f), 1);
            ck_assert_uint_eq(f.len, 66);
            ws_frame_free(&f);
        }
    }
}

START_TEST(test_no_allocation_per_message)
{
#ifdef SB_SANITIZED
    printf("skipped: the sanitizers replace malloc\n");
    return;
#endif
    const char *wrap = getenv("SB_TEST_WRAPPER");
    if (wrap && *wrap) {
        printf("skipped: valgrind replaces malloc\n");
        return;
    }
    int fd = mkstemp(count_file);
    ck_assert_int_ge(fd, 0);
    close(fd);
    setenv("SB_ALLOC_COUNT_FILE", count_file, 1);
    setenv("LD_PRELOAD", SB_ALLOC_COUNT_SO, 1);
    srv_start_default(&srv, NULL);
    unsetenv("LD_PRELOAD");
    unsetenv("SB_ALLOC_COUNT_FILE");

    enum { CLIENTS = 10 };
    ws_client *c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = cli_connect(&srv);
        echo(c[i], 2000); /* warm-up: buffers reach their working size */
    }
    unsigned long before = allocations();
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < CLIENTS; i++)
            echo(c[i], 1000);
    unsigned long after = allocations();
    printf("allocations: %lu before, %lu after 100,000 messages (+%lu)\n",
           before, after, after - before);
    ck_assert_msg(after - before < 50,
                  "%lu allocations for 100,000 messages: allocation per "
                  "message in the steady state",
                  after - before);
    for (int i = 0; i < CLIENTS; i++)
        ws_close(c[i]);
    srv_stop(&srv);
    unlink(count_file);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_no_allocation_per_message);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

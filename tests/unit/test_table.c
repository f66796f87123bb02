/* Unit tests for table: lookups, adds and removals checked against a plain
 * array model over a million random operations, with hashes chosen to
 * collide and to make probe runs wrap around the end of the array (where
 * backward-shift deletion is easiest to get wrong); remove_if and
 * iteration see every item. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "table.h"

typedef struct item {
    uint64_t key;
    uint64_t hash;
    int present;
} item;

static bool key_eq(const void *it, const void *key)
{
    return ((const item *)it)->key == *(const uint64_t *)key;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Checks every item of the model is found exactly when present, and that
 * iteration yields each present item once. */
static void check_model(sb_table *t, item *items, size_t n)
{
    size_t present = 0;
    for (size_t i = 0; i < n; i++) {
        void *got = sb_table_find(t, items[i].hash, key_eq, &items[i].key);
        if (items[i].present) {
            ck_assert_ptr_eq(got, &items[i]);
            present++;
        } else {
            ck_assert_ptr_null(got);
        }
    }
    ck_assert_uint_eq(t->count, present);
    size_t pos = 0, seen = 0;
    for (item *it; (it = sb_table_next(t, &pos));) {
        ck_assert_int_eq(it->present, 1);
        seen++;
    }
    ck_assert_uint_eq(seen, present);
}

static void random_ops(uint64_t hash_space)
{
    enum { N = 600 };
    static item items[N];
    sb_table t = {0};
    for (size_t i = 0; i < N; i++) {
        items[i].key = i;
        /* A small hash space forces long collision runs; hashes near the
         * top of the mask make runs wrap to slot 0. */
        items[i].hash = hash_space ? UINT64_MAX - rnd() % hash_space : rnd();
        items[i].present = 0;
    }
    for (int op = 0; op < 200000; op++) {
        item *it = &items[rnd() % N];
        if (it->present) {
            ck_assert_ptr_eq(sb_table_remove(&t, it->hash, key_eq, &it->key),
                             it);
            it->present = 0;
            ck_assert_ptr_null(sb_table_remove(&t, it->hash, key_eq, &it->key));
        } else {
            ck_assert_int_eq(sb_table_add(&t, it->hash, it), 0);
            it->present = 1;
        }
        if (op % 997 == 0)
            check_model(&t, items, N);
        ck_assert_uint_lt(t.count * 4, t.cap * 3 + 1);
    }
    check_model(&t, items, N);
    sb_table_free(&t);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_ptr_null(sb_table_find(&t, 1, key_eq, &items[0].key));
}

START_TEST(test_random_spread_hashes)
{
    random_ops(0);
}
END_TEST

START_TEST(test_random_colliding_hashes)
{
    random_ops(7);
}
END_TEST

START_TEST(test_random_one_hash)
{
    random_ops(1);
}
END_TEST

static bool odd_key(void *it, void *ctx)
{
    size_t *asked = ctx;
    (*asked)++;
    return ((item *)it)->key % 2 == 1;
}

START_TEST(test_remove_if_wrapping_runs)
{
    enum { N = 200 };
    static item items[N];
    for (int round = 0; round < 50; round++) {
        sb_table t = {0};
        for (size_t i = 0; i < N; i++) {
            items[i] = (item){i, UINT64_MAX - rnd() % 40, 1};
            ck_assert_int_eq(sb_table_add(&t, items[i].hash, &items[i]), 0);
        }
        size_t asked = 0;
        ck_assert_uint_eq(sb_table_remove_if(&t, odd_key, &asked), N / 2);
        ck_assert_uint_ge(asked, N);
        for (size_t i = 0; i < N; i++)
            items[i].present = items[i].key % 2 == 0;
        check_model(&t, items, N);
        sb_table_free(&t);
    }
}
END_TEST

START_TEST(test_refuses_null_item)
{
    sb_table t = {0};
    ck_assert_int_eq(sb_table_add(&t, 5, NULL), -1);
    ck_assert_uint_eq(t.count, 0);
    size_t pos = 0;
    ck_assert_ptr_null(sb_table_next(&t, &pos));
    ck_assert_uint_eq(sb_table_remove_if(&t, odd_key, &pos), 0);
    sb_table_free(&t);
}
END_TEST

START_TEST(test_mix_spreads_sequential_ids)
{
    /* Sequential ids must not fill neighbouring slots: with 1024 ids in
     * 2048 slots the longest run stays short. */
    enum { CAP = 2048 };
    static char used[CAP];
    for (uint64_t id = 1; id <= 1024; id++)
        used[sb_table_mix64(id) & (CAP - 1)]++;
    int run = 0, longest = 0;
    for (int i = 0; i < CAP; i++) {
        run = used[i] ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    ck_assert_int_lt(longest, 16);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("table");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_random_spread_hashes);
    tcase_add_test(tc, test_random_colliding_hashes);
    tcase_add_test(tc, test_random_one_hash);
    tcase_add_test(tc, test_remove_if_wrapping_runs);
    tcase_add_test(tc, test_refuses_null_item);
    tcase_add_test(tc, test_mix_spreads_sequential_ids);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

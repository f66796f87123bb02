/* Unit tests for router: add, find by (bytes, length), conflicts, removal by
 * owner, and growth past many events with removals in between. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

static int fn_a(sb_plugin *p, sb_message *m, void *ud)
{
    return 0;
}

static int fn_b(sb_plugin *p, sb_message *m, void *ud)
{
    return 1;
}

/* Owners are opaque to the router: any distinct addresses will do. */
static char owner1, owner2;
#define O1 ((sb_plugin *)&owner1)
#define O2 ((sb_plugin *)&owner2)

START_TEST(test_add_find)
{
    sb_router r;
    sb_router_init(&r);
    ck_assert_ptr_null(sb_router_find(&r, "events", 6));
    ck_assert_int_eq(sb_router_add(&r, "events", O1, fn_a, &owner1, NULL),
                     SB_OK);
    ck_assert_int_eq(sb_router_add(&r, "identity", O2, fn_b, NULL, NULL),
                     SB_OK);
    const sb_route *e = sb_router_find(&r, "events", 6);
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_eq(e->owner, O1);
    ck_assert_ptr_eq(e->udata, &owner1);
    ck_assert(e->fn == fn_a);
    /* Lookup is by length: a prefix or a longer name is another event. */
    ck_assert_ptr_null(sb_router_find(&r, "event", 5));
    ck_assert_ptr_null(sb_router_find(&r, "eventsX", 7));
    ck_assert_ptr_nonnull(sb_router_find(&r, "eventsX", 6));
    ck_assert_ptr_eq(sb_router_find(&r, "identity", 8)->owner, O2);
    sb_router_free(&r);
}
END_TEST

START_TEST(test_conflict)
{
    sb_router r;
    sb_router_init(&r);
    ck_assert_int_eq(sb_router_add(&r, "say", O1, fn_a, NULL, NULL), SB_OK);
    const sb_route *existing = NULL;
    ck_assert_int_eq(sb_router_add(&r, "say", O2, fn_b, NULL, &existing),
                     SB_ERR_EXISTS);
    ck_assert_ptr_eq(existing->owner, O1);
    ck_assert_int_eq(sb_router_add(&r, "say", O1, fn_b, NULL, NULL),
                     SB_ERR_EXISTS);
    ck_assert_int_eq(sb_router_add(&r, "", O1, fn_a, NULL, NULL),
                     SB_ERR_INVALID);
    ck_assert_int_eq(sb_router_add(&r, NULL, O1, fn_a, NULL, NULL),
                     SB_ERR_INVALID);
    ck_assert_int_eq(sb_router_add(&r, "x", O1, NULL, NULL, NULL),
                     SB_ERR_INVALID);
    sb_router_free(&r);
}
END_TEST

START_TEST(test_remove_owner_and_growth)
{
    sb_router r;
    sb_router_init(&r);
    char name[32];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 1000; i++) {
            snprintf(name, sizeof(name), "ev%d", i);
            ck_assert_int_eq(
                sb_router_add(&r, name, i % 2 ? O1 : O2, fn_a, NULL, NULL),
                SB_OK);
        }
        ck_assert_uint_eq(sb_router_count(&r), 1000);
        ck_assert_uint_eq(sb_router_remove_owner(&r, O1), 500);
        for (int i = 0; i < 1000; i++) {
            snprintf(name, sizeof(name), "ev%d", i);
            const sb_route *found = sb_router_find(&r, name, strlen(name));
            if (i % 2)
                ck_assert_ptr_null(found);
            else
                ck_assert_ptr_eq(found->owner, O2);
        }
        /* The names O1 had are free again. */
        ck_assert_int_eq(sb_router_add(&r, "ev1", O2, fn_b, NULL, NULL), SB_OK);
        ck_assert_uint_eq(sb_router_remove_owner(&r, O2), 501);
        ck_assert_uint_eq(sb_router_count(&r), 0);
    }
    /* Removal leaves no debris: the table keeps an empty slot. */
    ck_assert_uint_lt(sb_router_count(&r), r.t.cap);
    ck_assert_ptr_null(sb_router_find(&r, "nothing", 7));
    sb_router_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_test(tc, test_add_find);
    tcase_add_test(tc, test_conflict);
    tcase_add_test(tc, test_remove_owner_and_growth);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

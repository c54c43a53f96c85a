/* test_lease.c - the pure parts of lease.c: the static split's hash (pinned: changing it would
 * move shards between workers of a running Indexed Job), its spread, and the balance target.
 *
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lease.h"

static void test_hash_is_fnv1a_64(void **state)
{
    (void)state;
    /* FNV-1a 64 reference values. */
    assert_true(k2p_lease_hash("") == 0xcbf29ce484222325ull);
    assert_true(k2p_lease_hash("a") == 0xaf63dc4c8601ec8cull);
    assert_true(k2p_lease_hash("foobar") == 0x85944171f73967e8ull);
}

static void test_static_split_covers_every_worker_once(void **state)
{
    int count[5] = {0};
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char id[32];
        int w;
        snprintf(id, sizeof id, "shardId-%012d", i);
        w = k2p_static_worker_of(id, 5);
        assert_in_range(w, 0, 4);
        assert_int_equal(w, k2p_static_worker_of(id, 5)); /* stable */
        count[w]++;
    }
    for (int w = 0; w < 5; w++)
        assert_in_range(count[w], 150, 250); /* 200 each, give or take */
    assert_int_equal(k2p_static_worker_of("shardId-000000000007", 1), 0);
    assert_int_equal(k2p_static_worker_of("shardId-000000000007", 0), 0);
}

static void test_target_is_ceiling(void **state)
{
    (void)state;
    assert_int_equal(k2p_lease_target(32, 3), 11);
    assert_int_equal(k2p_lease_target(33, 3), 11);
    assert_int_equal(k2p_lease_target(34, 3), 12);
    assert_int_equal(k2p_lease_target(0, 3), 0);
    assert_int_equal(k2p_lease_target(5, 0), 5);
    assert_int_equal(k2p_lease_target(2, 8), 1);
}

static void test_owner_names_differ(void **state)
{
    char a[K2P_OWNER_BUF], b[K2P_OWNER_BUF];
    (void)state;
    k2p_lease_owner_name(a);
    k2p_lease_owner_name(b);
    assert_non_null(strchr(a, ':'));
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_is_fnv1a_64),
        cmocka_unit_test(test_static_split_covers_every_worker_once),
        cmocka_unit_test(test_target_is_ceiling),
        cmocka_unit_test(test_owner_names_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

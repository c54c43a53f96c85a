/* test_loader_many_shards.c - a stream of more shards than one ListShards page is loaded whole.
 *
 * 1,030 shards preloaded in tests/mock_kinesis (AWS, and the mock, answer at most 1,000 shards
 * per ListShards page), 10 records of ~100 bytes each: the loader follows NextToken, runs one
 * reader per shard (1,030 threads and connections) and must leave the exact set in the table,
 * every shard's checkpoint at its last record, and a summary that counts every row; a rerun
 * loads nothing. The mock is held to "up to at least 1024 shards" (issue 4) here, together
 * with the loader. How fast and how much memory at many shards is the benchmark's business
 * (docs/benchmarks.md), not this test's.
 *
 * Threading: single-threaded; the loader and the mock are child processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_testlib.h"
#include "kinesis2pg/common.h"

#define SHARDS 1030
#define RECORDS (SHARDS * 10)
#define RECORD_SIZE 100

static k2p_lt g;
static k2p_test_mock mk;
static k2p_lt_set g_set;

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, NULL);
}

static int teardown(void **state)
{
    (void)state;
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

static void test_more_shards_than_one_listing_page(void **state)
{
    const char *stream = "many_shards";
    const char **args = k2p_ft_args(stream, NULL);
    char want[64];
    k2p_lt_run r;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, SHARDS, RECORDS, RECORD_SIZE, NULL, &g_set);
    assert_int_equal(g_set.n, RECORDS);
    k2p_lt_run_loader(&g, args, 300, &r);
    k2p_lt_expect_exit(&r, 0, "a load of 1,030 shards");
    snprintf(want, sizeof want, "total: %d rows, 0 dead letters", RECORDS);
    if (!strstr(r.err, want))
        fail_msg("the run summary does not say \"%s\":\n%s", want, r.err);
    fprintf(stderr, "  %d shards, %d rows loaded in %.1f s\n", SHARDS, RECORDS, r.secs);
    k2p_lt_run_free(&r);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    assert_int_equal(k2p_lt_i64(&g,
                                "SELECT count(DISTINCT shard_id) FROM kinesis2pg.checkpoints "
                                "WHERE stream = '%s'",
                                stream),
                     SHARDS);
    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", stream, args), 0);
    free(args);
    k2p_ft_mock_stop(&mk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_shards_than_one_listing_page),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_loader_max_messages.c - runs cut short by --max-messages never skip a record.
 *
 * Repeated runs with a small --max-messages (and a small --chunk-size, so a run really stops
 * early) until a run loads nothing: every run before the last makes progress and stays near
 * its budget, and at the end the table holds every record exactly once, from every shard.
 * The second case makes the budget smaller than one chunk so some shards are never reached in
 * a run, with records older than the runs' start: dlt's "previous start minus 1 s" rule would
 * skip those records forever (DESIGN §1 rule 3).
 *
 * Threading: single-threaded; the loader runs as a child process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/common.h"
#include "loader_testlib.h"

static k2p_lt g;

static int setup(void **state)
{
    (void)state;
    return k2p_lt_start(&g) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    k2p_lt_stop(&g);
    return 0;
}

/* Runs the loader with --max-messages max --chunk-size chunk until a run loads nothing; checks
 * each run's progress and budget. Returns the number of runs. */
static int load_in_small_runs(const char *stream, int shards, int max, int chunk, int64_t total)
{
    char max_s[16], chunk_s[16];
    int64_t loaded = 0;
    int runs = 0;
    const int64_t budget = (int64_t)max + (int64_t)shards * chunk; /* one chunk per reader over */
    const int max_runs = (int)(total / (max < 1 ? 1 : max)) + 20;

    snprintf(max_s, sizeof max_s, "%d", max);
    snprintf(chunk_s, sizeof chunk_s, "%d", chunk);
    for (;;) {
        int64_t added =
            K2P_LT_LOAD_OK(&g, "kinesis", stream, "--stream", stream, "--from", "trim_horizon",
                           "--max-messages", max_s, "--chunk-size", chunk_s);
        runs++;
        loaded += added;
        fprintf(stderr, "  %s run %d: +%lld rows (%lld/%lld)\n", stream, runs, (long long)added,
                (long long)loaded, (long long)total);
        if (added > budget)
            fail_msg("%s run %d loaded %lld rows with --max-messages %d --chunk-size %d"
                     " (%d shards): more than %lld",
                     stream, runs, (long long)added, max, chunk, shards, (long long)budget);
        if (added == 0)
            break;
        if (runs >= max_runs)
            fail_msg("%s: still loading after %d runs (%lld of %lld rows)", stream, runs,
                     (long long)loaded, (long long)total);
    }
    if (loaded != total)
        fprintf(stderr, "  %s: a run loaded 0 rows with %lld of %lld loaded\n", stream,
                (long long)loaded, (long long)total);
    return runs;
}

static void test_small_budget_runs_load_everything_once(void **state)
{
    k2p_lt_set set = {0};
    int runs;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "mm", 4);
    assert_int_equal(k2p_lt_produce(&g, "mm", &set, "--count 2000 --kind json --size 150"), 2000);
    runs = load_in_small_runs("mm", 4, 50, 25, 2000);
    assert_true(runs >= 2000 / (50 + 4 * 25));
    k2p_lt_assert_table(&g, "kinesis", "mm", "mm", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "mm", &set);
    k2p_lt_set_free(&set);
}

static void test_budget_below_one_chunk_skips_no_shard(void **state)
{
    k2p_lt_set set = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "mm_tiny", 4);
    assert_int_equal(k2p_lt_produce(&g, "mm_tiny", &set, "--count 200 --kind json --seed 5"), 200);
    /* Every record is more than 1 s older than every run's start. */
    k2p_lt_sleep_until_wall(k2p_wall_us() + 2000000);
    load_in_small_runs("mm_tiny", 4, 3, 10, 200);
    k2p_lt_assert_table(&g, "kinesis", "mm_tiny", "mm_tiny", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "mm_tiny", &set);

    /* Records that arrive later still load, in one unlimited run. */
    k2p_lt_produce(&g, "mm_tiny", &set, "--count 40 --kind json --seed 6");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "mm_tiny", "--stream", "mm_tiny"), 40);
    k2p_lt_assert_table(&g, "kinesis", "mm_tiny", "mm_tiny", &set, K2P_LT_JSON);
    k2p_lt_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_budget_runs_load_everything_once),
        cmocka_unit_test(test_budget_below_one_chunk_skips_no_shard),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

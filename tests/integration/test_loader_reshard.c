/* test_loader_reshard.c - splits and merges: every record of parents and children lands once,
 * and per partition key, every row of a parent shard is committed before any row of its child
 * (DESIGN §1 rule 4, as the Kinesis Client Library orders them).
 *
 * "Committed before" is checked with xmin: a row's inserting transaction id. For each
 * (parent, child) pair from ListShards and each partition key, max(xmin) of the parent's rows
 * must be below min(xmin) of the child's rows (a transaction that starts after another
 * committed gets a larger id; the test cluster is fresh, so no wraparound).
 *   staged: put, load, split, put, load, merge, put, load (each generation in its own run);
 *   one go: put, split, put, merge, put, then a single load with several writers and small
 *           batches, so the loader itself must hold children back until their parents are in.
 *
 * Threading: single-threaded; the loader runs as a child process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "loader_testlib.h"

static k2p_lt g;

/* Middle of shard 0's hash range in a 2-shard stream ([0, 2^127 - 1]): 2^126. */
#define SPLIT_AT "85070591730234615865843651857942052864"

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

static void list_shards(const char *stream, k2p_shard_list *l)
{
    k2p_err err = {0};
    memset(l, 0, sizeof *l);
    if (k2p_kinesis_list_shards(g.client, stream, 0, l, &err))
        fail_msg("list shards of %s: %s", stream, err.msg);
}

/* Splits shard 0 of a 2-shard stream in the middle; returns nothing, waits until ACTIVE. */
static void split_first(const char *stream)
{
    k2p_err err = {0};
    k2p_shard_list l;
    list_shards(stream, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.shards[0].starting_hash_key, "0");
    if (k2p_kinesis_split_shard(g.client, stream, l.shards[0].shard_id, SPLIT_AT, &err))
        fail_msg("split %s: %s", stream, err.msg);
    if (k2p_kinesis_wait_active(g.client, stream, 20000, &err))
        fail_msg("wait %s: %s", stream, err.msg);
    k2p_shard_list_deinit(&l);
}

/* Merges the two children of the split (the last two shards, adjacent); waits until ACTIVE. */
static void merge_children(const char *stream)
{
    k2p_err err = {0};
    k2p_shard_list l;
    list_shards(stream, &l);
    assert_int_equal(l.n, 4);
    if (k2p_kinesis_merge_shards(g.client, stream, l.shards[2].shard_id, l.shards[3].shard_id,
                                 &err))
        fail_msg("merge %s: %s", stream, err.msg);
    if (k2p_kinesis_wait_active(g.client, stream, 20000, &err))
        fail_msg("wait %s: %s", stream, err.msg);
    k2p_shard_list_deinit(&l);
}

/* Checks the commit order of parents before children per partition key (see the top). */
static void assert_parents_committed_first(const char *stream)
{
    k2p_shard_list l;
    k2p_buf pairs;
    char *q = k2p_lt_qualify("kinesis", stream);
    int64_t bad, compared;
    size_t n_pairs = 0;

    list_shards(stream, &l);
    k2p_buf_init(&pairs, 0);
    for (size_t i = 0; i < l.n; i++) {
        const char *par[2] = {l.shards[i].parent_shard_id, l.shards[i].adjacent_parent_shard_id};
        for (int j = 0; j < 2; j++) {
            if (!par[j])
                continue;
            k2p_buf_printf(&pairs, "%s('%s', '%s')", n_pairs ? ", " : "", par[j],
                           l.shards[i].shard_id);
            n_pairs++;
        }
    }
    assert_int_equal(n_pairs, 4); /* 0 -> 2, 0 -> 3, 2 -> 4, 3 -> 4 */

#define LINEAGE_CTE                                                                                \
    "WITH r AS (SELECT _kinesis__shard_id s, _kinesis__partition k, xmin::text::bigint x"          \
    " FROM %s), l(parent, child) AS (VALUES %s),"                                                  \
    " p AS (SELECT l.parent, l.child, r.k, max(r.x) mx FROM l JOIN r ON r.s = l.parent"            \
    " GROUP BY 1, 2, 3),"                                                                          \
    " c AS (SELECT l.parent, l.child, r.k, min(r.x) mn FROM l JOIN r ON r.s = l.child"             \
    " GROUP BY 1, 2, 3) "

    compared = k2p_lt_i64(&g, LINEAGE_CTE "SELECT count(*) FROM p JOIN c USING (parent, child, k)",
                          q, pairs.data);
    /* With 20 keys the generations share keys: the check must compare something. */
    assert_true(compared > 0);
    bad = k2p_lt_i64(&g,
                     LINEAGE_CTE "SELECT count(*) FROM p JOIN c USING (parent, child, k)"
                                 " WHERE p.mx >= c.mn",
                     q, pairs.data);
    if (bad) {
        char *ex = k2p_lt_str(&g,
                              LINEAGE_CTE
                              "SELECT string_agg(format('%%s -> %%s key %%s: parent max xmin %%s,"
                              " child min xmin %%s', parent, child, k, mx, mn), E'\\n')"
                              " FROM (SELECT * FROM p JOIN c USING (parent, child, k)"
                              " WHERE p.mx >= c.mn ORDER BY 1, 2, 3 LIMIT 10) v",
                              q, pairs.data);
        fprintf(stderr, "child rows committed before (or with) their parent's rows:\n%s\n",
                ex ? ex : "?");
        free(ex);
        k2p_lt_print_last_run();
        fail_msg("%s: %lld of %lld (parent, child, key) groups have a child row committed no"
                 " later than a parent row",
                 stream, (long long)bad, (long long)compared);
    }
#undef LINEAGE_CTE
    k2p_buf_deinit(&pairs);
    k2p_shard_list_deinit(&l);
    free(q);
}

static void test_staged_split_and_merge(void **state)
{
    k2p_lt_set set = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "rs_staged", 2);
    k2p_lt_produce(&g, "rs_staged", &set, "--count 300 --keys 20 --seed 1");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rs_staged", "--stream", "rs_staged", "--from",
                                      "trim_horizon"),
                       300);
    split_first("rs_staged");
    k2p_lt_produce(&g, "rs_staged", &set, "--count 300 --keys 20 --seed 2");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rs_staged", "--stream", "rs_staged"), 300);
    k2p_lt_assert_table(&g, "kinesis", "rs_staged", "rs_staged", &set, K2P_LT_JSON);
    merge_children("rs_staged");
    k2p_lt_produce(&g, "rs_staged", &set, "--count 300 --keys 20 --seed 3");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rs_staged", "--stream", "rs_staged"), 300);
    k2p_lt_assert_table(&g, "kinesis", "rs_staged", "rs_staged", &set, K2P_LT_JSON);
    assert_parents_committed_first("rs_staged");
    /* Nothing more to load; closed shards are marked closed. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rs_staged", "--stream", "rs_staged"), 0);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.checkpoints"
                                    " WHERE stream = 'rs_staged' AND closed"),
                     3);
    k2p_lt_set_free(&set);
}

static void test_all_generations_in_one_run(void **state)
{
    k2p_lt_set set = {0};
    int64_t added;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "rs_onego", 2);
    k2p_lt_produce(&g, "rs_onego", &set, "--count 600 --keys 20 --seed 4");
    split_first("rs_onego");
    k2p_lt_produce(&g, "rs_onego", &set, "--count 600 --keys 20 --seed 5");
    merge_children("rs_onego");
    k2p_lt_produce(&g, "rs_onego", &set, "--count 600 --keys 20 --seed 6");
    added = K2P_LT_LOAD_OK(&g, "kinesis", "rs_onego", "--stream", "rs_onego", "--from",
                           "trim_horizon", "--writers", "4", "--batch-rows", "40", "--flush-ms",
                           "20", "--chunk-size", "50");
    k2p_lt_assert_table(&g, "kinesis", "rs_onego", "rs_onego", &set, K2P_LT_JSON);
    K2P_LT_EXPECT_ROWS(added, 1800);
    k2p_lt_assert_checkpoints(&g, "rs_onego", &set);
    assert_parents_committed_first("rs_onego");
    k2p_lt_set_free(&set);
}

/* The same generations read by three --leases processes at once: a child is leased only once
 * its parents are closed, whichever process read them, so the order per key holds across
 * processes too (issue 7). */
static void test_all_generations_three_lease_processes(void **state)
{
    k2p_lt_set set = {0};
    const char *const args[] = {"--stream", "rs_leases", "--from", "trim_horizon", "--leases",
                                "--lease-ttl-ms", "3000", "--writers", "2", "--batch-rows",
                                "40", "--flush-ms", "20", "--chunk-size", "50", NULL};
    pid_t pids[3];
    char logs[3][320];
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "rs_leases", 2);
    k2p_lt_produce(&g, "rs_leases", &set, "--count 600 --keys 20 --seed 14");
    split_first("rs_leases");
    k2p_lt_produce(&g, "rs_leases", &set, "--count 600 --keys 20 --seed 15");
    merge_children("rs_leases");
    k2p_lt_produce(&g, "rs_leases", &set, "--count 600 --keys 20 --seed 16");
    for (int i = 0; i < 3; i++) {
        snprintf(logs[i], sizeof logs[i], "%s/rs_leases-%d.log", g.tmpdir, i);
        pids[i] = k2p_lt_spawn_loader(&g, args, logs[i]);
    }
    for (int i = 0; i < 3; i++) {
        int status = 0;
        if (!k2p_lt_wait_pid(pids[i], 180000, &status)) {
            kill(pids[i], SIGKILL);
            fail_msg("--leases process %d did not finish in 180 s (log %s)", i, logs[i]);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("--leases process %d ended with status 0x%x (log %s)", i, status, logs[i]);
    }
    k2p_lt_assert_table(&g, "kinesis", "rs_leases", "rs_leases", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "rs_leases", &set);
    assert_parents_committed_first("rs_leases");
    k2p_lt_set_free(&set);
}

static void test_children_read_whole_with_latest(void **state)
{
    /* A stream first loaded with --from latest, then split: the children's records follow
     * records we read, so they are read whole whatever --from says (DESIGN §1 rule 4). */
    k2p_lt_set before = {0}, after = {0};
    int64_t added;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "rs_latest", 2);
    k2p_lt_produce(&g, "rs_latest", &before, "--count 50 --keys 20 --seed 7");
    k2p_lt_sleep_until_wall(k2p_wall_us() + 2200000);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", "rs_latest", "--stream", "rs_latest", "--from", "latest"), 0);
    k2p_lt_produce(&g, "rs_latest", &after, "--count 100 --keys 20 --seed 8");
    split_first("rs_latest");
    k2p_lt_produce(&g, "rs_latest", &after, "--count 100 --keys 20 --seed 9");
    added = K2P_LT_LOAD_OK(&g, "kinesis", "rs_latest", "--stream", "rs_latest", "--from", "latest");
    k2p_lt_assert_table(&g, "kinesis", "rs_latest", "rs_latest", &after, K2P_LT_JSON);
    K2P_LT_EXPECT_ROWS(added, 200);
    k2p_lt_set_free(&before);
    k2p_lt_set_free(&after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staged_split_and_merge),
        cmocka_unit_test(test_all_generations_in_one_run),
        cmocka_unit_test(test_all_generations_three_lease_processes),
        cmocka_unit_test(test_children_read_whole_with_latest),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_loader_fanout.c - `kinesis2pg load --consumer NAME` (enhanced fan-out: SubscribeToShard
 * over HTTP/2) against kinesis-local, through the same rings, writers and checkpoints as
 * polling.
 *
 *  - a batch load registers the consumer, loads every record once (dead letters included),
 *    checkpoints every shard; a rerun reuses the consumer and loads only what is new;
 *  - --max-messages takes exactly that many records;
 *  - a split during the life of the stream: the closed parent is read to its end (kinesis-local
 *    never ends a closed shard's subscription: the loader stops at its EndingSequenceNumber)
 *    and its children after it;
 *  - --follow: records put while it runs arrive; SIGTERM ends it with exit 0 and nothing lost;
 *  - SIGKILL at random moments of a fan-out load, restarts: each record once;
 *  - against mock_kinesis: a split in the middle of the subscriptions (the parent's last event
 *    carries ChildShards, as AWS sends it), connection resets and error messages during
 *    subscriptions, resets of SubscribeToShard calls and 1-second subscriptions: each record
 *    once.
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
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis_local_harness.h"
#include "loader_testlib.h"
#include "mock_kinesis_harness.h"

static k2p_lt g;
static k2p_test_kinesis_local kl;
static int kl_up;

static int setup(void **state)
{
    (void)state;
    if (k2p_lt_start_pg_only(&g) != 0)
        return -1;
    if (!g.up)
        return 0; /* PostgreSQL missing: the tests skip */
    if (k2p_test_kinesis_local_start(&kl) != 0) {
        fprintf(stderr, "kinesis-local did not start (run scripts/setup.sh)\n");
        return -1;
    }
    kl_up = 1;
    k2p_lt_use_endpoint(&g, kl.endpoint);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (kl_up)
        k2p_test_kinesis_local_stop(&kl);
    k2p_lt_stop(&g);
    return 0;
}

static void test_batch_load_and_rerun(void **state)
{
    k2p_lt_set set = {0};
    k2p_lt_run r;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "fo", 3);
    k2p_lt_produce(&g, "fo", &set, "--count 600 --kind json --invalid 9");
    /* one record of 900 KB: an event of its own */
    k2p_lt_produce(&g, "fo", &set, "--count 1 --kind json --size 900000 --seed 3");
    {
        const char *const args[] = {"--stream", "fo", "--consumer", "k2p-test", "--from",
                                    "trim_horizon", NULL};
        k2p_lt_run_loader(&g, args, 180, &r);
        k2p_lt_expect_exit(&r, 0, "fan-out load");
        if (!strstr(r.err, "enhanced fan-out"))
            fail_msg("the loader did not say it reads with fan-out:\n%s", r.err);
        k2p_lt_run_free(&r);
    }
    k2p_lt_assert_table(&g, "kinesis", "fo", "fo", &set, K2P_LT_JSON);
    k2p_lt_assert_dead_letters(&g, "fo", &set);
    k2p_lt_assert_checkpoints(&g, "fo", &set);

    /* The rerun reuses the consumer and starts after the checkpoints. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "fo", "--stream", "fo", "--consumer",
                                      "k2p-test"),
                       0);
    k2p_lt_produce(&g, "fo", &set, "--count 150 --kind json --seed 7");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "fo", "--stream", "fo", "--consumer",
                                      "k2p-test"),
                       150);
    k2p_lt_assert_table(&g, "kinesis", "fo", "fo", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "fo", &set);
    k2p_lt_set_free(&set);
}

static void test_max_messages(void **state)
{
    k2p_lt_set set = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "fo_max", 2);
    k2p_lt_produce(&g, "fo_max", &set, "--count 200 --kind json");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "fo_max", "--stream", "fo_max",
                                      "--consumer", "k2p-max", "--from", "trim_horizon",
                                      "--max-messages", "70"),
                       70);
    /* the rest comes with the next run, none twice */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "fo_max", "--stream", "fo_max",
                                      "--consumer", "k2p-max"),
                       130);
    k2p_lt_assert_table(&g, "kinesis", "fo_max", "fo_max", &set, K2P_LT_JSON);
    k2p_lt_set_free(&set);
}

static void test_split(void **state)
{
    k2p_lt_set set = {0};
    k2p_shard_list l;
    k2p_err err = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "fo_split", 2);
    k2p_lt_produce(&g, "fo_split", &set, "--count 200 --kind json");
    memset(&l, 0, sizeof l);
    if (k2p_kinesis_list_shards(g.client, "fo_split", 0, &l, &err))
        fail_msg("ListShards: %s", err.msg);
    if (k2p_kinesis_split_shard(g.client, "fo_split", l.shards[0].shard_id,
                                "85070591730234615865843651857942052864", &err))
        fail_msg("SplitShard: %s", err.msg);
    k2p_shard_list_deinit(&l);
    if (k2p_kinesis_wait_active(g.client, "fo_split", 20000, &err))
        fail_msg("wait: %s", err.msg);
    k2p_lt_produce(&g, "fo_split", &set, "--count 200 --kind json --seed 9");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "fo_split", "--stream", "fo_split",
                                      "--consumer", "k2p-split", "--from", "trim_horizon"),
                       400);
    k2p_lt_assert_table(&g, "kinesis", "fo_split", "fo_split", &set, K2P_LT_JSON);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = "
                                    "'fo_split' AND closed"),
                     1);
    k2p_lt_set_free(&set);
}

/* Waits until the table has `want` rows (or the deadline); returns the count. */
static int64_t wait_rows(const char *table, int64_t want, int timeout_s)
{
    int64_t n = 0;
    for (int i = 0; i < timeout_s * 10; i++) {
        n = k2p_lt_count(&g, "kinesis", table);
        if (n >= want)
            break;
        usleep(100000);
    }
    return n;
}

static void test_follow_then_sigterm(void **state)
{
    k2p_lt_set set = {0};
    char log_path[400];
    const char *const args[] = {"--stream", "fo_follow", "--consumer", "k2p-follow", "--from",
                                "trim_horizon", "--follow", NULL};
    pid_t pid;
    int status;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "fo_follow", 2);
    k2p_lt_produce(&g, "fo_follow", &set, "--count 200 --kind json");
    snprintf(log_path, sizeof log_path, "%s/fo_follow.log", g.tmpdir);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    assert_int_equal(wait_rows("fo_follow", 200, 60), 200);
    /* records put while it follows the tip arrive too */
    k2p_lt_produce(&g, "fo_follow", &set, "--count 300 --kind json --seed 4 --rate 1000");
    assert_int_equal(wait_rows("fo_follow", 500, 60), 500);
    kill(pid, SIGTERM);
    if (k2p_lt_wait_pid(pid, 15000, &status) != 1) {
        kill(pid, SIGKILL);
        fail_msg("the loader did not exit within 15 s of SIGTERM (log: %s)", log_path);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    k2p_lt_assert_table(&g, "kinesis", "fo_follow", "fo_follow", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "fo_follow", &set);
    k2p_lt_set_free(&set);
}

static void test_kill9(void **state)
{
    k2p_lt_set set = {0};
    char log_path[400], consumer[32], seedarg[64];
    const char *args[] = {"--stream", "fo_kill", "--consumer", consumer, "--from", "trim_horizon",
                          NULL};
    unsigned seed = (unsigned)time(NULL);
    (void)state;
    K2P_LT_REQUIRE(&g);
    fprintf(stderr, "  seed %u\n", seed);
    srand(seed);
    k2p_lt_create_stream(&g, "fo_kill", 4);
    snprintf(log_path, sizeof log_path, "%s/fo_kill.log", g.tmpdir);
    for (int k = 0; k < 4; k++) {
        int status;
        int64_t before = k2p_lt_count(&g, "kinesis", "fo_kill"), rows = before;
        pid_t pid;
        /* new records for each round, so every run has something to load when it dies */
        snprintf(seedarg, sizeof seedarg, "--count 1500 --kind json --size 100 --seed %d", k + 1);
        k2p_lt_produce(&g, "fo_kill", &set, seedarg);
        /* kinesis-local keeps a killed reader's subscription active until its 5 minutes are
         * over (AWS ends it with the connection), and refuses another one of the same
         * consumer to that shard meanwhile: each restart subscribes as its own consumer. What
         * is tested is the table, not the consumer. */
        snprintf(consumer, sizeof consumer, "k2p-kill-%d", k);
        pid = k2p_lt_spawn_loader(&g, args, log_path);
        /* An event is one batch, committed on its own; kinesis-local sends a backlog in a few
         * big events. Kill right after the first commit of this run (other shards' events are
         * then in flight), or at a random moment of the first 3 s when none came by then. */
        for (int i = 0, wait = 300 + rand() % 300; i < wait && rows == before; i++) {
            usleep(10000);
            rows = k2p_lt_count(&g, "kinesis", "fo_kill");
        }
        usleep((useconds_t)(rand() % 30000));
        kill(pid, SIGKILL);
        assert_int_equal(k2p_lt_wait_pid(pid, 10000, &status), 1);
        fprintf(stderr, "  kill %d: %lld of %zu rows\n", k + 1,
                (long long)k2p_lt_count(&g, "kinesis", "fo_kill"), set.n);
    }
    snprintf(consumer, sizeof consumer, "k2p-kill-last");
    k2p_lt_load_ok(&g, "kinesis", "fo_kill", args);
    k2p_lt_assert_table(&g, "kinesis", "fo_kill", "fo_kill", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "fo_kill", &set);
    k2p_lt_set_free(&set);
}

static void test_mock_split_and_faults(void **state)
{
    static k2p_test_mock mk;
    const char *const margs[] = {"--subscription-ms", "1000", "--takeover-ms", "0", NULL};
    const char *const args[] = {"--stream", "fo_mock", "--consumer", "k2p-mock", "--from",
                                "trim_horizon", NULL};
    k2p_lt_set set = {0};
    int64_t t0;
    (void)state;
    K2P_LT_REQUIRE(&g);
    if (k2p_test_mock_start(&mk, margs) != 0)
        fail_msg("mock_kinesis did not start");
    k2p_lt_use_endpoint(&g, mk.endpoint);
    k2p_lt_create_stream(&g, "fo_mock", 2);
    k2p_lt_produce(&g, "fo_mock", &set, "--count 3000 --kind json --size 200");
    /* Split shard 0 once 1000 records have been pushed; faults in the subscriptions. */
    assert_int_equal(k2p_test_mock_control(&mk, "{\"reshard_at\":1000,"
                                               "\"split\":\"shardId-000000000000\","
                                               "\"sub_reset\":0.15,\"sub_error\":0.15,"
                                               "\"reset\":0.15,\"fault_ops\":"
                                               "\"SubscribeToShard\"}"),
                     0);
    t0 = k2p_now_ns();
    k2p_lt_load_ok(&g, "kinesis", "fo_mock", args);
    fprintf(stderr, "  first load %lld ms: reshards %lld, resets %lld+%lld, errors %lld\n",
            (long long)((k2p_now_ns() - t0) / 1000000),
            (long long)k2p_test_mock_stat(&mk, "reshards"),
            (long long)k2p_test_mock_stat(&mk, "faults.sub_reset"),
            (long long)k2p_test_mock_stat(&mk, "faults.reset"),
            (long long)k2p_test_mock_stat(&mk, "faults.sub_error"));
    assert_int_equal(k2p_test_mock_stat(&mk, "reshards"), 1);
    /* New records go to the children and shard 1; the rerun reads them after the parent. */
    k2p_lt_produce(&g, "fo_mock", &set, "--count 1000 --kind json --size 200 --seed 5");
    t0 = k2p_now_ns();
    k2p_lt_load_ok(&g, "kinesis", "fo_mock", args);
    fprintf(stderr, "  second load %lld ms\n", (long long)((k2p_now_ns() - t0) / 1000000));
    k2p_lt_assert_table(&g, "kinesis", "fo_mock", "fo_mock", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "fo_mock", &set);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = "
                                    "'fo_mock' AND closed"),
                     1);
    assert_true(k2p_test_mock_stat(&mk, "faults.sub_reset") +
                    k2p_test_mock_stat(&mk, "faults.sub_error") +
                    k2p_test_mock_stat(&mk, "faults.reset") >
                0);
    k2p_lt_set_free(&set);
    k2p_lt_use_endpoint(&g, kl.endpoint);
    assert_int_equal(k2p_test_mock_stop(&mk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_load_and_rerun),
        cmocka_unit_test(test_max_messages),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_follow_then_sigterm),
        cmocka_unit_test(test_kill9),
        cmocka_unit_test(test_mock_split_and_faults),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_faults_kinesis.c - the loader survives Kinesis faults, exactly once (DESIGN §4, §5).
 *
 * Every test runs the real kinesis2pg against tests/mock_kinesis (the project's own Kinesis
 * server, which can inject faults) and a throw-away PostgreSQL, then requires the target table
 * to hold exactly the records that were put: none missing, none twice (loader_testlib's exact
 * comparisons), and the checkpoints at each shard's last record.
 *
 *  - 30 % throttling, 5 % HTTP 500s, 10 % connection resets, 10 % truncated bodies, and 10 %
 *    injected ExpiredIteratorException plus 10 % throttling with a 250 ms iterator lifetime (an
 *    iterator held through a retry really expires): 16,000 JSON records (~150 bytes) preloaded
 *    on 8 shards, read 100 per GetRecords, so each test makes ~200 GetRecords calls (~5 s at
 *    the loader's 5 calls/s per shard) and a 5 % fault rate still fires ~10 times. Faults
 *    are limited to the operations the loader calls (fault_ops); /stats must show they fired.
 *  - A split and a merge while the load runs (reshard_at): records put through the mock with
 *    40 partition keys before, between and after the two reshards; besides the exact set, for
 *    every key the rows were committed in sequence order (a child's after its parent's).
 *    And the only shard of a stream split while a batch run reads it: the same run reads the
 *    children.
 *  - 100 % throttling of GetRecords in the middle of a load: the run gives up after the
 *    retry budget (--max-attempts 4 here; full-jitter backoff from 100 ms) with exit 1 and one
 *    error line naming the stream, the shard and the budget; the table is a per-shard prefix;
 *    the next run, faults off, completes the exact set.
 *  - The other fault runs give each call 20 tries (see fault_run).
 *  - One 1 MiB record (1,048,000 bytes of JSON) on one shard and 10,000 tiny ones (~90 bytes)
 *    on the other, in the same run, 10,000 per GetRecords.
 *
 * K2P_TEST_LONG=1 multiplies the preloaded records by 8 (~5 min: the calls are paced).
 * Normal build: 45-65 s on 2 cores (ASan ~60 s, TSan ~75 s).
 * Threading: single-threaded; the loader and the mock are child processes.
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
#include <unistd.h>

#include "fault_testlib.h"
#include "kinesis2pg/common.h"

#define SHARDS 8
#define RECORDS 16000
#define RECORD_SIZE 150
/* The loader's Kinesis calls; the producer's (CreateStream, PutRecords) stay fault-free. */
#define LOADER_OPS "DescribeStreamSummary,ListShards,GetShardIterator,GetRecords"

static k2p_lt g;
static k2p_test_mock mk;
/* The current test's produced set: freed before each test and at the end, so a failed test
 * (cmocka longjmps out of it) leaks nothing. */
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

/* Each test starts its own mock; a failed test leaves it to the next test's start. */
static int test_setup(void **state)
{
    (void)state;
    k2p_ft_test_reset(&mk, &g_set);
    return 0;
}

static long records(void)
{
    return k2p_ft_long() ? RECORDS * 8L : RECORDS;
}

/* Runs the loader to completion (exit 0) and checks the exact set and the checkpoints. */
static void load_exact(const char *stream, const char *const *extra, const k2p_lt_set *set)
{
    const char **args = k2p_ft_args(stream, extra);
    k2p_lt_run r;
    k2p_lt_run_loader(&g, args, 240, &r);
    k2p_lt_expect_exit(&r, 0, stream);
    fprintf(stderr, "  %s: loaded in %.1f s\n", stream, r.secs);
    k2p_lt_run_free(&r);
    free(args);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, set);
}

/* Preloads `stream`, turns the fault on (a /control JSON object), loads, checks the exact set and
 * that the fault counter `stat` fired. */
static void fault_run(const char *stream, const char *control, const char *stat,
                      const char *const *extra_mock)
{
    k2p_lt_set *set = &g_set;
    /* 20 tries per call, not the default 10: at 30 % throttling a call fails 10 times in a row
     * with probability 0.3^10 = 6e-6, and ~200 calls made that a failed run once in ~800
     * (seen in CI). The test is about retrying; running out of tries is
     * test_throttled_for_good_fails_then_resumes. 0.3^20 = 3.5e-11. */
    static const char *const loader_args[] = {"--chunk-size", "100", "--max-attempts", "20", NULL};
    int64_t fired;

    K2P_LT_REQUIRE(&g);
    k2p_ft_mock_preload(&g, &mk, stream, SHARDS, records(), RECORD_SIZE, extra_mock, set);
    k2p_ft_mock_control(&mk, control);
    load_exact(stream, loader_args, set);
    fired = k2p_ft_mock_stat(&mk, stat);
    fprintf(stderr,
            "  %s: GetRecords calls %lld; faults: throttle %lld, error500 %lld, reset %lld,"
            " truncate %lld, expire %lld, iterator_ttl %lld\n",
            stream, (long long)k2p_ft_mock_stat(&mk, "requests.GetRecords"),
            (long long)k2p_ft_mock_stat(&mk, "faults.throttle"),
            (long long)k2p_ft_mock_stat(&mk, "faults.error500"),
            (long long)k2p_ft_mock_stat(&mk, "faults.reset"),
            (long long)k2p_ft_mock_stat(&mk, "faults.truncate"),
            (long long)k2p_ft_mock_stat(&mk, "faults.expire"),
            (long long)k2p_ft_mock_stat(&mk, "faults.iterator_ttl"));
    if (fired < 1)
        fail_msg("%s: the fault never fired (%s = 0)", stream, stat);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

static void test_throttling_30pct(void **state)
{
    (void)state;
    fault_run("f_throttle", "{\"throttle\":0.3,\"fault_ops\":\"" LOADER_OPS "\"}",
              "faults.throttle", NULL);
}

static void test_internal_errors_5pct(void **state)
{
    (void)state;
    fault_run("f_error500", "{\"error500\":0.05,\"fault_ops\":\"" LOADER_OPS "\"}",
              "faults.error500", NULL);
}

static void test_connection_resets(void **state)
{
    (void)state;
    fault_run("f_reset", "{\"reset\":0.1,\"fault_ops\":\"" LOADER_OPS "\"}", "faults.reset", NULL);
}

static void test_truncated_bodies(void **state)
{
    (void)state;
    fault_run("f_truncate", "{\"truncate\":0.1,\"fault_ops\":\"" LOADER_OPS "\"}",
              "faults.truncate", NULL);
}

/* Injected ExpiredIteratorException on 10 % of GetRecords, and iterators that really expire
 * after 250 ms (the loader polls every 200 ms, so an iterator held through a retry or a full
 * ring expires). */
static void test_iterators_expire_mid_read(void **state)
{
    static const char *const ttl[] = {"--iterator-ttl", "250", NULL};
    (void)state;
    fault_run("f_expire", "{\"expire\":0.1,\"throttle\":0.1,\"fault_ops\":\"" LOADER_OPS "\"}",
              "faults.expire", ttl);
}

/* ---- resharding while the load runs -------------------------------------------------------- */

/* Waits until the mock performed `n` reshards (1), or the loader exits or timeout_ms pass (0).
 * *exited / *status record the loader's exit. */
static int wait_reshards(int64_t n, pid_t pid, int *exited, int *status, int timeout_ms)
{
    int64_t deadline = k2p_ft_ms() + timeout_ms;
    for (;;) {
        if (k2p_ft_mock_stat(&mk, "reshards") >= n)
            return 1;
        if (*exited || k2p_ft_ms() >= deadline)
            return 0;
        if (k2p_lt_wait_pid(pid, 20, status))
            *exited = 1;
    }
}

/* Starts a mock with `stream` of `shards` shards holding what the producer arguments `produce`
 * put, has it split shardId-000000000000 once `split_at` records were served, starts the loader
 * with args (log in log_path) and waits for the split; fails the test if it never happens. */
static pid_t start_run_until_split(const char *stream, int shards, const char *produce,
                                   int split_at, const char *const *args, const char *log_path,
                                   int *exited, int *status)
{
    char ctl[120];
    pid_t pid;
    k2p_ft_mock_start(&g, &mk, NULL);
    k2p_lt_create_stream(&g, stream, shards);
    k2p_lt_produce(&g, stream, &g_set, produce);
    snprintf(ctl, sizeof ctl, "{\"reshard_at\":%d,\"split\":\"shardId-000000000000\"}",
             split_at);
    k2p_ft_mock_control(&mk, ctl);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    if (!wait_reshards(1, pid, exited, status, 30000))
        fail_msg("the split never happened (loader %s)", *exited ? "exited" : "still running");
    return pid;
}

static void test_split_and_merge_during_load(void **state)
{
    const char *stream = "f_reshard";
    k2p_lt_set *set = &g_set;
    static const char *const slow[] = {"--chunk-size", "100", "--writers", "3", NULL};
    const char **args = k2p_ft_args(stream, slow);
    char log_path[320], ctl[200];
    int status = 0, exited = 0;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    /* Split shard 0 once the loader has read 1,500 records. */
    pid = start_run_until_split(stream, 4, "--count 6000 --keys 40 --size 120 --seed 11", 1500,
                                args, log_path, &exited, &status);
    /* Records with the same keys now go to the children of shard 0. */
    k2p_lt_produce(&g, stream, set, "--count 3000 --keys 40 --size 120 --seed 12");
    /* Merge shards 2 and 3 (adjacent hash ranges) 500 records from now. */
    snprintf(ctl, sizeof ctl,
             "{\"reshard_at\":%lld,\"merge\":\"shardId-000000000002,shardId-000000000003\"}",
             (long long)k2p_ft_mock_stat(&mk, "records_served") + 500);
    k2p_ft_mock_control(&mk, ctl);
    if (!wait_reshards(2, pid, &exited, &status, 30000)) {
        /* The loader caught up before reading 500 more: a second run reads them. */
        k2p_ft_expect_status(status, 0, log_path, "first run");
        pid = k2p_lt_spawn_loader(&g, args, log_path);
        exited = 0;
        if (!wait_reshards(2, pid, &exited, &status, 30000))
            fail_msg("the merge never happened");
    }
    k2p_lt_produce(&g, stream, set, "--count 3000 --keys 40 --size 120 --seed 13");
    if (!exited)
        status = k2p_ft_reap(pid, 120000, log_path, "run during resharding");
    k2p_ft_expect_status(status, 0, log_path, "run during resharding");
    fprintf(stderr, "  %s: %lld reshards, %zu records put, %lld loaded during the resharding\n",
            stream, (long long)k2p_ft_mock_stat(&mk, "reshards"), set->n,
            (long long)k2p_lt_count(&g, "kinesis", stream));

    /* A last run picks up what arrived after the first one caught up. */
    load_exact(stream, slow, set);
    k2p_ft_assert_key_order(&g, "kinesis", stream);
    assert_int_equal(k2p_lt_i64(&g,
                                "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = '%s'"
                                " AND closed AND shard_id IN ('shardId-000000000000',"
                                " 'shardId-000000000002', 'shardId-000000000003')",
                                stream),
                     3);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* The only shard split while a batch run reads it: when the parent is read to its end, no
 * other reader is running, yet the run must wait for the parent's last commit, list the
 * children, and read what was put into them, all in the same run. It used to leave as soon as
 * the parent's reader ended, children neither recorded nor read (found by
 * test_faults_pg_reshard, where it needed the other shard to be caught up first). */
static void test_only_shard_split_run_reads_children(void **state)
{
    const char *stream = "f_split_one";
    k2p_lt_set *set = &g_set;
    static const char *const slow[] = {"--chunk-size", "100", NULL};
    const char **args = k2p_ft_args(stream, slow);
    char log_path[320];
    int status = 0, exited = 0;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    pid = start_run_until_split(stream, 1, "--count 2000 --keys 20 --size 120 --seed 21", 500,
                                args, log_path, &exited, &status);
    /* The parent has ~1,500 records left (3 s at 5 calls/s of 100): these go to the children
     * well before it is read to its end. */
    k2p_lt_produce(&g, stream, set, "--count 300 --keys 20 --size 120 --seed 22");
    if (exited)
        fail_msg("the run ended before the parent was read to its end (log %s)", log_path);
    status = k2p_ft_reap(pid, 120000, log_path, "run across the split");
    k2p_ft_expect_status(status, 0, log_path, "run across the split");
    /* No second run: this one must have read the children. */
    k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, set);
    k2p_ft_assert_key_order(&g, "kinesis", stream);
    assert_int_equal(k2p_lt_i64(&g,
                                "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = '%s'",
                                stream),
                     3);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- a retry budget that runs out --------------------------------------------------------- */

static void test_throttled_for_good_fails_then_resumes(void **state)
{
    const char *stream = "f_throttle_all";
    k2p_lt_set *set = &g_set;
    /* A budget of 4 tries (--max-attempts; default 10): the message must say so. */
    static const char *const slow[] = {"--chunk-size", "100", "--max-attempts", "4", NULL};
    const char **args = k2p_ft_args(stream, slow);
    char log_path[320], *log, *err_line, *nl, line[600];
    int status, names_stream;
    int64_t t_on, took, rows;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* 16,000 records on 4 shards at 100 per call: ~8 s to read; throttle after 2,000 rows. */
    k2p_ft_mock_preload(&g, &mk, stream, 4, records(), RECORD_SIZE, NULL, set);
    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, 2000, pid, &status, 60000);
    if (rows < 2000)
        fail_msg("the load did not reach 2,000 rows before the throttling (%lld)", (long long)rows);
    k2p_ft_mock_control(&mk, "{\"throttle\":1.0,\"fault_ops\":\"GetRecords\"}");
    t_on = k2p_ft_ms();
    /* 4 attempts: 3 sleeps of at most 0.1, 0.2 and 0.4 s, plus the drain. */
    status = k2p_ft_reap(pid, 60000, log_path, "100 % throttling");
    took = k2p_ft_ms() - t_on;
    k2p_ft_expect_status(status, 1, log_path, "100 % throttling");
    fprintf(stderr, "  %s: gave up %.1f s after the throttling started\n", stream,
            (double)took / 1000);

    log = k2p_ft_slurp(log_path);
    err_line = strstr(log, "kinesis2pg: error: ");
    if (!err_line) {
        fprintf(stderr, "%s", log);
        fail_msg("no 'kinesis2pg: error:' line on stderr");
    }
    if (k2p_ft_count_lines(log, "kinesis2pg: error: ") != 1) {
        fprintf(stderr, "%s", log);
        fail_msg("expected exactly one error line");
    }
    nl = strchr(err_line, '\n');
    if (nl)
        *nl = '\0';
    fprintf(stderr, "  error line: %s\n", err_line);
    if (!strstr(err_line, "shardId-00000000000"))
        fail_msg("the error line does not name the shard: %s", err_line);
    if (!strstr(err_line, "ProvisionedThroughputExceeded") && !strstr(err_line, "throttl"))
        fail_msg("the error line does not say it was throttled: %s", err_line);
    if (!strstr(err_line, "gave up after 4 attempts"))
        fail_msg("the error line does not give the --max-attempts budget: %s", err_line);
    names_stream = strstr(err_line, stream) != NULL;
    snprintf(line, sizeof line, "%s", err_line);
    free(log);

    /* What the failed run committed is a clean prefix of every shard, checkpointed. */
    rows = k2p_ft_assert_prefix(&g, "kinesis", stream, stream, set);
    fprintf(stderr, "  %s: %lld of %zu rows committed by the failed run\n", stream, (long long)rows,
            set->n);
    assert_true(rows < (int64_t)set->n);

    k2p_ft_mock_control(&mk, "{\"clear\":true}");
    load_exact(stream, slow, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
    /* Checked last so that the resume above runs either way. */
    if (!names_stream)
        fail_msg("the error line does not name the stream '%s': %s", stream, line);
}

/* ---- record sizes -------------------------------------------------------------------------- */

/* Puts one record with key `key` and returns the shard it went to (set gains it). */
static void put_one(const char *stream, const char *key, int size, k2p_lt_set *set, char *shard,
                    size_t cap)
{
    char args[200];
    snprintf(args, sizeof args, "--count 1 --kind json --size %d --partition-key %s", size, key);
    assert_int_equal(k2p_lt_produce(&g, stream, set, args), 1);
    snprintf(shard, cap, "%s", set->v[set->n - 1].shard);
}

static void test_one_mib_record_and_ten_thousand_tiny(void **state)
{
    const char *stream = "f_sizes";
    k2p_lt_set *set = &g_set;
    static const char *const big_chunks[] = {"--chunk-size", "10000", NULL};
    char big_shard[64], tiny_shard[64] = "", key[32], args[200];
    size_t big_len;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_start(&g, &mk, NULL);
    k2p_lt_create_stream(&g, stream, 2);
    /* Kinesis caps a record at 1 MiB (data plus partition key). */
    put_one(stream, "big", 1048000, set, big_shard, sizeof big_shard);
    big_len = set->v[set->n - 1].len;
    fprintf(stderr, "  %s: a %zu-byte record on %s\n", stream, big_len, big_shard);
    assert_true(big_len > 1000000 && big_len <= 1048573);
    /* A key that hashes to the other shard. */
    for (int i = 0; i < 64 && !tiny_shard[0]; i++) {
        char got[64];
        snprintf(key, sizeof key, "tiny-%d", i);
        put_one(stream, key, 2, set, got, sizeof got);
        if (strcmp(got, big_shard) != 0)
            snprintf(tiny_shard, sizeof tiny_shard, "%s", got);
    }
    assert_true(tiny_shard[0] != '\0');
    snprintf(args, sizeof args, "--count 9999 --kind json --size 2 --partition-key %s", key);
    assert_int_equal(k2p_lt_produce(&g, stream, set, args), 9999);
    load_exact(stream, big_chunks, set);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_throttling_30pct, test_setup),
        cmocka_unit_test_setup(test_internal_errors_5pct, test_setup),
        cmocka_unit_test_setup(test_connection_resets, test_setup),
        cmocka_unit_test_setup(test_truncated_bodies, test_setup),
        cmocka_unit_test_setup(test_iterators_expire_mid_read, test_setup),
        cmocka_unit_test_setup(test_split_and_merge_during_load, test_setup),
        cmocka_unit_test_setup(test_only_shard_split_run_reads_children, test_setup),
        cmocka_unit_test_setup(test_throttled_for_good_fails_then_resumes, test_setup),
        cmocka_unit_test_setup(test_one_mib_record_and_ten_thousand_tiny, test_setup),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

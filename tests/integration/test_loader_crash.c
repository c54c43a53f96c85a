/* test_loader_crash.c - kill -9 at random moments loses and duplicates nothing (DESIGN §4).
 *
 * 100,000 records on 4 shards are put first. The loader (--from trim_horizon, several writers,
 * small batches so many transactions are in flight) is started and killed with SIGKILL after
 * a random 0.2-3 s, again and again (at least 10 kills; if a run ever finds everything loaded,
 * more records are put first so the next kill lands mid-load), then run once to completion: the
 * table must equal the produced set exactly. Once with the primary key (a duplicate would make
 * a COPY fail, and the run with it), once with --no-primary-key (a duplicate would be a visible
 * extra row). A rerun then loads nothing.
 *
 * And one deterministic kill: while the loader records its first shard plan (a test session
 * holds kinesis2pg.checkpoints in SHARE mode, so the loader's first checkpoint INSERT waits),
 * its runs row must not be visible yet, and after a kill -9 there the next run loads every
 * record. A runs row without the shard rows planned with it made the next run treat the shards
 * as created after that run and start them at its start time, skipping everything put before
 * (c7538b5; seen once in test_faults_process under TSan).
 *
 * The random delays come from K2P_TEST_SEED when set (else the clock) and the seed is printed,
 * so a failure can be replayed.
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
#include <unistd.h>

#include <libpq-fe.h>

#include "kinesis2pg/common.h"
#include "loader_testlib.h"

#define RECORDS 100000
#define KILLS 10
/* GetRecords Limit: with the loader's 5 calls/s per shard, 4 shards read ~4000 records/s, so
 * the 100,000 records take ~25 s and the kills (10 x 0.2-3 s) land while it loads. */
#define CHUNK "200"
/* Records added when a run finds nothing left (only if the loader is faster than that). */
#define TOP_UP 5000
#define K2P_STR_(x) #x
#define K2P_STR(x) K2P_STR_(x)

static k2p_lt g;
static uint64_t rng;

static int setup(void **state)
{
    const char *s = getenv("K2P_TEST_SEED");
    int64_t seed = 0;
    (void)state;
    if (!s || k2p_parse_i64(s, &seed) || seed == 0)
        seed = k2p_wall_us() & 0x7fffffff;
    fprintf(stderr, "test_loader_crash: K2P_TEST_SEED=%lld\n", (long long)seed);
    rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    return k2p_lt_start(&g) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    k2p_lt_stop(&g);
    return 0;
}

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Prints the last `tail` bytes of a file. */
static void print_tail(const char *path, long tail)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n;
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > tail)
        fseek(f, -tail, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    fprintf(stderr, "---- end of %s ----\n", path);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- (end) ----\n");
    fclose(f);
}

/* Starts and SIGKILLs the loader until it was killed KILLS times; then a run to completion. */
static void crash_and_finish(const char *stream, int no_pk, k2p_lt_set *set)
{
    char log_path[320];
    int killed = 0, finished = 0, mid_load = 0, attempts = 0;
    const char *const args_pk[] = {
        "--stream", stream,       "--from", "trim_horizon", "--writers", "3", "--batch-rows",
        "2000",     "--flush-ms", "100",    "--chunk-size", CHUNK,       NULL};
    const char *const args_nopk[] = {"--stream",         stream, "--from",       "trim_horizon",
                                     "--writers",        "3",    "--batch-rows", "2000",
                                     "--flush-ms",       "100",  "--chunk-size", CHUNK,
                                     "--no-primary-key", NULL};
    const char *const *args = no_pk ? args_nopk : args_pk;
    int64_t t0 = k2p_now_ns();

    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    while (killed < KILLS) {
        int status = 0;
        int delay_ms = 200 + (int)(rnd() % 2801);
        int64_t before = k2p_lt_count(&g, "kinesis", stream);
        pid_t pid;

        if (++attempts > KILLS * 4)
            fail_msg("%s: only %d kills in %d runs: the loader keeps finishing first", stream,
                     killed, attempts - 1);
        if (before >= (int64_t)set->n) {
            /* Everything is in: give the next run something to do, so the kill lands while
             * it loads. */
            fprintf(stderr, "  %s: all %zu rows in; putting %d more\n", stream, set->n, TOP_UP);
            k2p_lt_produce(&g, stream, set,
                           "--count " K2P_STR(TOP_UP) " --kind json --size 120"
                                                      " --seed 1234");
        }
        pid = k2p_lt_spawn_loader(&g, args, log_path);
        if (k2p_lt_wait_pid(pid, delay_ms, &status)) {
            /* It finished before the kill: that run must have succeeded. */
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                print_tail(log_path, 6000);
                fail_msg("%s: run %d (not killed) ended with status 0x%x", stream, attempts,
                         status);
            }
            finished++;
            continue;
        }
        if (kill(pid, SIGKILL) != 0)
            fail_msg("kill %d failed", (int)pid);
        while (waitpid(pid, &status, 0) < 0)
            ;
        killed++;
        mid_load += before < (int64_t)set->n;
        fprintf(stderr, "  %s: kill %d after %d ms (%lld rows before the run, %lld now)\n", stream,
                killed, delay_ms, (long long)before,
                (long long)k2p_lt_count(&g, "kinesis", stream));
    }
    fprintf(stderr,
            "  %s: %d kills (%d while rows were missing), %d runs finished on their own,"
            " %.1f s\n",
            stream, killed, mid_load, finished, (double)(k2p_now_ns() - t0) / 1e9);

    /* The run to completion. */
    {
        k2p_lt_run r;
        k2p_lt_run_loader(&g, args, 180, &r);
        if (r.exit_code != 0)
            print_tail(log_path, 6000);
        k2p_lt_expect_exit(&r, 0, "final run after the kills");
        k2p_lt_run_free(&r);
    }
    k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, set);
    /* A rerun finds nothing new. */
    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", stream, args), 0);
}

static void test_kill9_with_primary_key(void **state)
{
    k2p_lt_set set = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "crash_pk", 4);
    assert_int_equal(k2p_lt_produce(&g, "crash_pk", &set, "--count 100000 --kind json --size 120"),
                     RECORDS);
    crash_and_finish("crash_pk", 0, &set);
    k2p_lt_set_free(&set);
}

static void test_kill9_without_primary_key(void **state)
{
    k2p_lt_set set = {0};
    char *q;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "crash_nopk", 4);
    assert_int_equal(
        k2p_lt_produce(&g, "crash_nopk", &set, "--count 100000 --kind json --size 120 --seed 77"),
        RECORDS);
    crash_and_finish("crash_nopk", 1, &set);
    /* The table really has no primary key (so duplicates could not hide). */
    q = k2p_lt_qualify("kinesis", "crash_nopk");
    {
        char *lit = k2p_lt_literal(q);
        assert_int_equal(k2p_lt_i64(&g,
                                    "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass"
                                    " AND indisprimary",
                                    lit),
                         0);
        free(lit);
    }
    free(q);
    k2p_lt_set_free(&set);
}

/* Executes `sql` on `c`, failing the test on an error. */
static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQclear(r);
        fail_msg("%s: %s", sql, msg);
    }
    PQclear(r);
}

/* Waits up to timeout_ms until `sql` (a count) returns `want`; returns the last count. */
static int64_t wait_count(const char *sql, int64_t want, int timeout_ms)
{
    int64_t deadline = k2p_now_ns() + (int64_t)timeout_ms * 1000000, n;
    while ((n = k2p_lt_i64(&g, "%s", sql)) != want && k2p_now_ns() < deadline)
        usleep(20000);
    return n;
}

static void test_kill9_while_planning(void **state)
{
    static const char waiting[] =
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE NOT l.granted AND a.application_name = 'kinesis2pg'"
        " AND l.relation = 'kinesis2pg.checkpoints'::regclass";
    static const char loaders[] =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kinesis2pg'";
    static const char runs[] = "SELECT count(*) FROM kinesis2pg.runs WHERE stream = 'crash_plan'";
    const char *const args[] = {"--stream", "crash_plan", "--from", "trim_horizon", NULL};
    k2p_lt_set set = {0};
    char log_path[320];
    PGconn *holder;
    int status = 0;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* The state tables exist (a load of an empty stream creates them) and no earlier run of
     * this stream does: its first run is the one killed. */
    k2p_lt_create_stream(&g, "crash_plan_init", 1);
    assert_int_equal(K2P_LT_LOAD_OK(&g, "kinesis", "crash_plan_init", "--stream", "crash_plan_init",
                                    "--from", "trim_horizon"),
                     0);
    k2p_lt_create_stream(&g, "crash_plan", 2);
    assert_int_equal(k2p_lt_produce(&g, "crash_plan", &set, "--count 2000 --kind json --size 120"),
                     2000);
    /* Every record more than a second older than the killed run's start: what the old code's
     * next run skipped. */
    k2p_lt_sleep_until_wall(k2p_wall_us() + 1200000);

    holder = k2p_test_pg_connect(&g.pg);
    assert_non_null(holder);
    exec_ok(holder, "BEGIN");
    exec_ok(holder, "LOCK TABLE kinesis2pg.checkpoints IN SHARE MODE");
    snprintf(log_path, sizeof log_path, "%s/crash_plan.log", g.tmpdir);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    {
        int64_t deadline = k2p_now_ns() + 60 * 1000000000LL;
        while (k2p_lt_i64(&g, "%s", waiting) == 0) {
            if (k2p_lt_wait_pid(pid, 20, &status)) {
                print_tail(log_path, 6000);
                fail_msg("the loader ended (status 0x%x) instead of waiting to plan", status);
            }
            if (k2p_now_ns() > deadline)
                fail_msg("the loader never waited for kinesis2pg.checkpoints in 60 s");
        }
    }
    /* It waits inside its plan: nothing of this run may be committed yet. */
    if (k2p_lt_i64(&g, "%s", runs) != 0)
        fail_msg("the runs row is committed before the shard rows planned with it");
    if (kill(pid, SIGKILL) != 0)
        fail_msg("kill %d failed", (int)pid);
    while (waitpid(pid, &status, 0) < 0)
        ;
    exec_ok(holder, "ROLLBACK");
    PQfinish(holder);
    /* The killed loader's sessions end once their statements get the lock and find the client
     * gone; until then its advisory lock would refuse the next run. */
    if (wait_count(loaders, 0, 30000) != 0)
        fail_msg("the killed loader's sessions did not end in 30 s");
    if (k2p_lt_i64(&g, "%s", runs) != 0)
        fail_msg("the killed run's runs row was committed without its shard rows");

    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", "crash_plan", args), 2000);
    k2p_lt_assert_table(&g, "kinesis", "crash_plan", "crash_plan", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "crash_plan", &set);
    k2p_lt_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_with_primary_key),
        cmocka_unit_test(test_kill9_without_primary_key),
        cmocka_unit_test(test_kill9_while_planning),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

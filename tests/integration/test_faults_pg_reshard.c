/* test_faults_pg_reshard.c - a split while the loader's own PostgreSQL session keeps being cut.
 *
 * When a parent shard is closed and checkpointed, the loader's coordinator lists the shards
 * again and records the children in kinesis2pg.checkpoints on its own session. That session
 * can be gone at that moment (an outage just ended, a failover, an idle-session reaper): the
 * listing must be tried again once the session is back, not end the run.
 *
 * 2 shards preloaded in tests/mock_kinesis (16,000 records of ~100 bytes), shardId-000000000000
 * split by the mock once 3,000 records were served; the loader reads 500 per call, so the
 * parent is read to its end a couple of seconds later. From the start until the children are
 * recorded, the test terminates every 20 ms the coordinator's session: the loader session
 * whose last statement was its once-a-second "SELECT 1", or that has sat idle after taking the
 * stream lock (its reconnect) for 100 ms; the writers and the checkpoint thread are busy with
 * other statements and left alone. The run must then exit 0 with the exact set, all four
 * shards checkpointed, and a rerun must load nothing. Once as a single loader, once as the
 * only worker of --worker-count 1 (which also takes each child's lease on that session).
 *
 * Then the children's rows are cut at the moment they are written: a deferred trigger the test
 * installs makes the insert of a row with parents (single loader: the INSERT itself) or the
 * planning transaction's COMMIT (--worker-count, --leases) sleep 1 s, and the test terminates
 * the session once, while it sleeps. The rows must be written again after the reconnect (in
 * the sharing modes the loader has already added the children to its list by then), the run
 * must not end before that, and the same checks hold.
 *
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

#define RECORDS 16000
#define RECORD_SIZE 100

static k2p_lt g;
static k2p_test_mock mk;
static k2p_lt_set g_set;

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, "test_faults_pg_reshard");
}

static int teardown(void **state)
{
    (void)state;
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

/* One turn of a fault, every 20 ms while the loader runs: the number of sessions it
 * terminated; sets *enough once it has done its part. */
typedef int64_t (*cut_fn)(const char *stream, bool *enough);

/* Terminates the coordinator's session while idle: its last statement was keep_lock's
 * "SELECT 1", or it has sat idle for 100 ms after taking the stream lock (a reconnect). Enough
 * once the children are recorded. */
static int64_t cut_idle_coordinator(const char *stream, bool *enough)
{
    int64_t kills = k2p_lt_i64(
        &g, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'kinesis2pg' AND pid <> pg_backend_pid() AND "
            "(query = 'SELECT 1' OR (query LIKE 'SELECT pg_advisory_lock_shared(%%' AND "
            "state = 'idle' AND state_change < clock_timestamp() - interval '100 ms'))");
    *enough = k2p_lt_i64(&g, "SELECT (to_regclass('kinesis2pg.checkpoints') IS NOT NULL)::int") &&
              k2p_lt_i64(&g,
                         "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = '%s' AND "
                         "cardinality(parent_shard_ids) > 0",
                         stream) == 2;
    return kills;
}

/* Once kinesis2pg.checkpoints exists, installs a deferred trigger that makes the write of a row
 * with parents sleep 1 s at its commit (the INSERT itself outside a transaction), and
 * terminates the session that sleeps there. Enough after one. */
static int64_t cut_children_write(const char *stream, bool *enough)
{
    int64_t kills;
    if (!k2p_lt_i64(&g, "SELECT (to_regclass('kinesis2pg.checkpoints') IS NOT NULL)::int"))
        return 0;
    if (!k2p_lt_i64(&g, "SELECT count(*) FROM pg_trigger WHERE tgname = 'k2p_test_slow_commit'")) {
        k2p_lt_sql(&g, "CREATE OR REPLACE FUNCTION public.k2p_test_slow_commit() RETURNS "
                       "trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN "
                       "NULL; END $$");
        k2p_lt_sql(&g,
                   "CREATE CONSTRAINT TRIGGER k2p_test_slow_commit AFTER INSERT ON "
                   "kinesis2pg.checkpoints DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN "
                   "(NEW.stream = '%s' AND cardinality(NEW.parent_shard_ids) > 0) EXECUTE "
                   "FUNCTION public.k2p_test_slow_commit()",
                   stream);
    }
    kills = k2p_lt_i64(
        &g, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'kinesis2pg' AND pid <> pg_backend_pid() AND "
            "(query = 'COMMIT' OR query LIKE 'INSERT INTO kinesis2pg.checkpoints%%') AND "
            "state = 'active' AND query_start < clock_timestamp() - interval '200 ms'");
    *enough = kills > 0;
    return kills;
}

/* Loads `stream` (2 preloaded shards, shardId-000000000000 split after 3,000 records served)
 * with the fault `cut` applied until it has had enough, then checks the run: exit 0, the
 * fault fired, the exact set, all four shards checkpointed, a rerun loads nothing. */
static void split_under_fault(const char *stream, const char *const *extra, cut_fn cut,
                              const char *what)
{
    static const char *const mock_extra[] = {"--reshard-at", "3000", "--reshard-split",
                                             "shardId-000000000000", NULL};
    const char **args = k2p_ft_args(stream, extra);
    char log_path[320];
    int64_t kills = 0, deadline;
    int status = 0;
    bool exited = false, enough = false;
    pid_t pid;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, 2, RECORDS, RECORD_SIZE, mock_extra, &g_set);
    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    deadline = k2p_ft_ms() + 120000;
    while (k2p_ft_ms() < deadline && !enough) {
        if (k2p_lt_wait_pid(pid, 20, &status)) {
            exited = true;
            break;
        }
        kills += cut(stream, &enough);
    }
    if (k2p_lt_i64(&g, "SELECT (to_regclass('kinesis2pg.checkpoints') IS NOT NULL)::int"))
        k2p_lt_sql(&g, "DROP TRIGGER IF EXISTS k2p_test_slow_commit ON kinesis2pg.checkpoints");
    fprintf(stderr, "  %s: %lld session(s) cut (%s)\n", stream, (long long)kills, what);
    if (!exited)
        status = k2p_ft_reap(pid, 120000, log_path, "load across a split");
    k2p_ft_expect_status(status, 0, log_path, what);
    if (kills == 0)
        fail_msg("%s: no session was cut: the test did not test anything", what);
    assert_int_equal(k2p_ft_mock_stat(&mk, "reshards"), 1);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    assert_int_equal(k2p_lt_i64(&g,
                                "SELECT count(*) FROM kinesis2pg.checkpoints WHERE stream = '%s'",
                                stream),
                     4);
    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", stream, args), 0);
    free(args);
    k2p_ft_mock_stop(&mk);
}

static void split_with_session_cut(const char *stream, const char *const *extra)
{
    split_under_fault(stream, extra, cut_idle_coordinator,
                      "coordinator's idle session cut until the children were recorded");
}

static void test_split_while_coordinator_session_is_cut(void **state)
{
    static const char *const extra[] = {"--chunk-size", "500", NULL};
    (void)state;
    split_with_session_cut("pg_cut_split", extra);
}

/* The same with --worker-count 1: there the coordinator also takes each child's lease on its
 * session before starting it. */
static void test_static_worker_split_while_session_is_cut(void **state)
{
    static const char *const extra[] = {"--chunk-size", "500", "--worker-count", "1", NULL};
    (void)state;
    split_with_session_cut("pg_cut_split_static", extra);
}

/* The children's rows cut while they are written (cut_children_write). A single loader
 * inserts them one by one: the listing fails, and the run used to go on to its end-of-run
 * check and leave, exit 0, with the children unrecorded. In the sharing modes they are planned
 * in one transaction (under the planning lock) and were added to the loader's own list before
 * its COMMIT; after the cut the retry skipped the children it knew, which were then read with
 * no checkpoints row (their checkpoints went nowhere). Both ended with 2 rows of 4. */
static void split_with_commit_cut(const char *stream, const char *const *extra)
{
    split_under_fault(stream, extra, cut_children_write, "children's rows cut while written");
}

static void test_split_commit_cut(void **state)
{
    static const char *const extra[] = {"--chunk-size", "500", NULL};
    (void)state;
    split_with_commit_cut("pg_commit_cut", extra);
}

static void test_static_worker_split_commit_cut(void **state)
{
    static const char *const extra[] = {"--chunk-size", "500", "--worker-count", "1", NULL};
    (void)state;
    split_with_commit_cut("pg_commit_cut_static", extra);
}

static void test_leases_split_commit_cut(void **state)
{
    static const char *const extra[] = {"--chunk-size", "500", "--leases", NULL};
    (void)state;
    split_with_commit_cut("pg_commit_cut_leases", extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_while_coordinator_session_is_cut),
        cmocka_unit_test(test_static_worker_split_while_session_is_cut),
        cmocka_unit_test(test_split_commit_cut),
        cmocka_unit_test(test_static_worker_split_commit_cut),
        cmocka_unit_test(test_leases_split_commit_cut),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

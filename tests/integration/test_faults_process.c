/* test_faults_process.c - signals and kill -9 during a load lose and duplicate nothing
 * (DESIGN §1 "SIGTERM: flush, checkpoint, exit 0", §4 exactly-once at any instant).
 *
 * Records are preloaded in tests/mock_kinesis and read by the real loader; the tests then
 * compare the table with the preloaded set exactly (loader_testlib), and check checkpoints.
 *
 *  - SIGTERM, and SIGINT, in the middle of a load of 60,000 records (~100 bytes, 4 shards,
 *    2,000 per GetRecords: ~1.5 s to read; the signal comes once 10,000 rows are committed):
 *    the loader stops reading, commits what it read, checkpoints and exits 0 within 10 s; the
 *    table is then exactly a prefix of every shard with each shard's checkpoint at its last
 *    row, and as many rows as the run summary says; a following run completes the set exactly.
 *  - A second signal exits at once, nonzero: once while the writers are stuck behind a lock
 *    the test holds (so the first signal cannot finish), and three times a few ms after the
 *    first signal at random moments of a running load (100,000 records). A following run
 *    completes the set.
 *  - 20 kill -9 at random moments (200-3000 ms after start) of a load of 1,000,000 records,
 *    restarting each time, then a run to completion: the exact set, the exact dead letters,
 *    the checkpoints, and a rerun that loads nothing. A quarter of the records is preloaded,
 *    the rest put through the mock after it with one in ten not valid JSON, so the kills also
 *    land while dead letters are written. The killed runs read 1,000 records per call (20,000
 *    records/s) so that the 20 kills land while rows are still missing (~500,000 rows are in
 *    after them); should a run find everything loaded, 50,000 more records are put first.
 *    Under ASan and TSan (which slow the loader several times) the test loads 120,000 records
 *    with 100-1500 ms kills and 300 records per call (50,000-95,000 rows in after the kills),
 *    unless K2P_TEST_LONG=1; the normal build, which `make test` runs too, always loads
 *    1,000,000.
 *  - `tail` (at-least-once by design) killed -9 ten times at random moments (100-800 ms) while
 *    printing 40,000 records, then run to the end: every record put was printed, as put, at
 *    least once (a killed run's torn last line does not count), and nothing else was printed.
 *
 * Random moments come from K2P_TEST_SEED (printed). Normal build: ~120 s on 2 cores shared
 * with other work (load average 3-5), next to another test, of which ~80-95 s for the
 * 1,000,000-record kill -9 test (ASan ~80 s, TSan ~175 s, with 120,000 records).
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

#define RECORDS 120000       /* kill -9 test under a sanitizer */
#define RECORDS_LONG 1000000 /* kill -9 test: normal build, or K2P_TEST_LONG=1 */
#define RECORDS_SIGNAL 60000 /* one signal */
#define RECORDS_TWICE 100000 /* two signals */
#define RECORD_SIZE 100
#define KILLS 20
#define TOP_UP "50000"

static k2p_lt g;
static k2p_test_mock mk;
/* The current test's produced set: freed before each test and at the end, so a failed test
 * (cmocka longjmps out of it) leaks nothing. */
static k2p_lt_set g_set;

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, "test_faults_process");
}

static int teardown(void **state)
{
    (void)state;
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    k2p_ft_test_reset(&mk, &g_set);
    return 0;
}

static void log_path_for(char *out, size_t cap, const char *stream)
{
    snprintf(out, cap, "%s/%s.log", g.tmpdir, stream);
}

/* Runs the loader to completion (fast: 10,000 per call) and checks the exact set. */
static void complete_exactly(const char *stream, const k2p_lt_set *set)
{
    static const char *const fast[] = {"--chunk-size", "10000", NULL};
    const char **args = k2p_ft_args(stream, fast);
    k2p_lt_run r;
    k2p_lt_run_loader(&g, args, 240, &r);
    k2p_lt_expect_exit(&r, 0, "the run after");
    k2p_lt_run_free(&r);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, set);
    free(args);
}

/* The "total: N rows" of the run summary in a log (the last one), or -1. */
static int64_t summary_rows(const char *log)
{
    const char *p = log, *last = NULL;
    int64_t n = -1;
    while ((p = strstr(p, "  total: ")) != NULL) {
        last = p;
        p++;
    }
    if (last) {
        char num[24];
        size_t i = 0;
        last += strlen("  total: ");
        while (i + 1 < sizeof num && last[i] >= '0' && last[i] <= '9') {
            num[i] = last[i];
            i++;
        }
        num[i] = '\0';
        if (k2p_parse_i64(num, &n))
            n = -1;
    }
    return n;
}

/* ---- one signal: graceful stop ------------------------------------------------------------- */

static void graceful_stop(const char *stream, int sig)
{
    k2p_lt_set *set = &g_set;
    static const char *const extra[] = {
        "--chunk-size", "2000", "--batch-rows", "5000", "--flush-ms", "100", NULL};
    const char **args = k2p_ft_args(stream, extra);
    char log_path[320], *log;
    int status = 0;
    int64_t rows, t_sig, took, said;
    pid_t pid;

    K2P_LT_REQUIRE(&g);
    k2p_ft_mock_preload(&g, &mk, stream, 4, RECORDS_SIGNAL, RECORD_SIZE, NULL, set);
    log_path_for(log_path, sizeof log_path, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, 10000, pid, &status, 60000);
    if (rows < 10000)
        fail_msg("the load did not reach 10,000 rows (%lld)", (long long)rows);
    kill(pid, sig);
    t_sig = k2p_ft_ms();
    status = k2p_ft_reap(pid, 10000, log_path, "stop on a signal");
    took = k2p_ft_ms() - t_sig;
    k2p_ft_expect_status(status, 0, log_path, "stop on a signal");
    log = k2p_ft_slurp(log_path);
    if (!strstr(log, "stopped by signal") || !strstr(log, ": interrupted")) {
        fprintf(stderr, "%s", log);
        fail_msg("the loader did not report the stop (\"stopped by signal\", status "
                 "\"interrupted\")");
    }
    rows = k2p_ft_assert_prefix(&g, "kinesis", stream, stream, set);
    said = summary_rows(log);
    fprintf(stderr, "  %s: signal %d: exit 0 after %lld ms with %lld of %zu rows (summary: %lld)\n",
            stream, sig, (long long)took, (long long)rows, set->n, (long long)said);
    if (rows >= (int64_t)set->n)
        fail_msg("the load was over before the signal: make it longer");
    if (said != rows) {
        fprintf(stderr, "%s", log);
        fail_msg("the summary says %lld rows, the table has %lld", (long long)said,
                 (long long)rows);
    }
    free(log);
    complete_exactly(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

static void test_sigterm_flushes_and_exits_0(void **state)
{
    (void)state;
    graceful_stop("s_term", SIGTERM);
}

static void test_sigint_flushes_and_exits_0(void **state)
{
    (void)state;
    graceful_stop("s_int", SIGINT);
}

/* ---- a second signal ----------------------------------------------------------------------- */

static PGconn *lock_table(const char *stream)
{
    PGconn *c = k2p_test_pg_connect(&g.pg);
    char sql[200];
    PGresult *r;
    if (!c)
        fail_msg("cannot connect to lock the table");
    snprintf(sql, sizeof sql, "BEGIN; LOCK TABLE kinesis.\"%s\" IN ACCESS EXCLUSIVE MODE", stream);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("LOCK TABLE: %s", PQerrorMessage(c));
    PQclear(r);
    return c;
}

static void unlock_table(PGconn *c)
{
    PGresult *r = PQexec(c, "COMMIT");
    PQclear(r);
    PQfinish(c);
}

/* Fails unless status is "exited nonzero" (128 + signal, as the loader's handler does). */
static void expect_abrupt(int status, int64_t took_ms, const char *log_path)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 0) {
        k2p_ft_print_tail(log_path, 4000);
        fail_msg("after a second signal the loader should exit nonzero at once (status 0x%x)",
                 status);
    }
    /* At once: well under a second; sanitizers slow the exit down (TSan: ~1 s). */
    if (took_ms > (k2p_ft_sanitized() ? 5000 : 2000))
        fail_msg("the second signal took %lld ms to end the loader", (long long)took_ms);
}

static void test_second_signal_exits_at_once(void **state)
{
    const char *stream = "s_twice";
    k2p_lt_set *set = &g_set;
    static const char *const extra[] = {
        "--chunk-size", "2000", "--batch-rows", "5000", "--flush-ms", "100", NULL};
    static const char *const first[] = {"--max-messages", "1000", NULL};
    const char **args = k2p_ft_args(stream, extra), **args_first = k2p_ft_args(stream, first);
    char log_path[320];
    int status = 0;
    int64_t t_sig, rows;
    PGconn *locker;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, RECORDS_TWICE, RECORD_SIZE, NULL, set);
    log_path_for(log_path, sizeof log_path, stream);
    K2P_LT_EXPECT_ROWS(k2p_lt_load_ok(&g, "kinesis", stream, args_first), 1000);

    /* 1. Writers stuck behind our lock: the first SIGTERM cannot finish, a SIGINT ends it. */
    locker = lock_table(stream);
    k2p_ft_mock_control(&mk, "{\"reset_stats\":true}");
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    {
        int64_t deadline = k2p_ft_ms() + 30000;
        while (k2p_ft_mock_stat(&mk, "records_served") < 5000) {
            if (k2p_ft_ms() > deadline || k2p_lt_wait_pid(pid, 20, &status)) {
                unlock_table(locker);
                k2p_ft_print_tail(log_path, 4000);
                fail_msg("the loader did not start reading");
            }
        }
    }
    kill(pid, SIGTERM);
    if (k2p_lt_wait_pid(pid, 500, &status)) {
        unlock_table(locker);
        k2p_ft_print_tail(log_path, 4000);
        fail_msg("the loader exited (status 0x%x) though its writers could not commit", status);
    }
    kill(pid, SIGINT);
    t_sig = k2p_ft_ms();
    status = k2p_ft_reap(pid, 10000, log_path, "second signal");
    expect_abrupt(status, k2p_ft_ms() - t_sig, log_path);
    if (!k2p_ft_wait_log(log_path, "second signal", 0))
        fail_msg("the loader did not say it exits at once");
    unlock_table(locker);
    fprintf(stderr, "  %s: stuck writers: exit %d %lld ms after the second signal\n", stream,
            WEXITSTATUS(status), (long long)(k2p_ft_ms() - t_sig));
    rows = k2p_ft_assert_prefix(&g, "kinesis", stream, stream, set);
    assert_int_equal(rows, 1000);

    /* 2. Two signals a few ms apart at random moments of a running load. */
    for (int round = 0; round < 3; round++) {
        int delay = (int)k2p_ft_rand(300, 1500), gap = (int)k2p_ft_rand(0, 30);
        pid = k2p_lt_spawn_loader(&g, args, log_path);
        if (k2p_lt_wait_pid(pid, delay, &status)) {
            k2p_ft_expect_status(status, 0, log_path, "run before the signals");
            continue;
        }
        kill(pid, SIGTERM);
        if (!k2p_lt_wait_pid(pid, gap, &status)) {
            kill(pid, round % 2 ? SIGINT : SIGTERM);
            t_sig = k2p_ft_ms();
            status = k2p_ft_reap(pid, 10000, log_path, "second signal");
            /* The first signal may have finished its flush before the second arrived. */
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                expect_abrupt(status, k2p_ft_ms() - t_sig, log_path);
        } else {
            k2p_ft_expect_status(status, 0, log_path, "first signal");
        }
        fprintf(stderr, "  %s: round %d: signals at %d ms and +%d ms: exit %d, %lld rows\n", stream,
                round + 1, delay, gap, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                (long long)k2p_lt_count(&g, "kinesis", stream));
    }
    complete_exactly(stream, set);
    free(args);
    free(args_first);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- kill -9, 20 times ---------------------------------------------------------------------- */

/* 1 when the kill -9 test loads RECORDS_LONG: always in the normal build (so `make test` runs
 * it), under ASan/TSan only with K2P_TEST_LONG=1. */
static int kill9_long(void)
{
    return k2p_ft_long() || !k2p_ft_sanitized();
}

/* Records of the stream that are in: table rows plus dead letters (the produced set counts the
 * invalid records too, so the table alone never reaches set->n). */
static int64_t records_in(const char *stream)
{
    int64_t n = k2p_lt_count(&g, "kinesis", stream);
    if (k2p_lt_i64(&g, "SELECT count(*) FROM pg_class WHERE oid ="
                       " to_regclass('kinesis2pg.dead_letters')") > 0)
        n += k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = '%s'",
                        stream);
    return n;
}

static void test_kill9_twenty_times(void **state)
{
    const char *stream = "s_kill9";
    k2p_lt_set *set = &g_set;
    int is_long = kill9_long();
    const char *const extra[] = {"--writers",  "3",   "--batch-rows", "5000",
                                 "--flush-ms", "100", "--chunk-size", is_long ? "1000" : "300",
                                 NULL};
    const char **args = k2p_ft_args(stream, extra);
    int max_delay = is_long ? 3000 : 1500, min_delay = is_long ? 200 : 100;
    /* Kill moments are drawn below `cap`: a run that finishes on its own lowers it to 3/4 of the
     * time it took, so the kills keep landing mid-run when few rows are left (with a fixed
     * 100-1500 ms a TSan run once finished 46 times in 60); a top-up restores it. */
    int cap = max_delay;
    char log_path[320], put[160];
    int killed = 0, finished = 0, mid_load = 0, attempts = 0;
    int64_t t0;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* A quarter preloaded, the rest put through the mock after it with 1 in 10 not valid JSON
     * (dead letters). */
    k2p_ft_mock_preload(&g, &mk, stream, 4, (is_long ? RECORDS_LONG : RECORDS) / 4, RECORD_SIZE,
                        NULL, set);
    snprintf(put, sizeof put, "--count %d --kind json --size %d --invalid %d --seed 7",
             (is_long ? RECORDS_LONG : RECORDS) / 4 * 3, RECORD_SIZE,
             (is_long ? RECORDS_LONG : RECORDS) / 40 * 3);
    k2p_lt_produce(&g, stream, set, put);
    log_path_for(log_path, sizeof log_path, stream);
    t0 = k2p_ft_ms();
    while (killed < KILLS) {
        int status = 0, delay;
        int64_t before = records_in(stream), started;
        pid_t pid;

        if (++attempts > KILLS * 3)
            fail_msg("only %d kills in %d runs: the loader keeps finishing first", killed,
                     attempts - 1);
        if (before >= (int64_t)set->n) {
            fprintf(stderr, "  %s: all %zu rows in; putting " TOP_UP " more\n", stream, set->n);
            k2p_lt_produce(&g, stream, set,
                           "--count " TOP_UP " --kind json --size 100 --seed 4242");
            cap = max_delay;
        }
        delay = (int)k2p_ft_rand(min_delay, cap);
        started = k2p_ft_ms();
        pid = k2p_lt_spawn_loader(&g, args, log_path);
        if (k2p_lt_wait_pid(pid, delay, &status)) {
            k2p_ft_expect_status(status, 0, log_path, "a run that finished before its kill");
            finished++;
            cap = (int)K2P_MAX((int64_t)min_delay, (k2p_ft_ms() - started) * 3 / 4);
            continue;
        }
        kill(pid, SIGKILL);
        k2p_ft_reap(pid, 10000, log_path, "kill -9");
        killed++;
        mid_load += before < (int64_t)set->n;
    }
    fprintf(stderr,
            "  %s: %d kills (%d while rows were missing), %d runs finished on their own, "
            "%lld of %zu rows in after %.1f s\n",
            stream, killed, mid_load, finished, (long long)k2p_lt_count(&g, "kinesis", stream),
            set->n, (double)(k2p_ft_ms() - t0) / 1000);
    complete_exactly(stream, set);
    fprintf(stderr, "  %s: loaded and compared after %.1f s\n", stream,
            (double)(k2p_ft_ms() - t0) / 1000);
    k2p_lt_assert_dead_letters(&g, stream, set);
    /* A rerun finds nothing new. */
    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", stream, args), 0);
    fprintf(stderr, "  %s: done after %.1f s\n", stream, (double)(k2p_ft_ms() - t0) / 1000);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- tail: at-least-once across kill -9 ---------------------------------------------------- */

#define TAIL_RECORDS 40000
#define TAIL_KILLS 10

static void test_tail_kill9_prints_every_record(void **state)
{
    const char *stream = "s_tail";
    k2p_lt_set *set = &g_set;
    char state_path[320], out_path[320], err_path[320];
    int killed = 0, finished = 0, status = 0;
    int64_t lines = 0, bad, missing, unknown, dups;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, TAIL_RECORDS, RECORD_SIZE, NULL, set);
    snprintf(state_path, sizeof state_path, "%s/%s.state", g.tmpdir, stream);
    snprintf(err_path, sizeof err_path, "%s/%s.err", g.tmpdir, stream);
    {
        const char *const full[] = {"tail",      "--stream",   stream,         "--state",
                                    state_path,  "--endpoint", mk.endpoint,    "--region",
                                    "us-east-1", "--from",     "trim_horizon", "--chunk-size",
                                    "200",       NULL};
        /* Killed runs, each printing to its own file (a killed run's last line may be torn). */
        for (int i = 0; i <= TAIL_KILLS; i++) {
            int last = i == TAIL_KILLS;
            snprintf(out_path, sizeof out_path, "%s/%s.%d.jsonl", g.tmpdir, stream, i);
            pid = k2p_ft_spawn(&g, full, out_path, err_path);
            if (last || k2p_lt_wait_pid(pid, (int)k2p_ft_rand(100, 800), &status)) {
                if (last)
                    status = k2p_ft_reap(pid, 120000, err_path, "tail to the end");
                k2p_ft_expect_status(status, 0, err_path, "tail");
                finished++;
            } else {
                kill(pid, SIGKILL);
                k2p_ft_reap(pid, 10000, err_path, "tail kill -9");
                killed++;
            }
            lines += k2p_ft_load_lines(&g, "tail_lines", out_path);
        }
    }
    /* Every record put was printed at least once, as put; nothing else was printed. */
    k2p_lt_load_expected(&g, set);
    k2p_lt_sql(&g, "CREATE TEMP TABLE tail_json AS SELECT"
                   " pg_temp.k2p_try_jsonb(convert_to(line, 'UTF8')) j FROM pg_temp.tail_lines");
    bad = k2p_lt_i64(&g, "SELECT count(*) FROM tail_json WHERE j IS NULL");
    missing = k2p_lt_i64(&g, "SELECT count(*) FROM k2p_expected e WHERE NOT EXISTS (SELECT 1 FROM"
                             " tail_json t WHERE t.j->>'_kinesis__shard_id' = e.shard AND"
                             " (t.j->>'_kinesis__seq_no')::numeric = e.seq AND"
                             " t.j->>'_kinesis__partition' = e.pkey AND t.j->'data' = e.j)");
    unknown = k2p_lt_i64(&g, "SELECT count(*) FROM tail_json t WHERE NOT EXISTS (SELECT 1 FROM"
                             " k2p_expected e WHERE t.j->>'_kinesis__shard_id' = e.shard AND"
                             " (t.j->>'_kinesis__seq_no')::numeric = e.seq)");
    dups = lines - k2p_lt_i64(&g, "SELECT count(DISTINCT (j->>'_kinesis__shard_id',"
                                  " j->>'_kinesis__seq_no')) FROM tail_json");
    fprintf(stderr,
            "  %s: %d kills, %d runs to the end; %lld lines for %zu records (%lld printed again"
            " after a kill)\n",
            stream, killed, finished, (long long)lines, set->n, (long long)dups);
    if (bad || missing || unknown)
        fail_msg("tail across kill -9: %lld line(s) not JSON, %lld record(s) never printed,"
                 " %lld line(s) for records never put",
                 (long long)bad, (long long)missing, (long long)unknown);
    assert_true(killed >= TAIL_KILLS / 2);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sigterm_flushes_and_exits_0, test_setup),
        cmocka_unit_test_setup(test_sigint_flushes_and_exits_0, test_setup),
        cmocka_unit_test_setup(test_second_signal_exits_at_once, test_setup),
        cmocka_unit_test_setup(test_kill9_twenty_times, test_setup),
        cmocka_unit_test_setup(test_tail_kill9_prints_every_record, test_setup),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

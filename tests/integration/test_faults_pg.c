/* test_faults_pg.c - the loader survives PostgreSQL faults, exactly once, and its memory stays
 * bounded when PostgreSQL is slower than Kinesis (DESIGN §3, §4; user guide "Exit codes and
 * errors": outages are retried for up to two minutes with the batch kept in memory).
 *
 * Records are preloaded in tests/mock_kinesis (fault-free here) and read by the real loader;
 * every test ends with the exact comparison of loader_testlib (no row missing, none twice) and
 * the checkpoints at each shard's last record.
 *
 *  - Crash and recovery (pg_ctl stop -m immediate, start) about a second into a load of 200,000
 *    records of ~100 bytes (K2P_TEST_LONG=1: 1,000,000), or as soon as a quarter is committed,
 *    with --batch-rows 5000, so dozens of transactions are in flight or committed when the
 *    server dies: the loader reconnects and redoes what was not committed. The test fails if
 *    the load was over before the crash.
 *  - The one-loader-per-stream lock after such a crash: a second loader started while the first
 *    still loads (100,000 records, --no-primary-key so duplicates would show) must be refused.
 *  - The server down for 30 s (fast shutdown, wait, start) during a load of 100,000 records
 *    (long: 500,000), without the primary key so that a batch committed twice would show: the
 *    loader keeps running, waits with backoff (it uses under a quarter of a core once it has
 *    nothing to do but wait), says so once per waiting writer and once for the checkpoints
 *    whatever the number of attempts, resumes within 15 s of the restart, exits 0 with the
 *    exact set. In every build (the outage is idle time: ~+25 s of wall clock).
 *  - A writer's transaction failing: the test holds an ACCESS EXCLUSIVE lock on the target table
 *    for ~3 s while the loader runs with lock_timeout=500ms (options in --pg); the writers'
 *    COPYs fail with SQLSTATE 55P03 and are retried.
 *  - Back-pressure: 24,000 records of ~4 KB (~96 MB) on 4 shards, read 500 per call, while the
 *    target table is locked: reading must stop (the mock serves no more than 48 MiB
 *    plus one answer per shard: the 32 MiB in-flight budget with room to spare) and the
 *    loader's peak RSS (VmHWM) must stay under the bound explained at MEMORY_BOUND_MB (not
 *    enforced under ASan/TSan, whose shadow memory and quarantine are not the loader's); then
 *    the lock goes and the load completes exactly.
 *
 * Normal build: 90-105 s on 2 cores shared with other work (load average 3-5), next to
 * another test, of which ~40 s for the 30 s outage (ASan ~100 s, TSan ~220 s).
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
#include "pg_cut_proxy.h"
#include "kinesis2pg/common.h"

#define RECORDS 200000
#define RECORDS_LONG 1000000
#define RECORD_SIZE 100

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

static int test_setup(void **state)
{
    (void)state;
    k2p_ft_test_reset(&mk, &g_set);
    return 0;
}

static long records(void)
{
    return k2p_ft_long() ? RECORDS_LONG : RECORDS;
}

static void log_path_for(char *out, size_t cap, const char *stream)
{
    snprintf(out, cap, "%s/%s.log", g.tmpdir, stream);
}

/* Checks the exact set and checkpoints after a load that exited 0. */
static void assert_exact(const char *stream, const k2p_lt_set *set)
{
    k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, set);
}

/* Loader arguments of the PostgreSQL fault tests: small transactions, many of them. */
static const char *const many_txns[] = {"--batch-rows", "5000", "--flush-ms", "100",
                                        "--chunk-size", "5000", NULL};

/* ---- crash and recovery -------------------------------------------------------------------- */

static void test_restart_immediate_mid_load(void **state)
{
    const char *stream = "p_restart";
    k2p_lt_set *set = &g_set;
    const char **args = k2p_ft_args(stream, many_txns);
    char log_path[320], *log;
    int status = 0;
    int64_t t0, rows;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, records(), RECORD_SIZE, NULL, set);
    log_path_for(log_path, sizeof log_path, stream);
    t0 = k2p_ft_ms();
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    /* About a second in, once something is committed - or earlier, once a quarter is (a fast
     * loader must still crash mid-load). */
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, 1, pid, &status, 30000);
    if (rows < 1)
        fail_msg("no row committed within 30 s (or the loader exited: status 0x%x)", status);
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, (int64_t)set->n / 4, pid, &status,
                            (int)K2P_MAX(0, 1000 - (k2p_ft_ms() - t0)));
    if (rows < 0 || rows >= (int64_t)set->n)
        fail_msg("the load was over before the crash: make it longer");
    fprintf(stderr, "  %s: crash after %.1f s with %lld of %zu rows committed\n", stream,
            (double)(k2p_ft_ms() - t0) / 1000, (long long)rows, set->n);
    if (k2p_test_pg_restart_immediate(&g.pg) != 0)
        fail_msg("PostgreSQL did not restart");
    status = k2p_ft_reap(pid, 180000, log_path, "load across a crash of PostgreSQL");
    k2p_ft_expect_status(status, 0, log_path, "load across a crash of PostgreSQL");
    fprintf(stderr, "  %s: load done %.1f s after start\n", stream,
            (double)(k2p_ft_ms() - t0) / 1000);
    log = k2p_ft_slurp(log_path);
    if (!strstr(log, "retrying")) {
        k2p_ft_print_tail(log_path, 8000);
        fail_msg("the loader did not say it was retrying after the crash");
    }
    free(log);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* The one-loader-per-stream lock (a session advisory lock) must outlive a restart of
 * PostgreSQL: a second loader started after the restart, while the first still loads, must be
 * refused. Without the primary key, two loaders at once would be visible duplicates. */
static void test_stream_lock_survives_restart(void **state)
{
    const char *stream = "p_lock_restart";
    k2p_lt_set *set = &g_set;
    static const char *const slow[] = {"--chunk-size", "1000", "--batch-rows",     "5000",
                                       "--flush-ms",   "100",  "--no-primary-key", NULL};
    const char **args = k2p_ft_args(stream, slow);
    char log_path[320];
    int status = 0;
    int64_t rows;
    k2p_lt_run second;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* 100,000 records at 4 x 5 x 1,000 per second: ~5 s of reading. */
    k2p_ft_mock_preload(&g, &mk, stream, 4, 100000, RECORD_SIZE, NULL, set);
    log_path_for(log_path, sizeof log_path, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, 5000, pid, &status, 30000);
    if (rows < 5000)
        fail_msg("the first loader did not commit 5,000 rows");
    if (k2p_test_pg_restart_immediate(&g.pg) != 0)
        fail_msg("PostgreSQL did not restart");
    /* Wait until the first loader commits again after the restart. */
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, k2p_lt_count(&g, "kinesis", stream) + 1, pid,
                            &status, 30000);
    if (rows < 0 || rows >= (int64_t)set->n)
        fail_msg("the first loader was done before the second could start: make it longer");
    k2p_lt_run_loader(&g, args, 120, &second);
    fprintf(stderr, "  %s: second loader during the first: exit %d\n", stream, second.exit_code);
    status = k2p_ft_reap(pid, 120000, log_path, "first loader");
    k2p_ft_expect_status(status, 0, log_path, "first loader");
    if (second.exit_code != 1 || !strstr(second.err, "another kinesis2pg")) {
        fprintf(stderr,
                "a second loader ran (exit %d) while the first one was loading: the stream lock"
                " was lost with the restart; its stderr:\n%s",
                second.exit_code, second.err);
        k2p_lt_run_free(&second);
        k2p_lt_assert_table(&g, "kinesis", stream, stream, set, K2P_LT_JSON);
        fail_msg("a second loader ran while the first one was loading (see above)");
    }
    k2p_lt_run_free(&second);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- an outage of 30 seconds ---------------------------------------------------------------- */

/* The server stays down this long: long enough for the writers' backoff to reach its 5 s cap
 * several times, well inside their 120 s budget per transaction (pg_writer.c). */
#define OUTAGE_MS 30000
#define OUTAGE_WRITERS 2
/* Once PostgreSQL is back, a waiting writer commits within its current backoff sleep (at most
 * 5 s) plus a reconnect and a COMMIT. */
#define RESUME_MS 15000
/* While the loader only waits (everything read, nothing can commit), it must sleep between
 * attempts: CPU time / wall time below this. A retry loop without backoff keeps one core busy
 * per writer (ratio >= 1). Measured on 2 shared cores: 0.001-0.011 (normal build), ~0.02
 * (ASan, TSan). */
#define IDLE_CPU_MAX 0.25

/* CPU time (user + system, ms) used so far by the process pid, all threads; -1 if gone. */
static int64_t cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    const char *p;
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15 (utime, stime), counted after the ')' that ends the program name. */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* Ends a loader the test gives up on, so that it does not outlive the failed test. */
static void kill_loader(pid_t pid)
{
    int status;
    kill(pid, SIGKILL);
    k2p_lt_wait_pid(pid, 10000, &status);
}

/* PostgreSQL down for 30 s (fast shutdown, wait, start) in the middle of a load, without the
 * primary key so that a transaction committed twice would show as duplicate rows: the loader
 * keeps running and waits with backoff (little CPU), says so once per writer and once for the
 * checkpoints (not once per attempt), resumes within RESUME_MS of the restart, exits 0, and the
 * table is exactly the produced set. */
static void test_server_down_for_seconds(void **state)
{
    const char *stream = "p_down";
    k2p_lt_set *set = &g_set;
    static const char *const extra[] = {"--batch-rows",     "5000", "--flush-ms", "100",
                                        "--chunk-size",     "5000", "--writers",  "2",
                                        "--no-primary-key", NULL};
    const char **args = k2p_ft_args(stream, extra);
    char log_path[320], *log;
    int status = 0, said, back, ckpt_said, ckpt_back;
    int64_t t_down, t_up, t_idle = -1, cpu_idle = -1, cpu_end, rows;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, records() / 2, RECORD_SIZE, NULL, set);
    log_path_for(log_path, sizeof log_path, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    rows = k2p_ft_wait_rows(&g, "kinesis", stream, 1, pid, &status, 30000);
    if (rows < 1)
        fail_msg("no row committed within 30 s");
    k2p_ft_pg_down(&g, SIGINT);
    t_down = k2p_ft_ms();
    fprintf(stderr, "  %s: PostgreSQL stopped with %lld+ of %zu rows committed\n", stream,
            (long long)rows, set->n);
    /* Down for OUTAGE_MS; the loader must notice, say so, and keep running. Once the mock has
     * served every record the loader has nothing to do but wait: measure its CPU from then. */
    if (!k2p_ft_wait_log(log_path, "retrying", OUTAGE_MS)) {
        kill_loader(pid);
        k2p_ft_pg_start_again(&g);
        k2p_ft_print_tail(log_path, 8000);
        fail_msg("the loader never said it was retrying");
    }
    while (k2p_ft_ms() - t_down < OUTAGE_MS) {
        if (k2p_lt_wait_pid(pid, 100, &status)) {
            k2p_ft_pg_start_again(&g);
            k2p_ft_print_tail(log_path, 8000);
            fail_msg("the loader exited (status 0x%x) while PostgreSQL was down", status);
        }
        if (t_idle < 0 && k2p_ft_mock_stat(&mk, "records_served") >= (int64_t)set->n) {
            t_idle = k2p_ft_ms();
            cpu_idle = cpu_ms(pid);
        }
    }
    cpu_end = cpu_ms(pid);
    k2p_ft_pg_start_again(&g);
    t_up = k2p_ft_ms();
    if (t_idle < 0)
        fprintf(stderr,
                "  %s: the loader was still reading when PostgreSQL came back: no idle"
                " CPU figure\n",
                stream);
    else {
        double secs = (double)(t_up - t_idle) / 1000,
               ratio = (double)(cpu_end - cpu_idle) / 1000 / secs;
        fprintf(stderr,
                "  %s: while only waiting (last %.1f s of the outage) the loader used %.2f s"
                " of CPU (%.3f of a core; limit %.2f)\n",
                stream, secs, (double)(cpu_end - cpu_idle) / 1000, ratio, IDLE_CPU_MAX);
        if (cpu_idle < 0 || cpu_end < 0 || (secs >= 5 && ratio > IDLE_CPU_MAX)) {
            kill_loader(pid);
            k2p_ft_print_tail(log_path, 8000);
            if (cpu_idle < 0 || cpu_end < 0)
                fail_msg("cannot read the loader's CPU time from /proc/%d/stat", (int)pid);
            fail_msg("the loader does not back off while PostgreSQL is down: %.2f of a core",
                     ratio);
        }
    }
    /* Resumes: a writer that waited commits soon after the restart. */
    if (!k2p_ft_wait_log(log_path, "PostgreSQL is back", RESUME_MS)) {
        kill_loader(pid);
        k2p_ft_print_tail(log_path, 8000);
        fail_msg("no writer committed within %d ms of PostgreSQL being back", RESUME_MS);
    }
    fprintf(stderr, "  %s: first commit %.1f s after PostgreSQL was back (outage %.1f s)\n", stream,
            (double)(k2p_ft_ms() - t_up) / 1000, (double)(t_up - t_down) / 1000);
    status = k2p_ft_reap(pid, 180000, log_path, "load across an outage");
    k2p_ft_expect_status(status, 0, log_path, "load across an outage");
    log = k2p_ft_slurp(log_path);
    said = k2p_ft_count_lines(log, "; retrying");
    back = k2p_ft_count_lines(log, "PostgreSQL is back");
    ckpt_said = k2p_ft_count_lines(log, "saving checkpoints failed");
    ckpt_back = k2p_ft_count_lines(log, "checkpoints saved again");
    fprintf(stderr,
            "  %s: %d writer line(s) say 'retrying', %d say PostgreSQL is back; checkpoints: %d"
            " failed, %d saved again\n",
            stream, said, back, ckpt_said, ckpt_back);
    /* Once per waiting writer, whatever the number of attempts (30 s of backoff capped at 5 s:
     * a dozen each); each of them says it is back; the checkpoint thread says it at most once. */
    if (said < 1 || said > OUTAGE_WRITERS || back != said || ckpt_said > 1 ||
        ckpt_back != ckpt_said) {
        fprintf(stderr, "%s", log);
        fail_msg("expected the outage to be reported once per waiting writer (1..%d) and once"
                 " for the checkpoints, each followed by a line saying it is over",
                 OUTAGE_WRITERS);
    }
    free(log);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- a failing transaction (lock timeout) --------------------------------------------------- */

/* A connection holding ACCESS EXCLUSIVE on "kinesis".stream in an open transaction. */
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
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("COMMIT of the lock: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* Creates the target table with a first run of `first` records. */
static void first_rows(const char *stream, int first)
{
    char n[24];
    const char *const extra[] = {"--max-messages", n, NULL};
    const char **args = k2p_ft_args(stream, extra);
    snprintf(n, sizeof n, "%d", first);
    K2P_LT_EXPECT_ROWS(k2p_lt_load_ok(&g, "kinesis", stream, args), first);
    free(args);
}

static void test_lock_timeout_is_retried(void **state)
{
    const char *stream = "p_lock";
    k2p_lt_set *set = &g_set;
    char pg[400], log_path[320], *log;
    const char *const extra[] = {"--pg", pg, "--batch-rows", "5000", "--flush-ms", "100", NULL};
    const char **args = k2p_ft_args(stream, extra);
    int status;
    int64_t t_lock;
    PGconn *locker;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, 50000, RECORD_SIZE, NULL, set);
    first_rows(stream, 1000);
    /* The later --pg wins over the one loader_testlib puts first. */
    snprintf(pg, sizeof pg, "%s options='-c lock_timeout=500'", g.pg.conninfo);
    log_path_for(log_path, sizeof log_path, stream);
    locker = lock_table(stream);
    t_lock = k2p_ft_ms();
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    if (!k2p_ft_wait_log(log_path, "retrying", 20000)) {
        unlock_table(locker);
        k2p_ft_print_tail(log_path, 8000);
        fail_msg("the loader never reported a failed transaction");
    }
    /* Hold the lock ~3 s in all, so several attempts time out. */
    while (k2p_ft_ms() - t_lock < 3000) {
        if (k2p_lt_wait_pid(pid, 50, &status)) {
            unlock_table(locker);
            k2p_ft_expect_status(status, 0, log_path, "load while the table is locked");
            fail_msg("the loader finished while the table was locked");
        }
    }
    unlock_table(locker);
    status = k2p_ft_reap(pid, 120000, log_path, "load after the lock");
    k2p_ft_expect_status(status, 0, log_path, "load after the lock");
    log = k2p_ft_slurp(log_path);
    if (!strstr(log, "55P03")) {
        fprintf(stderr, "%s", log);
        fail_msg("expected the writers to report lock timeouts (SQLSTATE 55P03)");
    }
    fprintf(stderr, "  %s: %d line(s) report the retried transaction\n", stream,
            k2p_ft_count_lines(log, "55P03"));
    free(log);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- a COMMIT whose answer is lost ------------------------------------------------------- */

/* The loader talks to PostgreSQL through a proxy that forwards a writer's COMMIT, lets the
 * server commit, then cuts the connection before the answer: the writer cannot know whether its
 * transaction went through. Redoing it would duplicate its rows (no primary key here, so they
 * would show); it must find its ledger rows and go on. Three such cuts during one load. */
static void test_lost_commit_answer_is_not_redone(void **state)
{
    const char *stream = "p_lostack";
    k2p_lt_set *set = &g_set;
    k2p_cut_proxy px;
    char pg[400], log_path[320], *log;
    const char *const extra[] = {"--pg", pg, "--batch-rows", "5000", "--flush-ms", "100",
                                 "--chunk-size", "5000", "--no-primary-key", NULL};
    const char **args = k2p_ft_args(stream, extra);
    int status;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, 4, 60000, RECORD_SIZE, NULL, set);
    assert_int_equal(k2p_cut_proxy_start(&px, g.pg.port), 0);
    k2p_cut_proxy_arm(&px, 2, 3);
    snprintf(pg, sizeof pg, "host=127.0.0.1 port=%d dbname=k2p_test user=postgres connect_timeout=10",
             px.port);
    log_path_for(log_path, sizeof log_path, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    status = k2p_ft_reap(pid, 180000, log_path, "load through the cutting proxy");
    k2p_cut_proxy_stop(&px);
    k2p_ft_expect_status(status, 0, log_path, "load through the cutting proxy");
    log = k2p_ft_slurp(log_path);
    fprintf(stderr, "  %s: %d answer(s) cut, %d found committed\n", stream,
            atomic_load(&px.cuts_done), k2p_ft_count_lines(log, "went through; not redone"));
    assert_int_equal(atomic_load(&px.cuts_done), 3);
    assert_int_equal(k2p_ft_count_lines(log, "went through; not redone"), 3);
    free(log);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

/* ---- back-pressure: bounded memory ---------------------------------------------------------- */

#define BP_SHARDS 4
#define BP_RECORDS 24000
#define BP_SIZE 4000
#define BP_CHUNK 500
/* The bound on the loader's peak RSS. The in-flight budget (32 MiB, DESIGN §3) pays for every
 * big buffer: a GetRecords answer is charged before the call (2.5 x BP_CHUNK records of ~4 KB:
 * ~5 MB), the batch takes that charge over until COMMIT; a full budget blocks the readers
 * before they call. Big blocks in use and the cache of freed ones stay under 1.5 x the budget
 * (loader.c): 16 MiB more at most. Each writer's libpq output buffer grows to the largest piece
 * it sends (<= 4 MiB). The program, its libraries, 8 thread stacks and malloc's arenas:
 * ~16 MiB. 32 + 16 + 8 + 16 = 72 MiB. Measured on this machine: 45 MB over the whole run
 * (95-104 MB before readers stopped holding uncharged batches, commit 5cb7e46), 49 MB with
 * the 1.5 x cache bound. */
#define MEMORY_BOUND_MB 72

static void test_memory_bounded_when_pg_is_slow(void **state)
{
    const char *stream = "p_backpressure";
    k2p_lt_set *set = &g_set;
    char chunk[16], log_path[320];
    const char *const extra[] = {"--chunk-size", chunk, NULL};
    const char **args = k2p_ft_args(stream, extra);
    int64_t hwm = 0, served = 0, served_bytes = 0, stable_since, deadline, budget_bytes;
    int status = 0, exited = 0;
    PGconn *locker;
    pid_t pid;
    (void)state;
    K2P_LT_REQUIRE(&g);

    snprintf(chunk, sizeof chunk, "%d", BP_CHUNK);
    k2p_ft_mock_preload(&g, &mk, stream, BP_SHARDS, BP_RECORDS, BP_SIZE, NULL, set);
    first_rows(stream, 100);
    k2p_ft_mock_control(&mk, "{\"reset_stats\":true}");
    locker = lock_table(stream);
    log_path_for(log_path, sizeof log_path, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);

    /* Readers run until the in-flight budget is full, then must stop: wait until the mock has
     * served nothing new for 1.5 s (or 30 s pass). */
    stable_since = k2p_ft_ms();
    deadline = stable_since + 30000;
    while (k2p_ft_ms() - stable_since < 1500 && k2p_ft_ms() < deadline) {
        int64_t s = k2p_ft_mock_stat(&mk, "bytes_served"), h = k2p_ft_vm_hwm_kb(pid, "kinesis2pg");
        if (s != served_bytes) {
            served_bytes = s;
            stable_since = k2p_ft_ms();
        }
        if (h > hwm)
            hwm = h;
        if (k2p_lt_wait_pid(pid, 50, &status)) {
            unlock_table(locker);
            k2p_ft_expect_status(status, 0, log_path, "load while the table is locked");
            fail_msg("the loader finished while the table was locked");
        }
    }
    served = k2p_ft_mock_stat(&mk, "records_served");
    fprintf(stderr,
            "  %s: with the table locked, reading stopped after %lld of %d records (%.1f MB of"
            " answers); loader VmHWM %.1f MB\n",
            stream, (long long)served, BP_RECORDS, (double)served_bytes / 1e6, (double)hwm / 1024);
    /* Records read while nothing can commit: the budget plus one answer per shard. */
    budget_bytes = ((int64_t)48 << 20) + (int64_t)BP_SHARDS * BP_CHUNK * (BP_SIZE + 200) * 2;
    if (served * (BP_SIZE + 100) > budget_bytes || served >= BP_RECORDS - 100) {
        unlock_table(locker);
        fail_msg("no back-pressure: %lld records (~%lld MB) read while nothing could commit",
                 (long long)served, (long long)(served * BP_SIZE >> 20));
    }

    /* Release the lock; keep sampling until the loader is done. */
    unlock_table(locker);
    deadline = k2p_ft_ms() + 180000;
    while (!exited && k2p_ft_ms() < deadline) {
        int64_t h = k2p_ft_vm_hwm_kb(pid, "kinesis2pg");
        if (h > hwm)
            hwm = h;
        exited = k2p_lt_wait_pid(pid, 20, &status);
    }
    if (!exited)
        status = k2p_ft_reap(pid, 1, log_path, "load after the lock");
    k2p_ft_expect_status(status, 0, log_path, "load after the lock");
    fprintf(stderr, "  %s: loader VmHWM over the whole run: %.1f MB (bound %d MB%s)\n", stream,
            (double)hwm / 1024, MEMORY_BOUND_MB,
            k2p_ft_sanitized() ? "; not enforced under a sanitizer" : "");
    if (!k2p_ft_sanitized() && hwm > (int64_t)MEMORY_BOUND_MB * 1024)
        fail_msg("the loader's peak RSS %.1f MB exceeds %d MB", (double)hwm / 1024,
                 MEMORY_BOUND_MB);
    assert_exact(stream, set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_restart_immediate_mid_load, test_setup),
        cmocka_unit_test_setup(test_stream_lock_survives_restart, test_setup),
        cmocka_unit_test_setup(test_server_down_for_seconds, test_setup),
        cmocka_unit_test_setup(test_lock_timeout_is_retried, test_setup),
        cmocka_unit_test_setup(test_lost_commit_answer_is_not_redone, test_setup),
        cmocka_unit_test_setup(test_memory_bounded_when_pg_is_slow, test_setup),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_loader_leases.c - several kinesis2pg processes on one stream and table (issue 7):
 * --leases (per-shard leases in PostgreSQL, balance, takeover) and the static split
 * (--worker-count / --worker-index).
 *
 *  - Three `load --leases` processes on one stream of 32 shards preloaded in tests/mock_kinesis
 *    (96,000 records of ~100 bytes, 100 per GetRecords: ~6 s of reading for the three), without
 *    the primary key so a record loaded twice would be an extra row. Once the shards are
 *    spread over the three and rows are coming in, the one holding the most leases is killed
 *    with SIGKILL; its leases must all be taken over within the TTL (3 s) plus two ticks, and
 *    the two others must exit 0 with the table equal to the preloaded set, every checkpoint at
 *    its shard's last record.
 *  - One of two --leases processes is paused (SIGSTOP) past its TTL: its leases are taken over
 *    while it is alive; resumed, it commits nothing more for them and exits 1 ("took over");
 *    the table is exact.
 *  - The static split: three workers (--worker-count 3, indexes 0..2, one from
 *    JOB_COMPLETION_INDEX) loading at the same time: the exact set, each shard's rows written by
 *    the worker k2p_static_worker_of() names (checked through the lease owners' pids), and a
 *    second worker with the same index is refused.
 *  - Workers must agree on --worker-count: a worker of 3 next to a running worker of 2 is
 *    refused with one line naming both counts.
 *  - /readyz: a --leases process holding no lease (two followers, one shard) is ready, as a
 *    standby, next to the one reading.
 *  - Ways of running never mix: a single loader is refused while --leases processes run.
 *  - A session frozen between its FOR SHARE ownership check and COMMIT (the pause above can land
 *    there) is ended by PostgreSQL after the bound the sharing modes connect with, so the
 *    taker's epoch bump goes through; without the bound it would wait for as long as the freeze.
 *  - Bad settings (index >= count, negative, --worker-index without a count, --leases with a
 *    count) exit 2 with one line.
 *
 * Threading: single-threaded; the loaders and the mock are child processes.
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
#include "lease.h"
#include "pg_state.h"

#define SHARDS 32
#define RECORDS 96000
#define RECORD_SIZE 100
#define TTL_MS 3000
#define PROCS 3

static k2p_lt g;
static k2p_test_mock mk;
static k2p_lt_set g_set;

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, "test_loader_leases");
}

static int teardown(void **state)
{
    (void)state;
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

/* Leases held (live) by the process with this pid. */
static int64_t leases_of(pid_t pid)
{
    if (!k2p_lt_i64(&g, "SELECT (to_regclass('kinesis2pg.leases') IS NOT NULL)::int"))
        return 0;
    return k2p_lt_i64(&g,
                      "SELECT count(*) FROM kinesis2pg.leases WHERE owner LIKE '%%:%ld:%%'"
                      " AND expires_at > clock_timestamp()",
                      (long)pid);
}

static void test_three_processes_kill9_one(void **state)
{
    const char *stream = "lease_kill";
    static const char *const extra[] = {"--leases",     "--lease-ttl-ms", "3000",
                                        "--chunk-size", "100",            "--writers",
                                        "2",            "--batch-rows",   "2000",
                                        "--flush-ms",   "100",            "--no-primary-key",
                                        NULL};
    const char **args = k2p_ft_args(stream, extra);
    char logs[PROCS][320];
    pid_t pids[PROCS], victim = 0;
    int status[PROCS] = {0}, victim_i = -1;
    int64_t t0, t_kill, most = -1, rows;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, SHARDS, RECORDS, RECORD_SIZE, NULL, &g_set);
    t0 = k2p_ft_ms();
    for (int i = 0; i < PROCS; i++) {
        snprintf(logs[i], sizeof logs[i], "%s/%s-%d.log", g.tmpdir, stream, i);
        pids[i] = k2p_lt_spawn_loader(&g, args, logs[i]);
    }
    /* Wait until every process holds leases (the balance settled) and rows come in. */
    for (;;) {
        int all = 1;
        if (k2p_ft_ms() - t0 > 30000)
            fail_msg("the three processes did not each take leases within 30 s");
        for (int i = 0; i < PROCS; i++) {
            int st;
            if (k2p_lt_wait_pid(pids[i], 0, &st)) {
                k2p_ft_print_tail(logs[i], 6000);
                fail_msg("process %d exited (status 0x%x) before the kill", i, st);
            }
            all &= leases_of(pids[i]) > 0;
        }
        if (all && k2p_lt_count(&g, "kinesis", stream) >= RECORDS / 10)
            break;
        usleep(50000);
    }
    for (int i = 0; i < PROCS; i++) {
        int64_t n = leases_of(pids[i]);
        fprintf(stderr, "  process %d (pid %ld) holds %lld lease(s)\n", i, (long)pids[i],
                (long long)n);
        if (n > most) {
            most = n;
            victim_i = i;
        }
    }
    victim = pids[victim_i];
    rows = k2p_lt_count(&g, "kinesis", stream);
    if (rows >= RECORDS)
        fail_msg("the load was over before the kill: make it longer");
    kill(victim, SIGKILL);
    while (waitpid(victim, &status[victim_i], 0) < 0)
        ;
    t_kill = k2p_ft_ms();
    fprintf(stderr, "  killed process %d after %.1f s with %lld of %d rows in\n", victim_i,
            (double)(t_kill - t0) / 1000, (long long)rows, RECORDS);

    /* Its leases are taken over within the TTL plus two ticks (750 ms each), and margin. */
    for (;;) {
        int64_t left = k2p_lt_i64(&g,
                                  "SELECT count(*) FROM kinesis2pg.leases WHERE owner LIKE"
                                  " '%%:%ld:%%'",
                                  (long)victim);
        if (left == 0)
            break;
        if (k2p_ft_ms() - t_kill > TTL_MS + 1500 + 3000)
            fail_msg("%lld lease(s) of the killed process were not taken over %d ms after"
                     " the kill",
                     (long long)left, TTL_MS + 4500);
        usleep(50000);
    }
    fprintf(stderr, "  its leases were taken over %.1f s after the kill\n",
            (double)(k2p_ft_ms() - t_kill) / 1000);
    for (int i = 0; i < PROCS; i++) {
        if (i == victim_i)
            continue;
        status[i] = k2p_ft_reap(pids[i], 120000, logs[i], "surviving --leases process");
        k2p_ft_expect_status(status[i], 0, logs[i], "surviving --leases process");
    }
    fprintf(stderr, "  survivors done %.1f s after start\n", (double)(k2p_ft_ms() - t0) / 1000);
    {
        int took = 0;
        for (int i = 0; i < PROCS; i++) {
            char *log = i == victim_i ? NULL : k2p_ft_slurp(logs[i]);
            if (log) {
                took += k2p_ft_count_lines(log, "took over the expired lease");
                free(log);
            }
        }
        if (took < 1)
            fail_msg("no survivor logged a takeover");
    }
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    /* No lease is left held, no worker row of the survivors is left. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.leases WHERE owner IS NOT"
                                    " NULL"),
                     0);
    /* A rerun with --leases finds nothing new. */
    {
        k2p_lt_run r;
        k2p_lt_run_loader(&g, args, 120, &r);
        k2p_lt_expect_exit(&r, 0, "rerun");
        k2p_lt_run_free(&r);
        assert_int_equal(k2p_lt_count(&g, "kinesis", stream), RECORDS);
    }
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

/* A process paused (SIGSTOP) past its TTL loses its leases while alive; resumed, it must commit
 * nothing more for them: it stops with exit 1, and the table stays exact. */
static void test_paused_process_is_fenced(void **state)
{
    const char *stream = "lease_pause";
    static const char *const extra[] = {"--leases",     "--lease-ttl-ms", "2000",
                                        "--chunk-size", "100",            "--flush-ms",
                                        "100",          "--no-primary-key", NULL};
    const char **args = k2p_ft_args(stream, extra);
    char logs[2][320];
    pid_t pids[2];
    int64_t t0;
    int st;
    char *log;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, 8, 48000, RECORD_SIZE, NULL, &g_set);
    t0 = k2p_ft_ms();
    for (int i = 0; i < 2; i++) {
        snprintf(logs[i], sizeof logs[i], "%s/%s-%d.log", g.tmpdir, stream, i);
        pids[i] = k2p_lt_spawn_loader(&g, args, logs[i]);
    }
    while (leases_of(pids[0]) == 0 || leases_of(pids[1]) == 0 ||
           k2p_lt_count(&g, "kinesis", stream) < 2000) {
        if (k2p_ft_ms() - t0 > 30000)
            fail_msg("the two processes did not both take leases within 30 s");
        usleep(50000);
    }
    kill(pids[0], SIGSTOP);
    t0 = k2p_ft_ms(); /* the takeover is timed from the pause (sanitizer builds start slowly) */
    /* Paused past the TTL: the other one takes its leases over. */
    while (leases_of(pids[0]) > 0 || k2p_lt_i64(&g,
                                                "SELECT count(*) FROM kinesis2pg.leases WHERE"
                                                " owner LIKE '%%:%ld:%%'",
                                                (long)pids[0]) > 0) {
        if (k2p_ft_ms() - t0 > 60000) {
            int st1;
            char *act = k2p_lt_str(&g, "SELECT string_agg(state || ': ' || left(query, 60), "
                                       "E'\\n') FROM pg_stat_activity WHERE application_name = "
                                       "'kinesis2pg'");
            fprintf(stderr, "sessions of the loaders:\n%s\nsurviving process: %s\n",
                    act ? act : "(none)",
                    k2p_lt_wait_pid(pids[1], 0, &st1) ? "exited" : "running");
            free(act);
            k2p_ft_print_tail(logs[1], 4000);
            kill(pids[0], SIGCONT);
            fail_msg("the paused process's leases were not taken over");
        }
        usleep(50000);
    }
    kill(pids[0], SIGCONT);
    st = k2p_ft_reap(pids[0], 60000, logs[0], "paused --leases process");
    k2p_ft_expect_status(st, 1, logs[0], "paused --leases process");
    log = k2p_ft_slurp(logs[0]);
    if (!strstr(log, "took over")) {
        k2p_ft_print_tail(logs[0], 4000);
        fail_msg("the paused process did not say its lease was taken over");
    }
    free(log);
    st = k2p_ft_reap(pids[1], 120000, logs[1], "surviving --leases process");
    k2p_ft_expect_status(st, 0, logs[1], "surviving --leases process");
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    free(args);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

static void test_static_split(void **state)
{
    const char *stream = "static_split";
    char logs[PROCS][320], idx[PROCS][8];
    pid_t pids[PROCS];
    int64_t t0;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, 12, 24000, RECORD_SIZE, NULL, &g_set);
    t0 = k2p_ft_ms();
    for (int i = 0; i < PROCS; i++) {
        const char *extra[] = {"--worker-count", "3",   "--worker-index", idx[i], "--chunk-size",
                               "200",            "--no-primary-key", NULL};
        const char **args;
        snprintf(idx[i], sizeof idx[i], "%d", i);
        args = k2p_ft_args(stream, extra);
        snprintf(logs[i], sizeof logs[i], "%s/%s-%d.log", g.tmpdir, stream, i);
        pids[i] = k2p_lt_spawn_loader(&g, args, logs[i]);
        free(args);
    }
    /* A second worker 1 while the first runs is refused. */
    k2p_ft_wait_rows(&g, "kinesis", stream, 100, 0, NULL, 20000);
    {
        static const char *const extra[] = {"--worker-count", "3", "--worker-index", "1", NULL};
        const char **args = k2p_ft_args(stream, extra);
        k2p_lt_run r;
        int st;
        if (!k2p_lt_wait_pid(pids[1], 0, &st)) {
            k2p_lt_run_loader(&g, args, 60, &r);
            k2p_lt_expect_exit(&r, 1, "a second worker 1");
            if (!strstr(r.err, "worker 1"))
                fail_msg("the second worker 1 was refused, but not because of its index: %s",
                         r.err);
            k2p_lt_run_free(&r);
        } else {
            fprintf(stderr, "  worker 1 was done before the duplicate could start\n");
        }
        free(args);
    }
    for (int i = 0; i < PROCS; i++) {
        int st = k2p_ft_reap(pids[i], 120000, logs[i], "static worker");
        k2p_ft_expect_status(st, 0, logs[i], "static worker");
    }
    fprintf(stderr, "  static split done in %.1f s\n", (double)(k2p_ft_ms() - t0) / 1000);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    /* Each shard was loaded by the worker the hash names: its epoch is 1 (taken once) and each
     * worker's summary lists exactly its shards. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.leases WHERE stream = '%s'"
                                    " AND epoch = 1",
                                stream),
                     12);
    for (int i = 0; i < PROCS; i++) {
        char *log = k2p_ft_slurp(logs[i]);
        for (int sh = 0; sh < 12; sh++) {
            char id[32];
            int want;
            snprintf(id, sizeof id, "shardId-%012d", sh);
            want = k2p_static_worker_of(id, 3) == i;
            if ((strstr(log, id) != NULL) != want) {
                k2p_ft_print_tail(logs[i], 4000);
                fail_msg("worker %d %s shard %s", i, want ? "did not load" : "loaded", id);
            }
        }
        free(log);
    }
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

/* The workers of a static split must agree on the count, or they split the shards differently
 * and some shard has two workers (fenced, but each fencing fails a run). While worker 0 of 2
 * runs (--follow keeps it up), a worker of 3 is refused with one line naming both counts; worker
 * 1 of 2 is not, and the two load the exact set. */
static void test_worker_counts_must_agree(void **state)
{
    const char *stream = "static_counts";
    static const char *const follow[] = {"--worker-count", "2", "--worker-index", "0",
                                         "--follow",       NULL};
    static const char *const three[] = {"--worker-count", "3", "--worker-index", "2", NULL};
    static const char *const two[] = {"--worker-count", "2", "--worker-index", "1", NULL};
    const char **a_follow = k2p_ft_args(stream, follow);
    const char **a_three = k2p_ft_args(stream, three);
    const char **a_two = k2p_ft_args(stream, two);
    char log_path[320];
    const char *line;
    k2p_lt_run r;
    pid_t pid;
    int st;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, 4, 2000, RECORD_SIZE, NULL, &g_set);
    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    pid = k2p_lt_spawn_loader(&g, a_follow, log_path);
    if (!k2p_ft_wait_log(log_path, "mode=static", 20000)) {
        k2p_ft_print_tail(log_path, 4000);
        fail_msg("worker 0 of 2 did not start sharing within 20 s");
    }
    k2p_lt_run_loader(&g, a_three, 60, &r);
    k2p_lt_expect_exit(&r, 1, "a worker of 3 while a worker of 2 runs");
    line = strstr(r.err, "kinesis2pg workers with --worker-count 2 ");
    if (!line || !strstr(line, "this one has --worker-count 3") || !strstr(line, "same count"))
        fail_msg("a worker of 3 was refused, but the line does not name the counts: %s", r.err);
    fprintf(stderr, "  refused: %.*s\n", (int)strcspn(line, "\n"), line);
    k2p_lt_run_free(&r);
    k2p_lt_run_loader(&g, a_two, 60, &r);
    k2p_lt_expect_exit(&r, 0, "worker 1 of 2 next to worker 0 of 2");
    k2p_lt_run_free(&r);
    kill(pid, SIGTERM);
    st = k2p_ft_reap(pid, 30000, log_path, "worker 0 of 2");
    k2p_ft_expect_status(st, 0, log_path, "worker 0 of 2");
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    free(a_follow);
    free(a_three);
    free(a_two);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

/* Polls GET /readyz on 127.0.0.1:port until it answers 200 or timeout_ms pass; returns the last
 * status, its body in *body. */
static long wait_ready(int port, k2p_buf *body, int timeout_ms)
{
    char url[64];
    int64_t deadline = k2p_ft_ms() + timeout_ms;
    long st;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", port);
    while ((st = k2p_test_http_get(url, body)) != 200 && k2p_ft_ms() < deadline)
        usleep(100000);
    return st;
}

/* /readyz of --leases followers on one shard: the one holding the lease is ready once it
 * reads; the other holds nothing (a standby, there to take over: more processes than shards)
 * and is ready too, while its heartbeat keeps it in the group. Readiness gates a Deployment's
 * rollout, so a standby must not read as broken. */
static void test_standby_is_ready(void **state)
{
    const char *stream = "lease_ready";
    char addr[2][32], logs[2][320];
    pid_t pids[2];
    int port[2];
    int64_t deadline;
    k2p_buf body;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);
    k2p_buf_init(&body, 0);

    k2p_ft_mock_preload(&g, &mk, stream, 1, 1000, RECORD_SIZE, NULL, &g_set);
    for (int i = 0; i < 2; i++) {
        const char *extra[] = {"--leases",       "--lease-ttl-ms", "3000", "--follow",
                               "--metrics-addr", addr[i],          NULL};
        const char **args = k2p_ft_args(stream, extra);
        port[i] = k2p_test_free_port();
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", port[i]);
        snprintf(logs[i], sizeof logs[i], "%s/%s-%d.log", g.tmpdir, stream, i);
        pids[i] = k2p_lt_spawn_loader(&g, args, logs[i]);
        free(args);
        /* The first takes the only lease before the second starts. */
        deadline = k2p_ft_ms() + 20000;
        while (i == 0 && leases_of(pids[0]) < 1 && k2p_ft_ms() < deadline)
            usleep(50000);
    }
    for (int i = 0; i < 2; i++) {
        long st = wait_ready(port[i], &body, 20000);
        if (st != 200) {
            k2p_ft_print_tail(logs[i], 4000);
            fail_msg("process %d (%s) is not ready after 20 s: %ld %.*s", i,
                     i ? "the standby" : "the lease holder", st, (int)body.len,
                     body.data ? body.data : "");
        }
    }
    assert_int_equal(leases_of(pids[0]), 1);
    assert_int_equal(leases_of(pids[1]), 0);
    k2p_ft_wait_rows(&g, "kinesis", stream, (int64_t)g_set.n, pids[0], NULL, 30000);
    for (int i = 0; i < 2; i++) {
        int st;
        kill(pids[i], SIGTERM);
        st = k2p_ft_reap(pids[i], 30000, logs[i], "--leases follower");
        k2p_ft_expect_status(st, 0, logs[i], "--leases follower");
    }
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_buf_deinit(&body);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

static void test_modes_never_mix(void **state)
{
    const char *stream = "lease_mix";
    static const char *const slow[] = {"--leases", "--chunk-size", "50", NULL};
    const char **args = k2p_ft_args(stream, slow);
    const char **single = k2p_ft_args(stream, NULL);
    char log_path[320];
    pid_t pid;
    int st;
    k2p_lt_run r;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_set_free(&g_set);

    k2p_ft_mock_preload(&g, &mk, stream, 4, 20000, RECORD_SIZE, NULL, &g_set);
    snprintf(log_path, sizeof log_path, "%s/%s.log", g.tmpdir, stream);
    pid = k2p_lt_spawn_loader(&g, args, log_path);
    k2p_ft_wait_rows(&g, "kinesis", stream, 100, pid, NULL, 20000);
    k2p_lt_run_loader(&g, single, 60, &r);
    k2p_lt_expect_exit(&r, 1, "a single loader while --leases runs");
    if (!strstr(r.err, "--leases"))
        fail_msg("refused, but the message does not say why: %s", r.err);
    k2p_lt_run_free(&r);
    st = k2p_ft_reap(pid, 120000, log_path, "--leases loader");
    k2p_ft_expect_status(st, 0, log_path, "--leases loader");
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    /* Afterwards a single loader runs (and finds nothing new). */
    assert_int_equal(k2p_lt_load_ok(&g, "kinesis", stream, single), 0);
    free(args);
    free(single);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(&g_set);
}

/* Expects one statement on c to succeed and returns its first value (or "" when no row). */
static char *one_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    char *v;
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    v = strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return v;
}

/* A writer or the checkpoint thread frozen between its FOR SHARE ownership check and COMMIT
 * holds the lease rows. Its session (k2p_pg_connect_bounded, as the sharing modes connect them)
 * is ended by PostgreSQL once idle in that transaction for the bound, so a taker's epoch bump
 * waits about that long and no longer; a session without the bound is left alone. */
static void test_frozen_session_is_ended(void **state)
{
    k2p_err err = {0};
    PGconn *frozen, *taker, *plain;
    int64_t t0, waited;
    char *v;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_sql(&g, "CREATE TABLE frozen_probe (id int PRIMARY KEY, epoch int)");
    k2p_lt_sql(&g, "INSERT INTO frozen_probe VALUES (1, 1)");
    frozen = k2p_pg_connect_bounded(g.pg.conninfo, 1000, &err);
    plain = k2p_pg_connect_bounded(g.pg.conninfo, 0, &err);
    taker = k2p_test_pg_connect(&g.pg);
    if (!frozen || !plain || !taker)
        fail_msg("cannot connect: %s", err.msg);
    v = one_value(frozen, "SHOW idle_in_transaction_session_timeout");
    assert_string_equal(v, "1s");
    free(v);
    v = one_value(plain, "SHOW idle_in_transaction_session_timeout");
    assert_string_equal(v, "0");
    free(v);

    free(one_value(frozen, "BEGIN"));
    free(one_value(frozen, "SELECT 1 FROM frozen_probe WHERE id = 1 AND epoch = 1 FOR SHARE"));
    /* ... and frozen there: the taker's bump must go through once the session is ended. */
    free(one_value(taker, "SET lock_timeout = '30s'"));
    t0 = k2p_ft_ms();
    free(one_value(taker, "UPDATE frozen_probe SET epoch = 2 WHERE id = 1"));
    waited = k2p_ft_ms() - t0;
    fprintf(stderr, "  the taker waited %lld ms for a session frozen in its transaction\n",
            (long long)waited);
    if (waited < 500)
        fail_msg("the taker did not wait for the FOR SHARE lock (%lld ms)", (long long)waited);
    /* Resumed, the frozen session's COMMIT cannot go through. */
    {
        PGresult *r = PQexec(frozen, "COMMIT");
        if (PQresultStatus(r) == PGRES_COMMAND_OK && PQstatus(frozen) == CONNECTION_OK)
            fail_msg("the frozen session committed after its rows were taken");
        PQclear(r);
    }
    /* Without the bound the same freeze holds the taker off (here: until its lock_timeout). */
    free(one_value(plain, "BEGIN"));
    free(one_value(plain, "SELECT 1 FROM frozen_probe WHERE id = 1 FOR SHARE"));
    free(one_value(taker, "SET lock_timeout = '1500ms'"));
    {
        PGresult *r = PQexec(taker, "UPDATE frozen_probe SET epoch = 3 WHERE id = 1");
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            fail_msg("the unbounded session did not hold the row");
        PQclear(r);
    }
    free(one_value(plain, "ROLLBACK"));
    PQfinish(frozen);
    PQfinish(plain);
    PQfinish(taker);
    k2p_lt_sql(&g, "DROP TABLE frozen_probe");
}

static void expect_usage_error(const char *const *argv, const char *needle)
{
    k2p_lt_run r;
    k2p_lt_exec(&g, argv, 30, &r);
    k2p_lt_expect_exit(&r, 2, needle);
    if (!strstr(r.err, needle) || k2p_ft_count_lines(r.err, "kinesis2pg:") != 1)
        fail_msg("expected one line with '%s', got:\n%s", needle, r.err);
    k2p_lt_run_free(&r);
}

static void test_bad_worker_settings_exit_2(void **state)
{
    (void)state;
    K2P_LT_REQUIRE(&g);
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1",
                                   "--worker-count", "3", "--worker-index", "3"),
                       "must be below --worker-count 3");
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1",
                                   "--worker-count", "3", "--worker-index", "-1"),
                       "--worker-index");
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1",
                                   "--worker-count", "-2"),
                       "--worker-count");
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1",
                                   "--worker-index", "1"),
                       "--worker-index needs --worker-count");
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1", "--leases",
                                   "--worker-count", "2"),
                       "use one");
    expect_usage_error(K2P_LT_ARGS("load", "--stream", "s", "--region", "us-east-1", "--leases",
                                   "--lease-ttl-ms", "10"),
                       "--lease-ttl-ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_worker_settings_exit_2),
        cmocka_unit_test(test_three_processes_kill9_one),
        cmocka_unit_test(test_paused_process_is_fenced),
        cmocka_unit_test(test_static_split),
        cmocka_unit_test(test_worker_counts_must_agree),
        cmocka_unit_test(test_standby_is_ready),
        cmocka_unit_test(test_modes_never_mix),
        cmocka_unit_test(test_frozen_session_is_ended),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

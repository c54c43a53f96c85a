/* loader_testlib.h - shared helpers of the kinesis2pg loader's integration tests.
 *
 * A test file starts its own peers (k2p_lt_start: kinesalite and a throw-away PostgreSQL), puts
 * records with `kinesis2pg-produce --print` (k2p_lt_produce: what was put comes back as a
 * k2p_lt_set), runs the real `kinesis2pg` binary with fork/exec (k2p_lt_run_loader, or
 * k2p_lt_spawn_loader for kill -9 tests), and compares what PostgreSQL holds with what was put,
 * exactly (k2p_lt_assert_table, k2p_lt_assert_dead_letters, k2p_lt_assert_checkpoints).
 *
 * The comparisons load the produced set into a temp table with COPY and compare with
 * EXCEPT ALL in both directions, so a missing row, an extra row, a duplicate and a changed
 * payload all show. JSON payloads are compared as jsonb (PostgreSQL normalises both sides);
 * a produced record counts as "valid JSON" when PostgreSQL's own jsonb input accepts it, and
 * as a dead letter otherwise.
 *
 * Every assert_* helper ends the current cmocka test on a mismatch, after printing to stderr
 * what differed (counts and the first rows of each difference) and the last loader output.
 *
 * Environment: K2P_TEST_VERBOSE=1 prints every loader command line and its stderr;
 * K2P_TEST_FILTER=PATTERN runs only the matching tests of a file (cmocka pattern, e.g. 'test_j*').
 *
 * Threading: the test's main thread only.
 */
#ifndef K2P_LOADER_TESTLIB_H
#define K2P_LOADER_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kinesalite_harness.h"
#include "pg_harness.h"

/* One record put by kinesis2pg-produce, as it printed it. */
typedef struct k2p_lt_rec {
    char shard[64];
    char seq[132];
    char *pkey;    /* heap */
    uint8_t *data; /* heap, decoded payload */
    size_t len;
} k2p_lt_rec;

/* Records put so far (append-only); zero-initialise. */
typedef struct k2p_lt_set {
    k2p_lt_rec *v;
    size_t n, cap;
} k2p_lt_set;

void k2p_lt_set_free(k2p_lt_set *s);

/* A test's peers. Zero-initialise, then k2p_lt_start(). */
typedef struct k2p_lt {
    k2p_test_kinesalite kl;
    k2p_test_pg pg;
    k2p_cred_chain *creds;
    k2p_kinesis *client; /* for create/split/merge/list */
    char **env;          /* environment of the programs we run (see k2p_lt_start) */
    char tmpdir[256];    /* scratch files (loader output, line files); removed by stop */
    int up;              /* 1 once both peers run */
    int skip;            /* 1 when PostgreSQL is not installed: tests skip */
    char endpoint[64];   /* set by k2p_lt_use_endpoint: used instead of kl.endpoint */
} k2p_lt;

/* Starts kinesalite and PostgreSQL. Returns 0; 0 with t->skip = 1 when PostgreSQL's server is
 * not installed; -1 on any other failure (printed). The environment of the programs we run is
 * ours without AWS_*, PG*, DATABASE_URL and SOURCES__* variables, plus test credentials, so
 * nothing from the caller's shell redirects them. */
int k2p_lt_start(k2p_lt *t);

/* Like k2p_lt_start, but starts PostgreSQL only: for tests that bring their own Kinesis service
 * (tests/mock_kinesis) and point the helpers at it with k2p_lt_use_endpoint. Same returns;
 * t->up is 1 once PostgreSQL runs, and t->client is NULL until k2p_lt_use_endpoint. */
int k2p_lt_start_pg_only(k2p_lt *t);

/* Makes the loader runs, kinesis2pg-produce and t->client use `endpoint` (e.g. a mock_kinesis
 * started by the test) instead of kinesalite's, from now on. */
void k2p_lt_use_endpoint(k2p_lt *t, const char *endpoint);

/* Stops both peers and removes the scratch dir. Safe to call twice. */
void k2p_lt_stop(k2p_lt *t);

/* Skips the current cmocka test when the peers are not up (PostgreSQL missing). */
#define K2P_LT_REQUIRE(t)                                                                          \
    do {                                                                                           \
        if (!(t)->up)                                                                              \
            skip();                                                                                \
    } while (0)

/* ---- Kinesis ------------------------------------------------------------------------------- */

/* Creates a stream with `shards` shards and waits until it is ACTIVE; fails the test if not. */
void k2p_lt_create_stream(k2p_lt *t, const char *stream, int shards);

/* Runs `kinesis2pg-produce --endpoint E --region us-east-1 --stream S --print ARGS` (args: a
 * shell-safe string) and appends every record it put to `set` (may be NULL). Fails the test
 * unless produce exits 0. Returns the number of records put by this call. */
size_t k2p_lt_produce(k2p_lt *t, const char *stream, k2p_lt_set *set, const char *args);

/* Waits until the wall clock reaches `wall_us` (a condition with an absolute deadline, for
 * tests that need arrival timestamps on either side of an instant). */
void k2p_lt_sleep_until_wall(int64_t wall_us);

/* ---- running the loader -------------------------------------------------------------------- */

typedef struct k2p_lt_run {
    int exit_code; /* exit status, or -1 when killed by a signal */
    int signal;    /* the signal, or 0 */
    char *out;     /* its stdout (heap, NUL-terminated) */
    char *err;     /* its stderr (heap, NUL-terminated) */
    double secs;   /* wall time */
} k2p_lt_run;

void k2p_lt_run_free(k2p_lt_run *r);

/* Runs `kinesis2pg ARGV...` (argv: NULL-terminated, without the program name) and waits up to
 * timeout_s for it; on timeout it is killed (SIGKILL) and the test fails. *out receives its
 * exit code and output (free with k2p_lt_run_free). */
void k2p_lt_exec(k2p_lt *t, const char *const *argv, int timeout_s, k2p_lt_run *out);

/* Runs `kinesis2pg load --endpoint E --region us-east-1 --pg CONNINFO ARGS...`. */
void k2p_lt_run_loader(k2p_lt *t, const char *const *args, int timeout_s, k2p_lt_run *out);

/* Fails the test (printing the loader's stderr) unless the run exited with `code`. `what` names
 * the step in the message. */
void k2p_lt_expect_exit(const k2p_lt_run *r, int code, const char *what);

/* Runs the loader (timeout 180 s), expects exit 0, frees the run. Returns how many rows
 * "schema"."table" gained. */
int64_t k2p_lt_load_ok(k2p_lt *t, const char *schema, const char *table, const char *const *args);

#define K2P_LT_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define K2P_LT_LOAD_OK(t, schema, table, ...)                                                      \
    k2p_lt_load_ok((t), (schema), (table), K2P_LT_ARGS(__VA_ARGS__))

/* Fails the test unless a run added `want` rows: prints both numbers in decimal, the caller's
 * file:line and the last loader output. Use through K2P_LT_EXPECT_ROWS. */
void k2p_lt_expect_rows(int64_t got, int64_t want, const char *file, int line);
#define K2P_LT_EXPECT_ROWS(got, want) k2p_lt_expect_rows((got), (want), __FILE__, __LINE__)

/* Runs only the tests whose names match $K2P_TEST_FILTER (a cmocka pattern), when set. */
void k2p_lt_filter_from_env(void);

/* Starts `kinesis2pg load --endpoint E --region us-east-1 --pg CONNINFO ARGS...` in the
 * background, stdout and stderr appended to log_path. Returns its pid (fails the test on fork
 * failure). */
pid_t k2p_lt_spawn_loader(k2p_lt *t, const char *const *args, const char *log_path);

/* Waits up to timeout_ms for pid to exit. Returns 1 and sets *status (waitpid form) when it
 * exited, 0 when it still runs. */
int k2p_lt_wait_pid(pid_t pid, int timeout_ms, int *status);

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

/* `"schema"."table"` with both identifiers quoted (heap string). */
char *k2p_lt_qualify(const char *schema, const char *table);

/* 'text' as an SQL string literal (heap string). */
char *k2p_lt_literal(const char *text);

/* Runs SQL (printf-style); fails the test on an error. */
void k2p_lt_sql(k2p_lt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs a query whose row 0 column 0 is an integer; fails the test on error, no row or NULL. */
int64_t k2p_lt_i64(k2p_lt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Row 0 column 0 as a heap string, or NULL when no row / SQL NULL; fails the test on error. */
char *k2p_lt_str(k2p_lt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rows of "schema"."table", or 0 when the table does not exist. */
int64_t k2p_lt_count(k2p_lt *t, const char *schema, const char *table);

/* ---- exact comparisons ---------------------------------------------------------------------- */

enum {
    K2P_LT_JSON = 0, /* data jsonb; records PostgreSQL refuses as jsonb are dead letters */
    K2P_LT_RAW = 1,  /* data bytea; every record lands */
};

/* Loads `set` into the temp table pg_temp.k2p_expected(shard text, seq numeric, pkey text,
 * data bytea, j jsonb) on the helpers' connection; j is the payload as jsonb, or NULL when
 * PostgreSQL refuses it (invalid UTF-8, invalid JSON, \u0000). Tests may query it, not change
 * it: when the session's table already holds exactly this set (its comment names the set's
 * size and a hash of every record) it is kept as it is. Sets work_mem = 256MB on the session. */
void k2p_lt_load_expected(k2p_lt *t, const k2p_lt_set *set);

/* Asserts that "schema"."table" holds exactly the records of `set` (JSON mode: those that are
 * valid jsonb), each once: same count, every (shard, seq) once, shard id, sequence number,
 * partition key and data equal, _kinesis__stream_name = stream, _kinesis_msg_id non-null and
 * unique, data column of the right type. */
void k2p_lt_assert_table(k2p_lt *t, const char *schema, const char *table, const char *stream,
                         const k2p_lt_set *set, int mode);

/* Asserts that kinesis2pg.dead_letters holds, for `stream`, exactly the records of `set` that
 * are not valid jsonb (shard, seq and data equal, each once), each with a non-empty reason. */
void k2p_lt_assert_dead_letters(k2p_lt *t, const char *stream, const k2p_lt_set *set);

/* Asserts that kinesis2pg.checkpoints has, for every shard of `set`, the highest sequence
 * number put to it (after a run that caught up). */
void k2p_lt_assert_checkpoints(k2p_lt *t, const char *stream, const k2p_lt_set *set);

/* Prints the loader's last output to stderr (used by failure reports). */
void k2p_lt_print_last_run(void);

#endif

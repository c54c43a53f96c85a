/* test_loader_basic.c - the kinesis2pg binary end to end against kinesalite and PostgreSQL:
 * JSON records land as jsonb and mixed JSON/text/binary records land as bytea with --raw,
 * exactly (every record once, payload and envelope equal); a rerun loads nothing and one more
 * record gives exactly one more row; hostile schema/table names are quoted and harmless;
 * usage errors exit 2 and runtime failures exit 1 with a message that names the culprit and
 * never a secret.
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

/* Fails unless column `col` of `q` has type `type` (format_type spelling). */
static void assert_column_type(const char *q, const char *col, const char *type)
{
    char *lit = k2p_lt_literal(q);
    char *got = k2p_lt_str(&g,
                           "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE"
                           " attrelid = %s::regclass AND attname = '%s' AND NOT attisdropped",
                           lit, col);
    if (!got || strcmp(got, type) != 0)
        fail_msg("%s.%s is %s, expected %s", q, col, got ? got : "(missing)", type);
    free(got);
    free(lit);
}

/* 1 when _kinesis_msg_id is the primary key of q, 0 when q has no primary key. */
static int64_t msg_id_is_pk(const char *q)
{
    char *lit = k2p_lt_literal(q);
    int64_t pk = k2p_lt_i64(&g,
                            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass"
                            " AND indisprimary",
                            lit);
    int64_t on_id = k2p_lt_i64(&g,
                               "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON"
                               " a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                               " WHERE i.indrelid = %s::regclass AND i.indisprimary"
                               " AND a.attname = '_kinesis_msg_id'",
                               lit);
    free(lit);
    assert_int_equal(pk, on_id);
    return pk;
}

static void assert_envelope_types(const char *q, const char *data_type)
{
    assert_column_type(q, "_kinesis_msg_id", "text");
    assert_column_type(q, "_kinesis__shard_id", "text");
    assert_column_type(q, "_kinesis__seq_no", "numeric");
    assert_column_type(q, "_kinesis__ts", "timestamp with time zone");
    assert_column_type(q, "_kinesis__partition", "text");
    assert_column_type(q, "_kinesis__stream_name", "text");
    assert_column_type(q, "data", data_type);
}

/* Every _kinesis__ts lies within [t0 - 1 s, t1 + 1 s] (arrival times are set by the service). */
static void assert_ts_window(const char *q, int64_t t0_us, int64_t t1_us)
{
    int64_t out = k2p_lt_i64(&g,
                             "SELECT count(*) FROM %s WHERE _kinesis__ts < to_timestamp(%lld /"
                             " 1e6) - interval '1 s' OR _kinesis__ts > to_timestamp(%lld / 1e6) +"
                             " interval '1 s'",
                             q, (long long)t0_us, (long long)t1_us);
    if (out) {
        char *ex = k2p_lt_str(&g,
                              "SELECT min(_kinesis__ts)::text || ' .. ' ||"
                              " max(_kinesis__ts)::text FROM %s",
                              q);
        fail_msg("%lld rows of %s have _kinesis__ts outside the produce window"
                 " (%lld..%lld us); the table holds %s",
                 (long long)out, q, (long long)t0_us, (long long)t1_us, ex ? ex : "?");
    }
}

static void test_json_records_land_as_jsonb(void **state)
{
    k2p_lt_set set = {0};
    int64_t t0, t1, added;
    char *q = k2p_lt_qualify("kinesis", "basic_json");
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "basic_json", 4);
    t0 = k2p_wall_us();
    assert_int_equal(k2p_lt_produce(&g, "basic_json", &set, "--count 2000 --kind json --size 300"),
                     2000);
    t1 = k2p_wall_us();
    added = K2P_LT_LOAD_OK(&g, "kinesis", "basic_json", "--stream", "basic_json", "--from",
                           "trim_horizon");
    assert_int_equal(added, 2000);
    k2p_lt_assert_table(&g, "kinesis", "basic_json", "basic_json", &set, K2P_LT_JSON);
    assert_envelope_types(q, "jsonb");
    assert_int_equal(msg_id_is_pk(q), 1);
    assert_ts_window(q, t0, t1);
    k2p_lt_assert_checkpoints(&g, "basic_json", &set);
    /* Every shard got records (the partition keys are random). */
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(DISTINCT _kinesis__shard_id) FROM %s", q), 4);
    /* No dead letters for valid JSON. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters"
                                    " WHERE stream = 'basic_json'"),
                     0);
    free(q);
    k2p_lt_set_free(&set);
}

static void test_raw_mixed_records_land_as_bytea(void **state)
{
    k2p_lt_set set = {0};
    int64_t t0, t1;
    char *q = k2p_lt_qualify("kinesis", "basic_raw");
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "basic_raw", 3);
    t0 = k2p_wall_us();
    /* json, text and binary in turn; binary payloads hold every byte value (NUL included). */
    assert_int_equal(k2p_lt_produce(&g, "basic_raw", &set, "--count 1500 --kind mixed --size 300"),
                     1500);
    /* A few bad-JSON payloads too: with --raw they are ordinary rows. */
    assert_int_equal(
        k2p_lt_produce(&g, "basic_raw", &set, "--count 30 --kind json --invalid 6 --seed 3"), 30);
    t1 = k2p_wall_us();
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "basic_raw", "--stream", "basic_raw", "--raw",
                                      "--from", "trim_horizon"),
                       1530);
    k2p_lt_assert_table(&g, "kinesis", "basic_raw", "basic_raw", &set, K2P_LT_RAW);
    assert_envelope_types(q, "bytea");
    assert_int_equal(msg_id_is_pk(q), 1);
    assert_ts_window(q, t0, t1);
    k2p_lt_assert_checkpoints(&g, "basic_raw", &set);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters"
                                    " WHERE stream = 'basic_raw'"),
                     0);
    free(q);
    k2p_lt_set_free(&set);
}

static void test_rerun_loads_nothing_then_one_more(void **state)
{
    k2p_lt_set set = {0};
    int64_t runs, unfinished;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "rerun", 2);
    k2p_lt_produce(&g, "rerun", &set, "--count 300 --kind json");
    assert_int_equal(
        K2P_LT_LOAD_OK(&g, "kinesis", "rerun", "--stream", "rerun", "--from", "trim_horizon"), 300);
    /* A second run (any --from: checkpoints win) loads nothing. */
    assert_int_equal(
        K2P_LT_LOAD_OK(&g, "kinesis", "rerun", "--stream", "rerun", "--from", "trim_horizon"), 0);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rerun", "--stream", "rerun"), 0);
    k2p_lt_assert_table(&g, "kinesis", "rerun", "rerun", &set, K2P_LT_JSON);

    /* One more record: exactly one more row, and it is that record. */
    assert_int_equal(k2p_lt_produce(&g, "rerun", &set, "--count 1 --kind json --seed 99"), 1);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "rerun", "--stream", "rerun"), 1);
    k2p_lt_assert_table(&g, "kinesis", "rerun", "rerun", &set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, "rerun", &set);

    /* kinesis2pg.runs: one finished row per run, rows as loaded. */
    runs = k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.runs WHERE stream = 'rerun'");
    assert_int_equal(runs, 4);
    unfinished = k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.runs WHERE stream = 'rerun'"
                                " AND (finished_at IS NULL OR status IS NULL)");
    assert_int_equal(unfinished, 0);
    assert_int_equal(k2p_lt_i64(&g, "SELECT sum(rows) FROM kinesis2pg.runs WHERE stream = 'rerun'"),
                     301);
    assert_int_equal(k2p_lt_i64(&g, "SELECT rows FROM kinesis2pg.runs WHERE stream = 'rerun'"
                                    " ORDER BY started_at DESC LIMIT 1"),
                     1);
    assert_int_equal(k2p_lt_i64(&g, "SELECT rows FROM kinesis2pg.runs WHERE stream = 'rerun'"
                                    " ORDER BY started_at DESC OFFSET 1 LIMIT 1"),
                     0);
    k2p_lt_set_free(&set);
}

static void test_hostile_names_are_quoted(void **state)
{
    static const char *const table = "a\"b; drop table x";
    static const char *const schema = "we\"ird";
    k2p_lt_set set = {0}, set2 = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* Tables an injection would hit. */
    k2p_lt_sql(&g, "CREATE TABLE public.x (i int); INSERT INTO public.x VALUES (1);"
                   "CREATE SCHEMA \"we\"\"ird\"; CREATE TABLE \"we\"\"ird\".x (i int);"
                   "INSERT INTO \"we\"\"ird\".x VALUES (2)");
    k2p_lt_create_stream(&g, "quoting", 2);
    k2p_lt_produce(&g, "quoting", &set, "--count 50 --kind json");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, schema, table, "--stream", "quoting", "--table", table,
                                      "--schema", schema, "--from", "trim_horizon"),
                       50);
    k2p_lt_assert_table(&g, schema, table, "quoting", &set, K2P_LT_JSON);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM public.x WHERE i = 1"), 1);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM \"we\"\"ird\".x WHERE i = 2"), 1);

    /* A stream name with every character Kinesis allows beyond [a-zA-Z0-9] is the default
     * table name, as is. */
    k2p_lt_create_stream(&g, "q.stream-1_X", 1);
    k2p_lt_produce(&g, "q.stream-1_X", &set2, "--count 20 --kind json");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "q.stream-1_X", "--stream", "q.stream-1_X",
                                      "--from", "trim_horizon"),
                       20);
    k2p_lt_assert_table(&g, "kinesis", "q.stream-1_X", "q.stream-1_X", &set2, K2P_LT_JSON);
    k2p_lt_set_free(&set);
    k2p_lt_set_free(&set2);
}

/* Runs the loader with the given args and expects `code`; returns its stderr (caller frees). */
static char *expect_exit(int code, const char *what, const char *const *argv, int full)
{
    k2p_lt_run r;
    char *err;
    if (full)
        k2p_lt_exec(&g, argv, 120, &r);
    else
        k2p_lt_run_loader(&g, argv, 120, &r);
    k2p_lt_expect_exit(&r, code, what);
    err = r.err;
    r.err = NULL;
    k2p_lt_run_free(&r);
    return err;
}

static void test_exit_codes_and_messages(void **state)
{
    char conninfo[512], *err;
    k2p_lt_run r;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* --help: exit 0 with usage on stdout. */
    k2p_lt_exec(&g, K2P_LT_ARGS("--help"), 30, &r);
    k2p_lt_expect_exit(&r, 0, "--help");
    assert_true(strstr(r.out, "load") != NULL);
    k2p_lt_run_free(&r);

    /* Usage errors: exit 2. */
    free(expect_exit(2, "load without --stream", K2P_LT_ARGS("--from", "latest"), 0));
    free(expect_exit(2, "unknown flag", K2P_LT_ARGS("--stream", "s", "--no-such-flag"), 0));
    err = expect_exit(2, "bad --from", K2P_LT_ARGS("--stream", "s", "--from", "yesterday"), 0);
    assert_non_null(strstr(err, "from"));
    free(err);
    free(expect_exit(2, "--chunk-size above 10000",
                     K2P_LT_ARGS("--stream", "s", "--chunk-size", "10001"), 0));
    free(expect_exit(2, "--chunk-size 0", K2P_LT_ARGS("--stream", "s", "--chunk-size", "0"), 0));
    free(expect_exit(2, "no command", K2P_LT_ARGS("--stream", "s"), 1));

    /* A stream that does not exist: exit 1, the message names it, the password never shows. */
    snprintf(conninfo, sizeof conninfo, "%s password=hunter2-never-print", g.pg.conninfo);
    err = expect_exit(1, "missing stream",
                      K2P_LT_ARGS("load", "--endpoint", g.kl.endpoint, "--region", "us-east-1",
                                  "--pg", conninfo, "--stream", "no-such-stream"),
                      1);
    if (!strstr(err, "no-such-stream"))
        fail_msg("the error does not name the stream:\n%s", err);
    if (strstr(err, "hunter2"))
        fail_msg("the loader printed the PostgreSQL password:\n%s", err);
    free(err);

    /* PostgreSQL unreachable: exit 1, no password in the message. */
    k2p_lt_create_stream(&g, "nopg", 1);
    err = expect_exit(1, "unreachable PostgreSQL",
                      K2P_LT_ARGS("load", "--endpoint", g.kl.endpoint, "--region", "us-east-1",
                                  "--pg",
                                  "host=127.0.0.1 port=1 dbname=x user=u password=hunter2-secret "
                                  "connect_timeout=5",
                                  "--stream", "nopg"),
                      1);
    if (strstr(err, "hunter2"))
        fail_msg("the loader printed the PostgreSQL password:\n%s", err);
    free(err);
}

/* kinesis2pg.schema_version records the state tables' layout; a build that meets a newer one
 * (a rollback after an upgrade changed them) stops with exit 2 and one line naming both
 * versions, in load, status and reset, instead of misreading or damaging the state. */
static void test_newer_state_layout_is_refused(void **state)
{
    char *err, *who;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "layout", 1);
    assert_int_equal(K2P_LT_LOAD_OK(&g, "kinesis", "layout", "--stream", "layout"), 0);
    assert_int_equal(k2p_lt_i64(&g, "SELECT max(version) FROM kinesis2pg.schema_version"), 1);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.schema_version"), 1);
    who = k2p_test_pg_query_str(&g.pg, "SELECT written_by FROM kinesis2pg.schema_version");
    assert_non_null(who);
    assert_true(strncmp(who, "kinesis2pg ", 11) == 0);
    free(who);

    k2p_lt_sql(&g, "UPDATE kinesis2pg.schema_version SET version = 99");
    err = expect_exit(2, "load against a newer state layout",
                      K2P_LT_ARGS("--stream", "layout"), 0);
    if (!strstr(err, "layout version 99") || !strstr(err, "up to version 1"))
        fail_msg("the refusal does not name both layout versions:\n%s", err);
    fprintf(stderr, "  refused: %s", err);
    free(err);
    err = expect_exit(1, "status against a newer state layout",
                      K2P_LT_ARGS("status", "--stream", "layout", "--pg", g.pg.conninfo), 1);
    if (!strstr(err, "layout version 99"))
        fail_msg("status does not say why it stopped:\n%s", err);
    free(err);
    /* Nothing was changed by the refused runs: back at version 1 the stream loads again. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT max(version) FROM kinesis2pg.schema_version"), 99);
    k2p_lt_sql(&g, "UPDATE kinesis2pg.schema_version SET version = 1");
    assert_int_equal(K2P_LT_LOAD_OK(&g, "kinesis", "layout", "--stream", "layout"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_records_land_as_jsonb),
        cmocka_unit_test(test_raw_mixed_records_land_as_bytea),
        cmocka_unit_test(test_rerun_loads_nothing_then_one_more),
        cmocka_unit_test(test_hostile_names_are_quoted),
        cmocka_unit_test(test_exit_codes_and_messages),
        cmocka_unit_test(test_newer_state_layout_is_refused),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

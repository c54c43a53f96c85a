/* test_loader_dead_letters.c - payloads that jsonb cannot hold go to kinesis2pg.dead_letters,
 * nothing is dropped silently.
 *
 * kinesis2pg-produce --invalid N makes N payloads bad (invalid JSON, a \u0000 escape, invalid
 * UTF-8, in turn): those, and only those, must be dead letters (right shard, sequence number
 * and bytes, a non-empty reason), the rest rows of the table, rows + dead letters == records
 * put, the run's summary row counting them, and a rerun adding neither. A hand-written file
 * checks the cases one by one; text records are dead letters too without --raw, and with --raw
 * every record is a row.
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

static int64_t dead_count(const char *stream)
{
    char *lit = k2p_lt_literal(stream);
    int64_t n =
        k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = %s", lit);
    free(lit);
    return n;
}

static void test_invalid_records_become_dead_letters(void **state)
{
    k2p_lt_set set = {0};
    int64_t rows, dead;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_lt_create_stream(&g, "dl", 3);
    assert_int_equal(k2p_lt_produce(&g, "dl", &set, "--count 600 --kind json --invalid 12"), 600);
    rows = K2P_LT_LOAD_OK(&g, "kinesis", "dl", "--stream", "dl", "--from", "trim_horizon");
    assert_int_equal(rows, 588);
    k2p_lt_assert_table(&g, "kinesis", "dl", "dl", &set, K2P_LT_JSON);
    k2p_lt_assert_dead_letters(&g, "dl", &set);
    dead = dead_count("dl");
    assert_int_equal(dead, 12);
    assert_int_equal(rows + dead, 600);
    /* Dead letters count toward the shard's progress. */
    k2p_lt_assert_checkpoints(&g, "dl", &set);
    /* The run's row counts them. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT dead_letters FROM kinesis2pg.runs WHERE stream = 'dl'"
                                    " ORDER BY started_at DESC LIMIT 1"),
                     12);

    /* A rerun adds neither rows nor dead letters; more records after it, each once. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "dl", "--stream", "dl"), 0);
    assert_int_equal(dead_count("dl"), 12);
    k2p_lt_produce(&g, "dl", &set, "--count 90 --kind json --invalid 3 --seed 5");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "dl", "--stream", "dl"), 87);
    k2p_lt_assert_table(&g, "kinesis", "dl", "dl", &set, K2P_LT_JSON);
    k2p_lt_assert_dead_letters(&g, "dl", &set);
    k2p_lt_set_free(&set);
}

static void test_hand_written_cases(void **state)
{
    static const char lines[] = "{\"ok\":1}\n"
                                "not json\n"
                                "{\"a\":\"\\u0000\"}\n"
                                "\xc3\x28\n"
                                "[1, 2, {\"nested\": \"\xc3\xa9t\xc3\xa9\"}]\n"
                                "\"just a string\"\n"
                                "{\"a\":1,}\n";
    char path[320], args[400];
    FILE *f;
    k2p_lt_set set = {0};
    char *s;
    (void)state;
    K2P_LT_REQUIRE(&g);

    snprintf(path, sizeof path, "%s/cases.txt", g.tmpdir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(lines, 1, sizeof lines - 1, f), sizeof lines - 1);
    assert_int_equal(fclose(f), 0);

    k2p_lt_create_stream(&g, "dl_cases", 1);
    snprintf(args, sizeof args, "--kind lines --file '%s' --partition-key k", path);
    assert_int_equal(k2p_lt_produce(&g, "dl_cases", &set, args), 7);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", "dl_cases", "--stream", "dl_cases", "--from", "trim_horizon"),
        3);
    k2p_lt_assert_table(&g, "kinesis", "dl_cases", "dl_cases", &set, K2P_LT_JSON);
    k2p_lt_assert_dead_letters(&g, "dl_cases", &set);

    /* By hand: the rows, and each dead letter by sequence number. */
    s = k2p_lt_str(&g, "SELECT string_agg(data::text, ' | ' ORDER BY _kinesis__seq_no)"
                       " FROM kinesis.dl_cases");
    assert_non_null(s);
    assert_string_equal(s, "{\"ok\": 1} | [1, 2, {\"nested\": \"\xc3\xa9t\xc3\xa9\"}] |"
                           " \"just a string\"");
    free(s);
    {
        static const int bad[] = {1, 2, 3, 6}; /* indexes of the bad lines in put order */
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            const k2p_lt_rec *r = &set.v[bad[i]];
            char *reason = k2p_lt_str(&g,
                                      "SELECT reason FROM kinesis2pg.dead_letters WHERE stream ="
                                      " 'dl_cases' AND shard_id = '%s' AND seq_no = %s",
                                      r->shard, r->seq);
            if (!reason || !*reason)
                fail_msg("no dead letter with a reason for line %d (seq %s)", bad[i] + 1, r->seq);
            fprintf(stderr, "  dead letter for line %d: %s\n", bad[i] + 1, reason);
            free(reason);
        }
    }
    k2p_lt_set_free(&set);
}

static void test_text_is_dead_letter_unless_raw(void **state)
{
    k2p_lt_set set = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* Without --raw: text records are not JSON. */
    k2p_lt_create_stream(&g, "dl_text", 2);
    k2p_lt_produce(&g, "dl_text", &set, "--count 40 --kind text");
    k2p_lt_produce(&g, "dl_text", &set, "--count 40 --kind json --seed 2");
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", "dl_text", "--stream", "dl_text", "--from", "trim_horizon"),
        40);
    k2p_lt_assert_table(&g, "kinesis", "dl_text", "dl_text", &set, K2P_LT_JSON);
    k2p_lt_assert_dead_letters(&g, "dl_text", &set);
    assert_int_equal(dead_count("dl_text"), 40);
    k2p_lt_set_free(&set);

    /* With --raw: bad JSON and text are ordinary rows, no dead letters. */
    k2p_lt_create_stream(&g, "dl_raw", 2);
    k2p_lt_produce(&g, "dl_raw", &set, "--count 60 --kind json --invalid 9");
    k2p_lt_produce(&g, "dl_raw", &set, "--count 20 --kind text --seed 3");
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "dl_raw", "--stream", "dl_raw", "--raw",
                                      "--from", "trim_horizon"),
                       80);
    k2p_lt_assert_table(&g, "kinesis", "dl_raw", "dl_raw", &set, K2P_LT_RAW);
    assert_int_equal(dead_count("dl_raw"), 0);
    k2p_lt_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_records_become_dead_letters),
        cmocka_unit_test(test_hand_written_cases),
        cmocka_unit_test(test_text_is_dead_letter_unless_raw),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

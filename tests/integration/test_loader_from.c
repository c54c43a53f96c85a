/* test_loader_from.c - `--from` decides where a shard without a checkpoint starts.
 *
 * One timeline, one stream (and table) per case: batch A is put into every stream; after a
 * whole second S that lies more than a second after A, the `latest` streams get their first
 * run (which must load nothing); then batch B is put. Afterwards
 *   trim_horizon                  loads A and B,
 *   latest / the default          (second run) loads only B,
 *   S as RFC 3339 ("Z", "+05:30") loads only B,
 *   a duration ending between A and B loads only B, and "1h" loads A and B.
 * Each table must equal its expected records exactly.
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
#include <time.h>

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

enum { C_TRIM, C_LATEST, C_DEFAULT, C_RFC_Z, C_RFC_OFFSET, C_DURATION, C_HOUR, N_CASES };

static const char *const names[N_CASES] = {"from_trim",  "from_latest",  "from_default",
                                           "from_rfc_z", "from_rfc_off", "from_duration",
                                           "from_hour"};

/* Formats a Unix time as RFC 3339 with the given offset from UTC in minutes. */
static void rfc3339(char *out, size_t cap, int64_t unix_s, int offset_min)
{
    time_t local = (time_t)(unix_s + offset_min * 60);
    struct tm tm;
    char base[40];
    assert_non_null(gmtime_r(&local, &tm));
    assert_true(strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) > 0);
    if (offset_min == 0)
        snprintf(out, cap, "%sZ", base);
    else
        snprintf(out, cap, "%s%c%02d:%02d", base, offset_min < 0 ? '-' : '+', abs(offset_min) / 60,
                 abs(offset_min) % 60);
}

static void test_from_each_start_position(void **state)
{
    k2p_lt_set a[N_CASES], b[N_CASES];
    int64_t a_end, s_us, b_start, mid, d_s;
    char at_z[64], at_off[64], dur[32];
    (void)state;
    K2P_LT_REQUIRE(&g);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);

    for (int c = 0; c < N_CASES; c++)
        k2p_lt_create_stream(&g, names[c], 2);

    /* Batch A. */
    for (int c = 0; c < N_CASES; c++)
        assert_int_equal(k2p_lt_produce(&g, names[c], &a[c], "--count 30 --kind json --seed 11"),
                         30);
    a_end = k2p_wall_us();

    /* S: the second whole second after A ends (1-2 s later). Wait until S + 1 s, so the first
     * `latest` runs start more than 2 s after A (a later run may re-read from its previous
     * start minus 1 s: that must still be after A). */
    s_us = (a_end / 1000000 + 2) * 1000000;
    k2p_lt_sleep_until_wall(s_us + 1000000);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", names[C_LATEST], "--stream", names[C_LATEST],
                                      "--from", "latest"),
                       0);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", names[C_DEFAULT], "--stream", names[C_DEFAULT]), 0);

    /* Batch B. */
    b_start = k2p_wall_us();
    for (int c = 0; c < N_CASES; c++) {
        /* Where everything is expected, B joins A's set. */
        k2p_lt_set *into = (c == C_TRIM || c == C_HOUR) ? &a[c] : &b[c];
        assert_int_equal(k2p_lt_produce(&g, names[c], into, "--count 20 --kind json --seed 22"),
                         20);
    }
    assert_true(b_start - a_end > 2000000);

    /* trim_horizon: A and B. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", names[C_TRIM], "--stream", names[C_TRIM],
                                      "--from", "trim_horizon"),
                       50);
    k2p_lt_assert_table(&g, "kinesis", names[C_TRIM], names[C_TRIM], &a[C_TRIM], K2P_LT_JSON);

    /* latest, explicit and default: the second run loads only what came after the first. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", names[C_LATEST], "--stream", names[C_LATEST],
                                      "--from", "latest"),
                       20);
    k2p_lt_assert_table(&g, "kinesis", names[C_LATEST], names[C_LATEST], &b[C_LATEST], K2P_LT_JSON);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", names[C_DEFAULT], "--stream", names[C_DEFAULT]), 20);
    k2p_lt_assert_table(&g, "kinesis", names[C_DEFAULT], names[C_DEFAULT], &b[C_DEFAULT],
                        K2P_LT_JSON);

    /* An RFC 3339 time between A and B, in UTC and with an offset. */
    rfc3339(at_z, sizeof at_z, s_us / 1000000, 0);
    rfc3339(at_off, sizeof at_off, s_us / 1000000, 330);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", names[C_RFC_Z], "--stream", names[C_RFC_Z], "--from", at_z),
        20);
    k2p_lt_assert_table(&g, "kinesis", names[C_RFC_Z], names[C_RFC_Z], &b[C_RFC_Z], K2P_LT_JSON);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", names[C_RFC_OFFSET], "--stream",
                                      names[C_RFC_OFFSET], "--from", at_off),
                       20);
    k2p_lt_assert_table(&g, "kinesis", names[C_RFC_OFFSET], names[C_RFC_OFFSET], &b[C_RFC_OFFSET],
                        K2P_LT_JSON);

    /* A duration that reaches back to the middle of the A..B gap (rounded to seconds: the gap
     * is over 2 s, so the start stays more than 0.5 s from either batch). */
    mid = (a_end + b_start) / 2;
    d_s = (k2p_wall_us() - mid + 500000) / 1000000;
    assert_true(d_s >= 1);
    snprintf(dur, sizeof dur, "%llds", (long long)d_s);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", names[C_DURATION], "--stream",
                                      names[C_DURATION], "--from", dur),
                       20);
    k2p_lt_assert_table(&g, "kinesis", names[C_DURATION], names[C_DURATION], &b[C_DURATION],
                        K2P_LT_JSON);

    /* "1h" reaches back before A: everything. */
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", names[C_HOUR], "--stream", names[C_HOUR], "--from", "1h"),
        50);
    k2p_lt_assert_table(&g, "kinesis", names[C_HOUR], names[C_HOUR], &a[C_HOUR], K2P_LT_JSON);

    for (int c = 0; c < N_CASES; c++) {
        k2p_lt_set_free(&a[c]);
        k2p_lt_set_free(&b[c]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_each_start_position),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

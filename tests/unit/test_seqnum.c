/* test_seqnum.c - unit tests of Kinesis sequence number validation and comparison
 * (src/seqnum.c): numbers compare by value, never as strings of different lengths.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kinesis2pg/seqnum.h"

/* Real-looking 56-digit Kinesis sequence numbers, in increasing order. */
#define SEQ_A "49590338271490256608559692538361571095921575989136588898"
#define SEQ_B "49590338271490256608559692540925702759324208523137515618"
#define SEQ_C "49590338271490256608559692540925702759324208523137515619"
#define SEQ_D "49654789123456789012345678901234567890123456789012345678"

static bool valid(const char *s)
{
    return k2p_seq_valid(s, strlen(s));
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static void test_valid(void **state)
{
    char max[K2P_SEQ_MAX_DIGITS + 2];
    (void)state;
    assert_true(valid("0"));
    assert_true(valid("1"));
    assert_true(valid("9"));
    assert_true(valid("10"));
    assert_true(valid(SEQ_A));
    assert_true(valid(SEQ_D));

    memset(max, '9', sizeof max);
    max[0] = '1';
    assert_true(k2p_seq_valid(max, K2P_SEQ_MAX_DIGITS));
    assert_false(k2p_seq_valid(max, K2P_SEQ_MAX_DIGITS + 1));
    assert_true(k2p_seq_valid(max, 1));
}

static void test_invalid(void **state)
{
    static const char nul_inside[] = {'1', '2', '\0', '3'};
    (void)state;
    assert_false(valid(""));
    assert_false(k2p_seq_valid(NULL, 0));
    assert_false(k2p_seq_valid(NULL, 5));
    /* Leading zeros: invalid except "0" itself. */
    assert_false(valid("00"));
    assert_false(valid("01"));
    assert_false(valid("0" SEQ_A));
    /* Non-digits anywhere. */
    assert_false(valid("-1"));
    assert_false(valid("+1"));
    assert_false(valid(" 1"));
    assert_false(valid("1 "));
    assert_false(valid("1.0"));
    assert_false(valid("1e5"));
    assert_false(valid("12a4"));
    assert_false(valid("4959033827149025660855969253836157109592157598913658889/"));
    assert_false(valid("4959033827149025660855969253836157109592157598913658889:"));
    assert_false(valid("\xd9\xa1")); /* ARABIC-INDIC DIGIT ONE */
    /* A NUL inside the given length is not a digit. */
    assert_false(k2p_seq_valid(nul_inside, sizeof nul_inside));
    /* Only the given length counts. */
    assert_true(k2p_seq_valid("123abc", 3));
    assert_false(k2p_seq_valid("0123", 2));
}

static void test_too_long(void **state)
{
    char s[K2P_SEQ_MAX_DIGITS + 10];
    (void)state;
    memset(s, '7', sizeof s);
    for (size_t n = 1; n <= sizeof s; n++)
        assert_int_equal(k2p_seq_valid(s, n), n <= K2P_SEQ_MAX_DIGITS);
}

static void test_compare_different_lengths(void **state)
{
    (void)state;
    assert_true(k2p_seq_cmps("9", "10") < 0);
    assert_true(k2p_seq_cmps("10", "9") > 0);
    assert_true(k2p_seq_cmps("0", "1") < 0);
    assert_true(k2p_seq_cmps("0", SEQ_A) < 0);
    assert_true(k2p_seq_cmps("99999999999999999999999999999999999999999999999999999", SEQ_A) < 0);
    assert_true(k2p_seq_cmps(SEQ_A, "999999999999999999999999999999999999999999999999999999") > 0);
    assert_true(k2p_seq_cmps(SEQ_D, "100000000000000000000000000000000000000000000000000000000") <
                0);
}

static void test_compare_same_length(void **state)
{
    (void)state;
    assert_true(k2p_seq_cmps(SEQ_A, SEQ_B) < 0);
    assert_true(k2p_seq_cmps(SEQ_B, SEQ_C) < 0);
    assert_true(k2p_seq_cmps(SEQ_C, SEQ_D) < 0);
    assert_true(k2p_seq_cmps(SEQ_D, SEQ_A) > 0);
    assert_true(k2p_seq_cmps(SEQ_C, SEQ_B) > 0);
    assert_true(k2p_seq_cmps("19", "91") < 0);
    assert_true(k2p_seq_cmps("5", "4") > 0);
}

static void test_compare_equal(void **state)
{
    char copy[] = SEQ_B;
    (void)state;
    assert_int_equal(k2p_seq_cmps("0", "0"), 0);
    assert_int_equal(k2p_seq_cmps("7", "7"), 0);
    assert_int_equal(k2p_seq_cmps(SEQ_B, copy), 0);
    assert_int_equal(k2p_seq_cmp(SEQ_A, strlen(SEQ_A), SEQ_A, strlen(SEQ_A)), 0);
    /* Length-delimited: a prefix of a longer buffer compares on its own digits. */
    assert_int_equal(k2p_seq_cmp("12345", 3, "123", 3), 0);
    assert_true(k2p_seq_cmp("12345", 4, "123", 3) > 0);
}

static void test_compare_is_a_total_order(void **state)
{
    /* Sorted by value; every pair must compare consistently with the indexes. */
    /* clang-format off */
    static const char *const sorted[] = {
        "0", "1", "2", "9", "10", "11", "99", "100", "101", "999", "1000",
        SEQ_A, SEQ_B, SEQ_C, SEQ_D, "100000000000000000000000000000000000000000000000000000000",
    };
    /* clang-format on */
    const size_t n = sizeof sorted / sizeof sorted[0];
    (void)state;
    for (size_t i = 0; i < n; i++) {
        assert_true(valid(sorted[i]));
        for (size_t j = 0; j < n; j++) {
            int want = i < j ? -1 : i > j;
            assert_int_equal(sign(k2p_seq_cmps(sorted[i], sorted[j])), want);
            /* The result is normalised to -1, 0, 1. */
            assert_int_equal(k2p_seq_cmps(sorted[i], sorted[j]), want);
        }
    }
}

static void test_max_length(void **state)
{
    char a[K2P_SEQ_MAX_DIGITS], b[K2P_SEQ_MAX_DIGITS];
    (void)state;
    memset(a, '9', sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(k2p_seq_cmp(a, sizeof a, b, sizeof b), 0);
    b[sizeof b - 1] = '8';
    assert_true(k2p_seq_cmp(a, sizeof a, b, sizeof b) > 0);
    assert_true(k2p_seq_cmp(b, sizeof b, a, sizeof a) < 0);
    assert_true(k2p_seq_cmp(a, sizeof a - 1, b, sizeof b) < 0);
}

int main(void)
{
    /* clang-format off */
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_compare_different_lengths),
        cmocka_unit_test(test_compare_same_length),
        cmocka_unit_test(test_compare_equal),
        cmocka_unit_test(test_compare_is_a_total_order),
        cmocka_unit_test(test_max_length),
    };
    /* clang-format on */
    return cmocka_run_group_tests_name("seqnum", tests, NULL, NULL);
}

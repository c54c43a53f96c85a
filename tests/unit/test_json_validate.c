/* test_json_validate.c - the jsonb pre-check: valid and invalid JSON, UTF-8 edge cases, escape
 * rules jsonb adds (\u0000, surrogates), numeric range, nesting limit, error offsets and
 * messages. Agreement with a real PostgreSQL is in tests/integration/test_jsonb_agree.c.
 *
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis2pg/json_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jcase {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int want;
};

#define OK_(s)                                                                                     \
    {                                                                                              \
        s, 0, K2P_JSON_OK                                                                          \
    }
#define BAD(s, r)                                                                                  \
    {                                                                                              \
        s, 0, r                                                                                    \
    }
#define BIN(s, r)                                                                                  \
    {                                                                                              \
        s, sizeof(s) - 1, r                                                                        \
    }

/* clang-format off */
static const struct jcase cases[] = {
    /* valid: every value type at top level, whitespace */
    OK_("0"), OK_("-0"), OK_("1"), OK_("-1"), OK_("123456789"), OK_("1.5"), OK_("-0.0"),
    OK_("1e5"), OK_("1E5"), OK_("1e+5"), OK_("1e-5"), OK_("1.25e-3"), OK_("0e0"),
    OK_("true"), OK_("false"), OK_("null"), OK_("\"\""), OK_("\"abc\""), OK_("[]"), OK_("{}"),
    OK_(" \t\r\n{} \t\r\n"), OK_("[1,2,3]"), OK_("[ 1 , 2 ]"), OK_("{\"a\":1}"),
    OK_("{ \"a\" : 1 , \"b\" : [ true , false , null ] }"), OK_("{\"a\":1,\"a\":2}"),
    OK_("[[[[[]]]]]"), OK_("[{},{},[]]"), OK_("{\"\":\"\"}"), OK_("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
    OK_("\"\\u0041\""), OK_("\"\\u00e9\""), OK_("\"\\u00E9\""), OK_("\"\\uFFFF\""),
    OK_("\"\\uFFFE\""), OK_("\"\\ud83d\\ude00\""), OK_("\"\\uD83D\\uDE00\""),
    OK_("\"\\udbff\\udfff\""), OK_("\"\\u0001\""), OK_("\"caf\xc3\xa9\""),
    OK_("\"\xe2\x82\xac\""), OK_("\"\xf0\x9f\x98\x80\""), OK_("\"\xef\xbf\xbf\""),
    OK_("\"\xf4\x8f\xbf\xbf\""), OK_("\"\xc2\x80\""), OK_("\"\xe0\xa0\x80\""),
    OK_("\"\xf0\x90\x80\x80\""), OK_("\"\x7f\""), OK_("{\"k\xc3\xa9y\":\"v\"}"),
    OK_("1e131071"), OK_("9.999e131071"), OK_("1e-16383"), OK_("0e-16383"),
    OK_("0e1073741822"), OK_("123e-16380"), OK_("0.000001"), OK_("1E+0002"),
    OK_("[1.7976931348623157e308, 4.9e-324]"),

    /* empty */
    BAD("", K2P_JSON_EMPTY), BAD("   ", K2P_JSON_EMPTY), BAD("\n\t\r ", K2P_JSON_EMPTY),

    /* syntax */
    BAD("{", K2P_JSON_SYNTAX), BAD("}", K2P_JSON_SYNTAX), BAD("[", K2P_JSON_SYNTAX),
    BAD("]", K2P_JSON_SYNTAX), BAD("[1,]", K2P_JSON_SYNTAX), BAD("[,1]", K2P_JSON_SYNTAX),
    BAD("[1 2]", K2P_JSON_SYNTAX), BAD("{\"a\"}", K2P_JSON_SYNTAX), BAD("{\"a\":}", K2P_JSON_SYNTAX),
    BAD("{\"a\":1,}", K2P_JSON_SYNTAX), BAD("{a:1}", K2P_JSON_SYNTAX), BAD("{'a':1}", K2P_JSON_SYNTAX),
    BAD("{1:1}", K2P_JSON_SYNTAX), BAD("{\"a\" 1}", K2P_JSON_SYNTAX), BAD("[1}", K2P_JSON_SYNTAX),
    BAD("{\"a\":1]", K2P_JSON_SYNTAX), BAD("[]]", K2P_JSON_SYNTAX), BAD("{}}", K2P_JSON_SYNTAX),
    BAD("1 2", K2P_JSON_SYNTAX), BAD("{} {}", K2P_JSON_SYNTAX), BAD("\"a\" \"b\"", K2P_JSON_SYNTAX),
    BAD("tru", K2P_JSON_SYNTAX), BAD("truex", K2P_JSON_SYNTAX), BAD("True", K2P_JSON_SYNTAX),
    BAD("nul", K2P_JSON_SYNTAX), BAD("NULL", K2P_JSON_SYNTAX), BAD("fals", K2P_JSON_SYNTAX),
    BAD("undefined", K2P_JSON_SYNTAX), BAD("NaN", K2P_JSON_SYNTAX), BAD("Infinity", K2P_JSON_SYNTAX),
    BAD("-Infinity", K2P_JSON_SYNTAX), BAD("01", K2P_JSON_SYNTAX), BAD("-01", K2P_JSON_SYNTAX),
    BAD("00", K2P_JSON_SYNTAX), BAD("1.", K2P_JSON_SYNTAX), BAD(".5", K2P_JSON_SYNTAX),
    BAD("-", K2P_JSON_SYNTAX), BAD("-a", K2P_JSON_SYNTAX), BAD("+1", K2P_JSON_SYNTAX),
    BAD("1e", K2P_JSON_SYNTAX), BAD("1e+", K2P_JSON_SYNTAX), BAD("1e-", K2P_JSON_SYNTAX),
    BAD("1.e5", K2P_JSON_SYNTAX), BAD("0x10", K2P_JSON_SYNTAX), BAD("1.5.3", K2P_JSON_SYNTAX),
    BAD("1a", K2P_JSON_SYNTAX), BAD("- 1", K2P_JSON_SYNTAX), BAD("\"abc", K2P_JSON_SYNTAX),
    BAD("\"abc\\\"", K2P_JSON_SYNTAX), BAD("\"\\", K2P_JSON_SYNTAX), BAD("\"\\x\"", K2P_JSON_SYNTAX),
    BAD("\"\\a\"", K2P_JSON_SYNTAX), BAD("\"\\'\"", K2P_JSON_SYNTAX), BAD("\"\\U0041\"", K2P_JSON_SYNTAX),
    BAD("\"\\u12\"", K2P_JSON_SYNTAX), BAD("\"\\u12G4\"", K2P_JSON_SYNTAX), BAD("\"\\u", K2P_JSON_SYNTAX),
    BAD("\"\t\"", K2P_JSON_SYNTAX), BAD("\"\n\"", K2P_JSON_SYNTAX), BAD("\"\x1f\"", K2P_JSON_SYNTAX),
    BAD("'a'", K2P_JSON_SYNTAX), BAD("[1,2", K2P_JSON_SYNTAX), BAD("{\"a\":1", K2P_JSON_SYNTAX),
    BAD("/* c */ 1", K2P_JSON_SYNTAX), BAD("1 // c", K2P_JSON_SYNTAX), BAD("\xef\xbb\xbf{}", K2P_JSON_SYNTAX),
    BAD("\v1", K2P_JSON_SYNTAX), BAD("\f1", K2P_JSON_SYNTAX), BAD("[1,,2]", K2P_JSON_SYNTAX),
    BAD("{\"a\"::1}", K2P_JSON_SYNTAX), BAD("{,}", K2P_JSON_SYNTAX), BAD("[\"a\":1]", K2P_JSON_SYNTAX),
    BIN("\0", K2P_JSON_SYNTAX), BIN("1\0", K2P_JSON_SYNTAX), BIN("\"a\0b\"", K2P_JSON_SYNTAX),
    BIN("{}\0", K2P_JSON_SYNTAX),

    /* UTF-8 */
    BAD("\"\x80\"", K2P_JSON_UTF8), BAD("\"\xbf\"", K2P_JSON_UTF8), BAD("\"\xc0\x80\"", K2P_JSON_UTF8),
    BAD("\"\xc1\xbf\"", K2P_JSON_UTF8), BAD("\"\xc2\"", K2P_JSON_UTF8), BAD("\"\xc2\x41\"", K2P_JSON_UTF8),
    BAD("\"\xe0\x80\x80\"", K2P_JSON_UTF8), BAD("\"\xe0\x9f\xbf\"", K2P_JSON_UTF8),
    BAD("\"\xed\xa0\x80\"", K2P_JSON_UTF8), BAD("\"\xed\xbf\xbf\"", K2P_JSON_UTF8),
    BAD("\"\xed\xa0\xbd\xed\xb8\x80\"", K2P_JSON_UTF8), /* CESU-8 surrogate pair */
    BAD("\"\xf0\x80\x80\x80\"", K2P_JSON_UTF8), BAD("\"\xf0\x8f\xbf\xbf\"", K2P_JSON_UTF8),
    BAD("\"\xf4\x90\x80\x80\"", K2P_JSON_UTF8), BAD("\"\xf5\x80\x80\x80\"", K2P_JSON_UTF8),
    BAD("\"\xf8\x88\x80\x80\x80\"", K2P_JSON_UTF8), BAD("\"\xfe\"", K2P_JSON_UTF8),
    BAD("\"\xff\"", K2P_JSON_UTF8), BAD("\"\xe2\x82\"", K2P_JSON_UTF8), BAD("\"\xe2\x82", K2P_JSON_UTF8),
    BAD("\"\xf0\x9f\x98\"", K2P_JSON_UTF8), BAD("\xff", K2P_JSON_UTF8), BAD("[1,\xc3]", K2P_JSON_UTF8),
    BAD("{\"\xc3\":1}", K2P_JSON_UTF8),

    /* escapes jsonb refuses */
    BAD("\"\\u0000\"", K2P_JSON_NUL), BAD("[\"ok\",\"a\\u0000b\"]", K2P_JSON_NUL),
    BAD("{\"\\u0000\":1}", K2P_JSON_NUL), BAD("\"\\ud800\"", K2P_JSON_SURROGATE),
    BAD("\"\\udbff\"", K2P_JSON_SURROGATE), BAD("\"\\udc00\"", K2P_JSON_SURROGATE),
    BAD("\"\\udfff\"", K2P_JSON_SURROGATE), BAD("\"\\udc00\\ud800\"", K2P_JSON_SURROGATE),
    BAD("\"\\ud800\\ud800\"", K2P_JSON_SURROGATE), BAD("\"\\ud800\\u0041\"", K2P_JSON_SURROGATE),
    BAD("\"\\ud800a\"", K2P_JSON_SURROGATE), BAD("\"\\ud800\\n\"", K2P_JSON_SURROGATE),
    BAD("\"\\ud800\\\"", K2P_JSON_SURROGATE), BAD("\"\\ud800\\udc0\"", K2P_JSON_SURROGATE),

    /* numeric range */
    BAD("1e131072", K2P_JSON_NUMERIC), BAD("10e131071", K2P_JSON_NUMERIC),
    BAD("1e-16384", K2P_JSON_NUMERIC), BAD("1.5e-16383", K2P_JSON_NUMERIC),
    BAD("0e-16384", K2P_JSON_NUMERIC), BAD("0.0e-16383", K2P_JSON_NUMERIC),
    BAD("0e1073741823", K2P_JSON_NUMERIC), BAD("0e-1073741823", K2P_JSON_NUMERIC),
    BAD("1e99999999999999999999999", K2P_JSON_NUMERIC), BAD("[1,2,1e-99999]", K2P_JSON_NUMERIC),
    BAD("-1e131072", K2P_JSON_NUMERIC),
};
/* clang-format on */

static void test_table(void **state)
{
    int failures = 0;
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct jcase *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        k2p_json_error e = {0};
        int got = k2p_json_validate(c->in, len, &e);
        if (got != c->want) {
            char msg[256];
            k2p_json_error_format(&e, msg, sizeof msg);
            print_error("case %zu <%.*s>: want %d got %d (%s)\n", i, (int)len, c->in, c->want, got,
                        msg);
            failures++;
        }
        if (got != K2P_JSON_OK)
            assert_true(e.offset <= len);
        assert_int_equal(e.reason, got == K2P_JSON_OK ? 0 : got);
    }
    assert_int_equal(failures, 0);
}

static int validate_str(const char *s, k2p_json_error *e)
{
    return k2p_json_validate(s, strlen(s), e);
}

static void test_offsets_and_messages(void **state)
{
    k2p_json_error e;
    char msg[160];
    (void)state;

    assert_int_equal(validate_str("{\"a\" 1}", &e), K2P_JSON_SYNTAX);
    assert_int_equal(e.offset, 5);
    k2p_json_error_format(&e, msg, sizeof msg);
    assert_string_equal(msg, "invalid JSON at byte 5: expected ':' after an object key");

    assert_int_equal(validate_str("[\"ok\",\"a\\u0000b\"]", &e), K2P_JSON_NUL);
    assert_int_equal(e.offset, 8);
    k2p_json_error_format(&e, msg, sizeof msg);
    assert_string_equal(msg, "\\u0000 not allowed in jsonb at byte 8");

    assert_int_equal(validate_str("[1, \"\xc3\x28\"]", &e), K2P_JSON_UTF8);
    assert_int_equal(e.offset, 5);
    k2p_json_error_format(&e, msg, sizeof msg);
    assert_string_equal(msg, "invalid UTF-8 at byte 5");

    assert_int_equal(validate_str("", &e), K2P_JSON_EMPTY);
    k2p_json_error_format(&e, msg, sizeof msg);
    assert_string_equal(msg, "empty payload");

    assert_int_equal(validate_str("[1,2] x", &e), K2P_JSON_SYNTAX);
    assert_int_equal(e.offset, 6);
    assert_int_equal(validate_str("{\"a\":[1,2}", &e), K2P_JSON_SYNTAX);
    assert_int_equal(e.offset, 9);
    assert_string_equal(e.detail, "expected ',' or ']'");
    assert_int_equal(validate_str("[1, 1e131072]", &e), K2P_JSON_NUMERIC);
    assert_int_equal(e.offset, 4);
    assert_int_equal(validate_str("\"\\ud800x\"", &e), K2P_JSON_SURROGATE);
    assert_int_equal(e.offset, 1);

    /* err may be NULL; formatting truncates safely. */
    assert_int_equal(validate_str("nope", NULL), K2P_JSON_SYNTAX);
    assert_int_equal(validate_str("{\"a\" 1}", &e), K2P_JSON_SYNTAX);
    assert_true(k2p_json_error_format(&e, msg, 8) > 8);
    assert_int_equal(strlen(msg), 7);

    for (int r = 0; r <= K2P_JSON_TOO_LARGE; r++)
        assert_true(strlen(k2p_json_reason_str(r)) > 0);
}

static char *nest(const char *open, const char *inner, const char *close, int depth, size_t *len)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc(depth * (lo + lc) + li + 1), *p = s;
    assert_non_null(s);
    for (int i = 0; i < depth; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, inner, li);
    p += li;
    for (int i = 0; i < depth; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    *len = (size_t)(p - s);
    return s;
}

static void test_depth_limit(void **state)
{
    size_t len;
    char *s;
    k2p_json_error e;
    (void)state;
    s = nest("[", "", "]", K2P_JSON_MAX_DEPTH, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_OK);
    free(s);
    s = nest("[", "", "]", K2P_JSON_MAX_DEPTH + 1, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_DEPTH);
    assert_int_equal(e.offset, K2P_JSON_MAX_DEPTH);
    free(s);
    s = nest("{\"a\":", "1", "}", K2P_JSON_MAX_DEPTH, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_OK);
    free(s);
    s = nest("{\"a\":[", "1", "]}", K2P_JSON_MAX_DEPTH / 2 + 1, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_DEPTH);
    free(s);
    /* A million levels: rejected quickly, without touching the C stack. */
    s = nest("[", "", "]", 1000000, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_DEPTH);
    free(s);
    /* Unbalanced but deep: the mismatch is found, not the depth. */
    s = nest("[", "", "}", 100, &len);
    assert_int_equal(k2p_json_validate(s, len, &e), K2P_JSON_SYNTAX);
    assert_int_equal(e.offset, 100);
    free(s);
    /* Mixed containers 64 levels apart (each word of the bit stack). */
    {
        char buf[K2P_JSON_MAX_DEPTH * 12];
        size_t n = 0;
        int d = 300;
        for (int i = 0; i < d; i++) {
            const char *open = i % 3 ? "[" : "{\"k\":";
            memcpy(buf + n, open, strlen(open));
            n += strlen(open);
        }
        for (int i = d - 1; i >= 0; i--)
            buf[n++] = i % 3 ? ']' : '}';
        assert_int_equal(k2p_json_validate(buf, n, &e), K2P_JSON_OK);
        buf[n - 1 - 64] = buf[n - 1 - 64] == ']' ? '}' : ']';
        assert_int_equal(k2p_json_validate(buf, n, &e), K2P_JSON_SYNTAX);
    }
}

/* Special bytes at every position relative to the 8-byte fast path. */
static void test_string_fast_path_boundaries(void **state)
{
    static const struct {
        const char *ins;
        int want;
    } ins[] = {
        {"\\n", K2P_JSON_OK},      {"\\u0041", K2P_JSON_OK},
        {"\xc3\xa9", K2P_JSON_OK}, {"\xf0\x9f\x98\x80", K2P_JSON_OK},
        {"\x01", K2P_JSON_SYNTAX}, {"\\u0000", K2P_JSON_NUL},
        {"\xc3", K2P_JSON_UTF8},   {"\\q", K2P_JSON_SYNTAX},
        {"\x7f", K2P_JSON_OK},     {"\x1f", K2P_JSON_SYNTAX},
        {" ", K2P_JSON_OK},        {"!", K2P_JSON_OK},
        {"#", K2P_JSON_OK},        {"[", K2P_JSON_OK},
        {"]", K2P_JSON_OK},        {"\\\\", K2P_JSON_OK},
        {"\\\"", K2P_JSON_OK},     {"\xed\xa0\x80", K2P_JSON_UTF8},
    };
    (void)state;
    for (size_t k = 0; k < sizeof ins / sizeof ins[0]; k++) {
        for (int pre = 0; pre < 20; pre++) {
            for (int post = 0; post < 20; post += 3) {
                char buf[128];
                size_t n = 0;
                int got;
                buf[n++] = '"';
                memset(buf + n, 'a', (size_t)pre);
                n += (size_t)pre;
                memcpy(buf + n, ins[k].ins, strlen(ins[k].ins));
                n += strlen(ins[k].ins);
                memset(buf + n, 'b', (size_t)post);
                n += (size_t)post;
                buf[n++] = '"';
                got = k2p_json_validate(buf, n, NULL);
                if (got != ins[k].want)
                    fail_msg("insert %zu at %d (+%d): want %d got %d", k, pre, post, ins[k].want,
                             got);
                /* Without the closing quote it is always an error. */
                assert_int_not_equal(k2p_json_validate(buf, n - 1, NULL), K2P_JSON_OK);
            }
        }
    }
}

/* Every truncation of a valid document is invalid (except at value boundaries where the prefix
 * is itself a complete value), and the validator never reads past the length: run under ASan
 * with exact-size heap copies. */
static void test_truncations(void **state)
{
    static const char *docs[] = {
        "{\"id\": 12345, \"name\": \"caf\xc3\xa9 \\u00e9\\ud83d\\ude00\", \"tags\": [\"a\", "
        "\"b\"], \"ok\": true, \"v\": -1.5e-3, \"n\": null, \"f\": false}",
        "[[1,2],[3,[4,[5]]],{\"x\":{}}]",
    };
    (void)state;
    for (size_t d = 0; d < 2; d++) {
        size_t full = strlen(docs[d]);
        for (size_t n = 0; n <= full; n++) {
            char *copy = malloc(n ? n : 1);
            int got;
            assert_non_null(copy);
            memcpy(copy, docs[d], n);
            got = k2p_json_validate(copy, n, NULL);
            if (n == full)
                assert_int_equal(got, K2P_JSON_OK);
            else
                assert_int_not_equal(got, K2P_JSON_OK);
            free(copy);
        }
    }
}

static void test_big_payloads(void **state)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 2);
    k2p_json_error e;
    (void)state;
    assert_non_null(s);
    s[0] = '"';
    memset(s + 1, 'x', n - 2);
    s[n - 1] = '"';
    assert_int_equal(k2p_json_validate(s, n, &e), K2P_JSON_OK);
    /* Too large: refused before reading. */
    assert_int_equal(k2p_json_validate(s, K2P_JSON_MAX_LEN + 1, &e), K2P_JSON_TOO_LARGE);
    free(s);
    /* A long number: 200000 digits overflow numeric's weight. */
    s = malloc(200000);
    assert_non_null(s);
    memset(s, '7', 200000);
    assert_int_equal(k2p_json_validate(s, 200000, &e), K2P_JSON_NUMERIC);
    assert_int_equal(k2p_json_validate(s, 131072, &e), K2P_JSON_OK);
    assert_int_equal(k2p_json_validate(s, 131073, &e), K2P_JSON_NUMERIC);
    free(s);
}

static void test_utf8_valid(void **state)
{
    size_t bad = 0;
    (void)state;
    assert_true(k2p_utf8_valid("", 0, &bad));
    assert_true(k2p_utf8_valid("plain ascii text here", 21, &bad));
    assert_true(k2p_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, &bad));
    assert_false(k2p_utf8_valid("abcdefghij\xc3", 11, &bad));
    assert_int_equal(bad, 10);
    assert_false(k2p_utf8_valid("abc\0def", 7, &bad));
    assert_int_equal(bad, 3);
    assert_false(k2p_utf8_valid("0123456789abcde\0", 16, &bad));
    assert_int_equal(bad, 15);
    assert_false(k2p_utf8_valid("\xed\xa0\x80", 3, &bad));
    assert_int_equal(bad, 0);
    assert_false(k2p_utf8_valid("ab\xc0\xaf", 4, &bad));
    assert_int_equal(bad, 2);
    assert_true(k2p_utf8_valid("\xf4\x8f\xbf\xbf", 4, NULL));
    assert_false(k2p_utf8_valid("\xf4\x90\x80\x80", 4, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),       cmocka_unit_test(test_offsets_and_messages),
        cmocka_unit_test(test_depth_limit), cmocka_unit_test(test_string_fast_path_boundaries),
        cmocka_unit_test(test_truncations), cmocka_unit_test(test_big_payloads),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

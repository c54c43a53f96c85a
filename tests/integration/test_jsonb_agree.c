/* test_jsonb_agree.c - k2p_json_validate() against the real thing: every input is also sent to a
 * throw-away PostgreSQL as a binary jsonb parameter (jsonb_recv: exactly what COPY BINARY does)
 * and as text cast to jsonb (jsonb_in), and the verdicts must agree.
 *
 * Inputs: a hand-written list of tricky cases, generated families (every control byte, every
 * escape letter, lead/continuation bytes, surrogate escapes, numeric limits, nesting), the fuzz
 * seed corpus, and a few thousand deterministic random mutations of them.
 * The one allowed disagreement: nesting deeper than K2P_JSON_MAX_DEPTH, which we refuse on
 * purpose while a default server may still take it (see json_validate.h).
 *
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/json_validate.h"
#include "pg_harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSONBOID 3802
#define TEXTOID 25

static k2p_test_pg g_pg;
static PGconn *g_conn;
static int g_skip;

struct stats {
    int total, accepted, rejected, depth_only;
};

static int setup(void **state)
{
    int rc;
    (void)state;
    rc = k2p_test_pg_start(&g_pg);
    if (rc == K2P_ENOTFOUND) {
        g_skip = 1;
        return 0;
    }
    if (rc != 0)
        return -1;
    g_conn = k2p_test_pg_connect(&g_pg);
    return g_conn ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (g_conn)
        PQfinish(g_conn);
    k2p_test_pg_stop(&g_pg);
    return 0;
}

/* 1 if PostgreSQL takes the bytes as jsonb through `path` (0: binary jsonb, 1: text::jsonb). */
static int pg_accepts(const void *data, size_t len, int path, char *why, size_t whycap)
{
    const char *sql = path == 0 ? "SELECT $1 IS NOT NULL" : "SELECT $1::jsonb IS NOT NULL";
    Oid type = path == 0 ? JSONBOID : TEXTOID;
    int fmt = 1, ok, plen;
    const char *val;
    char *tmp = NULL;
    PGresult *r;

    if (path == 0) { /* jsonb binary format: version byte 1, then the text */
        tmp = malloc(len + 1);
        assert_non_null(tmp);
        tmp[0] = 1;
        if (len)
            memcpy(tmp + 1, data, len);
        val = tmp;
        plen = (int)len + 1;
    } else {
        val = len ? data : "";
        plen = (int)len;
    }
    r = PQexecParams(g_conn, sql, 1, &type, &val, &plen, &fmt, 0);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(why, whycap, "%s", PQresultErrorMessage(r));
    else
        snprintf(why, whycap, "accepted");
    why[strcspn(why, "\n")] = '\0';
    PQclear(r);
    free(tmp);
    assert_int_equal(PQstatus(g_conn), CONNECTION_OK);
    return ok;
}

static void show(const void *data, size_t len, char *out, size_t cap)
{
    const unsigned char *p = data;
    size_t j = 0;
    for (size_t i = 0; i < len && j + 5 < cap && i < 120; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f)
            out[j++] = (char)p[i];
        else
            j += (size_t)snprintf(out + j, cap - j, "\\x%02x", p[i]);
    }
    out[j] = '\0';
}

/* Checks one input; returns 1 on agreement. */
static int agree(const void *data, size_t len, struct stats *st)
{
    k2p_json_error e;
    char why_bin[300], why_txt[300], shown[700], msg[200];
    int ours = k2p_json_validate(data, len, &e) == K2P_JSON_OK;
    int bin = pg_accepts(data, len, 0, why_bin, sizeof why_bin);
    int txt = pg_accepts(data, len, 1, why_txt, sizeof why_txt);

    st->total++;
    if (ours)
        st->accepted++;
    else
        st->rejected++;
    if (bin != txt) {
        show(data, len, shown, sizeof shown);
        print_error("PostgreSQL paths disagree on <%s>: binary: %s / text: %s\n", shown, why_bin,
                    why_txt);
    }
    if (ours == bin)
        return 1;
    if (!ours && e.reason == K2P_JSON_DEPTH) {
        st->depth_only++;
        return 1;
    }
    show(data, len, shown, sizeof shown);
    k2p_json_error_format(&e, msg, sizeof msg);
    print_error("disagree on <%s> (%zu bytes): validator: %s / PostgreSQL: %s\n", shown, len,
                ours ? "accepted" : msg, why_bin);
    return 0;
}

static int agree_str(const char *s, struct stats *st)
{
    return agree(s, strlen(s), st);
}

/* clang-format off */
static const char *const tricky[] = {
    "0", "-0", "1.5", "1e5", "1E+5", "1e-5", "-1.25e-3", "0e0", "true", "false", "null",
    "\"\"", "[]", "{}", " \t\r\n{} \t\r\n", "[1,2,3]", "{\"a\":1,\"a\":2}", "[[[[[]]]]]",
    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\"", "\"\\u00e9\"", "\"\\u00E9\"", "\"\\uFFFF\"",
    "\"\\uFFFE\"", "\"\\ud83d\\ude00\"", "\"\\udbff\\udfff\"", "\"\\u0001\"", "\"caf\xc3\xa9\"",
    "\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "\"\x7f\"",
    "1e131071", "9.999e131071", "1e-16383", "0e-16383", "0e1073741822", "123e-16380",
    "[1.7976931348623157e308, 4.9e-324]", "", "   ", "{", "}", "[1,]", "[,1]", "[1 2]",
    "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{'a':1}", "{1:1}", "[1}", "[]]", "1 2",
    "tru", "truex", "True", "NULL", "NaN", "Infinity", "-Infinity", "01", "-01", "00", "1.",
    ".5", "-", "+1", "1e", "1e+", "1.e5", "0x10", "1.5.3", "1a", "- 1", "\"abc", "\"\\x\"",
    "\"\\U0041\"", "\"\\u12\"", "\"\\u12G4\"", "\"\t\"", "'a'", "[1,2", "/* c */ 1",
    "\xef\xbb\xbf{}", "\v1", "\f1", "[1,,2]", "\"\\u0000\"", "[\"ok\",\"a\\u0000b\"]",
    "{\"\\u0000\":1}", "\"\\ud800\"", "\"\\udbff\"", "\"\\udc00\"", "\"\\udfff\"",
    "\"\\udc00\\ud800\"", "\"\\ud800\\ud800\"", "\"\\ud800\\u0041\"", "\"\\ud800a\"",
    "\"\\ud800\\n\"", "\"\\ud800\\udc0\"", "1e131072", "10e131071", "1e-16384", "1.5e-16383",
    "0e-16384", "0.0e-16383", "0e1073741823", "0e-1073741823", "1e99999999999999999999999",
    "-1e131072", "[1,2,1e-99999]", "\"\x80\"", "\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xc2\"",
    "\"\xe0\x80\x80\"", "\"\xe0\x9f\xbf\"", "\"\xed\xa0\x80\"", "\"\xed\xbf\xbf\"",
    "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"", "\"\xf0\x80\x80\x80\"", "\"\xf0\x8f\xbf\xbf\"",
    "\"\xf0\x90\x80\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"",
    "\"\xf8\x88\x80\x80\x80\"", "\"\xfe\"", "\"\xff\"", "\"\xe2\x82\"", "\xff", "[1,\xc3]",
    "{\"\xc3\":1}", "\"\\u00\"", "{\"a\":{\"b\":[1,{\"c\":null}]}}", "[\"\\/\"]", "1E400",
    "-1e-400", "[0.1e1, 0.1E-1, 10e-1]", "{\"\":{\"\":{\"\":[]}}}", "\"\\u2028\\u2029\"",
    "\"\xe2\x80\xa8\"", "[true,false,null,1,\"s\",[],{}]", "[-]", "[--1]", "[1e1e1]", "{\"a\"::1}",
    "{,}", "[\"a\":1]", "\"\\uDEAD\"", "\"\\uD83D\\uDE00\\uD83D\"", "123456789012345678901234567890",
    "0.00000000000000000000000000000000000000001", "-0.0e-0", "1e-0", "1e+0",
};
/* clang-format on */

static void test_tricky_cases(void **state)
{
    struct stats st = {0};
    int bad = 0;
    (void)state;
    if (g_skip)
        skip();
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++)
        bad += !agree_str(tricky[i], &st);
    /* Inputs with NUL bytes cannot be C strings. */
    bad += !agree("\0", 1, &st);
    bad += !agree("1\0", 2, &st);
    bad += !agree("\"a\0b\"", 5, &st);
    print_message("tricky: %d inputs, %d accepted, %d rejected\n", st.total, st.accepted,
                  st.rejected);
    assert_int_equal(bad, 0);
}

static void test_generated_families(void **state)
{
    struct stats st = {0};
    int bad = 0;
    char buf[64];
    (void)state;
    if (g_skip)
        skip();
    /* Every byte value alone inside a string, and alone at top level. */
    for (int c = 0; c < 256; c++) {
        unsigned char s[3] = {'"', (unsigned char)c, '"'};
        bad += !agree(s, 3, &st);
        bad += !agree(s + 1, 1, &st);
    }
    /* Every escape letter. */
    for (int c = 0x20; c < 0x7f; c++) {
        snprintf(buf, sizeof buf, "\"a\\%cb\"", c);
        bad += !agree_str(buf, &st);
    }
    /* Two-byte sequences: every lead byte C0-F4 with a few continuation bytes. */
    for (int lead = 0xc0; lead <= 0xf5; lead++) {
        static const unsigned char conts[] = {0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0};
        for (size_t k = 0; k < sizeof conts; k++) {
            unsigned char s[6] = {'"', (unsigned char)lead, conts[k], 0x80, 0x80, '"'};
            size_t need = lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
            s[1 + need] = '"';
            bad += !agree(s, need + 2, &st);
        }
    }
    /* Surrogate escapes: high/low/other combinations. */
    {
        static const char *const units[] = {"d800", "dbff", "dc00", "dfff", "0041",
                                            "0000", "d7ff", "e000", "DBFF", "DC00"};
        for (size_t i = 0; i < 10; i++) {
            for (size_t j = 0; j < 10; j++) {
                snprintf(buf, sizeof buf, "\"\\u%s\\u%s\"", units[i], units[j]);
                bad += !agree_str(buf, &st);
            }
        }
    }
    /* Numeric limits around the edges. */
    {
        static const char *const fmts[] = {"1e%d",   "-9e%d",     "0e%d",
                                           "1.5e%d", "0.0001e%d", "12345e%d"};
        static const int exps[] = {131068, 131069, 131070, 131071, 131072,     -16380,
                                   -16382, -16383, -16384, -16385, 1073741822, -1073741822};
        for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
            for (size_t j = 0; j < sizeof exps / sizeof exps[0]; j++) {
                snprintf(buf, sizeof buf, fmts[i], exps[j]);
                bad += !agree_str(buf, &st);
            }
        }
    }
    print_message("generated: %d inputs, %d accepted, %d rejected\n", st.total, st.accepted,
                  st.rejected);
    assert_int_equal(bad, 0);
}

static void test_nesting(void **state)
{
    struct stats st = {0};
    static const int depths[] = {1,    64, 65, 1000, K2P_JSON_MAX_DEPTH, K2P_JSON_MAX_DEPTH + 1,
                                 30000};
    int bad = 0;
    (void)state;
    if (g_skip)
        skip();
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        int d = depths[i];
        k2p_buf b;
        k2p_buf_init(&b, 0);
        for (int k = 0; k < d; k++)
            assert_int_equal(k2p_buf_puts(&b, k % 2 ? "[" : "{\"k\":"), 0);
        assert_int_equal(k2p_buf_putc(&b, '1'), 0);
        for (int k = d - 1; k >= 0; k--)
            assert_int_equal(k2p_buf_putc(&b, k % 2 ? ']' : '}'), 0);
        bad += !agree(b.data, b.len, &st);
        k2p_buf_deinit(&b);
    }
    print_message("nesting: %d inputs, %d refused only for depth\n", st.total, st.depth_only);
    assert_int_equal(bad, 0);
    assert_int_equal(st.depth_only, 1); /* 4097 levels: PostgreSQL takes it, we do not */
}

/* A small deterministic PRNG (xorshift64*). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f)
        return 0;
    n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void test_corpus_and_mutations(void **state)
{
    static const char alphabet[] = "{}[],:\"\\u0123456789abcdefABCDEF.eE+- \t\n\rtrufalsn/";
    static const unsigned char hibytes[] = {0x80, 0xbf, 0xc2, 0xc3, 0xa9, 0xe2, 0x82, 0xac,
                                            0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xf4, 0xff, 0x00};
    const char *dir = K2P_SOURCE_DIR "/tests/fuzz/corpus/json_validate";
    unsigned char seeds[32][512];
    size_t seed_len[32];
    int nseeds = 0, bad = 0, iters;
    struct stats st = {0};
    uint64_t rng = UINT64_C(0x9E3779B97F4A7C15);
    const char *env = getenv("K2P_JSONB_AGREE_MUTATIONS");
    int64_t v;
    DIR *d;
    struct dirent *ent;

    (void)state;
    if (g_skip)
        skip();
    d = opendir(dir);
    assert_non_null(d);
    while ((ent = readdir(d)) != NULL && nseeds < 32) {
        char path[1024];
        unsigned char big[16384];
        size_t n;
        if (ent->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        n = read_file(path, big, sizeof big);
        bad += !agree(big, n, &st); /* every seed, whole */
        if (n <= sizeof seeds[0]) {
            memcpy(seeds[nseeds], big, n);
            seed_len[nseeds++] = n;
        }
    }
    closedir(d);
    assert_true(nseeds > 5);

    iters = (env && k2p_parse_i64(env, &v) == 0 && v >= 0) ? (int)v : 3000;
    for (int it = 0; it < iters; it++) {
        unsigned char m[600];
        int s = (int)(rng_next(&rng) % (uint64_t)nseeds);
        size_t n = seed_len[s];
        int edits = 1 + (int)(rng_next(&rng) % 3);
        memcpy(m, seeds[s], n);
        for (int k = 0; k < edits; k++) {
            uint64_t r = rng_next(&rng);
            size_t pos = n ? (size_t)(r >> 8) % n : 0;
            unsigned char c = (r & 3) == 3
                                  ? hibytes[(r >> 40) % sizeof hibytes]
                                  : (unsigned char)alphabet[(r >> 40) % (sizeof alphabet - 1)];
            switch ((r >> 4) % 3) {
            case 0: /* replace */
                if (n)
                    m[pos] = c;
                break;
            case 1: /* insert */
                if (n < sizeof m - 1) {
                    memmove(m + pos + 1, m + pos, n - pos);
                    m[pos] = c;
                    n++;
                }
                break;
            default: /* delete */
                if (n) {
                    memmove(m + pos, m + pos + 1, n - pos - 1);
                    n--;
                }
            }
        }
        bad += !agree(m, n, &st);
        if (bad > 20)
            break;
    }
    print_message("corpus + %d mutations: %d inputs, %d accepted, %d rejected\n", iters, st.total,
                  st.accepted, st.rejected);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tricky_cases),
        cmocka_unit_test(test_generated_families),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_corpus_and_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_ini.c - AWS shared-file (INI) and dlt TOML parsers, RFC 3339 timestamps.
 *
 * Threading: single-threaded cmocka tests; temp files live in a mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kinesis2pg/ini.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static int ini(const char *s, k2p_kv_list *l, k2p_err *e)
{
    k2p_kv_list_init(l);
    k2p_err_clear(e);
    return k2p_ini_parse("creds", s, strlen(s), l, e);
}

static int toml(const char *s, k2p_kv_list *l, k2p_err *e)
{
    k2p_kv_list_init(l);
    k2p_err_clear(e);
    return k2p_toml_parse("config.toml", s, strlen(s), l, e);
}

static const char *get(const k2p_kv_list *l, const char *section, const char *key)
{
    const k2p_kv *kv = k2p_kv_find(l, section, key);
    return kv ? kv->value : NULL;
}

/* ---------------------------------------------------------------------------------------- */

static void test_ini_credentials_file(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char *s = "\xEF\xBB\xBF# a comment\r\n"
                    "; another\n"
                    "[default]\r\n"
                    "aws_access_key_id = AKIDEXAMPLE\r\n"
                    "aws_secret_access_key=" SECRET "   \n"
                    "\n"
                    "[ dev ]   # trailing comment\n"
                    "AWS_Access_Key_Id   =   AKIDDEV  # comment after a blank\n"
                    "aws_secret_access_key = a#b;c\n"
                    "  ; indented comment line is a comment\n"
                    "region=\n";
    assert_int_equal(ini(s, &l, &e), 0);
    assert_string_equal(get(&l, "default", "aws_access_key_id"), "AKIDEXAMPLE");
    assert_string_equal(get(&l, "default", "aws_secret_access_key"), SECRET);
    assert_string_equal(get(&l, "dev", "aws_access_key_id"), "AKIDDEV");
    assert_string_equal(get(&l, "dev", "AWS_ACCESS_KEY_ID"), "AKIDDEV");
    assert_string_equal(get(&l, "dev", "aws_secret_access_key"), "a#b;c");
    assert_string_equal(get(&l, "dev", "region"), "");
    assert_null(get(&l, "prod", "region"));
    assert_int_equal(k2p_kv_find(&l, "dev", "aws_secret_access_key")->line, 9);
    k2p_kv_list_deinit(&l);
}

static void test_ini_continuation_and_sections(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char *s = "[profile   dev]\n"
                    "region = eu-west-1\n"
                    "s3 =\n"
                    "  max_concurrent_requests = 10\n"
                    "  addressing_style = path\n"
                    "[default]\n"
                    "region = us-east-1\n"
                    "region = us-east-2\n"
                    "output = json\n"
                    "\tcli_pager = less\n";
    assert_int_equal(ini(s, &l, &e), 0);
    assert_string_equal(get(&l, "profile dev", "region"), "eu-west-1");
    assert_string_equal(get(&l, "profile dev", "s3"),
                        "\nmax_concurrent_requests = 10\naddressing_style = path");
    assert_string_equal(get(&l, "default", "region"), "us-east-2"); /* last wins */
    /* An indented line continues the previous property, as in the AWS SDKs. */
    assert_string_equal(get(&l, "default", "output"), "json\ncli_pager = less");
    assert_null(get(&l, "default", "cli_pager"));
    assert_true(k2p_kv_has_prefix(&l, "profile dev", ""));
    assert_false(k2p_kv_has_prefix(&l, "dev", ""));
    k2p_kv_list_deinit(&l);
}

static void expect_ini_error(const char *s, int line)
{
    k2p_kv_list l;
    k2p_err e;
    char want[32];
    assert_int_equal(ini(s, &l, &e), K2P_EPARSE);
    assert_int_equal(e.code, K2P_EPARSE);
    snprintf(want, sizeof want, "creds:%d: ", line);
    if (strncmp(e.msg, want, strlen(want)) != 0)
        fail_msg("message '%s' does not start with '%s'", e.msg, want);
    assert_null(strstr(e.msg, "wJalr"));
    assert_int_equal(l.n, 0);
    k2p_kv_list_deinit(&l);
}

static void test_ini_errors(void **state)
{
    (void)state;
    expect_ini_error("[default\nk=v\n", 1);
    expect_ini_error("k = v\n", 1);
    expect_ini_error("[default]\naws_secret_access_key " SECRET "\n", 2);
    expect_ini_error("[default]\n=" SECRET "\n", 2);
    expect_ini_error("[]\n", 1);
    expect_ini_error("[  ]\n", 1);
    expect_ini_error("# c\n[default]\n\n  " SECRET "\n", 4);
    expect_ini_error("  indented\n", 1);
}

static void test_ini_nul_after_len(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char s[] = "[default]\nk = v\0[x";
    k2p_kv_list_init(&l);
    assert_int_equal(k2p_ini_parse(NULL, s, sizeof s - 1, &l, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "input:2:"));
    k2p_kv_list_deinit(&l);
    /* Empty input is fine and yields nothing. */
    assert_int_equal(k2p_ini_parse(NULL, "", 0, &l, &e), 0);
    assert_int_equal(k2p_ini_parse(NULL, NULL, 0, &l, &e), 0);
    assert_int_equal(k2p_toml_parse(NULL, NULL, 0, &l, &e), 0);
    assert_int_equal(k2p_toml_parse(NULL, "\xEF\xBB\xBF# only a comment", 19, &l, &e), 0);
    assert_int_equal(l.n, 0);
}

/* ---------------------------------------------------------------------------------------- */

static void test_toml_dlt_files(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char *s = "# dlt secrets\n"
                    "[sources.kinesis.credentials]\n"
                    "aws_access_key_id = \"AKIDEXAMPLE\"  # comment\n"
                    "aws_secret_access_key = '" SECRET "'\n"
                    "region_name = \"eu-central-1\"\n"
                    "\n"
                    "[ sources . kinesis ]\n"
                    "stream_name = \"click\\tstream \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n"
                    "chunk_size = 1_000\n"
                    "hex = 0xFF\n"
                    "oct = 0o17\n"
                    "bin = 0b101\n"
                    "neg = -42\n"
                    "pos = +7\n"
                    "zero = -0\n"
                    "ratio = 1_0.5e-3\n"
                    "inf = -inf\n"
                    "parse_json = false\n"
                    "initial_at_timestamp = 2024-05-01T12:00:00Z\n"
                    "local = 1979-05-27 07:32:00\n"
                    "date = 1979-05-27\n"
                    "time = 07:32:00.5\n"
                    "tags = [ \"a\", [1, 2], { x = 1 }, \"]\" ,\n"
                    "  # comment in an array\n"
                    "  'b', ]\n"
                    "inline = { a = 1, b.c = \"x\", d = { e = true } }\n"
                    "\"quoted key\".bare-key = 'v'\n"
                    "dotted . key = 3\n"
                    "[destination.postgres]\n"
                    "credentials = \"postgresql://loader:pw@localhost:5432/dlt\"\n";
    int rc = toml(s, &l, &e);
    if (rc)
        fail_msg("%s", e.msg);
    assert_string_equal(get(&l, "", "sources.kinesis.credentials.aws_access_key_id"),
                        "AKIDEXAMPLE");
    assert_string_equal(get(&l, "", "sources.kinesis.credentials.aws_secret_access_key"), SECRET);
    assert_string_equal(get(&l, "", "sources.kinesis.stream_name"),
                        "click\tstream \"q\" \\ \xC3\xA9 \xF0\x9F\x98\x80");
    const k2p_kv *kv = k2p_kv_find(&l, "", "sources.kinesis.chunk_size");
    assert_int_equal(kv->type, K2P_KV_INTEGER);
    assert_string_equal(kv->value, "1000");
    assert_int_equal(kv->line, 9);
    assert_string_equal(get(&l, "", "sources.kinesis.hex"), "255");
    assert_string_equal(get(&l, "", "sources.kinesis.oct"), "15");
    assert_string_equal(get(&l, "", "sources.kinesis.bin"), "5");
    assert_string_equal(get(&l, "", "sources.kinesis.neg"), "-42");
    assert_string_equal(get(&l, "", "sources.kinesis.pos"), "7");
    assert_string_equal(get(&l, "", "sources.kinesis.zero"), "0");
    kv = k2p_kv_find(&l, "", "sources.kinesis.ratio");
    assert_int_equal(kv->type, K2P_KV_FLOAT);
    assert_string_equal(kv->value, "10.5e-3");
    assert_int_equal(k2p_kv_find(&l, "", "sources.kinesis.inf")->type, K2P_KV_FLOAT);
    kv = k2p_kv_find(&l, "", "sources.kinesis.parse_json");
    assert_int_equal(kv->type, K2P_KV_BOOL);
    assert_string_equal(kv->value, "false");
    kv = k2p_kv_find(&l, "", "sources.kinesis.initial_at_timestamp");
    assert_int_equal(kv->type, K2P_KV_DATETIME);
    assert_string_equal(kv->value, "2024-05-01T12:00:00Z");
    assert_string_equal(get(&l, "", "sources.kinesis.local"), "1979-05-27 07:32:00");
    assert_int_equal(k2p_kv_find(&l, "", "sources.kinesis.date")->type, K2P_KV_DATETIME);
    assert_int_equal(k2p_kv_find(&l, "", "sources.kinesis.time")->type, K2P_KV_DATETIME);
    kv = k2p_kv_find(&l, "", "sources.kinesis.tags");
    assert_int_equal(kv->type, K2P_KV_ARRAY);
    assert_string_equal(kv->value, "");
    assert_null(get(&l, "", "sources.kinesis.tags.x"));
    assert_string_equal(get(&l, "", "sources.kinesis.inline.a"), "1");
    assert_string_equal(get(&l, "", "sources.kinesis.inline.b.c"), "x");
    assert_string_equal(get(&l, "", "sources.kinesis.inline.d.e"), "true");
    assert_string_equal(get(&l, "", "sources.kinesis.quoted key.bare-key"), "v");
    assert_string_equal(get(&l, "", "sources.kinesis.dotted.key"), "3");
    assert_string_equal(get(&l, "", "destination.postgres.credentials"),
                        "postgresql://loader:pw@localhost:5432/dlt");
    k2p_kv_list_deinit(&l);
}

static void test_toml_multiline_strings(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char *s = "a = \"\"\"\nline1\nline2\\\n     continued \\\n\n   end\"\"\"\n"
                    "b = '''\nraw \\n 'q' ''q'' \n'''\n"
                    "c = \"\"\"two quotes at the end\"\"\"\"\"\n"
                    "d = ''''one quote inside''''\n"
                    "e = \"\"\"\r\ncrlf\r\n\"\"\"\n";
    int rc = toml(s, &l, &e);
    if (rc)
        fail_msg("%s", e.msg);
    assert_string_equal(get(&l, "", "a"), "line1\nline2continued end");
    assert_string_equal(get(&l, "", "b"), "raw \\n 'q' ''q'' \n");
    assert_string_equal(get(&l, "", "c"), "two quotes at the end\"\"");
    assert_string_equal(get(&l, "", "d"), "'one quote inside'");
    assert_string_equal(get(&l, "", "e"), "crlf\n");
    assert_int_equal(k2p_kv_find(&l, "", "e")->line, 12);
    k2p_kv_list_deinit(&l);
}

static void test_toml_array_of_tables_skipped(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char *s = "[[sources.kinesis.extra]]\nname = 1\n[[sources.kinesis.extra]]\nname = 2\n"
                    "[sources.kinesis]\nstream_name = 's'\n";
    assert_int_equal(toml(s, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(get(&l, "", "sources.kinesis.stream_name"), "s");
    k2p_kv_list_deinit(&l);
}

static void expect_toml_error(const char *s, int line)
{
    k2p_kv_list l;
    k2p_err e;
    char want[40];
    int rc = toml(s, &l, &e);
    if (rc != K2P_EPARSE)
        fail_msg("expected a parse error for <%s>, got %d", s, rc);
    snprintf(want, sizeof want, "config.toml:%d: ", line);
    if (strncmp(e.msg, want, strlen(want)) != 0)
        fail_msg("message '%s' does not start with '%s'", e.msg, want);
    assert_null(strstr(e.msg, "wJalr"));
    assert_int_equal(l.n, 0);
    k2p_kv_list_deinit(&l);
}

static void test_toml_errors(void **state)
{
    (void)state;
    expect_toml_error("a = 1\na = 2\n", 2);
    expect_toml_error("a = 1\na.b = 2\n", 2);
    expect_toml_error("a.b = 1\na = 2\n", 2);
    expect_toml_error("[x]\na = 1\n[y]\nz = 'a\n", 4);
    expect_toml_error("\n\nsecret = \"" SECRET "\n", 3);
    expect_toml_error("secret = " SECRET "\n", 1);
    expect_toml_error("secret = '" SECRET "' junk\n", 1);
    expect_toml_error("s = \"bad \\q escape\"\n", 1);
    expect_toml_error("s = \"\\uD800\"\n", 1);
    expect_toml_error("s = \"\\u0000\"\n", 1);
    expect_toml_error("s = \"\\u12\"\n", 1);
    expect_toml_error("s = \"ctl \x01\"\n", 1);
    expect_toml_error("n = 9223372036854775808\n", 1);
    expect_toml_error("n = 007\n", 1);
    expect_toml_error("n = 1__0\n", 1);
    expect_toml_error("n = 1.\n", 1);
    expect_toml_error("n = .5\n", 1);
    expect_toml_error("n = 0x\n", 1);
    expect_toml_error("n = -0x10\n", 1);
    expect_toml_error("k\n", 1);
    expect_toml_error("k =\n", 1);
    expect_toml_error("= 1\n", 1);
    expect_toml_error("[a\nb = 1\n", 1);
    expect_toml_error("[[a]\n", 1);
    expect_toml_error("[a] x\n", 1);
    expect_toml_error("\na = [1, 2\n", 2);
    expect_toml_error("a = [1 2]\n", 1);
    expect_toml_error("a = {b = 1\n", 1);
    expect_toml_error("a = {b}\n", 1);
    expect_toml_error("d = 2023-02-30T00:00:00Z1\n", 1);
    expect_toml_error("s = \"\"\"never closed\n\n", 1);
    expect_toml_error("s = \"\"\"\"\"\"\"\"\"\n", 1);
    /* Nesting is capped, not recursed into until the stack ends. */
    char deep[4096];
    memset(deep, '[', sizeof deep);
    memcpy(deep, "a = ", 4);
    deep[sizeof deep - 1] = '\0';
    expect_toml_error(deep, 1);
}

static void test_toml_nul_in_buffer(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    const char s[] = "a = 'x\0y'\n";
    k2p_kv_list_init(&l);
    assert_int_equal(k2p_toml_parse(NULL, s, sizeof s - 1, &l, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "input:1:"));
    k2p_kv_list_deinit(&l);
}

/* ---------------------------------------------------------------------------------------- */

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t us;
    char buf[40];
    assert_int_equal(k2p_parse_rfc3339("1970-01-01T00:00:00Z", &us), 0);
    assert_int_equal(us, 0);
    assert_int_equal(k2p_parse_rfc3339("2024-02-29T12:34:56.789+02:00", &us), 0);
    assert_int_equal(us, 1709202896789000LL);
    assert_int_equal(k2p_parse_rfc3339("2024-02-29t10:34:56.7891119z", &us), 0);
    assert_int_equal(us, 1709202896789111LL);
    assert_int_equal(k2p_parse_rfc3339("2024-02-29 05:04:56.789-05:30", &us), 0);
    assert_int_equal(us, 1709202896789000LL);
    assert_int_equal(k2p_parse_rfc3339("2000-01-01T00:00:00Z", &us), 0);
    assert_int_equal(us, 946684800000000LL);
    assert_int_equal(k2p_parse_rfc3339("9999-12-31T23:59:59Z", &us), 0);
    assert_int_equal(us, 253402300799000000LL);
    assert_int_equal(k2p_parse_rfc3339("0001-01-01T00:00:00Z", &us), 0);
    assert_int_equal(us, -62135596800000000LL);
    assert_int_equal(k2p_parse_rfc3339("1969-12-31T23:59:59.5Z", &us), 0);
    assert_int_equal(us, -500000);
    assert_int_equal(k2p_parse_rfc3339("2016-12-31T23:59:60Z", &us), 0); /* leap second */

    static const char *const bad[] = {
        "",
        "2024",
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00:00Zjunk",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00:00+02:60",
        "0000-01-01T00:00:00Z",
        "2024-05-01X12:00:00Z",
        "2024-5-01T12:00:00Z",
        "2024-05-01T12:00:00+02:0",
        "2024-05-01T12:00:00+",
        "+024-05-01T12:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (k2p_parse_rfc3339(bad[i], &us) != K2P_EINVAL)
            fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(k2p_parse_rfc3339(NULL, &us), K2P_EINVAL);

    assert_string_equal(k2p_format_rfc3339(0, buf, sizeof buf), "1970-01-01T00:00:00Z");
    assert_string_equal(k2p_format_rfc3339(1709202896789000LL, buf, sizeof buf),
                        "2024-02-29T10:34:56.789000Z");
    assert_string_equal(k2p_format_rfc3339(-500000, buf, sizeof buf),
                        "1969-12-31T23:59:59.500000Z");
    assert_string_equal(k2p_format_rfc3339(-62135596800000000LL, buf, sizeof buf),
                        "0001-01-01T00:00:00Z");
}

/* ---------------------------------------------------------------------------------------- */

static char tmpdir[256];

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_load_files(void **state)
{
    (void)state;
    k2p_kv_list l;
    k2p_err e;
    char path[512];

    k2p_kv_list_init(&l);
    snprintf(path, sizeof path, "%s/credentials", tmpdir);
    write_file(path, "[default]\naws_access_key_id = AKID\n");
    assert_int_equal(k2p_ini_load_file(path, &l, &e), 0);
    assert_string_equal(get(&l, "default", "aws_access_key_id"), "AKID");
    k2p_kv_list_deinit(&l);

    snprintf(path, sizeof path, "%s/config.toml", tmpdir);
    write_file(path, "[sources.kinesis]\nstream_name = 's'\nchunk_size = x\n");
    assert_int_equal(k2p_toml_load_file(path, &l, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "config.toml:3: "));
    assert_int_equal(l.n, 0);

    snprintf(path, sizeof path, "%s/missing.toml", tmpdir);
    assert_int_equal(k2p_toml_load_file(path, &l, &e), K2P_ENOTFOUND);
    assert_non_null(strstr(e.msg, "missing.toml"));
    snprintf(path, sizeof path, "%s/nodir/credentials", tmpdir);
    assert_int_equal(k2p_ini_load_file(path, &l, &e), K2P_ENOTFOUND);
    assert_int_equal(k2p_ini_load_file(tmpdir, &l, &e), K2P_EIO);
    k2p_kv_list_deinit(&l);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/k2p_ini_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char path[512];
    static const char *const names[] = {"credentials", "config.toml"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ini_credentials_file),
        cmocka_unit_test(test_ini_continuation_and_sections),
        cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_ini_nul_after_len),
        cmocka_unit_test(test_toml_dlt_files),
        cmocka_unit_test(test_toml_multiline_strings),
        cmocka_unit_test(test_toml_array_of_tables_skipped),
        cmocka_unit_test(test_toml_errors),
        cmocka_unit_test(test_toml_nul_in_buffer),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_load_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

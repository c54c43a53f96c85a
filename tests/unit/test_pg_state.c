/* test_pg_state.c - the pure helpers of pg_state: array literals, target names, timestamps.
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pg_state.h"

static void test_array_literal(void **state)
{
    k2p_buf a;
    (void)state;
    k2p_buf_init(&a, 0);
    k2p_buf_putc(&a, '{');
    assert_int_equal(k2p_pg_array_append(&a, "shardId-000000000001"), 0);
    assert_int_equal(k2p_pg_array_append(&a, "a\"b\\c,d{e}\x01"), 0);
    assert_int_equal(k2p_pg_array_append(&a, NULL), 0);
    assert_int_equal(k2p_pg_array_append(&a, ""), 0);
    k2p_buf_putc(&a, '}');
    assert_string_equal(a.data, "{\"shardId-000000000001\",\"a\\\"b\\\\c,d{e}\x01\",NULL,\"\"}");
    k2p_buf_deinit(&a);
}

static void test_target_name(void **state)
{
    char *t;
    char long_name[80];
    (void)state;
    t = k2p_pg_target_name("kinesis", "a\"b; drop table x");
    assert_string_equal(t, "\"kinesis\".\"a\"\"b; drop table x\"");
    free(t);
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    assert_null(k2p_pg_target_name("kinesis", long_name)); /* PostgreSQL would truncate it */
    assert_null(k2p_pg_target_name("", "t"));
}

static void test_format_ts(void **state)
{
    char ts[K2P_TS_BUF];
    (void)state;
    k2p_pg_format_ts(1732123456789000LL, ts);
    assert_string_equal(ts, "2024-11-20T17:24:16.789000Z");
    k2p_pg_format_ts(-1, ts);
    assert_string_equal(ts, "1969-12-31T23:59:59.999999Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literal),
        cmocka_unit_test(test_target_name),
        cmocka_unit_test(test_format_ts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

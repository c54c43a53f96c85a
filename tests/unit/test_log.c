/* test_log.c - log lines: text form, JSON form (valid JSON, escaped message), level filter.
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kinesis2pg/log.h"

/* Runs fn with stderr sent to a temp file; returns what it wrote (heap). */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/k2p-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    char *out = calloc(1, 4096);
    ssize_t n;
    assert_true(fd >= 0);
    fflush(stderr);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, out, 4095);
    assert_true(n >= 0);
    close(fd);
    unlink(path);
    return out;
}

static void emit(void)
{
    K2P_LOG(K2P_LOG_LEVEL_WARN, "pg_retry", "writer %d: \"quoted\"\nsecond line", 1);
    K2P_LOG(K2P_LOG_LEVEL_DEBUG, "noise", "not shown at info");
}

static void test_text(void **state)
{
    char *out;
    (void)state;
    k2p_log_init(K2P_LOG_FORMAT_TEXT, K2P_LOG_LEVEL_INFO);
    out = capture(emit);
    assert_string_equal(out, "kinesis2pg: writer 1: \"quoted\"\nsecond line\n");
    free(out);
}

static void test_json(void **state)
{
    char *out;
    cJSON *o;
    (void)state;
    k2p_log_init(K2P_LOG_FORMAT_JSON, K2P_LOG_LEVEL_INFO);
    out = capture(emit);
    assert_non_null(strchr(out, '\n'));
    assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line: the newline was escaped */
    o = cJSON_Parse(out);
    assert_non_null(o);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "level")), "warn");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "event")), "pg_retry");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "msg")),
                        "writer 1: \"quoted\"\nsecond line");
    assert_int_equal(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(o, "ts"))), 24);
    cJSON_Delete(o);
    free(out);
    k2p_log_init(K2P_LOG_FORMAT_TEXT, K2P_LOG_LEVEL_DEBUG);
    assert_true(k2p_log_enabled(K2P_LOG_LEVEL_DEBUG));
    k2p_log_init(K2P_LOG_FORMAT_TEXT, K2P_LOG_LEVEL_ERROR);
    assert_false(k2p_log_enabled(K2P_LOG_LEVEL_WARN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_metrics.c - --metrics-addr during a real follow-mode load (kinesalite + PostgreSQL):
 * /metrics is valid Prometheus text (checked by promtool) and its row counters reach what was
 * produced, /healthz answers, /readyz turns ready; SIGTERM still drains and exits 0.
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/buf.h"
#include "loader_testlib.h"
#include "mock_kinesis_harness.h"

static k2p_lt g;

static int setup(void **state)
{
    (void)state;
    return k2p_lt_start(&g);
}

static int teardown(void **state)
{
    (void)state;
    k2p_lt_stop(&g);
    return 0;
}

/* GETs http://127.0.0.1:port/path; returns the status (-1 when nothing answered). */
static long get(int port, const char *path, k2p_buf *body)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    return k2p_test_http_get(url, body);
}

/* Sum of every sample of `name` in an exposition. */
static double sum_metric(const char *text, const char *name)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            const char *v = strchr(p, ' ');
            if (p[nl] == '{')
                v = strchr(strchr(p, '}'), ' ');
            sum += strtod(v, NULL);
        }
    }
    return sum;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_metrics_during_follow_load(void **state)
{
    char addr[64], log[300], cmd[600];
    int port = k2p_test_free_port(), st = 0;
    k2p_buf body;
    pid_t pid;
    int64_t deadline;
    double rows = 0;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_buf_init(&body, 0);
    k2p_lt_create_stream(&g, "met", 3);
    k2p_lt_produce(&g, "met", NULL, "--count 500 --invalid 4");
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(log, sizeof log, "%s/metrics-loader.log", g.tmpdir);
    pid = k2p_lt_spawn_loader(&g,
                              K2P_LT_ARGS("--stream", "met", "--from", "trim_horizon", "--follow",
                                          "--metrics-addr", addr, "--memory-mb", "48"),
                              log);

    /* /healthz as soon as it listens; /readyz once reading; rows reach what was put. */
    deadline = k2p_now_ns() + 30 * 1000000000LL;
    while (get(port, "/healthz", &body) != 200 && k2p_now_ns() < deadline)
        sleep_ms(50);
    assert_string_equal(body.data, "ok\n");
    while (get(port, "/readyz", &body) != 200 && k2p_now_ns() < deadline)
        sleep_ms(50);
    assert_string_equal(body.data, "ready\n");
    k2p_lt_produce(&g, "met", NULL, "--count 300 --seed 5");
    while (k2p_now_ns() < deadline) {
        assert_int_equal(get(port, "/metrics", &body), 200);
        rows = sum_metric(body.data, "kinesis2pg_rows_total") +
               sum_metric(body.data, "kinesis2pg_dead_letters_total");
        if (rows >= 800)
            break;
        sleep_ms(100);
    }
    assert_true(rows == 800);
    assert_true(sum_metric(body.data, "kinesis2pg_dead_letters_total") == 4);
    assert_non_null(strstr(body.data, "kinesis2pg_millis_behind_latest{stream=\"met\",shard=\""));
    assert_non_null(strstr(body.data, "kinesis2pg_kinesis_retries_total{"));
    assert_non_null(strstr(body.data, "kinesis2pg_writer_transactions_total{"));
    /* --memory-mb reaches the loader's budget. */
    assert_true(sum_metric(body.data, "kinesis2pg_memory_budget_bytes") == 48.0 * 1048576);
    assert_int_equal(get(port, "/nope", &body), 404);

    /* promtool validates the exposition format. */
    {
        char path[300];
        FILE *f;
        snprintf(path, sizeof path, "%s/metrics.txt", g.tmpdir);
        assert_int_equal(get(port, "/metrics", &body), 200);
        f = fopen(path, "w");
        assert_non_null(f);
        fwrite(body.data, 1, body.len, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s/.deps/prometheus/usr/bin/promtool check metrics < %s",
                 K2P_SOURCE_DIR, path);
        if (access(K2P_SOURCE_DIR "/.deps/prometheus/usr/bin/promtool", X_OK) != 0)
            fail_msg("promtool missing: run scripts/setup.sh");
        assert_int_equal(system(cmd), 0);
    }

    kill(pid, SIGTERM);
    assert_int_equal(k2p_lt_wait_pid(pid, 10000, &st), 1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_not_equal(get(port, "/healthz", &body), 200); /* gone with the process */
    assert_int_equal(k2p_lt_count(&g, "kinesis", "met"), 796);
    k2p_buf_deinit(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_during_follow_load),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

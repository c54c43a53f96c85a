/* test_loader_fanout_tls.c - enhanced fan-out the way AWS serves it: over TLS, HTTP/2 chosen
 * by ALPN.
 *
 * The other fan-out tests speak HTTP/2 in cleartext with prior knowledge (h2c), as the local
 * emulators do; AWS only offers https, where libcurl and the server agree on h2 in the TLS
 * handshake. Here tests/mock_kinesis (4 shards, 4,000 records of ~100 bytes) sits behind
 * tests/support/tls_proxy.py (Python's ssl on 127.0.0.1 with a certificate made by openssl for
 * IP 127.0.0.1, offering h2 and http/1.1), and `kinesis2pg load --consumer NAME --ca-file
 * CERT --endpoint https://127.0.0.1:PORT` must register the consumer, subscribe to every shard
 * and leave the exact set and checkpoints in PostgreSQL, with every call over the TLS
 * endpoint: the mock counts HTTP/2 connections, subscriptions and no GetRecords. The proxy
 * forwards bytes unchanged, so an HTTP/2 connection at the mock is one the loader negotiated
 * over TLS.
 *
 * Threading: single-threaded; the loader, the mock and the proxy are child processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault_testlib.h"
#include "kinesis2pg/common.h"

#define SHARDS 4
#define RECORDS 4000
#define RECORD_SIZE 100

static k2p_lt g;
static k2p_test_mock mk;
static k2p_lt_set g_set;
static pid_t proxy_pid;

static void proxy_stop(void)
{
    if (proxy_pid > 0) {
        kill(proxy_pid, SIGTERM);
        waitpid(proxy_pid, NULL, 0);
        proxy_pid = 0;
    }
}

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, NULL);
}

static int teardown(void **state)
{
    (void)state;
    proxy_stop();
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

/* Starts tls_proxy.py in front of 127.0.0.1:target; returns the port it listens on. */
static int proxy_start(const char *cert, const char *key, int target)
{
    static const char script[] = K2P_SOURCE_DIR "/tests/support/tls_proxy.py";
    char port_path[320], target_s[16], line[32] = "";
    int64_t deadline;
    int port = 0;
    snprintf(port_path, sizeof port_path, "%s/proxy.port", g.tmpdir);
    snprintf(target_s, sizeof target_s, "%d", target);
    proxy_pid = fork();
    assert_true(proxy_pid >= 0);
    if (proxy_pid == 0) {
        int out = open(port_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (out < 0 || null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0)
            _exit(127);
        execlp("python3", "python3", script, cert, key, target_s, (char *)NULL);
        _exit(127);
    }
    deadline = k2p_ft_ms() + 10000;
    while (k2p_ft_ms() < deadline) {
        FILE *f = fopen(port_path, "r");
        if (f) {
            if (fgets(line, sizeof line, f))
                port = atoi(line);
            fclose(f);
        }
        if (port > 0)
            return port;
        if (waitpid(proxy_pid, NULL, WNOHANG) == proxy_pid) {
            proxy_pid = 0;
            fail_msg("tls_proxy.py exited before printing its port");
        }
        usleep(20000);
    }
    fail_msg("tls_proxy.py printed no port within 10 s");
    return 0;
}

static void test_fanout_over_tls(void **state)
{
    const char *stream = "tls_fanout";
    char cert[320], key[320], cmd[1024], endpoint[64];
    const char *extra[] = {"--consumer", "tls-reader", "--ca-file", cert, NULL};
    const char **args;
    k2p_lt_run r;
    int port;
    (void)state;
    K2P_LT_REQUIRE(&g);

    k2p_ft_mock_preload(&g, &mk, stream, SHARDS, RECORDS, RECORD_SIZE, NULL, &g_set);
    snprintf(cert, sizeof cert, "%s/cert.pem", g.tmpdir);
    snprintf(key, sizeof key, "%s/key.pem", g.tmpdir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null",
             key, cert);
    if (system(cmd) != 0)
        fail_msg("openssl could not make the test certificate");
    port = proxy_start(cert, key, mk.port);
    snprintf(endpoint, sizeof endpoint, "https://127.0.0.1:%d", port);
    k2p_lt_use_endpoint(&g, endpoint);

    args = k2p_ft_args(stream, extra);
    k2p_lt_run_loader(&g, args, 120, &r);
    k2p_lt_expect_exit(&r, 0, "a fan-out load over TLS");
    fprintf(stderr, "  %d records over %s (TLS, ALPN) in %.1f s\n", RECORDS, endpoint, r.secs);
    k2p_lt_run_free(&r);
    k2p_lt_assert_table(&g, "kinesis", stream, stream, &g_set, K2P_LT_JSON);
    k2p_lt_assert_checkpoints(&g, stream, &g_set);
    fprintf(stderr, "  mock: %lld HTTP/2 connections, %lld subscriptions, %lld GetRecords\n",
            (long long)k2p_ft_mock_stat(&mk, "connections.h2"),
            (long long)k2p_ft_mock_stat(&mk, "subscriptions.started"),
            (long long)k2p_ft_mock_stat(&mk, "requests.GetRecords"));
    assert_true(k2p_ft_mock_stat(&mk, "connections.h2") >= 1);
    assert_true(k2p_ft_mock_stat(&mk, "subscriptions.started") >= SHARDS);
    assert_int_equal(k2p_ft_mock_stat(&mk, "requests.GetRecords"), 0);
    free(args);
    proxy_stop();
    k2p_ft_mock_stop(&mk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_over_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

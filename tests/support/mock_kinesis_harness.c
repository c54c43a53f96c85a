/* mock_kinesis_harness.c - runs tests/mock_kinesis as a child process on a free loopback port
 * and talks to its test endpoints over libcurl.
 *
 * Threading: main test thread only.
 */
#include "mock_kinesis_harness.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/common.h"

#define MOCK_START_TIMEOUT_MS 60000

static const char *mock_binary(void)
{
    const char *e = getenv("K2P_MOCK_KINESIS");
    return e && *e ? e : K2P_BINARY_DIR "/tests/mock_kinesis/mock_kinesis";
}

int k2p_test_mock_start(k2p_test_mock *m, const char *const *args)
{
    int in[2], out[2];
    char line[32];
    size_t n = 0, nargs = 0;
    pid_t parent = getpid();
    const char **argv;
    int64_t deadline;

    memset(m, 0, sizeof *m);
    while (args && args[nargs])
        nargs++;
    argv = calloc(nargs + 6, sizeof *argv);
    if (!argv || pipe(in) || pipe(out)) {
        perror("mock harness");
        free(argv);
        return -1;
    }
    argv[0] = mock_binary();
    argv[1] = "--port";
    argv[2] = "0";
    argv[3] = "--stdin-watch";
    for (size_t i = 0; i < nargs; i++)
        argv[4 + i] = args[i];
    fflush(NULL);
    m->pid = fork();
    if (m->pid < 0) {
        perror("fork");
        free(argv);
        return -1;
    }
    if (m->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(argv);
    close(in[0]);
    close(out[1]);
    m->stdin_fd = in[1];
    /* The server prints its port once it listens (after preloading). */
    deadline = k2p_now_ns() + (int64_t)MOCK_START_TIMEOUT_MS * 1000000;
    while (n + 1 < sizeof line) {
        struct pollfd p = {out[0], POLLIN, 0};
        int left = (int)((deadline - k2p_now_ns()) / 1000000);
        ssize_t r;
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        r = read(out[0], line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(out[0]);
    m->port = (int)strtol(line, NULL, 10);
    if (m->port <= 0) {
        fprintf(stderr, "mock_kinesis did not start (%s)\n", mock_binary());
        k2p_test_mock_stop(m);
        return -1;
    }
    snprintf(m->endpoint, sizeof m->endpoint, "http://127.0.0.1:%d", m->port);
    return 0;
}

int k2p_test_mock_stop(k2p_test_mock *m)
{
    int st = 0, rc = -1;
    if (m->pid > 0) {
        int64_t deadline = k2p_now_ns() + 10 * 1000000000LL;
        pid_t w = 0;
        kill(m->pid, SIGTERM);
        while ((w = waitpid(m->pid, &st, WNOHANG)) == 0 && k2p_now_ns() < deadline) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (w == 0) {
            kill(m->pid, SIGKILL);
            waitpid(m->pid, &st, 0);
        } else if (w == m->pid && WIFEXITED(st)) {
            rc = WEXITSTATUS(st);
        }
        m->pid = 0;
    }
    if (m->stdin_fd > 0) {
        close(m->stdin_fd);
        m->stdin_fd = 0;
    }
    return rc;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    return k2p_buf_append(ud, p, size * nmemb) ? 0 : size * nmemb;
}

/* One request; headers may be NULL. HTTP status or -1. */
static long http(const char *url, const char *body, struct curl_slist *headers, k2p_buf *out)
{
    CURL *c = curl_easy_init();
    long status = -1;
    if (!c)
        return -1;
    k2p_buf_reset(out);
    if (curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEDATA, out) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) == CURLE_OK &&
        (!body || curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK) &&
        curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

long k2p_test_http_get(const char *url, k2p_buf *out)
{
    return http(url, NULL, NULL, out);
}

long k2p_test_mock_get(const k2p_test_mock *m, const char *path, k2p_buf *out)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", m->endpoint, path);
    return http(url, NULL, NULL, out);
}

long k2p_test_mock_post(const k2p_test_mock *m, const char *path, const char *body, k2p_buf *out)
{
    char url[1024];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    long st;
    snprintf(url, sizeof url, "%s%s", m->endpoint, path);
    st = http(url, body ? body : "", h, out);
    curl_slist_free_all(h);
    return st;
}

int k2p_test_mock_control(const k2p_test_mock *m, const char *json)
{
    k2p_buf b;
    long st;
    k2p_buf_init(&b, 0);
    st = k2p_test_mock_post(m, "/control", json, &b);
    if (st != 200)
        fprintf(stderr, "mock /control %s: HTTP %ld %s\n", json, st, b.data ? b.data : "");
    k2p_buf_deinit(&b);
    return st == 200 ? 0 : -1;
}

int64_t k2p_test_mock_stat(const k2p_test_mock *m, const char *path)
{
    k2p_buf b;
    cJSON *root = NULL;
    const cJSON *v;
    int64_t out = -1;
    char key[64];
    const char *p = path;

    k2p_buf_init(&b, 0);
    if (k2p_test_mock_get(m, "/stats", &b) != 200)
        goto done;
    root = cJSON_ParseWithLength(b.data, b.len);
    v = root;
    while (v && *p) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof key)
            break;
        memcpy(key, p, n);
        key[n] = '\0';
        v = cJSON_GetObjectItemCaseSensitive(v, key);
        p += n + (p[n] == '.');
    }
    if (!*p && cJSON_IsNumber(v))
        out = (int64_t)v->valuedouble;
done:
    cJSON_Delete(root);
    k2p_buf_deinit(&b);
    return out;
}

long k2p_test_kinesis_raw(const char *endpoint, const char *op, const char *body, k2p_buf *out)
{
    char target[128];
    struct curl_slist *h = NULL;
    long st;
    snprintf(target, sizeof target, "X-Amz-Target: Kinesis_20131202.%s", op);
    h = curl_slist_append(h, target);
    h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.1");
    h = curl_slist_append(h, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20240101/"
                             "us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, "
                             "Signature=0000");
    h = curl_slist_append(h, "X-Amz-Date: 20240101T000000Z");
    h = curl_slist_append(h, "Expect:");
    st = http(endpoint, body, h, out);
    curl_slist_free_all(h);
    return st;
}

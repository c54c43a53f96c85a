/* mock_kinesis_harness.h - starts tests/mock_kinesis (the project's own Kinesis server) on a
 * free loopback port for a test, talks to its /control and /stats endpoints, and sends raw
 * Kinesis requests (to it or to kinesalite) that the client library would never send.
 *
 * Like the kinesalite harness, the server is a child process that exits when the test dies
 * (--stdin-watch on a pipe from us, and PR_SET_PDEATHSIG).
 * Threading: call from the test's main thread.
 */
#ifndef K2P_MOCK_KINESIS_HARNESS_H
#define K2P_MOCK_KINESIS_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "kinesis2pg/buf.h"

typedef struct k2p_test_mock {
    pid_t pid;
    int stdin_fd;
    int port;
    char endpoint[64]; /* "http://127.0.0.1:PORT" */
} k2p_test_mock;

/* Starts mock_kinesis with the extra arguments `args` (NULL-terminated, may be NULL), waits
 * until it listens (preloading included). 0 or -1 (message on stderr). The binary is
 * $K2P_MOCK_KINESIS or the build tree's tests/mock_kinesis/mock_kinesis. */
int k2p_test_mock_start(k2p_test_mock *m, const char *const *args);

/* SIGTERM, then waits (SIGKILL after 10 s). Returns the exit status (0: clean exit, which
 * under ASan also means no leak), or -1 when it did not exit by itself. */
int k2p_test_mock_stop(k2p_test_mock *m);

/* GET / POST (body may be NULL) on the mock's test endpoints, e.g. "/stats",
 * "/control?throttle=0.3". The answer body goes to *out (reset first). Returns the HTTP
 * status, or -1 when the request failed. */
long k2p_test_mock_get(const k2p_test_mock *m, const char *path, k2p_buf *out);
long k2p_test_mock_post(const k2p_test_mock *m, const char *path, const char *body, k2p_buf *out);

/* GET any URL (a loader's --metrics-addr endpoints, say), the same way. */
long k2p_test_http_get(const char *url, k2p_buf *out);

/* POST /control with a JSON object; 0 when the mock accepted it. */
int k2p_test_mock_control(const k2p_test_mock *m, const char *json);

/* A number from GET /stats by dotted path ("faults.throttle", "requests.GetRecords",
 * "connections.open"); -1 when absent or unreachable. */
int64_t k2p_test_mock_stat(const k2p_test_mock *m, const char *path);

/* One unsigned JSON 1.1 request (Kinesis_20131202.<op>) with a dummy Authorization header
 * (emulators check its shape, not its signature). The answer body goes to *out. Returns the
 * HTTP status, or -1 when no answer came. */
long k2p_test_kinesis_raw(const char *endpoint, const char *op, const char *body, k2p_buf *out);

#endif

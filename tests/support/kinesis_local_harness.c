/* kinesis_local_harness.c - runs kinesis-local as a child process for a test.
 *
 * Threading: main test thread only.
 */
#include "kinesis_local_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/common.h"
#include "pg_harness.h"

#define KL_DIR K2P_SOURCE_DIR "/tests/emulators/node_modules/kinesis-local"
#define KL_START_ATTEMPTS 3
#define KL_READY_MS 60000

static int can_connect(int port)
{
    struct sockaddr_in sa;
    int ok, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t spawn(int port, int tls_port)
{
    pid_t parent = getpid(), pid = fork();
    if (pid != 0)
        return pid;
    {
        char p[16], t[16];
        int devnull;
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        if (chdir(KL_DIR) != 0)
            _exit(127);
        /* Nothing to read; its INFO logs (one line per request) would drown the test's. */
        devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        snprintf(p, sizeof p, "%d", port);
        snprintf(t, sizeof t, "%d", tls_port);
        setenv("KINESIS_MOCK_PLAIN_PORT", p, 1);
        setenv("KINESIS_MOCK_TLS_PORT", t, 1);
        setenv("KINESIS_MOCK_CERT_PATH", KL_DIR "/server.json", 1);
        setenv("LOG_LEVEL", "ERROR", 1);
        setenv("SHOULD_PERSIST_DATA", "false", 1);
        setenv("LOAD_DATA_IF_EXISTS", "false", 1);
        setenv("AWS_REGION", "us-east-1", 1);
        setenv("SHARD_LIMIT", "1000", 1);
        static const char *const zero[] = {
            "CREATE_STREAM_DURATION",        "DELETE_STREAM_DURATION",
            "REGISTER_STREAM_CONSUMER_DURATION", "DEREGISTER_STREAM_CONSUMER_DURATION",
            "MERGE_SHARDS_DURATION",         "SPLIT_SHARD_DURATION",
            "UPDATE_SHARD_COUNT_DURATION"};
        for (size_t i = 0; i < K2P_ARRAY_LEN(zero); i++)
            setenv(zero[i], "0ms", 1);
        /* It has no setting for the address it listens on (every interface): the preload
         * binds its servers to 127.0.0.1. */
        execlp("node", "node", "--require", K2P_SOURCE_DIR "/tests/emulators/loopback-only.js",
               "main.js", (char *)NULL);
        _exit(127);
    }
}

int k2p_test_kinesis_local_start(k2p_test_kinesis_local *k)
{
    memset(k, 0, sizeof *k);
    if (access(KL_DIR "/main.js", R_OK) != 0) {
        fprintf(stderr, "kinesis-local is not installed in tests/emulators (run "
                        "scripts/setup.sh)\n");
        return -1;
    }
    /* The ports were free when picked; if another process takes one first, kinesis-local
     * exits and we try again with new ones. */
    for (int attempt = 0; attempt < KL_START_ATTEMPTS; attempt++) {
        int64_t deadline = k2p_now_ns() + (int64_t)KL_READY_MS * 1000000;
        k->port = k2p_test_free_port();
        k->tls_port = k2p_test_free_port();
        if (!k->port || !k->tls_port || k->port == k->tls_port)
            continue;
        k->pid = spawn(k->port, k->tls_port);
        if (k->pid < 0) {
            perror("fork");
            return -1;
        }
        while (k2p_now_ns() < deadline) {
            int st;
            if (waitpid(k->pid, &st, WNOHANG) == k->pid) {
                k->pid = 0;
                if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
                    fprintf(stderr, "kinesis-local: could not run node in %s\n", KL_DIR);
                    return -1;
                }
                break;
            }
            if (can_connect(k->port) && can_connect(k->tls_port)) {
                snprintf(k->endpoint, sizeof k->endpoint, "http://127.0.0.1:%d", k->port);
                snprintf(k->tls_endpoint, sizeof k->tls_endpoint, "https://127.0.0.1:%d",
                         k->tls_port);
                return 0;
            }
            sleep_ms(50);
        }
        k2p_test_kinesis_local_stop(k);
    }
    fprintf(stderr, "kinesis-local did not start\n");
    return -1;
}

void k2p_test_kinesis_local_stop(k2p_test_kinesis_local *k)
{
    if (k->pid > 0) {
        int st;
        int64_t deadline = k2p_now_ns() + 10 * (int64_t)1000000000;
        kill(k->pid, SIGTERM);
        while (waitpid(k->pid, &st, WNOHANG) == 0) {
            if (k2p_now_ns() > deadline) {
                kill(k->pid, SIGKILL);
                waitpid(k->pid, &st, 0);
                break;
            }
            sleep_ms(20);
        }
        k->pid = 0;
    }
}

/* kinesis_local_harness.h - starts a real kinesis-local (npm; a build of kinesis-mock) on free
 * ports for a test: the second Kinesis emulator, the one with stream consumers,
 * SubscribeToShard (HTTP/2 cleartext with prior knowledge, or HTTP/1.1 chunked) and ChildShards.
 *
 * kinesis-local has no option to choose its listening address (it would listen on every
 * interface): node runs it with tests/emulators/loopback-only.js preloaded, which binds its
 * servers to 127.0.0.1, on ports the harness picks free there. The
 * server is a child process that gets SIGTERM when the test process dies (PR_SET_PDEATHSIG).
 * Streams are created and consumers registered at once (the *_DURATION settings are 0).
 * Threading: call from the test's main thread.
 */
#ifndef K2P_KINESIS_LOCAL_HARNESS_H
#define K2P_KINESIS_LOCAL_HARNESS_H

#include <sys/types.h>

typedef struct k2p_test_kinesis_local {
    pid_t pid;
    int port;              /* plain HTTP (HTTP/1.1 and h2c) */
    int tls_port;          /* HTTPS with its self-signed certificate */
    char endpoint[64];     /* "http://127.0.0.1:PORT" */
    char tls_endpoint[64]; /* "https://127.0.0.1:TLS_PORT" */
} k2p_test_kinesis_local;

/* Starts kinesis-local from tests/emulators/node_modules and waits (up to 60 s) until it
 * accepts connections. 0, or -1 with the reason on stderr (not installed: run
 * scripts/setup.sh). */
int k2p_test_kinesis_local_start(k2p_test_kinesis_local *k);

/* SIGTERM, then waits (SIGKILL after 10 s). Safe to call twice. */
void k2p_test_kinesis_local_stop(k2p_test_kinesis_local *k);

#endif

/* kinesalite_harness.h - starts a real kinesalite (npm) on a free loopback port for a test.
 *
 * The server is a child process that exits when the test process dies (its stdin is a pipe
 * from us, and PR_SET_PDEATHSIG), so no test leaves one running.
 * Threading: call from the test's main thread.
 */
#ifndef K2P_KINESALITE_HARNESS_H
#define K2P_KINESALITE_HARNESS_H

#include <sys/types.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/kinesis_client.h"

typedef struct k2p_test_kinesalite {
    pid_t pid;
    int stdin_fd;
    int port;
    char endpoint[64]; /* "http://127.0.0.1:PORT" */
} k2p_test_kinesalite;

/* Starts kinesalite; 0 or -1 (message on stderr). Waits until it accepts connections. */
int k2p_test_kinesalite_start(k2p_test_kinesalite *k);
void k2p_test_kinesalite_stop(k2p_test_kinesalite *k);

/* Credentials the tests use against emulators (emulators accept any signature). */
k2p_cred_chain *k2p_test_cred_chain(void);

/* A client for `endpoint` with test credentials and region us-east-1; aborts on failure. */
k2p_kinesis *k2p_test_kinesis_client(const char *endpoint, k2p_cred_chain *creds);

#endif

/* kinesalite_harness.c - runs kinesalite as a child process on a free loopback port.
 *
 * Threading: main test thread only.
 */
#include "kinesalite_harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int k2p_test_kinesalite_start(k2p_test_kinesalite *k)
{
    int in[2], out[2];
    char line[32];
    size_t n = 0;
    pid_t parent = getpid();

    memset(k, 0, sizeof *k);
    if (pipe(in) || pipe(out)) {
        perror("pipe");
        return -1;
    }
    k->pid = fork();
    if (k->pid < 0) {
        perror("fork");
        return -1;
    }
    if (k->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        if (chdir(K2P_SOURCE_DIR "/tests/emulators") != 0)
            _exit(127);
        execlp("node", "node", "kinesalite-server.js", "0", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    k->stdin_fd = in[1];
    /* The server prints its port once it listens. */
    while (n + 1 < sizeof line) {
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(out[0]);
    k->port = (int)strtol(line, NULL, 10);
    if (k->port <= 0) {
        fprintf(stderr, "kinesalite did not start (is it installed? run scripts/setup.sh)\n");
        k2p_test_kinesalite_stop(k);
        return -1;
    }
    snprintf(k->endpoint, sizeof k->endpoint, "http://127.0.0.1:%d", k->port);
    return 0;
}

void k2p_test_kinesalite_stop(k2p_test_kinesalite *k)
{
    if (k->pid > 0) {
        int st;
        kill(k->pid, SIGTERM);
        waitpid(k->pid, &st, 0);
        k->pid = 0;
    }
    if (k->stdin_fd > 0) {
        close(k->stdin_fd);
        k->stdin_fd = 0;
    }
}

k2p_cred_chain *k2p_test_cred_chain(void)
{
    k2p_cred_provider *p =
        k2p_cred_provider_static_new("AKIDTESTKINESIS2PG", "test-secret-not-real", NULL);
    return p ? k2p_cred_chain_new(&p, 1) : NULL;
}

k2p_kinesis *k2p_test_kinesis_client(const char *endpoint, k2p_cred_chain *creds)
{
    k2p_err err = {0};
    k2p_kinesis_opts o = {0};
    k2p_kinesis *k;
    o.endpoint = endpoint;
    o.region = "us-east-1";
    o.creds = creds;
    k = k2p_kinesis_new(&o, &err);
    if (!k) {
        fprintf(stderr, "kinesis client: %s\n", err.msg);
        abort();
    }
    return k;
}

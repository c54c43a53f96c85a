/* pg_cut_proxy.h - a TCP proxy between a test's loader and PostgreSQL, on 127.0.0.1, that can
 * lose the answer of a COMMIT: it forwards a writer's COMMIT (a simple-protocol query in a
 * transaction that sent a COPY) to the server, waits until the server has committed, then cuts
 * both connections without forwarding the answer. The client cannot know whether its
 * transaction committed: the case a loader must settle without redoing it.
 *
 * Threading: the proxy runs its own thread; the functions are called from the test's thread.
 */
#ifndef K2P_PG_CUT_PROXY_H
#define K2P_PG_CUT_PROXY_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct k2p_cut_proxy {
    int listen_fd;
    int port;             /* where clients connect */
    int target_port;      /* PostgreSQL on 127.0.0.1 */
    atomic_int cut_after; /* cut the answer of this many more COPY transactions' COMMITs
                             (counting down to 0), after skipping `skip` of them */
    atomic_int skip;
    atomic_int cuts_done;
    atomic_bool stop;
    pthread_t thread;
} k2p_cut_proxy;

/* Starts the proxy to PostgreSQL at 127.0.0.1:target_port. 0 or -1 (printed). */
int k2p_cut_proxy_start(k2p_cut_proxy *p, int target_port);

/* Arms it: the (skip+1)-th .. (skip+n)-th COMMIT of a transaction with a COPY lose their
 * answers. */
void k2p_cut_proxy_arm(k2p_cut_proxy *p, int skip, int n);

void k2p_cut_proxy_stop(k2p_cut_proxy *p);

#endif

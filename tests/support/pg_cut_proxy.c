/* pg_cut_proxy.c - a PostgreSQL proxy that loses COMMIT answers (see pg_cut_proxy.h).
 *
 * One thread polls every connection pair. The client-to-server direction is parsed as the
 * frontend protocol (an optional SSLRequest or GSSENCRequest, the startup packet, then typed
 * messages) so a COMMIT can be recognised; the server-to-client direction is relayed as bytes,
 * except that after a cut COMMIT nothing more is relayed and the pair is closed.
 *
 * Threading: the proxy thread owns the connections; the test thread only touches atomics.
 */
#include "pg_cut_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 64

typedef struct pair {
    int c, s;             /* client and server sockets; -1 when closed */
    unsigned char *in;    /* client bytes not yet parsed into whole messages */
    size_t in_len, in_cap;
    int startup_done;     /* the startup packet went through */
    int in_copy_txn;      /* a COPY was sent since the last COMMIT/ROLLBACK */
} pair;

static void pair_close(pair *q)
{
    if (q->c >= 0)
        close(q->c);
    if (q->s >= 0)
        close(q->s);
    free(q->in);
    memset(q, 0, sizeof *q);
    q->c = q->s = -1;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Forwards the whole client messages buffered in q; returns 1 when the pair must be cut after
 * a COMMIT, -1 on an error, 0 otherwise. */
static int forward_client(k2p_cut_proxy *p, pair *q)
{
    size_t off = 0;
    int rc = 0;
    while (rc == 0) {
        size_t len;
        if (!q->startup_done) {
            uint32_t code;
            if (q->in_len - off < 8)
                break;
            len = be32(q->in + off);
            if (len < 8 || q->in_len - off < len)
                break;
            code = be32(q->in + off + 4);
            /* SSLRequest / GSSENCRequest: the server answers one byte, the startup follows */
            if (!(len == 8 && (code == 80877103 || code == 80877104)))
                q->startup_done = 1;
        } else {
            if (q->in_len - off < 5)
                break;
            len = 1 + be32(q->in + off + 1);
            if (q->in_len - off < len)
                break;
            if (q->in[off] == 'Q') {
                const char *sql = (const char *)q->in + off + 5;
                size_t n = len - 5;
                if (n >= 4 && strncasecmp(sql, "COPY", 4) == 0)
                    q->in_copy_txn = 1;
                else if (n >= 6 && strncasecmp(sql, "COMMIT", 6) == 0 && q->in_copy_txn) {
                    q->in_copy_txn = 0;
                    if (atomic_load(&p->skip) > 0)
                        atomic_fetch_sub(&p->skip, 1);
                    else if (atomic_load(&p->cut_after) > 0) {
                        atomic_fetch_sub(&p->cut_after, 1);
                        rc = 1;
                    }
                } else if (n >= 8 && strncasecmp(sql, "ROLLBACK", 8) == 0) {
                    q->in_copy_txn = 0;
                }
            }
        }
        if (write_all(q->s, q->in + off, len) != 0)
            rc = -1;
        off += len;
    }
    memmove(q->in, q->in + off, q->in_len - off);
    q->in_len -= off;
    return rc;
}

static void *run(void *arg)
{
    k2p_cut_proxy *p = arg;
    pair pairs[MAX_PAIRS];
    for (int i = 0; i < MAX_PAIRS; i++) {
        memset(&pairs[i], 0, sizeof pairs[i]);
        pairs[i].c = pairs[i].s = -1;
    }
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[1 + 2 * MAX_PAIRS];
        int nf = 1;
        fds[0] = (struct pollfd){p->listen_fd, POLLIN, 0};
        for (int i = 0; i < MAX_PAIRS; i++) {
            if (pairs[i].c < 0)
                continue;
            fds[nf++] = (struct pollfd){pairs[i].c, POLLIN, 0};
            fds[nf++] = (struct pollfd){pairs[i].s, POLLIN, 0};
        }
        if (poll(fds, (nfds_t)nf, 100) <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            int c = accept(p->listen_fd, NULL, NULL), slot = -1;
            for (int i = 0; c >= 0 && i < MAX_PAIRS && slot < 0; i++)
                if (pairs[i].c < 0)
                    slot = i;
            if (c >= 0 && slot >= 0) {
                struct sockaddr_in sa = {0};
                int s = socket(AF_INET, SOCK_STREAM, 0);
                sa.sin_family = AF_INET;
                sa.sin_port = htons((uint16_t)p->target_port);
                sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
                    pairs[slot].c = c;
                    pairs[slot].s = s;
                } else {
                    if (s >= 0)
                        close(s);
                    close(c);
                }
            } else if (c >= 0) {
                close(c);
            }
        }
        for (int k = 1; k < nf; k += 2) {
            pair *q = NULL;
            for (int i = 0; i < MAX_PAIRS && !q; i++)
                if (pairs[i].c == fds[k].fd)
                    q = &pairs[i];
            if (!q)
                continue;
            if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) { /* client -> server */
                unsigned char buf[65536];
                ssize_t n = recv(q->c, buf, sizeof buf, 0);
                int rc;
                if (n <= 0) {
                    pair_close(q);
                    continue;
                }
                if (q->in_len + (size_t)n > q->in_cap) {
                    size_t cap = q->in_cap ? q->in_cap : 65536;
                    while (cap < q->in_len + (size_t)n)
                        cap *= 2;
                    q->in = realloc(q->in, cap);
                    if (!q->in) {
                        pair_close(q);
                        continue;
                    }
                    q->in_cap = cap;
                }
                memcpy(q->in + q->in_len, buf, (size_t)n);
                q->in_len += (size_t)n;
                rc = forward_client(p, q);
                if (rc == 1) {
                    /* The server has the COMMIT: let it commit, then lose its answer. */
                    struct timespec ts = {0, 300 * 1000000L};
                    nanosleep(&ts, NULL);
                    atomic_fetch_add(&p->cuts_done, 1);
                    pair_close(q);
                    continue;
                }
                if (rc < 0) {
                    pair_close(q);
                    continue;
                }
            }
            if (fds[k + 1].revents & (POLLIN | POLLHUP | POLLERR)) { /* server -> client */
                unsigned char buf[65536];
                ssize_t n = recv(q->s, buf, sizeof buf, 0);
                if (n <= 0 || write_all(q->c, buf, (size_t)n) != 0)
                    pair_close(q);
            }
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        if (pairs[i].c >= 0)
            pair_close(&pairs[i]);
    return NULL;
}

int k2p_cut_proxy_start(k2p_cut_proxy *p, int target_port)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    int one = 1;
    memset(p, 0, sizeof *p);
    p->target_port = target_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0)
        return -1;
    setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(p->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->listen_fd, 64) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("pg_cut_proxy");
        close(p->listen_fd);
        return -1;
    }
    p->port = ntohs(sa.sin_port);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        close(p->listen_fd);
        return -1;
    }
    return 0;
}

void k2p_cut_proxy_arm(k2p_cut_proxy *p, int skip, int n)
{
    atomic_store(&p->skip, skip);
    atomic_store(&p->cut_after, n);
}

void k2p_cut_proxy_stop(k2p_cut_proxy *p)
{
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
}

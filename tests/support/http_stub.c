/* http_stub.c - a tiny threaded HTTP/1.1 test server on 127.0.0.1 (see http_stub.h).
 *
 * Threading: one accept thread, plus one thread per connection. Everything shared (routes,
 * recorded requests, the gate, the connection list) is guarded by s->mu; s->cv is broadcast
 * when a request is recorded, the gate opens or the stub stops. Threads poll in 20 ms steps and
 * check s->stopping, so stop never needs to close another thread's descriptor.
 */
#include "http_stub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (64u << 10)
#define BODY_MAX (256u << 10)
#define POLL_STEP_MS 20

typedef struct route {
    char method[16]; /* "" = any */
    char *path;
    k2p_stub_response *responses; /* bodies and content types are heap copies */
    size_t n, used;
} route;

typedef struct conn {
    k2p_http_stub *s;
    int fd;
    pthread_t thr;
    int started;
} conn;

struct k2p_http_stub {
    int lfd;
    int port;
    char url[64];
    pthread_t accept_thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu: */
    int stopping;
    int gate_open;
    route *routes;
    size_t n_routes;
    k2p_stub_request *reqs;
    size_t n_reqs, cap_reqs;
    conn **conns;
    size_t n_conns, cap_conns;
};

/* ---- recorded requests ------------------------------------------------------------------- */

void k2p_stub_request_deinit(k2p_stub_request *r)
{
    if (!r)
        return;
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int copy_request(k2p_stub_request *dst, const k2p_stub_request *src)
{
    *dst = *src;
    dst->head = strdup(src->head ? src->head : "");
    dst->body = malloc(src->body_len + 1);
    if (!dst->head || !dst->body) {
        k2p_stub_request_deinit(dst);
        return -1;
    }
    memcpy(dst->body, src->body ? src->body : "", src->body_len);
    dst->body[src->body_len] = '\0';
    return 0;
}

const char *k2p_stub_request_header(const k2p_stub_request *r, const char *name, char *buf,
                                    size_t size)
{
    size_t nl = strlen(name);
    for (const char *p = r->head; p && *p;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            size_t vl = len - nl - 1;
            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            snprintf(buf, size, "%.*s", (int)vl, v);
            return buf;
        }
        p += len + (e ? 2 : 0);
    }
    return NULL;
}

static int path_matches(const char *target, const char *path)
{
    size_t n = strcspn(target, "?");
    return strlen(path) == n && strncmp(target, path, n) == 0;
}

/* ---- connection thread ------------------------------------------------------------------- */

static int stopping(k2p_http_stub *s)
{
    int v;
    pthread_mutex_lock(&s->mu);
    v = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Reads into buf until `done` says the request is complete. -1 on EOF, error or stop. */
static int read_request(k2p_http_stub *s, int fd, char *buf, size_t cap, size_t *len,
                        size_t *head_len, size_t *body_len)
{
    *len = 0;
    *head_len = 0;
    *body_len = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        if (*head_len == 0) {
            char *e;
            buf[*len] = '\0';
            if ((e = strstr(buf, "\r\n\r\n")) != NULL) {
                const char *cl = strcasestr(buf, "\r\nContent-Length:");
                *head_len = (size_t)(e - buf) + 4;
                if (cl && cl < e)
                    *body_len = strtoul(cl + 17, NULL, 10);
                if (*body_len > BODY_MAX)
                    return -1;
            }
        }
        if (*head_len && *len >= *head_len + *body_len)
            return 0;
        if (*len >= cap)
            return -1;
        if (stopping(s))
            return -1;
        if (poll(&p, 1, POLL_STEP_MS) <= 0)
            continue;
        r = recv(fd, buf + *len, cap - *len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        *len += (size_t)r;
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Waits until the client closes the connection or the stub stops. */
static void hang(k2p_http_stub *s, int fd)
{
    while (!stopping(s)) {
        struct pollfd p = {fd, POLLIN, 0};
        char b[256];
        if (poll(&p, 1, POLL_STEP_MS) > 0 && recv(fd, b, sizeof b, 0) <= 0)
            return;
    }
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    k2p_http_stub *s = c->s;
    size_t cap = HEAD_MAX + BODY_MAX, len, head_len, body_len;
    char *buf = malloc(cap + 1);
    k2p_stub_request req;
    k2p_stub_response resp = {K2P_STUB_RESPOND, 404, NULL, "no route\n", 0};
    char *body_copy = NULL, *ctype_copy = NULL;

    memset(&req, 0, sizeof req);
    if (!buf || read_request(s, c->fd, buf, cap, &len, &head_len, &body_len) < 0)
        goto out;
    {
        const char *sp1 = memchr(buf, ' ', head_len), *sp2, *eol = strstr(buf, "\r\n");
        sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
        if (!sp1 || !sp2 || sp2 > eol)
            goto out;
        snprintf(req.method, sizeof req.method, "%.*s", (int)(sp1 - buf), buf);
        snprintf(req.target, sizeof req.target, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
        req.head = strndup(eol + 2, head_len - (size_t)(eol + 2 - buf) - 2);
        req.body = malloc(body_len + 1);
        if (!req.head || !req.body)
            goto out;
        memcpy(req.body, buf + head_len, body_len);
        req.body[body_len] = '\0';
        req.body_len = body_len;
    }

    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_routes; i++) {
        route *rt = &s->routes[i];
        if ((rt->method[0] && strcmp(rt->method, req.method) != 0) ||
            !path_matches(req.target, rt->path))
            continue;
        resp = rt->responses[rt->used < rt->n ? rt->used : rt->n - 1];
        rt->used++;
        break;
    }
    if (s->n_reqs == s->cap_reqs) {
        size_t nc = s->cap_reqs ? 2 * s->cap_reqs : 16;
        k2p_stub_request *n = realloc(s->reqs, nc * sizeof *n);
        if (!n)
            abort();
        s->reqs = n;
        s->cap_reqs = nc;
    }
    s->reqs[s->n_reqs++] = req; /* the stub owns the strings from here on */
    memset(&req, 0, sizeof req);
    /* Copies, so a reset while we wait at the gate cannot free what we are about to send. */
    body_copy = strdup(resp.body ? resp.body : "");
    ctype_copy = strdup(resp.content_type ? resp.content_type : "text/plain");
    pthread_cond_broadcast(&s->cv);
    while (resp.gated && !s->gate_open && !s->stopping)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (!body_copy || !ctype_copy)
        goto out;

    switch (resp.action) {
    case K2P_STUB_HANG:
        hang(s, c->fd);
        break;
    case K2P_STUB_CLOSE:
        break;
    case K2P_STUB_RESPOND: {
        char head[512];
        size_t bl = strlen(body_copy);
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %d Stub\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         resp.status, ctype_copy, bl);
        send_all(c->fd, head, (size_t)n);
        send_all(c->fd, body_copy, bl);
        break;
    }
    }
out:
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    k2p_stub_request_deinit(&req);
    free(body_copy);
    free(ctype_copy);
    free(buf);
    return NULL;
}

/* ---- accept thread ----------------------------------------------------------------------- */

static void *accept_main(void *arg)
{
    k2p_http_stub *s = arg;
    while (!stopping(s)) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        conn *c;
        int fd;
        if (poll(&p, 1, POLL_STEP_MS) <= 0)
            continue;
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        if (s->n_conns == s->cap_conns) {
            size_t nc = s->cap_conns ? 2 * s->cap_conns : 16;
            conn **n = realloc(s->conns, nc * sizeof *n);
            if (n) {
                s->conns = n;
                s->cap_conns = nc;
            }
        }
        if (s->n_conns < s->cap_conns && pthread_create(&c->thr, NULL, conn_main, c) == 0) {
            c->started = 1;
            s->conns[s->n_conns++] = c;
        } else {
            close(fd);
            free(c);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

k2p_http_stub *k2p_http_stub_start(void)
{
    k2p_http_stub *s = calloc(1, sizeof *s);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int one = 1;

    if (!s)
        return NULL;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 64) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0) {
        fprintf(stderr, "http_stub: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        if (s->lfd >= 0)
            close(s->lfd);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->accept_thr, NULL, accept_main, s) != 0) {
        fprintf(stderr, "http_stub: cannot start the accept thread\n");
        close(s->lfd);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

static void free_routes(k2p_http_stub *s)
{
    for (size_t i = 0; i < s->n_routes; i++) {
        for (size_t j = 0; j < s->routes[i].n; j++) {
            free((char *)s->routes[i].responses[j].body);
            free((char *)s->routes[i].responses[j].content_type);
        }
        free(s->routes[i].responses);
        free(s->routes[i].path);
    }
    free(s->routes);
    s->routes = NULL;
    s->n_routes = 0;
}

static void free_requests(k2p_http_stub *s)
{
    for (size_t i = 0; i < s->n_reqs; i++)
        k2p_stub_request_deinit(&s->reqs[i]);
    free(s->reqs);
    s->reqs = NULL;
    s->n_reqs = s->cap_reqs = 0;
}

void k2p_http_stub_stop(k2p_http_stub *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    s->gate_open = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->accept_thr, NULL);
    /* No new connection can appear now: the accept thread is gone. */
    for (size_t i = 0; i < s->n_conns; i++) {
        pthread_join(s->conns[i]->thr, NULL);
        free(s->conns[i]);
    }
    free(s->conns);
    close(s->lfd);
    free_routes(s);
    free_requests(s);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *k2p_http_stub_url(const k2p_http_stub *s)
{
    return s->url;
}

int k2p_http_stub_port(const k2p_http_stub *s)
{
    return s->port;
}

/* ---- routes ------------------------------------------------------------------------------ */

void k2p_http_stub_add_response(k2p_http_stub *s, const char *method, const char *path,
                                const k2p_stub_response *r)
{
    route *rt = NULL;
    k2p_stub_response copy = *r;

    copy.body = strdup(r->body ? r->body : "");
    copy.content_type = strdup(r->content_type ? r->content_type : "text/plain");
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_routes; i++) {
        if (strcmp(s->routes[i].method, method ? method : "") == 0 &&
            strcmp(s->routes[i].path, path) == 0)
            rt = &s->routes[i];
    }
    if (!rt) {
        route *n = realloc(s->routes, (s->n_routes + 1) * sizeof *n);
        if (!n)
            abort();
        s->routes = n;
        rt = &s->routes[s->n_routes++];
        memset(rt, 0, sizeof *rt);
        snprintf(rt->method, sizeof rt->method, "%s", method ? method : "");
        rt->path = strdup(path);
    }
    {
        k2p_stub_response *n = realloc(rt->responses, (rt->n + 1) * sizeof *n);
        if (!n || !rt->path || !copy.body || !copy.content_type)
            abort();
        rt->responses = n;
        rt->responses[rt->n++] = copy;
    }
    pthread_mutex_unlock(&s->mu);
}

void k2p_http_stub_add(k2p_http_stub *s, const char *method, const char *path, int status,
                       const char *body)
{
    k2p_stub_response r = {K2P_STUB_RESPOND, status, NULL, body, 0};
    k2p_http_stub_add_response(s, method, path, &r);
}

void k2p_http_stub_reset(k2p_http_stub *s)
{
    pthread_mutex_lock(&s->mu);
    free_routes(s);
    free_requests(s);
    s->gate_open = 0;
    pthread_mutex_unlock(&s->mu);
}

void k2p_http_stub_open_gate(k2p_http_stub *s)
{
    pthread_mutex_lock(&s->mu);
    s->gate_open = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- inspection -------------------------------------------------------------------------- */

static size_t count_locked(k2p_http_stub *s, const char *method, const char *path)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_reqs; i++)
        if ((!method || strcmp(s->reqs[i].method, method) == 0) &&
            (!path || path_matches(s->reqs[i].target, path)))
            n++;
    return n;
}

size_t k2p_http_stub_count(k2p_http_stub *s, const char *method, const char *path)
{
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = count_locked(s, method, path);
    pthread_mutex_unlock(&s->mu);
    return n;
}

int k2p_http_stub_wait_count(k2p_http_stub *s, const char *method, const char *path, size_t n,
                             int timeout_ms)
{
    struct timespec dl;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (count_locked(s, method, path) < n) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            rc = count_locked(s, method, path) >= n ? 0 : -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int k2p_http_stub_request(k2p_http_stub *s, size_t i, k2p_stub_request *out)
{
    int rc = -1;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    if (i < s->n_reqs)
        rc = copy_request(out, &s->reqs[i]);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

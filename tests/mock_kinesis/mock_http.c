/* mock_http.c - epoll HTTP/1.1 server for mock_kinesis (see mock_http.h).
 *
 * Threading: each worker thread owns an epoll instance and the connections it accepted;
 * nothing about a connection is shared. Workers share only the listening socket and the stop
 * eventfd (both level-triggered, read-only for them) and the atomic counters in mock_stats.
 */
#include "mock_http.h"

#include "mock_h2.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HEADER_MAX (64u << 10)
#define BODY_MAX ((size_t)32 << 20)
#define READ_CHUNK (64u << 10)
#define BODY_KEEP ((size_t)1 << 20) /* larger answer buffers are freed once sent */

typedef struct worker worker;

typedef struct conn {
    int fd;
    uint64_t id;
    struct conn *prev, *next;
    k2p_buf in;
    size_t in_off; /* start of the next unparsed request */
    char head[768];
    size_t head_len, head_off;
    k2p_buf body;
    size_t body_off, body_send; /* body_send < body.len when truncating */
    bool busy;                  /* an answer is pending */
    bool close_after;           /* close once it is sent */
    bool delayed;
    int64_t due_ns;
    bool peer_eof;
    bool sent_continue;
    uint32_t events;  /* current epoll interest */
    bool proto_known; /* HTTP/1.1 or HTTP/2 decided (from the first bytes) */
    mock_h2 *h2;      /* HTTP/2 connections: everything goes through it */
    int64_t tick_ns;  /* HTTP/2 with push streams: next tick */
} conn;

struct worker {
    mock_http *h;
    int ep;
    pthread_t thr;
    bool running;
    conn *conns;
    size_t n_delayed;
    size_t n_h2; /* HTTP/2 connections (they may need ticks) */
    uint64_t next_id;
    int index;
};

struct mock_http {
    int lfd, stopfd;
    int port;
    int n_workers;
    worker *workers;
    bool started;
    mock_http_opts o;
};

/* epoll tags for the two shared descriptors (connections use their conn pointer). */
static char listen_tag, stop_tag;

static int64_t mono_ns(void)
{
    return k2p_now_ns();
}

/* ---- connections -------------------------------------------------------------------------- */

static void set_interest(worker *w, conn *c, uint32_t ev)
{
    struct epoll_event e = {0};
    if (c->events == ev)
        return;
    e.events = ev;
    e.data.ptr = c;
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static void conn_close(worker *w, conn *c, bool reset)
{
    if (reset) {
        /* SO_LINGER 0: close() sends RST instead of FIN, the client sees a reset. */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->delayed)
        w->n_delayed--;
    if (c->h2) {
        mock_h2_free(c->h2);
        w->n_h2--;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    k2p_buf_deinit(&c->in);
    k2p_buf_deinit(&c->body);
    if (w->h->o.stats)
        atomic_fetch_sub_explicit(&w->h->o.stats->conns_open, 1, memory_order_relaxed);
    free(c);
}

static void accept_all(worker *w)
{
    mock_http *h = w->h;
    for (;;) {
        int one = 1;
        struct epoll_event e = {0};
        conn *c;
        int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: the listener stays readable; do not spin on it. */
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
            }
            return;
        }
        /* Small answers on a keep-alive connection must not wait for Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->id = ((uint64_t)w->index << 48) | ++w->next_id;
        k2p_buf_init(&c->in, HEADER_MAX + BODY_MAX + READ_CHUNK);
        k2p_buf_init(&c->body, 64u << 20);
        e.events = EPOLLIN;
        e.data.ptr = c;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->events = EPOLLIN;
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        if (h->o.stats) {
            mock_stat_add(&h->o.stats->conns_accepted, 1);
            atomic_fetch_add_explicit(&h->o.stats->conns_open, 1, memory_order_relaxed);
        }
    }
}

/* Reads what is available. 0 (maybe with peer_eof set) or -1 (error: close). */
static int conn_read(conn *c)
{
    for (;;) {
        ssize_t r;
        size_t room;
        if (k2p_buf_reserve(&c->in, READ_CHUNK))
            return -1;
        room = c->in.cap - c->in.len - 1;
        r = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            c->in.data[c->in.len] = '\0';
            if ((size_t)r < room)
                return 0;
            continue;
        }
        if (r == 0) {
            c->peer_eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
}

/* Writes the pending answer. 1 all sent, 0 would block, -1 error. */
static int conn_flush(conn *c)
{
    while (c->head_off < c->head_len || c->body_off < c->body_send) {
        struct iovec iov[2];
        struct msghdr m = {0};
        int n = 0;
        ssize_t wr;
        if (c->head_off < c->head_len) {
            iov[n].iov_base = c->head + c->head_off;
            iov[n++].iov_len = c->head_len - c->head_off;
        }
        if (c->body_off < c->body_send) {
            iov[n].iov_base = c->body.data + c->body_off;
            iov[n++].iov_len = c->body_send - c->body_off;
        }
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        wr = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (wr < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        if (c->head_off < c->head_len) {
            size_t hn = c->head_len - c->head_off;
            if ((size_t)wr < hn) {
                c->head_off += (size_t)wr;
                continue;
            }
            c->head_off = c->head_len;
            wr -= (ssize_t)hn;
        }
        c->body_off += (size_t)wr;
    }
    return 1;
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef struct parsed {
    mock_req req;
    size_t total; /* header + body bytes */
    bool keep_alive;
    bool expect_continue;
    int bad_status; /* when the request is unusable */
} parsed;

static bool token_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t i = 0, tl = strlen(tok);
    while (i < n) {
        size_t j = i, e;
        while (j < n && v[j] != ',')
            j++;
        e = j;
        while (i < e && (v[i] == ' ' || v[i] == '\t'))
            i++;
        while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - i == tl && strncasecmp(v + i, tok, tl) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

/* 1: a complete request in p; 0: need more bytes; -1: bad request (p->bad_status). */
static int parse_request(conn *c, parsed *p)
{
    const char *d = c->in.data + c->in_off, *end, *line, *sp1, *sp2, *eol;
    size_t avail = c->in.len - c->in_off, hlen;
    uint64_t clen = 0;
    bool http10;

    memset(p, 0, sizeof *p);
    if (avail == 0)
        return 0;
    end = memmem(d, avail, "\r\n\r\n", 4);
    if (!end) {
        if (avail > HEADER_MAX) {
            p->bad_status = 431;
            return -1;
        }
        return 0;
    }
    hlen = (size_t)(end - d) + 4;
    eol = memmem(d, hlen, "\r\n", 2);
    sp1 = memchr(d, ' ', (size_t)(eol - d));
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        p->bad_status = 400;
        return -1;
    }
    http10 = sp2[8] == '0';
    p->keep_alive = !http10;
    p->req.method = d;
    p->req.method_len = (size_t)(sp1 - d);
    p->req.path = sp1 + 1;
    p->req.path_len = (size_t)(sp2 - sp1 - 1);
    {
        const char *q = memchr(p->req.path, '?', p->req.path_len);
        if (q) {
            p->req.query = q + 1;
            p->req.query_len = (size_t)(p->req.path + p->req.path_len - q - 1);
            p->req.path_len = (size_t)(q - p->req.path);
        } else {
            p->req.query = "";
        }
    }
    p->req.target = "";
    for (line = eol + 2; line < end + 2;) {
        const char *le = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        const char *colon = memchr(line, ':', (size_t)(le - line));
        const char *v;
        size_t nl, vl;
        if (!colon) {
            p->bad_status = 400;
            return -1;
        }
        nl = (size_t)(colon - line);
        v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        vl = (size_t)(le - v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (token_eq(line, nl, "content-length")) {
            clen = 0;
            if (vl == 0 || vl > 12) {
                p->bad_status = 400;
                return -1;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    p->bad_status = 400;
                    return -1;
                }
                clen = clen * 10 + (uint64_t)(v[i] - '0');
            }
        } else if (token_eq(line, nl, "transfer-encoding")) {
            if (!token_eq(v, vl, "identity")) {
                p->bad_status = 501; /* chunked request bodies: not needed by any client */
                return -1;
            }
        } else if (token_eq(line, nl, "connection")) {
            if (has_token(v, vl, "close"))
                p->keep_alive = false;
            else if (has_token(v, vl, "keep-alive"))
                p->keep_alive = true;
        } else if (token_eq(line, nl, "expect")) {
            p->expect_continue = token_eq(v, vl, "100-continue");
        } else if (token_eq(line, nl, "x-amz-target")) {
            p->req.target = v;
            p->req.target_len = vl;
        }
        line = le + 2;
    }
    if (clen > BODY_MAX) {
        p->bad_status = 413;
        return -1;
    }
    if (avail < hlen + clen)
        return 0;
    p->req.body = d + hlen;
    p->req.body_len = (size_t)clen;
    p->total = hlen + (size_t)clen;
    return 1;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* Prepares the head of the answer in c (body already in c->body). */
static void conn_answer(worker *w, conn *c, const mock_resp *r)
{
    int n;
    c->body_send = r->action == MOCK_ACT_TRUNCATE ? c->body.len / 2 : c->body.len;
    if (r->action == MOCK_ACT_TRUNCATE)
        c->close_after = true;
    n = snprintf(c->head, sizeof c->head,
                 "HTTP/1.1 %d %s\r\n"
                 "x-amzn-RequestId: %016llx-0000-4000-8000-mock%08llx\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "%s%s%s"
                 "%s"
                 "\r\n",
                 r->status, reason(r->status), (unsigned long long)c->id,
                 (unsigned long long)(w->next_id & 0xffffffffu), r->content_type, c->body.len,
                 r->error_type ? "x-amzn-ErrorType: " : "", r->error_type ? r->error_type : "",
                 r->error_type ? "\r\n" : "", c->close_after ? "Connection: close\r\n" : "");
    c->head_len = n > 0 && (size_t)n < sizeof c->head ? (size_t)n : 0;
    c->head_off = 0;
    c->body_off = 0;
    c->busy = true;
    if (r->delay_ms > 0) {
        c->delayed = true;
        c->due_ns = mono_ns() + r->delay_ms * 1000000;
        w->n_delayed++;
    }
}

/* Answers a request that could not be parsed, then closes. */
static void conn_bad(worker *w, conn *c, int status)
{
    mock_resp r = {0};
    r.status = status;
    r.content_type = "application/x-amz-json-1.1";
    r.body = &c->body;
    k2p_buf_reset(&c->body);
    k2p_buf_printf(&c->body, "{\"__type\":\"SerializationException\",\"message\":\"HTTP %d %s\"}",
                   status, reason(status));
    c->close_after = true;
    conn_answer(w, c, &r);
}

static int64_t tick_ns(const mock_http *h)
{
    return (int64_t)(h->o.tick_ms > 0 ? h->o.tick_ms : 5) * 1000000;
}

/* An HTTP/2 connection: hands what was read to nghttp2, writes what it has. May free c. */
static void h2_progress(worker *w, conn *c)
{
    int f;
    if (c->in.len) {
        int rc = mock_h2_recv(c->h2, (const uint8_t *)c->in.data, c->in.len);
        k2p_buf_reset(&c->in);
        if (c->in.cap > BODY_KEEP)
            k2p_buf_deinit(&c->in);
        c->in_off = 0;
        if (rc) {
            mock_h2_flush(c->h2, c->fd); /* the GOAWAY, if it fits */
            conn_close(w, c, false);
            return;
        }
    }
    f = mock_h2_flush(c->h2, c->fd);
    if (mock_h2_want_reset(c->h2)) {
        conn_close(w, c, true);
        return;
    }
    if (f < 0 || c->peer_eof || (f == 1 && mock_h2_done(c->h2))) {
        conn_close(w, c, false);
        return;
    }
    set_interest(w, c, EPOLLIN | (f == 0 ? EPOLLOUT : 0));
    if (!mock_h2_pushing(c->h2))
        c->tick_ns = 0;
    else if (!c->tick_ns)
        c->tick_ns = mono_ns(); /* the first tick at once */
}

/* The first bytes of a connection: the HTTP/2 preface switches it to mock_h2. True when the
 * connection is (now) HTTP/2 or needs more bytes to tell. */
static bool detect_h2(worker *w, conn *c)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t avail = c->in.len, m = avail < 24 ? avail : 24;
    if (c->proto_known || avail == 0)
        return false;
    if (memcmp(c->in.data, preface, m) != 0) {
        c->proto_known = true;
        return false;
    }
    if (avail < 24) {
        set_interest(w, c, EPOLLIN);
        return true;
    }
    c->proto_known = true;
    c->h2 = mock_h2_new(w->h->o.handler, w->h->o.ud, c->id);
    if (!c->h2) {
        conn_close(w, c, true);
        return true;
    }
    w->n_h2++;
    if (w->h->o.stats)
        mock_stat_add(&w->h->o.stats->conns_h2, 1);
    h2_progress(w, c);
    return true;
}

/* Moves the connection forward: writes, then parses and handles requests, until it would
 * block. May free c. */
static void conn_progress(worker *w, conn *c)
{
    mock_http *h = w->h;
    if (c->h2) {
        h2_progress(w, c);
        return;
    }
    if (detect_h2(w, c))
        return;
    for (;;) {
        parsed p;
        mock_resp r;
        int pr;

        if (c->delayed) {
            set_interest(w, c, 0);
            return;
        }
        if (c->busy) {
            int f = conn_flush(c);
            if (f < 0) {
                conn_close(w, c, false);
                return;
            }
            if (f == 0) {
                set_interest(w, c, EPOLLOUT);
                return;
            }
            c->busy = false;
            c->head_len = c->head_off = 0;
            if (c->body.cap > BODY_KEEP)
                k2p_buf_deinit(&c->body);
            else
                k2p_buf_reset(&c->body);
            c->body_off = c->body_send = 0;
            if (c->close_after) {
                /* A truncated answer ends here too: the client sees fewer bytes than its
                 * Content-Length promised, then EOF. */
                conn_close(w, c, false);
                return;
            }
        }
        pr = parse_request(c, &p);
        if (pr < 0) {
            conn_bad(w, c, p.bad_status);
            continue;
        }
        if (pr == 0) {
            if (c->peer_eof) {
                conn_close(w, c, false);
                return;
            }
            if (c->in_off == c->in.len) {
                c->in_off = 0;
                k2p_buf_reset(&c->in);
                if (c->in.cap > BODY_KEEP)
                    k2p_buf_deinit(&c->in);
            } else if (c->in_off > 0) {
                memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
                c->in.len -= c->in_off;
                c->in.data[c->in.len] = '\0';
                c->in_off = 0;
            }
            /* A client waiting for "100 Continue" before its body (curl with big bodies). */
            if (p.expect_continue && !c->sent_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->sent_continue = true;
                if (send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL) !=
                    (ssize_t)(sizeof cont - 1)) {
                    conn_close(w, c, false);
                    return;
                }
            }
            set_interest(w, c, EPOLLIN);
            return;
        }
        c->sent_continue = false;
        memset(&r, 0, sizeof r);
        r.status = 200;
        r.content_type = "application/x-amz-json-1.1";
        r.body = &c->body;
        k2p_buf_reset(&c->body);
        c->close_after = !p.keep_alive;
        h->o.handler(h->o.ud, &p.req, &r);
        c->in_off += p.total;
        if (r.action == MOCK_ACT_RESET) {
            conn_close(w, c, true);
            return;
        }
        conn_answer(w, c, &r);
    }
}

/* ---- workers ------------------------------------------------------------------------------ */

static int next_timeout_ms(worker *w)
{
    int64_t now, best = INT64_MAX;
    if (!w->n_delayed && !w->n_h2)
        return -1;
    now = mono_ns();
    for (conn *c = w->conns; c; c = c->next) {
        if (c->delayed && c->due_ns < best)
            best = c->due_ns;
        if (c->h2 && c->tick_ns && c->tick_ns < best)
            best = c->tick_ns;
    }
    if (best == INT64_MAX)
        return -1;
    if (best <= now)
        return 0;
    return (int)((best - now + 999999) / 1000000);
}

static void fire_delayed(worker *w)
{
    int64_t now;
    conn *c, *next;
    if (!w->n_delayed && !w->n_h2)
        return;
    now = mono_ns();
    for (c = w->conns; c; c = next) {
        next = c->next; /* conn_progress may free c, never another connection */
        if (c->h2 && c->tick_ns && c->tick_ns <= now) {
            c->tick_ns = now + tick_ns(w->h);
            mock_h2_tick(c->h2, now);
            h2_progress(w, c);
            continue;
        }
        if (c->delayed && c->due_ns <= now) {
            c->delayed = false;
            w->n_delayed--;
            conn_progress(w, c);
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct epoll_event evs[128];
    bool stop = false;

    while (!stop) {
        int n = epoll_wait(w->ep, evs, (int)K2P_ARRAY_LEN(evs), next_timeout_ms(w));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            uint32_t ev = evs[i].events;
            conn *c;
            if (tag == &stop_tag) {
                stop = true;
                continue;
            }
            if (tag == &listen_tag) {
                accept_all(w);
                continue;
            }
            c = tag;
            if (ev & EPOLLERR) {
                conn_close(w, c, false);
                continue;
            }
            if ((ev & (EPOLLIN | EPOLLHUP)) && !c->busy && !c->delayed) {
                if (conn_read(c) < 0) {
                    conn_close(w, c, false);
                    continue;
                }
            } else if ((ev & EPOLLHUP) && c->delayed) {
                conn_close(w, c, false);
                continue;
            }
            conn_progress(w, c);
        }
        fire_delayed(w);
    }
    while (w->conns)
        conn_close(w, w->conns, false);
    return NULL;
}

/* ---- server ------------------------------------------------------------------------------- */

mock_http *mock_http_new(const mock_http_opts *o, k2p_err *err)
{
    mock_http *h = calloc(1, sizeof *h);
    struct sockaddr_in a = {0};
    socklen_t al = sizeof a;
    int one = 1;

    if (!h) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        return NULL;
    }
    h->o = *o;
    h->n_workers = o->threads > 0 ? o->threads : 2;
    h->stopfd = -1;
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->lfd < 0) {
        k2p_err_set(err, K2P_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)o->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(h->lfd, (struct sockaddr *)&a, sizeof a) != 0) {
        k2p_err_set(err, K2P_EIO, "bind 127.0.0.1:%d: %s", o->port, strerror(errno));
        goto fail;
    }
    if (listen(h->lfd, 4096) != 0 || getsockname(h->lfd, (struct sockaddr *)&a, &al) != 0) {
        k2p_err_set(err, K2P_EIO, "listen: %s", strerror(errno));
        goto fail;
    }
    h->port = ntohs(a.sin_port);
    h->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    h->workers = calloc((size_t)h->n_workers, sizeof *h->workers);
    if (h->stopfd < 0 || !h->workers) {
        k2p_err_set(err, K2P_EIO, "eventfd: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < h->n_workers; i++) {
        worker *w = &h->workers[i];
        struct epoll_event le = {0}, se = {0};
        w->h = h;
        w->index = i;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (w->ep < 0) {
            k2p_err_set(err, K2P_EIO, "epoll_create1: %s", strerror(errno));
            goto fail;
        }
        /* EPOLLEXCLUSIVE: a new connection wakes one worker, not all of them. */
        le.events = EPOLLIN | EPOLLEXCLUSIVE;
        le.data.ptr = &listen_tag;
        se.events = EPOLLIN;
        se.data.ptr = &stop_tag;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, h->lfd, &le) != 0 ||
            epoll_ctl(w->ep, EPOLL_CTL_ADD, h->stopfd, &se) != 0) {
            k2p_err_set(err, K2P_EIO, "epoll_ctl: %s", strerror(errno));
            goto fail;
        }
    }
    return h;
fail:
    mock_http_free(h);
    return NULL;
}

int mock_http_port(const mock_http *h)
{
    return h->port;
}

int mock_http_start(mock_http *h, k2p_err *err)
{
    for (int i = 0; i < h->n_workers; i++) {
        int rc = pthread_create(&h->workers[i].thr, NULL, worker_main, &h->workers[i]);
        if (rc) {
            mock_http_stop(h);
            return k2p_err_set(err, K2P_EIO, "pthread_create: %s", strerror(rc));
        }
        h->workers[i].running = true;
        h->started = true;
    }
    return 0;
}

void mock_http_stop(mock_http *h)
{
    uint64_t one = 1;
    if (!h || !h->started)
        return;
    /* The eventfd stays readable: every worker sees it (level-triggered) and exits. */
    if (write(h->stopfd, &one, sizeof one) != (ssize_t)sizeof one)
        perror("mock_kinesis: eventfd write");
    for (int i = 0; i < h->n_workers; i++) {
        if (h->workers[i].running) {
            pthread_join(h->workers[i].thr, NULL);
            h->workers[i].running = false;
        }
    }
    h->started = false;
}

void mock_http_free(mock_http *h)
{
    if (!h)
        return;
    mock_http_stop(h);
    if (h->workers) {
        for (int i = 0; i < h->n_workers; i++) {
            if (h->workers[i].ep > 0)
                close(h->workers[i].ep);
        }
        free(h->workers);
    }
    if (h->stopfd >= 0)
        close(h->stopfd);
    if (h->lfd >= 0)
        close(h->lfd);
    free(h);
}

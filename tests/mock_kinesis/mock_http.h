/* mock_http.h - the HTTP/1.1 server under mock_kinesis: loopback only, keep-alive,
 * Content-Length bodies, thousands of concurrent connections. A connection that opens with
 * the HTTP/2 preface ("PRI * HTTP/2.0", cleartext with prior knowledge) is served by
 * mock_h2.c instead: the same handler, plus long-lived event streams (mock_push) for
 * SubscribeToShard.
 *
 * A few worker threads each run their own epoll loop; the listening socket is in every loop
 * (EPOLLEXCLUSIVE), and a connection belongs to the worker that accepted it for its whole
 * life, so connection state needs no lock. Requests on one connection are answered in order;
 * while an answer is pending (being written, or held back by injected latency) the
 * connection is not read (back-pressure). The handler builds the answer; this layer adds the
 * status line and headers and can send it whole, truncated (Content-Length larger than the
 * bytes sent, then close) or not at all (connection reset).
 *
 * Threading: mock_http_new/start/stop/free from one controlling thread; the handler is called
 * concurrently from every worker thread and must be thread-safe.
 */
#ifndef MOCK_HTTP_H
#define MOCK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "mock_ctl.h"

typedef struct mock_req {
    const char *method, *path, *query, *target; /* not NUL-terminated: use the lengths */
    size_t method_len, path_len, query_len, target_len;
    const char *body;
    size_t body_len;
    bool http2; /* the request came over HTTP/2 */
} mock_req;

/* An answer that keeps streaming (HTTP/2 only): after the headers and the initial body, the
 * connection's worker calls tick every tick_ms while the stream is open and everything it
 * produced before has been handed to the socket layer (back-pressure). */
typedef enum mock_push_rc {
    MOCK_PUSH_MORE,       /* go on */
    MOCK_PUSH_END,        /* end the stream once `out` is sent (END_STREAM) */
    MOCK_PUSH_RESET_CONN, /* close the whole connection with RST at once */
} mock_push_rc;

typedef struct mock_push_ops {
    /* Appends bytes to out. Worker thread of the connection. */
    mock_push_rc (*tick)(void *push, k2p_buf *out, int64_t now_ns);
    /* The stream is over (ended, reset by the client, connection closed). Frees push. */
    void (*free)(void *push);
} mock_push_ops;

typedef enum mock_action {
    MOCK_ACT_SEND,     /* the whole answer */
    MOCK_ACT_TRUNCATE, /* headers + half the body, then close */
    MOCK_ACT_RESET,    /* no answer: close with RST */
} mock_action;

typedef struct mock_resp {
    int status;               /* 200 on entry */
    const char *content_type; /* application/x-amz-json-1.1 on entry */
    const char *error_type;   /* x-amzn-ErrorType header, or NULL */
    k2p_buf *body;            /* empty on entry; owned by the connection */
    mock_action action;
    int64_t delay_ms; /* hold the answer back this long (the worker keeps serving others);
                         HTTP/1.1 only */
    /* HTTP/2 only: set by the handler to stream; status 200, body = the first bytes. The
     * connection owns push from then on (push_ops->free). */
    const mock_push_ops *push_ops;
    void *push;
} mock_resp;

/* Called on a worker thread for each complete request. `req` points into the connection's
 * buffer and is valid during the call only. */
typedef void (*mock_handler)(void *ud, const mock_req *req, mock_resp *resp);

typedef struct mock_http_opts {
    int port;    /* 0: a free port */
    int threads; /* worker threads; 0: 2 */
    mock_handler handler;
    void *ud;
    mock_stats *stats; /* connections accepted/open are counted here; may be NULL */
    int tick_ms;       /* mock_push tick period; 0: 5 */
} mock_http_opts;

typedef struct mock_http mock_http;

/* Binds 127.0.0.1:port and listens. NULL with err set on failure. */
mock_http *mock_http_new(const mock_http_opts *o, k2p_err *err);
/* The port actually bound. */
int mock_http_port(const mock_http *h);
/* Starts the workers. 0 or K2P_EIO. */
int mock_http_start(mock_http *h, k2p_err *err);
/* Wakes every worker, closes every connection, joins the workers. Idempotent. */
void mock_http_stop(mock_http *h);
/* Stops if needed and frees. Accepts NULL. */
void mock_http_free(mock_http *h);

#endif

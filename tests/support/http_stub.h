/* http_stub.h - a tiny HTTP/1.1 server on 127.0.0.1 for tests of HTTP clients (the credential
 * providers): canned responses per route, recorded requests, and faults (an answer held behind a
 * gate, a connection that never answers, one closed without an answer).
 *
 * It listens on a port the kernel picks, serves each connection on its own thread, reads one
 * request per connection and answers with "Connection: close". It never contacts anything.
 * Threading: every function is thread-safe; start and stop from the test's main thread.
 */
#ifndef K2P_HTTP_STUB_H
#define K2P_HTTP_STUB_H

#include <stddef.h>

typedef struct k2p_http_stub k2p_http_stub;

typedef enum k2p_stub_action {
    K2P_STUB_RESPOND = 0, /* send the status and body */
    K2P_STUB_HANG,        /* read the request, never answer (until the client leaves or stop) */
    K2P_STUB_CLOSE,       /* read the request, close the connection without answering */
} k2p_stub_action;

typedef struct k2p_stub_response {
    k2p_stub_action action;
    int status;
    const char *content_type; /* NULL: "text/plain" */
    const char *body;         /* NULL: empty; copied */
    int gated;                /* hold the answer until k2p_http_stub_open_gate */
} k2p_stub_response;

/* A recorded request (a copy: deinit it). */
typedef struct k2p_stub_request {
    char method[16];
    char target[2048]; /* path and query, as sent */
    char *head;        /* the header lines, each ending in "\r\n" */
    char *body;        /* NUL-terminated */
    size_t body_len;
} k2p_stub_request;

/* Starts listening on 127.0.0.1:<free port>. NULL on failure (message on stderr). */
k2p_http_stub *k2p_http_stub_start(void);

/* Opens the gate, stops accepting, waits for every connection thread, frees. NULL is fine. */
void k2p_http_stub_stop(k2p_http_stub *s);

/* "http://127.0.0.1:PORT", valid while the stub lives. */
const char *k2p_http_stub_url(const k2p_http_stub *s);
int k2p_http_stub_port(const k2p_http_stub *s);

/* Adds a response to the route METHOD (NULL: any) PATH (the target without its query). A
 * route's responses are used in order and the last one repeats; a request without a route gets
 * 404. Later routes for the same METHOD PATH append to it. */
void k2p_http_stub_add(k2p_http_stub *s, const char *method, const char *path, int status,
                       const char *body);
void k2p_http_stub_add_response(k2p_http_stub *s, const char *method, const char *path,
                                const k2p_stub_response *r);

/* Forgets routes and recorded requests, and closes the gate. */
void k2p_http_stub_reset(k2p_http_stub *s);

/* Gated answers wait while the gate is closed (it starts closed). */
void k2p_http_stub_open_gate(k2p_http_stub *s);

/* Requests received so far for METHOD (NULL: any) PATH (NULL: any), counted as soon as the
 * request has been read (before any gate). */
size_t k2p_http_stub_count(k2p_http_stub *s, const char *method, const char *path);

/* Waits until k2p_http_stub_count reaches n; 0, or -1 after timeout_ms. */
int k2p_http_stub_wait_count(k2p_http_stub *s, const char *method, const char *path, size_t n,
                             int timeout_ms);

/* Copies the i-th request received (0-based, arrival order). 0, or -1 when there is none. */
int k2p_http_stub_request(k2p_http_stub *s, size_t i, k2p_stub_request *out);
void k2p_stub_request_deinit(k2p_stub_request *r);

/* The value of header `name` (any case) of a recorded request, copied into buf; NULL when the
 * request has no such header. */
const char *k2p_stub_request_header(const k2p_stub_request *r, const char *name, char *buf,
                                    size_t size);

#endif

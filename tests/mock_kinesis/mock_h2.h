/* mock_h2.h - HTTP/2 for one mock_http connection (cleartext, prior knowledge), on libnghttp2.
 *
 * mock_http hands a connection over here once its first bytes are the HTTP/2 preface. Each
 * request (HEADERS + DATA up to END_STREAM) goes to the same mock_handler as HTTP/1.1, with
 * req->http2 set. An ordinary answer is sent whole (a `truncate` answer: half its body, then
 * RST_STREAM). An answer with a mock_push (SubscribeToShard) keeps its stream open: its
 * initial body first, then whatever push->tick appends, each tick once the previous bytes were
 * taken by nghttp2 (so a client that does not read, or HTTP/2 flow control, holds the
 * producer back). The stream ends when tick says so; the client may reset it at any time.
 *
 * Threading: a mock_h2 belongs to the worker thread that owns the connection.
 */
#ifndef MOCK_H2_H
#define MOCK_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mock_http.h"

typedef struct mock_h2 mock_h2;

/* A server session with our SETTINGS queued. NULL on OOM. */
mock_h2 *mock_h2_new(mock_handler handler, void *ud, uint64_t conn_id);
/* Frees every stream (their pushes included). Accepts NULL. */
void mock_h2_free(mock_h2 *h);

/* Feeds bytes read from the socket (the preface included). 0, or -1 on a protocol error
 * (GOAWAY is queued: flush, then close). */
int mock_h2_recv(mock_h2 *h, const uint8_t *p, size_t n);

/* Calls tick on each push stream whose earlier output has been taken. */
void mock_h2_tick(mock_h2 *h, int64_t now_ns);

/* Writes pending frames to fd. 1 nothing left, 0 would block (wait for EPOLLOUT), -1 error. */
int mock_h2_flush(mock_h2 *h, int fd);

/* True while a push stream is open (the connection needs ticks). */
bool mock_h2_pushing(const mock_h2 *h);
/* True when a push asked for the connection to be reset (MOCK_PUSH_RESET_CONN) or a handler
 * answered MOCK_ACT_RESET. */
bool mock_h2_want_reset(const mock_h2 *h);
/* True when the session is over (GOAWAY both ways, or a fatal error) and all is sent. */
bool mock_h2_done(const mock_h2 *h);

#endif

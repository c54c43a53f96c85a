/* mock_h2.c - HTTP/2 server side of one mock_http connection, on libnghttp2 (see mock_h2.h).
 *
 * nghttp2 does the framing, HPACK and flow control; this file keeps one h2s per request
 * stream (its request, then its answer bytes) and feeds answers through a data provider that
 * defers while a push stream has nothing new.
 *
 * Threading: everything runs on the connection's worker thread; nothing is shared.
 */
#include "mock_h2.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define H2_BODY_MAX ((size_t)32 << 20)
#define H2_OUT_MAX ((size_t)64 << 20)
#define H2_WRITE_BATCH ((size_t)256 << 10)

typedef struct h2s {
    int32_t id;
    struct h2s *prev, *next;
    char method[16], path[1024], target[160];
    k2p_buf body; /* the request body */
    k2p_buf out;  /* answer bytes not yet taken by nghttp2 (from out_off) */
    size_t out_off;
    size_t out_limit; /* truncate: serve this many bytes, then reset the stream */
    bool truncate;
    bool eof;      /* nothing will follow `out` */
    bool deferred; /* the data provider said NGHTTP2_ERR_DEFERRED */
    const mock_push_ops *push_ops;
    void *push;
} h2s;

struct mock_h2 {
    nghttp2_session *sess;
    mock_handler handler;
    void *ud;
    uint64_t conn_id, next_req;
    h2s *streams;
    size_t n_push;
    bool want_reset;
    k2p_buf wout; /* frames waiting for the socket, from wout_off */
    size_t wout_off;
};

/* ---- streams ------------------------------------------------------------------------------ */

static h2s *stream_new(mock_h2 *h, int32_t id)
{
    h2s *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->id = id;
    k2p_buf_init(&st->body, H2_BODY_MAX);
    k2p_buf_init(&st->out, H2_OUT_MAX);
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    return st;
}

static void stream_free(mock_h2 *h, h2s *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->push_ops) {
        st->push_ops->free(st->push);
        h->n_push--;
    }
    k2p_buf_deinit(&st->body);
    k2p_buf_deinit(&st->out);
    free(st);
}

static void copy_field(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------- */

static ssize_t read_cb(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    h2s *st = src->ptr;
    size_t end = st->truncate ? st->out_limit : st->out.len, n;
    (void)sess;
    (void)id;
    (void)ud;
    if (st->out_off >= end) {
        if (st->truncate)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
        if (st->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        /* A push with nothing new: reuse the buffer, wait for the next tick. */
        k2p_buf_reset(&st->out);
        st->out_off = 0;
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    n = end - st->out_off < length ? end - st->out_off : length;
    memcpy(buf, st->out.data + st->out_off, n);
    st->out_off += n;
    if (st->out_off == end && st->eof && !st->truncate)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Answers a complete request on stream st. */
static int dispatch(mock_h2 *h, h2s *st)
{
    mock_req q = {0};
    mock_resp r = {0};
    nghttp2_nv nv[5];
    nghttp2_data_provider prd;
    char status[8], reqid[64], clen[24];
    size_t n = 0;
    const char *qm;

    q.method = st->method;
    q.method_len = strlen(st->method);
    q.path = st->path;
    q.path_len = strlen(st->path);
    qm = strchr(st->path, '?');
    if (qm) {
        q.path_len = (size_t)(qm - st->path);
        q.query = qm + 1;
        q.query_len = strlen(qm + 1);
    } else {
        q.query = "";
    }
    q.target = st->target;
    q.target_len = strlen(st->target);
    q.body = st->body.data ? st->body.data : "";
    q.body_len = st->body.len;
    q.http2 = true;
    r.status = 200;
    r.content_type = "application/x-amz-json-1.1";
    r.body = &st->out;
    k2p_buf_reset(&st->out);
    h->handler(h->ud, &q, &r);
    if (r.action == MOCK_ACT_RESET) {
        if (r.push_ops)
            r.push_ops->free(r.push);
        h->want_reset = true;
        return 0;
    }
#define NV(k, v)                                                                                   \
    nv[n++] =                                                                                      \
        (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
    snprintf(status, sizeof status, "%d", r.status);
    snprintf(reqid, sizeof reqid, "%016llx-0000-4000-8000-h2%010llx",
             (unsigned long long)h->conn_id, (unsigned long long)++h->next_req);
    NV(":status", status);
    NV("content-type", r.content_type);
    NV("x-amzn-requestid", reqid);
    if (r.error_type)
        NV("x-amzn-errortype", r.error_type);
    if (r.push_ops) {
        st->push_ops = r.push_ops;
        st->push = r.push;
        h->n_push++;
    } else {
        snprintf(clen, sizeof clen, "%zu", st->out.len);
        NV("content-length", clen);
        st->eof = true;
        if (r.action == MOCK_ACT_TRUNCATE) {
            st->truncate = true;
            st->out_limit = st->out.len / 2;
        }
    }
#undef NV
    prd.source.ptr = st;
    prd.read_callback = read_cb;
    return nghttp2_submit_response(h->sess, st->id, nv, n, &prd) == 0
               ? 0
               : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
    mock_h2 *h = ud;
    h2s *st;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = stream_new(h, f->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(sess, f->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    h2s *st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    (void)flags;
    (void)ud;
    if (!st)
        return 0;
    if (nl == 7 && !memcmp(name, ":method", 7))
        copy_field(st->method, sizeof st->method, value, vl);
    else if (nl == 5 && !memcmp(name, ":path", 5))
        copy_field(st->path, sizeof st->path, value, vl);
    else if (nl == 12 && !memcmp(name, "x-amz-target", 12))
        copy_field(st->target, sizeof st->target, value, vl);
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p,
                         size_t n, void *ud)
{
    h2s *st = nghttp2_session_get_stream_user_data(sess, id);
    (void)flags;
    (void)ud;
    if (st && k2p_buf_append(&st->body, p, n))
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
    mock_h2 *h = ud;
    h2s *st;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);
    return st ? dispatch(h, st) : 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
    mock_h2 *h = ud;
    h2s *st = nghttp2_session_get_stream_user_data(sess, id);
    (void)code;
    if (st) {
        nghttp2_session_set_stream_user_data(sess, id, NULL);
        stream_free(h, st);
    }
    return 0;
}

/* ---- session ------------------------------------------------------------------------------ */

mock_h2 *mock_h2_new(mock_handler handler, void *ud, uint64_t conn_id)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 128},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    mock_h2 *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->handler = handler;
    h->ud = ud;
    h->conn_id = conn_id;
    k2p_buf_init(&h->wout, H2_OUT_MAX);
    if (nghttp2_session_callbacks_new(&cb))
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    if (nghttp2_session_server_new(&h->sess, cb, h))
        goto fail;
    nghttp2_session_callbacks_del(cb);
    cb = NULL;
    if (nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, K2P_ARRAY_LEN(iv)))
        goto fail;
    return h;
fail:
    nghttp2_session_callbacks_del(cb);
    mock_h2_free(h);
    return NULL;
}

void mock_h2_free(mock_h2 *h)
{
    if (!h)
        return;
    /* nghttp2_session_del does not call on_stream_close: free what is left here. */
    while (h->streams)
        stream_free(h, h->streams);
    if (h->sess)
        nghttp2_session_del(h->sess);
    k2p_buf_deinit(&h->wout);
    free(h);
}

int mock_h2_recv(mock_h2 *h, const uint8_t *p, size_t n)
{
    ssize_t r = nghttp2_session_mem_recv(h->sess, p, n);
    return r < 0 || (size_t)r != n ? -1 : 0;
}

void mock_h2_tick(mock_h2 *h, int64_t now_ns)
{
    for (h2s *st = h->streams, *next; st; st = next) {
        mock_push_rc rc;
        next = st->next;
        if (!st->push_ops || st->eof || st->out_off < st->out.len)
            continue;
        k2p_buf_reset(&st->out);
        st->out_off = 0;
        rc = st->push_ops->tick(st->push, &st->out, now_ns);
        if (rc == MOCK_PUSH_RESET_CONN) {
            h->want_reset = true;
            return;
        }
        if (rc == MOCK_PUSH_END)
            st->eof = true;
        if ((st->out.len || st->eof) && st->deferred) {
            st->deferred = false;
            nghttp2_session_resume_data(h->sess, st->id);
        }
    }
}

int mock_h2_flush(mock_h2 *h, int fd)
{
    for (;;) {
        while (h->wout_off < h->wout.len) {
            ssize_t w =
                send(fd, h->wout.data + h->wout_off, h->wout.len - h->wout_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            }
            h->wout_off += (size_t)w;
        }
        k2p_buf_reset(&h->wout);
        h->wout_off = 0;
        while (h->wout.len < H2_WRITE_BATCH) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(h->sess, &d);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            if (k2p_buf_append(&h->wout, d, (size_t)n))
                return -1;
        }
        if (h->wout.len == 0)
            return 1;
    }
}

bool mock_h2_pushing(const mock_h2 *h)
{
    return h->n_push > 0;
}

bool mock_h2_want_reset(const mock_h2 *h)
{
    return h->want_reset;
}

bool mock_h2_done(const mock_h2 *h)
{
    return !nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess) &&
           h->wout_off >= h->wout.len;
}

/* event_stream.c - the AWS event-stream framing: incremental decoder and encoder.
 *
 * The decoder keeps at most one incomplete message (bounded by max_message); a message that
 * lies wholly inside a fed chunk is decoded where it is. Every length is checked against what
 * is left before it is used; both CRCs (zlib's crc32) are verified before any header is read.
 * Fuzzed by tests/fuzz/fuzz_event_stream.c.
 *
 * Threading: a decoder belongs to one thread; everything else is reentrant.
 */
#include "kinesis2pg/event_stream.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t crc(uint32_t start, const uint8_t *p, size_t n)
{
    /* zlib takes uInt lengths: feed in pieces so a size_t length never truncates. */
    uLong c = start;
    while (n) {
        uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, step);
        p += step;
        n -= step;
    }
    return (uint32_t)c;
}

static const char *type_name(unsigned t)
{
    static const char *const names[] = {"true", "false", "byte", "short", "int", "long",
                                        "byte array", "string", "timestamp", "uuid"};
    return t < K2P_ARRAY_LEN(names) ? names[t] : "unknown";
}

/* Checks a prelude against the bound; on 0 *total is the message's length. */
static int check_prelude(const uint8_t *p, size_t max_message, uint32_t *total, k2p_err *err)
{
    uint32_t t = be32(p), h = be32(p + 4), want = be32(p + 8), got = crc(0, p, 8);
    if (want != got)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: prelude CRC mismatch (message says %08x, bytes give "
                           "%08x)",
                           want, got);
    if (t < K2P_ES_MIN_MESSAGE)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: message length %u is below the %d-byte minimum", t,
                           K2P_ES_MIN_MESSAGE);
    if (t > max_message)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: message length %u exceeds the limit of %zu bytes", t,
                           max_message);
    if (h > t - K2P_ES_MIN_MESSAGE)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: headers length %u does not fit a %u-byte message", h, t);
    if (h > K2P_ES_MAX_HEADERS_LEN)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: headers length %u exceeds the limit of %u bytes", h,
                           K2P_ES_MAX_HEADERS_LEN);
    *total = t;
    return 0;
}

static bool name_is(const k2p_es_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

static void copy_value(char *dst, size_t n, const k2p_es_header *h)
{
    size_t l = h->v.bytes.len < n - 1 ? h->v.bytes.len : n - 1;
    memcpy(dst, h->v.bytes.p, l);
    dst[l] = '\0';
}

/* Reads the headers AWS gives meaning to. A well-known header that is not a string is a
 * malformed message: nothing else could make sense of it. */
static int well_known(k2p_es_message *m, const k2p_es_header *h, k2p_err *err)
{
    static const char *const names[] = {":message-type", ":event-type",    ":exception-type",
                                        ":error-code",   ":error-message", ":content-type"};
    char *const dst[] = {m->message_type, m->event_type,    m->exception_type,
                         m->error_code,   m->error_message, m->content_type};
    const size_t dn[] = {sizeof m->message_type, sizeof m->event_type,
                         sizeof m->exception_type, sizeof m->error_code,
                         sizeof m->error_message, sizeof m->content_type};
    for (size_t i = 0; i < K2P_ARRAY_LEN(names); i++) {
        if (!name_is(h, names[i]))
            continue;
        if (h->type != K2P_ES_STRING)
            return k2p_err_set(err, K2P_EPARSE,
                               "event-stream: header %s is a %s, not a string", names[i],
                               type_name(h->type));
        copy_value(dst[i], dn[i], h);
        if (i == 0) {
            static const char *const kinds[] = {"event", "exception", "error"};
            m->kind = K2P_ES_MSG_OTHER;
            for (size_t k = 0; k < K2P_ARRAY_LEN(kinds); k++)
                if (h->v.bytes.len == strlen(kinds[k]) &&
                    memcmp(h->v.bytes.p, kinds[k], h->v.bytes.len) == 0)
                    m->kind = (k2p_es_kind)(K2P_ES_MSG_EVENT + k);
        }
        break;
    }
    return 0;
}

/* Walks the headers block p[0..n). */
static int decode_headers(const uint8_t *p, size_t n, k2p_es_message *m, k2p_err *err)
{
    size_t i = 0;
    while (i < n) {
        k2p_es_header h;
        size_t left, vlen;
        memset(&h, 0, sizeof h);
        h.name_len = p[i++];
        if (h.name_len == 0)
            return k2p_err_set(err, K2P_EPARSE,
                               "event-stream: header with an empty name at byte %zu of the "
                               "headers", i - 1);
        if (n - i < (size_t)h.name_len + 1)
            return k2p_err_set(err, K2P_EPARSE,
                               "event-stream: header name of %u bytes runs past the headers",
                               h.name_len);
        h.name = (const char *)p + i;
        i += h.name_len;
        h.type = p[i++];
        left = n - i;
        switch (h.type) {
        case K2P_ES_BOOL_TRUE:
        case K2P_ES_BOOL_FALSE:
            h.v.b = h.type == K2P_ES_BOOL_TRUE;
            vlen = 0;
            break;
        case K2P_ES_BYTE:
            vlen = 1;
            if (left >= vlen)
                h.v.i = (int8_t)p[i];
            break;
        case K2P_ES_SHORT:
            vlen = 2;
            if (left >= vlen)
                h.v.i = (int16_t)be16(p + i);
            break;
        case K2P_ES_INT:
            vlen = 4;
            if (left >= vlen)
                h.v.i = (int32_t)be32(p + i);
            break;
        case K2P_ES_LONG:
        case K2P_ES_TIMESTAMP:
            vlen = 8;
            if (left >= vlen)
                h.v.i = (int64_t)be64(p + i);
            break;
        case K2P_ES_UUID:
            vlen = 16;
            h.v.bytes.p = p + i;
            h.v.bytes.len = 16;
            break;
        case K2P_ES_BYTES:
        case K2P_ES_STRING:
            if (left < 2)
                return k2p_err_set(err, K2P_EPARSE,
                                   "event-stream: header '%.*s': %s length runs past the headers",
                                   h.name_len, h.name, type_name(h.type));
            h.v.bytes.len = be16(p + i);
            h.v.bytes.p = p + i + 2;
            vlen = 2 + (size_t)h.v.bytes.len;
            break;
        default:
            return k2p_err_set(err, K2P_EPARSE,
                               "event-stream: header '%.*s' has unknown value type %u",
                               h.name_len, h.name, h.type);
        }
        if (left < vlen)
            return k2p_err_set(err, K2P_EPARSE,
                               "event-stream: header '%.*s': %s value runs past the headers",
                               h.name_len, h.name, type_name(h.type));
        i += vlen;
        if (well_known(m, &h, err))
            return K2P_EPARSE;
        if (m->n_headers < K2P_ES_MAX_HEADERS)
            m->headers[m->n_headers++] = h;
    }
    return 0;
}

int k2p_es_decode_message(const uint8_t *buf, size_t len, k2p_es_message *out, k2p_err *err)
{
    uint32_t total, hlen, want, got;
    int rc;

    out->n_headers = 0;
    out->payload = NULL;
    out->payload_len = 0;
    out->total_len = 0;
    out->kind = K2P_ES_MSG_NONE;
    out->message_type[0] = out->event_type[0] = out->exception_type[0] = '\0';
    out->error_code[0] = out->error_message[0] = out->content_type[0] = '\0';
    if (len < K2P_ES_PRELUDE_LEN)
        return k2p_err_set(err, K2P_EPARSE, "event-stream: %zu bytes are not a message", len);
    if ((rc = check_prelude(buf, UINT32_MAX, &total, err)))
        return rc;
    if (total != len)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: message length %u but %zu bytes given", total, len);
    want = be32(buf + total - 4);
    got = crc(0, buf, total - 4);
    if (want != got)
        return k2p_err_set(err, K2P_EPARSE,
                           "event-stream: message CRC mismatch (message says %08x, bytes give "
                           "%08x)",
                           want, got);
    hlen = be32(buf + 4);
    if ((rc = decode_headers(buf + K2P_ES_PRELUDE_LEN, hlen, out, err)))
        return rc;
    out->payload = buf + K2P_ES_PRELUDE_LEN + hlen;
    out->payload_len = total - K2P_ES_MIN_MESSAGE - hlen;
    out->total_len = total;
    return 0;
}

const k2p_es_header *k2p_es_message_header(const k2p_es_message *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (name_is(&m->headers[i], name))
            return &m->headers[i];
    return NULL;
}

/* ---- the incremental decoder ------------------------------------------------------------- */

void k2p_es_decoder_init(k2p_es_decoder *d, size_t max_message)
{
    memset(d, 0, sizeof *d);
    if (!max_message)
        max_message = K2P_ES_DEFAULT_MAX_MESSAGE;
    if (max_message < K2P_ES_MIN_MESSAGE)
        max_message = K2P_ES_MIN_MESSAGE;
    if (max_message > UINT32_MAX)
        max_message = UINT32_MAX;
    d->max_message = max_message;
    k2p_buf_init(&d->partial, max_message);
}

void k2p_es_decoder_deinit(k2p_es_decoder *d)
{
    k2p_buf_deinit(&d->partial);
    d->want = 0;
}

void k2p_es_decoder_reset(k2p_es_decoder *d)
{
    k2p_buf_reset(&d->partial);
    d->want = 0;
    d->failed = 0;
    d->failed_msg[0] = '\0';
}

bool k2p_es_decoder_at_boundary(const k2p_es_decoder *d)
{
    return d->partial.len == 0;
}

size_t k2p_es_decoder_pending(const k2p_es_decoder *d)
{
    return d->partial.len;
}

static int fail(k2p_es_decoder *d, int rc, const k2p_err *e, k2p_err *err)
{
    const char *why =
        e && e->msg[0] ? e->msg : "event-stream: the message callback stopped the decoder";
    size_t n = strnlen(why, sizeof d->failed_msg - 1);
    d->failed = rc;
    memcpy(d->failed_msg, why, n);
    d->failed_msg[n] = '\0';
    k2p_buf_reset(&d->partial);
    d->want = 0;
    return rc;
}

/* Decodes one complete message and hands it to cb. */
static int deliver(k2p_es_decoder *d, const uint8_t *p, size_t n, k2p_es_on_message cb, void *ud,
                   k2p_err *err)
{
    k2p_es_message m;
    k2p_err e = {0};
    int rc = k2p_es_decode_message(p, n, &m, &e);
    if (rc) {
        if (err)
            *err = e;
        return fail(d, rc, &e, NULL);
    }
    d->messages++;
    rc = cb ? cb(ud, &m) : 0;
    if (rc)
        return fail(d, rc, NULL, NULL);
    return 0;
}

int k2p_es_decoder_feed(k2p_es_decoder *d, const void *data, size_t len, k2p_es_on_message cb,
                        void *ud, k2p_err *err)
{
    const uint8_t *p = data;
    int rc;

    if (d->failed)
        return k2p_err_set(err, K2P_EPARSE, "event-stream: decoder already failed: %s",
                           d->failed_msg);
    d->bytes += len;
    while (len) {
        if (d->partial.len == 0 && len >= K2P_ES_PRELUDE_LEN) {
            /* Nothing buffered: decode in place when the whole message is here. */
            uint32_t total;
            k2p_err e = {0};
            if ((rc = check_prelude(p, d->max_message, &total, &e))) {
                if (err)
                    *err = e;
                return fail(d, rc, &e, NULL);
            }
            if (total <= len) {
                if ((rc = deliver(d, p, total, cb, ud, err)))
                    return rc;
                p += total;
                len -= total;
                continue;
            }
            if (k2p_buf_reserve(&d->partial, total)) {
                k2p_err_set(&e, K2P_ENOMEM, "event-stream: out of memory for a %u-byte message",
                            total);
                if (err)
                    *err = e;
                return fail(d, K2P_ENOMEM, &e, NULL);
            }
            d->want = total;
            k2p_buf_append(&d->partial, p, len); /* reserved: cannot fail */
            return 0;
        }
        /* Complete the prelude, then the message, in the buffer. */
        {
            size_t need = d->want ? d->want - d->partial.len
                                  : K2P_ES_PRELUDE_LEN - d->partial.len;
            size_t take = need < len ? need : len;
            k2p_err e = {0};
            if (k2p_buf_append(&d->partial, p, take)) {
                k2p_err_set(&e, K2P_ENOMEM, "event-stream: out of memory buffering a message");
                if (err)
                    *err = e;
                return fail(d, K2P_ENOMEM, &e, NULL);
            }
            p += take;
            len -= take;
            if (!d->want && d->partial.len == K2P_ES_PRELUDE_LEN) {
                uint32_t total;
                if ((rc = check_prelude((const uint8_t *)d->partial.data, d->max_message, &total,
                                        &e))) {
                    if (err)
                        *err = e;
                    return fail(d, rc, &e, NULL);
                }
                if (k2p_buf_reserve(&d->partial, total - K2P_ES_PRELUDE_LEN)) {
                    k2p_err_set(&e, K2P_ENOMEM,
                                "event-stream: out of memory for a %u-byte message", total);
                    if (err)
                        *err = e;
                    return fail(d, K2P_ENOMEM, &e, NULL);
                }
                d->want = total;
            }
            if (d->want && d->partial.len == d->want) {
                rc = deliver(d, (const uint8_t *)d->partial.data, d->partial.len, cb, ud, err);
                if (rc)
                    return rc;
                k2p_buf_reset(&d->partial);
                d->want = 0;
            }
        }
    }
    return 0;
}

/* ---- encoding ---------------------------------------------------------------------------- */

k2p_es_header k2p_es_header_string(const char *name, const char *value)
{
    k2p_es_header h;
    memset(&h, 0, sizeof h);
    h.name = name;
    h.name_len = (uint8_t)strlen(name);
    h.type = K2P_ES_STRING;
    h.v.bytes.p = (const uint8_t *)value;
    h.v.bytes.len = (uint16_t)strlen(value);
    return h;
}

k2p_es_header k2p_es_header_int(const char *name, k2p_es_type type, int64_t value)
{
    k2p_es_header h;
    memset(&h, 0, sizeof h);
    h.name = name;
    h.name_len = (uint8_t)strlen(name);
    h.type = (uint8_t)type;
    if (type == K2P_ES_BOOL_TRUE || type == K2P_ES_BOOL_FALSE)
        h.v.b = type == K2P_ES_BOOL_TRUE;
    else
        h.v.i = value;
    return h;
}

static size_t value_len(const k2p_es_header *h)
{
    switch (h->type) {
    case K2P_ES_BOOL_TRUE:
    case K2P_ES_BOOL_FALSE: return 0;
    case K2P_ES_BYTE: return 1;
    case K2P_ES_SHORT: return 2;
    case K2P_ES_INT: return 4;
    case K2P_ES_LONG:
    case K2P_ES_TIMESTAMP: return 8;
    case K2P_ES_UUID: return 16;
    case K2P_ES_BYTES:
    case K2P_ES_STRING: return 2 + (size_t)h->v.bytes.len;
    default: return (size_t)-1;
    }
}

int k2p_es_encode_message(k2p_buf *out, const k2p_es_header *headers, size_t n_headers,
                          const void *payload, size_t payload_len)
{
    size_t hlen = 0, total, start = out->len;
    uint8_t *m, *q;

    for (size_t i = 0; i < n_headers; i++) {
        size_t vl = value_len(&headers[i]);
        if (headers[i].name_len == 0 || vl == (size_t)-1)
            return K2P_EINVAL;
        hlen += 2 + headers[i].name_len + vl;
    }
    if (hlen > K2P_ES_MAX_HEADERS_LEN || payload_len > UINT32_MAX - K2P_ES_MIN_MESSAGE - hlen)
        return K2P_EINVAL;
    total = K2P_ES_MIN_MESSAGE + hlen + payload_len;
    if (k2p_buf_reserve(out, total))
        return K2P_ENOMEM;
    m = q = (uint8_t *)out->data + start;
    put32(q, (uint32_t)total);
    put32(q + 4, (uint32_t)hlen);
    put32(q + 8, crc(0, q, 8));
    q += K2P_ES_PRELUDE_LEN;
    for (size_t i = 0; i < n_headers; i++) {
        const k2p_es_header *h = &headers[i];
        uint64_t v = (uint64_t)h->v.i;
        *q++ = h->name_len;
        memcpy(q, h->name, h->name_len);
        q += h->name_len;
        *q++ = h->type;
        switch (h->type) {
        case K2P_ES_BYTE: *q++ = (uint8_t)v; break;
        case K2P_ES_SHORT:
            *q++ = (uint8_t)(v >> 8);
            *q++ = (uint8_t)v;
            break;
        case K2P_ES_INT:
            put32(q, (uint32_t)v);
            q += 4;
            break;
        case K2P_ES_LONG:
        case K2P_ES_TIMESTAMP:
            put32(q, (uint32_t)(v >> 32));
            put32(q + 4, (uint32_t)v);
            q += 8;
            break;
        case K2P_ES_UUID:
            memcpy(q, h->v.bytes.p, 16);
            q += 16;
            break;
        case K2P_ES_BYTES:
        case K2P_ES_STRING:
            *q++ = (uint8_t)(h->v.bytes.len >> 8);
            *q++ = (uint8_t)h->v.bytes.len;
            if (h->v.bytes.len)
                memcpy(q, h->v.bytes.p, h->v.bytes.len);
            q += h->v.bytes.len;
            break;
        default: break;
        }
    }
    if (payload_len)
        memcpy(q, payload, payload_len);
    q += payload_len;
    put32(q, crc(0, m, total - 4));
    out->len += total;
    out->data[out->len] = '\0';
    return 0;
}

/* fuzz_event_stream.c - libFuzzer target for the event-stream decoder (src/event_stream.c).
 *
 * Each input is used twice:
 *  1. as a byte stream, fed to the incremental decoder all at once and again in chunks whose
 *     sizes come from the input's first byte: both must deliver the same messages and end the
 *     same way (same code, same message, same bytes pending); every delivered header and the
 *     payload must lie inside the message.
 *  2. as the headers and payload of one message (split by its first two bytes), framed here
 *     with correct lengths and CRCs so the fuzzer reaches the header walker: a message that
 *     decodes with fewer than K2P_ES_MAX_HEADERS headers must re-encode to the same bytes, and
 *     its payload goes through the SubscribeToShardEvent parser.
 * Seeds: corpus/event_stream/ (*.bin, streams of one or more messages).
 *
 * Threading: single-threaded.
 */
#include "kinesis2pg/event_stream.h"
#include "kinesis2pg/kinesis_subscribe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGE (256u << 10)
#define MAX_SEEN 64

typedef struct seen {
    size_t n;
    uint32_t lens[MAX_SEEN];
    uint32_t crcs[MAX_SEEN]; /* of each message's payload, to compare the two runs */
} seen;

static int inside(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (size_t)(hi - q);
}

static void check_message(const k2p_es_message *m, const uint8_t *start)
{
    const uint8_t *end = start + m->total_len;
    if (m->total_len < K2P_ES_MIN_MESSAGE || m->n_headers > K2P_ES_MAX_HEADERS)
        abort();
    if (!inside(m->payload, m->payload_len, start + K2P_ES_PRELUDE_LEN, end - 4))
        abort();
    for (size_t i = 0; i < m->n_headers; i++) {
        const k2p_es_header *h = &m->headers[i];
        if (!h->name_len || !inside(h->name, h->name_len, start, m->payload))
            abort();
        if ((h->type == K2P_ES_STRING || h->type == K2P_ES_BYTES || h->type == K2P_ES_UUID) &&
            !inside(h->v.bytes.p, h->v.bytes.len, start, m->payload))
            abort();
        if (h->type > K2P_ES_UUID)
            abort();
    }
    if (m->kind == K2P_ES_MSG_NONE &&
        (m->message_type[0] || k2p_es_message_header(m, ":message-type")))
        abort();
    if (m->kind != K2P_ES_MSG_NONE && k2p_es_message_header(m, ":message-type") &&
        k2p_es_message_header(m, ":message-type")->type != K2P_ES_STRING)
        abort();
    if (strlen(m->event_type) >= sizeof m->event_type ||
        strlen(m->error_message) >= sizeof m->error_message)
        abort();
}

static int on_message(void *ud, const k2p_es_message *m)
{
    seen *s = ud;
    /* The message starts 12 bytes before its headers block (or payload when none). */
    const uint8_t *start = m->payload - (m->total_len - K2P_ES_MIN_MESSAGE - m->payload_len) -
                           K2P_ES_PRELUDE_LEN;
    check_message(m, start);
    if (s->n < MAX_SEEN) {
        s->lens[s->n] = m->total_len;
        s->crcs[s->n] = (uint32_t)crc32(0, m->payload, (uInt)m->payload_len);
    }
    s->n++;
    return 0;
}

typedef struct run {
    seen s;
    int rc;
    k2p_err err;
    size_t pending;
} run;

static void feed(const uint8_t *data, size_t size, size_t chunk_seed, run *r)
{
    k2p_es_decoder d;
    size_t off = 0, step = 0;
    memset(r, 0, sizeof *r);
    k2p_es_decoder_init(&d, MAX_MESSAGE);
    while (off < size && !r->rc) {
        size_t n = size - off;
        if (chunk_seed) {
            /* 1..64-byte chunks, varying with the seed and the position */
            size_t c = 1 + ((chunk_seed * 31 + step * 7) % 64);
            n = c < n ? c : n;
        }
        r->rc = k2p_es_decoder_feed(&d, data + off, n, on_message, &r->s, &r->err);
        off += n;
        step++;
    }
    r->pending = k2p_es_decoder_pending(&d);
    if (r->rc) {
        if (r->rc != K2P_EPARSE || strncmp(r->err.msg, "event-stream: ", 14) != 0)
            abort();
        /* failed for good */
        if (k2p_es_decoder_feed(&d, data, size, on_message, &r->s, NULL) != K2P_EPARSE)
            abort();
    }
    k2p_es_decoder_deinit(&d);
}

static void as_stream(const uint8_t *data, size_t size)
{
    static run a, b;
    feed(data, size, 0, &a);
    feed(data, size, size ? (size_t)data[0] + 1 : 1, &b);
    if (a.rc != b.rc || a.s.n != b.s.n || strcmp(a.err.msg, b.err.msg) != 0)
        abort();
    if (!a.rc && a.pending != b.pending)
        abort();
    for (size_t i = 0; i < a.s.n && i < MAX_SEEN; i++)
        if (a.s.lens[i] != b.s.lens[i] || a.s.crcs[i] != b.s.crcs[i])
            abort();
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void as_message(const uint8_t *data, size_t size)
{
    static k2p_es_message m;
    k2p_err err = {0};
    size_t hlen, plen, total;
    uint8_t *msg;

    if (size < 2)
        return;
    hlen = ((size_t)data[0] << 8 | data[1]);
    data += 2;
    size -= 2;
    if (hlen > size)
        hlen = size;
    plen = size - hlen;
    total = K2P_ES_MIN_MESSAGE + size;
    msg = malloc(total);
    if (!msg)
        abort();
    put32(msg, (uint32_t)total);
    put32(msg + 4, (uint32_t)hlen);
    put32(msg + 8, (uint32_t)crc32(0, msg, 8));
    if (size)
        memcpy(msg + K2P_ES_PRELUDE_LEN, data, size);
    put32(msg + total - 4, (uint32_t)crc32(0, msg, (uInt)(total - 4)));

    if (k2p_es_decode_message(msg, total, &m, &err) == 0) {
        k2p_records r;
        char cont[132];
        check_message(&m, msg);
        /* The payload as a SubscribeToShardEvent: parsed or refused, never a crash. */
        k2p_records_init(&r);
        if (k2p_kinesis_parse_subscribe_event((const char *)m.payload, m.payload_len, &r, cont,
                                              NULL) == 0 &&
            strlen(cont) > 129)
            abort();
        k2p_records_deinit(&r);
        if (m.payload_len != plen)
            abort();
        if (m.n_headers < K2P_ES_MAX_HEADERS) {
            k2p_buf b;
            k2p_buf_init(&b, 0);
            if (k2p_es_encode_message(&b, m.headers, m.n_headers, m.payload, m.payload_len) ||
                b.len != total || memcmp(b.data, msg, total) != 0)
                abort();
            k2p_buf_deinit(&b);
        }
    } else if (strncmp(err.msg, "event-stream: ", 14) != 0) {
        abort();
    }
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ((size_t)1 << 20))
        return 0;
    as_stream(data, size);
    as_message(data, size);
    return 0;
}

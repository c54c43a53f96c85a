/* test_event_stream.c - unit tests of the event-stream decoder and encoder (src/event_stream.c).
 *
 * Messages are built two ways: with k2p_es_encode_message, and by hand (raw header bytes framed
 * here with correct lengths and CRCs from zlib) so that every malformation can be made exactly:
 * each CRC wrong, lengths below the minimum, over the bound, headers longer than the message or
 * than the header limit, empty and overlong names, unknown value types, every value truncated,
 * well-known headers of the wrong type. The incremental decoder is fed every split of a stream
 * (one chunk size at a time, 1 byte up to all of it) and must give the same messages.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kinesis2pg/event_stream.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Frames raw header bytes and a payload with correct lengths and CRCs. Caller frees. */
static uint8_t *frame(const void *hdrs, size_t hlen, const void *payload, size_t plen,
                      size_t *total)
{
    size_t t = 16 + hlen + plen;
    uint8_t *m = malloc(t);
    assert_non_null(m);
    put32(m, (uint32_t)t);
    put32(m + 4, (uint32_t)hlen);
    put32(m + 8, (uint32_t)crc32(0, m, 8));
    if (hlen)
        memcpy(m + 12, hdrs, hlen);
    if (plen)
        memcpy(m + 12 + hlen, payload, plen);
    put32(m + t - 4, (uint32_t)crc32(0, m, (uInt)(t - 4)));
    *total = t;
    return m;
}

/* Rewrites a message's prelude fields and both CRCs after a test changed bytes on purpose. */
static void refresh_crcs(uint8_t *m, size_t t)
{
    put32(m + 8, (uint32_t)crc32(0, m, 8));
    put32(m + t - 4, (uint32_t)crc32(0, m, (uInt)(t - 4)));
}

/* Expects the incremental decoder to fail with a message containing needle, fed one byte at a
 * time and all at once. */
static void expect_bad_feed(const uint8_t *m, size_t n, const char *needle)
{
    k2p_err err = {0};
    int rc;
    for (int mode = 0; mode < 2; mode++) {
        k2p_es_decoder d;
        size_t i = 0;
        k2p_es_decoder_init(&d, 0);
        k2p_err_clear(&err);
        rc = 0;
        if (mode == 0) {
            for (i = 0; i < n && !rc; i++)
                rc = k2p_es_decoder_feed(&d, m + i, 1, NULL, NULL, &err);
        } else {
            rc = k2p_es_decoder_feed(&d, m, n, NULL, NULL, &err);
        }
        if (rc != K2P_EPARSE || !strstr(err.msg, needle))
            fail_msg("feed (mode %d): rc %d msg '%s', want '%s'", mode, rc, err.msg, needle);
        assert_int_equal(d.messages, 0);
        /* Failed for good, until a reset. */
        k2p_err_clear(&err);
        assert_int_equal(k2p_es_decoder_feed(&d, m, n, NULL, NULL, &err), K2P_EPARSE);
        assert_non_null(strstr(err.msg, "already failed"));
        assert_non_null(strstr(err.msg, needle));
        k2p_es_decoder_deinit(&d);
    }
}

/* Expects decoding to fail with a message containing needle, both in one piece and through the
 * incremental decoder. */
static void expect_bad(const uint8_t *m, size_t n, const char *needle)
{
    k2p_es_message msg;
    k2p_err err = {0};
    int rc = k2p_es_decode_message(m, n, &msg, &err);
    if (rc != K2P_EPARSE || !strstr(err.msg, needle))
        fail_msg("decode_message: rc %d msg '%s', want '%s'", rc, err.msg, needle);
    assert_memory_equal(err.msg, "event-stream: ", 14);
    expect_bad_feed(m, n, needle);
}

/* Header bytes: name, type, value bytes. */
typedef struct hb {
    uint8_t b[4096];
    size_t n;
} hb;

static void hb_raw(hb *h, const void *p, size_t n)
{
    assert_true(h->n + n <= sizeof h->b);
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void hb_name(hb *h, const char *name, uint8_t type)
{
    uint8_t l = (uint8_t)strlen(name);
    hb_raw(h, &l, 1);
    hb_raw(h, name, l);
    hb_raw(h, &type, 1);
}

static void hb_str(hb *h, const char *name, const char *v)
{
    uint8_t len[2] = {(uint8_t)(strlen(v) >> 8), (uint8_t)strlen(v)};
    hb_name(h, name, K2P_ES_STRING);
    hb_raw(h, len, 2);
    hb_raw(h, v, strlen(v));
}

/* ---- round trips ------------------------------------------------------------------------- */

static const uint8_t uuid[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21};

static void every_type(void **state)
{
    k2p_es_header h[11];
    k2p_es_message m;
    k2p_buf b;
    k2p_err err = {0};
    const char *json = "{\"Records\":[]}";

    (void)state;
    h[0] = k2p_es_header_string(":message-type", "event");
    h[1] = k2p_es_header_string(":event-type", "SubscribeToShardEvent");
    h[2] = k2p_es_header_int("t", K2P_ES_BOOL_TRUE, 0);
    h[3] = k2p_es_header_int("f", K2P_ES_BOOL_FALSE, 0);
    h[4] = k2p_es_header_int("byte", K2P_ES_BYTE, -5);
    h[5] = k2p_es_header_int("short", K2P_ES_SHORT, -30000);
    h[6] = k2p_es_header_int("int", K2P_ES_INT, -2000000000);
    h[7] = k2p_es_header_int("long", K2P_ES_LONG, -9000000000000000000LL);
    h[8] = k2p_es_header_int("ts", K2P_ES_TIMESTAMP, 1732123456789LL);
    h[9] = k2p_es_header_string("bytes", "\x01\x02\x03");
    h[9].type = K2P_ES_BYTES;
    memset(&h[10], 0, sizeof h[10]);
    h[10].name = "uuid";
    h[10].name_len = 4;
    h[10].type = K2P_ES_UUID;
    h[10].v.bytes.p = uuid;

    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_es_encode_message(&b, h, 11, json, strlen(json)), 0);
    assert_int_equal(k2p_es_decode_message((const uint8_t *)b.data, b.len, &m, &err), 0);
    assert_int_equal(m.total_len, b.len);
    assert_int_equal(m.n_headers, 11);
    assert_int_equal(m.kind, K2P_ES_MSG_EVENT);
    assert_string_equal(m.message_type, "event");
    assert_string_equal(m.event_type, "SubscribeToShardEvent");
    assert_string_equal(m.exception_type, "");
    assert_int_equal(m.payload_len, strlen(json));
    assert_memory_equal(m.payload, json, strlen(json));
    assert_true(m.headers[2].v.b);
    assert_int_equal(m.headers[2].type, K2P_ES_BOOL_TRUE);
    assert_false(m.headers[3].v.b);
    assert_int_equal(k2p_es_message_header(&m, "byte")->v.i, -5);
    assert_int_equal(k2p_es_message_header(&m, "short")->v.i, -30000);
    assert_int_equal(k2p_es_message_header(&m, "int")->v.i, -2000000000);
    assert_true(k2p_es_message_header(&m, "long")->v.i == -9000000000000000000LL);
    assert_true(k2p_es_message_header(&m, "ts")->v.i == 1732123456789LL);
    assert_int_equal(k2p_es_message_header(&m, "ts")->type, K2P_ES_TIMESTAMP);
    assert_int_equal(k2p_es_message_header(&m, "bytes")->v.bytes.len, 3);
    assert_memory_equal(k2p_es_message_header(&m, "bytes")->v.bytes.p, "\x01\x02\x03", 3);
    assert_memory_equal(k2p_es_message_header(&m, "uuid")->v.bytes.p, uuid, 16);
    assert_null(k2p_es_message_header(&m, "nope"));
    assert_null(k2p_es_message_header(&m, "tt"));
    k2p_buf_deinit(&b);
}

/* A message the AWS documentation shows (the "initial-response" of SubscribeToShard has the
 * same shape): headers only, empty payload; and the smallest message of all. */
static void empty_payload_and_minimal(void **state)
{
    k2p_es_message m;
    k2p_err err = {0};
    size_t t;
    uint8_t *msg = frame(NULL, 0, NULL, 0, &t);
    (void)state;
    assert_int_equal(t, 16);
    assert_int_equal(k2p_es_decode_message(msg, t, &m, &err), 0);
    assert_int_equal(m.n_headers, 0);
    assert_int_equal(m.payload_len, 0);
    assert_int_equal(m.kind, K2P_ES_MSG_NONE);
    /* The exact bytes of an empty message: lengths 16 and 0, then the CRCs. */
    assert_memory_equal(msg, "\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2\x48\xeb\x7d\x98\xc8\xff",
                        16);
    free(msg);
}

static void kinds(void **state)
{
    static const struct {
        const char *type;
        k2p_es_kind kind;
    } cases[] = {{"event", K2P_ES_MSG_EVENT},
                 {"exception", K2P_ES_MSG_EXCEPTION},
                 {"error", K2P_ES_MSG_ERROR},
                 {"Event", K2P_ES_MSG_OTHER},
                 {"events", K2P_ES_MSG_OTHER},
                 {"", K2P_ES_MSG_OTHER}};
    (void)state;
    for (size_t i = 0; i < K2P_ARRAY_LEN(cases); i++) {
        hb h = {0};
        k2p_es_message m;
        k2p_err err = {0};
        size_t t;
        uint8_t *msg;
        hb_str(&h, ":message-type", cases[i].type);
        hb_str(&h, ":exception-type", "ResourceNotFoundException");
        hb_str(&h, ":error-code", "InternalFailure");
        hb_str(&h, ":error-message", "something broke");
        hb_str(&h, ":content-type", "application/json");
        msg = frame(h.b, h.n, "{}", 2, &t);
        assert_int_equal(k2p_es_decode_message(msg, t, &m, &err), 0);
        assert_int_equal(m.kind, cases[i].kind);
        assert_string_equal(m.message_type, cases[i].type);
        assert_string_equal(m.exception_type, "ResourceNotFoundException");
        assert_string_equal(m.error_code, "InternalFailure");
        assert_string_equal(m.error_message, "something broke");
        assert_string_equal(m.content_type, "application/json");
        free(msg);
    }
}

/* Values longer than the copies are cut, NUL-terminated. */
static void long_well_known_values_are_cut(void **state)
{
    char v[1000];
    hb h = {0};
    k2p_es_message m;
    k2p_err err = {0};
    size_t t;
    uint8_t *msg;
    (void)state;
    memset(v, 'x', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    hb_str(&h, ":message-type", "error");
    hb_str(&h, ":error-message", v);
    hb_str(&h, ":event-type", v);
    msg = frame(h.b, h.n, NULL, 0, &t);
    assert_int_equal(k2p_es_decode_message(msg, t, &m, &err), 0);
    assert_int_equal(strlen(m.error_message), sizeof m.error_message - 1);
    assert_int_equal(strlen(m.event_type), sizeof m.event_type - 1);
    assert_int_equal(k2p_es_message_header(&m, ":error-message")->v.bytes.len, 999);
    free(msg);
}

/* More headers than are kept: all are checked, the first K2P_ES_MAX_HEADERS kept, and a
 * well-known header after them still read. */
static void many_headers(void **state)
{
    hb h = {0};
    k2p_es_message m;
    k2p_err err = {0};
    size_t t;
    uint8_t *msg;
    (void)state;
    for (int i = 0; i < K2P_ES_MAX_HEADERS + 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "h%d", i);
        hb_name(&h, name, K2P_ES_BOOL_TRUE);
    }
    hb_str(&h, ":message-type", "event");
    msg = frame(h.b, h.n, NULL, 0, &t);
    assert_int_equal(k2p_es_decode_message(msg, t, &m, &err), 0);
    assert_int_equal(m.n_headers, K2P_ES_MAX_HEADERS);
    assert_int_equal(m.kind, K2P_ES_MSG_EVENT);
    free(msg);
    /* ...but a malformed header after the kept ones still fails the message. */
    hb_name(&h, "bad", 10);
    msg = frame(h.b, h.n, NULL, 0, &t);
    expect_bad(msg, t, "unknown value type 10");
    free(msg);
}

/* ---- incremental decoding ---------------------------------------------------------------- */

typedef struct collected {
    int n;
    char event_types[8][128];
    char payloads[8][64];
    int stop_at; /* return 42 from this message (1-based), 0: never */
} collected;

static int collect(void *ud, const k2p_es_message *m)
{
    collected *c = ud;
    if (c->n < 8) {
        snprintf(c->event_types[c->n], sizeof c->event_types[0], "%s", m->event_type);
        snprintf(c->payloads[c->n], sizeof c->payloads[0], "%.*s", (int)m->payload_len,
                 (const char *)m->payload);
    }
    c->n++;
    return c->stop_at && c->n == c->stop_at ? 42 : 0;
}

/* Three messages (one of them empty, one bigger than a typical chunk) back to back. */
static void build_stream(k2p_buf *b)
{
    static char big[3000];
    k2p_es_header h[2];
    memset(big, 'b', sizeof big - 1);
    h[0] = k2p_es_header_string(":message-type", "event");
    h[1] = k2p_es_header_string(":event-type", "initial-response");
    assert_int_equal(k2p_es_encode_message(b, h, 2, NULL, 0), 0);
    h[1] = k2p_es_header_string(":event-type", "SubscribeToShardEvent");
    assert_int_equal(k2p_es_encode_message(b, h, 2, "{\"a\":1}", 7), 0);
    assert_int_equal(k2p_es_encode_message(b, h, 2, big, sizeof big - 1), 0);
}

static void every_chunk_size(void **state)
{
    k2p_buf b;
    (void)state;
    k2p_buf_init(&b, 0);
    build_stream(&b);
    for (size_t chunk = 1; chunk <= b.len + 1; chunk++) {
        k2p_es_decoder d;
        collected c = {0};
        k2p_err err = {0};
        k2p_es_decoder_init(&d, 0);
        for (size_t off = 0; off < b.len; off += chunk) {
            size_t n = b.len - off < chunk ? b.len - off : chunk;
            if (k2p_es_decoder_feed(&d, b.data + off, n, collect, &c, &err))
                fail_msg("chunk %zu at %zu: %s", chunk, off, err.msg);
            assert_true(k2p_es_decoder_pending(&d) < 3100);
        }
        assert_int_equal(c.n, 3);
        assert_true(k2p_es_decoder_at_boundary(&d));
        assert_int_equal(d.messages, 3);
        assert_int_equal(d.bytes, b.len);
        assert_string_equal(c.event_types[0], "initial-response");
        assert_string_equal(c.payloads[0], "");
        assert_string_equal(c.event_types[1], "SubscribeToShardEvent");
        assert_string_equal(c.payloads[1], "{\"a\":1}");
        assert_int_equal(strspn(c.payloads[2], "b"), 63);
        k2p_es_decoder_deinit(&d);
    }
    k2p_buf_deinit(&b);
}

/* A stream cut inside a message: not at a boundary, the partial bytes are pending. */
static void truncated_stream(void **state)
{
    k2p_buf b;
    k2p_es_decoder d;
    collected c = {0};
    k2p_err err = {0};
    (void)state;
    k2p_buf_init(&b, 0);
    build_stream(&b);
    k2p_es_decoder_init(&d, 0);
    assert_true(k2p_es_decoder_at_boundary(&d));
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len - 10, collect, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_false(k2p_es_decoder_at_boundary(&d));
    assert_true(k2p_es_decoder_pending(&d) > 0);
    /* A reset (new connection) forgets it. */
    k2p_es_decoder_reset(&d);
    assert_true(k2p_es_decoder_at_boundary(&d));
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), 0);
    assert_int_equal(c.n, 5);
    k2p_es_decoder_deinit(&d);
    k2p_buf_deinit(&b);
}

static void callback_stops(void **state)
{
    k2p_buf b;
    k2p_es_decoder d;
    collected c = {0};
    k2p_err err = {0};
    (void)state;
    k2p_buf_init(&b, 0);
    build_stream(&b);
    k2p_es_decoder_init(&d, 0);
    c.stop_at = 2;
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), 42);
    assert_int_equal(c.n, 2);
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), K2P_EPARSE);
    assert_non_null(strstr(err.msg, "callback stopped"));
    k2p_es_decoder_reset(&d);
    c.stop_at = 0;
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), 0);
    assert_int_equal(c.n, 5);
    k2p_es_decoder_deinit(&d);
    k2p_buf_deinit(&b);
}

/* The bound: a message of exactly max_message bytes passes, one byte more is refused as soon
 * as its prelude is in (nothing buffered for it). */
static void message_bound(void **state)
{
    char payload[100] = {0};
    k2p_buf b;
    k2p_es_decoder d;
    collected c = {0};
    k2p_err err = {0};
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_es_encode_message(&b, NULL, 0, payload, sizeof payload), 0);
    assert_int_equal(b.len, 116);
    k2p_es_decoder_init(&d, 116);
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), 0);
    assert_int_equal(c.n, 1);
    k2p_es_decoder_deinit(&d);

    k2p_es_decoder_init(&d, 115);
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, 12, collect, &c, &err), K2P_EPARSE);
    assert_non_null(strstr(err.msg, "message length 116 exceeds the limit of 115 bytes"));
    assert_int_equal(k2p_es_decoder_pending(&d), 0);
    assert_null(d.partial.data);
    k2p_es_decoder_deinit(&d);
    k2p_buf_deinit(&b);
}

/* ---- malformations ------------------------------------------------------------------------- */

static void bad_prelude_crc(void **state)
{
    size_t t;
    uint8_t *m = frame(NULL, 0, "x", 1, &t);
    (void)state;
    m[8] ^= 1;
    expect_bad(m, t, "prelude CRC mismatch");
    free(m);
    /* A flipped length is caught by the prelude CRC too, before the length is trusted. */
    m = frame(NULL, 0, "x", 1, &t);
    m[0] = 0x7f;
    expect_bad(m, t, "prelude CRC mismatch");
    free(m);
}

static void bad_message_crc(void **state)
{
    hb h = {0};
    size_t t;
    uint8_t *m;
    (void)state;
    hb_str(&h, ":message-type", "event");
    m = frame(h.b, h.n, "payload", 7, &t);
    m[t - 5] ^= 0x20; /* a payload byte */
    expect_bad(m, t, "message CRC mismatch");
    free(m);
    m = frame(h.b, h.n, "payload", 7, &t);
    m[14] ^= 0x20; /* a header byte */
    expect_bad(m, t, "message CRC mismatch");
    free(m);
    m = frame(h.b, h.n, "payload", 7, &t);
    m[t - 1] ^= 0x01; /* the CRC itself */
    expect_bad(m, t, "message CRC mismatch");
    free(m);
}

static void length_below_minimum(void **state)
{
    uint8_t m[16] = {0};
    (void)state;
    for (uint32_t len = 0; len < 16; len++) {
        put32(m, len);
        put32(m + 4, 0);
        refresh_crcs(m, 16);
        expect_bad(m, 16, "below the 16-byte minimum");
    }
}

static void length_over_bound(void **state)
{
    uint8_t m[16] = {0};
    (void)state;
    put32(m, K2P_ES_DEFAULT_MAX_MESSAGE + 1);
    refresh_crcs(m, 16);
    expect_bad_feed(m, 16, "exceeds the limit of 16777216 bytes");
    put32(m, 0xffffffffu);
    refresh_crcs(m, 16);
    /* One piece: the length disagrees with what was given. */
    {
        k2p_es_message msg;
        k2p_err err = {0};
        assert_int_equal(k2p_es_decode_message(m, 16, &msg, &err), K2P_EPARSE);
        assert_non_null(strstr(err.msg, "message length 4294967295 but 16 bytes given"));
    }
}

static void headers_longer_than_message(void **state)
{
    size_t t;
    uint8_t *m = frame("\x01x\x00", 3, NULL, 0, &t);
    (void)state;
    put32(m + 4, 4);
    refresh_crcs(m, t);
    expect_bad(m, t, "headers length 4 does not fit a 19-byte message");
    put32(m + 4, 0xffffffffu);
    refresh_crcs(m, t);
    expect_bad(m, t, "does not fit");
    free(m);
}

static void headers_over_limit(void **state)
{
    size_t hl = K2P_ES_MAX_HEADERS_LEN + 1, t;
    uint8_t *h = calloc(1, hl), *m;
    (void)state;
    assert_non_null(h);
    m = frame(h, hl, NULL, 0, &t);
    expect_bad(m, t, "exceeds the limit of 131072 bytes");
    free(m);
    free(h);
}

static void empty_header_name(void **state)
{
    size_t t;
    uint8_t *m = frame("\x00\x00", 2, NULL, 0, &t);
    (void)state;
    expect_bad(m, t, "empty name");
    free(m);
}

static void header_name_past_end(void **state)
{
    size_t t;
    uint8_t *m;
    (void)state;
    m = frame("\x05" "abc", 4, NULL, 0, &t); /* name says 5, 3 left */
    expect_bad(m, t, "header name of 5 bytes runs past");
    free(m);
    m = frame("\x03" "abc", 4, "payload", 7, &t); /* name fits, no room for the type */
    expect_bad(m, t, "header name of 3 bytes runs past");
    free(m);
}

static void unknown_type(void **state)
{
    (void)state;
    for (unsigned ty = 10; ty < 256; ty += 49) {
        hb h = {0};
        size_t t;
        uint8_t *m;
        char want[64];
        hb_name(&h, "odd", (uint8_t)ty);
        hb_raw(&h, "\x00\x00\x00\x00", 4);
        m = frame(h.b, h.n, NULL, 0, &t);
        snprintf(want, sizeof want, "header 'odd' has unknown value type %u", ty);
        expect_bad(m, t, want);
        free(m);
    }
}

/* Every fixed-size value one byte short, at the end of the headers (the payload follows, so
 * the bytes exist in the message: only the headers length bounds the value). */
static void truncated_values(void **state)
{
    static const struct {
        uint8_t type;
        size_t len;
        const char *name;
    } cases[] = {{K2P_ES_BYTE, 1, "byte"},      {K2P_ES_SHORT, 2, "short"},
                 {K2P_ES_INT, 4, "int"},        {K2P_ES_LONG, 8, "long"},
                 {K2P_ES_TIMESTAMP, 8, "timestamp"}, {K2P_ES_UUID, 16, "uuid"}};
    (void)state;
    for (size_t i = 0; i < K2P_ARRAY_LEN(cases); i++) {
        hb h = {0};
        size_t t;
        uint8_t *m;
        char want[80];
        uint8_t zeros[16] = {0};
        hb_name(&h, "v", cases[i].type);
        hb_raw(&h, zeros, cases[i].len - 1);
        m = frame(h.b, h.n, "PAYLOADPAYLOADPAYLOAD", 21, &t);
        snprintf(want, sizeof want, "header 'v': %s value runs past the headers", cases[i].name);
        expect_bad(m, t, want);
        free(m);
        /* and exactly the right size decodes */
        h.n = 0;
        hb_name(&h, "v", cases[i].type);
        hb_raw(&h, zeros, cases[i].len);
        m = frame(h.b, h.n, NULL, 0, &t);
        {
            k2p_es_message msg;
            k2p_err err = {0};
            assert_int_equal(k2p_es_decode_message(m, t, &msg, &err), 0);
            assert_int_equal(msg.n_headers, 1);
        }
        free(m);
    }
}

static void truncated_string_and_bytes(void **state)
{
    (void)state;
    for (uint8_t ty = K2P_ES_BYTES; ty <= K2P_ES_STRING; ty++) {
        hb h = {0};
        size_t t;
        uint8_t *m;
        const char *tn = ty == K2P_ES_BYTES ? "byte array" : "string";
        char want[80];
        /* the length field itself cut short */
        hb_name(&h, "s", ty);
        hb_raw(&h, "\x00", 1);
        m = frame(h.b, h.n, "PAYLOAD", 7, &t);
        snprintf(want, sizeof want, "header 's': %s length runs past the headers", tn);
        expect_bad(m, t, want);
        free(m);
        /* the value longer than what is left */
        h.n = 0;
        hb_name(&h, "s", ty);
        hb_raw(&h, "\x00\x05" "abcd", 6);
        m = frame(h.b, h.n, "PAYLOAD", 7, &t);
        snprintf(want, sizeof want, "header 's': %s value runs past the headers", tn);
        expect_bad(m, t, want);
        free(m);
        /* the largest length */
        h.n = 0;
        hb_name(&h, "s", ty);
        hb_raw(&h, "\xff\xff", 2);
        m = frame(h.b, h.n, NULL, 0, &t);
        expect_bad(m, t, want);
        free(m);
    }
}

static void well_known_wrong_type(void **state)
{
    static const char *const names[] = {":message-type", ":event-type", ":exception-type",
                                        ":error-code", ":error-message", ":content-type"};
    (void)state;
    for (size_t i = 0; i < K2P_ARRAY_LEN(names); i++) {
        hb h = {0};
        size_t t;
        uint8_t *m;
        char want[80];
        hb_name(&h, names[i], K2P_ES_INT);
        hb_raw(&h, "\x00\x00\x00\x01", 4);
        m = frame(h.b, h.n, NULL, 0, &t);
        snprintf(want, sizeof want, "header %s is a int, not a string", names[i]);
        expect_bad(m, t, want);
        free(m);
    }
}

static void decode_message_sizes(void **state)
{
    k2p_es_message msg;
    k2p_err err = {0};
    size_t t;
    uint8_t *m = frame(NULL, 0, "abc", 3, &t);
    (void)state;
    assert_int_equal(k2p_es_decode_message(m, 11, &msg, &err), K2P_EPARSE);
    assert_non_null(strstr(err.msg, "11 bytes are not a message"));
    assert_int_equal(k2p_es_decode_message(m, t - 1, &msg, &err), K2P_EPARSE);
    assert_non_null(strstr(err.msg, "message length 19 but 18 bytes given"));
    free(m);
}

/* A good message followed by a bad one in the same chunk: the good one is delivered first. */
static void good_then_bad(void **state)
{
    k2p_buf b;
    k2p_es_decoder d;
    collected c = {0};
    k2p_err err = {0};
    size_t at;
    (void)state;
    k2p_buf_init(&b, 0);
    build_stream(&b);
    at = b.len;
    build_stream(&b);
    b.data[at + 20] ^= 1;
    k2p_es_decoder_init(&d, 0);
    assert_int_equal(k2p_es_decoder_feed(&d, b.data, b.len, collect, &c, &err), K2P_EPARSE);
    assert_int_equal(c.n, 3);
    assert_non_null(strstr(err.msg, "message CRC mismatch"));
    k2p_es_decoder_deinit(&d);
    k2p_buf_deinit(&b);
}

static void encoder_refuses(void **state)
{
    k2p_es_header h;
    k2p_buf b;
    char big[300];
    (void)state;
    k2p_buf_init(&b, 0);
    h = k2p_es_header_string("", "x");
    assert_int_equal(k2p_es_encode_message(&b, &h, 1, NULL, 0), K2P_EINVAL);
    h = k2p_es_header_string("n", "x");
    h.type = 10;
    assert_int_equal(k2p_es_encode_message(&b, &h, 1, NULL, 0), K2P_EINVAL);
    assert_int_equal(b.len, 0);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    /* a bound on the output buffer */
    k2p_buf_deinit(&b);
    k2p_buf_init(&b, 100);
    assert_int_equal(k2p_es_encode_message(&b, NULL, 0, big, sizeof big), K2P_ENOMEM);
    k2p_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type),
        cmocka_unit_test(empty_payload_and_minimal),
        cmocka_unit_test(kinds),
        cmocka_unit_test(long_well_known_values_are_cut),
        cmocka_unit_test(many_headers),
        cmocka_unit_test(every_chunk_size),
        cmocka_unit_test(truncated_stream),
        cmocka_unit_test(callback_stops),
        cmocka_unit_test(message_bound),
        cmocka_unit_test(bad_prelude_crc),
        cmocka_unit_test(bad_message_crc),
        cmocka_unit_test(length_below_minimum),
        cmocka_unit_test(length_over_bound),
        cmocka_unit_test(headers_longer_than_message),
        cmocka_unit_test(headers_over_limit),
        cmocka_unit_test(empty_header_name),
        cmocka_unit_test(header_name_past_end),
        cmocka_unit_test(unknown_type),
        cmocka_unit_test(truncated_values),
        cmocka_unit_test(truncated_string_and_bytes),
        cmocka_unit_test(well_known_wrong_type),
        cmocka_unit_test(decode_message_sizes),
        cmocka_unit_test(good_then_bad),
        cmocka_unit_test(encoder_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

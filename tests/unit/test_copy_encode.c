/* test_copy_encode.c - byte-exact binary COPY encoding: header/trailer, numeric (checked against
 * PostgreSQL 15's numeric_send output), timestamptz, jsonb/bytea fields, whole rows, the message
 * id (SHAKE128 vectors from FIPS 202 / Python's hashlib, and dlt's digest128), identifier
 * quoting and the generated SQL.
 *
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/copy_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes a hex string into out; returns the byte count. */
static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        out[n++] = (unsigned char)v;
    }
    return n;
}

static void assert_hex(const unsigned char *got, size_t got_len, const char *hex)
{
    unsigned char want[1024];
    size_t n = unhex(hex, want);
    if (got_len != n || memcmp(got, want, n) != 0) {
        char buf[2100];
        for (size_t i = 0; i < got_len && i < 1000; i++)
            snprintf(buf + 2 * i, 3, "%02x", got[i]);
        fail_msg("bytes differ:\n got  %s\n want %s", got_len ? buf : "", hex);
    }
}

static void test_shake128_vectors(void **state)
{
    static const struct {
        size_t len;
        char fill; /* 0: "abc" / empty; 'a': repeated; 'r': bytes 0..255 */
        const char *hex32;
    } v[] = {
        {0, 0, "7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26"},
        {3, 0, "5881092dd818bf5cf8a3ddb793fbcba74097d5c526a6d35f97b83351940f2cc8"},
        {167, 'a', "4f5c6c53ae8190a8ff8a55b2125d28703052d10278570960c2066a905d916c34"},
        {168, 'a', "c22e11586c22b713bde373fce93314d76829de2c21d940a28eb659b8dec953a2"},
        {169, 'a', "09fc23f3acfd944380db0c7f5b1bde62d3a43c6e4c61ca9cb3dfee54904b36a8"},
        {256, 'r', "9d32ba2aa8f40b0cdf108376d77abfd5c97f149e6ba0c9efe3499c7b3c039b0a"},
    };
    unsigned char in[256], out[200];
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (v[i].fill == 'a')
            memset(in, 'a', v[i].len);
        else if (v[i].fill == 'r')
            for (int k = 0; k < 256; k++)
                in[k] = (unsigned char)k;
        else
            memcpy(in, "abc", 3);
        k2p_shake128(in, v[i].len, out, 32);
        assert_hex(out, 32, v[i].hex32);
    }
    /* 200 bytes of output cross a squeeze block (168 bytes). */
    k2p_shake128("abc", 3, out, 200);
    assert_hex(out + 168, 32, "6aa01b3f5af057805f973ff8ecb8b226ac32ada6f01c1fcd4818cb006aa5b4cd");
    assert_hex(out, 32, "5881092dd818bf5cf8a3ddb793fbcba74097d5c526a6d35f97b83351940f2cc8");
}

static void test_msg_id_matches_dlt(void **state)
{
    /* Python: base64.b64encode(hashlib.shake_128((shard_id + seq).encode()).digest(15)) */
    static const struct {
        const char *shard, *seq, *id;
    } v[] = {
        {"shardId-000000000000", "49590338271490256608559692538361571095921575989136588898",
         "op6xPWptcWW3VBOUwkIC"},
        {"shardId-000000000001", "0", "q5wJSZmOIyrpqHoKeaOR"},
        {"shardId-000000000002", "1", "FjuE857N6qX6m3zq1guT"},
    };
    char id[K2P_MSG_ID_LEN + 1], nines[130], longshard[301];
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        k2p_copy_msg_id(v[i].shard, strlen(v[i].shard), v[i].seq, strlen(v[i].seq), id);
        assert_string_equal(id, v[i].id);
    }
    memset(nines, '9', 129);
    nines[129] = '\0';
    k2p_copy_msg_id("shard-\xc3\xa9", 8, nines, 129, id);
    assert_string_equal(id, "UW+njQ5tylEwhyuhg6XK");
    memset(longshard, 'x', 300); /* multi-block input */
    longshard[300] = '\0';
    k2p_copy_msg_id(longshard, 300, "12", 2, id);
    assert_string_equal(id, "I+nJ+ZumqCqzDEAJ4W/B");
    /* A user record of a KPL aggregate: shard_id + seq + ":" + sub-sequence number. */
    k2p_copy_msg_id_sub(v[0].shard, strlen(v[0].shard), v[0].seq, strlen(v[0].seq), 0, id);
    assert_string_equal(id, "/P31n5F7JabBv/X7+1L5");
    k2p_copy_msg_id_sub("shardId-000000000001", 20, "0", 1, 4294967295u, id);
    assert_string_equal(id, "36VN3SPK0BNHB3lJmJu3");
}

/* The message id takes a one-block shortcut below SHAKE128's rate (168 bytes) and the generic
 * sponge above it: both must agree with k2p_shake128 at every length around the boundary. */
static void test_msg_id_every_length(void **state)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char shard[400], seq[130], msg[600], id[K2P_MSG_ID_LEN + 1], want[K2P_MSG_ID_LEN + 1];
    unsigned char d[15];
    (void)state;
    for (size_t i = 0; i < sizeof shard; i++)
        shard[i] = (char)('a' + i % 26);
    memset(seq, '7', sizeof seq);
    for (size_t sl = 0; sl <= 300; sl++) {
        size_t ql = sl % 3 == 0 ? 1 : sl % 3 == 1 ? 56 : 129;
        memcpy(msg, shard, sl);
        memcpy(msg + sl, seq, ql);
        k2p_shake128(msg, sl + ql, d, sizeof d);
        for (int g = 0; g < 5; g++) {
            unsigned v = (unsigned)d[3 * g] << 16 | (unsigned)d[3 * g + 1] << 8 | d[3 * g + 2];
            want[4 * g] = b64[v >> 18];
            want[4 * g + 1] = b64[(v >> 12) & 63];
            want[4 * g + 2] = b64[(v >> 6) & 63];
            want[4 * g + 3] = b64[v & 63];
        }
        want[K2P_MSG_ID_LEN] = '\0';
        k2p_copy_msg_id(shard, sl, seq, ql, id);
        assert_string_equal(id, want);
    }
}

/* The batch gives what one id at a time gives: groups of eight (AVX-512 where there is), the
 * rest, user records, and ids too long for one block (which go one by one). */
static void test_msg_ids_batch(void **state)
{
    enum { N = 45 };
    char seqs[N][130], longshard[200], ids[N][K2P_MSG_ID_LEN + 1], one[K2P_MSG_ID_LEN + 1];
    const char *seq[N];
    size_t len[N];
    int64_t sub[N];
    (void)state;
    memset(longshard, 's', sizeof longshard);
    for (size_t i = 0; i < N; i++) {
        len[i] = i == 17 ? 129 : 1 + (i * 7) % 56;
        for (size_t k = 0; k < len[i]; k++)
            seqs[i][k] = (char)('1' + (i + k) % 9);
        seq[i] = seqs[i];
        sub[i] = i % 3 == 0 ? -1 : (int64_t)(i * 1000003u % 4294967296u);
    }
    for (size_t n = 0; n <= N; n += (n < 17 ? 1 : 7)) {
        for (int with_sub = 0; with_sub < 2; with_sub++) {
            for (int lng = 0; lng < 2; lng++) {
                const char *sh = lng ? longshard : "shardId-000000000007";
                size_t shl = lng ? (with_sub ? 30 : 160) : 20;
                k2p_copy_msg_ids(sh, shl, seq, len, with_sub ? sub : NULL, n, ids);
                for (size_t i = 0; i < n; i++) {
                    if (with_sub && sub[i] >= 0)
                        k2p_copy_msg_id_sub(sh, shl, seq[i], len[i], (uint32_t)sub[i], one);
                    else
                        k2p_copy_msg_id(sh, shl, seq[i], len[i], one);
                    assert_string_equal(ids[i], one);
                }
            }
        }
    }
}

static void test_seqno_valid(void **state)
{
    char big[131];
    (void)state;
    assert_true(k2p_copy_seqno_valid("0", 1));
    assert_true(k2p_copy_seqno_valid("1", 1));
    assert_true(
        k2p_copy_seqno_valid("49590338271490256608559692538361571095921575989136588898", 56));
    assert_false(k2p_copy_seqno_valid("", 0));
    assert_false(k2p_copy_seqno_valid("00", 2));
    assert_false(k2p_copy_seqno_valid("01", 2));
    assert_false(k2p_copy_seqno_valid("-1", 2));
    assert_false(k2p_copy_seqno_valid("1a", 2));
    assert_false(k2p_copy_seqno_valid("1 ", 2));
    assert_false(k2p_copy_seqno_valid("1.0", 3));
    memset(big, '5', sizeof big);
    assert_true(k2p_copy_seqno_valid(big, 129));
    assert_false(k2p_copy_seqno_valid(big, 130));
}

static void test_numeric_bytes(void **state)
{
    /* Expected values: SELECT numeric_send('<n>'::numeric) on PostgreSQL 15. */
    static const struct {
        const char *digits, *hex;
    } v[] = {
        {"0", "0000000000000000"},
        {"1", "00010000000000000001"},
        {"9999", "0001000000000000270f"},
        {"10000", "00010001000000000001"},
        {"12345", "000200010000000000010929"},
        {"100000000", "00010002000000000001"},
        {"100010000", "000200020000000000010001"},
        {"99990000", "0001000100000000270f"},
        {"49590338271490256608559692538361571095921575989136588898",
         "000e000d00000000135f01520a9a234119d015dc242520a9164e2578062726a30e4a22c2"},
        {"1000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000000000000000000000",
         "00010020000000000001"},
        {"9999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
         "99999999999999999999999999999999999999999999",
         "00210020000000000009270f270f270f270f270f270f270f270f270f270f270f270f270f270f270f270f"
         "270f270f270f270f270f270f270f270f270f270f270f270f270f270f270f270f"},
        {"1234567890123456789012345678901234567890123456789012345678901234567890123456789012345"
         "67890123456789012345678901234567890123456789",
         "0021002000000000000109291a85007b11d722c509291a85007b11d722c509291a85007b11d722c50929"
         "1a85007b11d722c509291a85007b11d722c509291a85007b11d722c509291a85"},
    };
    unsigned char out[K2P_NUMERIC_MAX_BYTES];
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = k2p_copy_numeric(v[i].digits, strlen(v[i].digits), out);
        assert_true(n > 0 && n <= K2P_NUMERIC_MAX_BYTES);
        assert_hex(out, n, v[i].hex);
    }
    assert_int_equal(k2p_copy_numeric("012", 3, out), 0);
    assert_int_equal(k2p_copy_numeric("", 0, out), 0);
    assert_int_equal(k2p_copy_numeric("12x", 3, out), 0);
    /* It checks while it converts: every byte that is not a digit is refused, wherever it is
     * (first group, later groups, the last byte), including those whose '0'-offset wraps. */
    {
        static const char *const bad[] = {"x1234", "1234x", "12345678/", "1234:5678",
                                          "9999 ", "-1",    "1.0",       "\xff\x31"};
        char big[131];
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            assert_int_equal(k2p_copy_numeric(bad[i], strlen(bad[i]), out), 0);
        memset(big, '5', sizeof big);
        assert_int_equal(k2p_copy_numeric(big, 130, out), 0);
        assert_true(k2p_copy_numeric(big, 129, out) > 0);
    }
}

static void test_timestamptz(void **state)
{
    int64_t pg = 0;
    (void)state;
    assert_int_equal(k2p_copy_timestamptz(K2P_PG_EPOCH_OFFSET_US + 1000000, &pg), 0);
    assert_int_equal(pg, 1000000); /* 2000-01-01 00:00:01 UTC */
    assert_int_equal(k2p_copy_timestamptz(0, &pg), 0);
    assert_int_equal(pg, -INT64_C(946684800000000)); /* 1970-01-01 */
    assert_int_equal(k2p_copy_timestamptz(INT64_C(1700000000123456), &pg), 0);
    assert_int_equal(pg, INT64_C(1700000000123456) - INT64_C(946684800000000));
    /* Before PostgreSQL's range (4714-11-24 BC): refused, no overflow. */
    assert_int_equal(k2p_copy_timestamptz(INT64_MIN, &pg), K2P_EINVAL);
    assert_int_equal(
        k2p_copy_timestamptz(INT64_C(-211813488000000000) + K2P_PG_EPOCH_OFFSET_US - 1, &pg),
        K2P_EINVAL);
    assert_int_equal(
        k2p_copy_timestamptz(INT64_C(-211813488000000000) + K2P_PG_EPOCH_OFFSET_US, &pg), 0);
    assert_int_equal(pg, INT64_C(-211813488000000000));
    /* The end of the range (294277 AD) lies beyond INT64_MAX Unix microseconds, so every
     * later instant a caller can pass is valid. */
    assert_int_equal(k2p_copy_timestamptz(INT64_MAX, &pg), 0);
    assert_int_equal(pg, INT64_MAX - K2P_PG_EPOCH_OFFSET_US);
}

static void test_header_trailer(void **state)
{
    k2p_buf b;
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_begin(&b), 0);
    assert_int_equal(b.len, K2P_COPY_HEADER_LEN);
    assert_hex((unsigned char *)b.data, b.len,
               "5047434f50590aff0d0a00"
               "00000000"
               "00000000");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_end(&b), 0);
    assert_hex((unsigned char *)b.data, b.len, "ffff");
    k2p_buf_deinit(&b);
}

static k2p_copy_row sample_row(void)
{
    k2p_copy_row r;
    memset(&r, 0, sizeof r);
    r.shard_id = "shardId-000000000001";
    r.shard_id_len = 20;
    r.seq_no = "0";
    r.seq_no_len = 1;
    r.arrival_us = K2P_PG_EPOCH_OFFSET_US + 1000000;
    r.partition = "pk";
    r.partition_len = 2;
    r.stream = "s";
    r.stream_len = 1;
    r.data = "{\"a\":1}";
    r.data_len = 7;
    return r;
}

#define ROW_PREFIX                                                                                 \
    "0008" /* 8 fields */                                                                          \
    "00000014"                                                                                     \
    "7135774a535a6d4f4979727071486f4b65614f52" /* msg id "q5wJSZmOIyrpqHoKeaOR" */                 \
    "00000014"                                                                                     \
    "736861726449642d303030303030303030303031" /* shard id */                                      \
    "00000008"                                                                                     \
    "0000000000000000" /* numeric 0 */                                                             \
    "ffffffff" /* sub_seq NULL */                                                                  \
    "00000008"                                                                                     \
    "00000000000f4240" /* timestamptz 2000-01-01 00:00:01 */                                       \
    "00000002"                                                                                     \
    "706b" /* partition "pk" */                                                                    \
    "00000001"                                                                                     \
    "73" /* stream "s" */

static void test_row_bytes(void **state)
{
    k2p_buf b;
    k2p_copy_row r = sample_row();
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), 0);
    assert_hex((unsigned char *)b.data, b.len,
               ROW_PREFIX "00000008"
                          "01"
                          "7b2261223a317d"); /* jsonb v1 + {"a":1} */
    k2p_buf_reset(&b);
    r.data = "\x00\x01\xff";
    r.data_len = 3;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_BYTEA), 0);
    assert_hex((unsigned char *)b.data, b.len,
               ROW_PREFIX "00000003"
                          "0001ff");
    /* Empty payload: a zero-length field, not NULL. */
    k2p_buf_reset(&b);
    r.data = NULL;
    r.data_len = 0;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_BYTEA), 0);
    assert_hex((unsigned char *)b.data, b.len, ROW_PREFIX "00000000");
    /* A user record of an aggregate: its own message id and the sub-sequence number. */
    k2p_buf_reset(&b);
    r.has_sub_seq = true;
    r.sub_seq = 7;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_BYTEA), 0);
    assert_hex((unsigned char *)b.data, b.len,
               "0008"
               "00000014"
               "7656427556434e6c51726e507a4450574f354d57" /* msg id "vVBuVCNlQrnPzDPWO5MW" */
               "00000014"
               "736861726449642d303030303030303030303031" /* shard id */
               "00000008"
               "0000000000000000" /* numeric 0 */
               "00000008"
               "0000000000000007" /* sub_seq 7 */
               "00000008"
               "00000000000f4240" /* timestamptz 2000-01-01 00:00:01 */
               "00000002"
               "706b" /* partition "pk" */
               "00000001"
               "73" /* stream "s" */
               "00000000");
    k2p_buf_deinit(&b);
}

static void test_batch_layout(void **state)
{
    k2p_buf b;
    k2p_copy_row r = sample_row();
    size_t row_len;
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_begin(&b), 0);
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), 0);
    row_len = b.len - K2P_COPY_HEADER_LEN;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), 0);
    assert_int_equal(k2p_copy_end(&b), 0);
    assert_int_equal(b.len, K2P_COPY_HEADER_LEN + 2 * row_len + K2P_COPY_TRAILER_LEN);
    assert_memory_equal(b.data + K2P_COPY_HEADER_LEN, b.data + K2P_COPY_HEADER_LEN + row_len,
                        row_len);
    assert_int_equal((unsigned char)b.data[b.len - 1], 0xff);
    assert_int_equal((unsigned char)b.data[b.len - 2], 0xff);
    k2p_buf_deinit(&b);
}

static void test_row_errors_leave_buffer_unchanged(void **state)
{
    k2p_buf b;
    k2p_copy_row r;
    size_t before;
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_begin(&b), 0);
    before = b.len;

    r = sample_row();
    r.seq_no = "012";
    r.seq_no_len = 3;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_EINVAL);
    r = sample_row();
    r.seq_no_len = 0;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_EINVAL);
    r = sample_row();
    r.partition = "a\0b";
    r.partition_len = 3;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_EINVAL);
    r = sample_row();
    r.shard_id = "s\0";
    r.shard_id_len = 2;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_EINVAL);
    r = sample_row();
    r.arrival_us = INT64_MIN;
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_EINVAL);
    r = sample_row();
    assert_int_equal(k2p_copy_put_row(&b, &r, 7), K2P_EINVAL);
    assert_int_equal(b.len, before);
    k2p_buf_deinit(&b);

    /* A bounded buffer refuses the row whole. */
    k2p_buf_init(&b, 64);
    assert_int_equal(k2p_copy_begin(&b), 0);
    before = b.len;
    r = sample_row();
    assert_int_equal(k2p_copy_put_row(&b, &r, K2P_COPY_JSONB), K2P_ENOMEM);
    assert_int_equal(b.len, before);
    k2p_buf_deinit(&b);
}

static void test_quote_ident(void **state)
{
    k2p_buf b;
    char long_name[K2P_PG_IDENT_MAX + 2];
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_pg_quote_ident(&b, "kinesis", 7), 0);
    assert_string_equal(b.data, "\"kinesis\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_pg_quote_ident(&b, "My \"Stream\"", 11), 0);
    assert_string_equal(b.data, "\"My \"\"Stream\"\"\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_pg_quote_ident(&b, "\"", 1), 0);
    assert_string_equal(b.data, "\"\"\"\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_pg_quote_ident(&b, "a;DROP TABLE x", 14), 0);
    assert_string_equal(b.data, "\"a;DROP TABLE x\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_pg_quote_ident(&b, "caf\xc3\xa9-stream.v2", 15), 0);
    assert_string_equal(b.data, "\"caf\xc3\xa9-stream.v2\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_pg_quote_ident(&b, "", 0), K2P_EINVAL);
    assert_int_equal(k2p_pg_quote_ident(&b, "a\0b", 3), K2P_EINVAL);
    memset(long_name, 'n', sizeof long_name);
    assert_int_equal(k2p_pg_quote_ident(&b, long_name, K2P_PG_IDENT_MAX), 0);
    assert_int_equal(b.len, K2P_PG_IDENT_MAX + 2);
    assert_int_equal(k2p_pg_quote_ident(&b, long_name, K2P_PG_IDENT_MAX + 1), K2P_EINVAL);
    assert_int_equal(b.len, K2P_PG_IDENT_MAX + 2);
    k2p_buf_deinit(&b);
}

static void test_sql(void **state)
{
    k2p_buf b;
    (void)state;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_sql_copy(&b, "kinesis", "my\"stream"), 0);
    assert_string_equal(b.data, "COPY \"kinesis\".\"my\"\"stream\" (\"_kinesis_msg_id\", "
                                "\"_kinesis__shard_id\", \"_kinesis__seq_no\", "
                                "\"_kinesis__sub_seq\", \"_kinesis__ts\", "
                                "\"_kinesis__partition\", \"_kinesis__stream_name\", \"data\") "
                                "FROM STDIN (FORMAT binary)");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_create_schema(&b, "Kinesis"), 0);
    assert_string_equal(b.data, "CREATE SCHEMA IF NOT EXISTS \"Kinesis\"");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_create_table(&b, "kinesis", "events", K2P_COPY_JSONB, 1), 0);
    assert_string_equal(b.data, "CREATE TABLE IF NOT EXISTS \"kinesis\".\"events\" ("
                                "\"_kinesis_msg_id\" text NOT NULL, "
                                "\"_kinesis__shard_id\" text NOT NULL, "
                                "\"_kinesis__seq_no\" numeric NOT NULL, "
                                "\"_kinesis__sub_seq\" bigint, "
                                "\"_kinesis__ts\" timestamptz NOT NULL, "
                                "\"_kinesis__partition\" text NOT NULL, "
                                "\"_kinesis__stream_name\" text NOT NULL, "
                                "\"data\" jsonb, PRIMARY KEY (\"_kinesis_msg_id\"))");
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_create_table(&b, "s", "t", K2P_COPY_BYTEA, 0), 0);
    assert_non_null(strstr(b.data, "\"data\" bytea)"));
    assert_null(strstr(b.data, "PRIMARY KEY"));
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_add_sub_seq(&b, "s", "t\""), 0);
    assert_string_equal(b.data, "ALTER TABLE \"s\".\"t\"\"\" ADD COLUMN IF NOT EXISTS "
                                "\"_kinesis__sub_seq\" bigint");

    /* Failures append nothing. */
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_copy(&b, "", "t"), K2P_EINVAL);
    assert_int_equal(k2p_copy_sql_copy(&b, "s", NULL), K2P_EINVAL);
    assert_int_equal(k2p_copy_sql_create_table(&b, "s", "t", 9, 1), K2P_EINVAL);
    assert_int_equal(k2p_copy_sql_create_schema(&b, NULL), K2P_EINVAL);
    assert_int_equal(b.len, 0);
    k2p_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shake128_vectors),
        cmocka_unit_test(test_msg_id_matches_dlt),
        cmocka_unit_test(test_msg_id_every_length),
        cmocka_unit_test(test_msg_ids_batch),
        cmocka_unit_test(test_seqno_valid),
        cmocka_unit_test(test_numeric_bytes),
        cmocka_unit_test(test_timestamptz),
        cmocka_unit_test(test_header_trailer),
        cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_batch_layout),
        cmocka_unit_test(test_row_errors_leave_buffer_unchanged),
        cmocka_unit_test(test_quote_ident),
        cmocka_unit_test(test_sql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

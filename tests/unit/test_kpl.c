/* test_kpl.c - unit tests of KPL de-aggregation (src/kpl.c). Aggregates are encoded here by
 * hand (protobuf wire format, MD5 from mbedTLS), so every malformation can be built exactly:
 * MD5 mismatch and short records (not aggregated), truncated and overlong varints, lengths past
 * the end, wrong and unsupported wire types, missing required fields, key indexes out of range,
 * invalid UTF-8 keys, the record limit, unknown fields at every level (skipped).
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <mbedtls/md5.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/kpl.h"
#include "pb_build.h"

/* ------------------------------------------------------------------------------------------ */
/* A protobuf writer: tests/support/pb_build.c, under short names                               */

typedef k2p_pb pb;
#define pb_raw k2p_pb_raw
#define pb_free k2p_pb_free
#define pb_varint k2p_pb_varint
#define pb_key k2p_pb_key
#define pb_uint k2p_pb_uint
#define pb_bytes k2p_pb_bytes
#define pb_str k2p_pb_str
#define wrap k2p_pb_kpl_wrap

/* A Record: partition_key_index, explicit_hash_key_index (< 0: none), data. */
static void pb_record(pb *agg, uint64_t pk, long long ehk, const char *data)
{
    k2p_pb_kpl_record(agg, pk, ehk, data, strlen(data));
}

static int parse_body(const pb *body, k2p_kpl_agg *agg, pb *rec)
{
    wrap(rec, body);
    return k2p_kpl_parse(rec->p, rec->n, agg);
}

/* Wraps body and expects K2P_KPL_CORRUPT with a reason containing `needle`. */
static void expect_corrupt(const pb *body, const char *needle)
{
    k2p_kpl_agg agg;
    pb rec = {0};
    int rc;
    k2p_kpl_agg_init(&agg);
    rc = parse_body(body, &agg, &rec);
    if (rc != K2P_KPL_CORRUPT)
        fail_msg("rc %d, want corrupt with '%s'", rc, needle);
    assert_int_equal(agg.count, 0);
    assert_memory_equal(agg.reason, "kpl: ", 5);
    if (!strstr(agg.reason, needle))
        fail_msg("reason '%s' lacks '%s'", agg.reason, needle);
    k2p_kpl_agg_deinit(&agg);
    pb_free(&rec);
}

static void expect_key(const char *p, size_t n, const char *want)
{
    assert_non_null(p);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void expect_data(const k2p_kpl_record *r, const char *want)
{
    assert_int_equal(r->data_len, strlen(want));
    if (r->data_len)
        assert_memory_equal(r->data, want, r->data_len);
}

/* ------------------------------------------------------------------------------------------ */
/* Well-formed aggregates                                                                      */

static void test_basic(void **state)
{
    pb body = {0}, rec = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_str(&body, 1, "pk-a");
    pb_str(&body, 1, "pk-b");
    pb_str(&body, 2, "170141183460469231731687303715884105728");
    pb_record(&body, 0, -1, "{\"n\":1}");
    pb_record(&body, 1, 0, "{\"n\":2}");
    pb_record(&body, 0, -1, "");
    pb_record(&body, 1, -1, "\xff\xfe binary");

    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    assert_int_equal(agg.count, 4);
    assert_string_equal(agg.reason, "");
    expect_key(agg.records[0].partition_key, agg.records[0].partition_key_len, "pk-a");
    expect_key(agg.records[1].partition_key, agg.records[1].partition_key_len, "pk-b");
    expect_key(agg.records[2].partition_key, agg.records[2].partition_key_len, "pk-a");
    assert_null(agg.records[0].explicit_hash_key);
    assert_int_equal(agg.records[0].explicit_hash_key_len, 0);
    expect_key(agg.records[1].explicit_hash_key, agg.records[1].explicit_hash_key_len,
               "170141183460469231731687303715884105728");
    expect_data(&agg.records[0], "{\"n\":1}");
    expect_data(&agg.records[1], "{\"n\":2}");
    assert_int_equal(agg.records[2].data_len, 0);
    expect_data(&agg.records[3], "\xff\xfe binary");
    for (size_t i = 0; i < agg.count; i++) {
        const k2p_kpl_record *r = &agg.records[i];
        assert_int_equal(r->sub_sequence, i);
        /* zero-copy: everything points into the record */
        assert_true((const uint8_t *)r->partition_key > rec.p &&
                    (const uint8_t *)r->partition_key < rec.p + rec.n);
        if (r->data_len)
            assert_true(r->data > rec.p && r->data + r->data_len <= rec.p + rec.n - 16);
    }
    assert_true(k2p_kpl_has_magic(rec.p, rec.n));
    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
}

static void test_binary_data_and_order(void **state)
{
    /* Records first, tables after: the order of fields in the message is free. */
    static const uint8_t bin[] = {0, 1, 2, 0xff, 0xfe, 0x80, 0};
    pb body = {0}, rec = {0}, r = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_uint(&r, 1, 1);
    pb_bytes(&r, 3, bin, sizeof bin);
    pb_uint(&r, 2, 0);
    pb_bytes(&body, 3, r.p, r.n);
    pb_str(&body, 2, "1");
    pb_str(&body, 1, "first");
    pb_record(&body, 0, -1, "x");
    pb_str(&body, 1, "second");

    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    assert_int_equal(agg.count, 2);
    expect_key(agg.records[0].partition_key, agg.records[0].partition_key_len, "second");
    expect_key(agg.records[0].explicit_hash_key, agg.records[0].explicit_hash_key_len, "1");
    assert_int_equal(agg.records[0].data_len, sizeof bin);
    assert_memory_equal(agg.records[0].data, bin, sizeof bin);
    expect_key(agg.records[1].partition_key, agg.records[1].partition_key_len, "first");
    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
    pb_free(&r);
}

static void test_empty_records_list(void **state)
{
    /* A valid aggregate of no user records (the KCL yields nothing for it). */
    pb body = {0}, rec = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_str(&body, 1, "unused");
    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    assert_int_equal(agg.count, 0);
    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
}

static void test_unknown_fields_skipped(void **state)
{
    static const uint8_t fixed64[8] = {1, 2, 3, 4, 5, 6, 7, 8}, fixed32[4] = {9, 9, 9, 9};
    pb body = {0}, rec = {0}, r = {0}, tag = {0};
    k2p_kpl_agg agg;
    (void)state;
    /* top level: varint, fixed64, fixed32, bytes with field numbers never used */
    pb_uint(&body, 4, 123456789);
    pb_key(&body, 15, 1);
    pb_raw(&body, fixed64, 8);
    pb_key(&body, 16, 5);
    pb_raw(&body, fixed32, 4);
    pb_str(&body, 536870911, "largest field number");
    pb_str(&body, 1, "pk");
    /* a record with tags and unknown fields of its own */
    pb_str(&tag, 1, "tag-key");
    pb_str(&tag, 2, "tag-value");
    pb_uint(&tag, 9, 1);
    pb_uint(&r, 1, 0);
    pb_bytes(&r, 4, tag.p, tag.n);
    pb_uint(&r, 7, 77);
    pb_key(&r, 8, 5);
    pb_raw(&r, fixed32, 4);
    pb_str(&r, 3, "payload");
    pb_str(&r, 99, "ignored");
    pb_bytes(&body, 3, r.p, r.n);

    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    assert_int_equal(agg.count, 1);
    expect_data(&agg.records[0], "payload");
    expect_key(agg.records[0].partition_key, agg.records[0].partition_key_len, "pk");
    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
    pb_free(&r);
    pb_free(&tag);
}

static void test_last_value_wins(void **state)
{
    /* proto2: a non-repeated field seen twice keeps the last value. */
    pb body = {0}, rec = {0}, r = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_str(&body, 1, "a");
    pb_str(&body, 1, "b");
    pb_uint(&r, 1, 0);
    pb_str(&r, 3, "old");
    pb_uint(&r, 1, 1);
    pb_str(&r, 3, "new");
    pb_bytes(&body, 3, r.p, r.n);
    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    expect_key(agg.records[0].partition_key, agg.records[0].partition_key_len, "b");
    expect_data(&agg.records[0], "new");
    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
    pb_free(&r);
}

static void test_record_limit(void **state)
{
    pb body = {0}, rec = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_str(&body, 1, "k");
    for (int i = 0; i < K2P_KPL_MAX_RECORDS; i++)
        pb_record(&body, 0, -1, "");
    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
    assert_int_equal(agg.count, K2P_KPL_MAX_RECORDS);
    assert_int_equal(agg.records[K2P_KPL_MAX_RECORDS - 1].sub_sequence, K2P_KPL_MAX_RECORDS - 1);
    k2p_kpl_agg_deinit(&agg);
    pb_free(&rec);

    pb_record(&body, 0, -1, "");
    expect_corrupt(&body, "more than 100000 user records");
    pb_free(&body);

    for (int i = 0; i <= K2P_KPL_MAX_RECORDS; i++)
        pb_str(&body, 1, "k");
    expect_corrupt(&body, "more than 100000 entries in partition_key_table");
    pb_free(&body);
}

static void test_agg_reuse(void **state)
{
    /* One k2p_kpl_agg per reader thread, reused: results never leak between calls. */
    pb big = {0}, small = {0}, rb = {0}, rs = {0};
    k2p_kpl_agg agg;
    (void)state;
    pb_str(&big, 1, "p");
    for (int i = 0; i < 1000; i++)
        pb_record(&big, 0, -1, "d");
    pb_str(&small, 1, "q");
    pb_record(&small, 0, -1, "only");
    k2p_kpl_agg_init(&agg);
    assert_int_equal(parse_body(&big, &agg, &rb), K2P_KPL_OK);
    assert_int_equal(agg.count, 1000);
    assert_int_equal(parse_body(&small, &agg, &rs), K2P_KPL_OK);
    assert_int_equal(agg.count, 1);
    expect_data(&agg.records[0], "only");
    assert_int_equal(k2p_kpl_parse((const uint8_t *)"{}", 2, &agg), K2P_KPL_NOT_AGGREGATED);
    assert_int_equal(agg.count, 0);
    k2p_kpl_agg_deinit(&agg);
    k2p_kpl_agg_deinit(&agg); /* deinit twice is harmless */
    pb_free(&big);
    pb_free(&small);
    pb_free(&rb);
    pb_free(&rs);
}

/* ------------------------------------------------------------------------------------------ */
/* Not aggregated                                                                              */

static void test_not_aggregated(void **state)
{
    pb body = {0}, rec = {0};
    k2p_kpl_agg agg;
    uint8_t md[16];
    (void)state;
    k2p_kpl_agg_init(&agg);

    /* no magic */
    assert_int_equal(k2p_kpl_parse((const uint8_t *)"{\"a\":1}", 7, &agg), K2P_KPL_NOT_AGGREGATED);
    assert_string_equal(agg.reason, "");
    assert_int_equal(k2p_kpl_parse(NULL, 0, &agg), K2P_KPL_NOT_AGGREGATED);
    assert_int_equal(k2p_kpl_parse((const uint8_t *)"\xf3\x89\x9a", 3, &agg),
                     K2P_KPL_NOT_AGGREGATED);
    assert_false(k2p_kpl_has_magic((const uint8_t *)"\xf3\x89\x9a", 3));

    /* magic, but nothing after it beyond a digest (the KCL's rule: > 16 bytes needed) */
    assert_int_equal(mbedtls_md5_ret((const unsigned char *)"", 0, md), 0);
    pb_raw(&rec, K2P_KPL_MAGIC, 4);
    pb_raw(&rec, md, 16);
    assert_int_equal(k2p_kpl_parse(rec.p, rec.n, &agg), K2P_KPL_NOT_AGGREGATED);
    assert_non_null(strstr(agg.reason, "only 20 bytes"));
    pb_free(&rec);

    /* a valid aggregate with one bit of the digest, or of the body, flipped */
    pb_str(&body, 1, "pk");
    pb_record(&body, 0, -1, "data");
    wrap(&rec, &body);
    assert_int_equal(k2p_kpl_parse(rec.p, rec.n, &agg), K2P_KPL_OK);
    rec.p[rec.n - 1] ^= 1;
    assert_int_equal(k2p_kpl_parse(rec.p, rec.n, &agg), K2P_KPL_NOT_AGGREGATED);
    assert_non_null(strstr(agg.reason, "MD5 mismatch"));
    assert_int_equal(agg.count, 0);
    rec.p[rec.n - 1] ^= 1;
    rec.p[6] ^= 0x40;
    assert_int_equal(k2p_kpl_parse(rec.p, rec.n, &agg), K2P_KPL_NOT_AGGREGATED);
    rec.p[6] ^= 0x40;
    /* every truncation breaks the digest: never corrupt, never a crash */
    for (size_t n = 0; n < rec.n; n++)
        assert_int_equal(k2p_kpl_parse(rec.p, n, &agg), K2P_KPL_NOT_AGGREGATED);
    /* garbage with a right digest is corrupt, not "not aggregated" */
    pb_free(&body);
    pb_raw(&body, "\xff\xff\xff", 3);
    pb_free(&rec);
    assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_CORRUPT);

    k2p_kpl_agg_deinit(&agg);
    pb_free(&body);
    pb_free(&rec);
}

/* ------------------------------------------------------------------------------------------ */
/* Corrupt                                                                                     */

static void test_truncated_varints(void **state)
{
    pb body = {0}, r = {0};
    (void)state;
    /* a field key cut short */
    pb_str(&body, 1, "pk");
    pb_raw(&body, "\x80", 1);
    expect_corrupt(&body, "AggregatedRecord: truncated varint at byte 8");
    pb_free(&body);

    /* a record whose partition_key_index is cut short inside the record */
    pb_str(&body, 1, "pk");
    pb_raw(&r, "\x08\xff\xff", 3);
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 0: truncated varint");
    pb_free(&body);
    pb_free(&r);

    /* a length cut short at the very end */
    pb_key(&body, 1, 2);
    pb_raw(&body, "\x81", 1);
    expect_corrupt(&body, "truncated varint");
    pb_free(&body);

    /* eleven bytes, and ten whose last carries bits past 64 */
    pb_str(&body, 1, "pk");
    pb_key(&body, 4, 0);
    pb_raw(&body, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    expect_corrupt(&body, "varint longer than 64 bits");
    pb_free(&body);
    pb_key(&body, 4, 0);
    pb_raw(&body, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10);
    expect_corrupt(&body, "varint longer than 64 bits");
    pb_free(&body);
    /* ... while 2^64-1 in ten bytes is a fine (unknown, skipped) value */
    {
        k2p_kpl_agg agg;
        pb rec = {0};
        pb_key(&body, 4, 0);
        pb_raw(&body, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);
        k2p_kpl_agg_init(&agg);
        assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
        k2p_kpl_agg_deinit(&agg);
        pb_free(&rec);
    }
    pb_free(&body);
}

static void test_lengths_past_end(void **state)
{
    pb body = {0}, r = {0};
    (void)state;
    pb_key(&body, 1, 2);
    pb_varint(&body, 100);
    pb_raw(&body, "short", 5);
    expect_corrupt(&body, "length 100 runs past the end of the message (5 bytes left)");
    pb_free(&body);

    /* inside a record: data longer than the record, though the aggregate has the bytes */
    pb_str(&body, 1, "pk");
    pb_uint(&r, 1, 0);
    pb_key(&r, 3, 2);
    pb_varint(&r, 10);
    pb_raw(&r, "abc", 3);
    pb_bytes(&body, 3, r.p, r.n);
    pb_str(&body, 1, "more bytes after the record");
    expect_corrupt(&body, "record 0: length 10 runs past the end");
    pb_free(&body);
    pb_free(&r);

    /* a huge length (2^63) must not wrap a pointer */
    pb_key(&body, 3, 2);
    pb_varint(&body, (uint64_t)1 << 63);
    expect_corrupt(&body, "runs past the end");
    pb_free(&body);

    /* truncated fixed-width unknown fields */
    pb_key(&body, 9, 1);
    pb_raw(&body, "1234567", 7);
    expect_corrupt(&body, "truncated 8-byte field 9");
    pb_free(&body);
    pb_key(&body, 9, 5);
    pb_raw(&body, "123", 3);
    expect_corrupt(&body, "truncated 4-byte field 9");
    pb_free(&body);
}

static void test_index_out_of_range(void **state)
{
    pb body = {0};
    (void)state;
    pb_str(&body, 1, "a");
    pb_str(&body, 1, "b");
    pb_record(&body, 1, -1, "ok");
    pb_record(&body, 2, -1, "bad");
    expect_corrupt(&body, "record 1: partition_key_index 2 out of range (2 keys)");
    pb_free(&body);

    pb_record(&body, 0, -1, "no table at all");
    expect_corrupt(&body, "record 0: partition_key_index 0 out of range (0 keys)");
    pb_free(&body);

    pb_str(&body, 1, "a");
    pb_str(&body, 2, "12345");
    pb_record(&body, 0, 0, "ok");
    pb_record(&body, 0, 1, "bad");
    expect_corrupt(&body, "record 1: explicit_hash_key_index 1 out of range (1 keys)");
    pb_free(&body);

    pb_str(&body, 1, "a");
    pb_record(&body, (uint64_t)1 << 32, -1, "index that truncates to 0 as uint32");
    expect_corrupt(&body, "partition_key_index 4294967296 out of range");
    pb_free(&body);
}

static void test_wrong_wire_types(void **state)
{
    pb body = {0}, r = {0};
    (void)state;
    /* records as a varint */
    pb_str(&body, 1, "a");
    pb_uint(&body, 3, 5);
    expect_corrupt(&body, "field 3 (records) has wire type 0, expected 2");
    pb_free(&body);
    /* a key table entry as a varint */
    pb_uint(&body, 1, 5);
    expect_corrupt(&body, "field 1 (partition_key_table) has wire type 0, expected 2");
    pb_free(&body);
    pb_key(&body, 2, 5);
    pb_raw(&body, "abcd", 4);
    expect_corrupt(&body, "field 2 (explicit_hash_key_table) has wire type 5, expected 2");
    pb_free(&body);
    /* partition_key_index as bytes */
    pb_str(&body, 1, "a");
    pb_str(&r, 1, "0");
    pb_str(&r, 3, "d");
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 0: field 1 (partition_key_index) has wire type 2, expected 0");
    pb_free(&body);
    pb_free(&r);
    /* data as a varint */
    pb_str(&body, 1, "a");
    pb_uint(&r, 1, 0);
    pb_uint(&r, 3, 7);
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 0: field 3 (data) has wire type 0, expected 2");
    pb_free(&body);
    pb_free(&r);
    /* a tag key as a varint */
    {
        pb tag = {0};
        pb_str(&body, 1, "a");
        pb_uint(&tag, 1, 3);
        pb_uint(&r, 1, 0);
        pb_str(&r, 3, "d");
        pb_bytes(&r, 4, tag.p, tag.n);
        pb_bytes(&body, 3, r.p, r.n);
        expect_corrupt(&body, "record 0 tag: field 1 (key) has wire type 0, expected 2");
        pb_free(&tag);
    }
    pb_free(&body);
    pb_free(&r);
    /* groups and the undefined wire types 6 and 7, known field or not */
    for (unsigned wt = 3; wt <= 7; wt++) {
        if (wt == 5)
            continue;
        pb_key(&body, 12, wt);
        expect_corrupt(&body, "field 12 has unsupported wire type");
        pb_free(&body);
    }
    /* field number 0 */
    pb_raw(&body, "\x02\x00", 2);
    expect_corrupt(&body, "invalid field number 0");
    pb_free(&body);
}

static void test_missing_required(void **state)
{
    pb body = {0}, r = {0}, tag = {0};
    (void)state;
    pb_str(&body, 1, "a");
    pb_str(&r, 3, "data without a key index");
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 0: missing partition_key_index");
    pb_free(&body);
    pb_free(&r);

    pb_str(&body, 1, "a");
    pb_record(&body, 0, -1, "fine");
    pb_uint(&r, 1, 0);
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 1: missing data");
    pb_free(&body);
    pb_free(&r);

    /* an empty record message */
    pb_str(&body, 1, "a");
    pb_bytes(&body, 3, "", 0);
    expect_corrupt(&body, "record 0: missing partition_key_index");
    pb_free(&body);

    pb_str(&body, 1, "a");
    pb_str(&tag, 2, "value without key");
    pb_uint(&r, 1, 0);
    pb_str(&r, 3, "d");
    pb_bytes(&r, 4, tag.p, tag.n);
    pb_bytes(&body, 3, r.p, r.n);
    expect_corrupt(&body, "record 0 tag: missing key");
    pb_free(&body);
    pb_free(&r);
    pb_free(&tag);
}

static void test_keys_must_be_text(void **state)
{
    pb body = {0};
    (void)state;
    pb_bytes(&body, 1, "ok\xff", 3);
    pb_record(&body, 0, -1, "d");
    expect_corrupt(&body, "partition_key_table entry 0 is not UTF-8 text at byte 8");
    pb_free(&body);
    pb_str(&body, 1, "a");
    pb_bytes(&body, 2, "1\0002", 3);
    expect_corrupt(&body, "explicit_hash_key_table entry 0 is not UTF-8 text");
    pb_free(&body);
    /* data is bytes: anything goes */
    {
        k2p_kpl_agg agg;
        pb rec = {0}, r = {0};
        pb_str(&body, 1, "caf\xc3\xa9");
        pb_uint(&r, 1, 0);
        pb_bytes(&r, 3, "\xff\0", 2);
        pb_bytes(&body, 3, r.p, r.n);
        k2p_kpl_agg_init(&agg);
        assert_int_equal(parse_body(&body, &agg, &rec), K2P_KPL_OK);
        expect_key(agg.records[0].partition_key, agg.records[0].partition_key_len, "caf\xc3\xa9");
        k2p_kpl_agg_deinit(&agg);
        pb_free(&rec);
        pb_free(&r);
    }
    pb_free(&body);
}

static void test_every_truncation_of_body(void **state)
{
    /* Cut the protobuf anywhere and fix the digest: OK with fewer records (a cut between
     * fields) or corrupt, never a crash, and never a record past the cut. */
    pb body = {0}, tag = {0}, r = {0};
    (void)state;
    pb_str(&body, 1, "alpha");
    pb_str(&body, 2, "42");
    pb_str(&tag, 1, "k");
    pb_str(&tag, 2, "v");
    pb_uint(&r, 1, 0);
    pb_uint(&r, 2, 0);
    pb_str(&r, 3, "first payload");
    pb_bytes(&r, 4, tag.p, tag.n);
    pb_bytes(&body, 3, r.p, r.n);
    pb_record(&body, 0, -1, "second");
    for (size_t cut = 1; cut <= body.n; cut++) {
        pb part = {0}, rec = {0};
        k2p_kpl_agg agg;
        int rc;
        pb_raw(&part, body.p, cut);
        k2p_kpl_agg_init(&agg);
        rc = parse_body(&part, &agg, &rec);
        assert_true(rc == K2P_KPL_OK || rc == K2P_KPL_CORRUPT);
        if (rc == K2P_KPL_OK) {
            for (size_t i = 0; i < agg.count; i++)
                assert_true(agg.records[i].data + agg.records[i].data_len <= rec.p + 4 + cut);
        } else {
            assert_true(agg.reason[0] != '\0');
        }
        if (cut == body.n)
            assert_int_equal(agg.count, 2);
        k2p_kpl_agg_deinit(&agg);
        pb_free(&part);
        pb_free(&rec);
    }
    pb_free(&body);
    pb_free(&tag);
    pb_free(&r);
}

/* k2p_kpl_build writes what a hand-encoded aggregate holds, byte for byte, and parses back. */
static void test_build(void **state)
{
    static const char *const keys[] = {"a", "bb", "a", "c", "bb"};
    static const char *const datas[] = {"{\"i\":0}", "", "x", "{\"i\":3}", "\x01\x02"};
    k2p_kpl_record in[5];
    k2p_kpl_agg agg;
    k2p_buf out;
    pb body = {0}, want = {0};
    (void)state;
    for (int i = 0; i < 5; i++) {
        in[i] = (k2p_kpl_record){.partition_key = keys[i],
                                 .partition_key_len = strlen(keys[i]),
                                 .data = (const uint8_t *)datas[i],
                                 .data_len = strlen(datas[i])};
    }
    pb_str(&body, 1, "a");
    pb_str(&body, 1, "bb");
    pb_str(&body, 1, "c");
    pb_record(&body, 0, -1, datas[0]);
    pb_record(&body, 1, -1, datas[1]);
    pb_record(&body, 0, -1, datas[2]);
    pb_record(&body, 2, -1, datas[3]);
    pb_record(&body, 1, -1, datas[4]);
    wrap(&want, &body);

    k2p_buf_init(&out, 0);
    assert_int_equal(k2p_buf_puts(&out, "prefix"), 0);
    assert_int_equal(k2p_kpl_build(in, 5, &out), 0);
    assert_int_equal(out.len, 6 + want.n);
    assert_memory_equal(out.data + 6, want.p, want.n);

    k2p_kpl_agg_init(&agg);
    assert_int_equal(k2p_kpl_parse((const uint8_t *)out.data + 6, out.len - 6, &agg), K2P_KPL_OK);
    assert_int_equal(agg.count, 5);
    for (size_t i = 0; i < 5; i++) {
        expect_key(agg.records[i].partition_key, agg.records[i].partition_key_len, keys[i]);
        expect_data(&agg.records[i], datas[i]);
        assert_int_equal(agg.records[i].sub_sequence, i);
    }
    /* an aggregate of nothing would be magic + MD5 only, which readers take for an ordinary
     * record: refused */
    k2p_buf_reset(&out);
    assert_int_equal(k2p_kpl_build(NULL, 0, &out), K2P_EINVAL);
    assert_int_equal(out.len, 0);
    k2p_kpl_agg_deinit(&agg);
    k2p_buf_deinit(&out);
    pb_free(&body);
    pb_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_binary_data_and_order),
        cmocka_unit_test(test_empty_records_list),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_last_value_wins),
        cmocka_unit_test(test_record_limit),
        cmocka_unit_test(test_agg_reuse),
        cmocka_unit_test(test_not_aggregated),
        cmocka_unit_test(test_truncated_varints),
        cmocka_unit_test(test_lengths_past_end),
        cmocka_unit_test(test_index_out_of_range),
        cmocka_unit_test(test_wrong_wire_types),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_keys_must_be_text),
        cmocka_unit_test(test_every_truncation_of_body),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_kinesis_parse.c - Kinesis response parsing, error classification and backoff.
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"
#include "kinesis2pg/kinesis_client.h"

#define SEQ1 "49590090892384844848932323827878787270000000000000000001"
#define SEQ2 "49590090892384844848932323827878787270000000000000000002"

static void test_get_records_full(void **state)
{
    const char *body =
        "{\"Records\":[{\"SequenceNumber\":\"" SEQ1 "\",\"ApproximateArrivalTimestamp\":"
        "1732123456.789,\"Data\":\"eyJhIjoxfQ==\",\"PartitionKey\":\"user-1\"},"
        "{\"SequenceNumber\":\"" SEQ2 "\",\"ApproximateArrivalTimestamp\":1.732123457E9,"
        "\"Data\":\"AAH/\",\"PartitionKey\":\"k\\u00e9\"}],"
        "\"NextShardIterator\":\"AAAAiter\",\"MillisBehindLatest\":1234}";
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    assert_int_equal(k2p_kinesis_parse_get_records(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.recs[0].seq, SEQ1);
    assert_int_equal(r.recs[0].seq_len, strlen(SEQ1));
    assert_string_equal(r.recs[0].pkey, "user-1");
    assert_int_equal(r.recs[0].data_len, 7);
    assert_memory_equal(r.recs[0].data, "{\"a\":1}", 7);
    assert_int_equal(r.recs[0].arrival_us, 1732123456789000LL);
    assert_int_equal(r.recs[1].arrival_us, 1732123457000000LL);
    assert_int_equal(r.recs[1].data_len, 3);
    assert_memory_equal(r.recs[1].data, "\x00\x01\xff", 3);
    assert_string_equal(r.recs[1].pkey, "k\xc3\xa9");
    assert_string_equal(r.next_iterator, "AAAAiter");
    assert_int_equal(r.millis_behind, 1234);
    assert_int_equal(r.data_bytes, 10);
    assert_int_equal(r.n_children, 0);
    /* Reuse: a second parse resets everything. */
    body = "{\"Records\":[],\"MillisBehindLatest\":0}";
    assert_int_equal(k2p_kinesis_parse_get_records(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.n, 0);
    assert_null(r.next_iterator); /* closed shard, fully read */
    assert_int_equal(r.millis_behind, 0);
    k2p_records_deinit(&r);
}

static void test_get_records_child_shards(void **state)
{
    const char *body =
        "{\"Records\":[],\"MillisBehindLatest\":0,\"ChildShards\":["
        "{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":[\"shardId-000000000000\"],"
        "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"5\"}},"
        "{\"ShardId\":\"shardId-000000000003\",\"ParentShards\":[\"shardId-000000000000\","
        "\"shardId-000000000001\"]}]}";
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    assert_int_equal(k2p_kinesis_parse_get_records(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.n_children, 2);
    assert_string_equal(r.children[0].shard_id, "shardId-000000000002");
    assert_int_equal(r.children[0].n_parents, 1);
    assert_int_equal(r.children[1].n_parents, 2);
    assert_string_equal(r.children[1].parents[1], "shardId-000000000001");
    k2p_records_deinit(&r);
}

static void test_get_records_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"Records\":{}}",
        "{\"Records\":[{\"SequenceNumber\":\"" SEQ1 "\",\"PartitionKey\":\"k\"}]}",
        "{\"Records\":[{\"SequenceNumber\":\"" SEQ1 "\",\"Data\":\"@@@@\",\"PartitionKey\":\"k\"}]}",
        "{\"Records\":[{\"SequenceNumber\":\"0123\",\"Data\":\"\",\"PartitionKey\":\"k\"}]}",
        "{\"Records\":[{\"SequenceNumber\":12,\"Data\":\"\",\"PartitionKey\":\"k\"}]}",
        "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"k\","
        "\"ApproximateArrivalTimestamp\":\"x\"}]}",
        "{\"Records\":[],\"ChildShards\":[{\"ParentShards\":[]}]}",
        "{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"s\",\"ParentShards\":[\"a\",\"b\",\"c\"]}]}",
        /* Truncated in the middle of a record. */
        "{\"Records\":[{\"SequenceNumber\":\"" SEQ1 "\",\"Data\":\"eyJh",
    };
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = k2p_kinesis_parse_get_records(bad[i], strlen(bad[i]), &r, &err);
        if (rc != K2P_EPARSE)
            fail_msg("case %zu: rc %d", i, rc);
        assert_non_null(strstr(err.msg, "malformed"));
    }
    k2p_records_deinit(&r);
}

static void test_get_records_any_valid_json(void **state)
{
    /* Key order, unknown keys and nesting, escapes in Data and PartitionKey, null iterator. */
    const char *body =
        " {\"MillisBehindLatest\": 5, \"Extra\": {\"a\": [1, {\"b\": null}, \"x\\\"y\"]},\n"
        "  \"Records\" : [ {\"EncryptionType\":\"KMS\",\"Data\":\"YWJj\\/w==\","
        "\"PartitionKey\":\"\\ud83d\\ude00-\\u00e9\\n\",\"SequenceNumber\":\"7\","
        "\"ApproximateArrivalTimestamp\":1.5e9} ],\n"
        "  \"NextShardIterator\": null, \"ChildShards\": null } ";
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    assert_int_equal(k2p_kinesis_parse_get_records(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.recs[0].data_len, 4);
    assert_memory_equal(r.recs[0].data, "abc\xff", 4);
    assert_string_equal(r.recs[0].pkey, "\xf0\x9f\x98\x80-\xc3\xa9\n");
    assert_int_equal(r.recs[0].pkey_len, 8);
    assert_string_equal(r.recs[0].seq, "7");
    assert_int_equal(r.recs[0].arrival_us, 1500000000000000LL);
    assert_null(r.next_iterator);
    assert_int_equal(r.millis_behind, 5);
    k2p_records_deinit(&r);
}

static void test_get_records_rejects_what_json_rejects(void **state)
{
    static const char *const bad[] = {
        "{\"Records\":[]} x",                                   /* trailing bytes */
        "{\"Records\":[],}",                                    /* trailing comma */
        "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"\\ud800\"}]}",
        "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"a\x01\"}]}",
        ("{\"Records\":[],\"X\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"),
        "{\"Records\":[],\"MillisBehindLatest\":1e999}",
        "{\"Records\":[],\"NextShardIterator\":\"a\\q\"}",
    };
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = k2p_kinesis_parse_get_records(bad[i], strlen(bad[i]), &r, &err);
        if (rc != K2P_EPARSE)
            fail_msg("case %zu: rc %d", i, rc);
        assert_int_equal(r.n, 0);
    }
    k2p_records_deinit(&r);
}

/* Data is decoded 32 characters at a time while it is scanned (when the CPU has AVX2), the
 * rest by the scalar decoder: every length, and every byte value at one position of each,
 * must give what k2p_base64_decode gives (or the same failure). */
static void test_get_records_data_every_length(void **state)
{
    char data[200], body[400];
    uint8_t raw[160], want[160];
    k2p_records r;
    k2p_err err;
    (void)state;
    k2p_records_init(&r);
    for (size_t n = 0; n < 140; n++) {
        size_t el;
        for (size_t i = 0; i < n; i++)
            raw[i] = (uint8_t)(i * 37 + n);
        el = k2p_base64_encode(raw, n, data);
        for (int c = -1; c < 256; c++) {
            size_t pos = el ? (n * 7) % el : 0, bl;
            long wn;
            if (c >= 0) {
                if (!el || c == '"' || c == '\\' || c < 0x20)
                    continue; /* not the Data string's own failure */
                data[pos] = (char)c;
            }
            wn = k2p_base64_decode(data, el, want);
            bl = (size_t)snprintf(body, sizeof body,
                                  "{\"Records\":[{\"Data\":\"%.*s\",\"PartitionKey\":\"p\","
                                  "\"SequenceNumber\":\"" SEQ1 "\"}],\"MillisBehindLatest\":0}",
                                  (int)el, data);
            if (wn < 0) {
                assert_int_equal(k2p_kinesis_parse_get_records(body, bl, &r, &err), K2P_EPARSE);
            } else {
                assert_int_equal(k2p_kinesis_parse_get_records(body, bl, &r, &err), 0);
                assert_int_equal(r.n, 1);
                assert_int_equal(r.recs[0].data_len, (uint32_t)wn);
                if (wn)
                    assert_memory_equal(r.recs[0].data, want, (size_t)wn);
                assert_string_equal(r.recs[0].seq, SEQ1);
                assert_string_equal(r.recs[0].pkey, "p");
            }
            if (c >= 0)
                k2p_base64_encode(raw, n, data); /* undo */
        }
    }
    k2p_records_deinit(&r);
}

/* An answer of more records than GetRecords' Limit allows (10,000): the record table, which
 * lives at the start of the arena, moves out to an allocation of its own, every record stays
 * intact, and the next answers (in the arena again, after a trim too) parse as before. */
static void test_get_records_more_than_limit(void **state)
{
    enum { N = 10050 };
    k2p_records r;
    k2p_err err;
    char *body = malloc((size_t)N * 96 + 64);
    size_t len = 0;
    (void)state;
    assert_non_null(body);
    len += (size_t)sprintf(body + len, "{\"Records\":[");
    for (int i = 0; i < N; i++) /* Data: base64 of the 4 digits of i % 10000 */
        len += (size_t)sprintf(body + len,
                               "%s{\"SequenceNumber\":\"%d\",\"PartitionKey\":\"p%d\","
                               "\"Data\":\"%s\"}",
                               i ? "," : "", i + 1, i, i % 2 ? "MDAwMQ==" : "MDAwMA==");
    len += (size_t)sprintf(body + len, "],\"NextShardIterator\":\"it\",\"MillisBehindLatest\":0}");
    k2p_records_init(&r);
    for (int round = 0; round < 2; round++) {
        char seq[16], pk[16];
        assert_int_equal(k2p_kinesis_parse_get_records(body, len, &r, &err), 0);
        assert_int_equal(r.n, N);
        for (int i = 0; i < N; i++) {
            snprintf(seq, sizeof seq, "%d", i + 1);
            snprintf(pk, sizeof pk, "p%d", i);
            assert_string_equal(r.recs[i].seq, seq);
            assert_string_equal(r.recs[i].pkey, pk);
            assert_int_equal(r.recs[i].data_len, 4);
            assert_memory_equal(r.recs[i].data, i % 2 ? "0001" : "0000", 4);
        }
        /* A small answer after the big one, then a trim (as a shard reader does). */
        {
            const char *small = "{\"Records\":[{\"SequenceNumber\":\"" SEQ1 "\","
                                "\"PartitionKey\":\"k\",\"Data\":\"AAH/\"}],"
                                "\"NextShardIterator\":\"it\",\"MillisBehindLatest\":0}";
            assert_int_equal(k2p_kinesis_parse_get_records(small, strlen(small), &r, &err), 0);
            assert_int_equal(r.n, 1);
            assert_string_equal(r.recs[0].seq, SEQ1);
            assert_memory_equal(r.recs[0].data, "\x00\x01\xff", 3);
        }
        k2p_records_trim(&r, round ? 0 : (size_t)1 << 20);
    }
    k2p_records_deinit(&r);
    free(body);
}

static void test_list_shards(void **state)
{
    const char *body =
        "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{"
        "\"StartingHashKey\":\"0\",\"EndingHashKey\":\"170141183460469231731687303715884105727\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"" SEQ1 "\","
        "\"EndingSequenceNumber\":\"" SEQ2 "\"}},"
        "{\"ShardId\":\"shardId-000000000002\",\"ParentShardId\":\"shardId-000000000000\","
        "\"AdjacentParentShardId\":\"shardId-000000000001\",\"SequenceNumberRange\":{"
        "\"StartingSequenceNumber\":\"" SEQ2 "\"}}],\"NextToken\":\"next-page\"}";
    k2p_shard_list l = {0};
    char *tok = NULL;
    k2p_err err;
    (void)state;
    assert_int_equal(k2p_kinesis_parse_list_shards(body, strlen(body), &l, &tok, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(tok, "next-page");
    assert_string_equal(l.shards[0].ending_seq, SEQ2);
    assert_null(l.shards[0].parent_shard_id);
    assert_string_equal(l.shards[1].parent_shard_id, "shardId-000000000000");
    assert_string_equal(l.shards[1].adjacent_parent_shard_id, "shardId-000000000001");
    assert_null(l.shards[1].ending_seq);
    free(tok);
    /* A second page appends; no NextToken means last page. */
    body = "{\"Shards\":[{\"ShardId\":\"shardId-000000000003\"}]}";
    assert_int_equal(k2p_kinesis_parse_list_shards(body, strlen(body), &l, &tok, &err), 0);
    assert_int_equal(l.n, 3);
    assert_null(tok);
    assert_int_equal(k2p_kinesis_parse_list_shards("{\"Shards\":[{}]}", 15, &l, &tok, &err),
                     K2P_EPARSE);
    assert_int_equal(k2p_kinesis_parse_list_shards("<html>", 6, &l, &tok, &err), K2P_EPARSE);
    k2p_shard_list_deinit(&l);
}

static void test_classify(void **state)
{
    struct {
        long status;
        const char *body;
        int code;
        const char *type;
    } cases[] = {
        {400, "{\"__type\":\"ProvisionedThroughputExceededException\",\"message\":\"Rate exceeded\"}",
         K2P_ETHROTTLED, "ProvisionedThroughputExceededException"},
        {400, "{\"__type\":\"com.amazonaws.kinesis.v20131202#LimitExceededException\"}",
         K2P_ETHROTTLED, "LimitExceededException"},
        {400, "{\"__type\":\"KMSThrottlingException\",\"Message\":\"slow down\"}", K2P_ETHROTTLED,
         "KMSThrottlingException"},
        {400, "{\"__type\":\"ExpiredIteratorException\",\"message\":\"Iterator expired\"}",
         K2P_EEXPIRED, "ExpiredIteratorException"},
        {400, "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream x not found\"}",
         K2P_ENOTFOUND, "ResourceNotFoundException"},
        {400, "{\"__type\":\"AccessDeniedException\"}", K2P_EAUTH, "AccessDeniedException"},
        {400, "{\"__type\":\"UnrecognizedClientException\"}", K2P_EAUTH,
         "UnrecognizedClientException"},
        {400, "{\"__type\":\"ValidationException\"}", K2P_EFATAL, "ValidationException"},
        {400, "{\"__type\":\"InvalidArgumentException\"}", K2P_EFATAL, "InvalidArgumentException"},
        {500, "{\"__type\":\"InternalFailure\"}", K2P_ERETRY, "InternalFailure"},
        {503, "<html>unavailable</html>", K2P_ERETRY, ""},
        {502, "", K2P_ERETRY, ""},
        {429, "", K2P_ETHROTTLED, ""},
        {404, "<html>nope</html>", K2P_EFATAL, ""},
        {400, "{\"__type\":\"SomethingNew\"}", K2P_EFATAL, "SomethingNew"},
        {500, "{\"__type\":\"SomethingNew\"}", K2P_ERETRY, "SomethingNew"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        k2p_err err = {0};
        int rc = k2p_kinesis_classify_error(cases[i].status, cases[i].body,
                                            strlen(cases[i].body), &err);
        if (rc != cases[i].code)
            fail_msg("case %zu: got %d want %d", i, rc, cases[i].code);
        assert_int_equal(err.code, rc);
        assert_string_equal(err.aws_type, cases[i].type);
        assert_int_equal(err.http_status, cases[i].status);
    }
    {
        k2p_err err = {0};
        const char *b = "{\"__type\":\"ExpiredIteratorException\",\"message\":\"Iterator expired\"}";
        k2p_kinesis_classify_error(400, b, strlen(b), &err);
        assert_non_null(strstr(err.msg, "Iterator expired")); /* AWS message kept */
    }
}

static void test_backoff_full_jitter(void **state)
{
    uint64_t rng = 12345;
    int64_t max_seen = 0;
    (void)state;
    for (int i = 0; i < 1000; i++) {
        int64_t d = k2p_backoff_ms(0, 100, 5000, &rng);
        assert_true(d >= 0 && d <= 100);
    }
    for (int i = 0; i < 1000; i++) {
        int64_t d = k2p_backoff_ms(3, 100, 5000, &rng);
        assert_true(d >= 0 && d <= 800);
        if (d > max_seen)
            max_seen = d;
    }
    assert_true(max_seen > 400); /* really spread over the range */
    for (int i = 0; i < 1000; i++) {
        int64_t d = k2p_backoff_ms(40, 100, 5000, &rng);
        assert_true(d >= 0 && d <= 5000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_records_full),
        cmocka_unit_test(test_get_records_child_shards),
        cmocka_unit_test(test_get_records_malformed),
        cmocka_unit_test(test_get_records_any_valid_json),
        cmocka_unit_test(test_get_records_rejects_what_json_rejects),
        cmocka_unit_test(test_get_records_data_every_length),
        cmocka_unit_test(test_get_records_more_than_limit),
        cmocka_unit_test(test_list_shards),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_backoff_full_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

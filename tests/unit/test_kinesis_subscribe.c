/* test_kinesis_subscribe.c - unit tests of the pure part of enhanced fan-out
 * (k2p_kinesis_parse_subscribe_event in src/kinesis_subscribe.c): records and continuation of
 * a SubscribeToShardEvent payload, the shard's end (ChildShards, no continuation) as AWS sends
 * it, keys in any order and nested look-alikes, and malformed continuations.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kinesis2pg/kinesis_subscribe.h"

#define SEQ1 "49590338271490256608559692538361571095921575989136588898"
#define SEQ2 "49590338271490256608559692540925702759324208523137515618"

static int parse(const char *json, k2p_records *r, char cont[132], k2p_err *err)
{
    return k2p_kinesis_parse_subscribe_event(json, strlen(json), r, cont, err);
}

static void records_and_continuation(void **state)
{
    const char *json =
        "{\"Records\":[{\"ApproximateArrivalTimestamp\":1.732123456789E9,\"Data\":"
        "\"aGVsbG8=\",\"EncryptionType\":\"NONE\",\"PartitionKey\":\"k1\",\"SequenceNumber\":\"" SEQ1
        "\"},{\"Data\":\"d29ybGQ=\",\"PartitionKey\":\"k2\",\"SequenceNumber\":\"" SEQ2 "\"}],"
        "\"ContinuationSequenceNumber\":\"" SEQ2 "\",\"MillisBehindLatest\":1200,"
        "\"ChildShards\":null}";
    k2p_records r;
    char cont[132];
    k2p_err err = {0};
    (void)state;
    k2p_records_init(&r);
    assert_int_equal(parse(json, &r, cont, &err), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.recs[0].seq, SEQ1);
    assert_memory_equal(r.recs[0].data, "hello", 5);
    assert_string_equal(r.recs[1].pkey, "k2");
    assert_int_equal(r.millis_behind, 1200);
    assert_null(r.next_iterator);
    assert_int_equal(r.n_children, 0);
    assert_string_equal(cont, SEQ2);
    k2p_records_deinit(&r);
}

/* The last event of a closed shard, as AWS documents it: no continuation, ChildShards. */
static void shard_end(void **state)
{
    const char *json =
        "{\"ChildShards\":[{\"HashKeyRange\":{\"EndingHashKey\":\"1\",\"StartingHashKey\":\"0\"},"
        "\"ParentShards\":[\"shardId-000000000000\"],\"ShardId\":\"shardId-000000000001\"},"
        "{\"HashKeyRange\":{\"EndingHashKey\":\"3\",\"StartingHashKey\":\"2\"},"
        "\"ParentShards\":[\"shardId-000000000000\"],\"ShardId\":\"shardId-000000000002\"}],"
        "\"ContinuationSequenceNumber\":null,\"MillisBehindLatest\":0,\"Records\":[]}";
    k2p_records r;
    char cont[132] = "x";
    k2p_err err = {0};
    (void)state;
    k2p_records_init(&r);
    assert_int_equal(parse(json, &r, cont, &err), 0);
    assert_string_equal(cont, "");
    assert_int_equal(r.n, 0);
    assert_int_equal(r.n_children, 2);
    assert_string_equal(r.children[1].shard_id, "shardId-000000000002");
    assert_string_equal(r.children[1].parents[0], "shardId-000000000000");
    /* absent altogether: the same */
    assert_int_equal(parse("{\"Records\":[],\"MillisBehindLatest\":0}", &r, cont, &err), 0);
    assert_string_equal(cont, "");
    k2p_records_deinit(&r);
}

/* Only the top-level member counts: the same key inside a record, in a nested object or as
 * a string value is not it; whitespace anywhere; a repeated key: the last one wins. */
static void only_top_level(void **state)
{
    const char *json =
        " { \"Records\" : [ { \"Data\" : \"\" , \"PartitionKey\" : \"ContinuationSequenceNumber\" ,"
        " \"SequenceNumber\" : \"" SEQ1 "\" , \"ContinuationSequenceNumber\" : \"7\" } ] ,"
        " \"x\" : { \"ContinuationSequenceNumber\" : \"8\" } , \"y\" : \"ContinuationSequenceNumber\","
        " \"z\" : \"a\\\"ContinuationSequenceNumber\\\":\\\"9\" ,"
        " \"ContinuationSequenceNumber\" : \"1\" ,"
        " \"ContinuationSequenceNumber\" : \"" SEQ2 "\" } ";
    k2p_records r;
    char cont[132];
    k2p_err err = {0};
    (void)state;
    k2p_records_init(&r);
    if (parse(json, &r, cont, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(cont, SEQ2);
    assert_int_equal(r.n, 1);
    k2p_records_deinit(&r);
}

static void bad_continuation(void **state)
{
    static const char *const bad[] = {
        "{\"Records\":[],\"ContinuationSequenceNumber\":12}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":\"\"}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":\"01\"}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":\"12a\"}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":[\"1\"]}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":\"1" /* 137 digits */
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000\"}",
        /* not JSON at all, or no Records: the GetRecords parser refuses it */
        "{\"ContinuationSequenceNumber\":\"1\"}",
        "{\"Records\":[],\"ContinuationSequenceNumber\":\"1\"",
    };
    (void)state;
    for (size_t i = 0; i < K2P_ARRAY_LEN(bad); i++) {
        k2p_records r;
        char cont[132];
        k2p_err err = {0};
        k2p_records_init(&r);
        if (parse(bad[i], &r, cont, &err) != K2P_EPARSE)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err.msg[0] != '\0');
        k2p_records_deinit(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_and_continuation),
        cmocka_unit_test(shard_end),
        cmocka_unit_test(only_top_level),
        cmocka_unit_test(bad_continuation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_mock_store.c - unit tests of mock_kinesis's pure parts: 128-bit hash keys and shard
 * ranges, sequence numbers, record storage, split/merge, tokens, and the control knobs
 * (parsing, all-or-nothing changes, the seeded fault RNG).
 *
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

#include "kinesis2pg/seqnum.h"
#include "mock_ctl.h"
#include "mock_store.h"

static void assert_u128(mock_u128 v, const char *dec)
{
    char d[40];
    mock_u128_format(v, d);
    assert_string_equal(d, dec);
}

static void test_u128(void **state)
{
    mock_u128 v;
    const char *max = "340282366920938463463374607431768211455";
    (void)state;
    assert_int_equal(mock_u128_parse("0", 1, &v), 0);
    assert_u128(v, "0");
    assert_int_equal(mock_u128_parse(max, strlen(max), &v), 0);
    assert_true(v == MOCK_U128_MAX);
    assert_u128(v, max);
    assert_int_equal(mock_u128_parse("340282366920938463463374607431768211456", 39, &v),
                     K2P_EINVAL);
    assert_int_equal(mock_u128_parse("", 0, &v), K2P_EINVAL);
    assert_int_equal(mock_u128_parse("12a", 3, &v), K2P_EINVAL);
    assert_int_equal(mock_u128_parse("-1", 2, &v), K2P_EINVAL);
    /* MD5("") = d41d8cd98f00b204e9800998ecf8427e, MD5("pk-1") as Python computes it. */
    assert_u128(mock_hash_key("", 0), "281949768489412648962353822266799178366");
    assert_u128(mock_hash_key("pk-1", 4), "273922656776327812788301823748127981641");
}

static void test_shard_ranges(void **state)
{
    mock_store st;
    mock_stream *s;
    (void)state;
    assert_int_equal(mock_store_init(&st, 1), 0);
    assert_int_equal(mock_store_create(&st, "one", 1, 1000, &s), 0);
    assert_u128(s->shards[0]->hash_lo, "0");
    assert_true(s->shards[0]->hash_hi == MOCK_U128_MAX);
    assert_int_equal(mock_store_create(&st, "two", 2, 1000, &s), 0);
    assert_u128(s->shards[0]->hash_hi, "170141183460469231731687303715884105727");
    assert_u128(s->shards[1]->hash_lo, "170141183460469231731687303715884105728");
    assert_int_equal(mock_store_create(&st, "three", 3, 1000, &s), 0);
    assert_u128(s->shards[1]->hash_lo, "113427455640312821154458202477256070485");
    assert_u128(s->shards[2]->hash_lo, "226854911280625642308916404954512140970");
    assert_true(s->shards[2]->hash_hi == MOCK_U128_MAX);
    assert_string_equal(s->shards[2]->id, "shardId-000000000002");
    assert_int_equal(mock_store_create(&st, "three", 3, 1000, &s), K2P_EINUSE);
    assert_int_equal(mock_store_delete(&st, "two"), 0);
    assert_null(mock_store_find(&st, "two"));
    assert_int_equal(mock_store_delete(&st, "two"), K2P_ENOTFOUND);
    mock_store_deinit(&st);
}

static void test_sequence_numbers(void **state)
{
    mock_store st;
    mock_stream *s;
    mock_shard *sh;
    char start[MOCK_SEQ_LEN + 1], a[MOCK_SEQ_LEN + 1], b[MOCK_SEQ_LEN + 1];
    char c[MOCK_SEQ_LEN + 1], end[MOCK_SEQ_LEN + 1];
    mock_seq_info si;
    (void)state;

    assert_int_equal(mock_store_init(&st, 1), 0);
    assert_int_equal(mock_store_create(&st, "seq", 2, 1732000000123, &s), 0);
    sh = s->shards[1];
    mock_shard_start_seq(sh, start);
    assert_int_equal(mock_stream_append(s, sh, "eyJ9", 4, 3, "k", 1, 1732000001000, a), 0);
    /* An earlier arrival is raised to the last one: arrivals never decrease. */
    assert_int_equal(mock_stream_append(s, sh, "", 0, 0, "k\"\\", 3, 1732000000500, b), 0);
    assert_int_equal(mock_stream_append(s, sh, "AA==", 4, 1, "k", 1, 1732000002000, c), 0);
    assert_int_equal(sh->recs[1].arrival_ms, 1732000001000);
    assert_int_equal(strlen(a), MOCK_SEQ_LEN);
    assert_true(k2p_seq_valid(a, strlen(a)));
    assert_true(k2p_seq_cmps(start, a) < 0);
    assert_true(k2p_seq_cmps(a, b) < 0);
    assert_true(k2p_seq_cmps(b, c) < 0);
    assert_int_equal(mock_seq_parse(b, strlen(b), &si), 0);
    assert_int_equal(si.shard_ix, 1);
    assert_int_equal(si.index, 2);
    assert_int_equal(si.create_s, 1732000000);
    assert_int_equal(mock_seq_parse("12345", 5, &si), K2P_EINVAL);
    /* The fragment is a JSON object with the escaped key. */
    assert_memory_equal(mock_rec_frag(s, &sh->recs[1]), "{\"SequenceNumber\":\"", 19);
    assert_non_null(strstr(mock_rec_frag(s, &sh->recs[1]), "\"PartitionKey\":\"k\\\"\\\\\"}"));
    assert_int_equal(mock_shard_seek_time(sh, 0), 0);
    assert_int_equal(mock_shard_seek_time(sh, 1732000001000), 0);
    assert_int_equal(mock_shard_seek_time(sh, 1732000001001), 2);
    assert_int_equal(mock_shard_seek_time(sh, 1732000009000), 3);
    /* Routing by hash key: shard 1 owns the upper half. */
    assert_ptr_equal(mock_stream_route(s, MOCK_U128_MAX), sh);
    assert_ptr_equal(mock_stream_route(s, 0), s->shards[0]);
    assert_int_equal(mock_stream_resolve_shard(s, "shardId-000000000001"), 1);
    assert_int_equal(mock_stream_resolve_shard(s, "1"), 1);
    assert_int_equal(mock_stream_resolve_shard(s, "shardId-000000000002"), -1);
    assert_int_equal(mock_stream_resolve_shard(s, "shardId-x"), -1);
    /* Closing gives an ending number above every record. */
    assert_int_equal(mock_stream_split(s, 1, sh->hash_lo + 1000, 1732000003000, NULL), 0);
    mock_shard_end_seq(s->shards[1], end);
    assert_true(k2p_seq_cmps(c, end) < 0);
    mock_store_deinit(&st);
}

static void test_split_merge(void **state)
{
    mock_store st;
    mock_stream *s;
    k2p_err err = {0};
    (void)state;
    assert_int_equal(mock_store_init(&st, 1), 0);
    assert_int_equal(mock_store_create(&st, "rs", 2, 1000, &s), 0);
    /* kinesalite's rule: lo + 1 < new_start < hi. */
    assert_int_equal(mock_stream_split(s, 0, 1, 2000, &err), K2P_EINVAL);
    assert_non_null(strstr(err.msg, "NewStartingHashKey"));
    assert_int_equal(mock_stream_split(s, 0, (mock_u128)1 << 126, 2000, &err), 0);
    assert_int_equal(s->n_shards, 4);
    assert_true(s->shards[0]->close_ms > 0);
    assert_int_equal(s->shards[2]->parent, 0);
    assert_int_equal(s->shards[3]->parent, 0);
    assert_u128(s->shards[2]->hash_hi, "85070591730234615865843651857942052863");
    assert_u128(s->shards[3]->hash_lo, "85070591730234615865843651857942052864");
    assert_int_equal(mock_stream_open_shards(s), 3);
    /* A closed shard can be neither split nor merged; non-adjacent shards cannot merge. */
    assert_int_equal(mock_stream_split(s, 0, (mock_u128)1 << 125, 2000, &err), K2P_EINVAL);
    assert_int_equal(mock_stream_merge(s, 2, 1, 2000, &err), K2P_EINVAL);
    assert_non_null(strstr(err.msg, "adjacent"));
    assert_int_equal(mock_stream_merge(s, 3, 2, 3000, &err), 0); /* either order */
    assert_int_equal(s->n_shards, 5);
    assert_int_equal(s->shards[4]->parent, 3);
    assert_int_equal(s->shards[4]->adjacent, 2);
    assert_u128(s->shards[4]->hash_lo, "0");
    assert_u128(s->shards[4]->hash_hi, "170141183460469231731687303715884105727");
    assert_int_equal(mock_stream_open_shards(s), 2);
    assert_ptr_equal(mock_stream_route(s, 5), s->shards[4]);
    mock_store_deinit(&st);
}

/* Consumers: lifecycle by time, unique ARNs, ARN parsing, the per-stream limit. */
static void test_consumers(void **state)
{
    mock_store st;
    mock_stream *s;
    mock_consumer *c, *d;
    char arn[600], sn[MOCK_NAME_MAX + 1], cn[MOCK_NAME_MAX + 1];
    int64_t ts;
    (void)state;
    assert_int_equal(mock_store_init(&st, 1), 0);
    assert_int_equal(mock_store_create(&st, "efo", 1, 1000, &s), 0);
    assert_int_equal(mock_stream_add_consumer(s, "app", 5000000, 100, &c), 0);
    assert_int_equal(mock_consumer_status(c, 5000050, 100), MOCK_CONSUMER_CREATING);
    assert_int_equal(mock_consumer_status(c, 5000100, 100), MOCK_CONSUMER_ACTIVE);
    assert_string_equal(mock_consumer_state_name(MOCK_CONSUMER_ACTIVE), "ACTIVE");
    assert_int_equal(mock_stream_add_consumer(s, "app", 5000200, 100, &d), K2P_EINUSE);
    mock_consumer_arn(s, c, arn, sizeof arn);
    assert_string_equal(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/efo/consumer/app:5000");
    assert_int_equal(mock_consumer_arn_parse(arn, sn, cn, &ts), 0);
    assert_string_equal(sn, "efo");
    assert_string_equal(cn, "app");
    assert_int_equal(ts, 5000);
    assert_int_equal(mock_consumer_arn_parse("arn:aws:kinesis:us-east-1:0:stream/efo", sn, cn, &ts),
                     K2P_EINVAL);
    assert_int_equal(mock_consumer_arn_parse("arn:x:stream/efo/consumer/app:", sn, cn, &ts),
                     K2P_EINVAL);
    assert_int_equal(mock_consumer_arn_parse("arn:x:stream/e fo/consumer/app:1", sn, cn, &ts),
                     K2P_EINVAL);
    /* Deregistered: DELETING for the delay, then gone; registered again: a new ARN. */
    c->delete_ms = 5000300;
    assert_int_equal(mock_consumer_status(c, 5000350, 100), MOCK_CONSUMER_DELETING);
    assert_non_null(mock_stream_find_consumer(s, "app", 5000350, 100));
    assert_null(mock_stream_find_consumer(s, "app", 5000400, 100));
    assert_int_equal(mock_stream_add_consumer(s, "app", 5000400, 100, &d), 0);
    assert_int_equal(s->n_consumers, 1);
    assert_true(d->arn_ts > 5000);
    for (int i = 1; i < MOCK_CONSUMERS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(mock_stream_add_consumer(s, name, 5000500, 0, &d), 0);
    }
    assert_int_equal(mock_stream_add_consumer(s, "one-too-many", 5000500, 0, &d), K2P_ENOMEM);
    mock_store_deinit(&st);
}

static void test_ctl_efo_knobs(void **state)
{
    mock_ctl c;
    mock_fault_cfg cfg;
    k2p_err err = {0};
    const char *q = "subscription_ms=1500&takeover_ms=0&sub_reset=0.25&consumer_delay_ms=10";
    (void)state;
    assert_int_equal(mock_ctl_init(&c, 1), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.subscription_ms, 300000);
    assert_int_equal(cfg.takeover_ms, 5000);
    assert_int_equal(mock_ctl_apply_query(&c, q, strlen(q), &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.subscription_ms, 1500);
    assert_int_equal(cfg.takeover_ms, 0);
    assert_int_equal(cfg.consumer_delay_ms, 10);
    assert_true(cfg.sub_reset == 0.25);
    /* sub_reset + sub_error <= 1, and the whole change is refused */
    const char *j = "{\"sub_error\":0.8,\"takeover_ms\":9}";
    assert_int_equal(mock_ctl_apply_json(&c, j, strlen(j), &err), K2P_EINVAL);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.takeover_ms, 0);
    assert_int_equal(mock_ctl_set(&c, "subscription_ms", "0", &err), K2P_EINVAL);
    assert_int_equal(mock_op_from_name("SubscribeToShard", 16), MOCK_OP_SUBSCRIBE_TO_SHARD);
    assert_int_equal(mock_ctl_set(&c, "clear", "1", &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.subscription_ms, 300000);
    mock_ctl_deinit(&c);
}

static void test_tokens(void **state)
{
    mock_store st, other;
    mock_token t = {0}, u;
    char enc[MOCK_TOKEN_MAX];
    size_t n;
    (void)state;
    assert_int_equal(mock_store_init(&st, 1), 0);
    assert_int_equal(mock_store_init(&other, 2), 0);
    t.kind = 'I';
    t.gen = 7;
    t.shard = 3;
    t.pos = 123456789012ull;
    t.issued_ms = 1732000000123;
    memset(t.stream, 'x', MOCK_NAME_MAX);
    n = mock_token_encode(&st, &t, enc);
    assert_true(n > 0 && n < MOCK_TOKEN_MAX);
    assert_int_equal(mock_token_decode(&st, 'I', enc, n, &u), 0);
    assert_int_equal(u.gen, 7);
    assert_int_equal(u.shard, 3);
    assert_true(u.pos == 123456789012ull);
    assert_int_equal(u.issued_ms, 1732000000123);
    assert_string_equal(u.stream, t.stream);
    assert_int_equal(mock_token_decode(&st, 'T', enc, n, &u), K2P_EINVAL);
    assert_int_equal(mock_token_decode(&other, 'I', enc, n, &u), K2P_EINVAL);
    enc[10] = enc[10] == 'A' ? 'B' : 'A';
    assert_int_equal(mock_token_decode(&st, 'I', enc, n, &u), K2P_EINVAL);
    assert_int_equal(mock_token_decode(&st, 'I', "not-an-iterator", 15, &u), K2P_EINVAL);
    assert_int_equal(mock_token_decode(&st, 'I', "", 0, &u), K2P_EINVAL);
    mock_store_deinit(&st);
    mock_store_deinit(&other);
}

static void test_ctl_knobs(void **state)
{
    mock_ctl c;
    mock_fault_cfg cfg;
    k2p_err err = {0};
    const char *q = "throttle=0.25&latency_ms=5&fault_ops=GetRecords%2CListShards&limits";
    (void)state;
    assert_int_equal(mock_ctl_init(&c, 1), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.iterator_ttl_ms, 300000);
    assert_int_equal(mock_ctl_apply_query(&c, q, strlen(q), &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_true(cfg.ratio[MOCK_F_THROTTLE] == 0.25);
    assert_int_equal(cfg.latency_ms, 5);
    assert_true(cfg.limits);
    assert_int_equal(cfg.ops_mask, (1u << MOCK_OP_GET_RECORDS) | (1u << MOCK_OP_LIST_SHARDS));
    /* All or nothing: a bad key leaves the earlier keys of the same change unapplied. */
    q = "{\"error500\":0.5,\"bogus\":1}";
    assert_int_equal(mock_ctl_apply_json(&c, q, strlen(q), &err), K2P_EINVAL);
    assert_non_null(strstr(err.msg, "bogus"));
    mock_ctl_snapshot(&c, &cfg);
    assert_true(cfg.ratio[MOCK_F_ERROR500] == 0);
    /* The drawn ratios must not add up to more than 1. */
    assert_int_equal(mock_ctl_set(&c, "reset", "0.9", &err), K2P_EINVAL);
    assert_int_equal(mock_ctl_set(&c, "throttle", "1.5", &err), K2P_EINVAL);
    assert_int_equal(mock_ctl_set(&c, "split", "shardId-000000000001:12", &err), 0);
    assert_int_equal(mock_ctl_set(&c, "merge", "a", &err), K2P_EINVAL);
    assert_int_equal(mock_ctl_set(&c, "iterator_ttl_ms", "0", &err), K2P_EINVAL);
    q = "{\"iterator_ttl_ms\":250.0,\"limits\":false,\"reshard_at\":10}";
    assert_int_equal(mock_ctl_apply_json(&c, q, strlen(q), &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_int_equal(cfg.iterator_ttl_ms, 250);
    assert_false(cfg.limits);
    assert_string_equal(cfg.split_shard, "shardId-000000000001");
    assert_string_equal(cfg.split_hash, "12");
    assert_int_equal(mock_ctl_set(&c, "clear", "1", &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    assert_true(cfg.ratio[MOCK_F_THROTTLE] == 0);
    assert_int_equal(cfg.reshard_at, 0);
    mock_ctl_deinit(&c);
}

static void test_ctl_rng(void **state)
{
    mock_ctl c;
    mock_fault_cfg cfg;
    k2p_err err = {0};
    int counts[MOCK_F_DRAWN + 1] = {0};
    char first[200], again[200];
    (void)state;
    assert_int_equal(mock_ctl_init(&c, 42), 0);
    assert_int_equal(mock_ctl_apply_query(&c, "throttle=0.3&error500=0.1", 25, &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    for (int i = 0; i < 20000; i++)
        counts[mock_ctl_decide(&c, &cfg, MOCK_OP_GET_RECORDS)]++;
    assert_in_range(counts[MOCK_F_THROTTLE], 5600, 6400);
    assert_in_range(counts[MOCK_F_ERROR500], 1700, 2300);
    assert_int_equal(counts[MOCK_F_RESET], 0);
    assert_int_equal(atomic_load(&c.stats.faults[MOCK_S_THROTTLE]), counts[MOCK_F_THROTTLE]);
    /* Resetting the seed replays the same decisions. */
    assert_int_equal(mock_ctl_set(&c, "seed", "7", &err), 0);
    for (size_t i = 0; i + 1 < sizeof first; i++)
        first[i] = (char)('0' + mock_ctl_decide(&c, &cfg, MOCK_OP_GET_RECORDS));
    assert_int_equal(mock_ctl_set(&c, "seed", "7", &err), 0);
    for (size_t i = 0; i + 1 < sizeof again; i++)
        again[i] = (char)('0' + mock_ctl_decide(&c, &cfg, MOCK_OP_GET_RECORDS));
    first[sizeof first - 1] = again[sizeof again - 1] = '\0';
    assert_string_equal(first, again);
    /* Faults apply only to the operations selected. */
    assert_int_equal(mock_ctl_set(&c, "fault_ops", "PutRecords", &err), 0);
    mock_ctl_snapshot(&c, &cfg);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(mock_ctl_decide(&c, &cfg, MOCK_OP_GET_RECORDS), MOCK_F_NONE);
    assert_int_equal(mock_op_from_name("GetRecords", 10), MOCK_OP_GET_RECORDS);
    assert_int_equal(mock_op_from_name("GetRecord", 9), MOCK_OP_UNKNOWN);
    assert_string_equal(mock_op_name(MOCK_OP_MERGE_SHARDS), "MergeShards");
    mock_ctl_deinit(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u128),
        cmocka_unit_test(test_shard_ranges),
        cmocka_unit_test(test_sequence_numbers),
        cmocka_unit_test(test_split_merge),
        cmocka_unit_test(test_consumers),
        cmocka_unit_test(test_ctl_efo_knobs),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_ctl_knobs),
        cmocka_unit_test(test_ctl_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

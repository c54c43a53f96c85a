/* test_kinesis_client.c - the Kinesis client against a real kinesalite on loopback.
 *
 * Puts 20,000 records (JSON, text and binary with every byte value) with kinesis2pg-produce,
 * reads every shard back through the client and compares byte for byte and per shard;
 * ListShards pagination; every iterator type; an invalid iterator's classified error;
 * split and merge lineage.
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
#include <time.h>

#include "kinesalite_harness.h"
#include "kinesis2pg/base64.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/seqnum.h"

static k2p_test_kinesalite kl;
static k2p_cred_chain *creds;
static k2p_kinesis *client;

static int setup(void **state)
{
    (void)state;
    if (k2p_test_kinesalite_start(&kl))
        return -1;
    creds = k2p_test_cred_chain();
    client = k2p_test_kinesis_client(kl.endpoint, creds);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    k2p_kinesis_free(client);
    k2p_cred_chain_free(creds);
    k2p_test_kinesalite_stop(&kl);
    return 0;
}

static void create_stream(const char *name, int shards)
{
    k2p_err err = {0};
    int rc = k2p_kinesis_create_stream(client, name, shards, &err);
    if (rc)
        fail_msg("create %s: %s", name, err.msg);
    rc = k2p_kinesis_wait_active(client, name, 10000, &err);
    if (rc)
        fail_msg("wait %s: %s", name, err.msg);
}

/* One record put by kinesis2pg-produce, as it printed it. */
typedef struct produced {
    char shard[64];
    char seq[132];
    char pkey[80];
    uint8_t *data;
    size_t len;
    int seen;
} produced;

static size_t run_produce(const char *stream, const char *args, produced **out)
{
    char cmd[1024];
    FILE *p;
    char *line = NULL;
    size_t cap = 0, n = 0, alloc = 0;
    produced *v = NULL;

    snprintf(cmd, sizeof cmd,
             "AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=notasecret "
             "%s/kinesis2pg-produce --endpoint %s --region us-east-1 --stream %s --print %s",
             K2P_BINARY_DIR, kl.endpoint, stream, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (getline(&line, &cap, p) > 0) {
        char *f[4], *s = line;
        for (int i = 0; i < 4; i++) {
            f[i] = s;
            s = s ? strchr(s, i < 3 ? '\t' : '\n') : NULL;
            if (s)
                *s++ = '\0';
        }
        assert_non_null(f[3]);
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            v = realloc(v, alloc * sizeof *v);
            assert_non_null(v);
        }
        memset(&v[n], 0, sizeof v[n]);
        snprintf(v[n].shard, sizeof v[n].shard, "%s", f[0]);
        snprintf(v[n].seq, sizeof v[n].seq, "%s", f[1]);
        snprintf(v[n].pkey, sizeof v[n].pkey, "%s", f[2]);
        v[n].data = malloc(k2p_base64_decoded_max(strlen(f[3])) + 1);
        long dl = k2p_base64_decode(f[3], strlen(f[3]), v[n].data);
        assert_true(dl >= 0);
        v[n].len = (size_t)dl;
        n++;
    }
    free(line);
    assert_int_equal(pclose(p), 0);
    *out = v;
    return n;
}

static void free_produced(produced *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].data);
    free(v);
}

/* Reads a shard from TRIM_HORIZON until it is caught up; calls fn for each record. */
typedef void (*record_fn)(const char *shard, const k2p_record *r, void *ud);

static size_t read_shard(const char *stream, const char *shard, const k2p_iter_start *start,
                         record_fn fn, void *ud)
{
    k2p_err err = {0};
    char *it = NULL;
    k2p_records recs;
    size_t total = 0;
    int empty = 0;

    k2p_records_init(&recs);
    if (k2p_kinesis_get_shard_iterator(client, stream, shard, start, &it, &err))
        fail_msg("iterator: %s", err.msg);
    while (it && empty < 2) {
        if (k2p_kinesis_get_records(client, it, 10000, &recs, &err))
            fail_msg("get records: %s", err.msg);
        for (size_t i = 0; i < recs.n; i++)
            fn(shard, &recs.recs[i], ud);
        total += recs.n;
        empty = recs.n ? 0 : empty + 1;
        free(it);
        it = recs.next_iterator ? strdup(recs.next_iterator) : NULL;
    }
    free(it);
    k2p_records_deinit(&recs);
    return total;
}

typedef struct match_ctx {
    produced *v;
    size_t n;
    size_t matched;
    char last_seq[132];
    char last_shard[64];
} match_ctx;

static int cmp_seq(const void *a, const void *b)
{
    return k2p_seq_cmps(((const produced *)a)->seq, ((const produced *)b)->seq);
}

static void match_record(const char *shard, const k2p_record *r, void *ud)
{
    match_ctx *m = ud;
    produced key, *hit;
    /* Sequence numbers increase within a shard. */
    if (strcmp(m->last_shard, shard) == 0)
        assert_true(k2p_seq_cmps(m->last_seq, r->seq) < 0);
    snprintf(m->last_shard, sizeof m->last_shard, "%s", shard);
    snprintf(m->last_seq, sizeof m->last_seq, "%s", r->seq);
    snprintf(key.seq, sizeof key.seq, "%s", r->seq);
    hit = bsearch(&key, m->v, m->n, sizeof *m->v, cmp_seq);
    assert_non_null(hit);
    assert_string_equal(hit->shard, shard);
    assert_string_equal(hit->pkey, r->pkey);
    assert_int_equal(hit->len, r->data_len);
    assert_memory_equal(hit->data, r->data, r->data_len);
    assert_true(r->arrival_us > 1600000000000000LL);
    assert_int_equal(hit->seen, 0);
    hit->seen = 1;
    m->matched++;
}

static void test_put_and_read_back_20000(void **state)
{
    k2p_err err = {0};
    k2p_shard_list shards = {0};
    produced *v;
    size_t n;
    match_ctx m = {0};
    k2p_iter_start th = {K2P_ITER_TRIM_HORIZON, NULL, 0, 0};
    (void)state;

    create_stream("roundtrip", 4);
    n = run_produce("roundtrip", "--count 20000 --kind mixed --size 300", &v);
    assert_int_equal(n, 20000);
    qsort(v, n, sizeof *v, cmp_seq);
    m.v = v;
    m.n = n;

    assert_int_equal(k2p_kinesis_list_shards(client, "roundtrip", 0, &shards, &err), 0);
    assert_int_equal(shards.n, 4);
    for (size_t s = 0; s < shards.n; s++) {
        size_t expect = 0, got;
        for (size_t i = 0; i < n; i++)
            expect += strcmp(v[i].shard, shards.shards[s].shard_id) == 0;
        m.last_shard[0] = '\0';
        got = read_shard("roundtrip", shards.shards[s].shard_id, &th, match_record, &m);
        assert_int_equal(got, expect);
        assert_true(expect > 0);
    }
    assert_int_equal(m.matched, n);
    k2p_shard_list_deinit(&shards);
    free_produced(v, n);
}

static void test_list_shards_pagination(void **state)
{
    k2p_err err = {0};
    k2p_shard_list all = {0}, paged = {0};
    (void)state;
    create_stream("paged", 7);
    assert_int_equal(k2p_kinesis_list_shards(client, "paged", 0, &all, &err), 0);
    assert_int_equal(k2p_kinesis_list_shards(client, "paged", 2, &paged, &err), 0);
    assert_int_equal(all.n, 7);
    assert_int_equal(paged.n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(all.shards[i].shard_id, paged.shards[i].shard_id);
        assert_non_null(paged.shards[i].starting_hash_key);
        assert_non_null(paged.shards[i].starting_seq);
        assert_null(paged.shards[i].ending_seq);
    }
    k2p_shard_list_deinit(&all);
    k2p_shard_list_deinit(&paged);
}

static void collect_seq(const char *shard, const k2p_record *r, void *ud)
{
    (void)shard;
    k2p_buf *b = ud;
    k2p_buf_puts(b, r->seq);
    k2p_buf_putc(b, ' ');
}

static void test_iterator_types(void **state)
{
    k2p_err err = {0};
    produced *v, *v2;
    size_t n, n2;
    k2p_buf got;
    char *latest = NULL;
    k2p_records recs;
    k2p_iter_start st;
    int64_t mid_us;
    (void)state;

    create_stream("iters", 1);
    n = run_produce("iters", "--count 10 --partition-key k", &v);
    assert_int_equal(n, 10);
    k2p_buf_init(&got, 0);
    k2p_records_init(&recs);

    /* TRIM_HORIZON: all 10. */
    st = (k2p_iter_start){K2P_ITER_TRIM_HORIZON, NULL, 0, 0};
    assert_int_equal(read_shard("iters", v[0].shard, &st, collect_seq, &got), 10);

    /* AT_SEQUENCE_NUMBER v[3]: 7 records starting with v[3]. */
    k2p_buf_reset(&got);
    st = (k2p_iter_start){K2P_ITER_AT_SEQUENCE_NUMBER, v[3].seq, 0, 0};
    assert_int_equal(read_shard("iters", v[0].shard, &st, collect_seq, &got), 7);
    assert_memory_equal(got.data, v[3].seq, strlen(v[3].seq));

    /* AFTER_SEQUENCE_NUMBER v[3]: 6 records starting with v[4]. */
    k2p_buf_reset(&got);
    st = (k2p_iter_start){K2P_ITER_AFTER_SEQUENCE_NUMBER, v[3].seq, 0, 0};
    assert_int_equal(read_shard("iters", v[0].shard, &st, collect_seq, &got), 6);
    assert_memory_equal(got.data, v[4].seq, strlen(v[4].seq));

    /* LATEST: nothing old; a record put afterwards is seen. */
    st = (k2p_iter_start){K2P_ITER_LATEST, NULL, 0, 0};
    assert_int_equal(k2p_kinesis_get_shard_iterator(client, "iters", v[0].shard, &st, &latest, &err), 0);
    assert_int_equal(k2p_kinesis_get_records(client, latest, 100, &recs, &err), 0);
    assert_int_equal(recs.n, 0);
    {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* arrival times are in ms: separate the batches */
    }
    mid_us = k2p_wall_us();
    {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    n2 = run_produce("iters", "--count 3 --partition-key k --seed 7", &v2);
    assert_int_equal(n2, 3);
    assert_int_equal(k2p_kinesis_get_records(client, recs.next_iterator, 100, &recs, &err), 0);
    assert_int_equal(recs.n, 3);
    assert_string_equal(recs.recs[0].seq, v2[0].seq);

    /* AT_TIMESTAMP between the two batches: exactly the 3 new records. */
    k2p_buf_reset(&got);
    st = (k2p_iter_start){K2P_ITER_AT_TIMESTAMP, NULL, mid_us, 0};
    assert_int_equal(read_shard("iters", v[0].shard, &st, collect_seq, &got), 3);

    free(latest);
    k2p_records_deinit(&recs);
    k2p_buf_deinit(&got);
    free_produced(v, n);
    free_produced(v2, n2);
}

static void test_errors_are_classified(void **state)
{
    k2p_err err = {0};
    k2p_records recs;
    k2p_shard_list l = {0};
    int rc;
    (void)state;
    k2p_records_init(&recs);
    rc = k2p_kinesis_get_records(client, "not-an-iterator", 100, &recs, &err);
    assert_int_equal(rc, K2P_EFATAL);
    assert_true(strstr(err.msg, "InvalidArgumentException") || strstr(err.msg, "Validation"));
    rc = k2p_kinesis_list_shards(client, "no-such-stream", 0, &l, &err);
    assert_int_equal(rc, K2P_ENOTFOUND);
    assert_string_equal(err.aws_type, "ResourceNotFoundException");
    assert_non_null(strstr(err.msg, "no-such-stream"));
    rc = k2p_kinesis_create_stream(client, "roundtrip", 1, &err);
    assert_int_equal(rc, K2P_EINUSE);
    k2p_records_deinit(&recs);
}

static void test_unreachable_endpoint(void **state)
{
    k2p_err err = {0};
    k2p_kinesis_opts o = {0};
    k2p_kinesis *k;
    k2p_shard_list l = {0};
    (void)state;
    o.endpoint = "http://127.0.0.1:1"; /* nothing listens on port 1 */
    o.region = "us-east-1";
    o.creds = creds;
    o.max_attempts = 3;
    o.backoff_base_ms = 1;
    o.backoff_max_ms = 5;
    k = k2p_kinesis_new(&o, &err);
    assert_non_null(k);
    assert_int_equal(k2p_kinesis_list_shards(k, "s", 0, &l, &err), K2P_ERETRY);
    assert_non_null(strstr(err.msg, "127.0.0.1:1"));
    assert_non_null(strstr(err.msg, "after 3 attempts"));
    assert_int_equal(k2p_kinesis_get_stats(k)->retries_transient, 3);
    k2p_kinesis_free(k);
}

static void test_split_and_merge_lineage(void **state)
{
    k2p_err err = {0};
    k2p_shard_list l = {0}, l2 = {0}, l3 = {0};
    (void)state;
    create_stream("reshard", 2);
    assert_int_equal(k2p_kinesis_list_shards(client, "reshard", 0, &l, &err), 0);
    assert_int_equal(l.n, 2);
    /* Split shard 0 in the middle of its hash range. */
    assert_int_equal(k2p_kinesis_split_shard(client, "reshard", l.shards[0].shard_id,
                                             "85070591730234615865843651857942052864", &err), 0);
    assert_int_equal(k2p_kinesis_wait_active(client, "reshard", 10000, &err), 0);
    assert_int_equal(k2p_kinesis_list_shards(client, "reshard", 0, &l2, &err), 0);
    assert_int_equal(l2.n, 4);
    assert_non_null(l2.shards[0].ending_seq); /* the parent is closed */
    assert_string_equal(l2.shards[2].parent_shard_id, l.shards[0].shard_id);
    assert_string_equal(l2.shards[3].parent_shard_id, l.shards[0].shard_id);
    /* Merge the two children back. */
    assert_int_equal(k2p_kinesis_merge_shards(client, "reshard", l2.shards[2].shard_id,
                                              l2.shards[3].shard_id, &err), 0);
    assert_int_equal(k2p_kinesis_wait_active(client, "reshard", 10000, &err), 0);
    assert_int_equal(k2p_kinesis_list_shards(client, "reshard", 0, &l3, &err), 0);
    assert_int_equal(l3.n, 5);
    assert_string_equal(l3.shards[4].parent_shard_id, l2.shards[2].shard_id);
    assert_string_equal(l3.shards[4].adjacent_parent_shard_id, l2.shards[3].shard_id);
    k2p_shard_list_deinit(&l);
    k2p_shard_list_deinit(&l2);
    k2p_shard_list_deinit(&l3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_and_read_back_20000),
        cmocka_unit_test(test_list_shards_pagination),
        cmocka_unit_test(test_iterator_types),
        cmocka_unit_test(test_errors_are_classified),
        cmocka_unit_test(test_unreachable_endpoint),
        cmocka_unit_test(test_split_and_merge_lineage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

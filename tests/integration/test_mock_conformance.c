/* test_mock_conformance.c - keeps tests/mock_kinesis honest: the same client scenarios run
 * against kinesalite (a real emulator) and against mock_kinesis, and what a client can
 * observe must be the same.
 *
 * Each scenario writes a transcript of what it saw, normalised to what must not depend on
 * the server (counts, partition keys and data, order within a shard, which shard a hash key
 * routes to, shard ids and lineage, hash ranges, error classes and AWS error types), but not
 * sequence numbers or iterators, which are opaque and differ by design. The transcripts of
 * the two servers must be equal. A few checks are mock-only (ListShards pages, ChildShards,
 * MillisBehindLatest), because kinesalite does not implement them (DESIGN §8).
 *
 * Threading: single-threaded. Needs node + kinesalite (scripts/setup.sh) and the mock built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinesalite_harness.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/seqnum.h"
#include "mock_kinesis_harness.h"

typedef struct peer {
    const char *name;
    const char *endpoint;
    k2p_kinesis *client;
    int is_mock;
    k2p_buf log; /* the transcript */
} peer;

static k2p_test_kinesalite kl;
static k2p_test_mock mk;
static k2p_cred_chain *creds;
static peer peers[2];

static int setup(void **state)
{
    (void)state;
    if (k2p_test_kinesalite_start(&kl))
        return -1;
    if (k2p_test_mock_start(&mk, NULL)) {
        k2p_test_kinesalite_stop(&kl);
        return -1;
    }
    creds = k2p_test_cred_chain();
    peers[0] =
        (peer){"kinesalite", kl.endpoint, k2p_test_kinesis_client(kl.endpoint, creds), 0, {0}};
    peers[1] =
        (peer){"mock_kinesis", mk.endpoint, k2p_test_kinesis_client(mk.endpoint, creds), 1, {0}};
    for (int i = 0; i < 2; i++)
        k2p_buf_init(&peers[i].log, 0);
    return 0;
}

static int teardown(void **state)
{
    int rc;
    (void)state;
    for (int i = 0; i < 2; i++) {
        k2p_kinesis_free(peers[i].client);
        k2p_buf_deinit(&peers[i].log);
    }
    k2p_cred_chain_free(creds);
    k2p_test_kinesalite_stop(&kl);
    rc = k2p_test_mock_stop(&mk);
    if (rc != 0)
        fprintf(stderr, "mock_kinesis exited with status %d\n", rc);
    return rc == 0 ? 0 : -1;
}

static void note(peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(peer *p, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    assert_int_equal(k2p_buf_puts(&p->log, line), 0);
    assert_int_equal(k2p_buf_putc(&p->log, '\n'), 0);
}

/* Runs the scenario on both servers and compares the transcripts line by line. */
static void run_both(void (*scenario)(peer *p))
{
    for (int i = 0; i < 2; i++) {
        k2p_buf_reset(&peers[i].log);
        scenario(&peers[i]);
        /* K2P_MOCK_TRANSCRIPT=1 shows what was compared. */
        if (getenv("K2P_MOCK_TRANSCRIPT"))
            fprintf(stderr, "---- %s\n%s", peers[i].name,
                    peers[i].log.data ? peers[i].log.data : "");
    }
    if (peers[0].log.len != peers[1].log.len ||
        memcmp(peers[0].log.data, peers[1].log.data, peers[0].log.len) != 0) {
        const char *a = peers[0].log.data, *b = peers[1].log.data;
        int line = 1;
        while (*a && *a == *b) {
            line += *a == '\n';
            a++;
            b++;
        }
        fail_msg("transcripts differ at line %d:\n  kinesalite:   %.200s\n  mock_kinesis: %.200s",
                 line, a, b);
    }
}

/* Waits until the wall clock passes t_us (arrival times have millisecond precision). */
static void wait_wall_past(int64_t t_us)
{
    int64_t deadline = k2p_now_ns() + 2000000000LL;
    while (k2p_wall_us() <= t_us && k2p_now_ns() < deadline) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(k2p_wall_us() > t_us);
}

static void create_stream(peer *p, const char *name, int shards)
{
    k2p_err err = {0};
    if (k2p_kinesis_create_stream(p->client, name, shards, &err))
        fail_msg("%s: create %s: %s", p->name, name, err.msg);
    if (k2p_kinesis_wait_active(p->client, name, 10000, &err))
        fail_msg("%s: wait %s: %s", p->name, name, err.msg);
}

static uint64_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* ---- puts and reads ---------------------------------------------------------------------- */

#define MAX_PUT 2000

/* What one peer answered to the puts of a scenario: record i's shard and sequence. */
typedef struct put_log {
    k2p_put_result res[MAX_PUT];
    size_t n;
} put_log;

static put_log puts_of[2];
static char rw_seq_shard0[2][sizeof ((k2p_put_result *)0)->seq]; /* a record of conf-rw shard 0, per peer */

static put_log *puts_for(peer *p)
{
    return &puts_of[p->is_mock];
}

/* Data of record i: JSON, text, or binary covering every byte value, in turn. */
static size_t make_data(size_t i, uint8_t *buf, size_t cap)
{
    int n;
    switch (i % 3) {
    case 0:
        n = snprintf((char *)buf, cap, "{\"i\":%zu,\"event\":\"click\",\"amount\":%zu.25}", i,
                     i * 7 % 1000);
        return (size_t)n;
    case 1:
        n = snprintf((char *)buf, cap, "text record %zu \xc3\xa9\t\"quoted\"", i);
        return (size_t)n;
    default: {
        size_t len = 1 + i % 300;
        for (size_t j = 0; j < len && j < cap; j++)
            buf[j] = (uint8_t)(i * 7 + j);
        return len < cap ? len : cap;
    }
    }
}

static const char *const explicit_keys[] = {"0", "100", "170141183460469231731687303715884105728",
                                            "340282366920938463463374607431768211455"};

/* Puts records first..first+n-1 with partition key "<prefix>-<i % keys>"; every 10th record
 * has an ExplicitHashKey. Notes the shard each one went to. */
static void put_range(peer *p, const char *stream, const char *prefix, size_t first, size_t n,
                      size_t keys)
{
    k2p_put_entry *e = calloc(n, sizeof *e);
    uint8_t(*data)[512] = calloc(n, sizeof *data);
    char(*pk)[32] = calloc(n, sizeof *pk);
    put_log *pl = puts_for(p);
    k2p_err err = {0};

    assert_true(e && data && pk && first + n <= MAX_PUT);
    for (size_t i = 0; i < n; i++) {
        size_t id = first + i;
        snprintf(pk[i], sizeof pk[i], "%s-%zu", prefix, id % keys);
        e[i].data = data[i];
        e[i].len = make_data(id, data[i], sizeof data[i]);
        e[i].partition_key = pk[i];
        e[i].explicit_hash_key = id % 10 == 9 ? explicit_keys[id / 10 % 4] : NULL;
    }
    if (k2p_kinesis_put_records(p->client, stream, e, n, pl->res + first, &err))
        fail_msg("%s: put_records %s: %s", p->name, stream, err.msg);
    if (pl->n < first + n)
        pl->n = first + n;
    for (size_t i = 0; i < n; i++) {
        assert_true(k2p_seq_valid(pl->res[first + i].seq, strlen(pl->res[first + i].seq)));
        note(p, "put %zu -> %s", first + i, pl->res[first + i].shard_id);
    }
    free(e);
    free(data);
    free(pk);
}

/* The index of the put whose sequence number is seq (in shard), or -1. */
static long find_put(peer *p, const char *shard, const char *seq)
{
    put_log *pl = puts_for(p);
    for (size_t i = 0; i < pl->n; i++) {
        if (!strcmp(pl->res[i].seq, seq) && !strcmp(pl->res[i].shard_id, shard))
            return (long)i;
    }
    return -1;
}

typedef struct read_out {
    size_t n;
    int ended;         /* NextShardIterator absent: a closed shard read to its end */
    size_t n_children; /* ChildShards at the end */
    char children[4][32];
    int64_t max_behind;
} read_out;

/* Reads a shard from `start` with GetRecords Limit `limit` until the end of a closed shard,
 * or an empty answer at the tip of an open one; notes every record. */
static read_out read_shard(peer *p, const char *stream, const char *shard,
                           const k2p_iter_start *start, int limit, const char *tag)
{
    k2p_err err = {0};
    k2p_records recs;
    char *it = NULL, last[K2P_SEQ_MAX_DIGITS + 1] = "";
    read_out o = {0};
    k2p_buf line;

    k2p_records_init(&recs);
    k2p_buf_init(&line, 0);
    if (k2p_kinesis_get_shard_iterator(p->client, stream, shard, start, &it, &err))
        fail_msg("%s: iterator %s/%s: %s", p->name, stream, shard, err.msg);
    for (int calls = 0; it; calls++) {
        assert_true(calls < 200);
        if (k2p_kinesis_get_records(p->client, it, limit, &recs, &err))
            fail_msg("%s: get_records %s/%s: %s", p->name, stream, shard, err.msg);
        assert_true(recs.n <= (size_t)limit);
        for (size_t i = 0; i < recs.n; i++) {
            const k2p_record *r = &recs.recs[i];
            long idx = find_put(p, shard, r->seq);
            uint8_t want[512];
            if (last[0])
                assert_true(k2p_seq_cmps(last, r->seq) < 0);
            snprintf(last, sizeof last, "%s", r->seq);
            assert_true(r->arrival_us > 1600000000000000LL);
            /* kinesalite stamps records of a new child shard up to 1 s ahead. */
            assert_true(r->arrival_us <= k2p_wall_us() + 2000000);
            if (idx >= 0) {
                size_t wl = make_data((size_t)idx, want, sizeof want);
                assert_int_equal(r->data_len, wl);
                assert_memory_equal(r->data, want, wl);
            }
            k2p_buf_printf(&line, " %ld:%s:%016llx", idx, r->pkey,
                           (unsigned long long)fnv(r->data, r->data_len));
        }
        o.n += recs.n;
        if (recs.millis_behind > o.max_behind)
            o.max_behind = recs.millis_behind;
        free(it);
        it = recs.next_iterator ? k2p_strdup(recs.next_iterator) : NULL;
        if (!it) {
            o.ended = 1;
            o.n_children = recs.n_children < 4 ? recs.n_children : 4;
            for (size_t c = 0; c < o.n_children; c++)
                snprintf(o.children[c], sizeof o.children[c], "%s", recs.children[c].shard_id);
        } else if (recs.n == 0) {
            /* kinesalite needs a few calls to notice the end of a closed shard. */
            if (calls > 20 || !strcmp(tag, "open"))
                break;
        }
    }
    free(it);
    note(p, "read %s %s n=%zu%s", shard, tag, o.n, line.data ? line.data : "");
    k2p_buf_deinit(&line);
    k2p_records_deinit(&recs);
    return o;
}

/* ---- scenarios --------------------------------------------------------------------------- */

static void scenario_put_and_read(peer *p)
{
    k2p_err err = {0};
    k2p_shard_list l = {0};
    k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
    size_t total = 0;

    create_stream(p, "conf-rw", 3);
    put_range(p, "conf-rw", "pk", 0, 1500, 41);
    assert_int_equal(k2p_kinesis_list_shards(p->client, "conf-rw", 0, &l, &err), 0);
    note(p, "shards %zu", l.n);
    for (size_t s = 0; s < l.n; s++) {
        read_out o;
        note(p, "shard %s hash %s..%s closed=%d", l.shards[s].shard_id,
             l.shards[s].starting_hash_key, l.shards[s].ending_hash_key,
             l.shards[s].ending_seq != NULL);
        /* Limit 100: many pages; every record once, in put order within the shard. */
        o = read_shard(p, "conf-rw", l.shards[s].shard_id, &th, 100, "open");
        total += o.n;
        assert_int_equal(o.ended, 0);
    }
    assert_int_equal(total, 1500);
    for (size_t i = 0; i < puts_for(p)->n; i++) {
        if (!strcmp(puts_for(p)->res[i].shard_id, "shardId-000000000000")) {
            snprintf(rw_seq_shard0[p->is_mock], sizeof rw_seq_shard0[0], "%s",
                     puts_for(p)->res[i].seq);
            break;
        }
    }
    assert_true(rw_seq_shard0[p->is_mock][0] != '\0');
    k2p_shard_list_deinit(&l);
}

static void test_put_and_read(void **state)
{
    (void)state;
    run_both(scenario_put_and_read);
}

static void scenario_list_shards(peer *p)
{
    k2p_err err = {0};
    k2p_shard_list all = {0}, paged = {0};
    k2p_buf b;
    long st;

    k2p_buf_init(&b, 0);
    create_stream(p, "conf-paged", 7);
    assert_int_equal(k2p_kinesis_list_shards(p->client, "conf-paged", 0, &all, &err), 0);
    assert_int_equal(k2p_kinesis_list_shards(p->client, "conf-paged", 2, &paged, &err), 0);
    assert_int_equal(all.n, paged.n);
    for (size_t i = 0; i < all.n; i++) {
        k2p_shard *a = &all.shards[i], *q = &paged.shards[i];
        assert_string_equal(a->shard_id, q->shard_id);
        assert_non_null(q->starting_seq);
        note(p, "shard %s hash %s..%s parent=%s ending=%d", q->shard_id, q->starting_hash_key,
             q->ending_hash_key, q->parent_shard_id ? q->parent_shard_id : "-",
             q->ending_seq != NULL);
    }
    /* NextToken and StreamName together, or neither: InvalidArgumentException. */
    st = k2p_test_kinesis_raw(p->endpoint, "ListShards",
                              "{\"StreamName\":\"conf-paged\",\"NextToken\":\"abc\"}", &b);
    note(p, "both: %ld %s", st, strstr(b.data, "InvalidArgumentException") ? "IAE" : b.data);
    st = k2p_test_kinesis_raw(p->endpoint, "ListShards", "{\"MaxResults\":2}", &b);
    note(p, "neither: %ld %s", st, strstr(b.data, "InvalidArgumentException") ? "IAE" : b.data);
    if (p->is_mock) {
        /* kinesalite ignores MaxResults; the mock pages like AWS. */
        cJSON *root;
        const cJSON *tok;
        st = k2p_test_kinesis_raw(p->endpoint, "ListShards",
                                  "{\"StreamName\":\"conf-paged\",\"MaxResults\":2}", &b);
        assert_int_equal(st, 200);
        root = cJSON_Parse(b.data);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "Shards")), 2);
        tok = cJSON_GetObjectItem(root, "NextToken");
        assert_true(cJSON_IsString(tok));
        cJSON_Delete(root);
    }
    k2p_shard_list_deinit(&all);
    k2p_shard_list_deinit(&paged);
    k2p_buf_deinit(&b);
}

static void test_list_shards(void **state)
{
    (void)state;
    run_both(scenario_list_shards);
}

static void scenario_iterators(peer *p)
{
    k2p_err err = {0};
    k2p_shard_list l = {0};
    k2p_records recs;
    char *latest = NULL;
    const char *shard;
    put_log *pl = puts_for(p);
    k2p_iter_start st;
    int64_t mid_us, before_us;

    k2p_records_init(&recs);
    create_stream(p, "conf-iter", 1);
    assert_int_equal(k2p_kinesis_list_shards(p->client, "conf-iter", 0, &l, &err), 0);
    shard = l.shards[0].shard_id;
    before_us = k2p_wall_us();
    wait_wall_past(before_us + 2000);
    pl->n = 0;
    put_range(p, "conf-iter", "k", 0, 10, 1);

    st = (k2p_iter_start){.type = K2P_ITER_TRIM_HORIZON};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");
    st = (k2p_iter_start){.type = K2P_ITER_AT_SEQUENCE_NUMBER, .seq = pl->res[3].seq};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");
    st = (k2p_iter_start){.type = K2P_ITER_AFTER_SEQUENCE_NUMBER, .seq = pl->res[3].seq};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");
    st = (k2p_iter_start){.type = K2P_ITER_AFTER_SEQUENCE_NUMBER, .seq = pl->res[9].seq};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");
    st = (k2p_iter_start){.type = K2P_ITER_AT_SEQUENCE_NUMBER, .seq = l.shards[0].starting_seq};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");

    /* LATEST sees nothing old, then exactly what is put afterwards. */
    st = (k2p_iter_start){.type = K2P_ITER_LATEST};
    assert_int_equal(
        k2p_kinesis_get_shard_iterator(p->client, "conf-iter", shard, &st, &latest, &err), 0);
    assert_int_equal(k2p_kinesis_get_records(p->client, latest, 100, &recs, &err), 0);
    note(p, "latest first: %zu", recs.n);
    free(latest);
    latest = k2p_strdup(recs.next_iterator);
    mid_us = k2p_wall_us();
    wait_wall_past(mid_us + 2000);
    put_range(p, "conf-iter", "k", 10, 3, 1);
    assert_int_equal(k2p_kinesis_get_records(p->client, latest, 100, &recs, &err), 0);
    note(p, "latest then: %zu first=%ld", recs.n,
         recs.n ? find_put(p, shard, recs.recs[0].seq) : -1L);

    /* AT_TIMESTAMP between the two batches: the 3 new ones; before all: all 13. */
    st = (k2p_iter_start){.type = K2P_ITER_AT_TIMESTAMP, .timestamp_us = mid_us + 1000};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");
    st = (k2p_iter_start){.type = K2P_ITER_AT_TIMESTAMP, .timestamp_us = before_us};
    read_shard(p, "conf-iter", shard, &st, 10000, "open");

    free(latest);
    k2p_records_deinit(&recs);
    k2p_shard_list_deinit(&l);
}

static void test_iterator_types(void **state)
{
    (void)state;
    run_both(scenario_iterators);
}

static void scenario_reshard(peer *p)
{
    k2p_err err = {0};
    k2p_shard_list l = {0};
    k2p_stream_summary sum;
    k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
    put_log *pl = puts_for(p);
    long max_parent_idx = -1;

    pl->n = 0;
    create_stream(p, "conf-reshard", 2);
    put_range(p, "conf-reshard", "r", 0, 100, 23);
    /* Split shard 0 in the middle of its range; children get ids 2 and 3. */
    assert_int_equal(k2p_kinesis_split_shard(p->client, "conf-reshard", "shardId-000000000000",
                                             "85070591730234615865843651857942052864", &err),
                     0);
    assert_int_equal(k2p_kinesis_wait_active(p->client, "conf-reshard", 10000, &err), 0);
    put_range(p, "conf-reshard", "r", 100, 100, 23);
    /* Merge them back (adjacent shard first: order does not matter); the child is 4. */
    assert_int_equal(k2p_kinesis_merge_shards(p->client, "conf-reshard", "shardId-000000000002",
                                              "shardId-000000000003", &err),
                     0);
    assert_int_equal(k2p_kinesis_wait_active(p->client, "conf-reshard", 10000, &err), 0);
    put_range(p, "conf-reshard", "r", 200, 100, 23);

    assert_int_equal(k2p_kinesis_describe_stream_summary(p->client, "conf-reshard", &sum, &err), 0);
    note(p, "summary status=%s open=%d retention=%d", sum.status, sum.open_shards,
         sum.retention_hours);
    assert_int_equal(k2p_kinesis_list_shards(p->client, "conf-reshard", 0, &l, &err), 0);
    note(p, "shards %zu", l.n);
    for (size_t s = 0; s < l.n; s++) {
        k2p_shard *sh = &l.shards[s];
        read_out o;
        note(p, "shard %s parent=%s adjacent=%s hash %s..%s closed=%d", sh->shard_id,
             sh->parent_shard_id ? sh->parent_shard_id : "-",
             sh->adjacent_parent_shard_id ? sh->adjacent_parent_shard_id : "-",
             sh->starting_hash_key, sh->ending_hash_key, sh->ending_seq != NULL);
        if (sh->ending_seq)
            assert_true(k2p_seq_cmps(sh->starting_seq, sh->ending_seq) < 0);
        o = read_shard(p, "conf-reshard", sh->shard_id, &th, 30,
                       sh->ending_seq ? "closed" : "open");
        /* A closed shard is read to its end: no NextShardIterator. */
        assert_int_equal(o.ended, sh->ending_seq != NULL);
        if (p->is_mock && sh->ending_seq) {
            /* ChildShards at the end, as AWS sends them (kinesalite does not). */
            size_t want = 0;
            for (size_t c = 0; c < l.n; c++) {
                const k2p_shard *ch = &l.shards[c];
                int is_child =
                    (ch->parent_shard_id && !strcmp(ch->parent_shard_id, sh->shard_id)) ||
                    (ch->adjacent_parent_shard_id &&
                     !strcmp(ch->adjacent_parent_shard_id, sh->shard_id));
                if (is_child) {
                    assert_true(want < o.n_children);
                    assert_string_equal(o.children[want], ch->shard_id);
                    want++;
                }
            }
            assert_int_equal(o.n_children, want);
            assert_true(want > 0);
        }
        if (!strcmp(sh->shard_id, "shardId-000000000000"))
            max_parent_idx = (long)o.n;
    }
    /* Records put before the split are all in shard 0 or 1, never in a child. */
    for (size_t i = 0; i < 100; i++)
        assert_true(!strcmp(pl->res[i].shard_id, "shardId-000000000000") ||
                    !strcmp(pl->res[i].shard_id, "shardId-000000000001"));
    for (size_t i = 200; i < 300; i++)
        assert_true(!strcmp(pl->res[i].shard_id, "shardId-000000000004") ||
                    !strcmp(pl->res[i].shard_id, "shardId-000000000001"));
    assert_true(max_parent_idx > 0);
    k2p_shard_list_deinit(&l);
}

static void test_split_merge_lineage(void **state)
{
    (void)state;
    run_both(scenario_reshard);
}

/* Notes the HTTP status and AWS error type of a raw request. */
static void raw(peer *p, const char *what, const char *op, const char *body)
{
    k2p_buf b;
    cJSON *root;
    const char *type;
    long st;
    k2p_buf_init(&b, 0);
    st = k2p_test_kinesis_raw(p->endpoint, op, body, &b);
    root = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
    type = cJSON_GetStringValue(cJSON_GetObjectItem(root, "__type"));
    if (st == 200 && !strcmp(op, "PutRecord"))
        note(p, "%s: %ld shard=%s", what, st,
             cJSON_GetStringValue(cJSON_GetObjectItem(root, "ShardId")));
    else
        note(p, "%s: %ld %s", what, st, type ? type : "-");
    cJSON_Delete(root);
    k2p_buf_deinit(&b);
}

static void classified(peer *p, const char *what, int rc, const k2p_err *err, const char *name)
{
    note(p, "%s: rc=%d (%s) type=%s", what, rc, k2p_strerror(rc), err->aws_type);
    if (name)
        assert_non_null(strstr(err->msg, name));
}

static void scenario_errors(peer *p)
{
    k2p_err err = {0};
    k2p_records recs;
    k2p_shard_list l = {0};
    k2p_stream_summary sum;
    k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
    char *it = NULL, body[512];
    int rc;

    k2p_records_init(&recs);
    rc = k2p_kinesis_get_records(p->client, "not-an-iterator", 100, &recs, &err);
    classified(p, "bad iterator", rc, &err, NULL);
    rc = k2p_kinesis_list_shards(p->client, "no-such-stream", 0, &l, &err);
    classified(p, "list missing stream", rc, &err, "no-such-stream");
    rc = k2p_kinesis_describe_stream_summary(p->client, "no-such-stream", &sum, &err);
    classified(p, "describe missing stream", rc, &err, "no-such-stream");
    rc = k2p_kinesis_get_shard_iterator(p->client, "no-such-stream", "shardId-000000000000", &th,
                                        &it, &err);
    classified(p, "iterator missing stream", rc, &err, NULL);
    rc = k2p_kinesis_get_shard_iterator(p->client, "conf-rw", "shardId-000000000099", &th, &it,
                                        &err);
    classified(p, "iterator missing shard", rc, &err, NULL);
    rc = k2p_kinesis_create_stream(p->client, "conf-rw", 1, &err);
    classified(p, "create existing", rc, &err, NULL);
    rc = k2p_kinesis_split_shard(p->client, "conf-rw", "shardId-000000000000", "1", &err);
    classified(p, "split bad hash key", rc, &err, NULL);

    raw(p, "limit 0", "GetRecords", "{\"ShardIterator\":\"abc\",\"Limit\":0}");
    raw(p, "limit 10001", "GetRecords", "{\"ShardIterator\":\"abc\",\"Limit\":10001}");
    raw(p, "bogus iterator type", "GetShardIterator",
        "{\"StreamName\":\"conf-rw\",\"ShardId\":\"shardId-000000000000\","
        "\"ShardIteratorType\":\"BOGUS\"}");
    raw(p, "trim horizon with sequence", "GetShardIterator",
        "{\"StreamName\":\"conf-rw\",\"ShardId\":\"shardId-000000000000\","
        "\"ShardIteratorType\":\"TRIM_HORIZON\",\"StartingSequenceNumber\":\"1\"}");
    snprintf(body, sizeof body,
             "{\"StreamName\":\"conf-rw\",\"ShardId\":\"shardId-000000000001\","
             "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"}",
             rw_seq_shard0[p->is_mock]);
    raw(p, "sequence of another shard", "GetShardIterator", body);
    raw(p, "unknown operation", "Frobnicate", "{}");
    raw(p, "put record", "PutRecord",
        "{\"StreamName\":\"conf-rw\",\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"single\"}");
    raw(p, "put record explicit", "PutRecord",
        "{\"StreamName\":\"conf-rw\",\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"x\","
        "\"ExplicitHashKey\":\"340282366920938463463374607431768211455\"}");

    /* Deleting: the stream goes away (kinesalite takes a moment). */
    create_stream(p, "conf-doomed", 1);
    assert_int_equal(k2p_kinesis_delete_stream(p->client, "conf-doomed", &err), 0);
    for (int i = 0; i < 200; i++) {
        rc = k2p_kinesis_describe_stream_summary(p->client, "conf-doomed", &sum, &err);
        if (rc == K2P_ENOTFOUND)
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    classified(p, "describe deleted", rc, &err, NULL);
    k2p_records_deinit(&recs);
}

static void test_errors(void **state)
{
    (void)state;
    run_both(scenario_errors); /* after test_put_and_read: uses conf-rw and its puts */
}

/* Mock-only: MillisBehindLatest is the time from the last record returned to the tip. */
static void test_mock_millis_behind(void **state)
{
    peer *p = &peers[1];
    k2p_err err = {0};
    k2p_records recs;
    k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
    char *it = NULL;
    int64_t t0;
    (void)state;

    k2p_records_init(&recs);
    create_stream(p, "conf-behind", 1);
    puts_of[1].n = 0;
    put_range(p, "conf-behind", "b", 0, 2, 1);
    t0 = k2p_wall_us();
    wait_wall_past(t0 + 30000);
    put_range(p, "conf-behind", "b", 2, 1, 1);
    assert_int_equal(k2p_kinesis_get_shard_iterator(p->client, "conf-behind",
                                                    "shardId-000000000000", &th, &it, &err),
                     0);
    assert_int_equal(k2p_kinesis_get_records(p->client, it, 1, &recs, &err), 0);
    assert_int_equal(recs.n, 1);
    assert_true(recs.millis_behind >= 30);
    free(it);
    it = k2p_strdup(recs.next_iterator);
    assert_int_equal(k2p_kinesis_get_records(p->client, it, 10, &recs, &err), 0);
    assert_int_equal(recs.n, 2);
    assert_int_equal(recs.millis_behind, 0);
    free(it);
    k2p_records_deinit(&recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_and_read),   cmocka_unit_test(test_list_shards),
        cmocka_unit_test(test_iterator_types), cmocka_unit_test(test_split_merge_lineage),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_mock_millis_behind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

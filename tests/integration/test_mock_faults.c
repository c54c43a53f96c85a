/* test_mock_faults.c - the Kinesis client against tests/mock_kinesis with every fault it can
 * inject: throttling, 500s, connection resets, truncated bodies, expired iterators (injected
 * and by a short TTL), added latency, --limits, partial PutRecords failures and resharding
 * mid-read. For each, the client's retries must still deliver every preloaded record exactly
 * once and in order (compared with the mock's --dump-jsonl file), and /stats must have
 * counted the faults. Also: 1100 concurrent connections, and reproducible fault sequences
 * for a seed.
 *
 * Threading: single-threaded (the mock serves with its own threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kinesalite_harness.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/seqnum.h"
#include "mock_kinesis_harness.h"

#define STREAM "faulty"
#define SHARDS 4
#define RECORDS 20000

/* One preloaded record, from the dump. */
typedef struct dumped {
    char shard[24];
    char seq[K2P_SEQ_MAX_DIGITS + 1];
    char pkey[32];
    char *data;
    size_t len;
} dumped;

static k2p_test_mock mk;
static k2p_cred_chain *creds;
static k2p_kinesis *client;
static dumped *dump;
static size_t n_dump;
static char dump_path[256];

/* A client that retries fast: many attempts, short backoff (the faults are frequent). */
static k2p_kinesis *fast_client(int attempts, int base_ms, int max_ms)
{
    k2p_kinesis_opts o = {0};
    k2p_err err = {0};
    k2p_kinesis *k;
    o.endpoint = mk.endpoint;
    o.region = "us-east-1";
    o.creds = creds;
    o.max_attempts = attempts;
    o.backoff_base_ms = base_ms;
    o.backoff_max_ms = max_ms;
    o.timeout_ms = 10000;
    k = k2p_kinesis_new(&o, &err);
    if (!k)
        fail_msg("client: %s", err.msg);
    return k;
}

static void load_dump(void)
{
    FILE *f = fopen(dump_path, "r");
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t n;
    assert_non_null(f);
    while ((n = getline(&line, &cap, f)) > 0) {
        char *fld[4], *s = line;
        dumped *d;
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        for (int i = 0; i < 4; i++) {
            fld[i] = s;
            s = i < 3 ? strchr(s, '\t') : NULL;
            if (i < 3) {
                assert_non_null(s);
                *s++ = '\0';
            }
        }
        if (n_dump == alloc) {
            alloc = alloc ? alloc * 2 : 4096;
            dump = realloc(dump, alloc * sizeof *dump);
            assert_non_null(dump);
        }
        d = &dump[n_dump++];
        snprintf(d->shard, sizeof d->shard, "%s", fld[0]);
        snprintf(d->seq, sizeof d->seq, "%s", fld[1]);
        snprintf(d->pkey, sizeof d->pkey, "%s", fld[2]);
        d->len = strlen(fld[3]);
        d->data = k2p_strndup(fld[3], d->len);
    }
    free(line);
    fclose(f);
}

static int setup(void **state)
{
    /* dump_path is a static array: filled in below, before the mock starts. */
    const char *args[] = {"--seed",
                          "42",
                          "--throttle",
                          "0.3",
                          "--preload-stream",
                          STREAM,
                          "--preload-shards",
                          "4",
                          "--preload-records",
                          "20000",
                          "--preload-size",
                          "200",
                          "--dump-jsonl",
                          dump_path,
                          NULL};
    (void)state;
    snprintf(dump_path, sizeof dump_path, "%s/mock_faults_%d.tsv", K2P_BINARY_DIR, (int)getpid());
    if (k2p_test_mock_start(&mk, args))
        return -1;
    creds = k2p_test_cred_chain();
    client = fast_client(60, 1, 20);
    load_dump();
    return n_dump == RECORDS ? 0 : -1;
}

static int teardown(void **state)
{
    int rc;
    (void)state;
    k2p_kinesis_free(client);
    k2p_cred_chain_free(creds);
    rc = k2p_test_mock_stop(&mk);
    for (size_t i = 0; i < n_dump; i++)
        free(dump[i].data);
    free(dump);
    unlink(dump_path);
    if (rc != 0)
        fprintf(stderr, "mock_kinesis exited with status %d\n", rc);
    return rc == 0 ? 0 : -1;
}

static int64_t stat_of(const char *path)
{
    int64_t v = k2p_test_mock_stat(&mk, path);
    assert_true(v >= 0);
    return v;
}

static void control(const char *json)
{
    assert_int_equal(k2p_test_mock_control(&mk, json), 0);
}

/* ---- the reader -------------------------------------------------------------------------- */

typedef struct read_stats {
    size_t records;
    size_t expired; /* K2P_EEXPIRED answers (the reader re-gets its iterator) */
    size_t shards_read;
    size_t children_seen;
} read_stats;

/* Index in the dump of the first record of `shard`, and the count of its records. */
static size_t dump_range(const char *shard, size_t *count)
{
    size_t first = n_dump, n = 0;
    for (size_t i = 0; i < n_dump; i++) {
        if (!strcmp(dump[i].shard, shard)) {
            if (first == n_dump)
                first = i;
            n++;
        }
    }
    *count = n;
    return first;
}

/* Reads one shard to its end (closed) or tip (open) like a loader: TRIM_HORIZON, then on an
 * expired iterator AFTER_SEQUENCE_NUMBER of the last record read. Every record must be the
 * next one of the dump for that shard. Children named by ChildShards are appended to queue. */
static void read_one(k2p_kinesis *k, const char *shard, int limit, read_stats *rs,
                     char (*queue)[24], size_t *qn, size_t qcap)
{
    k2p_err err = {0};
    k2p_records recs;
    char *it = NULL, last[K2P_SEQ_MAX_DIGITS + 1] = "";
    size_t count, first = dump_range(shard, &count), got = 0;
    int rc;

    k2p_records_init(&recs);
    for (int calls = 0;; calls++) {
        assert_true(calls < 10000);
        if (!it) {
            k2p_iter_start st = {.type = K2P_ITER_TRIM_HORIZON};
            if (last[0])
                st = (k2p_iter_start){.type = K2P_ITER_AFTER_SEQUENCE_NUMBER, .seq = last};
            rc = k2p_kinesis_get_shard_iterator(k, STREAM, shard, &st, &it, &err);
            if (rc)
                fail_msg("iterator %s: %s", shard, err.msg);
        }
        rc = k2p_kinesis_get_records(k, it, limit, &recs, &err);
        if (rc == K2P_EEXPIRED) {
            rs->expired++;
            free(it);
            it = NULL;
            continue;
        }
        if (rc)
            fail_msg("get_records %s: %s", shard, err.msg);
        for (size_t i = 0; i < recs.n; i++) {
            const k2p_record *r = &recs.recs[i];
            const dumped *d;
            assert_true(got < count);
            d = &dump[first + got];
            assert_string_equal(r->seq, d->seq);
            assert_string_equal(r->pkey, d->pkey);
            assert_int_equal(r->data_len, d->len);
            assert_memory_equal(r->data, d->data, d->len);
            snprintf(last, sizeof last, "%s", r->seq);
            got++;
        }
        free(it);
        it = recs.next_iterator ? k2p_strdup(recs.next_iterator) : NULL;
        if (!it) {
            for (size_t c = 0; c < recs.n_children; c++) {
                size_t j;
                rs->children_seen++;
                for (j = 0; j < *qn && strcmp(queue[j], recs.children[c].shard_id); j++)
                    ;
                if (j == *qn && *qn < qcap)
                    snprintf(queue[(*qn)++], sizeof queue[0], "%s", recs.children[c].shard_id);
            }
            break;
        }
        if (recs.n < (size_t)limit && recs.millis_behind == 0)
            break; /* caught up */
    }
    free(it);
    assert_int_equal(got, count);
    rs->records += got;
    rs->shards_read++;
    k2p_records_deinit(&recs);
}

/* Reads the whole stream: every shard ListShards names, then children as they appear. */
static read_stats read_all(k2p_kinesis *k, int limit)
{
    k2p_err err = {0};
    k2p_shard_list l = {0};
    char queue[64][24];
    size_t qn = 0;
    read_stats rs = {0};

    if (k2p_kinesis_list_shards(k, STREAM, 0, &l, &err))
        fail_msg("list shards: %s", err.msg);
    for (size_t i = 0; i < l.n && qn < 64; i++)
        snprintf(queue[qn++], sizeof queue[0], "%s", l.shards[i].shard_id);
    for (size_t q = 0; q < qn; q++)
        read_one(k, queue[q], limit, &rs, queue, &qn, 64);
    assert_int_equal(rs.records, RECORDS);
    k2p_shard_list_deinit(&l);
    return rs;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_throttle_from_flags(void **state)
{
    read_stats rs;
    (void)state;
    rs = read_all(client, 1000);
    assert_true(stat_of("faults.throttle") > 0);
    assert_true(k2p_kinesis_get_stats(client)->retries_throttled > 0);
    assert_int_equal(rs.expired, 0);
    assert_int_equal(stat_of("records_served"), RECORDS);
}

static void test_internal_failures(void **state)
{
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"error500\":0.05}");
    read_all(client, 500);
    assert_true(stat_of("faults.error500") > 0);
    assert_int_equal(stat_of("faults.error500"), stat_of("status_5xx"));
}

static void test_connection_resets(void **state)
{
    k2p_buf b;
    (void)state;
    k2p_buf_init(&b, 0);
    /* The query-string form of /control. */
    assert_int_equal(k2p_test_mock_get(&mk, "/control?clear=1&reset_stats=1&reset=0.05", &b), 200);
    assert_non_null(strstr(b.data, "\"reset\":0.05"));
    read_all(client, 500);
    assert_true(stat_of("faults.reset") > 0);
    k2p_buf_deinit(&b);
}

static void test_truncated_bodies(void **state)
{
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"truncate\":0.05}");
    read_all(client, 500);
    assert_true(stat_of("faults.truncate") > 0);
}

static void test_injected_expiry(void **state)
{
    read_stats rs;
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"expire\":0.1}");
    rs = read_all(client, 500);
    assert_true(rs.expired > 0);
    assert_int_equal((int64_t)rs.expired, stat_of("faults.expire"));
}

static void test_short_iterator_ttl(void **state)
{
    k2p_err err = {0};
    k2p_records recs;
    k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
    char *it = NULL;
    int64_t deadline;
    int rc;
    (void)state;

    control("{\"clear\":true,\"reset_stats\":true,\"iterator_ttl_ms\":200}");
    k2p_records_init(&recs);
    assert_int_equal(
        k2p_kinesis_get_shard_iterator(client, STREAM, "shardId-000000000000", &th, &it, &err), 0);
    /* Wait until the iterator is older than its TTL. */
    deadline = k2p_now_ns() + 250 * 1000000LL;
    while (k2p_now_ns() < deadline) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rc = k2p_kinesis_get_records(client, it, 100, &recs, &err);
    assert_int_equal(rc, K2P_EEXPIRED);
    assert_string_equal(err.aws_type, "ExpiredIteratorException");
    assert_int_equal(stat_of("faults.iterator_ttl"), 1);
    /* A reader that uses its iterators promptly is not bothered by a short TTL. */
    read_all(client, 1000);
    free(it);
    k2p_records_deinit(&recs);
    control("{\"clear\":true}");
}

static void test_everything_at_once(void **state)
{
    read_stats rs;
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"throttle\":0.1,\"error500\":0.05,"
            "\"reset\":0.05,\"truncate\":0.05,\"expire\":0.05,\"latency_ms\":1}");
    rs = read_all(client, 300);
    assert_true(stat_of("faults.throttle") > 0 && stat_of("faults.error500") > 0 &&
                stat_of("faults.reset") > 0 && stat_of("faults.truncate") > 0);
    assert_int_equal((int64_t)rs.expired, stat_of("faults.expire"));
    assert_true(stat_of("faults.latency") > 0);
    control("{\"clear\":true}");
}

static void test_latency(void **state)
{
    k2p_err err = {0};
    k2p_stream_summary s;
    int64_t t0;
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"latency_ms\":40}");
    t0 = k2p_now_ns();
    assert_int_equal(k2p_kinesis_describe_stream_summary(client, STREAM, &s, &err), 0);
    assert_true(k2p_now_ns() - t0 >= 40 * 1000000LL);
    assert_int_equal(s.open_shards, SHARDS);
    assert_int_equal(stat_of("faults.latency"), 1);
    control("{\"clear\":true}");
}

static void test_limits(void **state)
{
    k2p_kinesis *slow = fast_client(40, 50, 300);
    read_stats rs = {0};
    char queue[4][24];
    size_t qn = 0;
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"limits\":true}");
    /* 5000 records of 200 bytes in one call: 1 MB, so a call within the next 0.5 s is
     * refused. Reading the shard again right away makes that call. */
    read_one(slow, "shardId-000000000000", 10000, &rs, queue, &qn, 4);
    read_one(slow, "shardId-000000000000", 10000, &rs, queue, &qn, 4);
    assert_true(stat_of("faults.limit_bytes") > 0);
    /* Limit 400: 13 calls, more than 5 per second. */
    read_one(slow, "shardId-000000000001", 400, &rs, queue, &qn, 4);
    assert_true(stat_of("faults.limit_calls") > 0);
    assert_int_equal(rs.records, 3 * RECORDS / SHARDS);
    control("{\"clear\":true}");
    k2p_kinesis_free(slow);
}

/* "key-17" -> 17, or -1. */
static int key_index(const char *pkey)
{
    int64_t v;
    if (strncmp(pkey, "key-", 4) || k2p_parse_i64(pkey + 4, &v) || v < 0 || v > 1000000)
        return -1;
    return (int)v;
}

static void test_partial_put_failures(void **state)
{
    k2p_err err = {0};
    k2p_put_entry e[1000];
    k2p_put_result res[1000];
    char keys[1000][16];
    size_t seen = 0;
    k2p_shard_list l = {0};
    (void)state;
    control("{\"clear\":true,\"reset_stats\":true,\"put_fail\":0.3}");
    assert_int_equal(k2p_kinesis_create_stream(client, "puts", 2, &err), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        e[i] = (k2p_put_entry){.data = keys[i], .len = strlen(keys[i]), .partition_key = keys[i]};
    }
    assert_int_equal(k2p_kinesis_put_records(client, "puts", e, 1000, res, &err), 0);
    assert_true(stat_of("faults.put_fail") > 0);
    assert_int_equal(stat_of("records_put"), 1000);
    control("{\"clear\":true}");
    /* Every entry is in the stream exactly once, where the answer said. */
    assert_int_equal(k2p_kinesis_list_shards(client, "puts", 0, &l, &err), 0);
    for (size_t s = 0; s < l.n; s++) {
        k2p_records recs;
        k2p_iter_start th = {.type = K2P_ITER_TRIM_HORIZON};
        char *it = NULL;
        k2p_records_init(&recs);
        assert_int_equal(
            k2p_kinesis_get_shard_iterator(client, "puts", l.shards[s].shard_id, &th, &it, &err),
            0);
        assert_int_equal(k2p_kinesis_get_records(client, it, 10000, &recs, &err), 0);
        for (size_t i = 0; i < recs.n; i++) {
            int idx = key_index(recs.recs[i].pkey);
            assert_true(idx >= 0 && idx < 1000);
            assert_string_equal(res[idx].seq, recs.recs[i].seq);
            assert_string_equal(res[idx].shard_id, l.shards[s].shard_id);
            seen++;
        }
        free(it);
        k2p_records_deinit(&recs);
    }
    assert_int_equal(seen, 1000);
    k2p_shard_list_deinit(&l);
}

static void test_reshard_mid_read(void **state)
{
    k2p_err err = {0};
    k2p_shard_list l = {0};
    read_stats rs;
    (void)state;
    /* Split shard 1 once 3000 records have been served: while shard 0 is being read. */
    control("{\"clear\":true,\"reset_stats\":true,\"reshard_at\":3000,"
            "\"reshard_stream\":\"" STREAM "\",\"split\":\"shardId-000000000001\"}");
    rs = read_all(client, 1000);
    assert_int_equal(stat_of("reshards"), 1);
    assert_int_equal(rs.children_seen, 2);
    assert_int_equal(rs.shards_read, SHARDS + 2);
    assert_int_equal(k2p_kinesis_list_shards(client, STREAM, 0, &l, &err), 0);
    assert_int_equal(l.n, SHARDS + 2);
    assert_non_null(l.shards[1].ending_seq);
    assert_string_equal(l.shards[4].parent_shard_id, "shardId-000000000001");
    assert_string_equal(l.shards[5].parent_shard_id, "shardId-000000000001");
    k2p_shard_list_deinit(&l);

    /* Then merge the two children back, mid-read again. */
    control("{\"reset_stats\":true,\"reshard_at\":2000,"
            "\"merge\":\"shardId-000000000004,shardId-000000000005\"}");
    rs = read_all(client, 1000);
    assert_int_equal(stat_of("reshards"), 1);
    assert_int_equal(rs.shards_read, SHARDS + 3);
    assert_int_equal(k2p_kinesis_list_shards(client, STREAM, 0, &l, &err), 0);
    assert_int_equal(l.n, SHARDS + 3);
    assert_string_equal(l.shards[6].parent_shard_id, "shardId-000000000004");
    assert_string_equal(l.shards[6].adjacent_parent_shard_id, "shardId-000000000005");
    k2p_shard_list_deinit(&l);
    control("{\"clear\":true}");
}

static void test_seeded_faults_repeat(void **state)
{
    char first[121], again[121];
    k2p_buf b;
    const char *body = "{\"StreamName\":\"" STREAM "\"}";
    (void)state;
    k2p_buf_init(&b, 0);
    for (int round = 0; round < 2; round++) {
        char *out = round ? again : first;
        control("{\"clear\":true,\"seed\":1234,\"throttle\":0.3,\"error500\":0.2}");
        for (int i = 0; i < 120; i++) {
            long st = k2p_test_kinesis_raw(mk.endpoint, "DescribeStreamSummary", body, &b);
            out[i] = st == 200 ? '.' : st == 500 ? 'E' : 'T';
        }
        out[120] = '\0';
    }
    assert_string_equal(first, again);
    assert_non_null(strchr(first, 'T'));
    assert_non_null(strchr(first, 'E'));
    control("{\"clear\":true}");
    k2p_buf_deinit(&b);
}

static void test_many_connections(void **state)
{
    enum { N = 1100 };
    static int fds[N];
    struct sockaddr_in a = {0};
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)state;
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)mk.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    control("{\"clear\":true,\"reset_stats\":true}");
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(send(fds[i], req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    }
    /* Every connection answers, twice (keep-alive), while all of them are open. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            char buf[512];
            size_t got = 0;
            while (!memmem(buf, got, "{\"ok\":true}", 11)) {
                ssize_t r = recv(fds[i], buf + got, sizeof buf - got, 0);
                assert_true(r > 0);
                got += (size_t)r;
            }
            assert_memory_equal(buf, "HTTP/1.1 200", 12);
            if (!round)
                assert_int_equal(send(fds[i], req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
        }
    }
    assert_true(stat_of("connections.open") >= N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_throttle_from_flags),
        cmocka_unit_test(test_internal_failures),
        cmocka_unit_test(test_connection_resets),
        cmocka_unit_test(test_truncated_bodies),
        cmocka_unit_test(test_injected_expiry),
        cmocka_unit_test(test_short_iterator_ttl),
        cmocka_unit_test(test_everything_at_once),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_partial_put_failures),
        cmocka_unit_test(test_reshard_mid_read),
        cmocka_unit_test(test_seeded_faults_repeat),
        cmocka_unit_test(test_many_connections),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

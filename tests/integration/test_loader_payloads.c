/* test_loader_payloads.c - compressed and KPL-aggregated payloads through the whole loader,
 * against kinesalite and against mock_kinesis.
 *
 * The test builds every payload itself: zstd frames (libzstd), gzip members (zlib), KPL
 * aggregates in the documented format (magic, protobuf AggregatedRecord, MD5; written with
 * tests/support/pb_build.c), aggregates of compressed user records, and the bad cases: a
 * decompression bomb, a corrupt zstd frame, a truncated gzip member, an aggregate with a right
 * MD5 and a broken protobuf, one with a wrong MD5 (an ordinary record, then: not JSON), and a
 * user record inside an aggregate that is not JSON. It puts them with PutRecords, runs the
 * loader, and checks each expected row by (shard, sequence, sub-sequence): partition key, data,
 * message id; each expected dead letter by reason and bytes; nothing else in either table; a
 * rerun adds nothing.
 *
 * Exactly once across crashes in the middle of aggregates: aggregates of 200 user records,
 * small GetRecords answers, a loader killed with SIGKILL at random moments and restarted; in
 * the end every user record is in the table once.
 *
 * Threading: single-threaded; the loader runs as a child process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/kinesis_client.h"
#include "loader_testlib.h"
#include "mock_kinesis_harness.h"
#include "pb_build.h"

static k2p_lt g;
static k2p_test_mock mock;
static int mock_up;

/* ---- building payloads -------------------------------------------------------------------- */

static void zstd_of(const void *in, size_t n, k2p_pb *out)
{
    size_t cap = ZSTD_compressBound(n), got;
    uint8_t *p = malloc(cap);
    assert_non_null(p);
    got = ZSTD_compress(p, cap, in, n, 3);
    assert_false(ZSTD_isError(got));
    k2p_pb_raw(out, p, got);
    free(p);
}

static void gzip_of(const void *in, size_t n, k2p_pb *out)
{
    z_stream z;
    uint8_t buf[1 << 16];
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    for (;;) {
        int rc;
        z.next_out = buf;
        z.avail_out = sizeof buf;
        rc = deflate(&z, Z_FINISH);
        k2p_pb_raw(out, buf, sizeof buf - z.avail_out);
        if (rc == Z_STREAM_END)
            break;
        assert_int_equal(rc, Z_OK);
    }
    deflateEnd(&z);
}

/* ---- what a scenario expects -------------------------------------------------------------- */

typedef struct want_row {
    size_t rec;      /* index of the Kinesis record */
    long long sub;   /* sub-sequence number, -1: none */
    char pkey[32];
    char json[96];
} want_row;

typedef struct want_dead {
    size_t rec;
    long long sub;
    const char *reason; /* a substring of the reason */
    k2p_pb data;        /* the bytes kept */
} want_dead;

#define MAX_RECS 32
#define MAX_ROWS 256
#define MAX_DEAD 16

typedef struct scenario {
    k2p_pb data[MAX_RECS];
    char pkey[MAX_RECS][32];
    size_t n_recs;
    want_row rows[MAX_ROWS];
    size_t n_rows;
    want_dead dead[MAX_DEAD];
    size_t n_dead;
    k2p_put_result put[MAX_RECS];
} scenario;

static size_t add_rec(scenario *s, const char *pkey)
{
    assert_true(s->n_recs < MAX_RECS);
    snprintf(s->pkey[s->n_recs], sizeof s->pkey[0], "%s", pkey);
    return s->n_recs++;
}

static void want(scenario *s, size_t rec, long long sub, const char *pkey, const char *json)
{
    want_row *w = &s->rows[s->n_rows++];
    assert_true(s->n_rows <= MAX_ROWS);
    w->rec = rec;
    w->sub = sub;
    snprintf(w->pkey, sizeof w->pkey, "%s", pkey);
    snprintf(w->json, sizeof w->json, "%s", json);
}

static void want_dead_letter(scenario *s, size_t rec, long long sub, const char *reason,
                             const void *data, size_t n)
{
    want_dead *d = &s->dead[s->n_dead++];
    assert_true(s->n_dead <= MAX_DEAD);
    d->rec = rec;
    d->sub = sub;
    d->reason = reason;
    k2p_pb_raw(&d->data, data, n);
}

/* Every kind of payload, good and bad. */
static void build(scenario *s)
{
    static const char *const keys[] = {"alpha", "beta", "gamma"};
    char json[96];
    size_t r;

    /* A plain JSON record: one row without a sub-sequence number. */
    r = add_rec(s, "plain");
    k2p_pb_raw(&s->data[r], "{\"kind\":\"plain\"}", 16);
    want(s, r, -1, "plain", "{\"kind\":\"plain\"}");

    /* zstd and gzip compressed JSON. */
    r = add_rec(s, "z");
    snprintf(json, sizeof json, "{\"kind\":\"zstd\",\"pad\":\"%s\"}",
             "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    zstd_of(json, strlen(json), &s->data[r]);
    want(s, r, -1, "z", json);
    r = add_rec(s, "g");
    gzip_of("{\"kind\":\"gzip\"}", 15, &s->data[r]);
    want(s, r, -1, "g", "{\"kind\":\"gzip\"}");

    /* A KPL aggregate of 40 user records over three partition keys; user record 17 is not
     * JSON and becomes a dead letter with its sub-sequence number. */
    {
        k2p_pb body = {0};
        r = add_rec(s, "agg-outer");
        for (int i = 0; i < 3; i++)
            k2p_pb_str(&body, 1, keys[i]);
        for (int i = 0; i < 40; i++) {
            if (i == 17) {
                k2p_pb_kpl_record(&body, 1, -1, "not json", 8);
                want_dead_letter(s, r, i, "JSON", "not json", 8);
                continue;
            }
            snprintf(json, sizeof json, "{\"agg\":1,\"i\":%d}", i);
            k2p_pb_kpl_record(&body, (uint64_t)(i % 3), -1, json, strlen(json));
            want(s, r, i, keys[i % 3], json);
        }
        k2p_pb_kpl_wrap(&s->data[r], &body);
        k2p_pb_free(&body);
    }

    /* An aggregate of compressed user records (producers compress each one). */
    {
        k2p_pb body = {0};
        r = add_rec(s, "agg-z");
        k2p_pb_str(&body, 1, "zk");
        for (int i = 0; i < 6; i++) {
            k2p_pb c = {0};
            snprintf(json, sizeof json, "{\"agg\":2,\"i\":%d}", i);
            if (i % 2)
                gzip_of(json, strlen(json), &c);
            else
                zstd_of(json, strlen(json), &c);
            k2p_pb_kpl_record(&body, 0, -1, c.p, c.n);
            want(s, r, i, "zk", json);
            k2p_pb_free(&c);
        }
        k2p_pb_kpl_wrap(&s->data[r], &body);
        k2p_pb_free(&body);
    }

    /* An empty aggregate: no rows, no dead letter. */
    {
        k2p_pb body = {0};
        r = add_rec(s, "agg-empty");
        k2p_pb_str(&body, 1, "unused");
        k2p_pb_kpl_wrap(&s->data[r], &body);
        k2p_pb_free(&body);
    }

    /* A decompression bomb: 33 MiB of spaces (past the 32 MiB limit) in ~1 KiB of zstd. */
    {
        size_t n = (size_t)33 << 20;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, ' ', n);
        r = add_rec(s, "bomb");
        zstd_of(big, n, &s->data[r]);
        free(big);
        assert_true(s->data[r].n < 4096);
        want_dead_letter(s, r, -1, "decompression bomb", s->data[r].p, s->data[r].n);
    }

    /* A zstd magic followed by garbage. */
    r = add_rec(s, "zbad");
    k2p_pb_raw(&s->data[r], "\x28\xb5\x2f\xfd" "garbage, not a frame", 24);
    want_dead_letter(s, r, -1, "zstd: ", s->data[r].p, s->data[r].n);

    /* A gzip member cut short. */
    {
        k2p_pb full = {0};
        r = add_rec(s, "gcut");
        gzip_of("{\"kind\":\"gzip\",\"cut\":true}", 26, &full);
        k2p_pb_raw(&s->data[r], full.p, full.n - 6);
        k2p_pb_free(&full);
        want_dead_letter(s, r, -1, "gzip: ", s->data[r].p, s->data[r].n);
    }

    /* Right magic and MD5, broken protobuf (a key index out of range): the whole record. */
    {
        k2p_pb body = {0};
        r = add_rec(s, "agg-corrupt");
        k2p_pb_str(&body, 1, "only");
        k2p_pb_kpl_record(&body, 0, -1, "{}", 2);
        k2p_pb_kpl_record(&body, 5, -1, "{}", 2);
        k2p_pb_kpl_wrap(&s->data[r], &body);
        k2p_pb_free(&body);
        want_dead_letter(s, r, -1, "kpl: record 1: partition_key_index 5 out of range",
                         s->data[r].p, s->data[r].n);
    }

    /* Magic but a wrong MD5: an ordinary record (as the KCL decides), not JSON. */
    {
        k2p_pb body = {0};
        r = add_rec(s, "agg-md5");
        k2p_pb_str(&body, 1, "k");
        k2p_pb_kpl_record(&body, 0, -1, "{}", 2);
        k2p_pb_kpl_wrap(&s->data[r], &body);
        s->data[r].p[s->data[r].n - 1] ^= 1;
        k2p_pb_free(&body);
        want_dead_letter(s, r, -1, "invalid UTF-8 at byte 0", s->data[r].p, s->data[r].n);
    }
}

static void put_all(scenario *s, const char *stream)
{
    k2p_put_entry e[MAX_RECS];
    k2p_err err = {0};
    for (size_t i = 0; i < s->n_recs; i++) {
        e[i].data = s->data[i].p;
        e[i].len = s->data[i].n;
        e[i].partition_key = s->pkey[i];
        e[i].explicit_hash_key = NULL;
    }
    if (k2p_kinesis_put_records(g.client, stream, e, s->n_recs, s->put, &err))
        fail_msg("PutRecords: %s", err.msg);
}

static void scenario_free(scenario *s)
{
    for (size_t i = 0; i < s->n_recs; i++)
        k2p_pb_free(&s->data[i]);
    for (size_t i = 0; i < s->n_dead; i++)
        k2p_pb_free(&s->dead[i].data);
}

static char *hex_of(const k2p_pb *b)
{
    char *h = malloc(2 * b->n + 1);
    assert_non_null(h);
    for (size_t i = 0; i < b->n; i++)
        snprintf(h + 2 * i, 3, "%02x", b->p[i]);
    h[2 * b->n] = '\0';
    return h;
}

static void check(scenario *s, const char *stream)
{
    char *t = k2p_lt_qualify("kinesis", stream), *lit = k2p_lt_literal(stream);
    char sub[24], id[K2P_MSG_ID_LEN + 1];

    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM %s", t), (int64_t)s->n_rows);
    for (size_t i = 0; i < s->n_rows; i++) {
        const want_row *w = &s->rows[i];
        const k2p_put_result *p = &s->put[w->rec];
        char *pk = k2p_lt_literal(w->pkey), *js = k2p_lt_literal(w->json);
        if (w->sub >= 0) {
            snprintf(sub, sizeof sub, "%lld", w->sub);
            k2p_copy_msg_id_sub(p->shard_id, strlen(p->shard_id), p->seq, strlen(p->seq),
                                (uint32_t)w->sub, id);
        } else {
            snprintf(sub, sizeof sub, "NULL");
            k2p_copy_msg_id(p->shard_id, strlen(p->shard_id), p->seq, strlen(p->seq), id);
        }
        if (k2p_lt_i64(&g,
                       "SELECT count(*) FROM %s WHERE _kinesis__shard_id = '%s' AND "
                       "_kinesis__seq_no = %s AND _kinesis__sub_seq IS NOT DISTINCT FROM %s AND "
                       "_kinesis__partition = %s AND data = %s::jsonb AND _kinesis_msg_id = '%s'",
                       t, p->shard_id, p->seq, sub, pk, js, id) != 1) {
            char *all = k2p_lt_str(&g,
                                   "SELECT string_agg(concat_ws(' ', _kinesis__sub_seq, "
                                   "_kinesis__partition, data::text, _kinesis_msg_id), ' | ') "
                                   "FROM %s WHERE _kinesis__seq_no = %s",
                                   t, p->seq);
            fail_msg("row of record %zu sub %s (%s %s, %s) missing or different; the table has "
                     "for that sequence number: %s",
                     w->rec, sub, w->pkey, w->json, id, all ? all : "nothing");
        }
        free(pk);
        free(js);
    }
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = %s",
                                lit),
                     (int64_t)s->n_dead);
    for (size_t i = 0; i < s->n_dead; i++) {
        const want_dead *d = &s->dead[i];
        const k2p_put_result *p = &s->put[d->rec];
        char *hex = hex_of(&d->data), *why = k2p_lt_literal(d->reason);
        if (d->sub >= 0)
            snprintf(sub, sizeof sub, "%lld", d->sub);
        else
            snprintf(sub, sizeof sub, "NULL");
        if (k2p_lt_i64(&g,
                       "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = %s AND "
                       "shard_id = '%s' AND seq_no = %s AND sub_seq IS NOT DISTINCT FROM %s AND "
                       "strpos(reason, %s) > 0 AND data = '\\x%s'::bytea",
                       lit, p->shard_id, p->seq, sub, why, hex) != 1) {
            char *got = k2p_lt_str(&g,
                                   "SELECT string_agg(concat_ws(' ', sub_seq, reason, "
                                   "length(data)), ' | ') FROM kinesis2pg.dead_letters WHERE "
                                   "stream = %s AND seq_no = %s",
                                   lit, p->seq);
            fail_msg("dead letter of record %zu sub %s ('%s', %zu bytes) missing or different; "
                     "there is: %s",
                     d->rec, sub, d->reason, d->data.n, got ? got : "nothing");
        }
        {
            char *reason = k2p_lt_str(&g,
                                      "SELECT reason FROM kinesis2pg.dead_letters WHERE stream = "
                                      "%s AND seq_no = %s AND sub_seq IS NOT DISTINCT FROM %s",
                                      lit, p->seq, sub);
            fprintf(stderr, "  dead letter %zu: %s\n", i, reason ? reason : "?");
            free(reason);
        }
        free(hex);
        free(why);
    }
    free(t);
    free(lit);
}

static void run_scenario(const char *stream)
{
    scenario *s = calloc(1, sizeof *s);
    assert_non_null(s);
    build(s);
    k2p_lt_create_stream(&g, stream, 2);
    put_all(s, stream);
    K2P_LT_EXPECT_ROWS(
        K2P_LT_LOAD_OK(&g, "kinesis", stream, "--stream", stream, "--from", "trim_horizon"),
        (int64_t)s->n_rows);
    check(s, stream);
    /* A rerun adds nothing. */
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", stream, "--stream", stream), 0);
    check(s, stream);
    scenario_free(s);
    free(s);
}

/* ---- tests --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    return k2p_lt_start(&g) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (mock_up)
        k2p_test_mock_stop(&mock);
    k2p_lt_stop(&g);
    return 0;
}

static void use_mock(void)
{
    if (!mock_up) {
        if (k2p_test_mock_start(&mock, NULL))
            fail_msg("mock_kinesis did not start");
        mock_up = 1;
    }
    k2p_lt_use_endpoint(&g, mock.endpoint);
}

static void test_payloads_kinesalite(void **state)
{
    (void)state;
    K2P_LT_REQUIRE(&g);
    run_scenario("payloads");
}

static void test_payloads_mock(void **state)
{
    (void)state;
    K2P_LT_REQUIRE(&g);
    use_mock();
    run_scenario("payloads_mock");
}

/* --decompress none stores compressed bytes as they are (here: --raw, as bytea); zstd refuses
 * everything that is not zstd. */
static void test_modes(void **state)
{
    k2p_put_entry e[2];
    k2p_put_result res[2];
    k2p_pb z = {0};
    k2p_err err = {0};
    (void)state;
    K2P_LT_REQUIRE(&g);
    use_mock();
    zstd_of("{\"m\":1}", 7, &z);
    e[0] = (k2p_put_entry){z.p, z.n, "a", NULL};
    e[1] = (k2p_put_entry){"{\"m\":2}", 7, "b", NULL};
    k2p_lt_create_stream(&g, "modes", 1);
    if (k2p_kinesis_put_records(g.client, "modes", e, 2, res, &err))
        fail_msg("PutRecords: %s", err.msg);

    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "modes_none", "--stream", "modes", "--table",
                                      "modes_none", "--from", "trim_horizon", "--raw",
                                      "--decompress", "none"),
                       2);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis.modes_none WHERE "
                                    "substr(data, 1, 4) = '\\x28b52ffd'::bytea"),
                     1);
    K2P_LT_EXPECT_ROWS(K2P_LT_LOAD_OK(&g, "kinesis", "modes_zstd", "--stream", "modes",
                                      "--table", "modes_zstd", "--from", "trim_horizon",
                                      "--decompress", "zstd"),
                       1);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis.modes_zstd WHERE data = "
                                    "'{\"m\":1}'::jsonb"),
                     1);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = "
                                    "'modes' AND target = '\"kinesis\".\"modes_zstd\"' AND reason "
                                    "= 'zstd: not zstd data'"),
                     1);
    k2p_pb_free(&z);
}

/* Crashes land in the middle of aggregates: every user record still ends up in the table once.
 * 240 aggregates of 200 user records; GetRecords answers of 3 aggregates (600 rows), one
 * transaction each; SIGKILL at random moments. */
static void test_kill_mid_aggregate(void **state)
{
    enum { AGGS = 240, PER = 200, KILLS = 5 };
    k2p_put_entry e[AGGS];
    k2p_put_result *res = calloc(AGGS, sizeof *res);
    k2p_pb *data = calloc(AGGS, sizeof *data);
    char keys[AGGS][16], log_path[400];
    k2p_err err = {0};
    unsigned seed = (unsigned)time(NULL);
    const char *const args[] = {"--stream", "crashy", "--from", "trim_horizon", "--chunk-size",
                                "3", "--batch-rows", "600", NULL};
    (void)state;
    K2P_LT_REQUIRE(&g);
    assert_non_null(res);
    assert_non_null(data);
    use_mock();
    fprintf(stderr, "  seed %u\n", seed);
    srand(seed);
    for (int a = 0; a < AGGS; a++) {
        k2p_pb body = {0};
        char json[64];
        k2p_pb_str(&body, 1, "p0");
        k2p_pb_str(&body, 1, "p1");
        for (int i = 0; i < PER; i++) {
            int n = snprintf(json, sizeof json, "{\"n\":%d}", a * PER + i);
            k2p_pb_kpl_record(&body, (uint64_t)(i & 1), -1, json, (size_t)n);
        }
        k2p_pb_kpl_wrap(&data[a], &body);
        k2p_pb_free(&body);
        snprintf(keys[a], sizeof keys[a], "k%d", a);
        e[a] = (k2p_put_entry){data[a].p, data[a].n, keys[a], NULL};
    }
    k2p_lt_create_stream(&g, "crashy", 4);
    for (int a = 0; a < AGGS; a += 80)
        if (k2p_kinesis_put_records(g.client, "crashy", e + a, 80, res + a, &err))
            fail_msg("PutRecords: %s", err.msg);

    snprintf(log_path, sizeof log_path, "%s/crashy.log", g.tmpdir);
    for (int k = 0; k < KILLS; k++) {
        int status;
        pid_t pid = k2p_lt_spawn_loader(&g, args, log_path);
        usleep((useconds_t)(150000 + rand() % 600000));
        kill(pid, SIGKILL);
        assert_int_equal(k2p_lt_wait_pid(pid, 10000, &status), 1);
        fprintf(stderr, "  kill %d: %lld rows so far\n", k + 1,
                (long long)k2p_lt_count(&g, "kinesis", "crashy"));
    }
    K2P_LT_LOAD_OK(&g, "kinesis", "crashy", "--stream", "crashy");
    assert_int_equal(k2p_lt_count(&g, "kinesis", "crashy"), AGGS * PER);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(DISTINCT (data->>'n')::int) FROM kinesis.crashy"
                                    " WHERE (data->>'n')::int BETWEEN 0 AND %d",
                                AGGS * PER - 1),
                     AGGS * PER);
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM (SELECT 1 FROM kinesis.crashy GROUP BY "
                                    "_kinesis__shard_id, _kinesis__seq_no, _kinesis__sub_seq "
                                    "HAVING count(*) > 1) d"),
                     0);
    /* Each aggregate's user records are complete and numbered 0..PER-1. */
    assert_int_equal(k2p_lt_i64(&g, "SELECT count(*) FROM (SELECT _kinesis__seq_no FROM "
                                    "kinesis.crashy GROUP BY 1 HAVING count(*) <> %d OR "
                                    "min(_kinesis__sub_seq) <> 0 OR max(_kinesis__sub_seq) <> %d) x",
                                PER, PER - 1),
                     0);
    for (int a = 0; a < AGGS; a++)
        k2p_pb_free(&data[a]);
    free(data);
    free(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payloads_kinesalite),
        cmocka_unit_test(test_payloads_mock),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_kill_mid_aggregate),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

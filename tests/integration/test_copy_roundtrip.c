/* test_copy_roundtrip.c - rows encoded by copy_encode.c go into a real PostgreSQL with COPY
 * BINARY and come back exactly: sequence numbers of 1, 56 and 129 digits (binary numeric and
 * text), timestamps from year 1 to 9999 and beyond, unicode and COPY-special characters in text,
 * every byte value in bytea, JSON in jsonb; tables and schemas with quotes in their names;
 * several batches streamed as one COPY; the primary key refusing a replayed batch.
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
#include "pg_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXTOID 25

static k2p_test_pg g_pg;
static PGconn *g_conn;
static int g_skip;

static const char SCHEMA[] = "k2p \"test\"";
static const char TABLE_JSON[] = "Stream.With\"Quotes";
static const char TABLE_RAW[] = "raw events";

static int setup(void **state)
{
    int rc;
    (void)state;
    rc = k2p_test_pg_start(&g_pg);
    if (rc == K2P_ENOTFOUND) {
        g_skip = 1;
        return 0;
    }
    if (rc != 0)
        return -1;
    g_conn = k2p_test_pg_connect(&g_pg);
    if (!g_conn)
        return -1;
    PQclear(PQexec(g_conn, "SET client_min_messages = warning")); /* no "already exists" */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_conn)
        PQfinish(g_conn);
    k2p_test_pg_stop(&g_pg);
    return 0;
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(g_conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s\n  in: %s", PQerrorMessage(g_conn), sql);
    PQclear(r);
}

static void create_table(const char *table, int data_type)
{
    k2p_buf b;
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_sql_create_schema(&b, SCHEMA), 0);
    exec_ok(b.data);
    k2p_buf_reset(&b);
    assert_int_equal(k2p_copy_sql_create_table(&b, SCHEMA, table, data_type, 1), 0);
    exec_ok(b.data);
    exec_ok(b.data); /* IF NOT EXISTS: idempotent */
    k2p_buf_deinit(&b);
}

/* Streams `data` as one COPY into schema.table, in chunks of `chunk` bytes. Returns 0, or -1
 * with the server's message in `why`. */
static int copy_in(const char *table, const char *data, size_t len, size_t chunk, char *why,
                   size_t whycap)
{
    k2p_buf sql;
    PGresult *r;
    int rc = 0;

    k2p_buf_init(&sql, 0);
    assert_int_equal(k2p_copy_sql_copy(&sql, SCHEMA, table), 0);
    r = PQexec(g_conn, sql.data);
    k2p_buf_deinit(&sql);
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = K2P_MIN(chunk, len - off);
        assert_int_equal(PQputCopyData(g_conn, data + off, (int)n), 1);
    }
    assert_int_equal(PQputCopyEnd(g_conn, NULL), 1);
    while ((r = PQgetResult(g_conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(why, whycap, "%s", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    return rc;
}

struct rec {
    const char *shard;
    const char *seq;
    int64_t ts;
    const char *part;
    const char *stream;
    const char *json;
};

static char seq56[] = "49590338271490256608559692538361571095921575989136588898";
static char seq129[130];
static char seq129b[130];

static const struct rec recs[] = {
    {"shardId-000000000000", "1", 0, "p", "s", "{\"a\":1}"},
    {"shardId-000000000000", seq56, INT64_C(1700000000123456), "user-42", "events",
     "{\"id\": 42, \"name\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\", \"esc\": "
     "\"tab\\tnl\\nbs\\\\q\\\"\"}"},
    {"shardId-000000000000", seq129, K2P_PG_EPOCH_OFFSET_US + 1000000,
     "tab\tnewline\nbackslash\\quote\"'", "str\xc3\xa9\xe2\x82\xac", "[1, 2.50, -3e2, true, null]"},
    {"shardId-000000000001", seq129b, INT64_C(-62135596800000000), /* 0001-01-01 00:00:00 */
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "s", "\"just a string\""},
    {"shardId-000000000001", "0", INT64_C(253402300799999999), /* 9999-12-31 23:59:59.999999 */
     "k", "s", "12345678901234567890.123456789"},
    {"shardId-000000000001", "10000", -1, "k", "s", "{\"nested\": {\"deep\": [[[{}]]]}}"},
    {"shardId-000000000001", "100000000", INT64_C(32503680000000000), /* 3000-01-01 */ "k", "s",
     "{\"u\": \"\\u00e9\\ud83d\\ude00\"}"},
};
#define NRECS (sizeof recs / sizeof recs[0])

static k2p_copy_row row_of(const struct rec *r, const void *data, size_t data_len)
{
    k2p_copy_row row = {0};
    row.shard_id = r->shard;
    row.shard_id_len = strlen(r->shard);
    row.seq_no = r->seq;
    row.seq_no_len = strlen(r->seq);
    row.arrival_us = r->ts;
    row.partition = r->part;
    row.partition_len = strlen(r->part);
    row.stream = r->stream;
    row.stream_len = strlen(r->stream);
    row.data = data;
    row.data_len = data_len;
    return row;
}

static void init_seqs(void)
{
    seq129[0] = '9';
    for (int i = 1; i < 129; i++)
        seq129[i] = (char)('0' + (i * 7) % 10);
    seq129[129] = '\0';
    seq129b[0] = '1';
    memset(seq129b + 1, '0', 128);
    seq129b[129] = '\0';
}

static int64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return (int64_t)v;
}

/* Reads back the row with this msg id and checks every column. */
static void check_row(const char *table, const k2p_copy_row *row, int data_type)
{
    char id[K2P_MSG_ID_LEN + 1], sql[512];
    unsigned char num[K2P_NUMERIC_MAX_BYTES];
    size_t numlen = k2p_copy_numeric(row->seq_no, row->seq_no_len, num);
    const char *params[2];
    int lens[2], fmts[2] = {0, 1};
    Oid types[2] = {TEXTOID, 0};
    int64_t pg_ts = 0;
    k2p_buf qt;
    PGresult *r;

    if (row->has_sub_seq)
        k2p_copy_msg_id_sub(row->shard_id, row->shard_id_len, row->seq_no, row->seq_no_len,
                            row->sub_seq, id);
    else
        k2p_copy_msg_id(row->shard_id, row->shard_id_len, row->seq_no, row->seq_no_len, id);
    k2p_buf_init(&qt, 0);
    assert_int_equal(k2p_pg_quote_ident(&qt, SCHEMA, strlen(SCHEMA)), 0);
    assert_int_equal(k2p_buf_putc(&qt, '.'), 0);
    assert_int_equal(k2p_pg_quote_ident(&qt, table, strlen(table)), 0);
    snprintf(sql, sizeof sql,
             "SELECT _kinesis_msg_id, _kinesis__shard_id, _kinesis__seq_no, _kinesis__ts, "
             "_kinesis__partition, _kinesis__stream_name, data, _kinesis__seq_no::text, "
             "%s, _kinesis__sub_seq FROM %s WHERE _kinesis_msg_id = $1",
             data_type == K2P_COPY_JSONB ? "data = $2::text::jsonb" : "true", qt.data);
    k2p_buf_deinit(&qt);
    params[0] = id;
    lens[0] = K2P_MSG_ID_LEN;
    params[1] = row->data;
    lens[1] = (int)row->data_len;
    types[1] = TEXTOID;
    fmts[1] = 1;
    r = PQexecParams(g_conn, sql, data_type == K2P_COPY_JSONB ? 2 : 1, types, params, lens, fmts,
                     1 /* binary results */);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s", PQerrorMessage(g_conn));
    assert_int_equal(PQntuples(r), 1);

    assert_int_equal(PQgetlength(r, 0, 0), K2P_MSG_ID_LEN);
    assert_memory_equal(PQgetvalue(r, 0, 0), id, K2P_MSG_ID_LEN);
    assert_int_equal(PQgetlength(r, 0, 1), row->shard_id_len);
    assert_memory_equal(PQgetvalue(r, 0, 1), row->shard_id, row->shard_id_len);
    /* numeric: numeric_send() of what was stored equals what we sent */
    assert_int_equal(PQgetlength(r, 0, 2), numlen);
    assert_memory_equal(PQgetvalue(r, 0, 2), num, numlen);
    assert_int_equal(PQgetlength(r, 0, 3), 8);
    assert_int_equal(k2p_copy_timestamptz(row->arrival_us, &pg_ts), 0);
    assert_int_equal(be64(PQgetvalue(r, 0, 3)), pg_ts);
    assert_int_equal(PQgetlength(r, 0, 4), row->partition_len);
    assert_memory_equal(PQgetvalue(r, 0, 4), row->partition, row->partition_len);
    assert_int_equal(PQgetlength(r, 0, 5), row->stream_len);
    assert_memory_equal(PQgetvalue(r, 0, 5), row->stream, row->stream_len);
    if (data_type == K2P_COPY_BYTEA) {
        assert_int_equal(PQgetlength(r, 0, 6), row->data_len);
        if (row->data_len)
            assert_memory_equal(PQgetvalue(r, 0, 6), row->data, row->data_len);
    } else {
        assert_int_equal((unsigned char)PQgetvalue(r, 0, 6)[0], 1); /* jsonb version */
        assert_int_equal((unsigned char)PQgetvalue(r, 0, 8)[0], 1); /* data = original */
    }
    /* numeric as text: the digits we were given, unchanged */
    assert_int_equal(PQgetlength(r, 0, 7), row->seq_no_len);
    assert_memory_equal(PQgetvalue(r, 0, 7), row->seq_no, row->seq_no_len);
    if (row->has_sub_seq) {
        assert_int_equal(PQgetlength(r, 0, 9), 8);
        assert_int_equal(be64(PQgetvalue(r, 0, 9)), row->sub_seq);
    } else {
        assert_true(PQgetisnull(r, 0, 9));
    }
    PQclear(r);
}

static void test_jsonb_roundtrip(void **state)
{
    k2p_buf b;
    char why[512];
    int64_t n = 0;
    (void)state;
    if (g_skip)
        skip();
    init_seqs();
    create_table(TABLE_JSON, K2P_COPY_JSONB);
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_begin(&b), 0);
    for (size_t i = 0; i < NRECS; i++) {
        k2p_copy_row row = row_of(&recs[i], recs[i].json, strlen(recs[i].json));
        row.has_sub_seq = i % 3 == 1; /* some as user records of KPL aggregates */
        row.sub_seq = i % 2 ? UINT32_MAX : (uint32_t)i;
        assert_int_equal(k2p_copy_put_row(&b, &row, K2P_COPY_JSONB), 0);
    }
    assert_int_equal(k2p_copy_end(&b), 0);
    /* Odd-sized chunks: COPY data is a byte stream, rows may straddle messages. */
    if (copy_in(TABLE_JSON, b.data, b.len, 7, why, sizeof why) != 0)
        fail_msg("COPY failed: %s", why);

    assert_int_equal(k2p_test_pg_query_i64(&g_pg,
                                           "SELECT count(*) FROM \"k2p \"\"test\"\"\"."
                                           "\"Stream.With\"\"Quotes\"",
                                           &n),
                     0);
    assert_int_equal(n, NRECS);
    for (size_t i = 0; i < NRECS; i++) {
        k2p_copy_row row = row_of(&recs[i], recs[i].json, strlen(recs[i].json));
        row.has_sub_seq = i % 3 == 1;
        row.sub_seq = i % 2 ? UINT32_MAX : (uint32_t)i;
        check_row(TABLE_JSON, &row, K2P_COPY_JSONB);
    }

    /* Human-readable spot checks of the conversions. */
    {
        char *s = k2p_test_pg_query_str(
            &g_pg, "SELECT string_agg(to_char(_kinesis__ts AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD HH24:MI:SS.US'), ',' ORDER BY _kinesis__ts) "
                   "FROM \"k2p \"\"test\"\"\".\"Stream.With\"\"Quotes\"");
        assert_non_null(s);
        assert_string_equal(s, "0001-01-01 00:00:00.000000,1969-12-31 23:59:59.999999,"
                               "1970-01-01 00:00:00.000000,2000-01-01 00:00:01.000000,"
                               "2023-11-14 22:13:20.123456,3000-01-01 00:00:00.000000,"
                               "9999-12-31 23:59:59.999999");
        free(s);
        s = k2p_test_pg_query_str(&g_pg, "SELECT data->>'name' FROM \"k2p \"\"test\"\"\"."
                                         "\"Stream.With\"\"Quotes\" WHERE data ? 'name'");
        assert_non_null(s);
        assert_string_equal(s, "caf\xc3\xa9 \xf0\x9f\x98\x80");
        free(s);
    }

    /* Replaying the same rows: the primary key refuses the whole COPY. */
    assert_int_equal(copy_in(TABLE_JSON, b.data, b.len, b.len, why, sizeof why), -1);
    assert_non_null(strstr(why, "duplicate key"));
    assert_int_equal(k2p_test_pg_query_i64(&g_pg,
                                           "SELECT count(*) FROM \"k2p \"\"test\"\"\"."
                                           "\"Stream.With\"\"Quotes\"",
                                           &n),
                     0);
    assert_int_equal(n, NRECS);
    k2p_buf_deinit(&b);
}

static void test_bytea_every_byte(void **state)
{
    static const unsigned char tricky[] = {'\\', 'x',  '0',  '0',  '\\', '\\', '\t',
                                           '\n', '\r', 0x00, 0xff, '\\', '.'};
    unsigned char all[256 * 3];
    k2p_buf b;
    char why[512];
    static const struct rec r[] = {
        {"shardId-000000000009", "1", 1, "p", "s", NULL},
        {"shardId-000000000009", "2", 2, "p", "s", NULL},
        {"shardId-000000000009", "3", 3, "p", "s", NULL},
    };
    k2p_copy_row rows[3];
    (void)state;
    if (g_skip)
        skip();
    for (int i = 0; i < 256 * 3; i++)
        all[i] = (unsigned char)(i * 7 + i / 256); /* every byte value, three orders */
    create_table(TABLE_RAW, K2P_COPY_BYTEA);
    rows[0] = row_of(&r[0], all, sizeof all);
    rows[1] = row_of(&r[1], "", 0);                 /* empty payload */
    rows[2] = row_of(&r[2], tricky, sizeof tricky); /* COPY/bytea escape look-alikes */
    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_copy_begin(&b), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(k2p_copy_put_row(&b, &rows[i], K2P_COPY_BYTEA), 0);
    assert_int_equal(k2p_copy_end(&b), 0);
    if (copy_in(TABLE_RAW, b.data, b.len, 65536, why, sizeof why) != 0)
        fail_msg("COPY failed: %s", why);
    for (int i = 0; i < 3; i++)
        check_row(TABLE_RAW, &rows[i], K2P_COPY_BYTEA);
    k2p_buf_deinit(&b);
}

/* Batches encoded separately (as readers do) streamed as one COPY: the header once, each batch's
 * rows, the trailer once. */
static void test_batches_in_one_copy(void **state)
{
    k2p_buf batch[3], sql;
    char why[512], seq[32];
    int64_t n = 0;
    PGresult *r;
    (void)state;
    if (g_skip)
        skip();
    create_table("batched", K2P_COPY_JSONB);
    for (int k = 0; k < 3; k++) {
        k2p_buf_init(&batch[k], 0);
        for (int i = 0; i < 1000; i++) {
            struct rec rc = {"shardId-000000000002",
                             seq,
                             INT64_C(1700000000000000) + i,
                             "pk",
                             "stream",
                             "{\"n\": 1}"};
            k2p_copy_row row;
            snprintf(seq, sizeof seq, "%d", 1000000 + k * 1000 + i);
            row = row_of(&rc, rc.json, strlen(rc.json));
            assert_int_equal(k2p_copy_put_row(&batch[k], &row, K2P_COPY_JSONB), 0);
        }
    }
    k2p_buf_init(&sql, 0);
    assert_int_equal(k2p_copy_sql_copy(&sql, SCHEMA, "batched"), 0);
    r = PQexec(g_conn, sql.data);
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    {
        k2p_buf hdr, trl;
        k2p_buf_init(&hdr, 0);
        k2p_buf_init(&trl, 0);
        assert_int_equal(k2p_copy_begin(&hdr), 0);
        assert_int_equal(k2p_copy_end(&trl), 0);
        assert_int_equal(PQputCopyData(g_conn, hdr.data, (int)hdr.len), 1);
        for (int k = 0; k < 3; k++)
            assert_int_equal(PQputCopyData(g_conn, batch[k].data, (int)batch[k].len), 1);
        assert_int_equal(PQputCopyData(g_conn, trl.data, (int)trl.len), 1);
        k2p_buf_deinit(&hdr);
        k2p_buf_deinit(&trl);
    }
    assert_int_equal(PQputCopyEnd(g_conn, NULL), 1);
    why[0] = '\0';
    while ((r = PQgetResult(g_conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            snprintf(why, sizeof why, "%s", PQresultErrorMessage(r));
        PQclear(r);
    }
    assert_string_equal(why, "");
    assert_int_equal(k2p_test_pg_query_i64(&g_pg,
                                           "SELECT count(DISTINCT _kinesis__seq_no) FROM "
                                           "\"k2p \"\"test\"\"\".\"batched\"",
                                           &n),
                     0);
    assert_int_equal(n, 3000);
    for (int k = 0; k < 3; k++)
        k2p_buf_deinit(&batch[k]);
    k2p_buf_deinit(&sql);
}

static void test_table_shape(void **state)
{
    char *s;
    (void)state;
    if (g_skip)
        skip();
    create_table(TABLE_JSON, K2P_COPY_JSONB);
    s = k2p_test_pg_query_str(
        &g_pg, "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || "
               "CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) "
               "FROM pg_attribute WHERE attrelid = '\"k2p \"\"test\"\"\".\"Stream.With\"\"Quotes\"'"
               "::regclass AND attnum > 0");
    assert_non_null(s);
    assert_string_equal(s, "_kinesis_msg_id text not null, _kinesis__shard_id text not null, "
                           "_kinesis__seq_no numeric not null, _kinesis__sub_seq bigint, "
                           "_kinesis__ts timestamp with time "
                           "zone not null, _kinesis__partition text not null, "
                           "_kinesis__stream_name text not null, data jsonb");
    free(s);
    s = k2p_test_pg_query_str(
        &g_pg, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
               "'\"k2p \"\"test\"\"\".\"Stream.With\"\"Quotes\"'::regclass AND contype = 'p'");
    assert_non_null(s);
    assert_string_equal(s, "PRIMARY KEY (_kinesis_msg_id)");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonb_roundtrip),
        cmocka_unit_test(test_bytea_every_byte),
        cmocka_unit_test(test_batches_in_one_copy),
        cmocka_unit_test(test_table_shape),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

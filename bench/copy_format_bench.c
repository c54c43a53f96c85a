/* copy_format_bench.c - TEXT vs BINARY COPY for the target table, against a throw-away
 * PostgreSQL started by the test harness (initdb on a free loopback port, fsync off unless
 * --fsync).
 *
 * For each format: encodes N rows of the table (message id, shard, 56-digit sequence number,
 * timestamp, partition key, stream, ~400-byte JSON payload or --raw bytes) the way readers do,
 * and loads them in one transaction with COPY ... FROM STDIN, batches of 50,000 rows, streamed
 * in 1 MiB PQputCopyData chunks, into a table with its primary key, as the writer does. Runs
 * alternate between formats (after one warm-up each) and the best run of each is reported, with
 * the ratios measured in the same process. Encoder CPU is the thread CPU time spent encoding.
 *
 * Usage: copy_format_bench [--rows N] [--runs K] [--raw] [--fsync]
 *
 * Results (2 vCPU AMD EPYC container shared with other jobs, PostgreSQL 15.20, gcc 12 -O2
 * RelWithDebInfo, fsync off, table with its primary key; `copy_format_bench` and
 * `copy_format_bench --raw --runs 2`):
 *
 *   jsonb, 500,000 rows, 482-byte JSON    rows/s   wire MB   encoder ns/row
 *     binary                              104,302    309.6        558
 *     text                                 76,927    320.6       1086
 *   bytea (--raw), 500,000 rows
 *     binary                              173,259    309.1        873
 *     text                                 87,596    560.8       1313
 *
 *   binary/text over several runs: 1.24-1.53x rows/s for jsonb, 1.98x for bytea; 0.5-0.74x
 *   encoder CPU. Text COPY must escape every payload byte and print timestamps (bytea as \x
 *   hex, doubling it), and the server must unescape and parse numeric/timestamptz from text.
 *   Most of the binary encoder's time is the SHAKE128 message id (~0.55 us/row), the same for
 *   both formats. kinesis2pg therefore uses FORMAT binary (copy_encode.c).
 *
 * Threading: single-threaded.
 */
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/copy_encode.h"
#include "pg_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_ROWS 50000
#define CHUNK (1u << 20)

enum { FMT_BINARY = 0, FMT_TEXT = 1 };
static const char *const fmt_name[] = {"binary", "text"};

struct input {
    size_t n;
    char (*shard)[24];
    char (*seq)[64];
    char (*part)[24];
    int64_t *ts;
    char **data;
    size_t *data_len;
    size_t payload_bytes;
};

struct result {
    double load_s;       /* wall: BEGIN .. COMMIT */
    double encode_cpu_s; /* thread CPU spent encoding */
    size_t wire_bytes;
};

static double now_s(void)
{
    return (double)k2p_now_ns() / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- input -------------------------------------------------------------------------------- */

static void make_input(struct input *in, size_t n, int raw)
{
    static const char *const types[] = {"page_view", "click", "add_to_cart", "purchase"};
    in->n = n;
    in->shard = calloc(n, sizeof *in->shard);
    in->seq = calloc(n, sizeof *in->seq);
    in->part = calloc(n, sizeof *in->part);
    in->ts = calloc(n, sizeof *in->ts);
    in->data = calloc(n, sizeof *in->data);
    in->data_len = calloc(n, sizeof *in->data_len);
    in->payload_bytes = 0;
    if (!in->shard || !in->seq || !in->part || !in->ts || !in->data || !in->data_len) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        char buf[1024];
        int len;
        snprintf(in->shard[i], sizeof in->shard[i], "shardId-%012zu", i % 4);
        snprintf(in->seq[i], sizeof in->seq[i], "4959033827149025660855969253836157109592157%013zu",
                 1000000000000 + i);
        snprintf(in->part[i], sizeof in->part[i], "user-%zu", (i * 7919) % 100000);
        in->ts[i] = INT64_C(1714566896000000) + (int64_t)i * 1000;
        len = snprintf(buf, sizeof buf,
                       "{\"event_id\":\"evt-%09zu\",\"user_id\":%zu,\"session\":"
                       "\"5f2b9c1e-8d3a-4e6b-9a7c-%012zu\",\"type\":\"%s\",\"url\":"
                       "\"https://example.com/products/%zu?ref=newsletter&utm_source=mail\","
                       "\"referrer\":\"https://www.google.com/search?q=running+shoes\",\"ua\":"
                       "\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\","
                       "\"ts\":\"2024-05-01T12:34:56.%03zuZ\",\"props\":{\"price\":%zu.99,"
                       "\"qty\":%zu,\"tags\":[\"new\",\"sale\"],\"note\":\"line1\\nline2 "
                       "\\\"quoted\\\" C:\\\\tmp\"},\"geo\":{\"lat\":52.52,\"lon\":13.405}}",
                       i, (i * 31) % 1000000, i, types[i % 4], i % 5000, i % 1000, i % 200,
                       1 + i % 5);
        if (raw) { /* arbitrary bytes: the JSON with a few binary bytes mixed in */
            buf[5] = (char)(i & 0xff);
            buf[50] = '\0';
            buf[90] = '\\';
        }
        in->data[i] = k2p_strndup(buf, (size_t)len);
        in->data_len[i] = (size_t)len;
        in->payload_bytes += (size_t)len;
    }
}

static void free_input(struct input *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->data[i]);
    free(in->shard);
    free(in->seq);
    free(in->part);
    free(in->ts);
    free(in->data);
    free(in->data_len);
}

/* ---- text COPY encoder (for comparison only) ---------------------------------------------- */

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    yoe = z - era * 146097;
    yoe = (yoe - yoe / 1460 + yoe / 36524 - yoe / 146096) / 365;
    doy = (z - era * 146097) - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* "YYYY-MM-DD HH:MM:SS.ffffff+00" (29 bytes) for years 1000..9999. */
static char *put_ts_text(char *p, int64_t unix_us)
{
    int64_t secs = unix_us >= 0 ? unix_us / 1000000 : -((-unix_us + 999999) / 1000000);
    int64_t us = unix_us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    p = put_digits(p, (uint64_t)y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = ' ';
    p = put_digits(p, (uint64_t)(sod / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (uint64_t)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (uint64_t)(sod % 60), 2);
    *p++ = '.';
    p = put_digits(p, (uint64_t)us, 6);
    memcpy(p, "+00", 3);
    return p + 3;
}

/* COPY text escaping of a value: backslash, newline, carriage return, tab. */
static char *put_escaped(char *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        case '\r':
            *p++ = '\\';
            *p++ = 'r';
            break;
        case '\t':
            *p++ = '\\';
            *p++ = 't';
            break;
        default:
            *p++ = c;
        }
    }
    return p;
}

static int text_put_row(k2p_buf *out, const k2p_copy_row *r, int raw)
{
    static const char hex[] = "0123456789abcdef";
    char id[K2P_MSG_ID_LEN + 1];
    size_t need = K2P_MSG_ID_LEN + 2 * (r->shard_id_len + r->partition_len + r->stream_len) +
                  r->seq_no_len + 29 + 8 + 3 + (raw ? 3 + 2 * r->data_len : 2 * r->data_len);
    char *p;
    if (k2p_buf_reserve(out, need))
        return K2P_ENOMEM;
    k2p_copy_msg_id(r->shard_id, r->shard_id_len, r->seq_no, r->seq_no_len, id);
    p = out->data + out->len;
    memcpy(p, id, K2P_MSG_ID_LEN); /* base64: nothing to escape */
    p += K2P_MSG_ID_LEN;
    *p++ = '\t';
    p = put_escaped(p, r->shard_id, r->shard_id_len);
    *p++ = '\t';
    memcpy(p, r->seq_no, r->seq_no_len);
    p += r->seq_no_len;
    memcpy(p, "\t\\N", 3); /* _kinesis__sub_seq: NULL */
    p += 3;
    *p++ = '\t';
    p = put_ts_text(p, r->arrival_us);
    *p++ = '\t';
    p = put_escaped(p, r->partition, r->partition_len);
    *p++ = '\t';
    p = put_escaped(p, r->stream, r->stream_len);
    *p++ = '\t';
    if (raw) { /* bytea hex format, its backslash escaped for COPY: \\x0a1b... */
        const unsigned char *d = r->data;
        *p++ = '\\';
        *p++ = '\\';
        *p++ = 'x';
        for (size_t i = 0; i < r->data_len; i++) {
            *p++ = hex[d[i] >> 4];
            *p++ = hex[d[i] & 15];
        }
    } else {
        p = put_escaped(p, r->data, r->data_len);
    }
    *p++ = '\n';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- load --------------------------------------------------------------------------------- */

static k2p_copy_row row_at(const struct input *in, size_t i)
{
    k2p_copy_row r = {0};
    r.shard_id = in->shard[i];
    r.shard_id_len = strlen(in->shard[i]);
    r.seq_no = in->seq[i];
    r.seq_no_len = strlen(in->seq[i]);
    r.arrival_us = in->ts[i];
    r.partition = in->part[i];
    r.partition_len = strlen(in->part[i]);
    r.stream = "bench-stream";
    r.stream_len = 12;
    r.data = in->data[i];
    r.data_len = in->data_len[i];
    return r;
}

static void encode_batch(k2p_buf *b, const struct input *in, size_t from, size_t to, int fmt,
                         int raw)
{
    for (size_t i = from; i < to; i++) {
        k2p_copy_row r = row_at(in, i);
        int rc = fmt == FMT_BINARY ? k2p_copy_put_row(b, &r, raw ? K2P_COPY_BYTEA : K2P_COPY_JSONB)
                                   : text_put_row(b, &r, raw);
        if (rc) {
            fprintf(stderr, "encode failed: %s\n", k2p_strerror(rc));
            exit(1);
        }
    }
}

static void must(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (PQresultStatus(r) != want) {
        fprintf(stderr, "%s: %s", what, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

static void send_all(PGconn *c, const char *p, size_t n)
{
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t len = K2P_MIN((size_t)CHUNK, n - off);
        if (PQputCopyData(c, p + off, (int)len) != 1) {
            fprintf(stderr, "PQputCopyData: %s", PQerrorMessage(c));
            exit(1);
        }
    }
}

static struct result load(PGconn *c, const struct input *in, int fmt, int raw)
{
    struct result res = {0, 0, 0};
    k2p_buf b, sql;
    double t0, c0;
    PGresult *r;

    must(c, PQexec(c, "TRUNCATE bench.t"), PGRES_COMMAND_OK, "TRUNCATE");
    must(c, PQexec(c, "CHECKPOINT"), PGRES_COMMAND_OK, "CHECKPOINT");
    k2p_buf_init(&b, 0);
    k2p_buf_init(&sql, 0);
    if (fmt == FMT_BINARY) {
        if (k2p_copy_sql_copy(&sql, "bench", "t"))
            exit(1);
    } else {
        /* Same statement with the text format. */
        if (k2p_copy_sql_copy(&sql, "bench", "t"))
            exit(1);
        sql.len -= strlen("(FORMAT binary)");
        k2p_buf_puts(&sql, "(FORMAT text)");
    }

    t0 = now_s();
    must(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, "BEGIN");
    must(c, PQexec(c, sql.data), PGRES_COPY_IN, "COPY");
    if (fmt == FMT_BINARY) {
        k2p_copy_begin(&b);
        send_all(c, b.data, b.len);
        res.wire_bytes += b.len;
    }
    for (size_t from = 0; from < in->n; from += BATCH_ROWS) {
        size_t to = K2P_MIN(in->n, from + BATCH_ROWS);
        k2p_buf_reset(&b);
        c0 = cpu_s();
        encode_batch(&b, in, from, to, fmt, raw);
        res.encode_cpu_s += cpu_s() - c0;
        send_all(c, b.data, b.len);
        res.wire_bytes += b.len;
    }
    if (fmt == FMT_BINARY) {
        k2p_buf_reset(&b);
        k2p_copy_end(&b);
        send_all(c, b.data, b.len);
        res.wire_bytes += b.len;
    }
    if (PQputCopyEnd(c, NULL) != 1) {
        fprintf(stderr, "PQputCopyEnd: %s", PQerrorMessage(c));
        exit(1);
    }
    while ((r = PQgetResult(c)) != NULL)
        must(c, r, PGRES_COMMAND_OK, "COPY result");
    must(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
    res.load_s = now_s() - t0;

    {
        PGresult *cnt = PQexec(c, "SELECT count(*) FROM bench.t");
        if (PQresultStatus(cnt) != PGRES_TUPLES_OK ||
            strtoull(PQgetvalue(cnt, 0, 0), NULL, 10) != (unsigned long long)in->n) {
            fprintf(stderr, "row count mismatch after %s load\n", fmt_name[fmt]);
            exit(1);
        }
        PQclear(cnt);
    }
    k2p_buf_deinit(&b);
    k2p_buf_deinit(&sql);
    return res;
}

/* Encoder alone, no I/O: ns per row, best of 3. */
static double encode_only_ns(const struct input *in, int fmt, int raw)
{
    double best = 1e30;
    k2p_buf b;
    k2p_buf_init(&b, 0);
    for (int rep = 0; rep < 3; rep++) {
        double c0 = cpu_s(), t;
        for (size_t from = 0; from < in->n; from += BATCH_ROWS) {
            k2p_buf_reset(&b);
            encode_batch(&b, in, from, K2P_MIN(in->n, from + BATCH_ROWS), fmt, raw);
        }
        t = (cpu_s() - c0) * 1e9 / (double)in->n;
        if (t < best)
            best = t;
    }
    k2p_buf_deinit(&b);
    return best;
}

static int arg_i64(int argc, char **argv, int *i, int64_t *out)
{
    if (*i + 1 >= argc || k2p_parse_i64(argv[*i + 1], out) != 0 || *out <= 0) {
        fprintf(stderr, "%s needs a positive number\n", argv[*i]);
        return -1;
    }
    (*i)++;
    return 0;
}

int main(int argc, char **argv)
{
    int64_t rows = 500000, runs = 3;
    int raw = 0;
    k2p_test_pg pg = {0};
    struct input in;
    struct result best[2];
    double enc_ns[2];
    PGconn *c;
    k2p_buf sql;
    char *ver;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rows") == 0) {
            if (arg_i64(argc, argv, &i, &rows))
                return 2;
        } else if (strcmp(argv[i], "--runs") == 0) {
            if (arg_i64(argc, argv, &i, &runs))
                return 2;
        } else if (strcmp(argv[i], "--raw") == 0) {
            raw = 1;
        } else if (strcmp(argv[i], "--fsync") == 0) {
            pg.fsync = 1;
        } else {
            fprintf(stderr, "usage: %s [--rows N] [--runs K] [--raw] [--fsync]\n", argv[0]);
            return 2;
        }
    }

    pg.extra_conf =
        "shared_buffers = '256MB'\nmax_wal_size = '8GB'\ncheckpoint_timeout = '30min'\n";
    if (k2p_test_pg_start(&pg) != 0) {
        fprintf(stderr, "cannot start PostgreSQL\n");
        return 1;
    }
    c = k2p_test_pg_connect(&pg);
    if (!c) {
        k2p_test_pg_stop(&pg);
        return 1;
    }
    k2p_buf_init(&sql, 0);
    k2p_copy_sql_create_schema(&sql, "bench");
    must(c, PQexec(c, sql.data), PGRES_COMMAND_OK, "CREATE SCHEMA");
    k2p_buf_reset(&sql);
    k2p_copy_sql_create_table(&sql, "bench", "t", raw ? K2P_COPY_BYTEA : K2P_COPY_JSONB, 1);
    must(c, PQexec(c, sql.data), PGRES_COMMAND_OK, "CREATE TABLE");
    k2p_buf_deinit(&sql);
    ver = k2p_test_pg_query_str(&pg, "SHOW server_version");

    make_input(&in, (size_t)rows, raw);
    printf("copy_format_bench: %zu rows, %.0f-byte %s payload (avg), primary key, fsync %s, "
           "PostgreSQL %s, batches of %d rows\n",
           in.n, (double)in.payload_bytes / (double)in.n, raw ? "bytea" : "JSON",
           pg.fsync ? "on" : "off", ver ? ver : "?", BATCH_ROWS);
    free(ver);

    for (int f = 0; f < 2; f++)
        enc_ns[f] = encode_only_ns(&in, f, raw);
    load(c, &in, FMT_BINARY, raw); /* warm-up: table, WAL and caches */
    load(c, &in, FMT_TEXT, raw);
    for (int f = 0; f < 2; f++)
        best[f].load_s = 1e30;
    for (int run = 0; run < runs; run++) {
        for (int f = 0; f < 2; f++) {
            int fmt = (run % 2) ? 1 - f : f; /* alternate the order */
            struct result r = load(c, &in, fmt, raw);
            printf("  run %d %-6s load %.3f s  %.0f rows/s  encode CPU %.3f s\n", run + 1,
                   fmt_name[fmt], r.load_s, (double)in.n / r.load_s, r.encode_cpu_s);
            if (r.load_s < best[fmt].load_s)
                best[fmt] = r;
        }
    }
    printf("\n%-7s %10s %12s %14s %12s %10s\n", "format", "wire MB", "rows/s", "load MB/s",
           "encode ns/row", "encode s");
    for (int f = 0; f < 2; f++) {
        printf("%-7s %10.1f %12.0f %14.1f %12.0f %10.3f\n", fmt_name[f],
               (double)best[f].wire_bytes / 1e6, (double)in.n / best[f].load_s,
               (double)best[f].wire_bytes / 1e6 / best[f].load_s, enc_ns[f], best[f].encode_cpu_s);
    }
    printf("\nbinary vs text: %.2fx rows/s, %.2fx encoder CPU, %.2fx bytes on the wire\n",
           best[FMT_TEXT].load_s / best[FMT_BINARY].load_s, enc_ns[FMT_BINARY] / enc_ns[FMT_TEXT],
           (double)best[FMT_BINARY].wire_bytes / (double)best[FMT_TEXT].wire_bytes);

    free_input(&in);
    PQfinish(c);
    k2p_test_pg_stop(&pg);
    return 0;
}

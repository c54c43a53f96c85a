/* mock_bench.c - mock_kinesis_bench: how fast one GetRecords loop can pull a stream.
 *
 * Reads every shard of --stream from TRIM_HORIZON to its tip, one shard after the other, on
 * one connection and one thread, and prints records/s and MB/s of record data:
 *   - default: through k2p_kinesis_get_records (libcurl + JSON parse + base64 decode), i.e.
 *     what one kinesis2pg shard reader can do;
 *   - --raw: plain libcurl, the answer only scanned for its NextShardIterator and counted,
 *     i.e. what the server and the loopback transport can do.
 *
 * Usage: mock_kinesis_bench --endpoint http://127.0.0.1:PORT --stream NAME [--limit 10000]
 *                           [--raw]
 * Threading: single-threaded.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/kinesis_client.h"

typedef struct bench {
    const char *endpoint, *stream;
    int limit;
    int raw;
    uint64_t records, bytes, calls;
} bench;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    k2p_buf *b = ud;
    return k2p_buf_append(b, p, size * nmemb) ? 0 : size * nmemb;
}

/* One raw JSON 1.1 call; the answer body in *out. 0 or -1. */
static int raw_call(CURL *c, const char *endpoint, const char *op, const char *body, k2p_buf *out)
{
    char target[96];
    struct curl_slist *h = NULL;
    long status = 0;
    CURLcode cc;

    snprintf(target, sizeof target, "X-Amz-Target: Kinesis_20131202.%s", op);
    h = curl_slist_append(h, target);
    h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.1");
    h = curl_slist_append(h, "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/"
                             "us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0");
    h = curl_slist_append(h, "X-Amz-Date: 20240101T000000Z");
    h = curl_slist_append(h, "Expect:");
    k2p_buf_reset(out);
    curl_easy_setopt(c, CURLOPT_URL, endpoint);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status != 200) {
        fprintf(stderr, "mock_kinesis_bench: %s: curl %d HTTP %ld: %.300s\n", op, (int)cc, status,
                out->data ? out->data : "");
        return -1;
    }
    return 0;
}

/* Copies the string value of "key":"..." found after `from` into out; NULL when absent. */
static char *find_str(const char *from, size_t n, const char *key, char *out, size_t cap)
{
    const char *p = memmem(from, n, key, strlen(key)), *e;
    if (!p)
        return NULL;
    p += strlen(key);
    e = memchr(p, '"', n - (size_t)(p - from));
    if (!e || (size_t)(e - p) >= cap)
        return NULL;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return out;
}

static int run_raw(bench *b, const k2p_shard_list *shards)
{
    CURL *c = curl_easy_init();
    k2p_buf resp, req;
    int rc = 0;

    k2p_buf_init(&resp, 64u << 20);
    k2p_buf_init(&req, 0);
    for (size_t s = 0; s < shards->n && !rc; s++) {
        char it[1024];
        k2p_buf_reset(&req);
        k2p_buf_printf(&req,
                       "{\"StreamName\":\"%s\",\"ShardId\":\"%s\","
                       "\"ShardIteratorType\":\"TRIM_HORIZON\"}",
                       b->stream, shards->shards[s].shard_id);
        if (raw_call(c, b->endpoint, "GetShardIterator", req.data, &resp) ||
            !find_str(resp.data, resp.len, "\"ShardIterator\":\"", it, sizeof it)) {
            rc = -1;
            break;
        }
        for (;;) {
            uint64_t n = 0;
            const char *p = resp.data;
            size_t tail;
            k2p_buf_reset(&req);
            k2p_buf_printf(&req, "{\"ShardIterator\":\"%s\",\"Limit\":%d}", it, b->limit);
            if (raw_call(c, b->endpoint, "GetRecords", req.data, &resp)) {
                rc = -1;
                break;
            }
            b->calls++;
            b->bytes += resp.len;
            p = resp.data;
            while ((p = memmem(p, resp.len - (size_t)(p - resp.data), "\"SequenceNumber\"", 16))) {
                n++;
                p += 16;
            }
            b->records += n;
            /* NextShardIterator and MillisBehindLatest follow the records. */
            tail = resp.len > 4096 ? resp.len - 4096 : 0;
            if (!find_str(resp.data + tail, resp.len - tail, "\"NextShardIterator\":\"", it,
                          sizeof it))
                break; /* closed shard, read to its end */
            if (n < (uint64_t)b->limit)
                break; /* caught up */
        }
    }
    k2p_buf_deinit(&resp);
    k2p_buf_deinit(&req);
    curl_easy_cleanup(c);
    return rc;
}

static int run_client(bench *b, k2p_kinesis *k, const k2p_shard_list *shards)
{
    k2p_records recs;
    k2p_err err = {0};
    int rc = 0;

    k2p_records_init(&recs);
    for (size_t s = 0; s < shards->n && !rc; s++) {
        k2p_iter_start st = {.type = K2P_ITER_TRIM_HORIZON};
        char *it = NULL;
        if (k2p_kinesis_get_shard_iterator(k, b->stream, shards->shards[s].shard_id, &st, &it,
                                           &err)) {
            fprintf(stderr, "mock_kinesis_bench: %s\n", err.msg);
            rc = -1;
            break;
        }
        while (it) {
            if (k2p_kinesis_get_records(k, it, b->limit, &recs, &err)) {
                fprintf(stderr, "mock_kinesis_bench: %s\n", err.msg);
                rc = -1;
                break;
            }
            b->calls++;
            b->records += recs.n;
            b->bytes += recs.data_bytes;
            free(it);
            it = recs.next_iterator ? k2p_strdup(recs.next_iterator) : NULL;
            if (recs.n < (size_t)b->limit && recs.millis_behind <= 0)
                break; /* caught up */
        }
        free(it);
    }
    k2p_records_deinit(&recs);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"stream", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'},    {"raw", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    bench b = {NULL, NULL, 10000, 0, 0, 0, 0};
    k2p_cred_provider *p;
    k2p_cred_chain *creds;
    k2p_kinesis_opts ko = {0};
    k2p_kinesis *k;
    k2p_shard_list shards = {0};
    k2p_err err = {0};
    int64_t t0, t1, v;
    int c, rc;

    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'e':
            b.endpoint = optarg;
            break;
        case 's':
            b.stream = optarg;
            break;
        case 'r':
            b.raw = 1;
            break;
        case 'l':
            if (k2p_parse_i64(optarg, &v) || v < 1 || v > 10000) {
                fprintf(stderr, "mock_kinesis_bench: --limit is 1..10000\n");
                return 2;
            }
            b.limit = (int)v;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: mock_kinesis_bench --endpoint URL --stream NAME [--limit N] "
                    "[--raw]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!b.endpoint || !b.stream) {
        fprintf(stderr, "mock_kinesis_bench: --endpoint and --stream are required\n");
        return 2;
    }
    p = k2p_cred_provider_static_new("AKIDBENCH", "not-a-secret", NULL);
    creds = p ? k2p_cred_chain_new(&p, 1) : NULL;
    ko.endpoint = b.endpoint;
    ko.region = "us-east-1";
    ko.creds = creds;
    k = creds ? k2p_kinesis_new(&ko, &err) : NULL;
    if (!k || k2p_kinesis_list_shards(k, b.stream, 0, &shards, &err)) {
        fprintf(stderr, "mock_kinesis_bench: %s\n", err.msg);
        return 1;
    }
    t0 = k2p_now_ns();
    rc = b.raw ? run_raw(&b, &shards) : run_client(&b, k, &shards);
    t1 = k2p_now_ns();
    if (!rc) {
        double s = (double)(t1 - t0) / 1e9;
        printf("mode=%s shards=%zu records=%llu calls=%llu seconds=%.3f records_per_s=%.0f "
               "MB_per_s=%.1f (%s)\n",
               b.raw ? "raw-http" : "k2p-client", shards.n, (unsigned long long)b.records,
               (unsigned long long)b.calls, s, (double)b.records / s, (double)b.bytes / s / 1e6,
               b.raw ? "response bytes" : "record data bytes");
    }
    k2p_shard_list_deinit(&shards);
    k2p_kinesis_free(k);
    k2p_cred_chain_free(creds);
    return rc ? 1 : 0;
}

/* produce_main.c - kinesis2pg-produce: puts records into a Kinesis stream with PutRecords.
 *
 * For tests, the demo and benchmarks: JSON events of a chosen size, text, raw binary (every
 * byte value), or lines from a file; random or fixed partition keys; optionally rate-limited;
 * optionally a share of bad payloads (invalid JSON, \u0000, invalid UTF-8) to exercise dead
 * letters; optionally zstd- or gzip-compressed (--compress) and packed into KPL aggregates
 * (--aggregate N). Prints a summary, and with --print one line per Kinesis record put:
 *   shard_id <TAB> sequence_number <TAB> partition_key <TAB> base64(data)
 *
 * Threading: single-threaded.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/base64.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/env.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/kpl.h"

typedef enum { KIND_JSON, KIND_TEXT, KIND_BINARY, KIND_LINES, KIND_MIXED } kind_t;

typedef struct produce_opts {
    const char *stream, *endpoint, *region, *file, *fixed_key;
    int64_t count;
    int64_t size;
    int64_t keys;
    int64_t rate;
    int64_t invalid;
    int64_t create_shards;
    int64_t batch;
    int64_t aggregate; /* user records per KPL aggregate (0: none) */
    uint64_t seed;
    kind_t kind;
    int compress; /* 0 none, 1 zstd, 2 gzip */
    int print;
} produce_opts;

static void usage(FILE *f)
{
    fputs("Usage: kinesis2pg-produce --stream NAME [options]\n"
          "Puts records into a Kinesis stream with PutRecords.\n\n"
          "  --stream NAME          stream to write to (required)\n"
          "  --endpoint URL         Kinesis endpoint (else AWS_ENDPOINT_URL_KINESIS,\n"
          "                         AWS_ENDPOINT_URL, else https://kinesis.REGION.amazonaws.com)\n"
          "  --region REGION        (else AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1)\n"
          "  --count N              records to put (default 1000)\n"
          "  --kind K               json (default), text, binary, mixed (json+text+binary),\n"
          "                         or lines (one record per line of --file)\n"
          "  --size BYTES           approximate payload size (default 200)\n"
          "  --file PATH            input for --kind lines ('-' = stdin)\n"
          "  --partition-key KEY    use this key for every record\n"
          "  --keys N               pick keys among key-0..key-(N-1) (default: one per record)\n"
          "  --rate N               at most N records per second\n"
          "  --invalid N            make N of the records bad JSON payloads (invalid JSON,\n"
          "                         \\u0000, invalid UTF-8, in turn)\n"
          "  --create-stream N      create the stream with N shards first (if missing)\n"
          "  --batch N              records per PutRecords call (1..500, default 500)\n"
          "  --compress zstd|gzip   compress each payload (kinesis2pg load --decompress auto\n"
          "                         undoes it)\n"
          "  --aggregate N          pack N payloads into each Kinesis record as a KPL aggregate\n"
          "                         (1..1000; --count still counts payloads)\n"
          "  --seed N               random seed (default 1: runs are reproducible)\n"
          "  --print                print shard, sequence, key and base64 data of each record\n"
          "  --help\n",
          f);
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int parse_num(const char *flag, const char *v, int64_t min, int64_t *out)
{
    if (k2p_parse_i64(v, out) || *out < min) {
        fprintf(stderr, "kinesis2pg-produce: %s needs a whole number >= %lld, not '%s'\n", flag,
                (long long)min, v);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, produce_opts *o)
{
    enum { O_STREAM = 1, O_ENDPOINT, O_REGION, O_COUNT, O_KIND, O_SIZE, O_FILE, O_PKEY, O_KEYS,
           O_RATE, O_INVALID, O_CREATE, O_BATCH, O_SEED, O_PRINT, O_HELP, O_COMPRESS,
           O_AGGREGATE };
    static const struct option longopts[] = {
        {"stream", required_argument, 0, O_STREAM},
        {"endpoint", required_argument, 0, O_ENDPOINT},
        {"region", required_argument, 0, O_REGION},
        {"count", required_argument, 0, O_COUNT},
        {"kind", required_argument, 0, O_KIND},
        {"size", required_argument, 0, O_SIZE},
        {"file", required_argument, 0, O_FILE},
        {"partition-key", required_argument, 0, O_PKEY},
        {"keys", required_argument, 0, O_KEYS},
        {"rate", required_argument, 0, O_RATE},
        {"invalid", required_argument, 0, O_INVALID},
        {"create-stream", required_argument, 0, O_CREATE},
        {"batch", required_argument, 0, O_BATCH},
        {"seed", required_argument, 0, O_SEED},
        {"print", no_argument, 0, O_PRINT},
        {"compress", required_argument, 0, O_COMPRESS},
        {"aggregate", required_argument, 0, O_AGGREGATE},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int c;
    int64_t seed = 1;
    memset(o, 0, sizeof *o);
    o->count = 1000;
    o->size = 200;
    o->batch = 500;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_STREAM: o->stream = optarg; break;
        case O_ENDPOINT: o->endpoint = optarg; break;
        case O_REGION: o->region = optarg; break;
        case O_COUNT: if (parse_num("--count", optarg, 0, &o->count)) return 2; break;
        case O_SIZE: if (parse_num("--size", optarg, 1, &o->size)) return 2; break;
        case O_FILE: o->file = optarg; break;
        case O_PKEY: o->fixed_key = optarg; break;
        case O_KEYS: if (parse_num("--keys", optarg, 1, &o->keys)) return 2; break;
        case O_RATE: if (parse_num("--rate", optarg, 1, &o->rate)) return 2; break;
        case O_INVALID: if (parse_num("--invalid", optarg, 0, &o->invalid)) return 2; break;
        case O_CREATE: if (parse_num("--create-stream", optarg, 1, &o->create_shards)) return 2; break;
        case O_BATCH:
            if (parse_num("--batch", optarg, 1, &o->batch) || o->batch > 500)
                return 2;
            break;
        case O_SEED: if (parse_num("--seed", optarg, 0, &seed)) return 2; break;
        case O_PRINT: o->print = 1; break;
        case O_AGGREGATE:
            if (parse_num("--aggregate", optarg, 1, &o->aggregate))
                return 2;
            if (o->aggregate > 1000) {
                fprintf(stderr, "kinesis2pg-produce: --aggregate must be 1..1000\n");
                return 2;
            }
            break;
        case O_COMPRESS:
            if (!strcmp(optarg, "zstd")) o->compress = 1;
            else if (!strcmp(optarg, "gzip")) o->compress = 2;
            else if (!strcmp(optarg, "none")) o->compress = 0;
            else {
                fprintf(stderr, "kinesis2pg-produce: --compress must be zstd, gzip or none\n");
                return 2;
            }
            break;
        case O_HELP: usage(stdout); exit(0);
        case O_KIND:
            if (!strcmp(optarg, "json")) o->kind = KIND_JSON;
            else if (!strcmp(optarg, "text")) o->kind = KIND_TEXT;
            else if (!strcmp(optarg, "binary")) o->kind = KIND_BINARY;
            else if (!strcmp(optarg, "lines")) o->kind = KIND_LINES;
            else if (!strcmp(optarg, "mixed")) o->kind = KIND_MIXED;
            else {
                fprintf(stderr, "kinesis2pg-produce: unknown --kind '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            fprintf(stderr, "kinesis2pg-produce: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kinesis2pg-produce: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->stream) {
        fprintf(stderr, "kinesis2pg-produce: --stream is required\n");
        return 2;
    }
    if (o->kind == KIND_LINES && !o->file) {
        fprintf(stderr, "kinesis2pg-produce: --kind lines needs --file\n");
        return 2;
    }
    o->seed = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    return 0;
}

static const char *const events[] = {"click", "view", "purchase", "signup", "logout"};

/* Builds payload number i into b. */
static int make_payload(const produce_opts *o, int64_t i, uint64_t *rng, k2p_buf *b)
{
    kind_t kind = o->kind;
    k2p_buf_reset(b);
    if (o->invalid > 0 && o->count > 0) {
        /* Spread the bad ones evenly over the run. */
        int64_t step = o->count / o->invalid;
        if (step < 1)
            step = 1;
        if (i % step == step - 1 && i / step < o->invalid) {
            switch ((i / step) % 3) {
            case 0: return k2p_buf_printf(b, "{\"id\":%lld, \"broken\": tru", (long long)i);
            case 1: return k2p_buf_printf(b, "{\"id\":%lld,\"note\":\"nul\\u0000here\"}", (long long)i);
            default:
                return k2p_buf_printf(b, "{\"id\":%lld,\"name\":\"bad utf8 ", (long long)i) ||
                       k2p_buf_append(b, "\xc3\x28\xff\"}", 5);
            }
        }
    }
    if (kind == KIND_MIXED)
        kind = (kind_t)(i % 3); /* json, text, binary */
    switch (kind) {
    case KIND_JSON: {
        if (k2p_buf_printf(b,
                           "{\"id\":%lld,\"user\":\"user-%llu\",\"event\":\"%s\",\"amount\":%llu.%02llu,"
                           "\"tags\":[\"a\",\"b\"],\"payload\":\"",
                           (long long)i, (unsigned long long)(rnd(rng) % 100000),
                           events[rnd(rng) % K2P_ARRAY_LEN(events)],
                           (unsigned long long)(rnd(rng) % 1000),
                           (unsigned long long)(rnd(rng) % 100)))
            return K2P_ENOMEM;
        while ((int64_t)b->len + 2 < o->size)
            if (k2p_buf_putc(b, (char)('a' + rnd(rng) % 26)))
                return K2P_ENOMEM;
        return k2p_buf_puts(b, "\"}");
    }
    case KIND_TEXT:
        if (k2p_buf_printf(b, "text record %lld:", (long long)i))
            return K2P_ENOMEM;
        while ((int64_t)b->len < o->size)
            if (k2p_buf_putc(b, (char)(' ' + rnd(rng) % 95)))
                return K2P_ENOMEM;
        return 0;
    case KIND_BINARY:
        /* Every byte value appears: a rotating base plus random bytes. */
        for (int64_t j = 0; j < o->size; j++) {
            uint8_t v = (j < 256 && o->size >= 256) ? (uint8_t)(j + i) : (uint8_t)rnd(rng);
            if (k2p_buf_putc(b, (char)v))
                return K2P_ENOMEM;
        }
        return 0;
    default:
        return K2P_EINVAL;
    }
}

/* Replaces b's bytes by their zstd frame or gzip member (--compress). 0 or K2P_ENOMEM. */
static int compress_payload(const produce_opts *o, k2p_buf *b, k2p_buf *tmp)
{
    k2p_buf_reset(tmp);
    if (o->compress == 1) {
        size_t cap = ZSTD_compressBound(b->len), got;
        if (k2p_buf_reserve(tmp, cap))
            return K2P_ENOMEM;
        got = ZSTD_compress(tmp->data, cap, b->data ? b->data : "", b->len, 3);
        if (ZSTD_isError(got))
            return K2P_ENOMEM;
        tmp->len = got;
    } else {
        z_stream z;
        int zrc;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return K2P_ENOMEM;
        if (k2p_buf_reserve(tmp, deflateBound(&z, (uLong)b->len) + 32)) {
            deflateEnd(&z);
            return K2P_ENOMEM;
        }
        z.next_in = (Bytef *)b->data;
        z.avail_in = (uInt)b->len;
        z.next_out = (Bytef *)tmp->data;
        z.avail_out = (uInt)(tmp->cap - 1);
        zrc = deflate(&z, Z_FINISH);
        tmp->len = z.total_out;
        deflateEnd(&z);
        if (zrc != Z_STREAM_END)
            return K2P_ENOMEM;
    }
    {
        k2p_buf t = *b; /* swap: b gets the compressed bytes, tmp keeps b's allocation */
        *b = *tmp;
        *tmp = t;
    }
    return 0;
}

/* Makes user record i: its payload into b (compressed with --compress) and its partition key.
 * Returns 1, 0 at the end of --kind lines input, or -1 (out of memory). */
static int make_record(const produce_opts *o, int64_t i, uint64_t *rng, FILE *in, k2p_buf *b,
                       k2p_buf *tmp, char key[64])
{
    if (o->kind == KIND_LINES) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t l;
        do { /* Kinesis refuses empty records: skip empty lines */
            l = getline(&line, &cap, in);
            if (l > 0 && line[l - 1] == '\n')
                l--;
        } while (l == 0);
        k2p_buf_reset(b);
        if (l < 0) {
            free(line);
            return 0;
        }
        if (k2p_buf_append(b, line, (size_t)l)) {
            free(line);
            return -1;
        }
        free(line);
    } else if (make_payload(o, i, rng, b)) {
        return -1;
    }
    if (o->compress && compress_payload(o, b, tmp))
        return -1;
    if (o->fixed_key)
        snprintf(key, 64, "%s", o->fixed_key);
    else if (o->keys)
        snprintf(key, 64, "key-%llu", (unsigned long long)(rnd(rng) % (uint64_t)o->keys));
    else
        snprintf(key, 64, "pk-%016llx-%lld", (unsigned long long)rnd(rng), (long long)i);
    return 1;
}

static char *resolve_endpoint(const produce_opts *o, const char *region)
{
    const char *e = o->endpoint;
    const k2p_env *env = k2p_env_process();
    k2p_buf b;
    if (!e)
        e = k2p_env_get(env, "AWS_ENDPOINT_URL_KINESIS");
    if (!e)
        e = k2p_env_get(env, "AWS_ENDPOINT_URL");
    if (e)
        return k2p_strdup(e);
    k2p_buf_init(&b, 0);
    if (k2p_buf_printf(&b, "https://kinesis.%s.amazonaws.com", region)) {
        k2p_buf_deinit(&b);
        return NULL;
    }
    return k2p_buf_steal(&b, NULL);
}

static void print_records(const k2p_put_entry *e, const k2p_put_result *r, size_t n)
{
    k2p_buf line;
    k2p_buf_init(&line, 0);
    for (size_t i = 0; i < n; i++) {
        k2p_buf_reset(&line);
        if (k2p_buf_printf(&line, "%s\t%s\t%s\t", r[i].shard_id, r[i].seq, e[i].partition_key) ||
            k2p_buf_reserve(&line, k2p_base64_encoded_len(e[i].len) + 2))
            break;
        line.len += k2p_base64_encode(e[i].data, e[i].len, line.data + line.len);
        k2p_buf_putc(&line, '\n');
        fwrite(line.data, 1, line.len, stdout);
    }
    k2p_buf_deinit(&line);
}

int main(int argc, char **argv)
{
    produce_opts o;
    k2p_err err = {0};
    const k2p_env *env = k2p_env_process();
    char *region = NULL, *endpoint = NULL;
    k2p_cred_chain *creds = NULL;
    k2p_kinesis *k = NULL;
    k2p_kinesis_opts ko = {0};
    k2p_buf *payloads = NULL;
    char (*keys)[64] = NULL;
    k2p_put_entry *entries = NULL;
    k2p_put_result *results = NULL;
    FILE *in = NULL;
    k2p_buf *agg_data = NULL; /* --aggregate: the user records of one aggregate */
    char (*agg_keys)[64] = NULL;
    k2p_kpl_record *agg = NULL;
    k2p_buf tmp;
    uint64_t rng;
    int64_t put = 0, kinesis_records = 0, bytes = 0, t0 = k2p_now_ns();
    int rc = 1;

    if ((rc = parse_args(argc, argv, &o)) != 0) {
        if (rc == 2 && argc < 2)
            usage(stderr);
        return rc;
    }
    rc = 1;
    rng = o.seed;
    k2p_buf_init(&tmp, 0);
    region = k2p_aws_region_from_env(env, NULL);
    if (o.region) {
        free(region);
        region = k2p_strdup(o.region);
    }
    if (!region)
        region = k2p_strdup("us-east-1");
    endpoint = resolve_endpoint(&o, region);
    creds = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    if (!region || !endpoint || !creds) {
        fprintf(stderr, "kinesis2pg-produce: out of memory\n");
        goto out;
    }
    ko.endpoint = endpoint;
    ko.region = region;
    ko.creds = creds;
    if (!(k = k2p_kinesis_new(&ko, &err))) {
        fprintf(stderr, "kinesis2pg-produce: %s\n", err.msg);
        rc = err.code == K2P_ECONFIG ? 2 : 1;
        goto out;
    }
    if (o.create_shards) {
        int r = k2p_kinesis_create_stream(k, o.stream, (int)o.create_shards, &err);
        if (r && r != K2P_EINUSE) {
            fprintf(stderr, "kinesis2pg-produce: %s\n", err.msg);
            goto out;
        }
    }
    if (k2p_kinesis_wait_active(k, o.stream, 30000, &err)) {
        fprintf(stderr, "kinesis2pg-produce: %s\n", err.msg);
        goto out;
    }
    if (o.kind == KIND_LINES) {
        in = strcmp(o.file, "-") ? fopen(o.file, "rb") : stdin;
        if (!in) {
            fprintf(stderr, "kinesis2pg-produce: cannot open %s\n", o.file);
            goto out;
        }
    }

    payloads = calloc((size_t)o.batch, sizeof *payloads);
    keys = calloc((size_t)o.batch, sizeof *keys);
    entries = calloc((size_t)o.batch, sizeof *entries);
    results = calloc((size_t)o.batch, sizeof *results);
    if (!payloads || !keys || !entries || !results) {
        fprintf(stderr, "kinesis2pg-produce: out of memory\n");
        goto out;
    }
    for (int64_t j = 0; j < o.batch; j++)
        k2p_buf_init(&payloads[j], 0);
    if (o.aggregate) {
        agg_data = calloc((size_t)o.aggregate, sizeof *agg_data);
        agg_keys = calloc((size_t)o.aggregate, sizeof *agg_keys);
        agg = calloc((size_t)o.aggregate, sizeof *agg);
        if (!agg_data || !agg_keys || !agg)
            goto oom;
        for (int64_t j = 0; j < o.aggregate; j++)
            k2p_buf_init(&agg_data[j], 0);
    }

    for (;;) {
        size_t n = 0;
        bool eof = false;
        while (!eof && (int64_t)n < o.batch && (o.kind == KIND_LINES || put < o.count)) {
            k2p_buf *b = &payloads[n];
            int got;
            if (!o.aggregate) {
                if ((got = make_record(&o, put, &rng, in, b, &tmp, keys[n])) < 0)
                    goto oom;
                if (!got)
                    break;
                put++;
            } else {
                /* One Kinesis record: up to --aggregate user records, the first one's key. */
                size_t m = 0;
                k2p_buf_reset(b);
                while ((int64_t)m < o.aggregate && (o.kind == KIND_LINES || put < o.count)) {
                    if ((got = make_record(&o, put, &rng, in, &agg_data[m], &tmp,
                                           agg_keys[m])) < 0)
                        goto oom;
                    if (!got) {
                        eof = true;
                        break;
                    }
                    agg[m] = (k2p_kpl_record){.partition_key = agg_keys[m],
                                              .partition_key_len = strlen(agg_keys[m]),
                                              .data = (const uint8_t *)agg_data[m].data,
                                              .data_len = agg_data[m].len};
                    m++;
                    put++;
                }
                if (!m)
                    break;
                if (k2p_kpl_build(agg, m, b))
                    goto oom;
                snprintf(keys[n], sizeof keys[n], "%s", agg_keys[0]);
            }
            entries[n].data = b->data;
            entries[n].len = b->len;
            entries[n].partition_key = keys[n];
            entries[n].explicit_hash_key = NULL;
            n++;
        }
        if (!n)
            break;
        if (k2p_kinesis_put_records(k, o.stream, entries, n, results, &err)) {
            fprintf(stderr, "kinesis2pg-produce: %s (after %lld records)\n", err.msg,
                    (long long)kinesis_records);
            goto out;
        }
        if (o.print)
            print_records(entries, results, n);
        for (size_t j = 0; j < n; j++)
            bytes += (int64_t)entries[j].len;
        kinesis_records += (int64_t)n;
        if (o.rate) {
            /* Sleep until `put` records are due at the given rate. */
            int64_t due = t0 + put * 1000000000 / o.rate, now = k2p_now_ns();
            if (due > now) {
                struct timespec ts = {(time_t)((due - now) / 1000000000),
                                      (long)((due - now) % 1000000000)};
                nanosleep(&ts, NULL);
            }
        }
    }
    {
        double secs = (double)(k2p_now_ns() - t0) / 1e9;
        fprintf(stderr, "kinesis2pg-produce: put %lld records (%lld bytes) into stream '%s' in %.2f s (%.0f records/s)\n",
                (long long)put, (long long)bytes, o.stream, secs, secs > 0 ? (double)put / secs : 0.0);
        if (o.aggregate)
            fprintf(stderr, "kinesis2pg-produce: in %lld KPL aggregates of up to %lld\n",
                    (long long)kinesis_records, (long long)o.aggregate);
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "kinesis2pg-produce: out of memory\n");
out:
    if (in && in != stdin)
        fclose(in);
    if (payloads)
        for (int64_t j = 0; j < o.batch; j++)
            k2p_buf_deinit(&payloads[j]);
    free(payloads);
    if (agg_data)
        for (int64_t j = 0; j < o.aggregate; j++)
            k2p_buf_deinit(&agg_data[j]);
    free(agg_data);
    free(agg_keys);
    free(agg);
    k2p_buf_deinit(&tmp);
    free(keys);
    free(entries);
    free(results);
    k2p_kinesis_free(k);
    k2p_cred_chain_free(creds);
    free(region);
    free(endpoint);
    return rc;
}

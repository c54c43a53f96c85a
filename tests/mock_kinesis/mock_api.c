/* mock_api.c - the Kinesis operations of mock_kinesis, their errors as AWS words them, fault
 * injection, --limits, the reshard trigger, and the /stats and /control endpoints.
 *
 * Every operation parses its JSON body (cJSON), takes the store lock in the mode it needs,
 * and writes its answer straight into the connection's body buffer. GetRecords never builds
 * JSON per record: it copies each record's pre-encoded fragment.
 *
 * Threading: called concurrently from the HTTP workers. Lock order: store lock, then a
 * shard's lim_lock; the fault configuration is a per-request snapshot (no lock held).
 */
#include "mock_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"

#define GET_RECORDS_MAX_BYTES ((size_t)10 << 20)
#define LIST_SHARDS_DEFAULT 1000
#define NEXT_TOKEN_TTL_MS 300000
#define READ_BYTES_PER_S (2u << 20)
#define PUT_MAX_RECORDS 500
#define DATA_MAX_BYTES (1u << 20)

/* ---- answers ------------------------------------------------------------------------------ */

#define api_error mock_api_error

void mock_api_error(mock_resp *r, int status, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->status = status;
    r->error_type = type;
    k2p_buf_reset(r->body);
    if (k2p_buf_printf(r->body, "{\"__type\":\"%s\",\"message\":", type) ||
        k2p_buf_put_json_str(r->body, msg, strlen(msg)) || k2p_buf_putc(r->body, '}'))
        r->status = 500;
}

static void oom(mock_resp *r)
{
    api_error(r, 500, "InternalFailure", "mock_kinesis ran out of memory");
}

static void not_null(mock_resp *r, const char *member)
{
    api_error(r, 400, "ValidationException",
              "1 validation error detected: Value null at '%s' failed to satisfy constraint: "
              "Member must not be null",
              member);
}

static void stream_not_found(mock_resp *r, const char *name)
{
    api_error(r, 400, "ResourceNotFoundException",
              "Stream %s under account " MOCK_ACCOUNT " not found.", name);
}

static void shard_not_found(mock_resp *r, const char *shard, const char *name)
{
    api_error(r, 400, "ResourceNotFoundException",
              "Shard %s in stream %s under account " MOCK_ACCOUNT " does not exist", shard, name);
}

static void throttled(mock_resp *r, const char *shard, const char *name)
{
    api_error(r, 400, "ProvisionedThroughputExceededException",
              "Rate exceeded for shard %s in stream %s under account " MOCK_ACCOUNT ".", shard,
              name);
}

static int put_arn(k2p_buf *b, const char *name)
{
    return k2p_buf_printf(b, "\"arn:aws:kinesis:" MOCK_REGION ":" MOCK_ACCOUNT ":stream/%s\"",
                          name);
}

static int put_u128(k2p_buf *b, mock_u128 v)
{
    char d[40];
    mock_u128_format(v, d);
    return k2p_buf_printf(b, "\"%s\"", d);
}

/* {"ShardId":...,"ParentShardId":...,"HashKeyRange":...,"SequenceNumberRange":...} */
static int put_shard(k2p_buf *b, const mock_stream *s, const mock_shard *sh)
{
    char seq[MOCK_SEQ_LEN + 1];
    int rc = k2p_buf_printf(b, "{\"ShardId\":\"%s\"", sh->id);
    if (sh->parent >= 0)
        rc |= k2p_buf_printf(b, ",\"ParentShardId\":\"%s\"", s->shards[sh->parent]->id);
    if (sh->adjacent >= 0)
        rc |= k2p_buf_printf(b, ",\"AdjacentParentShardId\":\"%s\"", s->shards[sh->adjacent]->id);
    rc |= k2p_buf_puts(b, ",\"HashKeyRange\":{\"StartingHashKey\":");
    rc |= put_u128(b, sh->hash_lo);
    rc |= k2p_buf_puts(b, ",\"EndingHashKey\":");
    rc |= put_u128(b, sh->hash_hi);
    mock_shard_start_seq(sh, seq);
    rc |= k2p_buf_printf(b, "},\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"%s\"", seq);
    if (sh->close_ms) {
        mock_shard_end_seq(sh, seq);
        rc |= k2p_buf_printf(b, ",\"EndingSequenceNumber\":\"%s\"", seq);
    }
    rc |= k2p_buf_puts(b, "}}");
    return rc;
}

static int put_summary_fields(k2p_buf *b, const mock_stream *s)
{
    int rc = k2p_buf_puts(b, "\"StreamName\":");
    rc |= k2p_buf_put_json_str(b, s->name, strlen(s->name));
    rc |= k2p_buf_puts(b, ",\"StreamARN\":");
    rc |= put_arn(b, s->name);
    rc |= k2p_buf_printf(b,
                         ",\"StreamStatus\":\"ACTIVE\","
                         "\"StreamModeDetails\":{\"StreamMode\":\"PROVISIONED\"},"
                         "\"RetentionPeriodHours\":24,\"StreamCreationTimestamp\":%lld.%03lld,"
                         "\"EnhancedMonitoring\":[{\"ShardLevelMetrics\":[]}],"
                         "\"EncryptionType\":\"NONE\"",
                         (long long)(s->create_ms / 1000), (long long)(s->create_ms % 1000));
    return rc;
}

/* ---- request fields ----------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 1: present and whole, 0: absent, -1: present but not a whole number. */
static int jint(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 9e15)
        return -1;
    *out = (int64_t)v->valuedouble;
    return 1;
}

/* The stream named by StreamName or StreamARN; on failure answers and returns -1. */
static int stream_name(const cJSON *in, char out[MOCK_NAME_MAX + 1], mock_resp *r)
{
    const char *n = jstr(in, "StreamName");
    const char *arn = jstr(in, "StreamARN");
    if (!n && arn) {
        const char *sl = strstr(arn, ":stream/");
        n = sl ? sl + 8 : NULL;
        if (!n) {
            api_error(r, 400, "InvalidArgumentException", "StreamARN %s is not a stream ARN", arn);
            return -1;
        }
    }
    if (!n) {
        not_null(r, "streamName");
        return -1;
    }
    if (!mock_stream_name_valid(n)) {
        api_error(r, 400, "ValidationException",
                  "1 validation error detected: Value '%.200s' at 'streamName' failed to "
                  "satisfy constraint: Member must satisfy regular expression pattern: "
                  "[a-zA-Z0-9_.-]+",
                  n);
        return -1;
    }
    snprintf(out, MOCK_NAME_MAX + 1, "%s", n);
    return 0;
}

static void member_range(mock_resp *r, const char *member, int64_t v, int64_t lo, int64_t hi)
{
    api_error(r, 400, "ValidationException",
              "1 validation error detected: Value '%lld' at '%s' failed to satisfy constraint: "
              "Member must have value %s %lld",
              (long long)v, member, v < lo ? "greater than or equal to" : "less than or equal to",
              (long long)(v < lo ? lo : hi));
}

/* ---- stream operations -------------------------------------------------------------------- */

static void op_create_stream(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    int64_t shards = 4; /* absent ShardCount: on-demand streams start with 4 shards */
    int rc, has;

    if (stream_name(in, name, r))
        return;
    has = jint(in, "ShardCount", &shards);
    if (has < 0 || (has && (shards < 1 || shards > 100000))) {
        member_range(r, "shardCount", shards, 1, 100000);
        return;
    }
    pthread_rwlock_wrlock(&srv->store.lock);
    rc = mock_store_create(&srv->store, name, (int)shards, mock_wall_ms(), NULL);
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc == K2P_EINUSE)
        api_error(r, 400, "ResourceInUseException",
                  "Stream %s under account " MOCK_ACCOUNT " already exists.", name);
    else if (rc)
        oom(r);
}

static void op_delete_stream(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    int rc;
    if (stream_name(in, name, r))
        return;
    pthread_rwlock_wrlock(&srv->store.lock);
    rc = mock_store_delete(&srv->store, name);
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc)
        stream_not_found(r, name);
}

static void op_describe_stream_summary(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const mock_stream *s;
    int rc;
    if (stream_name(in, name, r))
        return;
    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (s) {
        rc = k2p_buf_puts(r->body, "{\"StreamDescriptionSummary\":{");
        rc |= put_summary_fields(r->body, s);
        size_t consumers = 0;
        for (size_t i = 0; i < s->n_consumers; i++)
            consumers += s->consumers[i].delete_ms == 0;
        rc |= k2p_buf_printf(r->body, ",\"OpenShardCount\":%d,\"ConsumerCount\":%zu}}",
                             mock_stream_open_shards(s), consumers);
        if (rc)
            oom(r);
    }
    pthread_rwlock_unlock(&srv->store.lock);
    if (!s)
        stream_not_found(r, name);
}

static void op_describe_stream(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const mock_stream *s;
    const char *excl = jstr(in, "ExclusiveStartShardId");
    int64_t limit = 100;
    int has, rc = 0;
    size_t i = 0, shown = 0;

    if (stream_name(in, name, r))
        return;
    has = jint(in, "Limit", &limit);
    if (has < 0 || (has && (limit < 1 || limit > 10000))) {
        member_range(r, "limit", limit, 1, 10000);
        return;
    }
    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (s) {
        if (excl) {
            int x = mock_stream_resolve_shard(s, excl);
            i = x >= 0 ? (size_t)x + 1 : 0;
        }
        rc |= k2p_buf_puts(r->body, "{\"StreamDescription\":{");
        rc |= put_summary_fields(r->body, s);
        rc |= k2p_buf_puts(r->body, ",\"Shards\":[");
        for (; i < s->n_shards && shown < (size_t)limit; i++, shown++) {
            if (shown)
                rc |= k2p_buf_putc(r->body, ',');
            rc |= put_shard(r->body, s, s->shards[i]);
        }
        rc |=
            k2p_buf_printf(r->body, "],\"HasMoreShards\":%s}}", i < s->n_shards ? "true" : "false");
        if (rc)
            oom(r);
    }
    pthread_rwlock_unlock(&srv->store.lock);
    if (!s)
        stream_not_found(r, name);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void op_list_streams(mock_server *srv, const cJSON *in, mock_resp *r)
{
    const char **names;
    int rc = 0;
    (void)in;
    pthread_rwlock_rdlock(&srv->store.lock);
    names = malloc((srv->store.n + 1) * sizeof *names);
    if (!names) {
        pthread_rwlock_unlock(&srv->store.lock);
        oom(r);
        return;
    }
    for (size_t i = 0; i < srv->store.n; i++)
        names[i] = srv->store.streams[i]->name;
    qsort(names, srv->store.n, sizeof *names, cmp_names);
    rc |= k2p_buf_puts(r->body, "{\"StreamNames\":[");
    for (size_t i = 0; i < srv->store.n; i++) {
        if (i)
            rc |= k2p_buf_putc(r->body, ',');
        rc |= k2p_buf_put_json_str(r->body, names[i], strlen(names[i]));
    }
    rc |= k2p_buf_puts(r->body, "],\"StreamSummaries\":[");
    for (size_t i = 0; i < srv->store.n; i++) {
        const mock_stream *s = mock_store_find(&srv->store, names[i]);
        rc |= k2p_buf_puts(r->body, i ? ",{" : "{");
        rc |= put_summary_fields(r->body, s);
        rc |= k2p_buf_putc(r->body, '}');
    }
    rc |= k2p_buf_puts(r->body, "],\"HasMoreStreams\":false}");
    pthread_rwlock_unlock(&srv->store.lock);
    free(names);
    if (rc)
        oom(r);
}

#define LS_OPEN_ONLY 1u

static void op_list_shards(mock_server *srv, const cJSON *in, mock_resp *r)
{
    const char *token = jstr(in, "NextToken");
    const char *excl = jstr(in, "ExclusiveStartShardId");
    const cJSON *filter = cJSON_GetObjectItemCaseSensitive(in, "ShardFilter");
    bool named = jstr(in, "StreamName") || jstr(in, "StreamARN");
    char name[MOCK_NAME_MAX + 1];
    int64_t max = LIST_SHARDS_DEFAULT;
    uint32_t flags = 0;
    uint64_t start = 0, gen = 0;
    const mock_stream *s;
    int has, rc = 0;
    size_t i, shown = 0;

    if (token && named) {
        api_error(r, 400, "InvalidArgumentException",
                  "NextToken and StreamName cannot be provided together.");
        return;
    }
    if (!token && !named) {
        api_error(r, 400, "InvalidArgumentException",
                  "Either NextToken or StreamName should be provided.");
        return;
    }
    has = jint(in, "MaxResults", &max);
    if (has < 0 || (has && (max < 1 || max > 10000))) {
        member_range(r, "maxResults", max, 1, 10000);
        return;
    }
    if (max > LIST_SHARDS_DEFAULT)
        max = LIST_SHARDS_DEFAULT; /* AWS: "at most 1000 results are returned" */
    if (token) {
        mock_token t;
        if (excl || filter) {
            api_error(r, 400, "InvalidArgumentException",
                      "NextToken cannot be combined with ExclusiveStartShardId or ShardFilter.");
            return;
        }
        if (mock_token_decode(&srv->store, 'T', token, strlen(token), &t)) {
            api_error(r, 400, "InvalidArgumentException", "Invalid NextToken.");
            return;
        }
        if (mock_wall_ms() - t.issued_ms > NEXT_TOKEN_TTL_MS) {
            api_error(r, 400, "ExpiredNextTokenException", "The NextToken has expired.");
            return;
        }
        snprintf(name, sizeof name, "%s", t.stream);
        start = t.pos;
        flags = t.shard;
        gen = t.gen;
    } else if (stream_name(in, name, r)) {
        return;
    }
    if (cJSON_IsObject(filter)) {
        const char *type = jstr(filter, "Type");
        if (type && !strcmp(type, "AT_LATEST"))
            flags |= LS_OPEN_ONLY;
        else if (type && !strcmp(type, "AFTER_SHARD_ID"))
            excl = jstr(filter, "ShardId");
    }

    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (!s || (gen && s->gen != gen)) {
        pthread_rwlock_unlock(&srv->store.lock);
        stream_not_found(r, name);
        return;
    }
    if (excl) {
        int x = mock_stream_resolve_shard(s, excl);
        start = x >= 0 ? (uint64_t)x + 1 : 0;
    }
    rc |= k2p_buf_puts(r->body, "{\"Shards\":[");
    for (i = (size_t)K2P_MIN(start, (uint64_t)s->n_shards); i < s->n_shards; i++) {
        const mock_shard *sh = s->shards[i];
        if ((flags & LS_OPEN_ONLY) && sh->close_ms)
            continue;
        if (shown == (size_t)max)
            break;
        if (shown++)
            rc |= k2p_buf_putc(r->body, ',');
        rc |= put_shard(r->body, s, sh);
    }
    rc |= k2p_buf_putc(r->body, ']');
    if (i < s->n_shards) {
        char tok[MOCK_TOKEN_MAX];
        mock_token t = {0};
        t.kind = 'T';
        t.gen = s->gen;
        t.shard = flags;
        t.pos = i;
        t.issued_ms = mock_wall_ms();
        snprintf(t.stream, sizeof t.stream, "%s", s->name);
        mock_token_encode(&srv->store, &t, tok);
        rc |= k2p_buf_printf(r->body, ",\"NextToken\":\"%s\"", tok);
    }
    rc |= k2p_buf_putc(r->body, '}');
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc)
        oom(r);
}

/* ---- reading ------------------------------------------------------------------------------ */

static const char *const iter_types[] = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP",
                                         "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"};

int mock_api_iter_type(const char *type, const char *seq, const cJSON *ts, const char *member,
                       mock_resp *r)
{
    int ti = -1;
    for (int i = 0; i < (int)K2P_ARRAY_LEN(iter_types); i++) {
        if (!strcmp(type, iter_types[i]))
            ti = i;
    }
    if (ti < 0) {
        api_error(r, 400, "ValidationException",
                  "1 validation error detected: Value '%.64s' at '%s' failed to "
                  "satisfy constraint: Member must satisfy enum value set: "
                  "[AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, TRIM_HORIZON, "
                  "AT_SEQUENCE_NUMBER]",
                  type, member);
        return -1;
    }
    if (seq && ti <= 2) {
        api_error(r, 400, "InvalidArgumentException",
                  "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and "
                  "StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no "
                  "StartingSequenceNumber. Request specified %s and also a "
                  "StartingSequenceNumber.",
                  type);
        return -1;
    }
    if (!seq && ti >= 3) {
        api_error(r, 400, "InvalidArgumentException",
                  "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and "
                  "StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no "
                  "StartingSequenceNumber. Request specified %s and no StartingSequenceNumber.",
                  type);
        return -1;
    }
    if (ti == 2 && !cJSON_IsNumber(ts)) {
        api_error(r, 400, "InvalidArgumentException",
                  "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. "
                  "Current request has no timestamp parameter.");
        return -1;
    }
    return ti;
}

int mock_api_seek(const mock_shard *sh, int ti, const char *seq, const cJSON *ts,
                  const char *stream, uint64_t *pos, mock_resp *r)
{
    switch (ti) {
    case 0: /* TRIM_HORIZON: records never age out here */
        *pos = 0;
        break;
    case 1: /* LATEST */
        *pos = sh->n;
        break;
    case 2: { /* AT_TIMESTAMP: first record whose arrival (ms) >= the timestamp (any precision) */
        int64_t us = llround(ts->valuedouble * 1e6);
        *pos = mock_shard_seek_time(sh, (us + 999) / 1000);
        break;
    }
    default: {
        mock_seq_info si;
        if (mock_seq_parse(seq, strlen(seq), &si) || si.create_s != sh->create_ms / 1000 ||
            si.shard_ix != sh->ix) {
            if (!mock_seq_parse(seq, strlen(seq), &si) && si.shard_ix != sh->ix)
                api_error(r, 400, "InvalidArgumentException",
                          "Invalid StartingSequenceNumber. It encodes shardId-%012u, while it was "
                          "used in a call to a shard with %s",
                          (unsigned)si.shard_ix, sh->id);
            else
                api_error(r, 400, "InvalidArgumentException",
                          "StartingSequenceNumber %.140s used in GetShardIterator on shard %s in "
                          "stream %s under account " MOCK_ACCOUNT
                          " is invalid because it did not come from this stream.",
                          seq, sh->id, stream);
            return -1;
        }
        /* Record at position p has index p + 1. */
        if (si.index == MOCK_SEQ_INDEX_END)
            *pos = sh->n;
        else if (ti == 3)
            *pos = si.index ? si.index - 1 : 0;
        else
            *pos = si.index;
        if (*pos > sh->n)
            *pos = sh->n;
        break;
    }
    }
    return 0;
}

static void op_get_shard_iterator(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1], tok[MOCK_TOKEN_MAX];
    const char *shard_id = jstr(in, "ShardId");
    const char *type = jstr(in, "ShardIteratorType");
    const char *seq = jstr(in, "StartingSequenceNumber");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(in, "Timestamp");
    const mock_stream *s;
    const mock_shard *sh;
    mock_token t = {0};
    int ti, ix;

    if (stream_name(in, name, r))
        return;
    if (!shard_id) {
        not_null(r, "shardId");
        return;
    }
    if (!type) {
        not_null(r, "shardIteratorType");
        return;
    }
    if ((ti = mock_api_iter_type(type, seq, ts, "shardIteratorType", r)) < 0)
        return;

    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (!s || (ix = mock_stream_resolve_shard(s, shard_id)) < 0) {
        pthread_rwlock_unlock(&srv->store.lock);
        shard_not_found(r, shard_id, name);
        return;
    }
    sh = s->shards[ix];
    if (mock_api_seek(sh, ti, seq, ts, name, &t.pos, r)) {
        pthread_rwlock_unlock(&srv->store.lock);
        return;
    }
    t.kind = 'I';
    t.gen = s->gen;
    t.shard = sh->ix;
    t.issued_ms = mock_wall_ms();
    snprintf(t.stream, sizeof t.stream, "%s", s->name);
    pthread_rwlock_unlock(&srv->store.lock);
    mock_token_encode(&srv->store, &t, tok);
    if (k2p_buf_printf(r->body, "{\"ShardIterator\":\"%s\"}", tok))
        oom(r);
}

/* --limits: 5 calls/s and 2 MB/s per shard. True when this call must be throttled (it is
 * counted); otherwise records the call. @locks store read. */
static bool limits_refuse(mock_server *srv, mock_shard *sh, int64_t now_ns)
{
    bool refuse = false;
    pthread_mutex_lock(&sh->lim_lock);
    if (now_ns < sh->read_free_ns) {
        mock_stat_add(&srv->ctl.stats.faults[MOCK_S_LIMIT_BYTES], 1);
        refuse = true;
    } else if (sh->calls_ns[sh->call_pos] && now_ns - sh->calls_ns[sh->call_pos] < 1000000000) {
        /* calls_ns[call_pos] is the oldest of the last five calls. */
        mock_stat_add(&srv->ctl.stats.faults[MOCK_S_LIMIT_CALLS], 1);
        refuse = true;
    } else {
        sh->calls_ns[sh->call_pos] = now_ns;
        sh->call_pos = (sh->call_pos + 1) % K2P_ARRAY_LEN(sh->calls_ns);
    }
    pthread_mutex_unlock(&sh->lim_lock);
    return refuse;
}

/* A read of `bytes` costs bytes / 2 MB seconds of the shard's read capacity. */
static void limits_charge(mock_shard *sh, int64_t now_ns, size_t bytes)
{
    pthread_mutex_lock(&sh->lim_lock);
    if (sh->read_free_ns < now_ns)
        sh->read_free_ns = now_ns;
    sh->read_free_ns += (int64_t)((double)bytes * 1e9 / READ_BYTES_PER_S);
    pthread_mutex_unlock(&sh->lim_lock);
}

void mock_api_maybe_reshard(mock_server *srv, const mock_fault_cfg *cfg, uint64_t served)
{
    int expected = 0;
    k2p_err err = {0};
    if (cfg->reshard_at <= 0 || served < (uint64_t)cfg->reshard_at)
        return;
    if (!atomic_compare_exchange_strong(&srv->ctl.reshard_fired, &expected, 1))
        return;
    if (mock_api_reshard(srv, cfg, &err)) {
        mock_stat_add(&srv->ctl.stats.reshard_failures, 1);
        fprintf(stderr, "mock_kinesis: event=reshard_failed served=%llu error=\"%s\"\n",
                (unsigned long long)served, err.msg);
    } else {
        fprintf(stderr, "mock_kinesis: event=reshard served=%llu %s=%s%s%s\n",
                (unsigned long long)served, cfg->split_shard[0] ? "split" : "merge",
                cfg->split_shard[0] ? cfg->split_shard : cfg->merge_a,
                cfg->split_shard[0] ? "" : ",", cfg->split_shard[0] ? "" : cfg->merge_b);
    }
}

static void op_get_records(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in,
                           mock_resp *r)
{
    const char *it = jstr(in, "ShardIterator");
    int64_t limit = 10000, now_ms = mock_wall_ms(), now_ns = k2p_now_ns();
    mock_token t;
    const mock_stream *s;
    mock_shard *sh;
    size_t n, pos, end, bytes = 0, data_bytes = 0, children = 0;
    k2p_buf *b = r->body;
    bool closed_end;
    int has, rc = 0;
    uint64_t served;

    if (!it) {
        not_null(r, "shardIterator");
        return;
    }
    has = jint(in, "Limit", &limit);
    if (has < 0 || (has && (limit < 1 || limit > 10000))) {
        member_range(r, "limit", limit, 1, 10000);
        return;
    }
    if (mock_token_decode(&srv->store, 'I', it, strlen(it), &t)) {
        api_error(r, 400, "InvalidArgumentException", "Invalid ShardIterator.");
        return;
    }
    if (now_ms - t.issued_ms > cfg->iterator_ttl_ms) {
        mock_stat_add(&srv->ctl.stats.faults[MOCK_S_ITERATOR_TTL], 1);
        api_error(r, 400, "ExpiredIteratorException",
                  "Iterator expired. The iterator was created at time %lld ms while right now "
                  "it is %lld ms which is further in the future than the tolerated delay of "
                  "%lld milliseconds.",
                  (long long)t.issued_ms, (long long)now_ms, (long long)cfg->iterator_ttl_ms);
        return;
    }

    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, t.stream);
    if (!s || s->gen != t.gen || t.shard >= s->n_shards) {
        pthread_rwlock_unlock(&srv->store.lock);
        api_error(r, 400, "ResourceNotFoundException",
                  "Shard shardId-%012u in stream %s under account " MOCK_ACCOUNT " does not exist",
                  (unsigned)t.shard, t.stream);
        return;
    }
    sh = s->shards[t.shard];
    if (cfg->limits && limits_refuse(srv, sh, now_ns)) {
        pthread_rwlock_unlock(&srv->store.lock);
        throttled(r, sh->id, s->name);
        return;
    }
    n = sh->n;
    pos = t.pos < n ? (size_t)t.pos : n;
    /* As many records as Limit and a 10 MB answer allow (at least one). */
    for (end = pos; end < n && end - pos < (size_t)limit; end++) {
        size_t l = sh->recs[end].len + 1;
        if (end > pos && bytes + l > GET_RECORDS_MAX_BYTES - 8192)
            break;
        bytes += l;
        data_bytes += sh->recs[end].data_len;
    }
    closed_end = sh->close_ms && end == n;
    if (closed_end) {
        for (size_t i = 0; i < s->n_shards; i++)
            children += s->shards[i]->parent == (int32_t)sh->ix ||
                        s->shards[i]->adjacent == (int32_t)sh->ix;
    }
    if (k2p_buf_reserve(b, bytes + 512 + children * 256)) {
        pthread_rwlock_unlock(&srv->store.lock);
        oom(r);
        return;
    }
    memcpy(b->data, "{\"Records\":[", 12);
    b->len = 12;
    for (size_t i = pos; i < end; i++) {
        const mock_rec *rec = &sh->recs[i];
        if (i > pos)
            b->data[b->len++] = ',';
        memcpy(b->data + b->len, mock_rec_frag(s, rec), rec->len);
        b->len += rec->len;
    }
    b->data[b->len] = '\0';
    rc |= k2p_buf_printf(
        b, "],\"MillisBehindLatest\":%lld",
        end == n ? 0LL : (long long)(sh->recs[n - 1].arrival_ms - sh->recs[end - 1].arrival_ms));
    if (!closed_end) {
        char tok[MOCK_TOKEN_MAX];
        mock_token nt = t;
        nt.pos = end;
        nt.issued_ms = now_ms;
        mock_token_encode(&srv->store, &nt, tok);
        rc |= k2p_buf_printf(b, ",\"NextShardIterator\":\"%s\"", tok);
    } else {
        /* The end of a closed shard: no NextShardIterator, and its children (as AWS). */
        rc |= mock_api_put_children(b, s, sh);
    }
    rc |= k2p_buf_putc(b, '}');
    if (cfg->limits)
        limits_charge(sh, now_ns, data_bytes);
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc) {
        oom(r);
        return;
    }
    served =
        atomic_fetch_add_explicit(&srv->ctl.stats.records_served, end - pos, memory_order_relaxed) +
        (end - pos);
    mock_stat_add(&srv->ctl.stats.bytes_served, data_bytes);
    if (end > pos)
        mock_api_maybe_reshard(srv, cfg, served);
}

int mock_api_put_children(k2p_buf *b, const mock_stream *s, const mock_shard *sh)
{
    bool first = true;
    int rc = k2p_buf_puts(b, ",\"ChildShards\":[");
    for (size_t i = 0; i < s->n_shards; i++) {
        const mock_shard *c = s->shards[i];
        if (c->parent != (int32_t)sh->ix && c->adjacent != (int32_t)sh->ix)
            continue;
        rc |= k2p_buf_printf(b, "%s{\"ShardId\":\"%s\",\"ParentShards\":[\"%s\"", first ? "" : ",",
                             c->id, s->shards[c->parent]->id);
        if (c->adjacent >= 0)
            rc |= k2p_buf_printf(b, ",\"%s\"", s->shards[c->adjacent]->id);
        rc |= k2p_buf_puts(b, "],\"HashKeyRange\":{\"StartingHashKey\":");
        rc |= put_u128(b, c->hash_lo);
        rc |= k2p_buf_puts(b, ",\"EndingHashKey\":");
        rc |= put_u128(b, c->hash_hi);
        rc |= k2p_buf_puts(b, "}}");
        first = false;
    }
    rc |= k2p_buf_putc(b, ']');
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct put_entry {
    const char *b64, *pkey;
    size_t b64_len, data_len, pkey_len;
    mock_u128 hash;
    bool fail;
    char shard_id[MOCK_SHARD_ID_LEN + 1]; /* results */
    char seq[MOCK_SEQ_LEN + 1];
} put_entry;

/* Validates one entry of PutRecord(s) into e. 0, or -1 after answering. */
static int put_entry_parse(const cJSON *rec, put_entry *e, uint8_t *scratch, mock_resp *r)
{
    const char *data = jstr(rec, "Data"), *pk = jstr(rec, "PartitionKey");
    const char *ehk = jstr(rec, "ExplicitHashKey");
    long dn;

    if (!data) {
        not_null(r, "data");
        return -1;
    }
    if (!pk) {
        not_null(r, "partitionKey");
        return -1;
    }
    e->b64 = data;
    e->b64_len = strlen(data);
    e->pkey = pk;
    e->pkey_len = strlen(pk);
    if (e->pkey_len < 1 || e->pkey_len > 256) {
        api_error(r, 400, "ValidationException",
                  "1 validation error detected: Value at 'partitionKey' failed to satisfy "
                  "constraint: Member must have length between 1 and 256");
        return -1;
    }
    if (k2p_base64_decoded_max(e->b64_len) > DATA_MAX_BYTES + 3 ||
        (dn = k2p_base64_decode(data, e->b64_len, scratch)) < 0) {
        api_error(r, 400, "SerializationException",
                  "Data is not valid base64 or is larger than 1 MiB");
        return -1;
    }
    e->data_len = (size_t)dn;
    if (e->data_len > DATA_MAX_BYTES) {
        api_error(r, 400, "ValidationException",
                  "1 validation error detected: Value at 'data' failed to satisfy constraint: "
                  "Member must have length less than or equal to 1048576");
        return -1;
    }
    if (ehk) {
        if (mock_u128_parse(ehk, strlen(ehk), &e->hash)) {
            api_error(r, 400, "InvalidArgumentException",
                      "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: "
                      "[0, 2^128-1]. Specified value was %.64s",
                      ehk);
            return -1;
        }
    } else {
        e->hash = mock_hash_key(pk, e->pkey_len);
    }
    return 0;
}

/* Appends entries v[0..n) (those not failing on purpose). 0, or -1 after answering. */
static int put_entries(mock_server *srv, const char *name, put_entry *v, size_t n, mock_resp *r)
{
    mock_stream *s;
    int64_t now = mock_wall_ms();
    size_t put = 0;

    pthread_rwlock_wrlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (!s) {
        pthread_rwlock_unlock(&srv->store.lock);
        stream_not_found(r, name);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        mock_shard *sh = mock_stream_route(s, v[i].hash);
        if (!sh) {
            pthread_rwlock_unlock(&srv->store.lock);
            api_error(r, 500, "InternalFailure", "no open shard for a hash key");
            return -1;
        }
        memcpy(v[i].shard_id, sh->id, sizeof v[i].shard_id);
        if (v[i].fail)
            continue;
        if (mock_stream_append(s, sh, v[i].b64, v[i].b64_len, v[i].data_len, v[i].pkey,
                               v[i].pkey_len, now, v[i].seq)) {
            pthread_rwlock_unlock(&srv->store.lock);
            oom(r);
            return -1;
        }
        put++;
    }
    pthread_rwlock_unlock(&srv->store.lock);
    mock_stat_add(&srv->ctl.stats.records_put, put);
    return 0;
}

static void op_put_records(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in,
                           mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(in, "Records"), *rec;
    put_entry *v = NULL;
    uint8_t *scratch = NULL;
    size_t n, i = 0, failed = 0;
    int rc = 0;

    if (stream_name(in, name, r))
        return;
    if (!cJSON_IsArray(recs)) {
        not_null(r, "records");
        return;
    }
    n = (size_t)cJSON_GetArraySize(recs);
    if (n < 1 || n > PUT_MAX_RECORDS) {
        api_error(r, 400, "ValidationException",
                  "1 validation error detected: Value '%zu' at 'records' failed to satisfy "
                  "constraint: Member must have length between 1 and 500",
                  n);
        return;
    }
    v = calloc(n, sizeof *v);
    scratch = malloc(DATA_MAX_BYTES + 4);
    if (!v || !scratch) {
        oom(r);
        goto out;
    }
    cJSON_ArrayForEach(rec, recs)
    {
        if (put_entry_parse(rec, &v[i], scratch, r))
            goto out;
        if (cfg->put_fail > 0 && mock_ctl_uniform(&srv->ctl) < cfg->put_fail) {
            v[i].fail = true;
            failed++;
        }
        i++;
    }
    if (put_entries(srv, name, v, n, r))
        goto out;
    mock_stat_add(&srv->ctl.stats.faults[MOCK_S_PUT_FAIL], failed);
    rc |= k2p_buf_printf(r->body, "{\"FailedRecordCount\":%zu,\"Records\":[", failed);
    for (i = 0; i < n; i++) {
        if (v[i].fail)
            rc |= k2p_buf_printf(r->body,
                                 "%s{\"ErrorCode\":\"ProvisionedThroughputExceededException\","
                                 "\"ErrorMessage\":\"Rate exceeded for shard %s in stream %s "
                                 "under account " MOCK_ACCOUNT ".\"}",
                                 i ? "," : "", v[i].shard_id, name);
        else
            rc |= k2p_buf_printf(r->body, "%s{\"SequenceNumber\":\"%s\",\"ShardId\":\"%s\"}",
                                 i ? "," : "", v[i].seq, v[i].shard_id);
    }
    rc |= k2p_buf_puts(r->body, "],\"EncryptionType\":\"NONE\"}");
    if (rc)
        oom(r);
out:
    free(scratch);
    free(v);
}

static void op_put_record(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in,
                          mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    put_entry e = {0};
    uint8_t *scratch;

    if (stream_name(in, name, r))
        return;
    scratch = malloc(DATA_MAX_BYTES + 4);
    if (!scratch) {
        oom(r);
        return;
    }
    if (put_entry_parse(in, &e, scratch, r) == 0) {
        if (cfg->put_fail > 0 && mock_ctl_uniform(&srv->ctl) < cfg->put_fail) {
            mock_stat_add(&srv->ctl.stats.faults[MOCK_S_PUT_FAIL], 1);
            throttled(r, "(routed)", name);
        } else if (put_entries(srv, name, &e, 1, r) == 0 &&
                   k2p_buf_printf(r->body,
                                  "{\"ShardId\":\"%s\",\"SequenceNumber\":\"%s\","
                                  "\"EncryptionType\":\"NONE\"}",
                                  e.shard_id, e.seq)) {
            oom(r);
        }
    }
    free(scratch);
}

/* ---- resharding --------------------------------------------------------------------------- */

/* Splits shard `shard` of stream `s` at `hash` ("" = the middle). @locks write. */
static int do_split(mock_stream *s, const char *shard, const char *hash, k2p_err *err)
{
    int ix = mock_stream_resolve_shard(s, shard);
    mock_u128 at;
    if (ix < 0)
        return k2p_err_set(err, K2P_ENOTFOUND,
                           "Could not find shard %s in stream %s under account " MOCK_ACCOUNT ".",
                           shard, s->name);
    if (hash && *hash) {
        if (mock_u128_parse(hash, strlen(hash), &at))
            return k2p_err_set(err, K2P_EINVAL,
                               "NewStartingHashKey %.64s is not a number in [0, 2^128-1]", hash);
    } else {
        const mock_shard *sh = s->shards[ix];
        at = sh->hash_lo + (sh->hash_hi - sh->hash_lo) / 2 + 1;
    }
    return mock_stream_split(s, ix, at, mock_wall_ms(), err);
}

static int do_merge(mock_stream *s, const char *a, const char *b, k2p_err *err)
{
    int ia = mock_stream_resolve_shard(s, a), ib = mock_stream_resolve_shard(s, b);
    if (ia < 0 || ib < 0)
        return k2p_err_set(err, K2P_ENOTFOUND,
                           "Could not find shard %s in stream %s under account " MOCK_ACCOUNT ".",
                           ia < 0 ? a : b, s->name);
    if (ia == ib)
        return k2p_err_set(err, K2P_EINVAL, "a shard cannot be merged with itself");
    return mock_stream_merge(s, ia, ib, mock_wall_ms(), err);
}

int mock_api_reshard(mock_server *srv, const mock_fault_cfg *cfg, k2p_err *err)
{
    mock_stream *s;
    int rc;
    pthread_rwlock_wrlock(&srv->store.lock);
    if (cfg->reshard_stream[0])
        s = mock_store_find(&srv->store, cfg->reshard_stream);
    else
        s = srv->store.n ? srv->store.streams[0] : NULL;
    if (!s)
        rc = k2p_err_set(err, K2P_ENOTFOUND, "reshard: no stream '%s'", cfg->reshard_stream);
    else if (cfg->split_shard[0])
        rc = do_split(s, cfg->split_shard, cfg->split_hash, err);
    else if (cfg->merge_a[0])
        rc = do_merge(s, cfg->merge_a, cfg->merge_b, err);
    else
        rc = k2p_err_set(err, K2P_EINVAL, "reshard: neither split nor merge is configured");
    pthread_rwlock_unlock(&srv->store.lock);
    if (!rc)
        mock_stat_add(&srv->ctl.stats.reshards, 1);
    return rc;
}

static void reshard_error(mock_resp *r, int rc, const k2p_err *err)
{
    api_error(r, 400,
              rc == K2P_ENOTFOUND ? "ResourceNotFoundException"
              : rc == K2P_ENOMEM  ? "InternalFailure"
                                  : "InvalidArgumentException",
              "%s", err->msg);
    if (rc == K2P_ENOMEM)
        r->status = 500;
}

static void op_split_shard(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const char *shard = jstr(in, "ShardToSplit"), *hash = jstr(in, "NewStartingHashKey");
    mock_stream *s;
    k2p_err err = {0};
    int rc;

    if (stream_name(in, name, r))
        return;
    if (!shard || !hash) {
        not_null(r, shard ? "newStartingHashKey" : "shardToSplit");
        return;
    }
    pthread_rwlock_wrlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    rc = s ? do_split(s, shard, hash, &err) : K2P_ENOTFOUND;
    pthread_rwlock_unlock(&srv->store.lock);
    if (!s)
        stream_not_found(r, name);
    else if (rc)
        reshard_error(r, rc, &err);
}

static void op_merge_shards(mock_server *srv, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const char *a = jstr(in, "ShardToMerge"), *b = jstr(in, "AdjacentShardToMerge");
    mock_stream *s;
    k2p_err err = {0};
    int rc;

    if (stream_name(in, name, r))
        return;
    if (!a || !b) {
        not_null(r, a ? "adjacentShardToMerge" : "shardToMerge");
        return;
    }
    pthread_rwlock_wrlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    rc = s ? do_merge(s, a, b, &err) : K2P_ENOTFOUND;
    pthread_rwlock_unlock(&srv->store.lock);
    if (!s)
        stream_not_found(r, name);
    else if (rc)
        reshard_error(r, rc, &err);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static bool path_is(const mock_req *q, const char *p)
{
    return q->path_len == strlen(p) && memcmp(q->path, p, q->path_len) == 0;
}

static bool method_is(const mock_req *q, const char *m)
{
    return q->method_len == strlen(m) && memcmp(q->method, m, q->method_len) == 0;
}

/* GET /stats, GET|POST /control, GET /healthz. True when the request was one of them. */
static bool handle_test_endpoint(mock_server *srv, const mock_req *q, mock_resp *r)
{
    k2p_err err = {0};
    int rc = 0;
    r->content_type = "application/json";
    if (path_is(q, "/stats") && method_is(q, "GET")) {
        if (mock_ctl_stats_json(&srv->ctl, r->body))
            oom(r);
        return true;
    }
    if (path_is(q, "/healthz")) {
        k2p_buf_puts(r->body, "{\"ok\":true}");
        return true;
    }
    if (path_is(q, "/control")) {
        if (method_is(q, "POST") && q->body_len)
            rc = mock_ctl_apply_json(&srv->ctl, q->body, q->body_len, &err);
        else if (q->query_len)
            rc = mock_ctl_apply_query(&srv->ctl, q->query, q->query_len, &err);
        if (rc)
            api_error(r, 400, "InvalidArgumentException", "%s", err.msg);
        else if (mock_ctl_config_json(&srv->ctl, r->body))
            oom(r);
        if (!rc && (q->query_len || q->body_len))
            fprintf(stderr, "mock_kinesis: event=control %.*s%.*s\n",
                    (int)K2P_MIN(q->query_len, 400), q->query, (int)K2P_MIN(q->body_len, 400),
                    q->body ? q->body : "");
        return true;
    }
    r->content_type = "application/x-amz-json-1.1";
    return false;
}

static const char *const fault_names[MOCK_F_DRAWN + 1] = {"throttle", "error500", "reset",
                                                          "truncate", "expire",   "none"};

void mock_api_handle(void *ud, const mock_req *q, mock_resp *r)
{
    mock_server *srv = ud;
    mock_fault_cfg cfg;
    mock_fault fault = MOCK_F_NONE;
    mock_op op;
    cJSON *in = NULL;
    const char *dot;

    mock_stat_add(&srv->ctl.stats.http_requests, 1);
    if (handle_test_endpoint(srv, q, r))
        return;
    dot = memchr(q->target, '.', q->target_len);
    if (!method_is(q, "POST") || !dot || (size_t)(dot - q->target) != 16 ||
        memcmp(q->target, "Kinesis_20131202", 16) != 0)
        op = MOCK_OP_UNKNOWN;
    else
        op = mock_op_from_name(dot + 1, q->target_len - 17);
    mock_stat_add(&srv->ctl.stats.ops[op], 1);
    mock_ctl_snapshot(&srv->ctl, &cfg);
    if (op == MOCK_OP_UNKNOWN) {
        api_error(r, 400, "UnknownOperationException", "Unknown operation %.*s",
                  (int)K2P_MIN(q->target_len, 100), q->target);
        goto done;
    }
    if (cfg.latency_ms > 0) {
        r->delay_ms = cfg.latency_ms;
        mock_stat_add(&srv->ctl.stats.faults[MOCK_S_LATENCY], 1);
    }
    fault = mock_ctl_decide(&srv->ctl, &cfg, op);
    switch (fault) {
    case MOCK_F_THROTTLE:
        api_error(r, 400, "ProvisionedThroughputExceededException",
                  "Rate exceeded (injected by mock_kinesis)");
        goto done;
    case MOCK_F_ERROR500:
        api_error(r, 500, "InternalFailure", "Internal service failure (injected by mock_kinesis)");
        goto done;
    case MOCK_F_RESET:
        r->action = MOCK_ACT_RESET;
        goto done;
    case MOCK_F_EXPIRE:
        api_error(r, 400, "ExpiredIteratorException",
                  "Iterator expired (injected by mock_kinesis).");
        goto done;
    case MOCK_F_TRUNCATE: /* the operation runs; its answer is cut short below */
    default:
        break;
    }
    in = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    if (!cJSON_IsObject(in)) {
        api_error(r, 400, "SerializationException", "the request body is not a JSON object");
        goto done;
    }
    switch (op) {
    case MOCK_OP_CREATE_STREAM:
        op_create_stream(srv, in, r);
        break;
    case MOCK_OP_DELETE_STREAM:
        op_delete_stream(srv, in, r);
        break;
    case MOCK_OP_DESCRIBE_STREAM:
        op_describe_stream(srv, in, r);
        break;
    case MOCK_OP_DESCRIBE_STREAM_SUMMARY:
        op_describe_stream_summary(srv, in, r);
        break;
    case MOCK_OP_LIST_STREAMS:
        op_list_streams(srv, in, r);
        break;
    case MOCK_OP_LIST_SHARDS:
        op_list_shards(srv, in, r);
        break;
    case MOCK_OP_GET_SHARD_ITERATOR:
        op_get_shard_iterator(srv, in, r);
        break;
    case MOCK_OP_GET_RECORDS:
        op_get_records(srv, &cfg, in, r);
        break;
    case MOCK_OP_PUT_RECORD:
        op_put_record(srv, &cfg, in, r);
        break;
    case MOCK_OP_PUT_RECORDS:
        op_put_records(srv, &cfg, in, r);
        break;
    case MOCK_OP_SPLIT_SHARD:
        op_split_shard(srv, in, r);
        break;
    case MOCK_OP_MERGE_SHARDS:
        op_merge_shards(srv, in, r);
        break;
    case MOCK_OP_REGISTER_STREAM_CONSUMER:
        mock_efo_register(srv, &cfg, in, r);
        break;
    case MOCK_OP_DESCRIBE_STREAM_CONSUMER:
        mock_efo_describe(srv, &cfg, in, r);
        break;
    case MOCK_OP_LIST_STREAM_CONSUMERS:
        mock_efo_list(srv, &cfg, in, r);
        break;
    case MOCK_OP_DEREGISTER_STREAM_CONSUMER:
        mock_efo_deregister(srv, &cfg, in, r);
        break;
    case MOCK_OP_SUBSCRIBE_TO_SHARD:
        /* A drawn truncate cuts the event stream, not the HTTP answer. */
        mock_efo_subscribe(srv, &cfg, q, in, fault == MOCK_F_TRUNCATE, r);
        break;
    default:
        break;
    }
    if (fault == MOCK_F_TRUNCATE && op != MOCK_OP_SUBSCRIBE_TO_SHARD)
        r->action = MOCK_ACT_TRUNCATE;
done:
    cJSON_Delete(in);
    if (r->status >= 500)
        mock_stat_add(&srv->ctl.stats.status_5xx, 1);
    else if (r->status >= 400)
        mock_stat_add(&srv->ctl.stats.status_4xx, 1);
    if (srv->log_requests)
        fprintf(stderr, "mock_kinesis: op=%s status=%d fault=%s error=%s bytes=%zu\n",
                mock_op_name(op), r->status,
                fault_names[op == MOCK_OP_UNKNOWN ? MOCK_F_NONE : fault],
                r->error_type ? r->error_type : "-", r->body->len);
}

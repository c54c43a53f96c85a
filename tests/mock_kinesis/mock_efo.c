/* mock_efo.c - enhanced fan-out in mock_kinesis: RegisterStreamConsumer,
 * DescribeStreamConsumer, ListStreamConsumers, DeregisterStreamConsumer, and SubscribeToShard
 * as an event stream (application/vnd.amazon.eventstream) pushed over HTTP/2 (mock_h2.c).
 *
 * A subscription answers 200 with an `initial-response` event, then one SubscribeToShardEvent
 * whenever the shard has records past its position (at most EVENT_MAX_BYTES of them per
 * event), or an empty one every HEARTBEAT_MS. Each event carries MillisBehindLatest and the
 * ContinuationSequenceNumber to resubscribe AFTER; the end of a closed shard is an event with
 * ChildShards and no ContinuationSequenceNumber, then the end of the stream. A subscription
 * ends silently after subscription_ms (AWS: 5 minutes). Errors found after the 200 (unknown
 * consumer or shard, a second subscription) are `exception` messages, as AWS sends them.
 *
 * Threading: the operations run on any HTTP worker (store lock as they need it); a
 * subscription's tick and free run on the worker that owns its connection. The registry of
 * active subscriptions has its own mutex, never taken with the store lock held.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/event_stream.h"
#include "mock_api.h"

#define EVENT_MAX_BYTES ((size_t)1 << 20) /* record fragments per event (at least one record) */
#define EVENT_MAX_RECORDS 10000
#define HEARTBEAT_MS 5000
#define LIST_DEFAULT 100
#define ARN_MAX 600

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void not_null(mock_resp *r, const char *member)
{
    mock_api_error(r, 400, "ValidationException",
                   "1 validation error detected: Value null at '%s' failed to satisfy "
                   "constraint: Member must not be null",
                   member);
}

static void oom(mock_resp *r)
{
    mock_api_error(r, 500, "InternalFailure", "mock_kinesis ran out of memory");
}

static int put_stream_arn(k2p_buf *b, const char *name)
{
    return k2p_buf_printf(b, "\"arn:aws:kinesis:" MOCK_REGION ":" MOCK_ACCOUNT ":stream/%s\"",
                          name);
}

/* The stream name of a stream ARN; -1 after answering. */
static int stream_of_arn(const char *arn, char out[MOCK_NAME_MAX + 1], mock_resp *r)
{
    const char *sl = arn ? strstr(arn, ":stream/") : NULL;
    if (!arn) {
        not_null(r, "streamARN");
        return -1;
    }
    if (!sl || strchr(sl + 8, '/') || !mock_stream_name_valid(sl + 8)) {
        mock_api_error(r, 400, "ValidationException",
                       "1 validation error detected: Value '%.200s' at 'streamARN' failed to "
                       "satisfy constraint: Member must satisfy regular expression pattern: "
                       "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                       arn);
        return -1;
    }
    snprintf(out, MOCK_NAME_MAX + 1, "%s", sl + 8);
    return 0;
}

static void stream_not_found(mock_resp *r, const char *name)
{
    mock_api_error(r, 400, "ResourceNotFoundException",
                   "Stream %s under account " MOCK_ACCOUNT " not found.", name);
}

/* {"ConsumerName":...,"ConsumerARN":...,"ConsumerStatus":...,"ConsumerCreationTimestamp":...} */
static int put_consumer(k2p_buf *b, const mock_stream *s, const mock_consumer *c, int64_t now_ms,
                        int64_t delay_ms, bool with_stream)
{
    char arn[ARN_MAX];
    int rc;
    mock_consumer_arn(s, c, arn, sizeof arn);
    rc = k2p_buf_puts(b, "{\"ConsumerName\":");
    rc |= k2p_buf_put_json_str(b, c->name, strlen(c->name));
    rc |= k2p_buf_puts(b, ",\"ConsumerARN\":");
    rc |= k2p_buf_put_json_str(b, arn, strlen(arn));
    rc |= k2p_buf_printf(b, ",\"ConsumerStatus\":\"%s\",\"ConsumerCreationTimestamp\":%lld.%03lld",
                         mock_consumer_state_name(mock_consumer_status(c, now_ms, delay_ms)),
                         (long long)(c->create_ms / 1000), (long long)(c->create_ms % 1000));
    if (with_stream) {
        rc |= k2p_buf_puts(b, ",\"StreamARN\":");
        rc |= put_stream_arn(b, s->name);
    }
    rc |= k2p_buf_putc(b, '}');
    return rc;
}

/* ---- consumer operations -------------------------------------------------------------------- */

void mock_efo_register(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const char *cname = jstr(in, "ConsumerName");
    int64_t now = mock_wall_ms();
    mock_stream *s;
    mock_consumer *c = NULL;
    int rc = 0;

    if (stream_of_arn(jstr(in, "StreamARN"), name, r))
        return;
    if (!cname) {
        not_null(r, "consumerName");
        return;
    }
    if (!mock_stream_name_valid(cname)) {
        mock_api_error(r, 400, "ValidationException",
                       "1 validation error detected: Value '%.200s' at 'consumerName' failed to "
                       "satisfy constraint: Member must satisfy regular expression pattern: "
                       "[a-zA-Z0-9_.-]+",
                       cname);
        return;
    }
    pthread_rwlock_wrlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (s)
        rc = mock_stream_add_consumer(s, cname, now, cfg->consumer_delay_ms, &c);
    if (s && rc == 0) {
        if (k2p_buf_puts(r->body, "{\"Consumer\":") ||
            put_consumer(r->body, s, c, now, cfg->consumer_delay_ms, false) ||
            k2p_buf_putc(r->body, '}'))
            oom(r);
    }
    pthread_rwlock_unlock(&srv->store.lock);
    if (!s)
        stream_not_found(r, name);
    else if (rc == K2P_EINUSE)
        mock_api_error(r, 400, "ResourceInUseException",
                       "Consumer %s under stream %s already exists for account " MOCK_ACCOUNT ".",
                       cname, name);
    else if (rc)
        mock_api_error(r, 400, "LimitExceededException",
                       "Stream %s under account " MOCK_ACCOUNT " has already %d consumers.", name,
                       MOCK_CONSUMERS_MAX);
}

/* A consumer named by ConsumerARN, or by StreamARN + ConsumerName. */
typedef struct consumer_ref {
    char stream[MOCK_NAME_MAX + 1];
    char name[MOCK_NAME_MAX + 1];
    int64_t ts;
    bool by_arn;
    const char *shown; /* for messages */
} consumer_ref;

/* 0, or -1 after answering. */
static int consumer_ref_parse(const cJSON *in, consumer_ref *ref, mock_resp *r)
{
    const char *arn = jstr(in, "ConsumerARN"), *sarn = jstr(in, "StreamARN");
    const char *cname = jstr(in, "ConsumerName");
    memset(ref, 0, sizeof *ref);
    if (arn) {
        if (mock_consumer_arn_parse(arn, ref->stream, ref->name, &ref->ts)) {
            mock_api_error(r, 400, "ValidationException",
                           "1 validation error detected: Value '%.200s' at 'consumerARN' failed "
                           "to satisfy constraint: Member must satisfy regular expression "
                           "pattern: ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/"
                           "[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
                           arn);
            return -1;
        }
        ref->by_arn = true;
        ref->shown = arn;
        return 0;
    }
    if (!sarn || !cname) {
        mock_api_error(r, 400, "InvalidArgumentException",
                       "Either ConsumerARN or both StreamARN and ConsumerName must be given.");
        return -1;
    }
    if (stream_of_arn(sarn, ref->stream, r))
        return -1;
    snprintf(ref->name, sizeof ref->name, "%s", cname);
    ref->shown = cname;
    return 0;
}

/* The consumer ref names, not gone, or NULL. @locks store read. */
static mock_consumer *consumer_find(mock_server *srv, const consumer_ref *ref, int64_t now_ms,
                                    int64_t delay_ms, mock_stream **s_out)
{
    mock_stream *s = mock_store_find(&srv->store, ref->stream);
    mock_consumer *c = s ? mock_stream_find_consumer(s, ref->name, now_ms, delay_ms) : NULL;
    if (c && ref->by_arn && c->arn_ts != ref->ts)
        c = NULL;
    *s_out = s;
    return c;
}

static void consumer_not_found(mock_resp *r, const consumer_ref *ref)
{
    mock_api_error(r, 400, "ResourceNotFoundException",
                   "Consumer %.300s, account " MOCK_ACCOUNT " not found.", ref->shown);
}

void mock_efo_describe(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r)
{
    consumer_ref ref;
    mock_stream *s;
    mock_consumer *c;
    int64_t now = mock_wall_ms();
    if (consumer_ref_parse(in, &ref, r))
        return;
    pthread_rwlock_rdlock(&srv->store.lock);
    c = consumer_find(srv, &ref, now, cfg->consumer_delay_ms, &s);
    if (c && (k2p_buf_puts(r->body, "{\"ConsumerDescription\":") ||
              put_consumer(r->body, s, c, now, cfg->consumer_delay_ms, true) ||
              k2p_buf_putc(r->body, '}')))
        oom(r);
    pthread_rwlock_unlock(&srv->store.lock);
    if (!c)
        consumer_not_found(r, &ref);
}

void mock_efo_deregister(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r)
{
    consumer_ref ref;
    mock_stream *s;
    mock_consumer *c;
    int64_t now = mock_wall_ms();
    if (consumer_ref_parse(in, &ref, r))
        return;
    pthread_rwlock_wrlock(&srv->store.lock);
    c = consumer_find(srv, &ref, now, cfg->consumer_delay_ms, &s);
    if (c && !c->delete_ms) {
        c->delete_ms = now; /* DELETING for consumer_delay_ms, then gone */
        mock_stream_purge_consumers(s, now, cfg->consumer_delay_ms);
    }
    pthread_rwlock_unlock(&srv->store.lock);
    if (!c)
        consumer_not_found(r, &ref);
}

void mock_efo_list(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r)
{
    char name[MOCK_NAME_MAX + 1];
    const char *token = jstr(in, "NextToken");
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(in, "MaxResults");
    int64_t max = LIST_DEFAULT, now = mock_wall_ms();
    uint64_t start = 0;
    const mock_stream *s;
    size_t i, shown = 0;
    int rc = 0;

    if (stream_of_arn(jstr(in, "StreamARN"), name, r))
        return;
    if (mr && !cJSON_IsNull(mr)) {
        if (!cJSON_IsNumber(mr) || mr->valuedouble != floor(mr->valuedouble) ||
            mr->valuedouble < 1 || mr->valuedouble > 10000) {
            mock_api_error(r, 400, "ValidationException",
                           "1 validation error detected: Value at 'maxResults' failed to "
                           "satisfy constraint: Member must have value between 1 and 10000");
            return;
        }
        max = (int64_t)mr->valuedouble;
    }
    if (token) {
        mock_token t;
        if (mock_token_decode(&srv->store, 'C', token, strlen(token), &t) ||
            strcmp(t.stream, name) != 0) {
            mock_api_error(r, 400, "InvalidArgumentException", "Invalid NextToken.");
            return;
        }
        if (now - t.issued_ms > 300000) {
            mock_api_error(r, 400, "ExpiredNextTokenException", "The NextToken has expired.");
            return;
        }
        start = t.pos;
    }
    pthread_rwlock_rdlock(&srv->store.lock);
    s = mock_store_find(&srv->store, name);
    if (!s) {
        pthread_rwlock_unlock(&srv->store.lock);
        stream_not_found(r, name);
        return;
    }
    rc |= k2p_buf_puts(r->body, "{\"Consumers\":[");
    for (i = (size_t)K2P_MIN(start, (uint64_t)s->n_consumers); i < s->n_consumers; i++) {
        const mock_consumer *c = &s->consumers[i];
        if (mock_consumer_status(c, now, cfg->consumer_delay_ms) == MOCK_CONSUMER_GONE)
            continue;
        if (shown == (size_t)max)
            break;
        if (shown++)
            rc |= k2p_buf_putc(r->body, ',');
        rc |= put_consumer(r->body, s, c, now, cfg->consumer_delay_ms, false);
    }
    rc |= k2p_buf_putc(r->body, ']');
    if (i < s->n_consumers) {
        char tok[MOCK_TOKEN_MAX];
        mock_token t = {0};
        t.kind = 'C';
        t.gen = s->gen;
        t.pos = i;
        t.issued_ms = now;
        snprintf(t.stream, sizeof t.stream, "%s", s->name);
        mock_token_encode(&srv->store, &t, tok);
        rc |= k2p_buf_printf(r->body, ",\"NextToken\":\"%s\"", tok);
    }
    rc |= k2p_buf_putc(r->body, '}');
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc)
        oom(r);
}

/* ---- the registry of active subscriptions ------------------------------------------------- */

int mock_efo_init(mock_server *srv)
{
    memset(&srv->subs, 0, sizeof srv->subs);
    atomic_init(&srv->subs.next_id, 1);
    return pthread_mutex_init(&srv->subs.lock, NULL) ? K2P_ENOMEM : 0;
}

void mock_efo_deinit(mock_server *srv)
{
    free(srv->subs.v);
    srv->subs.v = NULL;
    srv->subs.n = srv->subs.cap = 0;
    pthread_mutex_destroy(&srv->subs.lock);
}

/* Makes `id` the active subscription of key. 0; K2P_EINUSE when another one is active and
 * started less than takeover_ms ago; K2P_ENOMEM. *took_over: an older one was displaced. */
static int reg_claim(mock_sub_registry *g, const char *key, uint64_t id, int64_t now_ms,
                     int64_t takeover_ms, bool *took_over)
{
    int rc = 0;
    *took_over = false;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        if (strcmp(g->v[i].key, key) != 0)
            continue;
        if (now_ms - g->v[i].started_ms < takeover_ms) {
            rc = K2P_EINUSE;
        } else {
            g->v[i].owner = id;
            g->v[i].started_ms = now_ms;
            *took_over = true;
        }
        pthread_mutex_unlock(&g->lock);
        return rc;
    }
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 16;
        mock_sub_entry *nv = realloc(g->v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&g->lock);
            return K2P_ENOMEM;
        }
        g->v = nv;
        g->cap = nc;
    }
    snprintf(g->v[g->n].key, sizeof g->v[g->n].key, "%s", key);
    g->v[g->n].owner = id;
    g->v[g->n].started_ms = now_ms;
    g->n++;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static bool reg_owns(mock_sub_registry *g, const char *key, uint64_t id)
{
    bool owns = false;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        if (strcmp(g->v[i].key, key) == 0) {
            owns = g->v[i].owner == id;
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return owns;
}

static void reg_release(mock_sub_registry *g, const char *key, uint64_t id)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        if (strcmp(g->v[i].key, key) == 0 && g->v[i].owner == id) {
            g->v[i] = g->v[--g->n];
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
}

/* ---- event-stream messages ---------------------------------------------------------------- */

static int put_event(k2p_buf *out, const char *type, const void *payload, size_t len)
{
    k2p_es_header h[3] = {
        k2p_es_header_string(":event-type", type),
        k2p_es_header_string(":content-type", "application/json"),
        k2p_es_header_string(":message-type", "event"),
    };
    return k2p_es_encode_message(out, h, 3, payload, len);
}

static int put_exception(k2p_buf *out, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int put_exception(k2p_buf *out, const char *type, const char *fmt, ...)
{
    char msg[700];
    k2p_buf p;
    va_list ap;
    int rc;
    k2p_es_header h[3] = {
        k2p_es_header_string(":exception-type", type),
        k2p_es_header_string(":content-type", "application/json"),
        k2p_es_header_string(":message-type", "exception"),
    };
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    k2p_buf_init(&p, 0);
    rc = k2p_buf_puts(&p, "{\"message\":") || k2p_buf_put_json_str(&p, msg, strlen(msg)) ||
         k2p_buf_putc(&p, '}');
    if (!rc)
        rc = k2p_es_encode_message(out, h, 3, p.data, p.len);
    k2p_buf_deinit(&p);
    return rc;
}

static int put_error(k2p_buf *out, const char *code, const char *msg)
{
    k2p_es_header h[3] = {
        k2p_es_header_string(":error-code", code),
        k2p_es_header_string(":error-message", msg),
        k2p_es_header_string(":message-type", "error"),
    };
    return k2p_es_encode_message(out, h, 3, NULL, 0);
}

/* Answers 200 with a single exception message (no initial-response), as AWS does for errors
 * it finds once the stream is open. */
static void stream_exception(mock_resp *r, const char *type, const char *fmt, const char *a,
                             const char *b)
{
    r->content_type = "application/vnd.amazon.eventstream";
    k2p_buf_reset(r->body);
    if (put_exception(r->body, type, fmt, a, b))
        oom(r);
}

/* ---- SubscribeToShard ----------------------------------------------------------------------- */

typedef struct efo_sub {
    mock_server *srv;
    uint64_t id;
    char key[MOCK_NAME_MAX * 2 + 64];
    char stream[MOCK_NAME_MAX + 1];
    char consumer[MOCK_NAME_MAX + 1];
    char arn[ARN_MAX];
    uint64_t gen;
    uint32_t shard_ix;
    uint64_t pos;   /* next record position to send */
    int64_t end_ms; /* wall time the subscription ends */
    int64_t last_event_ms;
    bool truncate; /* the first event goes out half, then the stream ends */
    k2p_buf payload;
} efo_sub;

static void sub_free(void *p)
{
    efo_sub *u = p;
    reg_release(&u->srv->subs, u->key, u->id);
    atomic_fetch_sub_explicit(&u->srv->ctl.stats.subs_open, 1, memory_order_relaxed);
    k2p_buf_deinit(&u->payload);
    free(u);
}

/* Builds the next SubscribeToShardEvent payload into u->payload. *n_out records from u->pos;
 * *data_bytes their size. 1 when there is an event to send, 0 when not yet, -1 when the stream,
 * consumer or shard is gone (an exception is in out). @locks store read. */
static int build_event(efo_sub *u, const mock_fault_cfg *cfg, int64_t now_ms, k2p_buf *out,
                       size_t *n_out, size_t *data_bytes, bool *shard_end)
{
    mock_server *srv = u->srv;
    mock_stream *s = mock_store_find(&srv->store, u->stream);
    const mock_consumer *c;
    const mock_shard *sh;
    size_t n, pos, end, bytes = 0;
    k2p_buf *b = &u->payload;
    int rc = 0;

    *n_out = *data_bytes = 0;
    *shard_end = false;
    if (!s || s->gen != u->gen || u->shard_ix >= s->n_shards) {
        put_exception(out, "ResourceNotFoundException",
                      "Stream %s under account " MOCK_ACCOUNT " not found.", u->stream);
        return -1;
    }
    c = mock_stream_find_consumer(s, u->consumer, now_ms, cfg->consumer_delay_ms);
    if (!c || mock_consumer_status(c, now_ms, cfg->consumer_delay_ms) != MOCK_CONSUMER_ACTIVE) {
        put_exception(out, "ResourceNotFoundException",
                      "Consumer %s, account " MOCK_ACCOUNT " not found.", u->arn);
        return -1;
    }
    sh = s->shards[u->shard_ix];
    n = sh->n;
    pos = u->pos < n ? (size_t)u->pos : n;
    if (pos == n && !sh->close_ms && now_ms - u->last_event_ms < HEARTBEAT_MS)
        return 0;
    for (end = pos; end < n && end - pos < EVENT_MAX_RECORDS; end++) {
        if (end > pos && bytes + sh->recs[end].len > EVENT_MAX_BYTES)
            break;
        bytes += sh->recs[end].len + 1;
        *data_bytes += sh->recs[end].data_len;
    }
    k2p_buf_reset(b);
    if (k2p_buf_reserve(b, bytes + 1024))
        return K2P_ENOMEM;
    rc |= k2p_buf_puts(b, "{\"Records\":[");
    for (size_t i = pos; i < end; i++) {
        if (i > pos)
            rc |= k2p_buf_putc(b, ',');
        rc |= k2p_buf_append(b, mock_rec_frag(s, &sh->recs[i]), sh->recs[i].len);
    }
    rc |= k2p_buf_printf(
        b, "],\"MillisBehindLatest\":%lld",
        end == n ? 0LL : (long long)(sh->recs[n - 1].arrival_ms - sh->recs[end - 1].arrival_ms));
    if (sh->close_ms && end == n) {
        /* The shard is closed and all of it is delivered: no continuation, its children. */
        *shard_end = true;
        rc |= mock_api_put_children(b, s, sh);
    } else {
        char seq[MOCK_SEQ_LEN + 1];
        /* AFTER this number is position `end`: the last record's, or the shard's start. */
        if (end)
            mock_seq_format(sh, end, sh->recs[end - 1].arrival_ms, seq);
        else
            mock_shard_start_seq(sh, seq);
        rc |= k2p_buf_printf(b, ",\"ContinuationSequenceNumber\":\"%s\"", seq);
    }
    rc |= k2p_buf_putc(b, '}');
    *n_out = end - pos;
    return rc ? K2P_ENOMEM : 1;
}

static mock_push_rc sub_tick(void *p, k2p_buf *out, int64_t now_ns)
{
    efo_sub *u = p;
    mock_server *srv = u->srv;
    mock_fault_cfg cfg;
    int64_t now = mock_wall_ms();
    size_t n = 0, data_bytes = 0;
    bool shard_end = false;
    int rc;
    (void)now_ns;

    if (!reg_owns(&srv->subs, u->key, u->id)) {
        put_exception(out, "ResourceInUseException",
                      "Another subscription of consumer %s to shard shardId-%012u took over.",
                      u->arn, (unsigned)u->shard_ix);
        return MOCK_PUSH_END;
    }
    if (now >= u->end_ms)
        return MOCK_PUSH_END; /* the subscription's time is over: the stream just ends */
    mock_ctl_snapshot(&srv->ctl, &cfg);
    pthread_rwlock_rdlock(&srv->store.lock);
    rc = build_event(u, &cfg, now, out, &n, &data_bytes, &shard_end);
    pthread_rwlock_unlock(&srv->store.lock);
    if (rc < 0) {
        if (rc == K2P_ENOMEM)
            put_error(out, "InternalFailure", "mock_kinesis ran out of memory");
        return MOCK_PUSH_END;
    }
    if (rc == 0)
        return MOCK_PUSH_MORE;
    if (cfg.sub_reset + cfg.sub_error > 0) {
        double x = mock_ctl_uniform(&srv->ctl);
        if (x < cfg.sub_reset) {
            mock_stat_add(&srv->ctl.stats.faults[MOCK_S_SUB_RESET], 1);
            fprintf(stderr, "mock_kinesis: event=sub_reset consumer=%s shard=%u pos=%llu\n",
                    u->consumer, (unsigned)u->shard_ix, (unsigned long long)u->pos);
            return MOCK_PUSH_RESET_CONN;
        }
        if (x < cfg.sub_reset + cfg.sub_error) {
            mock_stat_add(&srv->ctl.stats.faults[MOCK_S_SUB_ERROR], 1);
            put_error(out, "InternalFailure",
                      "Internal service failure (injected by mock_kinesis)");
            return MOCK_PUSH_END;
        }
    }
    if (u->truncate) {
        k2p_buf whole;
        k2p_buf_init(&whole, 0);
        if (put_event(&whole, "SubscribeToShardEvent", u->payload.data, u->payload.len) == 0)
            k2p_buf_append(out, whole.data, whole.len / 2);
        k2p_buf_deinit(&whole);
        return MOCK_PUSH_END;
    }
    if (put_event(out, "SubscribeToShardEvent", u->payload.data, u->payload.len)) {
        put_error(out, "InternalFailure", "mock_kinesis could not encode an event");
        return MOCK_PUSH_END;
    }
    u->pos += n;
    u->last_event_ms = now;
    mock_stat_add(&srv->ctl.stats.sub_events, 1);
    if (n) {
        uint64_t served =
            atomic_fetch_add_explicit(&srv->ctl.stats.records_served, n, memory_order_relaxed) + n;
        mock_stat_add(&srv->ctl.stats.bytes_served, data_bytes);
        mock_api_maybe_reshard(srv, &cfg, served);
    }
    return shard_end ? MOCK_PUSH_END : MOCK_PUSH_MORE;
}

static const mock_push_ops sub_ops = {sub_tick, sub_free};

void mock_efo_subscribe(mock_server *srv, const mock_fault_cfg *cfg, const mock_req *q,
                        const cJSON *in, bool truncate, mock_resp *r)
{
    const char *arn = jstr(in, "ConsumerARN"), *shard_id = jstr(in, "ShardId");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(in, "StartingPosition");
    const char *type = cJSON_IsObject(sp) ? jstr(sp, "Type") : NULL;
    const char *seq = cJSON_IsObject(sp) ? jstr(sp, "SequenceNumber") : NULL;
    const cJSON *ts = cJSON_IsObject(sp) ? cJSON_GetObjectItemCaseSensitive(sp, "Timestamp") : NULL;
    consumer_ref ref;
    mock_stream *s;
    mock_consumer *c;
    efo_sub *u;
    int64_t now = mock_wall_ms();
    int ti, ix = -1, rc;
    uint64_t pos = 0;
    int64_t arn_ts = 0;
    bool took_over;

    if (!q->http2) {
        mock_api_error(r, 400, "InvalidArgumentException",
                       "SubscribeToShard is only served over HTTP/2.");
        return;
    }
    if (!arn || !shard_id || !type) {
        not_null(r, !arn ? "consumerARN" : !shard_id ? "shardId" : "startingPosition.type");
        return;
    }
    if (consumer_ref_parse(in, &ref, r))
        return;
    if ((ti = mock_api_iter_type(type, seq, ts, "startingPosition.type", r)) < 0)
        return;
    u = calloc(1, sizeof *u);
    if (!u) {
        oom(r);
        return;
    }
    pthread_rwlock_rdlock(&srv->store.lock);
    c = consumer_find(srv, &ref, now, cfg->consumer_delay_ms, &s);
    if (c && mock_consumer_status(c, now, cfg->consumer_delay_ms) == MOCK_CONSUMER_ACTIVE)
        ix = mock_stream_resolve_shard(s, shard_id);
    if (ix >= 0) {
        if (mock_api_seek(s->shards[ix], ti, seq, ts, s->name, &pos, r) == 0) {
            u->gen = s->gen;
            u->shard_ix = (uint32_t)ix;
            arn_ts = c->arn_ts;
        } else {
            ix = -2; /* answered */
        }
    }
    pthread_rwlock_unlock(&srv->store.lock);
    if (ix < 0) {
        free(u);
        if (ix == -2)
            return;
        if (!c)
            stream_exception(r, "ResourceNotFoundException",
                             "Consumer %s, account " MOCK_ACCOUNT " not found.%s", arn, "");
        else if (!s || mock_stream_resolve_shard(s, shard_id) < 0)
            stream_exception(r, "ResourceNotFoundException",
                             "Shard %s in stream %s under account " MOCK_ACCOUNT " does not exist",
                             shard_id, ref.stream);
        else
            stream_exception(r, "ResourceInUseException", "Consumer %s is not ACTIVE.%s", arn, "");
        return;
    }
    u->srv = srv;
    u->id = atomic_fetch_add_explicit(&srv->subs.next_id, 1, memory_order_relaxed);
    u->pos = pos;
    u->end_ms = now + cfg->subscription_ms;
    u->last_event_ms = 0; /* the first tick sends an event at once, even an empty one */
    u->truncate = truncate;
    snprintf(u->stream, sizeof u->stream, "%s", ref.stream);
    snprintf(u->consumer, sizeof u->consumer, "%s", ref.name);
    snprintf(u->arn, sizeof u->arn, "%s", arn);
    snprintf(u->key, sizeof u->key, "%llu/%s/%lld/%u", (unsigned long long)u->gen, ref.name,
             (long long)arn_ts, (unsigned)u->shard_ix);
    k2p_buf_init(&u->payload, 0);
    rc = reg_claim(&srv->subs, u->key, u->id, now, cfg->takeover_ms, &took_over);
    if (rc) {
        k2p_buf_deinit(&u->payload);
        free(u);
        if (rc == K2P_EINUSE) {
            mock_stat_add(&srv->ctl.stats.sub_in_use, 1);
            stream_exception(r, "ResourceInUseException",
                             "Another active subscription exists for consumer %s and shard %s.",
                             arn, shard_id);
        } else {
            oom(r);
        }
        return;
    }
    if (took_over)
        mock_stat_add(&srv->ctl.stats.sub_takeovers, 1);
    mock_stat_add(&srv->ctl.stats.subs_started, 1);
    atomic_fetch_add_explicit(&srv->ctl.stats.subs_open, 1, memory_order_relaxed);
    r->content_type = "application/vnd.amazon.eventstream";
    if (put_event(r->body, "initial-response", "{}", 2)) {
        sub_free(u);
        oom(r);
        return;
    }
    r->push_ops = &sub_ops;
    r->push = u;
}

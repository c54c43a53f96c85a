/* kinesis_subscribe.c - enhanced fan-out: stream consumers, and SubscribeToShard over HTTP/2
 * streamed through the event-stream decoder.
 *
 * Consumer calls borrow kinesis_client.c's signed call and retry loop (through
 * kinesis_client_internal.h). A subscription has its own CURL handle: the transfer lasts
 * minutes, its body is a stream of event-stream messages, and HTTP/2 is required. The signing
 * below mirrors kinesis_client.c's call_once (same headers, same SigV4).
 *
 * Threading: a k2p_subscription belongs to one thread; the user's callback runs on it, inside
 * libcurl's write callback.
 */
#include "kinesis2pg/kinesis_subscribe.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kinesis2pg/event_stream.h"
#include "kinesis2pg/seqnum.h"
#include "kinesis_client_internal.h"

#define SUB_ERRBODY_MAX (64u << 10) /* a non-stream (error) answer: keep this much */
#define SUB_SHARD_END 2             /* internal stop code: the shard-end event was delivered */
#define SUB_EINUSE_MIN_SLEEP_MS 1000 /* a new subscription within 5 s of the last is refused */

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = src ? strlen(src) : 0;
    if (l >= n)
        l = n - 1;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

/* ==== consumers ============================================================================ */

void k2p_consumer_list_deinit(k2p_consumer_list *l)
{
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

static int oom(k2p_err *err)
{
    return k2p_err_set(err, K2P_ENOMEM, "out of memory building a Kinesis request");
}

/* Fills out from a Consumer / ConsumerDescription object; K2P_EPARSE without name and ARN. */
static int consumer_from_json(const cJSON *o, k2p_consumer *out)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "ConsumerName"));
    const char *arn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "ConsumerARN"));
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "ConsumerCreationTimestamp");
    memset(out, 0, sizeof *out);
    if (!name || !arn)
        return K2P_EPARSE;
    copy_str(out->name, sizeof out->name, name);
    copy_str(out->arn, sizeof out->arn, arn);
    copy_str(out->status, sizeof out->status,
             cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "ConsumerStatus")));
    out->created_at = cJSON_IsNumber(ts) ? ts->valuedouble : 0;
    return 0;
}

/* Calls op with body b; parses the answer's object member `member` into out. */
static int consumer_call(k2p_kinesis *k, const char *op, const char *what, const k2p_buf *b,
                         const char *member, k2p_consumer *out, k2p_err *err)
{
    const char *resp;
    size_t len;
    cJSON *root;
    int rc = k2p_kinesis_call_json(k, op, what, b->data, b->len, &resp, &len, err);
    if (rc)
        return rc;
    root = cJSON_ParseWithLength(resp, len);
    if (!out) {
        cJSON_Delete(root);
        return 0;
    }
    rc = consumer_from_json(cJSON_GetObjectItemCaseSensitive(root, member), out);
    cJSON_Delete(root);
    if (rc)
        return k2p_err_set(err, K2P_EPARSE, "%s: %s answered without a consumer", what, op);
    return 0;
}

int k2p_kinesis_register_consumer(k2p_kinesis *k, const char *stream_arn, const char *name,
                                  k2p_consumer *out, k2p_err *err)
{
    char what[300];
    k2p_buf b;
    int rc;
    snprintf(what, sizeof what, "consumer '%s'", name);
    k2p_buf_init(&b, 0);
    if (k2p_buf_puts(&b, "{\"StreamARN\":") ||
        k2p_buf_put_json_str(&b, stream_arn, strlen(stream_arn)) ||
        k2p_buf_puts(&b, ",\"ConsumerName\":") || k2p_buf_put_json_str(&b, name, strlen(name)) ||
        k2p_buf_putc(&b, '}'))
        rc = oom(err);
    else
        rc = consumer_call(k, "RegisterStreamConsumer", what, &b, "Consumer", out, err);
    k2p_buf_deinit(&b);
    return rc;
}

int k2p_kinesis_describe_consumer(k2p_kinesis *k, const char *consumer_arn,
                                  const char *stream_arn, const char *name, k2p_consumer *out,
                                  k2p_err *err)
{
    char what[300];
    k2p_buf b;
    int rc;
    snprintf(what, sizeof what, "consumer '%s'", consumer_arn ? consumer_arn : name);
    k2p_buf_init(&b, 0);
    if (consumer_arn)
        rc = k2p_buf_puts(&b, "{\"ConsumerARN\":") ||
             k2p_buf_put_json_str(&b, consumer_arn, strlen(consumer_arn));
    else
        rc = k2p_buf_puts(&b, "{\"StreamARN\":") ||
             k2p_buf_put_json_str(&b, stream_arn, strlen(stream_arn)) ||
             k2p_buf_puts(&b, ",\"ConsumerName\":") ||
             k2p_buf_put_json_str(&b, name, strlen(name));
    if (rc || k2p_buf_putc(&b, '}'))
        rc = oom(err);
    else
        rc = consumer_call(k, "DescribeStreamConsumer", what, &b, "ConsumerDescription", out,
                           err);
    k2p_buf_deinit(&b);
    return rc;
}

int k2p_kinesis_deregister_consumer(k2p_kinesis *k, const char *consumer_arn, k2p_err *err)
{
    char what[300];
    k2p_buf b;
    int rc;
    snprintf(what, sizeof what, "consumer '%s'", consumer_arn);
    k2p_buf_init(&b, 0);
    if (k2p_buf_puts(&b, "{\"ConsumerARN\":") ||
        k2p_buf_put_json_str(&b, consumer_arn, strlen(consumer_arn)) || k2p_buf_putc(&b, '}'))
        rc = oom(err);
    else
        rc = consumer_call(k, "DeregisterStreamConsumer", what, &b, NULL, NULL, err);
    k2p_buf_deinit(&b);
    return rc;
}

int k2p_kinesis_list_consumers(k2p_kinesis *k, const char *stream_arn, k2p_consumer_list *out,
                               k2p_err *err)
{
    char what[300], *token = NULL;
    k2p_buf b;
    int rc = 0;

    snprintf(what, sizeof what, "consumers of %s", stream_arn);
    k2p_buf_init(&b, 0);
    do {
        const char *resp;
        size_t len, page = 0;
        cJSON *root;
        const cJSON *arr, *c, *next;

        /* StreamARN is required on every page, NextToken after the first. */
        k2p_buf_reset(&b);
        if (k2p_buf_puts(&b, "{\"StreamARN\":") ||
            k2p_buf_put_json_str(&b, stream_arn, strlen(stream_arn)) ||
            (token && (k2p_buf_puts(&b, ",\"NextToken\":") ||
                       k2p_buf_put_json_str(&b, token, strlen(token)))) ||
            k2p_buf_putc(&b, '}')) {
            rc = oom(err);
            break;
        }
        if ((rc = k2p_kinesis_call_json(k, "ListStreamConsumers", what, b.data, b.len, &resp,
                                        &len, err)))
            break;
        root = cJSON_ParseWithLength(resp, len);
        arr = cJSON_GetObjectItemCaseSensitive(root, "Consumers");
        if (!cJSON_IsArray(arr)) {
            cJSON_Delete(root);
            rc = k2p_err_set(err, K2P_EPARSE, "%s: ListStreamConsumers without Consumers",
                             what);
            break;
        }
        cJSON_ArrayForEach(c, arr)
        {
            if (out->n == out->cap) {
                size_t nc = out->cap ? out->cap * 2 : 8;
                k2p_consumer *ni = realloc(out->items, nc * sizeof *ni);
                if (!ni) {
                    rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
                    break;
                }
                out->items = ni;
                out->cap = nc;
            }
            if (consumer_from_json(c, &out->items[out->n]) == 0) {
                out->n++;
                page++;
            }
        }
        next = cJSON_GetObjectItemCaseSensitive(root, "NextToken");
        /* Some emulators hand out a token on the last page and an empty page after it. */
        if (!rc && cJSON_IsString(next) && *next->valuestring && page &&
            !(token && strcmp(token, next->valuestring) == 0)) {
            free(token);
            if (!(token = k2p_strdup(next->valuestring)))
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        } else {
            free(token);
            token = NULL;
        }
        cJSON_Delete(root);
    } while (!rc && token);
    free(token);
    k2p_buf_deinit(&b);
    return rc;
}

int k2p_kinesis_ensure_consumer(k2p_kinesis *k, const char *stream_arn, const char *name,
                                int timeout_ms, k2p_consumer *out, k2p_err *err)
{
    int64_t deadline;
    int rc;

    if (timeout_ms <= 0)
        timeout_ms = 60000;
    deadline = k2p_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        rc = k2p_kinesis_describe_consumer(k, NULL, stream_arn, name, out, err);
        if (rc == K2P_ENOTFOUND) {
            rc = k2p_kinesis_register_consumer(k, stream_arn, name, out, err);
            if (rc == K2P_EINUSE) /* registered by someone else meanwhile: describe it */
                continue;
        }
        if (rc)
            return rc;
        if (strcmp(out->status, "ACTIVE") == 0)
            return 0;
        if (k2p_now_ns() > deadline)
            return k2p_err_set(err, K2P_EIO,
                               "consumer '%s' of %s not ACTIVE after %d ms (status %s)", name,
                               stream_arn, timeout_ms, out->status);
        if (k2p_kinesis_cancelled(k))
            return k2p_err_set(err, K2P_ERETRY, "consumer '%s': cancelled (stopping)", name);
        k2p_kinesis_sleep_ms(k, 250);
    }
}

/* ==== event payloads ======================================================================= */

/* In a JSON text already validated: the last top-level member `key`. *val is NULL for an
 * absent key or a null value; otherwise the string's raw bytes. -1 when the value is neither
 * a string nor null. */
static int top_level_member(const char *p, size_t n, const char *key, const char **val,
                            size_t *vlen)
{
    size_t i = 0, kl = strlen(key);
    int depth = 0;
    bool expect_key = false;
    *val = NULL;
    *vlen = 0;
    while (i < n) {
        char c = p[i];
        if (c == '"') {
            size_t start = ++i;
            while (i < n && p[i] != '"')
                i += p[i] == '\\' ? 2 : 1;
            if (i >= n)
                return -1;
            i++;
            if (depth == 1 && expect_key) {
                bool match = i - 1 - start == kl && memcmp(p + start, key, kl) == 0;
                expect_key = false;
                while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' ||
                                 p[i] == ':'))
                    i++;
                if (!match)
                    continue;
                if (i < n && p[i] == '"') {
                    size_t vs = ++i;
                    while (i < n && p[i] != '"')
                        i += p[i] == '\\' ? 2 : 1;
                    if (i >= n)
                        return -1;
                    *val = p + vs;
                    *vlen = i - vs;
                    i++;
                } else if (n - i >= 4 && memcmp(p + i, "null", 4) == 0) {
                    *val = NULL;
                    *vlen = 0;
                    i += 4;
                } else {
                    return -1;
                }
            }
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
            expect_key = c == '{' && depth == 1;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        }
        i++;
    }
    return 0;
}

int k2p_kinesis_parse_subscribe_event(const char *payload, size_t len, k2p_records *out,
                                      char cont[132], k2p_err *err)
{
    const char *v;
    size_t vl;
    int rc;

    cont[0] = '\0';
    if ((rc = k2p_kinesis_parse_get_records(payload, len, out, err)))
        return rc;
    if (top_level_member(payload, len, "ContinuationSequenceNumber", &v, &vl) != 0)
        return k2p_err_set(err, K2P_EPARSE,
                           "malformed SubscribeToShardEvent: ContinuationSequenceNumber is not a "
                           "string");
    if (v) {
        if (vl >= 132 || !k2p_seq_valid(v, vl))
            return k2p_err_set(err, K2P_EPARSE,
                               "malformed SubscribeToShardEvent: invalid "
                               "ContinuationSequenceNumber");
        memcpy(cont, v, vl);
        cont[vl] = '\0';
    }
    return 0;
}

/* ==== subscriptions ======================================================================== */

struct k2p_subscription {
    CURL *curl;
    char *url, *host, *region, *ca_file;
    k2p_cred_chain *creds;
    k2p_subscribe_opts opts;
    long connect_timeout_ms;
    bool tls;
    const atomic_bool *cancel;
    uint64_t rng;
    char curl_errbuf[CURL_ERROR_SIZE];
    k2p_es_decoder dec;
    k2p_records recs;
    k2p_buf req;
    k2p_buf errbody;

    /* The call in flight (k2p_subscription_subscribe). */
    k2p_subscribe_cb cb;
    void *ud;
    k2p_subscribe_result *res;
    uint64_t subscription_no;
    int64_t session_deadline_ns;
    bool checked;     /* status and content type looked at */
    bool streaming;   /* 200 with an event stream */
    bool session_over;
    bool cancelled;
    int stop_rc;      /* why the write callback stopped the transfer (0: it did not) */
    k2p_err stop_err; /* its detail */
};

/* Aborts the transfer on shutdown and at the end of the session. Never called while the
 * write callback runs, so a session ends between events. */
static int on_progress(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    k2p_subscription *s = ud;
    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    if (s->cancel && atomic_load(s->cancel)) {
        s->cancelled = true;
        return 1;
    }
    if (s->session_deadline_ns && k2p_now_ns() >= s->session_deadline_ns) {
        s->session_over = true;
        return 1;
    }
    return 0;
}

/* An `exception` message: a modelled error, JSON {"message": ...}. Classified like a JSON 1.1
 * error answer of that type. */
static int stream_exception(k2p_subscription *s, const k2p_es_message *m)
{
    cJSON *root = cJSON_ParseWithLength((const char *)m->payload, m->payload_len);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "message"));
    k2p_buf b;
    int rc;
    k2p_buf_init(&b, 0);
    if (!msg)
        msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "Message"));
    if (k2p_buf_puts(&b, "{\"__type\":") ||
        k2p_buf_put_json_str(&b, m->exception_type, strlen(m->exception_type)) ||
        k2p_buf_puts(&b, ",\"message\":") ||
        k2p_buf_put_json_str(&b, msg ? msg : "", msg ? strlen(msg) : 0) ||
        k2p_buf_putc(&b, '}')) {
        rc = k2p_err_set(&s->stop_err, K2P_ENOMEM, "out of memory");
    } else {
        k2p_err e = {0};
        rc = k2p_kinesis_classify_error(400, b.data, b.len, &e);
        s->stop_err = e;
        k2p_err_set(&s->stop_err, rc, "SubscribeToShard at %s: %s (in the event stream)",
                    s->url, e.msg);
    }
    k2p_buf_deinit(&b);
    cJSON_Delete(root);
    return rc;
}

static int on_message(void *ud, const k2p_es_message *m)
{
    k2p_subscription *s = ud;
    k2p_subscribe_event ev;
    char cont[132];
    int rc;

    switch (m->kind) {
    case K2P_ES_MSG_EVENT:
        break;
    case K2P_ES_MSG_EXCEPTION:
        return stream_exception(s, m);
    case K2P_ES_MSG_ERROR:
        /* A service-side failure of the stream: InternalFailure and the like. */
        return k2p_err_set(&s->stop_err, K2P_ERETRY,
                           "SubscribeToShard at %s: error %s in the event stream: %s", s->url,
                           m->error_code[0] ? m->error_code : "(no code)", m->error_message);
    case K2P_ES_MSG_OTHER:
        return 0; /* a message type newer than this code: not ours to judge */
    case K2P_ES_MSG_NONE:
    default:
        return k2p_err_set(&s->stop_err, K2P_EPARSE,
                           "SubscribeToShard at %s: event-stream message without :message-type",
                           s->url);
    }
    if (strcmp(m->event_type, "SubscribeToShardEvent") != 0)
        return 0; /* "initial-response" (empty), or an event type added later */
    rc = k2p_kinesis_parse_subscribe_event((const char *)m->payload, m->payload_len, &s->recs,
                                           cont, &s->stop_err);
    if (rc) {
        char detail[sizeof s->stop_err.msg];
        memcpy(detail, s->stop_err.msg, sizeof detail);
        return k2p_err_set(&s->stop_err, rc, "SubscribeToShard at %s: %s", s->url, detail);
    }
    ev.records = &s->recs;
    ev.continuation_seq = cont[0] ? cont : NULL;
    ev.shard_end = !cont[0];
    ev.subscription = s->subscription_no;
    rc = s->cb ? s->cb(s->ud, &ev) : 0;
    if (rc > 0)
        rc = K2P_SUB_STOP;
    if (rc < 0) {
        k2p_err_set(&s->stop_err, rc, "SubscribeToShard: the event callback failed (%s)",
                    k2p_strerror(rc));
        return rc;
    }
    /* Taken (0 or K2P_SUB_STOP): the position moves past this event. */
    s->res->events++;
    s->res->records += s->recs.n;
    if (cont[0])
        memcpy(s->res->continuation_seq, cont, sizeof cont);
    if (ev.shard_end) {
        s->res->end = K2P_SUB_END_SHARD;
        return SUB_SHARD_END;
    }
    if (rc == K2P_SUB_STOP) {
        s->res->end = K2P_SUB_END_CALLBACK;
        return K2P_SUB_STOP;
    }
    return 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    k2p_subscription *s = ud;
    size_t n = size * nmemb;
    int rc;

    if (!s->checked) {
        long status = 0;
        char *ct = NULL;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(s->curl, CURLINFO_CONTENT_TYPE, &ct);
        s->checked = true;
        s->streaming = status == 200 && ct &&
                       strncasecmp(ct, "application/vnd.amazon.eventstream", 34) == 0;
        if (s->streaming)
            s->res->subscriptions++;
    }
    if (!s->streaming) {
        /* An error answer (JSON): keep the start of it for the message. */
        size_t room = SUB_ERRBODY_MAX - s->errbody.len;
        k2p_buf_append(&s->errbody, p, n < room ? n : room);
        return n;
    }
    s->res->bytes += n;
    rc = k2p_es_decoder_feed(&s->dec, p, n, on_message, s, &s->stop_err);
    if (rc) {
        if (rc == K2P_EPARSE && s->stop_err.code == K2P_EPARSE &&
            strncmp(s->stop_err.msg, "event-stream: ", 14) == 0) {
            char detail[sizeof s->stop_err.msg];
            memcpy(detail, s->stop_err.msg, sizeof detail);
            k2p_err_set(&s->stop_err, K2P_EPARSE, "SubscribeToShard at %s: %s", s->url, detail);
        }
        s->stop_rc = rc;
        return 0; /* CURLE_WRITE_ERROR: stop the transfer */
    }
    return n;
}

k2p_subscription *k2p_subscription_new(const k2p_kinesis_opts *conn, const k2p_subscribe_opts *sub,
                                       k2p_err *err)
{
    k2p_subscription *s;

    if (!conn || !conn->endpoint || !*conn->endpoint || !conn->region || !*conn->region ||
        !conn->creds) {
        k2p_err_set(err, K2P_ECONFIG, "SubscribeToShard needs an endpoint, a region and "
                                      "credentials");
        return NULL;
    }
    k2p_kinesis_curl_init();
    if (!(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2)) {
        k2p_err_set(err, K2P_ECONFIG,
                    "enhanced fan-out needs HTTP/2, and this libcurl was built without it");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        return NULL;
    }
    if (sub)
        s->opts = *sub;
    if (!s->opts.session_ms)
        s->opts.session_ms = 280000;
    if (!s->opts.idle_ms)
        s->opts.idle_ms = 30000;
    if (!s->opts.max_attempts)
        s->opts.max_attempts = 10;
    if (!s->opts.backoff_base_ms)
        s->opts.backoff_base_ms = 200;
    if (!s->opts.backoff_max_ms)
        s->opts.backoff_max_ms = 5000;
    s->connect_timeout_ms = conn->connect_timeout_ms ? conn->connect_timeout_ms : 5000;
    s->creds = conn->creds;
    s->rng = (uint64_t)k2p_now_ns() ^ ((uint64_t)(uintptr_t)s << 13) ^ 0x2545f4914f6cdd1dull;
    if (!s->rng)
        s->rng = 1;
    k2p_es_decoder_init(&s->dec, s->opts.max_message);
    k2p_records_init(&s->recs);
    k2p_buf_init(&s->req, 1u << 20);
    k2p_buf_init(&s->errbody, SUB_ERRBODY_MAX);
    s->url = k2p_strdup(conn->endpoint);
    s->region = k2p_strdup(conn->region);
    s->ca_file = conn->ca_file ? k2p_strdup(conn->ca_file) : NULL;
    s->curl = curl_easy_init();
    if (!s->url || !s->region || (conn->ca_file && !s->ca_file) || !s->curl) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto fail;
    }
    if (k2p_kinesis_parse_endpoint(conn->endpoint, &s->host, &s->tls, err))
        goto fail;
    if (k2p_kinesis_curl_setup(s->curl, s->url, s->ca_file, s->connect_timeout_ms,
                               s->curl_errbuf, on_progress, s, err))
        goto fail;
    if (curl_easy_setopt(s->curl, CURLOPT_HTTP_VERSION,
                         s->tls ? (long)CURL_HTTP_VERSION_2TLS
                                : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) != CURLE_OK ||
        /* A subscription ends by resetting its stream mid-transfer (session end, shard end,
         * stop); a fresh connection per subscription (one every few minutes) is cheap and
         * keeps a half-finished stream from confusing the next one. */
        curl_easy_setopt(s->curl, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, 0L) != CURLE_OK ||
        /* idle: less than 1 byte/s over idle_ms is a dead connection */
        curl_easy_setopt(s->curl, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_LOW_SPEED_TIME,
                         (s->opts.idle_ms + 999) / 1000) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, s) != CURLE_OK) {
        k2p_err_set(err, K2P_EIO, "libcurl refused an HTTP/2 option for endpoint %s", s->url);
        goto fail;
    }
    return s;
fail:
    k2p_subscription_free(s);
    return NULL;
}

void k2p_subscription_free(k2p_subscription *s)
{
    if (!s)
        return;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    free(s->url);
    free(s->host);
    free(s->region);
    free(s->ca_file);
    k2p_es_decoder_deinit(&s->dec);
    k2p_records_deinit(&s->recs);
    k2p_buf_deinit(&s->req);
    k2p_buf_deinit(&s->errbody);
    free(s);
}

void k2p_subscription_set_cancel_flag(k2p_subscription *s, const atomic_bool *flag)
{
    s->cancel = flag;
}

/* The request body for SubscribeToShard into s->req. */
static int build_request(k2p_subscription *s, const char *consumer_arn, const char *shard_id,
                         const k2p_iter_start *start, k2p_err *err)
{
    k2p_buf *b = &s->req;
    k2p_buf_reset(b);
    if (k2p_buf_puts(b, "{\"ConsumerARN\":") ||
        k2p_buf_put_json_str(b, consumer_arn, strlen(consumer_arn)) ||
        k2p_buf_puts(b, ",\"ShardId\":") || k2p_buf_put_json_str(b, shard_id, strlen(shard_id)) ||
        k2p_buf_printf(b, ",\"StartingPosition\":{\"Type\":\"%s\"",
                       k2p_iter_type_name(start->type)))
        return oom(err);
    if (start->type == K2P_ITER_AT_SEQUENCE_NUMBER ||
        start->type == K2P_ITER_AFTER_SEQUENCE_NUMBER) {
        if (!start->seq)
            return k2p_err_set(err, K2P_EINVAL, "shard %s: %s needs a sequence number",
                               shard_id, k2p_iter_type_name(start->type));
        if (k2p_buf_puts(b, ",\"SequenceNumber\":") ||
            k2p_buf_put_json_str(b, start->seq, strlen(start->seq)))
            return oom(err);
    } else if (start->type == K2P_ITER_AT_TIMESTAMP) {
        int64_t us = start->timestamp_us < 0 ? 0 : start->timestamp_us;
        if (k2p_buf_printf(b, ",\"Timestamp\":%lld.%06lld", (long long)(us / 1000000),
                           (long long)(us % 1000000)))
            return oom(err);
    }
    return k2p_buf_puts(b, "}}") ? oom(err) : 0;
}

/* Signs s->req; *hl receives the header list to send (caller frees). */
static int sign_request(k2p_subscription *s, struct curl_slist **hl, k2p_err *err)
{
    return k2p_kinesis_sign_json(s->creds, s->host, s->region, "SubscribeToShard", s->req.data,
                                 s->req.len, hl, err);
}

/* A failed transfer (no write-callback stop, no session end) into a K2P_E* code. */
static int classify_curl(k2p_subscription *s, CURLcode cc, const char *what, k2p_err *err)
{
    const char *detail = s->curl_errbuf[0] ? s->curl_errbuf : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
        return k2p_err_set(err, K2P_EFATAL,
                           "%s: SubscribeToShard: TLS verification failed for endpoint %s: %s "
                           "(give the CA with --ca-file if it is a private one)",
                           what, s->url, detail);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return k2p_err_set(err, K2P_ECONFIG, "%s: SubscribeToShard: endpoint %s: %s", what,
                           s->url, detail);
    case CURLE_OPERATION_TIMEDOUT:
        return k2p_err_set(err, K2P_ERETRY,
                           "%s: SubscribeToShard at %s: nothing received for %ld ms (%s)", what,
                           s->url, s->opts.idle_ms, detail);
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return k2p_err_set(err, K2P_ERETRY,
                           "%s: SubscribeToShard at %s: HTTP/2 failure: %s (enhanced fan-out "
                           "needs an HTTP/2 endpoint)",
                           what, s->url, detail);
    default:
        return k2p_err_set(err, K2P_ERETRY, "%s: SubscribeToShard: endpoint %s unreachable: %s",
                           what, s->url, detail);
    }
}

int k2p_subscription_subscribe(k2p_subscription *s, const char *consumer_arn, const char *shard_id,
                               const k2p_iter_start *start, k2p_subscribe_cb cb, void *ud,
                               k2p_subscribe_result *res, k2p_err *err)
{
    struct curl_slist *hl = NULL;
    char what[200];
    CURLcode cc;
    long status = 0;
    k2p_err local;
    int rc;

    if (!err)
        err = &local;
    memset(res, 0, sizeof *res);
    snprintf(what, sizeof what, "shard %s", shard_id);
    if ((rc = build_request(s, consumer_arn, shard_id, start, err)))
        return rc;
    if ((rc = sign_request(s, &hl, err)))
        return rc;
    s->cb = cb;
    s->ud = ud;
    s->res = res;
    s->subscription_no++;
    s->checked = s->streaming = s->session_over = s->cancelled = false;
    s->stop_rc = 0;
    k2p_err_clear(&s->stop_err);
    s->curl_errbuf[0] = '\0';
    s->session_deadline_ns = k2p_now_ns() + (int64_t)s->opts.session_ms * 1000000;
    k2p_es_decoder_reset(&s->dec);
    k2p_buf_reset(&s->errbody);
    if (curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, hl) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, s->req.data) != CURLE_OK ||
        curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->req.len) !=
            CURLE_OK) {
        rc = k2p_err_set(err, K2P_EIO, "libcurl refused request options");
        goto out;
    }
    cc = curl_easy_perform(s->curl);
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);

    if (s->stop_rc) {
        if (s->stop_rc == SUB_SHARD_END || s->stop_rc == K2P_SUB_STOP) {
            rc = 0;
        } else {
            rc = s->stop_rc;
            *err = s->stop_err;
            err->code = rc;
        }
    } else if (s->session_over) {
        res->end = K2P_SUB_END_SESSION;
        rc = 0;
    } else if (s->cancelled) {
        rc = k2p_err_set(err, K2P_ERETRY, "%s: SubscribeToShard cancelled (stopping)", what);
    } else if (cc != CURLE_OK) {
        rc = classify_curl(s, cc, what, err);
    } else if (!s->streaming) {
        char detail[sizeof err->msg];
        k2p_err e = {0};
        if (status == 200)
            rc = k2p_err_set(&e, K2P_EPARSE,
                             "HTTP 200 without an event stream (is the endpoint a Kinesis "
                             "service with enhanced fan-out?)");
        else
            rc = k2p_kinesis_classify_error(status, s->errbody.data, s->errbody.len, &e);
        memcpy(detail, e.msg, sizeof detail);
        *err = e;
        k2p_err_set(err, rc, "%s: SubscribeToShard at %s: %s", what, s->url, detail);
    } else if (!k2p_es_decoder_at_boundary(&s->dec)) {
        rc = k2p_err_set(err, K2P_ERETRY,
                         "%s: SubscribeToShard at %s: the stream ended inside a message (%zu "
                         "bytes of it)",
                         what, s->url, k2p_es_decoder_pending(&s->dec));
    } else {
        res->end = K2P_SUB_END_SERVER;
        rc = 0;
    }
out:
    curl_slist_free_all(hl);
    s->cb = NULL;
    s->ud = NULL;
    s->res = NULL;
    return rc;
}

static void sleep_cancellable(k2p_subscription *s, int64_t ms)
{
    while (ms > 0 && !(s->cancel && atomic_load(s->cancel))) {
        int64_t step = ms > 50 ? 50 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void add_result(k2p_subscribe_result *sum, const k2p_subscribe_result *one)
{
    sum->subscriptions += one->subscriptions;
    sum->events += one->events;
    sum->records += one->records;
    sum->bytes += one->bytes;
    if (one->continuation_seq[0])
        memcpy(sum->continuation_seq, one->continuation_seq, sizeof sum->continuation_seq);
    sum->end = one->end;
}

int k2p_subscription_run(k2p_subscription *s, const char *consumer_arn, const char *shard_id,
                         const k2p_iter_start *start, k2p_subscribe_cb cb, void *ud,
                         k2p_subscribe_result *res, k2p_err *err)
{
    k2p_iter_start cur = *start;
    int failures = 0;
    k2p_err local;

    if (!err)
        err = &local;
    memset(res, 0, sizeof *res);
    for (;;) {
        k2p_subscribe_result one;
        int rc = k2p_subscription_subscribe(s, consumer_arn, shard_id, &cur, cb, ud, &one, err);
        int64_t wait;
        add_result(res, &one);
        if (res->continuation_seq[0]) {
            cur.type = K2P_ITER_AFTER_SEQUENCE_NUMBER;
            cur.seq = res->continuation_seq;
        }
        if (one.subscriptions && one.events)
            failures = 0;
        if (rc == 0 && (one.end == K2P_SUB_END_SHARD || one.end == K2P_SUB_END_CALLBACK))
            return 0;
        if (rc == 0 && one.events)
            continue; /* the subscription ran its course: the next one at once */
        /* A failure, or a subscription that ended without a single event: back off. */
        if (rc != 0 && rc != K2P_EINUSE && rc != K2P_ETHROTTLED && rc != K2P_ERETRY &&
            rc != K2P_EPARSE)
            return rc;
        if (s->cancel && atomic_load(s->cancel))
            return rc ? rc : k2p_err_set(err, K2P_ERETRY, "shard %s: cancelled", shard_id);
        if (++failures >= s->opts.max_attempts) {
            if (!rc)
                return k2p_err_set(err, K2P_ERETRY,
                                   "shard %s: %d subscriptions in a row ended without an event",
                                   shard_id, failures);
            {
                char detail[sizeof err->msg];
                memcpy(detail, err->msg, sizeof detail);
                return k2p_err_set(err, rc, "%s (gave up after %d attempts)", detail, failures);
            }
        }
        res->retries++;
        wait = k2p_backoff_ms(failures - 1, s->opts.backoff_base_ms, s->opts.backoff_max_ms,
                              &s->rng);
        if (rc == K2P_EINUSE && wait < SUB_EINUSE_MIN_SLEEP_MS)
            wait = SUB_EINUSE_MIN_SLEEP_MS;
        sleep_cancellable(s, wait);
    }
}

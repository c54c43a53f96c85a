/* kinesis_client.c - Kinesis Data Streams operations over libcurl (JSON 1.1, SigV4).
 *
 * One k2p_kinesis per thread: it owns a CURL easy handle (connection kept alive between
 * calls), the request and response buffers and a jitter RNG. The credential chain is shared.
 * Response parsing lives in kinesis_parse.c (pure, fuzzed); this file is the I/O shell and
 * the retry loop.
 *
 * Threading: a handle is used by one thread at a time.
 */
#include "kinesis2pg/kinesis_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinesis2pg/aws_sigv4.h"
#include "kinesis2pg/base64.h"
#include "kinesis_client_internal.h"

#define K2P_RESPONSE_MAX ((size_t)64 << 20) /* a GetRecords answer is at most ~14 MB */
#define K2P_PUT_MAX_ENTRIES 500
#define K2P_PUT_MAX_BYTES (5u << 20)

struct k2p_kinesis {
    CURL *curl;
    char *url;      /* endpoint URL as given */
    char *host;     /* Host header value: host[:port] */
    char *region;
    k2p_cred_chain *creds;
    k2p_kinesis_opts opts; /* numeric fields only; strings above */
    k2p_buf req;
    k2p_buf resp;
    char curl_errbuf[CURL_ERROR_SIZE];
    uint64_t rng;
    const atomic_bool *cancel;
    void (*before_sleep)(void *);
    void (*after_sleep)(void *);
    void *hook_ud;
    k2p_kinesis_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void k2p_kinesis_curl_init(void)
{
    pthread_once(&curl_once, curl_global);
}

/* ---- construction ------------------------------------------------------------------------ */

/* libcurl's receive buffer. At its default (16 KiB) a 5.6 MB GetRecords answer took ~350 recv and
 * as many poll calls: 88,000 system calls for a million 400-byte records on 4 shards, and
 * 0.42-0.50 s of the loader's 1.1-1.3 s of CPU in the kernel. With 64 KiB: 23,500 of them,
 * kernel time 0.32-0.37 s and the loader's CPU 1.02-1.26 s against 1.11-1.32 s (eight
 * interleaved pairs), 1.65 -> 1.5 s at 256 shards, peak RSS unchanged (the
 * buffer is per handle: 12 MiB more at most at 256 shards, not seen); 128 KiB saved no more
 * (docs/benchmarks.md, 2026-12-04). Over TLS a read returns one record (16 KiB) at most, so
 * there it changes little. */
#define K2P_CURL_BUFFER (64L * 1024)

int k2p_kinesis_curl_setup(CURL *c, const char *url, const char *ca_file, long connect_timeout_ms,
                           char *errbuf, curl_xferinfo_callback progress, void *ud, k2p_err *err)
{
    if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, ud) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, K2P_CURL_BUFFER) != CURLE_OK)
        return k2p_err_set(err, K2P_EIO, "libcurl refused an option for endpoint %s", url);
    if (ca_file && curl_easy_setopt(c, CURLOPT_CAINFO, ca_file) != CURLE_OK)
        return k2p_err_set(err, K2P_ECONFIG, "libcurl refused CA file %s", ca_file);
    return 0;
}

int k2p_kinesis_parse_endpoint(const char *endpoint, char **host, bool *tls, k2p_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *h = NULL, *port = NULL;
    int rc = 0;

    *host = NULL;
    if (!u)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK) {
        rc = k2p_err_set(err, K2P_ECONFIG, "endpoint '%s' is not a valid URL", endpoint);
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        rc = k2p_err_set(err, K2P_ECONFIG, "endpoint '%s': scheme must be http or https",
                         endpoint);
        goto out;
    }
    if (tls)
        *tls = strcmp(scheme, "https") == 0;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) != CURLUE_OK)
        port = NULL;
    {
        k2p_buf hb;
        k2p_buf_init(&hb, 1024);
        if (k2p_buf_puts(&hb, h) || (port && k2p_buf_printf(&hb, ":%s", port))) {
            k2p_buf_deinit(&hb);
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
            goto out;
        }
        *host = k2p_buf_steal(&hb, NULL);
    }
out:
    curl_free(scheme);
    curl_free(h);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* Aborts a transfer in flight when the cancel flag is raised (SIGTERM: stop now, not after a
 * 30 s timeout). */
static int on_progress(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    const k2p_kinesis *k = ud;
    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    return k->cancel && atomic_load(k->cancel);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    k2p_kinesis *k = ud;
    size_t n = size * nmemb;
    if (k->resp.len == 0) {
        /* First piece of the body: make room for all of it at once (one block, ideally a
         * cached one: see buf.c) instead of doubling through copies. A wrong length only costs
         * the usual growth, or a failure beyond the buffer's bound as before. */
        curl_off_t cl = -1;
        if (curl_easy_getinfo(k->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (uint64_t)cl <= k->resp.max)
            (void)k2p_buf_reserve(&k->resp, (size_t)cl);
    }
    if (k2p_buf_append(&k->resp, p, n))
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    return n;
}

k2p_kinesis *k2p_kinesis_new(const k2p_kinesis_opts *opts, k2p_err *err)
{
    k2p_kinesis *k;

    if (!opts || !opts->endpoint || !*opts->endpoint || !opts->region || !*opts->region ||
        !opts->creds) {
        k2p_err_set(err, K2P_ECONFIG, "Kinesis client needs an endpoint, a region and credentials");
        return NULL;
    }
    k2p_kinesis_curl_init();
    k = calloc(1, sizeof *k);
    if (!k) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        return NULL;
    }
    k->opts = *opts;
    k->opts.endpoint = k->opts.region = k->opts.ca_file = NULL;
    if (!k->opts.connect_timeout_ms)
        k->opts.connect_timeout_ms = 5000;
    if (!k->opts.timeout_ms)
        k->opts.timeout_ms = 30000;
    if (!k->opts.max_attempts)
        k->opts.max_attempts = 10;
    if (!k->opts.backoff_base_ms)
        k->opts.backoff_base_ms = 100;
    if (!k->opts.backoff_max_ms)
        k->opts.backoff_max_ms = 5000;
    k->creds = opts->creds;
    k->rng = (uint64_t)k2p_now_ns() ^ ((uint64_t)(uintptr_t)k << 17) ^ 0x9e3779b97f4a7c15ull;
    if (!k->rng)
        k->rng = 1;
    k2p_buf_init(&k->req, 8u << 20);
    k2p_buf_init(&k->resp, K2P_RESPONSE_MAX);
    k->url = k2p_strdup(opts->endpoint);
    k->region = k2p_strdup(opts->region);
    k->curl = curl_easy_init();
    if (!k->url || !k->region || !k->curl) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto fail;
    }
    if (k2p_kinesis_parse_endpoint(opts->endpoint, &k->host, NULL, err))
        goto fail;
    if (k2p_kinesis_curl_setup(k->curl, k->url, opts->ca_file, k->opts.connect_timeout_ms,
                               k->curl_errbuf, on_progress, k, err))
        goto fail;
    if (curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, k->opts.timeout_ms) != CURLE_OK ||
        curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, k) != CURLE_OK) {
        k2p_err_set(err, K2P_EIO, "libcurl refused an option for endpoint %s", k->url);
        goto fail;
    }
    return k;
fail:
    k2p_kinesis_free(k);
    return NULL;
}

void k2p_kinesis_free(k2p_kinesis *k)
{
    if (!k)
        return;
    if (k->curl)
        curl_easy_cleanup(k->curl);
    free(k->url);
    free(k->host);
    free(k->region);
    k2p_buf_deinit(&k->req);
    k2p_buf_deinit(&k->resp);
    free(k);
}

const k2p_kinesis_stats *k2p_kinesis_get_stats(const k2p_kinesis *k)
{
    return &k->stats;
}

void k2p_kinesis_trim(k2p_kinesis *k, size_t keep_bytes)
{
    if (k->resp.cap > keep_bytes) {
        size_t max = k->resp.max;
        k2p_buf_deinit(&k->resp);
        k2p_buf_init(&k->resp, max);
    }
}

void k2p_kinesis_set_backoff_hooks(k2p_kinesis *k, void (*before)(void *), void (*after)(void *),
                                   void *ud)
{
    k->before_sleep = before;
    k->after_sleep = after;
    k->hook_ud = ud;
}

void k2p_kinesis_set_cancel_flag(k2p_kinesis *k, const atomic_bool *flag)
{
    k->cancel = flag;
}

/* ---- the call ---------------------------------------------------------------------------- */

/* Sleeps ms milliseconds in short steps, returning early when the cancel flag is raised. */
static void sleep_cancellable(k2p_kinesis *k, int64_t ms)
{
    while (ms > 0 && !(k->cancel && atomic_load(k->cancel))) {
        int64_t step = ms > 50 ? 50 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int classify_curl(k2p_kinesis *k, CURLcode cc, const char *op, k2p_err *err)
{
    const char *detail = k->curl_errbuf[0] ? k->curl_errbuf : curl_easy_strerror(cc);
    err->http_status = 0;
    err->aws_type[0] = '\0';
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
        return k2p_err_set(err, K2P_EFATAL,
                           "Kinesis %s: TLS verification failed for endpoint %s: %s "
                           "(give the CA with --ca-file if it is a private one)",
                           op, k->url, detail);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return k2p_err_set(err, K2P_ECONFIG, "Kinesis %s: endpoint %s: %s", op, k->url, detail);
    case CURLE_ABORTED_BY_CALLBACK:
        return k2p_err_set(err, K2P_ERETRY, "Kinesis %s: cancelled (stopping)", op);
    case CURLE_WRITE_ERROR:
        return k2p_err_set(err, K2P_EFATAL, "Kinesis %s: response from %s larger than %zu bytes",
                           op, k->url, K2P_RESPONSE_MAX);
    default:
        /* Timeouts, refused or reset connections, truncated bodies, DNS: try again. */
        return k2p_err_set(err, K2P_ERETRY, "Kinesis %s: endpoint %s unreachable: %s", op,
                           k->url, detail);
    }
}

/* One signed POST of k->req to the endpoint. On 0, k->resp holds a 200 response body. */
int k2p_kinesis_sign_json(k2p_cred_chain *chain, const char *host, const char *region,
                          const char *op, const void *body, size_t len,
                          struct curl_slist **hl, k2p_err *err)
{
    k2p_aws_creds creds = {0};
    k2p_sigv4_out sig = {0};
    char target[96];
    k2p_buf line;
    int rc;

    *hl = NULL;
    rc = k2p_cred_chain_get(chain, &creds, err);
    if (rc == K2P_EPARSE) /* a malformed credentials/config file: the user's to fix (exit 2) */
        rc = err->code = K2P_ECONFIG;
    if (rc)
        return rc;
    snprintf(target, sizeof target, "Kinesis_20131202.%s", op);
    {
        k2p_http_header hdrs[] = {
            {"Host", host},
            {"Content-Type", "application/x-amz-json-1.1"},
            {"X-Amz-Target", target},
        };
        k2p_sigv4_request req = {"POST", "/", NULL, hdrs, K2P_ARRAY_LEN(hdrs), body, len};
        k2p_sigv4_creds sc = {creds.access_key_id, creds.secret_access_key,
                              creds.session_token};
        rc = k2p_sigv4_sign(&req, &sc, region, "kinesis", time(NULL), &sig, err);
        if (rc)
            goto out;
    }
    k2p_buf_init(&line, 0);
    for (int i = 0; i < 7 && !rc; i++) {
        struct curl_slist *n;
        k2p_buf_reset(&line);
        switch (i) {
        case 0: rc = k2p_buf_printf(&line, "Host: %s", host); break;
        case 1: rc = k2p_buf_puts(&line, "Content-Type: application/x-amz-json-1.1"); break;
        case 2: rc = k2p_buf_printf(&line, "X-Amz-Target: %s", target); break;
        case 3: rc = k2p_buf_printf(&line, "X-Amz-Date: %s", sig.amz_date); break;
        case 4: rc = k2p_buf_printf(&line, "Authorization: %s", sig.authorization); break;
        case 5: rc = k2p_buf_puts(&line, "Expect:"); break; /* no 100-continue round trip */
        case 6:
            if (!creds.session_token)
                continue;
            rc = k2p_buf_printf(&line, "X-Amz-Security-Token: %s", creds.session_token);
            break;
        }
        if (rc)
            break;
        if (!(n = curl_slist_append(*hl, line.data)))
            rc = K2P_ENOMEM;
        else
            *hl = n;
    }
    /* The line buffer held a token: wipe it before it goes back to the allocator. */
    if (line.data)
        memset(line.data, 0, line.cap);
    k2p_buf_deinit(&line);
    if (rc) {
        curl_slist_free_all(*hl);
        *hl = NULL;
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
out:
    k2p_sigv4_out_deinit(&sig);
    k2p_aws_creds_deinit(&creds);
    return rc;
}

static int call_once(k2p_kinesis *k, const char *op, k2p_err *err)
{
    struct curl_slist *hl = NULL;
    long status = 0;
    CURLcode cc;
    int rc;

    if ((rc = k2p_kinesis_sign_json(k->creds, k->host, k->region, op, k->req.data, k->req.len,
                                     &hl, err)))
        return rc;
    k2p_buf_reset(&k->resp);
    k->curl_errbuf[0] = '\0';
    if (curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, hl) != CURLE_OK ||
        curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, k->req.data ? k->req.data : "") !=
            CURLE_OK ||
        curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->req.len) !=
            CURLE_OK) {
        rc = k2p_err_set(err, K2P_EIO, "libcurl refused request options");
        goto out;
    }
    k->stats.requests++;
    cc = curl_easy_perform(k->curl);
    /* Clear the header list from the handle before freeing it. */
    curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, NULL);
    if (cc != CURLE_OK) {
        rc = classify_curl(k, cc, op, err);
        goto out;
    }
    k->stats.bytes_received += k->resp.len;
    curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        char detail[sizeof err->msg];
        rc = k2p_kinesis_classify_error(status, k->resp.data, k->resp.len, err);
        memcpy(detail, err->msg, sizeof detail);
        k2p_err_set(err, rc, "Kinesis %s at %s: %s", op, k->url, detail);
        goto out;
    }
    rc = 0;
out:
    curl_slist_free_all(hl);
    return rc;
}

/* Sends k->req as operation `op`, retrying throttling and transient errors with full-jitter
 * exponential backoff. `what` names the object for error messages ("stream 'x'"). */
static int call(k2p_kinesis *k, const char *op, const char *what, k2p_err *err)
{
    k2p_err local;
    int rc = 0;
    if (!err)
        err = &local;
    for (int attempt = 0; attempt < k->opts.max_attempts; attempt++) {
        k2p_err_clear(err);
        rc = call_once(k, op, err);
        if (rc != K2P_ETHROTTLED && rc != K2P_ERETRY)
            break;
        if (k->cancel && atomic_load(k->cancel))
            break;
        if (rc == K2P_ETHROTTLED)
            k->stats.retries_throttled++;
        else
            k->stats.retries_transient++;
        if (attempt + 1 < k->opts.max_attempts) {
            if (k->before_sleep)
                k->before_sleep(k->hook_ud);
            sleep_cancellable(k, k2p_backoff_ms(attempt, k->opts.backoff_base_ms,
                                                k->opts.backoff_max_ms, &k->rng));
            if (k->after_sleep)
                k->after_sleep(k->hook_ud);
        }
    }
    if (rc) {
        char detail[sizeof err->msg];
        memcpy(detail, err->msg, sizeof detail);
        if (rc == K2P_ETHROTTLED || rc == K2P_ERETRY)
            k2p_err_set(err, rc, "%s: %s (gave up after %d attempts)", what, detail,
                        k->opts.max_attempts);
        else
            k2p_err_set(err, rc, "%s: %s", what, detail);
    }
    return rc;
}

static int oom(k2p_err *err)
{
    return k2p_err_set(err, K2P_ENOMEM, "out of memory building a Kinesis request");
}

/* Parses k->resp as a JSON object; NULL with err set when it is not one. */
static cJSON *resp_json(k2p_kinesis *k, const char *op, const char *what, k2p_err *err)
{
    cJSON *root = cJSON_ParseWithLength(k->resp.data ? k->resp.data : "", k->resp.len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        k2p_err_set(err, K2P_EPARSE,
                    "%s: Kinesis %s at %s: the answer is not a Kinesis JSON response (is the "
                    "endpoint a Kinesis service?)",
                    what, op, k->url);
        return NULL;
    }
    return root;
}

/* ---- operations -------------------------------------------------------------------------- */

static int stream_body(k2p_kinesis *k, const char *stream)
{
    k2p_buf_reset(&k->req);
    return k2p_buf_puts(&k->req, "{\"StreamName\":") ||
           k2p_buf_put_json_str(&k->req, stream, strlen(stream));
}

static void what_stream(char *what, size_t n, const char *stream)
{
    snprintf(what, n, "stream '%s'", stream);
}

int k2p_kinesis_create_stream(k2p_kinesis *k, const char *stream, int shards, k2p_err *err)
{
    char what[200];
    what_stream(what, sizeof what, stream);
    if (stream_body(k, stream) || k2p_buf_printf(&k->req, ",\"ShardCount\":%d}", shards))
        return oom(err);
    return call(k, "CreateStream", what, err);
}

int k2p_kinesis_delete_stream(k2p_kinesis *k, const char *stream, k2p_err *err)
{
    char what[200];
    what_stream(what, sizeof what, stream);
    if (stream_body(k, stream) || k2p_buf_puts(&k->req, ",\"EnforceConsumerDeletion\":true}"))
        return oom(err);
    return call(k, "DeleteStream", what, err);
}

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = src ? strlen(src) : 0;
    if (l >= n)
        l = n - 1;
    if (l)
        memcpy(dst, src, l);
    dst[l] = '\0';
}

int k2p_kinesis_describe_stream_summary(k2p_kinesis *k, const char *stream,
                                        k2p_stream_summary *out, k2p_err *err)
{
    char what[200];
    cJSON *root;
    const cJSON *d, *v;
    int rc;

    what_stream(what, sizeof what, stream);
    if (stream_body(k, stream) || k2p_buf_putc(&k->req, '}'))
        return oom(err);
    if ((rc = call(k, "DescribeStreamSummary", what, err)))
        return rc;
    if (!(root = resp_json(k, "DescribeStreamSummary", what, err)))
        return K2P_EPARSE;
    d = cJSON_GetObjectItemCaseSensitive(root, "StreamDescriptionSummary");
    if (!cJSON_IsObject(d)) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_EPARSE, "%s: DescribeStreamSummary without a summary",
                           what);
    }
    memset(out, 0, sizeof *out);
    v = cJSON_GetObjectItemCaseSensitive(d, "StreamName");
    copy_str(out->stream_name, sizeof out->stream_name, cJSON_GetStringValue(v));
    v = cJSON_GetObjectItemCaseSensitive(d, "StreamARN");
    copy_str(out->stream_arn, sizeof out->stream_arn, cJSON_GetStringValue(v));
    v = cJSON_GetObjectItemCaseSensitive(d, "StreamStatus");
    copy_str(out->status, sizeof out->status, cJSON_GetStringValue(v));
    v = cJSON_GetObjectItemCaseSensitive(d, "OpenShardCount");
    out->open_shards = cJSON_IsNumber(v) ? v->valueint : -1;
    v = cJSON_GetObjectItemCaseSensitive(d, "RetentionPeriodHours");
    out->retention_hours = cJSON_IsNumber(v) ? v->valueint : -1;
    cJSON_Delete(root);
    return 0;
}

int k2p_kinesis_wait_active(k2p_kinesis *k, const char *stream, int timeout_ms, k2p_err *err)
{
    int64_t deadline = k2p_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        k2p_stream_summary s;
        int rc = k2p_kinesis_describe_stream_summary(k, stream, &s, err);
        if (rc && rc != K2P_ENOTFOUND)
            return rc;
        if (!rc && strcmp(s.status, "ACTIVE") == 0)
            return 0;
        if (k2p_now_ns() > deadline)
            return k2p_err_set(err, K2P_EIO, "stream '%s' not ACTIVE after %d ms (status %s)",
                               stream, timeout_ms, rc ? "missing" : s.status);
        sleep_cancellable(k, 50);
    }
}

int k2p_kinesis_list_shards(k2p_kinesis *k, const char *stream, int max_results,
                            k2p_shard_list *out, k2p_err *err)
{
    char what[200], *token = NULL;
    int rc;
    what_stream(what, sizeof what, stream);
    do {
        k2p_buf_reset(&k->req);
        /* StreamName and NextToken are mutually exclusive in ListShards. */
        if (token) {
            if (k2p_buf_puts(&k->req, "{\"NextToken\":") ||
                k2p_buf_put_json_str(&k->req, token, strlen(token))) {
                free(token);
                return oom(err);
            }
        } else if (stream_body(k, stream)) {
            return oom(err);
        }
        free(token);
        token = NULL;
        if ((max_results > 0 && k2p_buf_printf(&k->req, ",\"MaxResults\":%d", max_results)) ||
            k2p_buf_putc(&k->req, '}'))
            return oom(err);
        if ((rc = call(k, "ListShards", what, err)))
            return rc;
        rc = k2p_kinesis_parse_list_shards(k->resp.data, k->resp.len, out, &token, err);
        if (rc) {
            char detail[sizeof err->msg];
            memcpy(detail, err->msg, sizeof detail);
            return k2p_err_set(err, rc, "%s: ListShards at %s: %s", what, k->url, detail);
        }
    } while (token);
    return 0;
}

const char *k2p_iter_type_name(k2p_iter_type t)
{
    switch (t) {
    case K2P_ITER_TRIM_HORIZON: return "TRIM_HORIZON";
    case K2P_ITER_LATEST: return "LATEST";
    case K2P_ITER_AT_TIMESTAMP: return "AT_TIMESTAMP";
    case K2P_ITER_AT_SEQUENCE_NUMBER: return "AT_SEQUENCE_NUMBER";
    case K2P_ITER_AFTER_SEQUENCE_NUMBER: return "AFTER_SEQUENCE_NUMBER";
    }
    return "?";
}

int k2p_kinesis_get_shard_iterator(k2p_kinesis *k, const char *stream, const char *shard_id,
                                   const k2p_iter_start *start, char **iterator, k2p_err *err)
{
    char what[300];
    cJSON *root;
    const char *it;
    int rc;

    *iterator = NULL;
    snprintf(what, sizeof what, "stream '%s' shard %s", stream, shard_id);
    if (stream_body(k, stream) || k2p_buf_puts(&k->req, ",\"ShardId\":") ||
        k2p_buf_put_json_str(&k->req, shard_id, strlen(shard_id)) ||
        k2p_buf_printf(&k->req, ",\"ShardIteratorType\":\"%s\"", k2p_iter_type_name(start->type)))
        return oom(err);
    if (start->type == K2P_ITER_AT_SEQUENCE_NUMBER ||
        start->type == K2P_ITER_AFTER_SEQUENCE_NUMBER) {
        if (!start->seq)
            return k2p_err_set(err, K2P_EINVAL, "%s: %s needs a sequence number", what,
                               k2p_iter_type_name(start->type));
        if (k2p_buf_puts(&k->req, ",\"StartingSequenceNumber\":") ||
            k2p_buf_put_json_str(&k->req, start->seq, strlen(start->seq)))
            return oom(err);
    } else if (start->type == K2P_ITER_AT_TIMESTAMP) {
        int64_t us = start->timestamp_us;
        if (us < 0)
            us = 0;
        if (k2p_buf_printf(&k->req, ",\"Timestamp\":%lld.%06lld", (long long)(us / 1000000),
                           (long long)(us % 1000000)))
            return oom(err);
    }
    if (k2p_buf_putc(&k->req, '}'))
        return oom(err);
    if (start->timeout_ms > 0) {
        int saved = k->opts.max_attempts;
        k->opts.max_attempts = 1;
        curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, (long)start->timeout_ms);
        rc = call(k, "GetShardIterator", what, err);
        curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, k->opts.timeout_ms);
        k->opts.max_attempts = saved;
    } else {
        rc = call(k, "GetShardIterator", what, err);
    }
    if (rc)
        return rc;
    if (!(root = resp_json(k, "GetShardIterator", what, err)))
        return K2P_EPARSE;
    it = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "ShardIterator"));
    if (!it || !*it) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_EPARSE, "%s: GetShardIterator answered without an iterator",
                           what);
    }
    *iterator = k2p_strdup(it);
    cJSON_Delete(root);
    return *iterator ? 0 : oom(err);
}

int k2p_kinesis_get_records(k2p_kinesis *k, const char *iterator, int limit, k2p_records *out,
                            k2p_err *err)
{
    int rc;
    k2p_buf_reset(&k->req);
    if (k2p_buf_puts(&k->req, "{\"ShardIterator\":") ||
        k2p_buf_put_json_str(&k->req, iterator, strlen(iterator)) ||
        k2p_buf_printf(&k->req, ",\"Limit\":%d}", limit))
        return oom(err);
    if ((rc = call(k, "GetRecords", "reading the shard", err)))
        return rc;
    rc = k2p_kinesis_parse_get_records(k->resp.data, k->resp.len, out, err);
    if (rc) {
        char detail[sizeof err->msg];
        memcpy(detail, err->msg, sizeof detail);
        k2p_err_set(err, rc, "GetRecords at %s: %s", k->url, detail);
    }
    return rc;
}

/* Builds the body of one PutRecords call from entries idx[0..n). */
static int put_body(k2p_kinesis *k, const char *stream, const k2p_put_entry *entries,
                    const size_t *idx, size_t n)
{
    if (stream_body(k, stream) || k2p_buf_puts(&k->req, ",\"Records\":["))
        return K2P_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const k2p_put_entry *e = &entries[idx[i]];
        size_t el = k2p_base64_encoded_len(e->len);
        if (k2p_buf_puts(&k->req, i ? ",{\"Data\":\"" : "{\"Data\":\"") ||
            k2p_buf_reserve(&k->req, el + 1))
            return K2P_ENOMEM;
        k->req.len += k2p_base64_encode(e->data, e->len, k->req.data + k->req.len);
        if (k2p_buf_puts(&k->req, "\",\"PartitionKey\":") ||
            k2p_buf_put_json_str(&k->req, e->partition_key, strlen(e->partition_key)))
            return K2P_ENOMEM;
        if (e->explicit_hash_key &&
            (k2p_buf_puts(&k->req, ",\"ExplicitHashKey\":") ||
             k2p_buf_put_json_str(&k->req, e->explicit_hash_key, strlen(e->explicit_hash_key))))
            return K2P_ENOMEM;
        if (k2p_buf_putc(&k->req, '}'))
            return K2P_ENOMEM;
    }
    return k2p_buf_puts(&k->req, "]}");
}

/* Sends entries idx[0..n) once; moves the indexes of failed entries to the front of idx and
 * returns their count in *failed. */
static int put_once(k2p_kinesis *k, const char *stream, const k2p_put_entry *entries, size_t *idx,
                    size_t n, k2p_put_result *results, size_t *failed, char *last_error,
                    size_t last_error_n, k2p_err *err)
{
    char what[200];
    cJSON *root;
    const cJSON *recs, *r;
    size_t i = 0, nf = 0;
    int rc;

    what_stream(what, sizeof what, stream);
    if (put_body(k, stream, entries, idx, n))
        return oom(err);
    if ((rc = call(k, "PutRecords", what, err)))
        return rc;
    if (!(root = resp_json(k, "PutRecords", what, err)))
        return K2P_EPARSE;
    recs = cJSON_GetObjectItemCaseSensitive(root, "Records");
    if (!cJSON_IsArray(recs) || (size_t)cJSON_GetArraySize(recs) != n) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_EPARSE, "%s: PutRecords answered %d results for %zu records",
                           what, cJSON_GetArraySize(recs), n);
    }
    cJSON_ArrayForEach(r, recs)
    {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "ErrorCode"));
        size_t e = idx[i++];
        if (code) {
            const char *m =
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "ErrorMessage"));
            snprintf(last_error, last_error_n, "%s: %s", code, m ? m : "");
            idx[nf++] = e; /* nf <= i - 1: never overwrites an index not yet read */
            continue;
        }
        if (results) {
            copy_str(results[e].seq, sizeof results[e].seq,
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "SequenceNumber")));
            copy_str(results[e].shard_id, sizeof results[e].shard_id,
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "ShardId")));
        }
    }
    cJSON_Delete(root);
    *failed = nf;
    return 0;
}

int k2p_kinesis_put_records(k2p_kinesis *k, const char *stream, const k2p_put_entry *entries,
                            size_t n, k2p_put_result *results, k2p_err *err)
{
    size_t idx[K2P_PUT_MAX_ENTRIES];
    size_t pos = 0;
    char last_error[256] = "";

    while (pos < n) {
        size_t cnt = 0, bytes = 0;
        int attempt = 0;
        /* Next chunk: at most 500 entries and 5 MiB of data + partition keys. */
        while (pos < n && cnt < K2P_PUT_MAX_ENTRIES) {
            size_t sz = entries[pos].len + strlen(entries[pos].partition_key);
            if (cnt && bytes + sz > K2P_PUT_MAX_BYTES)
                break;
            bytes += sz;
            idx[cnt++] = pos++;
        }
        while (cnt) {
            size_t failed = 0;
            int rc = put_once(k, stream, entries, idx, cnt, results, &failed, last_error,
                              sizeof last_error, err);
            if (rc)
                return rc;
            cnt = failed;
            if (!cnt)
                break;
            if (++attempt >= k->opts.max_attempts)
                return k2p_err_set(err, K2P_ETHROTTLED,
                                   "stream '%s': %zu records still failing after %d PutRecords "
                                   "attempts (last: %s)",
                                   stream, cnt, attempt, last_error);
            k->stats.retries_throttled++;
            sleep_cancellable(k, k2p_backoff_ms(attempt, k->opts.backoff_base_ms,
                                                k->opts.backoff_max_ms, &k->rng));
        }
    }
    return 0;
}

int k2p_kinesis_split_shard(k2p_kinesis *k, const char *stream, const char *shard_id,
                            const char *new_starting_hash_key, k2p_err *err)
{
    char what[300];
    snprintf(what, sizeof what, "stream '%s' shard %s", stream, shard_id);
    if (stream_body(k, stream) || k2p_buf_puts(&k->req, ",\"ShardToSplit\":") ||
        k2p_buf_put_json_str(&k->req, shard_id, strlen(shard_id)) ||
        k2p_buf_puts(&k->req, ",\"NewStartingHashKey\":") ||
        k2p_buf_put_json_str(&k->req, new_starting_hash_key, strlen(new_starting_hash_key)) ||
        k2p_buf_putc(&k->req, '}'))
        return oom(err);
    return call(k, "SplitShard", what, err);
}

int k2p_kinesis_merge_shards(k2p_kinesis *k, const char *stream, const char *shard_id,
                             const char *adjacent_shard_id, k2p_err *err)
{
    char what[300];
    snprintf(what, sizeof what, "stream '%s' shards %s + %s", stream, shard_id,
             adjacent_shard_id);
    if (stream_body(k, stream) || k2p_buf_puts(&k->req, ",\"ShardToMerge\":") ||
        k2p_buf_put_json_str(&k->req, shard_id, strlen(shard_id)) ||
        k2p_buf_puts(&k->req, ",\"AdjacentShardToMerge\":") ||
        k2p_buf_put_json_str(&k->req, adjacent_shard_id, strlen(adjacent_shard_id)) ||
        k2p_buf_putc(&k->req, '}'))
        return oom(err);
    return call(k, "MergeShards", what, err);
}

/* ---- for sibling modules (kinesis_client_internal.h) -------------------------------------- */

int k2p_kinesis_call_json(k2p_kinesis *k, const char *op, const char *what, const char *body,
                          size_t len, const char **resp, size_t *resp_len, k2p_err *err)
{
    int rc;
    k2p_buf_reset(&k->req);
    if (k2p_buf_append(&k->req, body, len))
        return oom(err);
    if ((rc = call(k, op, what, err)))
        return rc;
    *resp = k->resp.data ? k->resp.data : "";
    *resp_len = k->resp.len;
    return 0;
}

void k2p_kinesis_sleep_ms(k2p_kinesis *k, int64_t ms)
{
    sleep_cancellable(k, ms);
}

int k2p_kinesis_cancelled(const k2p_kinesis *k)
{
    return k->cancel && atomic_load(k->cancel);
}

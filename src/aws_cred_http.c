/* aws_cred_http.c - the I/O shell shared by the network credential providers: one HTTP exchange
 * over libcurl with bounded retries, URL redaction for messages, the container endpoint's host
 * allow-list and token-file reading.
 *
 * A fresh easy handle per request: credentials are fetched a few times an hour, so a kept-alive
 * connection buys nothing, and a handle shared across refreshing threads would need a lock.
 * Threading: reentrant (curl_global_init runs once, under pthread_once).
 * Secrets: header lines and bodies are zeroed after the exchange; messages quote the redacted
 * URL and curl's error text only.
 */
#include "aws_cred_internal.h"

#include "kinesis2pg/aws_cred_parse.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RETRY_DELAY_MS 100

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *k2p_cred_url_redact(const char *url, char *buf, size_t size)
{
    const char *p = url ? url : "", *auth, *end, *at = NULL;
    size_t n = 0;

    if (size == 0)
        return buf;
    auth = strstr(p, "://");
    auth = auth ? auth + 3 : p;
    end = auth + strcspn(auth, "/?#");
    for (const char *q = auth; q < end; q++)
        if (*q == '@')
            at = q;
    /* scheme:// */
    for (const char *q = p; q < auth && n + 1 < size; q++)
        buf[n++] = *q;
    /* host[:port] without user info, then the path up to a query or fragment */
    for (const char *q = at ? at + 1 : auth; *q && *q != '?' && *q != '#' && n + 1 < size; q++)
        buf[n++] = *q;
    buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* One exchange                                                                                */
/* ------------------------------------------------------------------------------------------ */

typedef struct sink {
    char *data; /* K2P_CRED_RESPONSE_MAX + 1 bytes, allocated once so no copy is left behind */
    size_t len;
    int overflow;
} sink;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (n > K2P_CRED_RESPONSE_MAX - s->len) {
        s->overflow = 1;
        return 0; /* curl fails with CURLE_WRITE_ERROR */
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sets every option of one attempt. 0 or -1. */
static int setup(CURL *c, const k2p_cred_http_req *req, struct curl_slist *hl, sink *s,
                 char *errbuf)
{
    const char *body = req->body ? req->body : "";
    if (curl_easy_setopt(c, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 2000L) !=
            CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 5000L) !=
            CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, s) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl) != CURLE_OK)
        return -1;
    if (req->no_proxy && curl_easy_setopt(c, CURLOPT_NOPROXY, "*") != CURLE_OK)
        return -1;
    if (req->ca_file && *req->ca_file &&
        curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file) != CURLE_OK)
        return -1;
    if (strcmp(req->method, "GET") == 0)
        return curl_easy_setopt(c, CURLOPT_HTTPGET, 1L) == CURLE_OK ? 0 : -1;
    if (curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) != CURLE_OK)
        return -1;
    if (strcmp(req->method, "POST") != 0 &&
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK)
        return -1;
    return 0;
}

/* A failed transfer as an error: sets resp->unreachable; *retry says whether another attempt
 * may help. */
static int transport_error(CURL *c, CURLcode cc, const k2p_cred_http_req *req, const char *shown,
                           const char *errbuf, const sink *s, k2p_cred_http_resp *resp, int *retry,
                           k2p_err *err)
{
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    curl_off_t connect_us = 0;
    *retry = 0;
    switch (cc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return k2p_err_set(err, K2P_ECONFIG, "%s: %s %s: %s", req->provider, req->method, shown,
                           detail);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
        return k2p_err_set(err, K2P_EIO, "%s: %s %s: TLS verification failed: %s", req->provider,
                           req->method, shown, detail);
    case CURLE_WRITE_ERROR:
        if (s->overflow)
            return k2p_err_set(err, K2P_EIO, "%s: %s %s: answer larger than %zu bytes",
                               req->provider, req->method, shown, K2P_CRED_RESPONSE_MAX);
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        resp->unreachable = 1;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        /* Timed out before the TCP connection was made: nothing listens there. */
        if (curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us) != CURLE_OK ||
            connect_us == 0)
            resp->unreachable = 1;
        break;
    default:
        break;
    }
    *retry = 1;
    return k2p_err_set(err, K2P_EIO, "%s: %s %s: %s", req->provider, req->method, shown, detail);
}

int k2p_cred_http_do(const k2p_cred_http_req *req, k2p_cred_http_resp *resp, k2p_err *err)
{
    char shown[300], errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hl = NULL;
    sink s = {0};
    int attempts = req->attempts > 0 ? req->attempts : 1;
    int rc = 0;

    memset(resp, 0, sizeof *resp);
    pthread_once(&curl_once, curl_global);
    k2p_cred_url_redact(req->url, shown, sizeof shown);
    if (!(s.data = calloc(1, K2P_CRED_RESPONSE_MAX + 1)))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    for (size_t i = 0; i < req->n_headers; i++) {
        struct curl_slist *n = curl_slist_append(hl, req->headers[i]);
        if (!n) {
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
            goto out;
        }
        hl = n;
    }
    for (int attempt = 1;; attempt++) {
        CURL *c = curl_easy_init();
        CURLcode cc;
        int retry = 0;
        if (!c) {
            rc = k2p_err_set(err, K2P_ENOMEM, "%s: cannot create a curl handle", req->provider);
            goto out;
        }
        errbuf[0] = '\0';
        memset(s.data, 0, s.len);
        s.len = 0;
        s.overflow = 0;
        resp->unreachable = 0;
        resp->status = 0;
        if (setup(c, req, hl, &s, errbuf) < 0) {
            curl_easy_cleanup(c);
            rc = k2p_err_set(err, K2P_ENOMEM, "%s: cannot set up the request to %s", req->provider,
                             shown);
            goto out;
        }
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK) {
            rc = 0;
            if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
                resp->status = 0;
            retry = resp->status >= 500;
        } else {
            rc = transport_error(c, cc, req, shown, errbuf, &s, resp, &retry, err);
        }
        curl_easy_cleanup(c);
        if (!retry || attempt >= attempts)
            break;
        sleep_ms((long)RETRY_DELAY_MS * attempt);
    }
    if (rc == 0) {
        k2p_err_clear(err);
        s.data[s.len] = '\0';
        resp->body = s.data;
        resp->len = s.len;
        s.data = NULL;
    }
out:
    for (struct curl_slist *n = hl; n; n = n->next)
        memset(n->data, 0, strlen(n->data));
    curl_slist_free_all(hl);
    if (s.data) {
        memset(s.data, 0, K2P_CRED_RESPONSE_MAX + 1);
        free(s.data);
    }
    return rc;
}

void k2p_cred_http_resp_deinit(k2p_cred_http_resp *r)
{
    if (!r)
        return;
    if (r->body) {
        memset(r->body, 0, r->len);
        free(r->body);
    }
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------------------ */
/* Container endpoint allow-list                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Whether `host` (as curl gives it: IPv6 in brackets) may receive a token over plain http. */
static int http_host_allowed(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char v6[64];
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        uint32_t ip = ntohl(a4.s_addr);
        return (ip >> 24) == 127 || ip == 0xA9FEAA02u /* 169.254.170.2 */ ||
               ip == 0xA9FEAA17u /* 169.254.170.23 */;
    }
    if (n >= 2 && n - 2 < sizeof v6 && host[0] == '[' && host[n - 1] == ']') {
        static const unsigned char eks[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                              0,    0,    0,    0,    0, 0, 0, 0x23};
        memcpy(v6, host + 1, n - 2);
        v6[n - 2] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return 0;
        return IN6_IS_ADDR_LOOPBACK(&a6) || memcmp(a6.s6_addr, eks, 16) == 0;
    }
    return 0;
}

int k2p_cred_container_url_check(const char *url, k2p_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, shown[300];
    int rc = 0;

    k2p_cred_url_redact(url, shown, sizeof shown);
    if (!u)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "container: AWS_CONTAINER_CREDENTIALS_FULL_URI %s is not a valid URL",
                         shown);
    } else if (strcmp(scheme, "https") == 0) {
        rc = 0;
    } else if (strcmp(scheme, "http") != 0) {
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "container: AWS_CONTAINER_CREDENTIALS_FULL_URI %s: scheme must be http "
                         "or https",
                         shown);
    } else if (!http_host_allowed(host)) {
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "container: AWS_CONTAINER_CREDENTIALS_FULL_URI host %s is not allowed "
                         "over http (only loopback, 169.254.170.2, 169.254.170.23 and "
                         "[fd00:ec2::23]; use https for other hosts)",
                         host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Token files                                                                                 */
/* ------------------------------------------------------------------------------------------ */

int k2p_cred_read_token_file(const char *path, const char *what, size_t max_len, char **out,
                             k2p_err *err)
{
    char *buf = NULL;
    size_t n = 0, b = 0;
    struct stat st;
    int fd, rc = 0;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return k2p_err_set(err, K2P_EAUTH, "%s %s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = k2p_err_set(err, K2P_EAUTH, "%s %s: not a regular file", what, path);
        goto out;
    }
    if (!(buf = calloc(1, max_len + 2))) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    while (n < max_len + 1) {
        ssize_t r = read(fd, buf + n, max_len + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = k2p_err_set(err, K2P_EAUTH, "%s %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max_len) {
        rc = k2p_err_set(err, K2P_EAUTH, "%s %s: larger than %zu bytes", what, path, max_len);
        goto out;
    }
    while (n > 0 &&
           (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r' || buf[n - 1] == '\n'))
        buf[--n] = '\0';
    while (b < n && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\r' || buf[b] == '\n'))
        b++;
    if (b == n) {
        rc = k2p_err_set(err, K2P_EAUTH, "%s %s is empty", what, path);
        goto out;
    }
    for (size_t i = b; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x20 || c == 0x7F) {
            rc = k2p_err_set(err, K2P_EAUTH,
                             "%s %s holds a control character or line break inside the token", what,
                             path);
            goto out;
        }
    }
    if (!(*out = k2p_strndup(buf + b, n - b)))
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
out:
    if (buf) {
        memset(buf, 0, max_len + 2);
        free(buf);
    }
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Provider options                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Copies s unless it is NULL or empty. 0, or -1 on OOM. */
static int dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (!s || !*s)
        return 0;
    *dst = k2p_strdup(s);
    return *dst ? 0 : -1;
}

int k2p_cred_net_copy(k2p_cred_net *dst, const k2p_cred_net_opts *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src)
        return 0;
    if (dup_opt(&dst->region, src->region) < 0 || dup_opt(&dst->ca_file, src->ca_file) < 0 ||
        dup_opt(&dst->container_host, src->container_host) < 0) {
        k2p_cred_net_free(dst);
        return K2P_ENOMEM;
    }
    return 0;
}

void k2p_cred_net_free(k2p_cred_net *n)
{
    free(n->region);
    free(n->ca_file);
    free(n->container_host);
    memset(n, 0, sizeof *n);
}

k2p_cred_net_opts k2p_cred_net_view(const k2p_cred_net *n)
{
    k2p_cred_net_opts o = {n->region, n->ca_file, n->container_host};
    return o;
}

/* aws_cred_sts.c - the two STS calls the credential providers make: AssumeRoleWithWebIdentity
 * (unsigned; EKS IRSA and profiles with web_identity_token_file) and AssumeRole (SigV4 with the
 * source credentials; profiles with role_arn).
 *
 * Both are query-API POSTs with a form body, so the web identity token never appears in a URL;
 * the answer is XML, read by k2p_sts_xml_extract. Throttling, IDPCommunicationError, 5xx and
 * transport failures are tried 3 times.
 *
 * Threading: reentrant. Secrets: the form body (token) and signed headers are zeroed after the
 * call; an STS error message that quotes a secret we sent is withheld.
 */
#include "aws_cred_internal.h"

#include "kinesis2pg/aws_cred_parse.h"
#include "kinesis2pg/aws_sigv4.h"
#include "kinesis2pg/buf.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STS_ATTEMPTS 3
#define STS_CONNECT_TIMEOUT_MS 5000L
#define STS_TIMEOUT_MS 10000L
#define STS_VERSION "2011-06-15"

const char *k2p_sts_default_session_name(char *buf, size_t size)
{
    snprintf(buf, size, "kinesis2pg-%ld", (long)getpid());
    return buf;
}

static int region_ok(const char *r)
{
    if (!*r || strlen(r) > 64)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return 0;
    return 1;
}

int k2p_sts_endpoint(const k2p_sts_opts *o, char **out, k2p_err *err)
{
    const char *v = k2p_env_get(o->env, "AWS_ENDPOINT_URL_STS");
    k2p_buf b;
    int rc;

    *out = NULL;
    if (!v)
        v = k2p_env_get(o->env, "AWS_ENDPOINT_URL");
    k2p_buf_init(&b, 4096);
    if (v) {
        size_t n = strlen(v);
        while (n > 0 && v[n - 1] == '/')
            n--;
        rc = k2p_buf_append(&b, v, n);
    } else if (o->region && *o->region) {
        if (!region_ok(o->region))
            return k2p_err_set(err, K2P_ECONFIG, "%s: region '%s' is not an AWS region name",
                               o->provider, o->region);
        rc = k2p_buf_printf(&b, "https://sts.%s.amazonaws.com%s", o->region,
                            strncmp(o->region, "cn-", 3) == 0 ? ".cn" : "");
    } else {
        rc = k2p_buf_puts(&b, "https://sts.amazonaws.com");
    }
    if (rc < 0) {
        k2p_buf_deinit(&b);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    *out = k2p_buf_steal(&b, NULL);
    return 0;
}

/* Appends "&name=value" (or "name=value" first), value percent-encoded (RFC 3986). */
static int form_add(k2p_buf *b, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if ((b->len && k2p_buf_putc(b, '&')) || k2p_buf_puts(b, name) || k2p_buf_putc(b, '='))
        return K2P_ENOMEM;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            if (k2p_buf_putc(b, (char)c))
                return K2P_ENOMEM;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (k2p_buf_append(b, e, 3))
                return K2P_ENOMEM;
        }
    }
    return 0;
}

/* Zeroes and frees a buffer that held a secret. */
static void buf_wipe(k2p_buf *b)
{
    if (b->data)
        memset(b->data, 0, b->cap);
    k2p_buf_deinit(b);
}

/* Copies printable ASCII of `in` (at most 200 bytes) into out, or a notice when `in` quotes one
 * of the secrets. */
static void safe_text(const char *in, const char *const *secrets, size_t n_secrets, char *out,
                      size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < n_secrets; i++) {
        if (secrets[i] && strlen(secrets[i]) >= 8 && strstr(in, secrets[i])) {
            snprintf(out, size, "(message withheld: it quotes a secret)");
            return;
        }
    }
    for (; *in && n + 1 < size && n < 200; in++)
        out[n++] = (*in >= 0x20 && *in < 0x7F) ? *in : '?';
    out[n] = '\0';
}

/* Code characters we pass on: an AWS error code is a word. */
static void safe_code(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (; in && *in && n + 1 < size; in++) {
        char c = *in;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-' || c == ':')
            out[n++] = c;
    }
    out[n] = '\0';
}

typedef struct sts_call {
    const k2p_sts_opts *o;
    const char *action;
    const k2p_buf *form;         /* the body; may hold the token */
    const k2p_aws_creds *signer; /* NULL: unsigned */
    const char *const *secrets;  /* what an error message must never quote */
    size_t n_secrets;
    const char *source;
} sts_call;

/* Host header value and canonical path/query of `url`. */
static int url_parts(const char *url, char **host, char **path, char **query)
{
    CURLU *u = curl_url();
    char *h = NULL, *port = NULL;
    int rc = -1;
    *host = *path = *query = NULL;
    if (!u)
        return -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, path, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_QUERY, query, 0) != CURLUE_OK)
        *query = NULL;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) != CURLUE_OK)
        port = NULL;
    {
        k2p_buf b;
        k2p_buf_init(&b, 1024);
        if (k2p_buf_puts(&b, h) || (port && k2p_buf_printf(&b, ":%s", port))) {
            k2p_buf_deinit(&b);
            goto out;
        }
        *host = k2p_buf_steal(&b, NULL);
    }
    rc = 0;
out:
    curl_free(h);
    curl_free(port);
    curl_url_cleanup(u);
    if (rc < 0) {
        curl_free(*path);
        curl_free(*query);
        *path = *query = NULL;
    }
    return rc;
}

/* "Name: value" as an exactly-sized heap string (no copy left behind by growing); NULL on OOM. */
static char *header_line(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *l = malloc(n);
    if (l)
        snprintf(l, n, "%s: %s", name, value);
    return l;
}

/* Builds the header lines (signing when c->signer is set) into lines[] (heap strings, which
 * the caller frees, zeroing them, whatever the result). */
static int sts_headers(const sts_call *c, const char *url, const char *region, char **lines,
                       size_t *n, k2p_err *err)
{
    static const char ctype[] = "application/x-www-form-urlencoded; charset=utf-8";
    char *host = NULL, *path = NULL, *query = NULL;
    k2p_sigv4_out sig = {0};
    int rc = 0;

    *n = 0;
    lines[(*n)++] = header_line("Content-Type", ctype);
    lines[(*n)++] = header_line("Accept", "text/xml");
    if (c->signer) {
        if (url_parts(url, &host, &path, &query) < 0)
            return k2p_err_set(err, K2P_ECONFIG, "%s: STS endpoint is not a valid URL",
                               c->o->provider);
        k2p_http_header h[2] = {{"Host", host}, {"Content-Type", ctype}};
        k2p_sigv4_request req = {"POST", path, query, h, 2, c->form->data, c->form->len};
        k2p_sigv4_creds sc = {c->signer->access_key_id, c->signer->secret_access_key,
                              c->signer->session_token};
        k2p_err serr;
        if (k2p_sigv4_sign(&req, &sc, region, "sts", time(NULL), &sig, &serr) < 0) {
            rc = k2p_err_set(err, serr.code, "%s: signing the STS request: %s", c->o->provider,
                             serr.msg);
            goto out;
        }
        lines[(*n)++] = header_line("Host", host);
        lines[(*n)++] = header_line("X-Amz-Date", sig.amz_date);
        lines[(*n)++] = header_line("Authorization", sig.authorization);
        if (c->signer->session_token && *c->signer->session_token)
            lines[(*n)++] = header_line("X-Amz-Security-Token", c->signer->session_token);
    }
    for (size_t i = 0; i < *n; i++)
        if (!lines[i])
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
out:
    k2p_sigv4_out_deinit(&sig);
    free(host);
    curl_free(path);
    curl_free(query);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int sts_do(const sts_call *c, k2p_aws_creds *out, k2p_err *err)
{
    char *url = NULL, *lines[8] = {0}, shown[300], what[400];
    const char *region = c->o->region && *c->o->region ? c->o->region : "us-east-1";
    k2p_cred_http_resp resp = {0};
    k2p_cred_doc doc = {0};
    size_t n_lines = 0;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = k2p_sts_endpoint(c->o, &url, err)) < 0)
        return rc;
    k2p_cred_url_redact(url, shown, sizeof shown);
    snprintf(what, sizeof what, "%s: STS %s at %s", c->o->provider, c->action, shown);
    if ((rc = sts_headers(c, url, region, lines, &n_lines, err)) < 0)
        goto out;

    for (int attempt = 1;; attempt++) {
        /* Transport failures and 5xx are retried inside k2p_cred_http_do; STS's own "try
         * again" codes (HTTP 400) here. */
        k2p_cred_http_req req = {
            .provider = c->o->provider,
            .method = "POST",
            .url = url,
            .headers = (const char *const *)lines,
            .n_headers = n_lines,
            .body = c->form->data,
            .body_len = c->form->len,
            .connect_timeout_ms = STS_CONNECT_TIMEOUT_MS,
            .timeout_ms = STS_TIMEOUT_MS,
            .attempts = STS_ATTEMPTS,
            .ca_file = c->o->ca_file,
        };
        char code[64], msg[256];
        k2p_err perr;
        int retry;

        k2p_cred_http_resp_deinit(&resp);
        k2p_cred_doc_deinit(&doc);
        if ((rc = k2p_cred_http_do(&req, &resp, err)) < 0)
            goto out;
        if (resp.status == 200) {
            if ((rc = k2p_sts_xml_extract(resp.body, resp.len, &doc, &perr)) < 0) {
                rc = k2p_err_set(err, rc, "%s: malformed answer: %s", what, perr.msg);
                goto out;
            }
            rc = k2p_cred_doc_to_creds(&doc, what, c->source, out, err);
            goto out;
        }
        /* An error answer: its code and message, when it is an STS ErrorResponse. */
        if (k2p_sts_xml_extract(resp.body, resp.len, &doc, &perr) < 0)
            k2p_cred_doc_deinit(&doc);
        safe_code(doc.code, code, sizeof code);
        safe_text(doc.message ? doc.message : "", c->secrets, c->n_secrets, msg, sizeof msg);
        retry = strcmp(code, "Throttling") == 0 || strcmp(code, "IDPCommunicationError") == 0;
        if (retry && resp.status < 500 && attempt < STS_ATTEMPTS) {
            sleep_ms(200L * attempt);
            continue;
        }
        rc = k2p_err_set(err, retry || resp.status >= 500 ? K2P_EIO : K2P_EAUTH,
                         "%s: HTTP %ld%s%s%s%s", what, resp.status, code[0] ? " " : "", code,
                         msg[0] ? ": " : "", msg);
        if (err) {
            err->http_status = resp.status;
            snprintf(err->aws_type, sizeof err->aws_type, "%s", code);
        }
        goto out;
    }
out:
    for (size_t i = 0; i < n_lines; i++)
        k2p_free_secret(&lines[i]);
    k2p_cred_http_resp_deinit(&resp);
    k2p_cred_doc_deinit(&doc);
    free(url);
    return rc;
}

int k2p_sts_assume_role_with_web_identity(const k2p_sts_opts *o, const char *role_arn,
                                          const char *session_name, const char *token,
                                          const char *source, k2p_aws_creds *out, k2p_err *err)
{
    k2p_buf form;
    const char *secrets[] = {token};
    sts_call c = {o, "AssumeRoleWithWebIdentity", &form, NULL, secrets, 1, source};
    int rc;

    memset(out, 0, sizeof *out);
    k2p_buf_init(&form, 0);
    /* Reserved once, so growing never leaves a copy of the token in freed memory. */
    if (k2p_buf_reserve(&form,
                        3 * (strlen(role_arn) + strlen(session_name) + strlen(token)) + 256) < 0 ||
        form_add(&form, "Action", c.action) || form_add(&form, "Version", STS_VERSION) ||
        form_add(&form, "RoleArn", role_arn) || form_add(&form, "RoleSessionName", session_name) ||
        form_add(&form, "WebIdentityToken", token)) {
        buf_wipe(&form);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    rc = sts_do(&c, out, err);
    buf_wipe(&form);
    return rc;
}

int k2p_sts_assume_role(const k2p_sts_opts *o, const k2p_aws_creds *with, const k2p_sts_role *role,
                        const char *source, k2p_aws_creds *out, k2p_err *err)
{
    char session[64], dur[24];
    const char *secrets[] = {with->secret_access_key, with->session_token};
    k2p_buf form;
    sts_call c = {o, "AssumeRole", &form, with, secrets, 2, source};
    int rc;

    memset(out, 0, sizeof *out);
    if (!(role->session_name && *role->session_name))
        k2p_sts_default_session_name(session, sizeof session);
    snprintf(dur, sizeof dur, "%d", role->duration_s);
    k2p_buf_init(&form, 64 << 10);
    if (form_add(&form, "Action", c.action) || form_add(&form, "Version", STS_VERSION) ||
        form_add(&form, "RoleArn", role->role_arn) ||
        form_add(&form, "RoleSessionName",
                 role->session_name && *role->session_name ? role->session_name : session) ||
        (role->external_id && *role->external_id &&
         form_add(&form, "ExternalId", role->external_id)) ||
        (role->duration_s > 0 && form_add(&form, "DurationSeconds", dur))) {
        k2p_buf_deinit(&form);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    rc = sts_do(&c, out, err);
    k2p_buf_deinit(&form);
    return rc;
}

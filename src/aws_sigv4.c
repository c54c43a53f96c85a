/* aws_sigv4.c - AWS Signature Version 4 header signing for non-S3 services (Kinesis).
 *
 * Builds the canonical request, the string to sign, derives the signing key and formats the
 * Authorization header, following the published algorithm and AWS's sig-v4 test suite. SHA-256
 * and HMAC come from mbedTLS; every mbedtls_* result is checked.
 * Threading: reentrant. No global state, no clock (the time is a parameter), no I/O. Key
 * material on the stack is wiped before returning.
 */
#include "kinesis2pg/aws_sigv4.h"

#include "kinesis2pg/buf.h"

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
/* Bound on the canonical request; a Kinesis request's is a few hundred bytes. */
#define SIGV4_MAX_CANONICAL ((size_t)1 << 20)
/* Bound on the secret access key (AWS's are 40 characters). */
#define SIGV4_MAX_SECRET 256

static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

/* ------------------------------------------------------------------------------------------ */
/* Hashing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_lower[in[i] >> 4];
        out[2 * i + 1] = hex_lower[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void k2p_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char digest[32];
    /* SHA-256 of memory cannot fail in mbedTLS 2.28 (no hardware accelerator configured), but
     * the result is checked anyway: on failure the output is an impossible all-'0' string
     * rather than uninitialised bytes, so a signature built from it is simply rejected. */
    if (mbedtls_sha256_ret(len ? data : (const void *)"", len, digest, 0) != 0) {
        memset(hex, '0', 64);
        hex[64] = '\0';
        return;
    }
    to_hex(digest, sizeof digest, hex);
}

/* HMAC-SHA256(key, msg) into out[32]. Returns 0 or K2P_EINVAL. */
static int hmac_sha256(const unsigned char *key, size_t key_len, const void *msg, size_t msg_len,
                       unsigned char out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md)
        return K2P_EINVAL;
    if (mbedtls_md_hmac(md, key, key_len, msg, msg_len, out) != 0)
        return K2P_EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Canonical request pieces                                                                   */
/* ------------------------------------------------------------------------------------------ */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends s[0..n) percent-encoded per RFC 3986: unreserved characters as is, every other byte
 * as %XX with upper-case hex. Returns 0 or K2P_ENOMEM. */
static int uri_encode(k2p_buf *b, const char *s, size_t n)
{
    if (k2p_buf_reserve(b, n))
        return K2P_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            if (k2p_buf_putc(b, (char)c))
                return K2P_ENOMEM;
        } else {
            char esc[3] = {'%', hex_upper[c >> 4], hex_upper[c & 15]};
            if (k2p_buf_append(b, esc, 3))
                return K2P_ENOMEM;
        }
    }
    return 0;
}

/* Appends s[0..n) after decoding valid %XX escapes and re-encoding with uri_encode, so that
 * "%e1%88%b4", "%E1%88%B4" and the raw UTF-8 bytes all give "%E1%88%B4". A '%' not followed
 * by two hex digits, and '+', are literal characters. Returns 0 or K2P_ENOMEM. */
static int uri_reencode(k2p_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && n - i > 2) {
            int hi = hex_val((unsigned char)s[i + 1]), lo = hex_val((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi << 4 | lo);
                i += 2;
            }
        }
        if (uri_encode(b, &c, 1))
            return K2P_ENOMEM;
    }
    return 0;
}

/* Appends the canonical URI of `path`: empty and "." segments dropped, ".." removing the
 * segment before it, each remaining segment URI-encoded as given (a wire path's "%20" becomes
 * "%2520": the double encoding non-S3 services use), a trailing '/' kept. Returns 0 or
 * K2P_ENOMEM. */
static int canonical_uri(k2p_buf *b, const char *path)
{
    const size_t base = b->len;
    const char *p = path;
    size_t plen = strlen(path);

    while (*p) {
        const char *seg;
        size_t sl;
        while (*p == '/')
            p++;
        seg = p;
        while (*p && *p != '/')
            p++;
        sl = (size_t)(p - seg);
        if (sl == 0 || (sl == 1 && seg[0] == '.'))
            continue;
        if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            /* Pop the last "/segment"; encoded segments contain no '/'. */
            size_t i = b->len;
            while (i > base && b->data[i - 1] != '/')
                i--;
            b->len = i > base ? i - 1 : base;
            if (b->data)
                b->data[b->len] = '\0';
            continue;
        }
        if (k2p_buf_putc(b, '/') || uri_encode(b, seg, sl))
            return K2P_ENOMEM;
    }
    if (b->len == base || (plen > 0 && path[plen - 1] == '/'))
        return k2p_buf_putc(b, '/');
    return 0;
}

/* A query parameter, as offsets into the scratch buffer while it grows, then as pointers. */
typedef struct qparam {
    size_t key_off, key_len, val_off, val_len;
    const char *key, *val;
} qparam;

static int span_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, K2P_MIN(an, bn));
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn;
}

static int qparam_cmp(const void *pa, const void *pb)
{
    const qparam *a = pa, *b = pb;
    int c = span_cmp(a->key, a->key_len, b->key, b->key_len);
    return c ? c : span_cmp(a->val, a->val_len, b->val, b->val_len);
}

/* Appends the canonical query string of `query` (raw, without '?'): parameters split on '&',
 * key and value re-encoded, sorted by encoded key then encoded value (byte order), joined as
 * "k=v&k=v". A parameter without '=' has an empty value. Returns 0 or K2P_ENOMEM. */
static int canonical_query(k2p_buf *b, const char *query)
{
    size_t n_max = 1, n = 0;
    qparam *params = NULL;
    k2p_buf scratch;
    int rc = K2P_ENOMEM;

    k2p_buf_init(&scratch, SIGV4_MAX_CANONICAL);
    if (!query || !*query)
        return 0;
    for (const char *p = query; *p; p++)
        n_max += *p == '&';
    params = calloc(n_max, sizeof *params);
    if (!params)
        goto out;

    for (const char *p = query; *p;) {
        const char *end = strchr(p, '&'), *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            qparam *q = &params[n++];
            eq = memchr(p, '=', len);
            q->key_off = scratch.len;
            if (uri_reencode(&scratch, p, eq ? (size_t)(eq - p) : len))
                goto out;
            q->key_len = scratch.len - q->key_off;
            q->val_off = scratch.len;
            if (eq && uri_reencode(&scratch, eq + 1, len - (size_t)(eq + 1 - p)))
                goto out;
            q->val_len = scratch.len - q->val_off;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    if (n == 0) {
        rc = 0;
        goto out;
    }
    /* The scratch buffer no longer moves: turn offsets into pointers for sorting. */
    for (size_t i = 0; i < n; i++) {
        params[i].key = scratch.data + params[i].key_off;
        params[i].val = scratch.data + params[i].val_off;
    }
    qsort(params, n, sizeof *params, qparam_cmp);
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && k2p_buf_putc(b, '&')) ||
            k2p_buf_append(b, params[i].key, params[i].key_len) || k2p_buf_putc(b, '=') ||
            k2p_buf_append(b, params[i].val, params[i].val_len))
            goto out;
    }
    rc = 0;
out:
    free(params);
    k2p_buf_deinit(&scratch);
    return rc;
}

/* A header to sign: name and value trimmed (spans into the caller's strings), and its
 * position, so that equal names keep the caller's order (their values are joined in it). */
typedef struct hdr {
    const char *name, *value;
    size_t name_len, value_len;
    size_t pos;
} hdr;

static bool is_lws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_lws((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_lws((*s)[*n - 1]))
        (*n)--;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive byte comparison, i.e. of the lower-cased names. */
static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = K2P_MIN(an, bn);
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = (unsigned char)ascii_lower(a[i]);
        unsigned char cb = (unsigned char)ascii_lower(b[i]);
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return an < bn ? -1 : an > bn;
}

static bool name_is(const hdr *h, const char *lower)
{
    return name_cmp(h->name, h->name_len, lower, strlen(lower)) == 0;
}

static int hdr_cmp(const void *pa, const void *pb)
{
    const hdr *a = pa, *b = pb;
    int c = name_cmp(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Appends the value with runs of white space (including an obsolete line folding) folded to
 * one space; `v` is already trimmed. */
static int put_folded(k2p_buf *b, const char *v, size_t n)
{
    bool in_space = false;
    for (size_t i = 0; i < n; i++) {
        if (is_lws(v[i])) {
            in_space = true;
            continue;
        }
        if ((in_space && k2p_buf_putc(b, ' ')) || k2p_buf_putc(b, v[i]))
            return K2P_ENOMEM;
        in_space = false;
    }
    return 0;
}

static int put_lower(k2p_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (k2p_buf_putc(b, ascii_lower(s[i])))
            return K2P_ENOMEM;
    }
    return 0;
}

/* Appends "name:v1,v2\n" per distinct name to `canon` and "name;name" to `signed_hdrs`;
 * `h` is sorted. Returns 0 or K2P_ENOMEM. */
static int canonical_headers(const hdr *h, size_t n, k2p_buf *canon, k2p_buf *signed_hdrs)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        if ((signed_hdrs->len && k2p_buf_putc(signed_hdrs, ';')) ||
            put_lower(signed_hdrs, h[i].name, h[i].name_len) ||
            put_lower(canon, h[i].name, h[i].name_len) || k2p_buf_putc(canon, ':'))
            return K2P_ENOMEM;
        for (; j < n && name_cmp(h[j].name, h[j].name_len, h[i].name, h[i].name_len) == 0; j++) {
            if ((j > i && k2p_buf_putc(canon, ',')) ||
                put_folded(canon, h[j].value, h[j].value_len))
                return K2P_ENOMEM;
        }
        if (k2p_buf_putc(canon, '\n'))
            return K2P_ENOMEM;
        i = j;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Signing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
 * Returns 0 or K2P_EINVAL. */
static int signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char key[32])
{
    unsigned char k0[4 + SIGV4_MAX_SECRET];
    unsigned char k1[32], k2[32];
    size_t sl = strlen(secret);
    int rc = K2P_EINVAL;

    if (sl > SIGV4_MAX_SECRET)
        goto out;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, sl);
    if (hmac_sha256(k0, 4 + sl, date8, 8, k1) || hmac_sha256(k1, 32, region, strlen(region), k2) ||
        hmac_sha256(k2, 32, service, strlen(service), k1) ||
        hmac_sha256(k1, 32, "aws4_request", 12, key))
        goto out;
    rc = 0;
out:
    mbedtls_platform_zeroize(k0, sizeof k0);
    mbedtls_platform_zeroize(k1, sizeof k1);
    mbedtls_platform_zeroize(k2, sizeof k2);
    return rc;
}

static bool empty(const char *s)
{
    return !s || !*s;
}

/* Copies the buffer into a fixed-size field; K2P_ENOMEM when it does not fit. */
static int copy_out(char *dst, size_t cap, const k2p_buf *b)
{
    if (b->len >= cap)
        return K2P_ENOMEM;
    memcpy(dst, b->data ? b->data : "", b->len);
    dst[b->len] = '\0';
    return 0;
}

int k2p_sigv4_sign(const k2p_sigv4_request *req, const k2p_sigv4_creds *creds, const char *region,
                   const char *service, time_t now, k2p_sigv4_out *out, k2p_err *err)
{
    k2p_buf canon, sts, signed_hdrs, auth;
    hdr *hs = NULL;
    size_t nh = 0;
    struct tm tm;
    char date8[9], payload_hash[65], creq_hash[65];
    unsigned char key[32], sig[32];
    bool has_host = false, has_token;
    int rc = K2P_EINVAL;

    k2p_buf_init(&canon, SIGV4_MAX_CANONICAL);
    k2p_buf_init(&sts, SIGV4_MAX_CANONICAL);
    k2p_buf_init(&signed_hdrs, SIGV4_MAX_CANONICAL);
    k2p_buf_init(&auth, SIGV4_MAX_CANONICAL);
    if (!out) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: no output");
        goto out;
    }
    memset(out, 0, sizeof *out);
    if (!req || empty(req->method) || !req->path || (req->n_headers && !req->headers) ||
        (req->body_len && !req->body)) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: incomplete request");
        goto out;
    }
    if (!creds || empty(creds->access_key_id) || empty(creds->secret_access_key)) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: credentials missing");
        goto out;
    }
    if (strlen(creds->secret_access_key) > SIGV4_MAX_SECRET) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: secret access key too long");
        goto out;
    }
    if (empty(region) || empty(service)) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: region or service missing");
        goto out;
    }
    if (!gmtime_r(&now, &tm) ||
        strftime(out->amz_date, sizeof out->amz_date, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: time out of range");
        goto out;
    }
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';
    has_token = !empty(creds->session_token);

    /* Headers: the caller's, minus those the signer owns, plus x-amz-date (and the token). */
    hs = calloc(req->n_headers + 2, sizeof *hs);
    if (!hs) {
        rc = k2p_err_set(err, K2P_ENOMEM, "sigv4: out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        hdr *h = &hs[nh];
        if (!req->headers[i].name) {
            rc = k2p_err_set(err, K2P_EINVAL, "sigv4: header %zu has no name", i);
            goto out;
        }
        h->name = req->headers[i].name;
        h->name_len = strlen(h->name);
        h->value = req->headers[i].value ? req->headers[i].value : "";
        h->value_len = strlen(h->value);
        h->pos = i;
        trim(&h->name, &h->name_len);
        trim(&h->value, &h->value_len);
        if (h->name_len == 0) {
            rc = k2p_err_set(err, K2P_EINVAL, "sigv4: header %zu has an empty name", i);
            goto out;
        }
        if (name_is(h, "x-amz-date") || name_is(h, "x-amz-security-token") ||
            name_is(h, "authorization"))
            continue;
        has_host |= name_is(h, "host");
        nh++;
    }
    if (!has_host) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: no Host header");
        goto out;
    }
    hs[nh++] = (hdr){"x-amz-date", out->amz_date, 10, 16, req->n_headers};
    if (has_token) {
        hs[nh] = (hdr){"x-amz-security-token", creds->session_token, 20,
                       strlen(creds->session_token), req->n_headers + 1};
        trim(&hs[nh].value, &hs[nh].value_len);
        nh++;
    }
    qsort(hs, nh, sizeof *hs, hdr_cmp);

    /* Canonical request. */
    k2p_sha256_hex(req->body, req->body_len, payload_hash);
    rc = K2P_ENOMEM;
    if (k2p_buf_puts(&canon, req->method) || k2p_buf_putc(&canon, '\n') ||
        canonical_uri(&canon, req->path) || k2p_buf_putc(&canon, '\n') ||
        canonical_query(&canon, req->query) || k2p_buf_putc(&canon, '\n') ||
        canonical_headers(hs, nh, &canon, &signed_hdrs) || k2p_buf_putc(&canon, '\n') ||
        k2p_buf_append(&canon, signed_hdrs.data, signed_hdrs.len) || k2p_buf_putc(&canon, '\n') ||
        k2p_buf_puts(&canon, payload_hash)) {
        k2p_err_set(err, rc, "sigv4: canonical request too large");
        goto out;
    }

    /* String to sign. */
    k2p_sha256_hex(canon.data, canon.len, creq_hash);
    if (k2p_buf_printf(&sts, SIGV4_ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", out->amz_date,
                       date8, region, service, creq_hash)) {
        k2p_err_set(err, rc, "sigv4: string to sign too large");
        goto out;
    }

    /* Signature. */
    if (signing_key(creds->secret_access_key, date8, region, service, key) ||
        hmac_sha256(key, sizeof key, sts.data, sts.len, sig)) {
        rc = k2p_err_set(err, K2P_EINVAL, "sigv4: HMAC-SHA256 failed");
        goto out;
    }
    to_hex(sig, sizeof sig, out->signature);

    if (k2p_buf_printf(&auth,
                       SIGV4_ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                                       "Signature=%s",
                       creds->access_key_id, date8, region, service, signed_hdrs.data,
                       out->signature) ||
        copy_out(out->authorization, sizeof out->authorization, &auth)) {
        rc = k2p_err_set(err, K2P_ENOMEM, "sigv4: Authorization header too long");
        goto out;
    }
    out->canonical_request = k2p_buf_steal(&canon, NULL);
    out->string_to_sign = k2p_buf_steal(&sts, NULL);
    if (!out->canonical_request || !out->string_to_sign) {
        rc = k2p_err_set(err, K2P_ENOMEM, "sigv4: out of memory");
        goto out;
    }
    rc = 0;
out:
    mbedtls_platform_zeroize(key, sizeof key);
    free(hs);
    k2p_buf_deinit(&canon);
    k2p_buf_deinit(&sts);
    k2p_buf_deinit(&signed_hdrs);
    k2p_buf_deinit(&auth);
    if (rc != 0 && out) {
        k2p_sigv4_out_deinit(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

void k2p_sigv4_out_deinit(k2p_sigv4_out *out)
{
    if (!out)
        return;
    free(out->canonical_request);
    free(out->string_to_sign);
    out->canonical_request = NULL;
    out->string_to_sign = NULL;
}

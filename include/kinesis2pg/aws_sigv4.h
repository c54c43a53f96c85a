/* aws_sigv4.h - AWS Signature Version 4 as a pure function (mbedTLS SHA-256/HMAC).
 *
 * No I/O, no clock: the caller passes the time, so tests are deterministic.
 * Threading: reentrant.
 */
#ifndef K2P_AWS_SIGV4_H
#define K2P_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "kinesis2pg/common.h"

typedef struct k2p_http_header {
    const char *name;  /* any case; canonicalised (lower-cased, trimmed) when signing */
    const char *value; /* sequential spaces are folded when signing, as the spec says */
} k2p_http_header;

typedef struct k2p_sigv4_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* absolute path as sent on the wire, e.g. "/" or "/foo%20bar" */
    const char *query;  /* raw query string without '?', or NULL/"" */
    const k2p_http_header *headers; /* must include Host; x-amz-date and
                                       x-amz-security-token are added by the signer */
    size_t n_headers;
    const void *body; /* payload to hash (may be NULL when body_len is 0) */
    size_t body_len;
} k2p_sigv4_request;

typedef struct k2p_sigv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" when not temporary credentials */
} k2p_sigv4_creds;

/* What the caller adds to the request. Every string is NUL-terminated. */
typedef struct k2p_sigv4_out {
    char amz_date[17];       /* "20150830T123600Z": send as X-Amz-Date */
    char authorization[640]; /* value of the Authorization header */
    char signature[65];      /* hex signature (also inside `authorization`) */
    /* Intermediate values, for tests and debugging; never logged (they are not secret, but
     * the habit of logging signing material is the wrong one). */
    char *canonical_request; /* heap; freed by k2p_sigv4_out_deinit */
    char *string_to_sign;    /* heap; freed by k2p_sigv4_out_deinit */
} k2p_sigv4_out;

/* Signs `req` for `region`/`service` at time `now` (UTC seconds).
 * The canonical URI is `req->path` normalised as the S3-less services require (double-encoded
 * path segments, "." and ".." removed); the query is sorted and re-encoded.
 * When creds->session_token is set, "x-amz-security-token" is a signed header, and the caller
 * must send it. Returns 0, K2P_EINVAL (missing field) or K2P_ENOMEM.
 * In detail:
 *  - Path: empty and "." segments are dropped, ".." drops the segment before it, a trailing '/'
 *    is kept; each segment is then percent-encoded as given (RFC 3986 unreserved characters
 *    kept), so the wire path "/a%20b" signs as "/a%2520b", as AWS expects of non-S3 services.
 *  - Query: split on '&' (empty parts skipped), each key and value percent-decoded then
 *    re-encoded ('+' and a '%' without two hex digits are literal characters), sorted by key
 *    then value; a parameter without '=' has an empty value.
 *  - Headers: names compared case-insensitively and lower-cased; names and values trimmed, runs
 *    of white space in values (including CR/LF of a folded line) become one space; repeated
 *    names are joined with ',' in the caller's order. Every header given is signed, except
 *    X-Amz-Date, X-Amz-Security-Token and Authorization, which the signer owns and ignores.
 *  - `out` is overwritten (deinit it first when reusing it). On failure it holds nothing to free
 *    and `err` (may be NULL) says why, without any key material.
 * Thread: any; reentrant. */
int k2p_sigv4_sign(const k2p_sigv4_request *req, const k2p_sigv4_creds *creds,
                   const char *region, const char *service, time_t now, k2p_sigv4_out *out,
                   k2p_err *err);

/* Frees what k2p_sigv4_sign allocated in `out`. Safe on a zeroed struct. */
void k2p_sigv4_out_deinit(k2p_sigv4_out *out);

/* Lower-case hex SHA-256 of data into hex[65]. */
void k2p_sha256_hex(const void *data, size_t len, char hex[65]);

#endif

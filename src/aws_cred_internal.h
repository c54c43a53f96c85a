/* aws_cred_internal.h - what the network credential providers (aws_cred_*.c) share: one HTTP
 * exchange over libcurl, the two STS calls, and small URL and file helpers. Internal to
 * src/ and its unit tests; the public surface is aws_credentials.h.
 *
 * Threading: every function is reentrant; the chain calls providers from one thread at a time.
 * Secrets: request headers and bodies may hold secrets (tokens, signatures); they are zeroed
 * after use and never appear in a message. Messages name the provider and the URL without its
 * query string or user info.
 */
#ifndef K2P_AWS_CRED_INTERNAL_H
#define K2P_AWS_CRED_INTERNAL_H

#include <stddef.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/env.h"

/* A provider's own copy of k2p_cred_net_opts. */
typedef struct k2p_cred_net {
    char *region, *ca_file, *container_host; /* each NULL when unset */
} k2p_cred_net;

/* Copies `src` (may be NULL) into *dst; 0 or K2P_ENOMEM (then *dst holds nothing). */
int k2p_cred_net_copy(k2p_cred_net *dst, const k2p_cred_net_opts *src);
void k2p_cred_net_free(k2p_cred_net *n);

/* As the public struct, borrowing from `n`. */
k2p_cred_net_opts k2p_cred_net_view(const k2p_cred_net *n);

/* One HTTP request. */
typedef struct k2p_cred_http_req {
    const char *provider;       /* names the provider in messages: "web identity", ... */
    const char *method;         /* "GET", "PUT" or "POST" */
    const char *url;            /* must hold no secret */
    const char *const *headers; /* "Name: value" lines; may hold secrets */
    size_t n_headers;
    const char *body; /* may hold secrets; NULL for none */
    size_t body_len;
    long connect_timeout_ms; /* 0: 2000 */
    long timeout_ms;         /* whole request; 0: 5000 */
    int attempts;            /* tries on a transport failure or 5xx; 0: 1 */
    int no_proxy;            /* 1: never use a proxy (link-local and loopback endpoints) */
    const char *ca_file;     /* CA bundle for https, NULL: system store */
} k2p_cred_http_req;

typedef struct k2p_cred_http_resp {
    long status; /* HTTP status of the last attempt, 0 when none answered */
    char *body;  /* NUL-terminated; heap, zeroed by k2p_cred_http_resp_deinit */
    size_t len;
    int unreachable; /* on K2P_EIO: no connection could be made (refused, DNS, connect timeout) */
} k2p_cred_http_resp;

/* Performs the request (fresh easy handle, TLS verification on, no redirects, body at most
 * K2P_CRED_RESPONSE_MAX). Retries transport failures and 5xx answers up to req->attempts
 * times, 100 ms apart. Returns 0 when an answer arrived (any status: the caller judges it;
 * resp->status and the body are set), or K2P_EIO ("<provider>: <METHOD> <url>: <curl error>")
 * with resp->unreachable set when no connection could be made, K2P_ECONFIG for a malformed URL,
 * K2P_ENOMEM. *resp needs no initialisation; deinit it after either result. */
int k2p_cred_http_do(const k2p_cred_http_req *req, k2p_cred_http_resp *resp, k2p_err *err);

/* Zeroes and frees the body; safe on a zeroed struct. */
void k2p_cred_http_resp_deinit(k2p_cred_http_resp *r);

/* Writes `url` without user info, query and fragment into buf (always NUL-terminated), for
 * messages. Returns buf. */
const char *k2p_cred_url_redact(const char *url, char *buf, size_t size);

/* Whether the container provider may send a token to AWS_CONTAINER_CREDENTIALS_FULL_URI `url`:
 * https to any host; http only to loopback (127.0.0.0/8, [::1], localhost), the ECS endpoint
 * 169.254.170.2, or EKS Pod Identity's 169.254.170.23 and [fd00:ec2::23]. Returns 0, or
 * K2P_ECONFIG with the reason (naming the host, which is not a secret). Pure. */
int k2p_cred_container_url_check(const char *url, k2p_err *err);

/* Reads a small text file (a token) into a heap string with trailing white space removed.
 * `what` names it in messages ("web identity: AWS_WEB_IDENTITY_TOKEN_FILE"). Returns 0,
 * K2P_EAUTH (missing, unreadable, empty, larger than max_len, or holding a NUL or a line break
 * inside), or K2P_ENOMEM. The file's bytes are zeroed after copying. */
int k2p_cred_read_token_file(const char *path, const char *what, size_t max_len, char **out,
                             k2p_err *err);

#define K2P_CRED_TOKEN_FILE_MAX ((size_t)16 << 10) /* web identity and container token files */

/* Which STS to call and how. Strings borrowed. */
typedef struct k2p_sts_opts {
    const k2p_env *env;   /* AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL */
    const char *region;   /* NULL: global endpoint, signed for us-east-1 */
    const char *ca_file;  /* NULL: system store */
    const char *provider; /* names the caller in messages: "web identity", "profile 'x'" */
} k2p_sts_opts;

/* The STS endpoint URL (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, https://sts.REGION.amazonaws.com
 * with .amazonaws.com.cn for cn- regions, or https://sts.amazonaws.com without a region) as a
 * heap string in *out. Returns 0, K2P_ECONFIG (a region that cannot be one) or K2P_ENOMEM. */
int k2p_sts_endpoint(const k2p_sts_opts *o, char **out, k2p_err *err);

/* STS AssumeRoleWithWebIdentity (unsigned; the token goes in the POST body, never in a URL).
 * Returns 0 with temporary credentials (source `source`), K2P_EAUTH (STS refused: the message
 * has its error code and message, never the token), K2P_EIO (unreachable, 5xx, throttled after
 * 3 tries), K2P_EPARSE (malformed answer), K2P_ECONFIG or K2P_ENOMEM. */
int k2p_sts_assume_role_with_web_identity(const k2p_sts_opts *o, const char *role_arn,
                                          const char *session_name, const char *token,
                                          const char *source, k2p_aws_creds *out, k2p_err *err);

/* Optional AssumeRole parameters; NULL/0 when unset. */
typedef struct k2p_sts_role {
    const char *role_arn;
    const char *session_name;
    const char *external_id;
    int duration_s;
} k2p_sts_role;

/* STS AssumeRole, SigV4-signed (service "sts") with `with`. Returns as above. */
int k2p_sts_assume_role(const k2p_sts_opts *o, const k2p_aws_creds *with, const k2p_sts_role *role,
                        const char *source, k2p_aws_creds *out, k2p_err *err);

/* Web identity exchange shared by the web identity provider and profiles with
 * web_identity_token_file: reads the token file (again, every call), then
 * k2p_sts_assume_role_with_web_identity. `token_var` names the token file's origin in messages
 * ("AWS_WEB_IDENTITY_TOKEN_FILE", "profile 'x' web_identity_token_file"). */
int k2p_cred_web_identity_fetch(const k2p_sts_opts *o, const char *token_var,
                                const char *token_file, const char *role_arn,
                                const char *session_name, const char *source, k2p_aws_creds *out,
                                k2p_err *err);

/* The default role session name, "kinesis2pg-<pid>", into buf. */
const char *k2p_sts_default_session_name(char *buf, size_t size);

#endif

/* aws_cred_imds.c - the EC2 instance metadata credential provider, IMDSv2 only: a session token
 * from PUT /latest/api/token, then the instance profile's role name and its credentials.
 *
 * It is last in the chain, so it must fail fast where there is no IMDS (a laptop, a container
 * outside AWS): 1 s to connect, 1 s per request, one retry, and a token request that gets no
 * answer means "no credentials here" (K2P_ENOTFOUND), not an error. Proxies are never used:
 * the endpoint is link-local.
 * Threading: resolve runs on the chain's refreshing thread, one at a time. The IMDS token is
 * not kept between resolves (credentials are fetched a few times a day).
 */
#include "aws_cred_internal.h"

#include "kinesis2pg/aws_cred_parse.h"
#include "kinesis2pg/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMDS_HOST "http://169.254.169.254"
#define IMDS_HOST_V6 "http://[fd00:ec2::254]"
#define IMDS_CONNECT_TIMEOUT_MS 1000L
#define IMDS_TIMEOUT_MS 1000L
#define IMDS_ATTEMPTS 2
#define IMDS_TOKEN_TTL_S "21600"
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

typedef struct imds_provider {
    k2p_cred_provider base;
    const k2p_env *env;
} imds_provider;

/* One request to IMDS; `token` NULL for the token request itself. */
static int imds_get(const char *method, const char *url, const char *token,
                    k2p_cred_http_resp *resp, k2p_err *err)
{
    const char *headers[1];
    char *line = NULL;
    k2p_buf b;
    int rc;

    k2p_buf_init(&b, 0);
    if (token) {
        /* Reserved once, so growing never leaves a copy of the token in freed memory. */
        if (k2p_buf_reserve(&b, strlen(token) + 40) < 0 ||
            k2p_buf_printf(&b, "X-aws-ec2-metadata-token: %s", token) < 0) {
            k2p_buf_deinit(&b);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
        line = k2p_buf_steal(&b, NULL);
        headers[0] = line;
    } else {
        headers[0] = "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL_S;
    }
    {
        k2p_cred_http_req req = {
            .provider = "imds",
            .method = method,
            .url = url,
            .headers = headers,
            .n_headers = 1,
            .body = "",
            .connect_timeout_ms = IMDS_CONNECT_TIMEOUT_MS,
            .timeout_ms = IMDS_TIMEOUT_MS,
            .attempts = IMDS_ATTEMPTS,
            .no_proxy = 1,
        };
        rc = k2p_cred_http_do(&req, resp, err);
    }
    k2p_free_secret(&line);
    return rc;
}

/* Whether s is an IAM role name: 1-128 of [A-Za-z0-9+=,.@_-]. */
static int role_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("+=,.@_-", c)))
            return 0;
    }
    return 1;
}

static int imds_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    const k2p_env *env = ((imds_provider *)self)->env;
    const char *disabled = k2p_env_get(env, "AWS_EC2_METADATA_DISABLED");
    const char *ep = k2p_env_get(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = k2p_env_get(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    char url[600], shown[300], what[400], role[130], *token = NULL;
    k2p_cred_http_resp resp = {0};
    k2p_cred_doc doc = {0};
    k2p_err perr;
    size_t n;
    int rc;

    if (disabled && strcasecmp(disabled, "true") == 0)
        return k2p_err_set(err, K2P_ENOTFOUND, "imds: disabled by AWS_EC2_METADATA_DISABLED");
    if (!ep)
        ep = mode && strcasecmp(mode, "IPv6") == 0 ? IMDS_HOST_V6 : IMDS_HOST;
    n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        n--;
    if (n > 400)
        return k2p_err_set(err, K2P_ECONFIG, "imds: AWS_EC2_METADATA_SERVICE_ENDPOINT is too long");

    /* 1. A session token. No answer at all: there is no IMDS here. */
    snprintf(url, sizeof url, "%.*s/latest/api/token", (int)n, ep);
    k2p_cred_url_redact(url, shown, sizeof shown);
    if ((rc = imds_get("PUT", url, NULL, &resp, &perr)) < 0) {
        const char *why = strncmp(perr.msg, "imds: ", 6) == 0 ? perr.msg + 6 : perr.msg;
        rc = k2p_err_set(err, rc == K2P_EIO ? K2P_ENOTFOUND : rc,
                         "imds: no instance metadata service (%s)", why);
        goto out;
    }
    if (resp.status != 200) {
        rc = k2p_err_set(err, resp.status >= 500 ? K2P_EIO : K2P_ENOTFOUND,
                         "imds: PUT %s answered HTTP %ld (IMDSv2 unavailable)", shown, resp.status);
        goto out;
    }
    while (resp.len > 0 && (resp.body[resp.len - 1] == '\n' || resp.body[resp.len - 1] == '\r' ||
                            resp.body[resp.len - 1] == ' '))
        resp.body[--resp.len] = '\0';
    if (resp.len == 0 || resp.len > 4096 || strlen(resp.body) != resp.len ||
        strpbrk(resp.body, "\r\n")) {
        rc = k2p_err_set(err, K2P_EPARSE, "imds: malformed token from %s", shown);
        goto out;
    }
    token = resp.body;
    resp.body = NULL; /* now owned by `token`; zeroed at the end */
    k2p_cred_http_resp_deinit(&resp);

    /* 2. The role of the instance profile. */
    snprintf(url, sizeof url, "%.*s" IMDS_CREDS_PATH, (int)n, ep);
    k2p_cred_url_redact(url, shown, sizeof shown);
    if ((rc = imds_get("GET", url, token, &resp, err)) < 0)
        goto out;
    if (resp.status == 404) {
        rc = k2p_err_set(err, K2P_ENOTFOUND, "imds: no IAM role attached to this instance");
        goto out;
    }
    if (resp.status != 200) {
        rc = k2p_err_set(err, K2P_EIO, "imds: GET %s answered HTTP %ld", shown, resp.status);
        goto out;
    }
    {
        const char *b = resp.body;
        size_t rl;
        while (*b == ' ' || *b == '\r' || *b == '\n')
            b++;
        rl = strcspn(b, "\r\n");
        while (rl > 0 && b[rl - 1] == ' ')
            rl--;
        if (!role_name_ok(b, rl)) {
            rc = k2p_err_set(err, K2P_EPARSE, "imds: malformed role name from %s", shown);
            goto out;
        }
        memcpy(role, b, rl);
        role[rl] = '\0';
    }
    k2p_cred_http_resp_deinit(&resp);

    /* 3. Its credentials. */
    snprintf(url, sizeof url, "%.*s" IMDS_CREDS_PATH "%s", (int)n, ep, role);
    k2p_cred_url_redact(url, shown, sizeof shown);
    if ((rc = imds_get("GET", url, token, &resp, err)) < 0)
        goto out;
    if (resp.status != 200) {
        rc = k2p_err_set(err, K2P_EIO, "imds: GET %s answered HTTP %ld", shown, resp.status);
        goto out;
    }
    if ((rc = k2p_cred_json_extract(resp.body, resp.len, &doc, &perr)) < 0) {
        rc = k2p_err_set(err, rc, "imds: malformed answer from %s: %s", shown, perr.msg);
        goto out;
    }
    if (doc.code && strcmp(doc.code, "Success") != 0) {
        rc =
            k2p_err_set(err, K2P_EAUTH,
                        "imds: credentials of role '%s' not available (Code is not Success)", role);
        goto out;
    }
    snprintf(what, sizeof what, "imds: answer from %s", shown);
    rc = k2p_cred_doc_to_creds(&doc, what, "imds", out, err);
out:
    k2p_cred_doc_deinit(&doc);
    k2p_cred_http_resp_deinit(&resp);
    k2p_free_secret(&token);
    return rc;
}

static void imds_destroy(k2p_cred_provider *self)
{
    free(self);
}

k2p_cred_provider *k2p_cred_provider_imds_new(const k2p_env *env)
{
    imds_provider *ip = calloc(1, sizeof *ip);
    if (!ip)
        return NULL;
    ip->base.name = "imds";
    ip->base.resolve = imds_resolve;
    ip->base.destroy = imds_destroy;
    ip->env = env;
    return &ip->base;
}

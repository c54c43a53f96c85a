/* aws_cred_container.c - the container credential provider: ECS task roles
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on 169.254.170.2) and EKS Pod Identity or any local
 * credential server (AWS_CONTAINER_CREDENTIALS_FULL_URI), answering JSON
 * {AccessKeyId, SecretAccessKey, Token, Expiration}.
 *
 * A full URI may only be plain http to a loopback or AWS link-local address, since the
 * Authorization token would otherwise cross the network in clear. The token file is read at
 * every resolve (EKS rotates it).
 * Threading: resolve runs on the chain's refreshing thread, one at a time.
 */
#include "aws_cred_internal.h"

#include "kinesis2pg/aws_cred_parse.h"
#include "kinesis2pg/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER_HOST "http://169.254.170.2"
#define CONTAINER_CONNECT_TIMEOUT_MS 2000L
#define CONTAINER_TIMEOUT_MS 5000L
#define CONTAINER_ATTEMPTS 2

typedef struct container_provider {
    k2p_cred_provider base;
    const k2p_env *env;
    k2p_cred_net net;
} container_provider;

/* The Authorization header line, or NULL in *line when no token is configured. */
static int auth_header(const k2p_env *env, char **line, k2p_err *err)
{
    const char *file = k2p_env_get(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = k2p_env_get(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char *owned = NULL;
    k2p_buf b;
    int rc;

    *line = NULL;
    if (file) {
        if ((rc =
                 k2p_cred_read_token_file(file, "container: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                          K2P_CRED_TOKEN_FILE_MAX, &owned, err)) < 0)
            return rc;
        tok = owned;
    } else if (tok) {
        for (const unsigned char *p = (const unsigned char *)tok; *p; p++)
            if (*p < 0x20 || *p == 0x7F)
                return k2p_err_set(err, K2P_ECONFIG,
                                   "container: AWS_CONTAINER_AUTHORIZATION_TOKEN holds a line "
                                   "break or control character");
    } else {
        return 0;
    }
    k2p_buf_init(&b, 0);
    /* Reserved once, so growing never leaves a copy of the token in freed memory. */
    if (k2p_buf_reserve(&b, strlen(tok) + 32) < 0 ||
        k2p_buf_printf(&b, "Authorization: %s", tok) < 0) {
        k2p_buf_deinit(&b);
        k2p_free_secret(&owned);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    *line = k2p_buf_steal(&b, NULL);
    k2p_free_secret(&owned);
    return 0;
}

static int container_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    container_provider *cp = (container_provider *)self;
    const char *rel = k2p_env_get(cp->env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = k2p_env_get(cp->env, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *headers[2] = {"Accept: application/json", NULL};
    char *url = NULL, *auth = NULL, shown[300], what[400];
    k2p_cred_http_resp resp = {0};
    k2p_cred_doc doc = {0};
    k2p_err perr;
    int rc;

    if (!rel && !full)
        return k2p_err_set(err, K2P_ENOTFOUND,
                           "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI not set");
    if (rel) {
        const char *host = cp->net.container_host ? cp->net.container_host : CONTAINER_HOST;
        k2p_buf b;
        if (rel[0] != '/')
            return k2p_err_set(err, K2P_ECONFIG,
                               "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start "
                               "with '/'");
        k2p_buf_init(&b, 8192);
        if (k2p_buf_printf(&b, "%s%s", host, rel) < 0) {
            k2p_buf_deinit(&b);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
        url = k2p_buf_steal(&b, NULL);
    } else {
        if ((rc = k2p_cred_container_url_check(full, err)) < 0)
            return rc;
        if (!(url = k2p_strdup(full)))
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    k2p_cred_url_redact(url, shown, sizeof shown);
    if ((rc = auth_header(cp->env, &auth, err)) < 0)
        goto out;
    headers[1] = auth;
    {
        k2p_cred_http_req req = {
            .provider = "container",
            .method = "GET",
            .url = url,
            .headers = headers,
            .n_headers = auth ? 2 : 1,
            .connect_timeout_ms = CONTAINER_CONNECT_TIMEOUT_MS,
            .timeout_ms = CONTAINER_TIMEOUT_MS,
            .attempts = CONTAINER_ATTEMPTS,
            .no_proxy = strncmp(url, "http://", 7) == 0, /* loopback or link-local */
            .ca_file = cp->net.ca_file,
        };
        if ((rc = k2p_cred_http_do(&req, &resp, err)) < 0)
            goto out;
    }
    if (resp.status != 200) {
        rc = k2p_err_set(err, resp.status >= 500 ? K2P_EIO : K2P_EAUTH,
                         "container: GET %s answered HTTP %ld%s", shown, resp.status,
                         resp.status == 401 || resp.status == 403
                             ? " (check AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])"
                             : "");
        if (err)
            err->http_status = resp.status;
        goto out;
    }
    if ((rc = k2p_cred_json_extract(resp.body, resp.len, &doc, &perr)) < 0) {
        rc = k2p_err_set(err, rc, "container: malformed answer from %s: %s", shown, perr.msg);
        goto out;
    }
    snprintf(what, sizeof what, "container: answer from %s", shown);
    rc = k2p_cred_doc_to_creds(&doc, what, "container", out, err);
out:
    k2p_cred_doc_deinit(&doc);
    k2p_cred_http_resp_deinit(&resp);
    k2p_free_secret(&auth);
    free(url);
    return rc;
}

static void container_destroy(k2p_cred_provider *self)
{
    container_provider *cp = (container_provider *)self;
    if (!cp)
        return;
    k2p_cred_net_free(&cp->net);
    free(cp);
}

k2p_cred_provider *k2p_cred_provider_container_new(const k2p_env *env, const k2p_cred_net_opts *net)
{
    container_provider *cp = calloc(1, sizeof *cp);
    if (!cp)
        return NULL;
    cp->base.name = "container";
    cp->base.resolve = container_resolve;
    cp->base.destroy = container_destroy;
    cp->env = env;
    if (k2p_cred_net_copy(&cp->net, net) < 0) {
        free(cp);
        return NULL;
    }
    return &cp->base;
}

/* aws_cred_web_identity.c - the web identity credential provider (EKS IAM roles for service
 * accounts): AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN exchanged at STS
 * AssumeRoleWithWebIdentity for temporary credentials.
 *
 * The token file is read at every resolve: EKS rotates it (hourly, valid 24 h), and the chain
 * resolves again five minutes before the credentials expire.
 * Threading: resolve runs on the chain's refreshing thread, one at a time; no state between
 * calls besides the copied options.
 */
#include "aws_cred_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int k2p_cred_web_identity_fetch(const k2p_sts_opts *o, const char *token_var,
                                const char *token_file, const char *role_arn,
                                const char *session_name, const char *source, k2p_aws_creds *out,
                                k2p_err *err)
{
    char what[200], session[64], *token = NULL;
    int rc;

    snprintf(what, sizeof what, "%s: %s", o->provider, token_var);
    if ((rc = k2p_cred_read_token_file(token_file, what, K2P_CRED_TOKEN_FILE_MAX, &token, err)) < 0)
        return rc;
    if (!session_name || !*session_name)
        session_name = k2p_sts_default_session_name(session, sizeof session);
    rc = k2p_sts_assume_role_with_web_identity(o, role_arn, session_name, token, source, out, err);
    k2p_free_secret(&token);
    return rc;
}

typedef struct web_identity_provider {
    k2p_cred_provider base;
    const k2p_env *env;
    k2p_cred_net net;
} web_identity_provider;

static int web_identity_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    web_identity_provider *wp = (web_identity_provider *)self;
    const char *file = k2p_env_get(wp->env, "AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *arn = k2p_env_get(wp->env, "AWS_ROLE_ARN");
    char *region = NULL;
    k2p_sts_opts o = {wp->env, wp->net.region, wp->net.ca_file, "web identity"};
    int rc;

    if (!file && !arn)
        return k2p_err_set(err, K2P_ENOTFOUND, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set");
    if (!file || !arn)
        return k2p_err_set(err, K2P_EAUTH, "web identity: %s is set but %s is not",
                           file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
                           file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
    if (!o.region)
        o.region = region = k2p_aws_region_from_env(wp->env, NULL);
    rc = k2p_cred_web_identity_fetch(&o, "AWS_WEB_IDENTITY_TOKEN_FILE", file, arn,
                                     k2p_env_get(wp->env, "AWS_ROLE_SESSION_NAME"), "web identity",
                                     out, err);
    free(region);
    return rc;
}

static void web_identity_destroy(k2p_cred_provider *self)
{
    web_identity_provider *wp = (web_identity_provider *)self;
    if (!wp)
        return;
    k2p_cred_net_free(&wp->net);
    free(wp);
}

k2p_cred_provider *k2p_cred_provider_web_identity_new(const k2p_env *env,
                                                      const k2p_cred_net_opts *net)
{
    web_identity_provider *wp = calloc(1, sizeof *wp);
    if (!wp)
        return NULL;
    wp->base.name = "web identity";
    wp->base.resolve = web_identity_resolve;
    wp->base.destroy = web_identity_destroy;
    wp->env = env;
    if (k2p_cred_net_copy(&wp->net, net) < 0) {
        free(wp);
        return NULL;
    }
    return &wp->base;
}

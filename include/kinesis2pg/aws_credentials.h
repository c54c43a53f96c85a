/* aws_credentials.h - AWS credentials as a chain of providers (DESIGN §6).
 *
 * Each source is a provider (a small vtable); a chain asks them in order and caches the first
 * answer. Temporary credentials carry an expiry and are refreshed by one thread at a time
 * before they expire; other threads keep using the cached copy meanwhile.
 *
 * Providers, in the order of the standard chain (DESIGN §6): explicit (flags/config/dlt
 * secrets), environment, web identity (STS AssumeRoleWithWebIdentity: EKS IRSA), container
 * credentials (ECS, EKS Pod Identity), shared profile files (static keys, or role_arn with STS
 * AssumeRole), EC2 instance metadata (IMDSv2). The network providers live in src/aws_cred_*.c;
 * they speak HTTP through libcurl with TLS verification on and short timeouts, and never put a
 * secret or token in a URL or a message.
 *
 * Threading: a chain is shared by all reader threads; k2p_cred_chain_get is thread-safe. A
 * provider is called by one thread at a time (the chain's refreshing thread).
 */
#ifndef K2P_AWS_CREDENTIALS_H
#define K2P_AWS_CREDENTIALS_H

#include <stdint.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/env.h"

typedef struct k2p_aws_creds {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL when not temporary */
    int64_t expires_at;  /* Unix seconds; 0 = does not expire */
    const char *source;  /* static name of the provider that gave them: "environment", ... */
} k2p_aws_creds;

/* Frees the strings (secrets are zeroed first) and zeroes the struct. */
void k2p_aws_creds_deinit(k2p_aws_creds *c);

/* Deep copy; 0 or K2P_ENOMEM. */
int k2p_aws_creds_copy(k2p_aws_creds *dst, const k2p_aws_creds *src);

typedef struct k2p_cred_provider k2p_cred_provider;
struct k2p_cred_provider {
    const char *name;
    /* Fills *out. Returns 0, K2P_ENOTFOUND (this source has nothing: try the next one), or
     * another error (the source exists but is broken: the chain stops and reports it). */
    int (*resolve)(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err);
    void (*destroy)(k2p_cred_provider *self); /* frees self */
};

/* What the network providers need besides the environment. Strings are copied by the
 * constructors; a NULL opts pointer means all defaults. */
typedef struct k2p_cred_net_opts {
    /* Region of the STS endpoint; NULL: AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
     * else the global endpoint https://sts.amazonaws.com. */
    const char *region;
    /* PEM bundle for https credential endpoints (--ca-file / AWS_CA_BUNDLE); NULL: system. */
    const char *ca_file;
    /* Base URL that AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is appended to; NULL:
     * "http://169.254.170.2". Only tests change it. */
    const char *container_host;
} k2p_cred_net_opts;

/* Providers. `env` is borrowed and must outlive the provider. Each returns NULL on OOM. */
k2p_cred_provider *k2p_cred_provider_static_new(const char *access_key_id,
                                                const char *secret_access_key,
                                                const char *session_token);
k2p_cred_provider *k2p_cred_provider_env_new(const k2p_env *env);

/* Shared files. `profile` NULL: AWS_PROFILE, else "default". Files from
 * AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else ~/.aws/credentials and ~/.aws/config.
 * A profile with static keys gives them. A profile with role_arn assumes that role through STS
 * AssumeRole (SigV4, service "sts"), signed with the credentials of its source_profile (which
 * may itself assume a role, up to 4 deep; a profile naming itself uses its own static keys) or
 * of its credential_source (Environment, Ec2InstanceMetadata, EcsContainer); with
 * web_identity_token_file instead, through AssumeRoleWithWebIdentity. role_session_name,
 * external_id and duration_seconds are passed on; mfa_serial, credential_process and SSO are
 * reported as unsupported. Assumed-role credentials expire and are refreshed by the chain. */
k2p_cred_provider *k2p_cred_provider_profile_new(const k2p_env *env, const char *profile);
k2p_cred_provider *k2p_cred_provider_profile_new_net(const k2p_env *env, const char *profile,
                                                     const k2p_cred_net_opts *net);

/* Web identity (EKS IRSA): AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME,
 * default "kinesis2pg-<pid>"). Calls STS AssumeRoleWithWebIdentity at AWS_ENDPOINT_URL_STS,
 * AWS_ENDPOINT_URL or https://sts.<region>.amazonaws.com, the token in the POST body. The token
 * file is read again at every resolve (EKS rotates it). K2P_ENOTFOUND when neither variable is
 * set; one without the other, an unreadable token file or a refusal by STS is an error. */
k2p_cred_provider *k2p_cred_provider_web_identity_new(const k2p_env *env,
                                                      const k2p_cred_net_opts *net);

/* Container credentials (ECS, EKS Pod Identity): GET http://169.254.170.2 +
 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, else AWS_CONTAINER_CREDENTIALS_FULL_URI (http only to
 * loopback, 169.254.170.2, 169.254.170.23 or [fd00:ec2::23]; https to any host), with an
 * Authorization header from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read at every resolve) or
 * AWS_CONTAINER_AUTHORIZATION_TOKEN. K2P_ENOTFOUND when neither URI variable is set. */
k2p_cred_provider *k2p_cred_provider_container_new(const k2p_env *env,
                                                   const k2p_cred_net_opts *net);

/* EC2 instance metadata, IMDSv2 only: PUT /latest/api/token, then the role name and its
 * credentials under /latest/meta-data/iam/security-credentials/. Endpoint
 * AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254 ([fd00:ec2::254] with
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6). 1 s to connect, 1 s per request, one retry, so
 * a machine without IMDS gives up in about 2 s. K2P_ENOTFOUND when AWS_EC2_METADATA_DISABLED is
 * true, when nothing answers, or when no role is attached to the instance. */
k2p_cred_provider *k2p_cred_provider_imds_new(const k2p_env *env);

typedef struct k2p_cred_chain k2p_cred_chain;

/* Takes ownership of the providers (n of them, asked in order). NULL on OOM. */
k2p_cred_chain *k2p_cred_chain_new(k2p_cred_provider **providers, size_t n);
void k2p_cred_chain_free(k2p_cred_chain *c);

/* What the standard chain is built from. Strings are copied. */
typedef struct k2p_cred_chain_opts {
    /* Explicit keys (flags, config, dlt secrets): the static provider comes first when the key
     * id or the secret is set. */
    const char *access_key_id, *secret_access_key, *session_token;
    const char *profile; /* NULL: AWS_PROFILE, else "default" */
    k2p_cred_net_opts net;
} k2p_cred_chain_opts;

/* The standard chain of DESIGN §6: explicit (when set), environment, web identity, container,
 * shared profile files, IMDSv2. `env` is borrowed and must outlive the chain; `o` may be NULL.
 * NULL on OOM. */
k2p_cred_chain *k2p_cred_chain_standard_new(const k2p_env *env, const k2p_cred_chain_opts *o);

/* The standard chain with explicit keys and a profile only (no region or CA file). */
k2p_cred_chain *k2p_cred_chain_default_new(const k2p_env *env, const char *explicit_key_id,
                                           const char *explicit_secret, const char *explicit_token,
                                           const char *profile);

/* Replaces the chain's clock (Unix seconds) - for tests of expiry and refresh. Call before the
 * chain is shared between threads. */
void k2p_cred_chain_set_clock(k2p_cred_chain *c, int64_t (*now_s)(void *ctx), void *ctx);

/* Copies current credentials into *out (caller deinits). Resolves on first use, and again
 * when the cached ones expire within 5 minutes. 0, K2P_EAUTH (no provider had credentials:
 * the message lists what was tried; credentials of a bad format; or STS / the container
 * endpoint refused), or the failing provider's error (K2P_EPARSE for a malformed shared file or
 * credential answer, K2P_EIO for an unreachable or failing credential endpoint, K2P_ECONFIG for
 * a container URI that may not receive a token). Thread-safe: providers run on the calling
 * thread, one refresh at a time and without the lock held (a network provider may block that
 * thread for its timeouts); meanwhile other threads get the cached copy if it has not expired
 * yet, or wait for the refresh. When a refresh fails while the cached credentials are still
 * valid, they are returned and the next attempt waits 10 s; when it fails with nothing valid
 * cached, the threads that waited for it get its error (they do not each try again). */
int k2p_cred_chain_get(k2p_cred_chain *c, k2p_aws_creds *out, k2p_err *err);

/* Threads blocked in k2p_cred_chain_get waiting for a refresh (nothing valid cached): for tests
 * and diagnostics. Thread-safe. */
size_t k2p_cred_chain_waiting(k2p_cred_chain *c);

/* The profile the shared-file provider reads: `profile` if non-NULL, else AWS_PROFILE, else
 * "default". Borrowed pointer. */
const char *k2p_aws_profile_name(const k2p_env *env, const char *profile);

/* Region: AWS_REGION, AWS_DEFAULT_REGION, then the profile's `region` in the config file.
 * Returns a heap string, or NULL when none is set. */
char *k2p_aws_region_from_env(const k2p_env *env, const char *profile);

#endif

/* aws_credentials.h - AWS credentials as a chain of providers (DESIGN §6).
 *
 * Each source is a provider (a small vtable); a chain asks them in order and caches the first
 * answer. Temporary credentials carry an expiry and are refreshed by one thread at a time
 * before they expire; other threads keep using the cached copy meanwhile.
 *
 * Providers in this build: explicit (flags/config/dlt secrets), environment, shared profile
 * files. Web identity, container and IMDS providers slot in later with the same vtable.
 *
 * Threading: a chain is shared by all reader threads; k2p_cred_chain_get is thread-safe.
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

/* Providers. `env` is borrowed and must outlive the provider. */
k2p_cred_provider *k2p_cred_provider_static_new(const char *access_key_id,
                                                const char *secret_access_key,
                                                const char *session_token);
k2p_cred_provider *k2p_cred_provider_env_new(const k2p_env *env);
/* `profile` NULL: AWS_PROFILE, else "default". Files from AWS_SHARED_CREDENTIALS_FILE /
 * AWS_CONFIG_FILE, else ~/.aws/credentials and ~/.aws/config. */
k2p_cred_provider *k2p_cred_provider_profile_new(const k2p_env *env, const char *profile);

typedef struct k2p_cred_chain k2p_cred_chain;

/* Takes ownership of the providers (n of them, asked in order). NULL on OOM. */
k2p_cred_chain *k2p_cred_chain_new(k2p_cred_provider **providers, size_t n);
void k2p_cred_chain_free(k2p_cred_chain *c);

/* The standard chain of DESIGN §6 for this build: static (if explicit_key_id or
 * explicit_secret is non-NULL), environment, profile. Strings are copied; `env` is borrowed. */
k2p_cred_chain *k2p_cred_chain_default_new(const k2p_env *env, const char *explicit_key_id,
                                           const char *explicit_secret, const char *explicit_token,
                                           const char *profile);

/* Replaces the chain's clock (Unix seconds) - for tests of expiry and refresh. Call before the
 * chain is shared between threads. */
void k2p_cred_chain_set_clock(k2p_cred_chain *c, int64_t (*now_s)(void *ctx), void *ctx);

/* Copies current credentials into *out (caller deinits). Resolves on first use, and again
 * when the cached ones expire within 5 minutes. 0, K2P_EAUTH (no provider had credentials:
 * the message lists what was tried; or credentials of a bad format), or the failing provider's
 * error (K2P_EPARSE for a malformed shared file). Thread-safe: providers run on the calling
 * thread, one refresh at a time and without the lock held; meanwhile other threads get the
 * cached copy if it has not expired yet, or wait for the refresh. When a refresh fails while the
 * cached credentials are still valid, they are returned and the next attempt waits 10 s. */
int k2p_cred_chain_get(k2p_cred_chain *c, k2p_aws_creds *out, k2p_err *err);

/* The profile the shared-file provider reads: `profile` if non-NULL, else AWS_PROFILE, else
 * "default". Borrowed pointer. */
const char *k2p_aws_profile_name(const k2p_env *env, const char *profile);

/* Region: AWS_REGION, AWS_DEFAULT_REGION, then the profile's `region` in the config file.
 * Returns a heap string, or NULL when none is set. */
char *k2p_aws_region_from_env(const k2p_env *env, const char *profile);

#endif

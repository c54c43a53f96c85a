/* aws_credentials.c - AWS credential providers (explicit, environment, shared profile files) and
 * the caching chain that asks them in order (DESIGN §6).
 *
 * Threading: providers are not thread-safe on their own; the chain calls them from one thread at
 * a time (the thread that refreshes) without holding its mutex. k2p_cred_chain_get is safe from
 * any thread. Lock order: only chain->mu exists; nothing else is taken while it is held.
 * No secret reaches an error message: messages name variables, files and profiles only.
 */
#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/ini.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_BEFORE_S 300 /* refresh when the cached credentials expire within 5 minutes */
#define RETRY_AFTER_S 10     /* after a failed refresh while the cache is still valid */

/* ------------------------------------------------------------------------------------------ */
/* Credentials                                                                                 */
/* ------------------------------------------------------------------------------------------ */

void k2p_aws_creds_deinit(k2p_aws_creds *c)
{
    if (!c)
        return;
    k2p_free_secret(&c->access_key_id);
    k2p_free_secret(&c->secret_access_key);
    k2p_free_secret(&c->session_token);
    memset(c, 0, sizeof *c);
}

int k2p_aws_creds_copy(k2p_aws_creds *dst, const k2p_aws_creds *src)
{
    memset(dst, 0, sizeof *dst);
    dst->access_key_id = k2p_strdup(src->access_key_id);
    dst->secret_access_key = k2p_strdup(src->secret_access_key);
    dst->session_token = k2p_strdup(src->session_token);
    dst->expires_at = src->expires_at;
    dst->source = src->source;
    if ((src->access_key_id && !dst->access_key_id) ||
        (src->secret_access_key && !dst->secret_access_key) ||
        (src->session_token && !dst->session_token)) {
        k2p_aws_creds_deinit(dst);
        return K2P_ENOMEM;
    }
    return 0;
}

/* Fills *out with copies; `token` may be NULL. 0 or K2P_ENOMEM (message set). */
static int creds_set(k2p_aws_creds *out, const char *id, const char *secret, const char *token,
                     int64_t expires_at, const char *source, k2p_err *err)
{
    k2p_aws_creds tmp = {(char *)id, (char *)secret, (char *)token, expires_at, source};
    if (k2p_aws_creds_copy(out, &tmp) < 0)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory copying credentials");
    return 0;
}

/* Rejects credentials that cannot sign a request: blanks or control characters (a trailing
 * newline from `$(cat file)`, a CR from a Windows editor) or a key id that is not alphanumeric.
 * The message names the part, never its value. */
static int creds_check(const k2p_aws_creds *c, k2p_err *err)
{
    const char *names[3] = {"access key id", "secret access key", "session token"};
    const char *vals[3] = {c->access_key_id, c->secret_access_key, c->session_token};
    for (int i = 0; i < 3; i++) {
        const unsigned char *v = (const unsigned char *)vals[i];
        if (!v)
            continue;
        if (i < 2 && !*v)
            return k2p_err_set(err, K2P_EAUTH, "credentials from %s: the %s is empty", c->source,
                               names[i]);
        for (; *v; v++) {
            int bad = *v <= ' ' || *v >= 0x7F;
            if (i == 0)
                bad = !((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') ||
                        (*v >= '0' && *v <= '9'));
            if (bad)
                return k2p_err_set(err, K2P_EAUTH, "credentials from %s: the %s contains %s",
                                   c->source, names[i],
                                   i == 0 ? "characters other than letters and digits"
                                          : "blanks, control or non-ASCII characters");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Explicit (flags, config, dlt secrets)                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct static_provider {
    k2p_cred_provider base;
    char *id, *secret, *token;
} static_provider;

static int static_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    static_provider *sp = (static_provider *)self;
    if (!sp->id && !sp->secret)
        return k2p_err_set(err, K2P_ENOTFOUND, "explicit: no keys configured");
    if (!sp->id || !sp->secret)
        return k2p_err_set(err, K2P_EAUTH, "explicit credentials: %s is set but %s is not",
                           sp->id ? "aws_access_key_id" : "aws_secret_access_key",
                           sp->id ? "aws_secret_access_key" : "aws_access_key_id");
    return creds_set(out, sp->id, sp->secret, sp->token, 0, "explicit", err);
}

static void static_destroy(k2p_cred_provider *self)
{
    static_provider *sp = (static_provider *)self;
    if (!sp)
        return;
    k2p_free_secret(&sp->id);
    k2p_free_secret(&sp->secret);
    k2p_free_secret(&sp->token);
    free(sp);
}

/* Copies s unless it is NULL or empty. 0, or -1 on OOM. */
static int dup_nonempty(char **dst, const char *s)
{
    *dst = NULL;
    if (!s || !*s)
        return 0;
    *dst = k2p_strdup(s);
    return *dst ? 0 : -1;
}

k2p_cred_provider *k2p_cred_provider_static_new(const char *access_key_id,
                                                const char *secret_access_key,
                                                const char *session_token)
{
    static_provider *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    sp->base.name = "explicit";
    sp->base.resolve = static_resolve;
    sp->base.destroy = static_destroy;
    if (dup_nonempty(&sp->id, access_key_id) < 0 ||
        dup_nonempty(&sp->secret, secret_access_key) < 0 ||
        dup_nonempty(&sp->token, session_token) < 0) {
        static_destroy(&sp->base);
        return NULL;
    }
    return &sp->base;
}

/* ------------------------------------------------------------------------------------------ */
/* Environment                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct env_provider {
    k2p_cred_provider base;
    const k2p_env *env;
} env_provider;

static int env_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    const k2p_env *env = ((env_provider *)self)->env;
    const char *id = k2p_env_get(env, "AWS_ACCESS_KEY_ID");
    const char *secret = k2p_env_get(env, "AWS_SECRET_ACCESS_KEY");
    const char *token = k2p_env_get(env, "AWS_SESSION_TOKEN");
    const char *exp = k2p_env_get(env, "AWS_CREDENTIAL_EXPIRATION");
    int64_t expires_at = 0;

    /* A session token alone is ignored, as the AWS SDKs do: it is often left over. */
    if (!id && !secret)
        return k2p_err_set(err, K2P_ENOTFOUND, "environment: AWS_ACCESS_KEY_ID is not set");
    if (!id || !secret)
        return k2p_err_set(err, K2P_EAUTH, "environment: %s is set but %s is not",
                           id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                           id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    if (exp) {
        int64_t us;
        if (k2p_parse_rfc3339(exp, &us) < 0)
            return k2p_err_set(err, K2P_EAUTH,
                               "environment: AWS_CREDENTIAL_EXPIRATION is not an RFC 3339 time "
                               "(e.g. 2024-05-01T12:00:00Z)");
        expires_at = us / 1000000;
    }
    return creds_set(out, id, secret, token, expires_at, "environment", err);
}

static void plain_destroy(k2p_cred_provider *self)
{
    free(self);
}

k2p_cred_provider *k2p_cred_provider_env_new(const k2p_env *env)
{
    env_provider *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->base.name = "environment";
    ep->base.resolve = env_resolve;
    ep->base.destroy = plain_destroy;
    ep->env = env;
    return &ep->base;
}

/* ------------------------------------------------------------------------------------------ */
/* Shared profile files                                                                        */
/* ------------------------------------------------------------------------------------------ */

const char *k2p_aws_profile_name(const k2p_env *env, const char *profile)
{
    const char *p = profile && *profile ? profile : k2p_env_get(env, "AWS_PROFILE");
    return p ? p : "default";
}

/* Path of a shared file: the env override (with a leading "~/" expanded), else
 * $HOME/.aws/<name>. Heap string; NULL when HOME is needed but unset, or on OOM. */
static char *shared_file_path(const k2p_env *env, const char *var, const char *name)
{
    const char *v = k2p_env_get(env, var), *home = k2p_env_get(env, "HOME");
    k2p_buf b;
    int rc = 0;
    k2p_buf_init(&b, 8192);
    if (v && strncmp(v, "~/", 2) != 0)
        return k2p_strdup(v);
    if (!home)
        return NULL;
    if (v)
        rc = k2p_buf_printf(&b, "%s/%s", home, v + 2);
    else
        rc = k2p_buf_printf(&b, "%s/.aws/%s", home, name);
    if (rc < 0) {
        k2p_buf_deinit(&b);
        return NULL;
    }
    return k2p_buf_steal(&b, NULL);
}

/* Loads a shared file; a missing file leaves `l` empty and sets *missing. */
static int load_shared(const char *path, k2p_kv_list *l, int *missing, k2p_err *err)
{
    int rc;
    *missing = 1;
    if (!path)
        return 0;
    rc = k2p_ini_load_file(path, l, err);
    if (rc == K2P_ENOTFOUND) {
        k2p_err_clear(err);
        return 0;
    }
    if (rc == 0)
        *missing = 0;
    return rc;
}

/* The config file's section for a profile: "profile NAME"; for "default" also plain
 * "default" (the AWS SDKs accept both, "profile default" winning). */
static const char *config_section(const k2p_kv_list *l, const char *profile, char *buf, size_t size)
{
    snprintf(buf, size, "profile %s", profile);
    if (k2p_kv_has_prefix(l, buf, ""))
        return buf;
    if (strcmp(profile, "default") == 0)
        return "default";
    return buf;
}

typedef struct profile_provider {
    k2p_cred_provider base;
    const k2p_env *env;
    char *profile; /* NULL: AWS_PROFILE or "default" at resolve time */
} profile_provider;

/* Credentials of one file's section: 1 found (out filled), 0 none, <0 error. */
static int section_creds(const k2p_kv_list *l, const char *section, const char *path,
                         const char *profile, k2p_aws_creds *out, k2p_err *err)
{
    const k2p_kv *id = k2p_kv_find(l, section, "aws_access_key_id");
    const k2p_kv *secret = k2p_kv_find(l, section, "aws_secret_access_key");
    const k2p_kv *token = k2p_kv_find(l, section, "aws_session_token");
    int rc;
    if (!id && !secret)
        return 0;
    if (!id || !secret || !*id->value || !*secret->value)
        return k2p_err_set(err, K2P_EAUTH, "profile '%s' in %s: %s is missing or empty", profile,
                           path,
                           (!id || !*id->value) ? "aws_access_key_id" : "aws_secret_access_key");
    rc = creds_set(out, id->value, secret->value, token && *token->value ? token->value : NULL, 0,
                   "profile", err);
    return rc < 0 ? rc : 1;
}

static int profile_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    static const char *const unsupported[] = {"role_arn", "credential_process", "sso_start_url",
                                              "sso_session", "web_identity_token_file"};
    profile_provider *pp = (profile_provider *)self;
    const char *name = k2p_aws_profile_name(pp->env, pp->profile);
    int named = (pp->profile && *pp->profile) || k2p_env_get(pp->env, "AWS_PROFILE") != NULL;
    char *cred_path = shared_file_path(pp->env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    char *conf_path = shared_file_path(pp->env, "AWS_CONFIG_FILE", "config");
    const char *cp = cred_path ? cred_path : "~/.aws/credentials (HOME unset)";
    const char *fp = conf_path ? conf_path : "~/.aws/config (HOME unset)";
    k2p_kv_list creds, conf;
    char secbuf[300];
    const char *csec;
    int cred_missing, conf_missing, rc;

    k2p_kv_list_init(&creds);
    k2p_kv_list_init(&conf);
    if ((rc = load_shared(cred_path, &creds, &cred_missing, err)) < 0 ||
        (rc = load_shared(conf_path, &conf, &conf_missing, err)) < 0)
        goto out;

    /* The credentials file wins over the config file, as in the AWS CLI. */
    if ((rc = section_creds(&creds, name, cp, name, out, err)) != 0)
        goto out;
    csec = config_section(&conf, name, secbuf, sizeof secbuf);
    if ((rc = section_creds(&conf, csec, fp, name, out, err)) != 0)
        goto out;

    if (k2p_kv_has_prefix(&creds, name, "") || k2p_kv_has_prefix(&conf, csec, "")) {
        for (size_t i = 0; i < K2P_ARRAY_LEN(unsupported); i++) {
            if (k2p_kv_find(&creds, name, unsupported[i]) ||
                k2p_kv_find(&conf, csec, unsupported[i])) {
                rc = k2p_err_set(err, K2P_EAUTH,
                                 "profile '%s' uses %s, which kinesis2pg does not support yet: "
                                 "give static keys or export AWS_ACCESS_KEY_ID/"
                                 "AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (e.g. from "
                                 "`aws configure export-credentials`)",
                                 name, unsupported[i]);
                goto out;
            }
        }
        rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                         "profile '%s' has no aws_access_key_id in %s or %s", name, cp, fp);
    } else if (cred_missing && conf_missing) {
        rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                         "profile '%s': neither %s nor %s exists", name, cp, fp);
    } else {
        rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                         "profile '%s' not found in %s or %s", name, cp, fp);
    }
out:
    if (rc == 1)
        rc = 0;
    k2p_kv_list_deinit(&creds);
    k2p_kv_list_deinit(&conf);
    free(cred_path);
    free(conf_path);
    return rc;
}

static void profile_destroy(k2p_cred_provider *self)
{
    profile_provider *pp = (profile_provider *)self;
    if (!pp)
        return;
    free(pp->profile);
    free(pp);
}

k2p_cred_provider *k2p_cred_provider_profile_new(const k2p_env *env, const char *profile)
{
    profile_provider *pp = calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    pp->base.name = "profile";
    pp->base.resolve = profile_resolve;
    pp->base.destroy = profile_destroy;
    pp->env = env;
    if (dup_nonempty(&pp->profile, profile) < 0) {
        free(pp);
        return NULL;
    }
    return &pp->base;
}

char *k2p_aws_region_from_env(const k2p_env *env, const char *profile)
{
    const char *r = k2p_env_get(env, "AWS_REGION");
    char *path, *region = NULL, secbuf[300];
    k2p_kv_list conf;
    int missing;

    if (!r)
        r = k2p_env_get(env, "AWS_DEFAULT_REGION");
    if (r)
        return k2p_strdup(r);
    path = shared_file_path(env, "AWS_CONFIG_FILE", "config");
    k2p_kv_list_init(&conf);
    /* A broken config file is reported by the profile provider; here it only has no region. */
    if (load_shared(path, &conf, &missing, NULL) == 0) {
        const char *name = k2p_aws_profile_name(env, profile);
        const k2p_kv *kv =
            k2p_kv_find(&conf, config_section(&conf, name, secbuf, sizeof secbuf), "region");
        if (kv && *kv->value)
            region = k2p_strdup(kv->value);
    }
    k2p_kv_list_deinit(&conf);
    free(path);
    return region;
}

/* ------------------------------------------------------------------------------------------ */
/* Chain                                                                                       */
/* ------------------------------------------------------------------------------------------ */

struct k2p_cred_chain {
    pthread_mutex_t mu;
    pthread_cond_t done; /* signalled when a refresh ends */
    k2p_cred_provider **providers;
    size_t n;
    /* Guarded by mu: */
    k2p_aws_creds cached;
    int have;
    int refreshing;
    int64_t retry_at;
    /* Set before sharing: */
    int64_t (*now)(void *ctx);
    void *now_ctx;
};

static int64_t wall_seconds(void *ctx)
{
    (void)ctx;
    return k2p_wall_us() / 1000000;
}

k2p_cred_chain *k2p_cred_chain_new(k2p_cred_provider **providers, size_t n)
{
    k2p_cred_chain *c = calloc(1, sizeof *c);
    if (c)
        c->providers = calloc(n ? n : 1, sizeof *c->providers);
    if (!c || !c->providers || pthread_mutex_init(&c->mu, NULL) != 0) {
        if (c)
            free(c->providers);
        free(c);
        for (size_t i = 0; i < n; i++)
            if (providers[i])
                providers[i]->destroy(providers[i]);
        return NULL;
    }
    if (pthread_cond_init(&c->done, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        free(c->providers);
        free(c);
        for (size_t i = 0; i < n; i++)
            if (providers[i])
                providers[i]->destroy(providers[i]);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (providers[i])
            c->providers[c->n++] = providers[i];
    c->now = wall_seconds;
    return c;
}

void k2p_cred_chain_free(k2p_cred_chain *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        c->providers[i]->destroy(c->providers[i]);
    free(c->providers);
    k2p_aws_creds_deinit(&c->cached);
    pthread_cond_destroy(&c->done);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void k2p_cred_chain_set_clock(k2p_cred_chain *c, int64_t (*now_s)(void *ctx), void *ctx)
{
    c->now = now_s ? now_s : wall_seconds;
    c->now_ctx = ctx;
}

k2p_cred_chain *k2p_cred_chain_default_new(const k2p_env *env, const char *explicit_key_id,
                                           const char *explicit_secret, const char *explicit_token,
                                           const char *profile)
{
    k2p_cred_provider *p[3];
    size_t n = 0;
    int explicit = (explicit_key_id && *explicit_key_id) || (explicit_secret && *explicit_secret);

    if (explicit &&
        !(p[n++] = k2p_cred_provider_static_new(explicit_key_id, explicit_secret, explicit_token)))
        goto oom;
    if (!(p[n++] = k2p_cred_provider_env_new(env)))
        goto oom;
    if (!(p[n++] = k2p_cred_provider_profile_new(env, profile)))
        goto oom;
    return k2p_cred_chain_new(p, n);
oom:
    for (size_t i = 0; i + 1 < n; i++)
        p[i]->destroy(p[i]);
    return NULL;
}

/* Asks each provider in order. Runs on the refreshing thread, without the chain lock. */
static int chain_resolve(k2p_cred_chain *c, k2p_aws_creds *out, k2p_err *err)
{
    k2p_buf tried;
    k2p_err perr;
    int rc = K2P_EAUTH;

    k2p_buf_init(&tried, 400);
    for (size_t i = 0; i < c->n; i++) {
        k2p_cred_provider *p = c->providers[i];
        k2p_err_clear(&perr);
        memset(out, 0, sizeof *out);
        rc = p->resolve(p, out, &perr);
        if (rc == 0) {
            if (!out->source)
                out->source = p->name;
            if ((rc = creds_check(out, &perr)) < 0)
                k2p_aws_creds_deinit(out);
        }
        if (rc != K2P_ENOTFOUND) {
            if (rc < 0 && err)
                *err = perr;
            k2p_buf_deinit(&tried);
            return rc;
        }
        /* Best effort: a full buffer only shortens the list of what was tried. */
        (void)k2p_buf_printf(&tried, "%s%s", tried.len ? "; " : "", perr.msg);
    }
    rc = k2p_err_set(err, K2P_EAUTH, "no AWS credentials found (tried: %s)",
                     tried.len ? tried.data : "no providers");
    k2p_buf_deinit(&tried);
    return rc;
}

int k2p_cred_chain_get(k2p_cred_chain *c, k2p_aws_creds *out, k2p_err *err)
{
    k2p_aws_creds fresh;
    int rc;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int64_t now = c->now(c->now_ctx);
        int valid = c->have && (c->cached.expires_at == 0 || now < c->cached.expires_at);
        int current =
            valid && (c->cached.expires_at == 0 || now < c->cached.expires_at - REFRESH_BEFORE_S);
        if (current || (valid && (c->refreshing || now < c->retry_at))) {
            rc = k2p_aws_creds_copy(out, &c->cached);
            pthread_mutex_unlock(&c->mu);
            return rc < 0 ? k2p_err_set(err, rc, "out of memory copying credentials") : 0;
        }
        if (!c->refreshing)
            break;
        /* Nothing valid to hand out: wait for the refreshing thread. */
        pthread_cond_wait(&c->done, &c->mu);
    }
    c->refreshing = 1;
    pthread_mutex_unlock(&c->mu);

    rc = chain_resolve(c, &fresh, err);

    pthread_mutex_lock(&c->mu);
    c->refreshing = 0;
    int64_t now = c->now(c->now_ctx);
    c->retry_at = now + RETRY_AFTER_S;
    if (rc == 0) {
        k2p_aws_creds_deinit(&c->cached);
        c->cached = fresh;
        c->have = 1;
    }
    if (rc == 0 || (c->have && (c->cached.expires_at == 0 || now < c->cached.expires_at))) {
        /* A failed refresh still serves the old credentials while they are valid. */
        if (rc < 0)
            k2p_err_clear(err);
        rc = k2p_aws_creds_copy(out, &c->cached);
        if (rc < 0)
            k2p_err_set(err, rc, "out of memory copying credentials");
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* aws_credentials.c - AWS credential providers (explicit, environment, shared profile files) and
 * the caching chain that asks them in order (DESIGN §6). The network providers (web identity,
 * container, IMDS) and the STS calls behind role_arn profiles live in aws_cred_*.c.
 *
 * Threading: providers are not thread-safe on their own; the chain calls them from one thread at
 * a time (the thread that refreshes) without holding its mutex. k2p_cred_chain_get is safe from
 * any thread. Lock order: only chain->mu exists; nothing else is taken while it is held.
 * No secret reaches an error message: messages name variables, files and profiles only.
 */
#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/ini.h"

#include "aws_cred_internal.h"

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
    k2p_cred_net net;
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

/* Both shared files, loaded once per resolve, and what messages call them. */
typedef struct profile_files {
    const profile_provider *pp;
    k2p_kv_list creds, conf;
    const char *cp, *fp;
} profile_files;

#define PROFILE_MAX_DEPTH 4 /* source_profile hops, as a loop guard */

/* A setting of profile `name`: the credentials file's [name] wins over the config file's
 * section. NULL when absent or empty. */
static const char *profile_get(const profile_files *f, const char *name, const char *key)
{
    char secbuf[300];
    const k2p_kv *kv = k2p_kv_find(&f->creds, name, key);
    if (!kv || !*kv->value)
        kv = k2p_kv_find(&f->conf, config_section(&f->conf, name, secbuf, sizeof secbuf), key);
    return kv && *kv->value ? kv->value : NULL;
}

static int profile_exists(const profile_files *f, const char *name)
{
    char secbuf[300];
    return k2p_kv_has_prefix(&f->creds, name, "") ||
           k2p_kv_has_prefix(&f->conf, config_section(&f->conf, name, secbuf, sizeof secbuf), "");
}

/* Static keys of profile `name`, the credentials file winning: 1 found, 0 none, <0 error. */
static int profile_static(const profile_files *f, const char *name, k2p_aws_creds *out,
                          k2p_err *err)
{
    char secbuf[300];
    int rc = section_creds(&f->creds, name, f->cp, name, out, err);
    if (rc != 0)
        return rc;
    return section_creds(&f->conf, config_section(&f->conf, name, secbuf, sizeof secbuf), f->fp,
                         name, out, err);
}

/* A path from a profile setting with a leading "~/" expanded. Heap; NULL on OOM. */
static char *expand_home(const k2p_env *env, const char *path)
{
    const char *home = k2p_env_get(env, "HOME");
    k2p_buf b;
    if (strncmp(path, "~/", 2) != 0 || !home)
        return k2p_strdup(path);
    k2p_buf_init(&b, 8192);
    if (k2p_buf_printf(&b, "%s/%s", home, path + 2) < 0) {
        k2p_buf_deinit(&b);
        return NULL;
    }
    return k2p_buf_steal(&b, NULL);
}

static int profile_resolve_name(const profile_files *f, const char *name, int depth,
                                k2p_aws_creds *out, k2p_err *err);

/* The credentials a role_arn profile signs AssumeRole with: its credential_source, or its
 * source_profile (itself: its own static keys). */
static int role_source(const profile_files *f, const char *name, int depth, k2p_aws_creds *out,
                       k2p_err *err)
{
    const profile_provider *pp = f->pp;
    const char *src = profile_get(f, name, "source_profile");
    const char *csrc = profile_get(f, name, "credential_source");
    k2p_cred_net_opts net = k2p_cred_net_view(&pp->net);
    k2p_cred_provider *p = NULL;
    k2p_err perr;
    int rc;

    if (src && csrc)
        return k2p_err_set(err, K2P_EAUTH,
                           "profile '%s' sets both source_profile and credential_source", name);
    if (src && strcmp(src, name) == 0) {
        rc = profile_static(f, name, out, err);
        if (rc == 0)
            rc = k2p_err_set(err, K2P_EAUTH,
                             "profile '%s' is its own source_profile but has no "
                             "aws_access_key_id",
                             name);
        return rc < 0 ? rc : 0;
    }
    if (src) {
        if (depth >= PROFILE_MAX_DEPTH)
            return k2p_err_set(err, K2P_EAUTH,
                               "profile '%s': source_profile chain longer than %d (a loop?)", name,
                               PROFILE_MAX_DEPTH);
        if (!profile_exists(f, src))
            return k2p_err_set(err, K2P_EAUTH,
                               "profile '%s': source_profile '%s' not found in %s or %s", name, src,
                               f->cp, f->fp);
        rc = profile_resolve_name(f, src, depth + 1, out, err);
        if (rc == 1)
            rc = k2p_err_set(err, K2P_EAUTH, "profile '%s': source_profile '%s' has no credentials",
                             name, src);
        return rc;
    }
    if (!csrc)
        return k2p_err_set(err, K2P_EAUTH,
                           "profile '%s' has role_arn but neither source_profile nor "
                           "credential_source",
                           name);
    if (strcmp(csrc, "Environment") == 0)
        p = k2p_cred_provider_env_new(pp->env);
    else if (strcmp(csrc, "Ec2InstanceMetadata") == 0)
        p = k2p_cred_provider_imds_new(pp->env);
    else if (strcmp(csrc, "EcsContainer") == 0)
        p = k2p_cred_provider_container_new(pp->env, &net);
    else
        return k2p_err_set(err, K2P_EAUTH,
                           "profile '%s': credential_source must be Environment, "
                           "Ec2InstanceMetadata or EcsContainer",
                           name);
    if (!p)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    k2p_err_clear(&perr);
    rc = p->resolve(p, out, &perr);
    p->destroy(p);
    if (rc < 0)
        return k2p_err_set(err, rc == K2P_ENOTFOUND ? K2P_EAUTH : rc,
                           "profile '%s': credential_source %s: %s", name, csrc, perr.msg);
    return 0;
}

/* role_arn: STS AssumeRole signed with the source's credentials, or AssumeRoleWithWebIdentity
 * when the profile has web_identity_token_file. */
static int profile_assume(const profile_files *f, const char *name, const char *role_arn, int depth,
                          k2p_aws_creds *out, k2p_err *err)
{
    const profile_provider *pp = f->pp;
    const char *wit = profile_get(f, name, "web_identity_token_file");
    const char *dur = profile_get(f, name, "duration_seconds");
    char provider[300], *region = NULL, *path = NULL;
    k2p_sts_opts o = {pp->env, pp->net.region, pp->net.ca_file, provider};
    k2p_sts_role role = {role_arn, profile_get(f, name, "role_session_name"),
                         profile_get(f, name, "external_id"), 0};
    k2p_aws_creds source = {0};
    int rc;

    snprintf(provider, sizeof provider, "profile '%s'", name);
    if (profile_get(f, name, "mfa_serial"))
        return k2p_err_set(err, K2P_EAUTH,
                           "profile '%s' needs an MFA code (mfa_serial), which kinesis2pg cannot "
                           "ask for: export temporary credentials instead (e.g. from `aws "
                           "configure export-credentials`)",
                           name);
    if (dur) {
        int64_t d;
        if (k2p_parse_i64(dur, &d) < 0 || d < 900 || d > 43200)
            return k2p_err_set(err, K2P_EAUTH, "profile '%s': duration_seconds must be 900..43200",
                               name);
        role.duration_s = (int)d;
    }
    if (!o.region)
        o.region = region = k2p_aws_region_from_env(pp->env, name);
    if (wit) {
        if (!(path = expand_home(pp->env, wit)))
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        else
            rc = k2p_cred_web_identity_fetch(&o, "web_identity_token_file", path, role_arn,
                                             role.session_name, "profile", out, err);
        goto out;
    }
    if ((rc = role_source(f, name, depth, &source, err)) < 0)
        goto out;
    if (!source.source)
        source.source = "profile";
    if ((rc = creds_check(&source, err)) < 0)
        goto out;
    rc = k2p_sts_assume_role(&o, &source, &role, "profile", out, err);
out:
    k2p_aws_creds_deinit(&source);
    free(region);
    free(path);
    return rc;
}

/* Credentials of profile `name`: 0 (out filled), 1 (it has none), or an error. The profile
 * asked for (depth 0) assumes its role_arn even when it also has static keys; a source profile
 * with static keys gives them (the AWS CLI's rules). */
static int profile_resolve_name(const profile_files *f, const char *name, int depth,
                                k2p_aws_creds *out, k2p_err *err)
{
    const char *role_arn = profile_get(f, name, "role_arn");
    int rc;
    if (depth > 0 || !role_arn) {
        if ((rc = profile_static(f, name, out, err)) != 0)
            return rc < 0 ? rc : 0;
    }
    if (role_arn)
        return profile_assume(f, name, role_arn, depth, out, err);
    return 1;
}

static int profile_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    static const char *const unsupported[] = {"credential_process", "sso_start_url", "sso_session"};
    profile_provider *pp = (profile_provider *)self;
    const char *name = k2p_aws_profile_name(pp->env, pp->profile);
    int named = (pp->profile && *pp->profile) || k2p_env_get(pp->env, "AWS_PROFILE") != NULL;
    char *cred_path = shared_file_path(pp->env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    char *conf_path = shared_file_path(pp->env, "AWS_CONFIG_FILE", "config");
    profile_files f = {pp,
                       {0},
                       {0},
                       cred_path ? cred_path : "~/.aws/credentials (HOME unset)",
                       conf_path ? conf_path : "~/.aws/config (HOME unset)"};
    int cred_missing, conf_missing, rc;

    k2p_kv_list_init(&f.creds);
    k2p_kv_list_init(&f.conf);
    if ((rc = load_shared(cred_path, &f.creds, &cred_missing, err)) < 0 ||
        (rc = load_shared(conf_path, &f.conf, &conf_missing, err)) < 0)
        goto out;

    if ((rc = profile_resolve_name(&f, name, 0, out, err)) != 1)
        goto out;

    if (profile_exists(&f, name)) {
        for (size_t i = 0; i < K2P_ARRAY_LEN(unsupported); i++) {
            if (profile_get(&f, name, unsupported[i])) {
                rc = k2p_err_set(err, K2P_EAUTH,
                                 "profile '%s' uses %s, which kinesis2pg does not support yet: "
                                 "give static keys or export AWS_ACCESS_KEY_ID/"
                                 "AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN (e.g. from "
                                 "`aws configure export-credentials`)",
                                 name, unsupported[i]);
                goto out;
            }
        }
        if (profile_get(&f, name, "web_identity_token_file"))
            rc = k2p_err_set(err, K2P_EAUTH,
                             "profile '%s' has web_identity_token_file but no role_arn", name);
        else
            rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                             "profile '%s' has no aws_access_key_id in %s or %s", name, f.cp, f.fp);
    } else if (cred_missing && conf_missing) {
        rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                         "profile '%s': neither %s nor %s exists", name, f.cp, f.fp);
    } else {
        rc = k2p_err_set(err, named ? K2P_EAUTH : K2P_ENOTFOUND,
                         "profile '%s' not found in %s or %s", name, f.cp, f.fp);
    }
out:
    k2p_kv_list_deinit(&f.creds);
    k2p_kv_list_deinit(&f.conf);
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
    k2p_cred_net_free(&pp->net);
    free(pp);
}

k2p_cred_provider *k2p_cred_provider_profile_new_net(const k2p_env *env, const char *profile,
                                                     const k2p_cred_net_opts *net)
{
    profile_provider *pp = calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    pp->base.name = "profile";
    pp->base.resolve = profile_resolve;
    pp->base.destroy = profile_destroy;
    pp->env = env;
    if (dup_nonempty(&pp->profile, profile) < 0 || k2p_cred_net_copy(&pp->net, net) < 0) {
        profile_destroy(&pp->base);
        return NULL;
    }
    return &pp->base;
}

k2p_cred_provider *k2p_cred_provider_profile_new(const k2p_env *env, const char *profile)
{
    return k2p_cred_provider_profile_new_net(env, profile, NULL);
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
    uint64_t refreshes; /* completed refreshes, so a waiter knows its refresh ended */
    int last_rc;        /* result of the last refresh, and its error (never a secret) */
    k2p_err last_err;
    size_t waiting; /* threads waiting for a refresh (k2p_cred_chain_waiting) */
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

k2p_cred_chain *k2p_cred_chain_standard_new(const k2p_env *env, const k2p_cred_chain_opts *o)
{
    static const k2p_cred_chain_opts none = {0};
    k2p_cred_provider *p[6];
    size_t n = 0;
    int explicit;

    if (!o)
        o = &none;
    explicit =
        (o->access_key_id && *o->access_key_id) || (o->secret_access_key && *o->secret_access_key);
    /* DESIGN §6 order. Each constructor only copies strings: nothing is looked up until the
     * first k2p_cred_chain_get. */
    if (explicit && !(p[n++] = k2p_cred_provider_static_new(o->access_key_id, o->secret_access_key,
                                                            o->session_token)))
        goto oom;
    if (!(p[n++] = k2p_cred_provider_env_new(env)) ||
        !(p[n++] = k2p_cred_provider_web_identity_new(env, &o->net)) ||
        !(p[n++] = k2p_cred_provider_container_new(env, &o->net)) ||
        !(p[n++] = k2p_cred_provider_profile_new_net(env, o->profile, &o->net)) ||
        !(p[n++] = k2p_cred_provider_imds_new(env)))
        goto oom;
    return k2p_cred_chain_new(p, n);
oom:
    for (size_t i = 0; i + 1 < n; i++)
        p[i]->destroy(p[i]);
    return NULL;
}

k2p_cred_chain *k2p_cred_chain_default_new(const k2p_env *env, const char *explicit_key_id,
                                           const char *explicit_secret, const char *explicit_token,
                                           const char *profile)
{
    k2p_cred_chain_opts o = {explicit_key_id, explicit_secret, explicit_token, profile, {0}};
    return k2p_cred_chain_standard_new(env, &o);
}

/* Asks each provider in order. Runs on the refreshing thread, without the chain lock. */
static int chain_resolve(k2p_cred_chain *c, k2p_aws_creds *out, k2p_err *err)
{
    k2p_buf tried;
    k2p_err perr;
    int rc = K2P_EAUTH;

    k2p_buf_init(&tried, 1024);
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
    k2p_err rerr;
    uint64_t seen = 0;
    int waited = 0, rc;

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
        /* The refresh we waited for failed and nothing valid is cached: share its error
         * rather than have every waiting thread try (and time out) again in turn. */
        if (waited && c->refreshes != seen && c->last_rc < 0) {
            rc = c->last_rc;
            if (err)
                *err = c->last_err;
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
        if (!c->refreshing)
            break;
        /* Nothing valid to hand out: wait for the refreshing thread. */
        seen = c->refreshes;
        waited = 1;
        c->waiting++;
        pthread_cond_wait(&c->done, &c->mu);
        c->waiting--;
    }
    c->refreshing = 1;
    pthread_mutex_unlock(&c->mu);

    /* The providers run without the lock: readers keep the cached copy meanwhile. */
    k2p_err_clear(&rerr);
    rc = chain_resolve(c, &fresh, &rerr);

    pthread_mutex_lock(&c->mu);
    c->refreshing = 0;
    c->refreshes++;
    c->last_rc = rc;
    c->last_err = rerr;
    int64_t now = c->now(c->now_ctx);
    c->retry_at = now + RETRY_AFTER_S;
    if (rc == 0) {
        k2p_aws_creds_deinit(&c->cached);
        c->cached = fresh;
        c->have = 1;
    }
    if (rc == 0 || (c->have && (c->cached.expires_at == 0 || now < c->cached.expires_at))) {
        /* A failed refresh still serves the old credentials while they are valid. */
        rc = k2p_aws_creds_copy(out, &c->cached);
        if (rc < 0)
            k2p_err_set(err, rc, "out of memory copying credentials");
    } else if (err) {
        *err = rerr;
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

size_t k2p_cred_chain_waiting(k2p_cred_chain *c)
{
    size_t n;
    pthread_mutex_lock(&c->mu);
    n = c->waiting;
    pthread_mutex_unlock(&c->mu);
    return n;
}

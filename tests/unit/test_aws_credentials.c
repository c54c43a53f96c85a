/* test_aws_credentials.c - credential providers, the caching chain and region look-up.
 *
 * Threading: the chain tests start reader threads against one chain; everything else is
 * single-threaded. The environment is always a k2p_env list, never the process's; shared files
 * live in a mkdtemp directory used as $HOME.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/aws_credentials.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SECRET2 "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"

static char tmpdir[256];
static char home_var[300];    /* HOME=<tmpdir>/home */
static char creds_path[400];  /* <tmpdir>/home/.aws/credentials */
static char config_path[400]; /* <tmpdir>/home/.aws/config */
static char alt_path[400];    /* <tmpdir>/alt_credentials */

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void clear_files(void)
{
    unlink(creds_path);
    unlink(config_path);
    unlink(alt_path);
}

static int resolve(k2p_cred_provider *p, k2p_aws_creds *c, k2p_err *e)
{
    k2p_err_clear(e);
    memset(c, 0, sizeof *c);
    return p->resolve(p, c, e);
}

/* ---------------------------------------------------------------------------------------- */

static void test_static_provider(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    k2p_cred_provider *p = k2p_cred_provider_static_new("AKIDEXAMPLE", SECRET, "TOKEN");
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDEXAMPLE");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, "TOKEN");
    assert_int_equal(c.expires_at, 0);
    k2p_aws_creds_deinit(&c);
    assert_null(c.access_key_id);
    p->destroy(p);

    p = k2p_cred_provider_static_new("AKIDEXAMPLE", "", NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "aws_secret_access_key is not"));
    p->destroy(p);

    p = k2p_cred_provider_static_new(NULL, SECRET, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "aws_access_key_id is not"));
    assert_null(strstr(e.msg, "wJalr"));
    p->destroy(p);

    p = k2p_cred_provider_static_new(NULL, NULL, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);
}

static void test_env_provider(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    const char *full[] = {"AWS_ACCESS_KEY_ID=AKIDENV", ("AWS_SECRET_ACCESS_KEY=" SECRET),
                          "AWS_SESSION_TOKEN=tok",
                          "AWS_CREDENTIAL_EXPIRATION=2024-05-01T12:00:00Z"};
    k2p_env env = k2p_env_from_list(full, 4);
    k2p_cred_provider *p = k2p_cred_provider_env_new(&env);
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDENV");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, "tok");
    assert_int_equal(c.expires_at, 1714564800);
    assert_string_equal(c.source, "environment");
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    const char *only_id[] = {"AWS_ACCESS_KEY_ID=AKIDENV", "AWS_SECRET_ACCESS_KEY="};
    env = k2p_env_from_list(only_id, 2);
    p = k2p_cred_provider_env_new(&env);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_string_equal(e.msg,
                        "environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    p->destroy(p);

    const char *only_secret[] = {("AWS_SECRET_ACCESS_KEY=" SECRET)};
    env = k2p_env_from_list(only_secret, 1);
    p = k2p_cred_provider_env_new(&env);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "AWS_ACCESS_KEY_ID is not"));
    assert_null(strstr(e.msg, "wJalr"));
    p->destroy(p);

    const char *token_only[] = {"AWS_SESSION_TOKEN=stale"};
    env = k2p_env_from_list(token_only, 1);
    p = k2p_cred_provider_env_new(&env);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);

    const char *bad_exp[] = {"AWS_ACCESS_KEY_ID=AKIDENV", ("AWS_SECRET_ACCESS_KEY=" SECRET),
                             "AWS_CREDENTIAL_EXPIRATION=tomorrow"};
    env = k2p_env_from_list(bad_exp, 3);
    p = k2p_cred_provider_env_new(&env);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "AWS_CREDENTIAL_EXPIRATION"));
    assert_null(strstr(e.msg, "tomorrow"));
    p->destroy(p);
}

/* ---------------------------------------------------------------------------------------- */

static void test_profile_default_and_named(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    clear_files();
    write_file(creds_path, "[default]\naws_access_key_id = AKIDDEFAULT\n"
                           "aws_secret_access_key = " SECRET "\n"
                           "[dev]\naws_access_key_id=AKIDDEV\naws_secret_access_key=" SECRET2
                           "\naws_session_token = devtoken\n"
                           "[profile cfgonly]\naws_access_key_id=AKIDWRONG\n"
                           "aws_secret_access_key=x\n");
    write_file(config_path, "[default]\nregion = us-east-1\n"
                            "[profile dev]\naws_access_key_id = AKIDSHADOWED\n"
                            "aws_secret_access_key = shadowed\nregion = eu-west-1\n"
                            "[profile cfgonly]\naws_access_key_id = AKIDCFG\n"
                            "aws_secret_access_key = " SECRET "\n"
                            "[cfgbare]\naws_access_key_id = AKIDBARE\n"
                            "aws_secret_access_key = " SECRET "\n");

    /* Implicit default profile. */
    const char *v1[] = {home_var};
    k2p_env env = k2p_env_from_list(v1, 1);
    k2p_cred_provider *p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDDEFAULT");
    assert_null(c.session_token);
    assert_string_equal(c.source, "profile");
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    /* AWS_PROFILE: the credentials file wins over the config file. */
    const char *v2[] = {home_var, "AWS_PROFILE=dev"};
    env = k2p_env_from_list(v2, 2);
    p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDDEV");
    assert_string_equal(c.secret_access_key, SECRET2);
    assert_string_equal(c.session_token, "devtoken");
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    /* Explicit profile beats AWS_PROFILE; in the config file it is [profile NAME], and
     * [profile NAME] in the credentials file is not that profile. */
    p = k2p_cred_provider_profile_new(&env, "cfgonly");
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDCFG");
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    /* [cfgbare] in the config file is not a profile (it needs the "profile " prefix). */
    p = k2p_cred_provider_profile_new(&env, "cfgbare");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "profile 'cfgbare' not found"));
    p->destroy(p);

    /* A named profile that does not exist is an error, not "try the next source". */
    const char *v3[] = {home_var, "AWS_PROFILE=nosuch"};
    env = k2p_env_from_list(v3, 2);
    p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "profile 'nosuch' not found in"));
    assert_non_null(strstr(e.msg, creds_path));
    p->destroy(p);
}

static void test_profile_files_and_overrides(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    char shared_var[450], config_var[450];
    clear_files();

    /* No files: the implicit default profile has nothing (next source), a named one fails. */
    const char *v1[] = {home_var};
    k2p_env env = k2p_env_from_list(v1, 1);
    k2p_cred_provider *p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_non_null(strstr(e.msg, "neither"));
    p->destroy(p);
    p = k2p_cred_provider_profile_new(&env, "prod");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    p->destroy(p);
    const char *nohome[] = {"X=1"};
    env = k2p_env_from_list(nohome, 1);
    p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);

    /* AWS_SHARED_CREDENTIALS_FILE replaces ~/.aws/credentials (which is then not read). */
    write_file(creds_path, "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key=x\n");
    write_file(alt_path, "[default]\naws_access_key_id = AKIDALT\naws_secret_access_key=y\n");
    snprintf(shared_var, sizeof shared_var, "AWS_SHARED_CREDENTIALS_FILE=%s", alt_path);
    const char *v2[] = {home_var, shared_var};
    env = k2p_env_from_list(v2, 2);
    p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDALT");
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    /* "~/" in an override is $HOME; AWS_CONFIG_FILE likewise. */
    const char *v3[] = {home_var, "AWS_SHARED_CREDENTIALS_FILE=~/nothing-here",
                        "AWS_CONFIG_FILE=~/.aws/credentials", "AWS_PROFILE=default"};
    env = k2p_env_from_list(v3, 4);
    p = k2p_cred_provider_profile_new(&env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDHOME"); /* read as the config file's [default] */
    k2p_aws_creds_deinit(&c);
    p->destroy(p);

    snprintf(config_var, sizeof config_var, "AWS_CONFIG_FILE=%s", alt_path);
    const char *v4[] = {home_var, config_var};
    env = k2p_env_from_list(v4, 2);
    char *region = k2p_aws_region_from_env(&env, NULL);
    assert_null(region);
}

static void test_profile_broken(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    const char *v1[] = {home_var};
    k2p_env env = k2p_env_from_list(v1, 1);
    k2p_cred_provider *p = k2p_cred_provider_profile_new(&env, NULL);
    clear_files();

    /* Malformed file: parse error with the line, never the secret. */
    write_file(creds_path,
               "[default]\naws_access_key_id = AKID\naws_secret_access_key " SECRET "\n");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "credentials:3:"));
    assert_null(strstr(e.msg, "wJalr"));

    /* A key without its pair. */
    write_file(creds_path, "[default]\naws_secret_access_key = " SECRET "\n");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "aws_access_key_id is missing"));
    assert_null(strstr(e.msg, "wJalr"));
    write_file(creds_path, "[default]\naws_access_key_id = AKID\naws_secret_access_key =\n");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "aws_secret_access_key is missing or empty"));

    /* Profiles this build cannot use say so. */
    write_file(creds_path, "[default]\nregion = x\n");
    write_file(config_path, "[default]\ncredential_process = /usr/bin/creds\n");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "uses credential_process, which kinesis2pg does not support"));

    /* role_arn profiles are resolved (tests/unit/test_aws_cred_providers.c), and a broken one
     * is an error, not a reason to move on. */
    write_file(config_path, "[default]\nrole_arn = arn:aws:iam::123456789012:role/r\n"
                            "source_profile = base\n");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "profile 'default': source_profile 'base' not found"));

    /* An implicit default profile without keys: nothing here, try the next source. */
    write_file(config_path, "[default]\nregion = eu-north-1\n");
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);
}

static void test_region(void **state)
{
    (void)state;
    char *r;
    clear_files();
    write_file(config_path, "[default]\nregion = us-east-1\n"
                            "[profile default]\nregion = us-east-2\n"
                            "[profile dev]\nregion = eu-west-1\n"
                            "[profile noregion]\noutput = json\n");

    const char *v1[] = {home_var, "AWS_REGION=ap-south-1", "AWS_DEFAULT_REGION=sa-east-1"};
    k2p_env env = k2p_env_from_list(v1, 3);
    r = k2p_aws_region_from_env(&env, "dev");
    assert_string_equal(r, "ap-south-1");
    free(r);
    const char *v2[] = {home_var, "AWS_DEFAULT_REGION=sa-east-1"};
    env = k2p_env_from_list(v2, 2);
    r = k2p_aws_region_from_env(&env, "dev");
    assert_string_equal(r, "sa-east-1");
    free(r);

    const char *v3[] = {home_var, "AWS_REGION=", "AWS_PROFILE=dev"};
    env = k2p_env_from_list(v3, 3);
    r = k2p_aws_region_from_env(&env, NULL);
    assert_string_equal(r, "eu-west-1");
    free(r);
    r = k2p_aws_region_from_env(&env, "default"); /* [profile default] wins over [default] */
    assert_string_equal(r, "us-east-2");
    free(r);
    r = k2p_aws_region_from_env(&env, "noregion");
    assert_null(r);
    r = k2p_aws_region_from_env(&env, "absent");
    assert_null(r);
    assert_string_equal(k2p_aws_profile_name(&env, NULL), "dev");
    assert_string_equal(k2p_aws_profile_name(&env, "x"), "x");
    const char *v4[] = {home_var};
    env = k2p_env_from_list(v4, 1);
    assert_string_equal(k2p_aws_profile_name(&env, NULL), "default");
    write_file(config_path, "[default\nregion = us-east-1\n"); /* broken: no region */
    assert_null(k2p_aws_region_from_env(&env, NULL));
}

/* ---------------------------------------------------------------------------------------- */

static void test_chain_order(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    k2p_cred_chain *ch;
    clear_files();
    write_file(creds_path, "[default]\naws_access_key_id = AKIDPROFILE\n"
                           "aws_secret_access_key = " SECRET "\n");
    /* IMDS, last in the chain, is disabled: a test never reaches for 169.254.169.254. */
    const char *all[] = {home_var, "AWS_EC2_METADATA_DISABLED=true", "AWS_ACCESS_KEY_ID=AKIDENV",
                         ("AWS_SECRET_ACCESS_KEY=" SECRET)};
    k2p_env env = k2p_env_from_list(all, 4);

    ch = k2p_cred_chain_default_new(&env, "AKIDEXPLICIT", SECRET2, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDEXPLICIT");
    assert_string_equal(c.source, "explicit");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);

    ch = k2p_cred_chain_default_new(&env, NULL, NULL, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDENV");
    assert_string_equal(c.source, "environment");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);

    env = k2p_env_from_list(all, 2);
    ch = k2p_cred_chain_default_new(&env, NULL, NULL, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDPROFILE");
    assert_string_equal(c.source, "profile");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);

    /* A broken source stops the chain: half-set env keys are not skipped over. */
    const char *half[] = {home_var, "AWS_EC2_METADATA_DISABLED=true", "AWS_ACCESS_KEY_ID=AKIDENV"};
    env = k2p_env_from_list(half, 3);
    ch = k2p_cred_chain_default_new(&env, NULL, NULL, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "AWS_SECRET_ACCESS_KEY is not"));
    assert_null(c.access_key_id);
    k2p_cred_chain_free(ch);

    /* Nothing anywhere: the message lists what was tried. */
    clear_files();
    env = k2p_env_from_list(all, 2);
    ch = k2p_cred_chain_default_new(&env, NULL, NULL, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "no AWS credentials found (tried: environment: "));
    assert_non_null(strstr(e.msg, "profile 'default'"));
    k2p_cred_chain_free(ch);

    /* Credentials that cannot sign are rejected without echoing them. */
    const char *nl[] = {"AWS_EC2_METADATA_DISABLED=true", "AWS_ACCESS_KEY_ID=AKIDENV",
                        ("AWS_SECRET_ACCESS_KEY=" SECRET "\n")};
    env = k2p_env_from_list(nl, 3);
    ch = k2p_cred_chain_default_new(&env, NULL, NULL, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), K2P_EAUTH);
    assert_string_equal(e.msg, "credentials from environment: the secret access key contains "
                               "blanks, control or non-ASCII characters");
    k2p_cred_chain_free(ch);
    ch = k2p_cred_chain_default_new(&env, "AKID/EXPLICIT", SECRET, NULL, NULL);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "access key id contains characters other than"));
    k2p_cred_chain_free(ch);
    k2p_cred_chain_free(NULL);
}

/* A provider that counts its calls and hands out credentials expiring `ttl` s after the
 * chain's clock. */
typedef struct fake_provider {
    k2p_cred_provider base;
    atomic_int calls;
    atomic_int fail;
    int64_t ttl;
    atomic_llong *clock;
} fake_provider;

static int fake_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    fake_provider *f = (fake_provider *)self;
    char id[32];
    int n = atomic_fetch_add(&f->calls, 1) + 1;
    if (atomic_load(&f->fail))
        return k2p_err_set(err, K2P_EIO, "fake: refresh failed");
    snprintf(id, sizeof id, "AKIDFAKE%d", n);
    out->access_key_id = strdup(id);
    out->secret_access_key = strdup(SECRET);
    out->session_token = strdup("tok");
    out->expires_at = f->ttl ? atomic_load(f->clock) + f->ttl : 0;
    out->source = "fake";
    return 0;
}

static void fake_destroy(k2p_cred_provider *self)
{
    free(self);
}

static fake_provider *fake_new(int64_t ttl, atomic_llong *clock)
{
    fake_provider *f = calloc(1, sizeof *f);
    f->base.name = "fake";
    f->base.resolve = fake_resolve;
    f->base.destroy = fake_destroy;
    f->ttl = ttl;
    f->clock = clock;
    return f;
}

static int64_t fake_clock(void *ctx)
{
    return atomic_load((atomic_llong *)ctx);
}

static void test_chain_refresh(void **state)
{
    (void)state;
    atomic_llong now = 1000000;
    k2p_aws_creds c;
    k2p_err e;
    fake_provider *f = fake_new(3600, &now);
    k2p_cred_provider *none = k2p_cred_provider_static_new(NULL, NULL, NULL);
    k2p_cred_provider *ps[] = {none, &f->base};
    k2p_cred_chain *ch = k2p_cred_chain_new(ps, 2);
    k2p_cred_chain_set_clock(ch, fake_clock, &now);

    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFAKE1");
    assert_int_equal(c.expires_at, 1000000 + 3600);
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 1);

    /* Cached until 5 minutes before expiry. */
    atomic_store(&now, 1000000 + 3600 - 301);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFAKE1");
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 1);

    atomic_store(&now, 1000000 + 3600 - 300);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFAKE2");
    assert_int_equal(c.expires_at, 1000000 + 3600 - 300 + 3600);
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 2);

    /* A failed refresh while the cached copy is still valid serves the cached copy and does
     * not retry for 10 s. */
    int64_t t = 1000000 + 3600 - 300 + 3600 - 200;
    atomic_store(&f->fail, 1);
    atomic_store(&now, t);
    k2p_err_clear(&e);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFAKE2");
    assert_int_equal(e.code, 0);
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 3);
    atomic_store(&now, t + 9);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 3);
    atomic_store(&now, t + 10);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    assert_int_equal(atomic_load(&f->calls), 4);

    /* Expired and still failing: the provider's error. */
    atomic_store(&now, t + 200);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), K2P_EIO);
    assert_string_equal(e.msg, "fake: refresh failed");
    assert_null(c.access_key_id);
    assert_int_equal(atomic_load(&f->calls), 5);

    /* Recovers on the next call. */
    atomic_store(&f->fail, 0);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFAKE6");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);
}

static void test_chain_static_never_refreshes(void **state)
{
    (void)state;
    atomic_llong now = 50;
    k2p_aws_creds c;
    k2p_err e;
    fake_provider *f = fake_new(0, &now);
    k2p_cred_provider *ps[] = {&f->base};
    k2p_cred_chain *ch = k2p_cred_chain_new(ps, 1);
    k2p_cred_chain_set_clock(ch, fake_clock, &now);
    for (int i = 0; i < 5; i++) {
        atomic_store(&now, 50 + (int64_t)i * 1000000);
        assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
        k2p_aws_creds_deinit(&c);
    }
    assert_int_equal(atomic_load(&f->calls), 1);
    k2p_cred_chain_free(ch);
}

typedef struct thread_arg {
    k2p_cred_chain *chain;
    atomic_int *failures;
} thread_arg;

static void *getter(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        k2p_aws_creds c;
        k2p_err e;
        if (k2p_cred_chain_get(a->chain, &c, &e) != 0 || !c.access_key_id ||
            strcmp(c.secret_access_key, SECRET) != 0)
            atomic_fetch_add(a->failures, 1);
        k2p_aws_creds_deinit(&c);
    }
    return NULL;
}

static void run_getters(k2p_cred_chain *ch, atomic_int *failures)
{
    pthread_t th[8];
    thread_arg a = {ch, failures};
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, getter, &a), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
}

static void test_chain_threads(void **state)
{
    (void)state;
    atomic_llong now = 1000;
    atomic_int failures = 0;
    fake_provider *f = fake_new(3600, &now);
    k2p_cred_provider *ps[] = {&f->base};
    k2p_cred_chain *ch = k2p_cred_chain_new(ps, 1);
    k2p_cred_chain_set_clock(ch, fake_clock, &now);

    /* Cold start: one thread resolves, the others wait for it. */
    run_getters(ch, &failures);
    assert_int_equal(atomic_load(&failures), 0);
    assert_int_equal(atomic_load(&f->calls), 1);

    /* Inside the refresh window: exactly one refresh, nobody fails meanwhile. */
    atomic_store(&now, 1000 + 3600 - 60);
    run_getters(ch, &failures);
    assert_int_equal(atomic_load(&failures), 0);
    assert_int_equal(atomic_load(&f->calls), 2);
    k2p_cred_chain_free(ch);
}

/* A provider that blocks until released, then fails: the refresh every reader waits for. */
typedef struct gated_provider {
    k2p_cred_provider base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    atomic_int calls;
} gated_provider;

static int gated_resolve(k2p_cred_provider *self, k2p_aws_creds *out, k2p_err *err)
{
    gated_provider *g = (gated_provider *)self;
    (void)out;
    atomic_fetch_add(&g->calls, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return k2p_err_set(err, K2P_EIO, "gated: STS unreachable");
}

static void gated_destroy(k2p_cred_provider *self)
{
    gated_provider *g = (gated_provider *)self;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

typedef struct cold_arg {
    k2p_cred_chain *chain;
    int rc;
    k2p_err err;
} cold_arg;

static void *cold_getter(void *p)
{
    cold_arg *a = p;
    k2p_aws_creds c;
    a->rc = k2p_cred_chain_get(a->chain, &c, &a->err);
    k2p_aws_creds_deinit(&c);
    return NULL;
}

static int64_t mono_ms(void)
{
    return k2p_now_ns() / 1000000;
}

static void test_chain_cold_start_failure_shared(void **state)
{
    (void)state;
    gated_provider *g = calloc(1, sizeof *g);
    k2p_cred_provider *ps[1];
    k2p_cred_chain *ch;
    pthread_t th[8];
    cold_arg a[8];
    int64_t deadline;

    g->base.name = "gated";
    g->base.resolve = gated_resolve;
    g->base.destroy = gated_destroy;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    ps[0] = &g->base;
    ch = k2p_cred_chain_new(ps, 1);

    for (int i = 0; i < 8; i++) {
        a[i].chain = ch;
        assert_int_equal(pthread_create(&th[i], NULL, cold_getter, &a[i]), 0);
    }
    /* One thread refreshes (blocked in the provider), the other seven wait for it. */
    deadline = mono_ms() + 10000;
    while (!(atomic_load(&g->calls) == 1 && k2p_cred_chain_waiting(ch) == 7)) {
        struct timespec ts = {0, 1000000};
        if (mono_ms() > deadline)
            fail_msg("calls %d, waiting %zu", atomic_load(&g->calls), k2p_cred_chain_waiting(ch));
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].rc, K2P_EIO);
        assert_string_equal(a[i].err.msg, "gated: STS unreachable");
    }
    /* The failure was shared, not retried by each waiting thread in turn. */
    assert_int_equal(atomic_load(&g->calls), 1);
    assert_int_equal(k2p_cred_chain_waiting(ch), 0);
    k2p_cred_chain_free(ch);
}

static void test_creds_copy(void **state)
{
    (void)state;
    k2p_aws_creds a = {strdup("AKID"), strdup(SECRET), NULL, 42, "x"}, b;
    assert_int_equal(k2p_aws_creds_copy(&b, &a), 0);
    assert_string_equal(b.access_key_id, "AKID");
    assert_string_equal(b.secret_access_key, SECRET);
    assert_null(b.session_token);
    assert_int_equal(b.expires_at, 42);
    assert_ptr_equal(b.source, a.source);
    k2p_aws_creds_deinit(&a);
    k2p_aws_creds_deinit(&b);
    k2p_aws_creds_deinit(NULL);
}

/* ---------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    char dir[400];
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/k2p_creds_XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dir, sizeof dir, "%s/home", tmpdir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/home/.aws", tmpdir);
    mkdir(dir, 0700);
    snprintf(home_var, sizeof home_var, "HOME=%s/home", tmpdir);
    snprintf(creds_path, sizeof creds_path, "%s/home/.aws/credentials", tmpdir);
    snprintf(config_path, sizeof config_path, "%s/home/.aws/config", tmpdir);
    snprintf(alt_path, sizeof alt_path, "%s/alt_credentials", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char dir[400];
    clear_files();
    snprintf(dir, sizeof dir, "%s/home/.aws", tmpdir);
    rmdir(dir);
    snprintf(dir, sizeof dir, "%s/home", tmpdir);
    rmdir(dir);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_provider),
        cmocka_unit_test(test_env_provider),
        cmocka_unit_test(test_profile_default_and_named),
        cmocka_unit_test(test_profile_files_and_overrides),
        cmocka_unit_test(test_profile_broken),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_chain_order),
        cmocka_unit_test(test_chain_refresh),
        cmocka_unit_test(test_chain_static_never_refreshes),
        cmocka_unit_test(test_chain_threads),
        cmocka_unit_test(test_chain_cold_start_failure_shared),
        cmocka_unit_test(test_creds_copy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

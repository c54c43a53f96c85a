/* test_aws_cred_providers.c - the network credential providers (web identity, container, IMDS,
 * role_arn profiles) and the standard chain built from them, against tests/support/http_stub
 * playing STS, the container endpoint and IMDS on 127.0.0.1.
 *
 * Every provider is pointed at the stub through its environment (AWS_ENDPOINT_URL_STS,
 * AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_EC2_METADATA_SERVICE_ENDPOINT) or, for the relative
 * container URI, k2p_cred_net_opts.container_host; chains that could reach IMDS either point it
 * at the stub or disable it, so nothing but 127.0.0.1 is ever contacted. The environment is a
 * k2p_env list; $HOME is an empty mkdtemp directory; proxy variables are unset.
 *
 * Threading: test_chain_readers_during_refresh runs 8 reader threads against one chain while
 * the stub holds the refresh's answer behind its gate; the rest is single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aws_cred_internal.h"
#include "http_stub.h"
#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/aws_sigv4.h"
#include "kinesis2pg/ini.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SECRET_SRC "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
#define TOKEN "FwoGZXIvYXdzEXAMPLESESSIONTOKEN+/="
#define EXP "2030-01-01T00:00:00Z"
#define EXP_S 1893456000
#define ROLE_ARN "arn:aws:iam::123456789012:role/loader"
#define IMDS_ROLE_PATH "/latest/meta-data/iam/security-credentials/"

static k2p_http_stub *stub;
static char tmpdir[256];
static char home_var[300];
static char token_path[400];
static char config_path[400];

/* ---- helpers ------------------------------------------------------------------------------ */

/* An environment built from printf-formatted "NAME=value" lines; lives as long as the struct. */
typedef struct tenv {
    char store[16][700];
    const char *vars[16];
    size_t n;
    k2p_env env;
} tenv;

static const k2p_env *tenv_init(tenv *t, ...)
{
    va_list ap;
    const char *fmt;
    t->n = 0;
    va_start(ap, t);
    while ((fmt = va_arg(ap, const char *)) != NULL) {
        assert_true(t->n < 16);
        /* Each line is one "%s"-style argument pair or a literal. */
        if (strchr(fmt, '%')) {
            const char *arg = va_arg(ap, const char *);
            snprintf(t->store[t->n], sizeof t->store[t->n], fmt, arg);
        } else {
            snprintf(t->store[t->n], sizeof t->store[t->n], "%s", fmt);
        }
        t->vars[t->n] = t->store[t->n];
        t->n++;
    }
    va_end(ap);
    t->env = k2p_env_from_list(t->vars, t->n);
    return &t->env;
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static const char *sts_ok(char *buf, size_t size, const char *action, const char *id,
                          const char *exp)
{
    snprintf(buf, size,
             "<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
             "  <%sResult>\n"
             "    <Credentials>\n"
             "      <AccessKeyId>%s</AccessKeyId>\n"
             "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"
             "      <SessionToken>" TOKEN "</SessionToken>\n"
             "      <Expiration>%s</Expiration>\n"
             "    </Credentials>\n"
             "  </%sResult>\n"
             "</%sResponse>\n",
             action, action, id, exp, action, action);
    return buf;
}

static const char *creds_json(char *buf, size_t size, const char *id, const char *exp)
{
    snprintf(buf, size,
             "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"%s\","
             "\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\",\"Expiration\":\"%s\"}",
             id, exp);
    return buf;
}

static int resolve(k2p_cred_provider *p, k2p_aws_creds *c, k2p_err *e)
{
    k2p_err_clear(e);
    memset(c, 0, sizeof *c);
    return p->resolve(p, c, e);
}

/* The i-th request the stub received; aborts when there is none. */
static void request(size_t i, k2p_stub_request *r)
{
    assert_int_equal(k2p_http_stub_request(stub, i, r), 0);
}

static const char *header(const k2p_stub_request *r, const char *name)
{
    static char buf[4096];
    return k2p_stub_request_header(r, name, buf, sizeof buf);
}

/* No message may quote a secret or a token. */
static void assert_no_secret(const k2p_err *e)
{
    assert_null(strstr(e->msg, "wJalr"));
    assert_null(strstr(e->msg, "je7Mt"));
    assert_null(strstr(e->msg, "FwoGZ"));
    assert_null(strstr(e->msg, "eyJ"));
    assert_null(strstr(e->msg, "Bearer"));
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int reset(void **state)
{
    (void)state;
    k2p_http_stub_reset(stub);
    unlink(config_path);
    write_file(token_path, "eyJ-first-token\n");
    return 0;
}

/* ---- web identity ------------------------------------------------------------------------- */

static void test_web_identity_success(void **state)
{
    (void)state;
    char xml[2048], want_session[64];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    const k2p_env *env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                                   "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=%s",
                                   k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_web_identity_new(env, NULL);

    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIAWEBID", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAWEBID");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, TOKEN);
    assert_int_equal(c.expires_at, EXP_S);
    assert_string_equal(c.source, "web identity");
    k2p_aws_creds_deinit(&c);

    /* An unsigned form POST: the token is in the body, never in the URL. */
    request(0, &r);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.target, "/");
    assert_string_equal(header(&r, "Content-Type"),
                        "application/x-www-form-urlencoded; charset=utf-8");
    assert_null(header(&r, "Authorization"));
    snprintf(want_session, sizeof want_session, "RoleSessionName=kinesis2pg-%ld", (long)getpid());
    assert_non_null(strstr(r.body, "Action=AssumeRoleWithWebIdentity"));
    assert_non_null(strstr(r.body, "Version=2011-06-15"));
    assert_non_null(strstr(r.body, "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Floader"));
    assert_non_null(strstr(r.body, want_session));
    assert_non_null(strstr(r.body, "WebIdentityToken=eyJ-first-token"));
    assert_null(strstr(r.target, "eyJ"));
    k2p_stub_request_deinit(&r);
    p->destroy(p);

    /* AWS_ROLE_SESSION_NAME is passed on. */
    env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                    "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ROLE_SESSION_NAME=my session",
                    "AWS_ENDPOINT_URL=%s", k2p_http_stub_url(stub), NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    request(1, &r);
    assert_non_null(strstr(r.body, "RoleSessionName=my%20session"));
    k2p_stub_request_deinit(&r);
    p->destroy(p);
}

static void test_web_identity_token_reread(void **state)
{
    (void)state;
    char xml[2048];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    const k2p_env *env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                                   "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=%s",
                                   k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_web_identity_new(env, NULL);

    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIAWEBID", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    /* EKS rotates the projected token: the next resolve sends the new one. */
    write_file(token_path, "eyJ-rotated-token");
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_non_null(strstr(r.body, "WebIdentityToken=eyJ-first-token"));
    k2p_stub_request_deinit(&r);
    request(1, &r);
    assert_non_null(strstr(r.body, "WebIdentityToken=eyJ-rotated-token"));
    k2p_stub_request_deinit(&r);
    p->destroy(p);
}

static void test_web_identity_errors(void **state)
{
    (void)state;
    char xml[2048];
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env;
    k2p_cred_provider *p;

    /* Not configured: the next provider is asked. */
    env = tenv_init(&t, home_var, NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);

    /* Half configured: an error. */
    env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path, NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_string_equal(e.msg,
                        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
    p->destroy(p);
    env = tenv_init(&t, home_var, "AWS_ROLE_ARN=" ROLE_ARN, NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    p->destroy(p);

    /* A missing token file names the file; nothing is sent. */
    env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s/missing", tmpdir,
                    "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub),
                    NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE "));
    assert_non_null(strstr(e.msg, "/missing: No such file"));
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 0);
    p->destroy(p);

    env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                    "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=%s/sts?x=1",
                    k2p_http_stub_url(stub), NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);

    /* STS refuses: its code and message, the URL without its query, never the token. */
    k2p_http_stub_add(stub, "POST", "/sts", 400,
                      "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                      "<Message>Incorrect token audience</Message></Error></ErrorResponse>");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(
        strstr(e.msg, "web identity: STS AssumeRoleWithWebIdentity at http://127.0.0.1:"));
    assert_non_null(strstr(e.msg, "/sts: HTTP 400 InvalidIdentityToken: Incorrect token audience"));
    assert_null(strstr(e.msg, "x=1"));
    assert_int_equal(e.http_status, 400);
    assert_string_equal(e.aws_type, "InvalidIdentityToken");
    assert_null(c.access_key_id);
    assert_no_secret(&e);
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/sts"), 1);

    /* An error message quoting the token is withheld. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/sts", 403,
                      "<ErrorResponse><Error><Code>AccessDenied</Code><Message>token "
                      "eyJ-first-token is bad</Message></Error></ErrorResponse>");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "HTTP 403 AccessDenied: (message withheld"));
    assert_no_secret(&e);

    /* A malformed answer: what is wrong, not what was there. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/sts", 200,
                      "<R><Credentials><SecretAccessKey>" SECRET "</SecretAccessKey>");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "malformed answer: truncated"));
    assert_no_secret(&e);
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/sts", 200,
                      "<R><Credentials><AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>" SECRET
                      "</SecretAccessKey><Expiration>" EXP "</Expiration></Credentials></R>");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "has no session token"));
    assert_no_secret(&e);

    /* 5xx and Throttling are tried again. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/sts", 503, "busy");
    k2p_http_stub_add(stub, "POST", "/sts", 400,
                      "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded"
                      "</Message></Error></ErrorResponse>");
    k2p_http_stub_add(stub, "POST", "/sts", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIARETRY", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIARETRY");
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/sts"), 3);
    k2p_aws_creds_deinit(&c);

    /* ... but not forever. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/sts", 500, "");
    assert_int_equal(resolve(p, &c, &e), K2P_EIO);
    assert_non_null(strstr(e.msg, "HTTP 500"));
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/sts"), 3);
    p->destroy(p);

    /* Nothing listening. */
    env =
        tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                  "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=http://127.0.0.1:%s", "1", NULL);
    p = k2p_cred_provider_web_identity_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_EIO);
    assert_non_null(strstr(e.msg, "web identity: POST http://127.0.0.1:1"));
    assert_no_secret(&e);
    p->destroy(p);
}

/* ---- container ---------------------------------------------------------------------------- */

static void test_container_full_uri(void **state)
{
    (void)state;
    char body[1024];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    const k2p_env *env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/v1/credentials",
                                   k2p_http_stub_url(stub),
                                   "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer env-token", NULL);
    k2p_cred_provider *p = k2p_cred_provider_container_new(env, NULL);

    k2p_http_stub_add(stub, "GET", "/v1/credentials", 200,
                      creds_json(body, sizeof body, "ASIACONTAINER", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIACONTAINER");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, TOKEN);
    assert_int_equal(c.expires_at, EXP_S);
    assert_string_equal(c.source, "container");
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_string_equal(r.method, "GET");
    assert_string_equal(header(&r, "Authorization"), "Bearer env-token");
    k2p_stub_request_deinit(&r);
    p->destroy(p);

    /* Without a token, no Authorization header. */
    env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/v1/credentials",
                    k2p_http_stub_url(stub), NULL);
    p = k2p_cred_provider_container_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    request(1, &r);
    assert_null(header(&r, "Authorization"));
    k2p_stub_request_deinit(&r);
    p->destroy(p);
}

static void test_container_token_file(void **state)
{
    (void)state;
    char body[1024];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    /* The file wins over the variable, and is read at every resolve (EKS Pod Identity). */
    const k2p_env *env =
        tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/v1/credentials",
                  k2p_http_stub_url(stub), "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer env-token",
                  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=%s", token_path, NULL);
    k2p_cred_provider *p = k2p_cred_provider_container_new(env, NULL);

    k2p_http_stub_add(stub, "GET", "/v1/credentials", 200,
                      creds_json(body, sizeof body, "ASIACONTAINER", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    write_file(token_path, "eyJ-rotated-token\n");
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_string_equal(header(&r, "Authorization"), "eyJ-first-token");
    k2p_stub_request_deinit(&r);
    request(1, &r);
    assert_string_equal(header(&r, "Authorization"), "eyJ-rotated-token");
    k2p_stub_request_deinit(&r);

    /* An unreadable token file is an error, and nothing is sent. */
    unlink(token_path);
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "container: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "));
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 2);
    p->destroy(p);
}

static void test_container_relative_uri(void **state)
{
    (void)state;
    char body[1024];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    k2p_cred_net_opts net = {NULL, NULL, k2p_http_stub_url(stub)};
    const k2p_env *env =
        tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/0c4e-task",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/not-this", NULL);
    k2p_cred_provider *p = k2p_cred_provider_container_new(env, &net);

    k2p_http_stub_add(stub, "GET", "/v2/credentials/0c4e-task", 200,
                      creds_json(body, sizeof body, "ASIAECS", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAECS");
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_string_equal(r.target, "/v2/credentials/0c4e-task");
    k2p_stub_request_deinit(&r);
    p->destroy(p);

    env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=v2/no-slash", NULL);
    p = k2p_cred_provider_container_new(env, &net);
    assert_int_equal(resolve(p, &c, &e), K2P_ECONFIG);
    assert_non_null(strstr(e.msg, "must start with '/'"));
    p->destroy(p);
}

static void test_container_errors(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env;
    k2p_cred_provider *p;

    env = tenv_init(&t, home_var, NULL);
    p = k2p_cred_provider_container_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    p->destroy(p);

    /* A host that is neither loopback nor the container agent: refused before connecting. */
    env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://192.0.2.1/creds",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer env-token", NULL);
    p = k2p_cred_provider_container_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ECONFIG);
    assert_non_null(strstr(e.msg, "host 192.0.2.1 is not allowed"));
    assert_no_secret(&e);
    p->destroy(p);

    /* A token that would split the header. */
    env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/creds", k2p_http_stub_url(stub),
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer x\r\nX-Evil: 1", NULL);
    p = k2p_cred_provider_container_new(env, NULL);
    assert_int_equal(resolve(p, &c, &e), K2P_ECONFIG);
    assert_non_null(strstr(e.msg, "line break"));
    assert_no_secret(&e);
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 0);
    p->destroy(p);

    env = tenv_init(&t, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/creds", k2p_http_stub_url(stub),
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer env-token", NULL);
    p = k2p_cred_provider_container_new(env, NULL);

    k2p_http_stub_add(stub, "GET", "/creds", 403, "{\"message\":\"bad token Bearer env-token\"}");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "container: GET http://127.0.0.1:"));
    assert_non_null(strstr(e.msg, "/creds answered HTTP 403 (check AWS_CONTAINER_AUTHORIZATION"));
    assert_no_secret(&e);
    assert_null(strstr(e.msg, "env-token"));

    /* 5xx: tried twice, then an I/O error. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "GET", "/creds", 500, "oops");
    assert_int_equal(resolve(p, &c, &e), K2P_EIO);
    assert_int_equal(k2p_http_stub_count(stub, "GET", "/creds"), 2);

    /* Malformed answers. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "GET", "/creds", 200,
                      "{\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"" SECRET "\",");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "container: malformed answer from http://127.0.0.1:"));
    assert_no_secret(&e);
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "GET", "/creds", 200,
                      "{\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"" SECRET
                      "\",\"Token\":\"" TOKEN "\"}");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "has no Expiration"));
    assert_no_secret(&e);

    /* The connection closes without an answer. */
    k2p_http_stub_reset(stub);
    k2p_stub_response closed = {K2P_STUB_CLOSE, 0, NULL, NULL, 0};
    k2p_http_stub_add_response(stub, "GET", "/creds", &closed);
    assert_int_equal(resolve(p, &c, &e), K2P_EIO);
    assert_non_null(strstr(e.msg, "container: GET http://127.0.0.1:"));
    assert_no_secret(&e);
    p->destroy(p);
}

/* ---- IMDS --------------------------------------------------------------------------------- */

static void imds_routes(const char *role, const char *creds_body)
{
    char path[256];
    k2p_http_stub_add(stub, "PUT", "/latest/api/token", 200, "imds-session-token");
    k2p_http_stub_add(stub, "GET", IMDS_ROLE_PATH, 200, role);
    snprintf(path, sizeof path, IMDS_ROLE_PATH "%s", "loader-role");
    k2p_http_stub_add(stub, "GET", path, 200, creds_body);
}

static void test_imds_success(void **state)
{
    (void)state;
    char body[1024];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s/", k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_imds_new(env);

    imds_routes("loader-role\n", creds_json(body, sizeof body, "ASIAIMDS", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAIMDS");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, TOKEN);
    assert_int_equal(c.expires_at, EXP_S);
    assert_string_equal(c.source, "imds");
    k2p_aws_creds_deinit(&c);

    request(0, &r);
    assert_string_equal(r.method, "PUT");
    assert_string_equal(r.target, "/latest/api/token");
    assert_string_equal(header(&r, "X-aws-ec2-metadata-token-ttl-seconds"), "21600");
    k2p_stub_request_deinit(&r);
    request(1, &r);
    assert_string_equal(r.target, IMDS_ROLE_PATH);
    assert_string_equal(header(&r, "X-aws-ec2-metadata-token"), "imds-session-token");
    k2p_stub_request_deinit(&r);
    request(2, &r);
    assert_string_equal(r.target, IMDS_ROLE_PATH "loader-role");
    assert_string_equal(header(&r, "X-aws-ec2-metadata-token"), "imds-session-token");
    k2p_stub_request_deinit(&r);
    p->destroy(p);
}

static void test_imds_disabled(void **state)
{
    (void)state;
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, "AWS_EC2_METADATA_DISABLED=TRUE", "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s",
                  k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_imds_new(env);
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_string_equal(e.msg, "imds: disabled by AWS_EC2_METADATA_DISABLED");
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 0);
    p->destroy(p);
}

static void test_imds_unreachable_fast(void **state)
{
    (void)state;
    char port[16];
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env;
    k2p_cred_provider *p;
    int64_t t0;

    /* Connection refused. */
    snprintf(port, sizeof port, "%d", closed_port());
    env = tenv_init(&t, "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:%s", port, NULL);
    p = k2p_cred_provider_imds_new(env);
    t0 = mono_ms();
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_true(mono_ms() - t0 < 3000);
    assert_non_null(strstr(e.msg, "imds: no instance metadata service (PUT http://127.0.0.1:"));
    p->destroy(p);

    /* Accepts the connection, never answers: given up after 1 s and one retry. */
    k2p_stub_response hang = {K2P_STUB_HANG, 0, NULL, NULL, 0};
    k2p_http_stub_add_response(stub, "PUT", "/latest/api/token", &hang);
    env = tenv_init(&t, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", k2p_http_stub_url(stub), NULL);
    p = k2p_cred_provider_imds_new(env);
    t0 = mono_ms();
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_true(mono_ms() - t0 < 3000);
    assert_int_equal(k2p_http_stub_count(stub, "PUT", "/latest/api/token"), 2);
    assert_non_null(strstr(e.msg, "imds: no instance metadata service (PUT"));
    p->destroy(p);
}

static void test_imds_errors(void **state)
{
    (void)state;
    char body[1024];
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_imds_new(env);

    /* No instance profile. */
    k2p_http_stub_add(stub, "PUT", "/latest/api/token", 200, "imds-session-token");
    k2p_http_stub_add(stub, "GET", IMDS_ROLE_PATH, 404, "");
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_string_equal(e.msg, "imds: no IAM role attached to this instance");

    /* IMDSv1 only (token request refused). */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "PUT", "/latest/api/token", 405, "");
    assert_int_equal(resolve(p, &c, &e), K2P_ENOTFOUND);
    assert_non_null(strstr(e.msg, "answered HTTP 405"));

    /* A role name that is not one. */
    k2p_http_stub_reset(stub);
    imds_routes("../../etc\n", "{}");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "malformed role name"));

    /* Code other than Success. */
    k2p_http_stub_reset(stub);
    imds_routes("loader-role", "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"nope\"}");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "role 'loader-role' not available"));

    /* Malformed JSON. */
    k2p_http_stub_reset(stub);
    imds_routes("loader-role", "{\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"" SECRET "\"");
    assert_int_equal(resolve(p, &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "imds: malformed answer from http://127.0.0.1:"));
    assert_no_secret(&e);

    /* The credentials request fails. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "PUT", "/latest/api/token", 200, "imds-session-token");
    k2p_http_stub_add(stub, "GET", IMDS_ROLE_PATH, 200, "loader-role");
    assert_int_equal(resolve(p, &c, &e), K2P_EIO);
    assert_non_null(strstr(e.msg, "loader-role answered HTTP 404"));
    (void)body;
    p->destroy(p);
}

/* ---- profiles with role_arn --------------------------------------------------------------- */

/* Parses "20300101T000000Z" into Unix seconds. */
static time_t amz_date_time(const char *d)
{
    char iso[32];
    int64_t us;
    snprintf(iso, sizeof iso, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", d, d + 4, d + 6, d + 9, d + 11,
             d + 13);
    assert_int_equal(k2p_parse_rfc3339(iso, &us), 0);
    return (time_t)(us / 1000000);
}

/* Checks that request i is an AssumeRole signed by `key_id`/`secret` for us-west-2 and sts, by
 * signing the recorded request again. */
static void assert_signed(size_t i, const char *key_id, const char *secret, const char *token)
{
    k2p_stub_request r;
    k2p_sigv4_out sig = {0};
    char host[128], ctype[128], date[32], auth[1024], scope[128];
    request(i, &r);
    snprintf(host, sizeof host, "%s", header(&r, "Host"));
    snprintf(ctype, sizeof ctype, "%s", header(&r, "Content-Type"));
    snprintf(date, sizeof date, "%s", header(&r, "X-Amz-Date"));
    snprintf(auth, sizeof auth, "%s", header(&r, "Authorization"));
    snprintf(scope, sizeof scope, "Credential=%s/%.8s/us-west-2/sts/aws4_request", key_id, date);
    assert_non_null(strstr(auth, scope));
    if (token)
        assert_string_equal(header(&r, "X-Amz-Security-Token"), token);
    else
        assert_null(header(&r, "X-Amz-Security-Token"));
    {
        k2p_http_header h[2] = {{"Host", host}, {"Content-Type", ctype}};
        k2p_sigv4_request req = {"POST", "/", NULL, h, 2, r.body, r.body_len};
        k2p_sigv4_creds sc = {key_id, secret, token};
        assert_int_equal(
            k2p_sigv4_sign(&req, &sc, "us-west-2", "sts", amz_date_time(date), &sig, NULL), 0);
        assert_string_equal(sig.authorization, auth);
        k2p_sigv4_out_deinit(&sig);
    }
    k2p_stub_request_deinit(&r);
}

static void test_profile_assume_role(void **state)
{
    (void)state;
    char xml[2048];
    k2p_aws_creds c;
    k2p_err e;
    k2p_stub_request r;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, home_var, "AWS_CONFIG_FILE=%s", config_path, "AWS_REGION=us-west-2",
                  "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_profile_new(env, "app");

    write_file(config_path, "[profile base]\n"
                            "aws_access_key_id = AKIDBASE\n"
                            "aws_secret_access_key = " SECRET_SRC "\n"
                            "[profile app]\n"
                            "role_arn = " ROLE_ARN "\n"
                            "source_profile = base\n"
                            "role_session_name = nightly\n"
                            "external_id = ext-42\n"
                            "duration_seconds = 1800\n");
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRole", "ASIAASSUMED", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAASSUMED");
    assert_string_equal(c.session_token, TOKEN);
    assert_int_equal(c.expires_at, EXP_S);
    assert_string_equal(c.source, "profile");
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_non_null(strstr(r.body, "Action=AssumeRole&"));
    assert_non_null(strstr(r.body, "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Floader"));
    assert_non_null(strstr(r.body, "RoleSessionName=nightly"));
    assert_non_null(strstr(r.body, "ExternalId=ext-42"));
    assert_non_null(strstr(r.body, "DurationSeconds=1800"));
    k2p_stub_request_deinit(&r);
    assert_signed(0, "AKIDBASE", SECRET_SRC, NULL);

    /* A chain of roles: app -> mid (assumed with base) -> app (assumed with mid's credentials).
     * The profile asked for assumes its role even when it also has static keys. */
    k2p_http_stub_reset(stub);
    write_file(config_path, "[profile base]\n"
                            "aws_access_key_id = AKIDBASE\n"
                            "aws_secret_access_key = " SECRET_SRC "\n"
                            "[profile mid]\n"
                            "role_arn = arn:aws:iam::123456789012:role/mid\n"
                            "source_profile = base\n"
                            "[profile app]\n"
                            "aws_access_key_id = AKIDIGNORED\n"
                            "aws_secret_access_key = " SECRET_SRC "\n"
                            "role_arn = " ROLE_ARN "\n"
                            "source_profile = mid\n");
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRole", "ASIAMID", EXP));
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRole", "ASIAAPP", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAAPP");
    k2p_aws_creds_deinit(&c);
    assert_signed(0, "AKIDBASE", SECRET_SRC, NULL);
    assert_signed(1, "ASIAMID", SECRET, TOKEN);

    /* A profile that is its own source uses its static keys. */
    k2p_http_stub_reset(stub);
    write_file(config_path, "[profile app]\n"
                            "aws_access_key_id = AKIDSELF\n"
                            "aws_secret_access_key = " SECRET_SRC "\n"
                            "aws_session_token = selftoken\n"
                            "role_arn = " ROLE_ARN "\n"
                            "source_profile = app\n");
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRole", "ASIAASSUMED", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    assert_signed(0, "AKIDSELF", SECRET_SRC, "selftoken");
    p->destroy(p);

    /* credential_source = Environment. */
    k2p_http_stub_reset(stub);
    env = tenv_init(&t, home_var, "AWS_CONFIG_FILE=%s", config_path, "AWS_REGION=us-west-2",
                    "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub),
                    "AWS_ACCESS_KEY_ID=AKIDFROMENV", "AWS_SECRET_ACCESS_KEY=" SECRET_SRC, NULL);
    p = k2p_cred_provider_profile_new(env, "app");
    write_file(config_path, "[profile app]\nrole_arn = " ROLE_ARN "\n"
                            "credential_source = Environment\n");
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRole", "ASIAASSUMED", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    k2p_aws_creds_deinit(&c);
    assert_signed(0, "AKIDFROMENV", SECRET_SRC, NULL);
    p->destroy(p);

    /* web_identity_token_file + role_arn in a profile. */
    k2p_http_stub_reset(stub);
    env = tenv_init(&t, home_var, "AWS_CONFIG_FILE=%s", config_path, "AWS_REGION=us-west-2",
                    "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub), NULL);
    p = k2p_cred_provider_profile_new(env, "app");
    {
        char conf[800];
        snprintf(conf, sizeof conf,
                 "[profile app]\nrole_arn = " ROLE_ARN "\nweb_identity_token_file = %s\n"
                 "role_session_name = pod\n",
                 token_path);
        write_file(config_path, conf);
    }
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIAWEB", EXP));
    assert_int_equal(resolve(p, &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAWEB");
    k2p_aws_creds_deinit(&c);
    request(0, &r);
    assert_non_null(strstr(r.body, "Action=AssumeRoleWithWebIdentity"));
    assert_non_null(strstr(r.body, "RoleSessionName=pod"));
    assert_non_null(strstr(r.body, "WebIdentityToken=eyJ-first-token"));
    assert_null(header(&r, "Authorization"));
    k2p_stub_request_deinit(&r);
    p->destroy(p);
}

static void test_profile_assume_role_errors(void **state)
{
    (void)state;
    static const struct {
        const char *config;
        const char *want;
    } cases[] = {
        {"[profile app]\nrole_arn = " ROLE_ARN "\n",
         "profile 'app' has role_arn but neither source_profile nor credential_source"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = nowhere\n",
         "profile 'app': source_profile 'nowhere' not found in "},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = b\n[profile b]\nregion = x\n",
         "profile 'app': source_profile 'b' has no credentials"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = b\n"
         "[profile b]\nrole_arn = " ROLE_ARN "\nsource_profile = app\n",
         "source_profile chain longer than 4 (a loop?)"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = app\n",
         "profile 'app' is its own source_profile but has no aws_access_key_id"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = b\ncredential_source = "
         "Environment\n",
         "sets both source_profile and credential_source"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\ncredential_source = Somewhere\n",
         "credential_source must be Environment, Ec2InstanceMetadata or EcsContainer"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\ncredential_source = Environment\n",
         "profile 'app': credential_source Environment: environment: AWS_ACCESS_KEY_ID is not "
         "set"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\ncredential_source = EcsContainer\n",
         "profile 'app': credential_source EcsContainer: container: "},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = app\nmfa_serial = arn:x\n"
         "aws_access_key_id = AKIDSELF\naws_secret_access_key = " SECRET_SRC "\n",
         "needs an MFA code"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = app\n"
         "duration_seconds = 12\naws_access_key_id = AKIDSELF\naws_secret_access_key = " SECRET_SRC
         "\n",
         "duration_seconds must be 900..43200"},
        {"[profile app]\nweb_identity_token_file = /x\n",
         "profile 'app' has web_identity_token_file but no role_arn"},
        {"[profile app]\ncredential_process = /bin/creds\n",
         "profile 'app' uses credential_process, which kinesis2pg does not support yet"},
        {"[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = b\n"
         "[profile b]\naws_access_key_id = AKID/BAD\naws_secret_access_key = " SECRET_SRC "\n",
         "access key id contains characters other than letters and digits"},
    };
    k2p_aws_creds c;
    k2p_err e;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, home_var, "AWS_CONFIG_FILE=%s", config_path, "AWS_REGION=us-west-2",
                  "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub), NULL);
    k2p_cred_provider *p = k2p_cred_provider_profile_new(env, "app");

    for (size_t i = 0; i < K2P_ARRAY_LEN(cases); i++) {
        int rc;
        write_file(config_path, cases[i].config);
        rc = resolve(p, &c, &e);
        if (rc != K2P_EAUTH || !strstr(e.msg, cases[i].want))
            fail_msg("case %zu: rc %d, message: %s", i, rc, e.msg);
        assert_null(c.access_key_id);
        assert_no_secret(&e);
    }
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 0);

    /* STS refuses: EAUTH with its code; the source's secret is never quoted. */
    write_file(config_path, "[profile app]\nrole_arn = " ROLE_ARN "\nsource_profile = b\n"
                            "[profile b]\naws_access_key_id = AKIDBASE\n"
                            "aws_secret_access_key = " SECRET_SRC "\n");
    k2p_http_stub_add(stub, "POST", "/", 403,
                      "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: "
                      "arn:aws:iam::123456789012:user/u is not authorized to perform: "
                      "sts:AssumeRole</Message></Error></ErrorResponse>");
    assert_int_equal(resolve(p, &c, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "profile 'app': STS AssumeRole at http://127.0.0.1:"));
    assert_non_null(strstr(e.msg, "HTTP 403 AccessDenied: User: arn:aws:iam::123456789012:user/u"));
    assert_no_secret(&e);
    p->destroy(p);
}

/* ---- the standard chain ------------------------------------------------------------------- */

static void chain_expect(k2p_cred_chain *ch, int want_rc, const char *want_id,
                         const char *want_source, k2p_err *e)
{
    k2p_aws_creds c;
    int rc;
    k2p_err_clear(e);
    rc = k2p_cred_chain_get(ch, &c, e);
    if (rc != want_rc)
        fail_msg("chain: rc %d (want %d): %s", rc, want_rc, e->msg);
    if (want_id) {
        assert_string_equal(c.access_key_id, want_id);
        assert_string_equal(c.source, want_source);
    } else {
        assert_null(c.access_key_id);
    }
    k2p_aws_creds_deinit(&c);
}

static void test_chain_order(void **state)
{
    (void)state;
    char xml[2048], body[1024];
    char full_uri[200], imds[200], sts[200], wit[500];
    k2p_err e;
    tenv t;
    const k2p_env *env;
    k2p_cred_chain *ch;

    snprintf(full_uri, sizeof full_uri, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/creds",
             k2p_http_stub_url(stub));
    snprintf(imds, sizeof imds, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", k2p_http_stub_url(stub));
    snprintf(sts, sizeof sts, "AWS_ENDPOINT_URL_STS=%s", k2p_http_stub_url(stub));
    snprintf(wit, sizeof wit, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path);
    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIAWEBID", EXP));
    k2p_http_stub_add(stub, "GET", "/creds", 200,
                      creds_json(body, sizeof body, "ASIACONTAINER", EXP));
    imds_routes("loader-role", creds_json(body, sizeof body, "ASIAIMDS", EXP));

    /* Environment before web identity: STS is not called. */
    env = tenv_init(&t, home_var, "AWS_ACCESS_KEY_ID=AKIDENV", "AWS_SECRET_ACCESS_KEY=" SECRET, wit,
                    "AWS_ROLE_ARN=" ROLE_ARN, sts, full_uri, imds, NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, 0, "AKIDENV", "environment", &e);
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, NULL, NULL), 0);

    /* Explicit keys before everything. */
    ch = k2p_cred_chain_default_new(env, "AKIDEXPLICIT", SECRET, NULL, NULL);
    chain_expect(ch, 0, "AKIDEXPLICIT", "explicit", &e);
    k2p_cred_chain_free(ch);

    /* Web identity before the container. */
    env = tenv_init(&t, home_var, wit, "AWS_ROLE_ARN=" ROLE_ARN, sts, full_uri, imds, NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, 0, "ASIAWEBID", "web identity", &e);
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, "GET", NULL), 0);

    /* The container before the profile and IMDS. */
    env = tenv_init(&t, home_var, full_uri, imds, "AWS_CONFIG_FILE=%s", config_path, NULL);
    write_file(config_path, "[default]\naws_access_key_id = AKIDPROFILE\n"
                            "aws_secret_access_key = " SECRET "\n");
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, 0, "ASIACONTAINER", "container", &e);
    k2p_cred_chain_free(ch);

    /* The profile before IMDS. */
    env = tenv_init(&t, home_var, imds, "AWS_CONFIG_FILE=%s", config_path, NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, 0, "AKIDPROFILE", "profile", &e);
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, "PUT", NULL), 0);
    unlink(config_path);

    /* IMDS last. */
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, 0, "ASIAIMDS", "imds", &e);
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, "PUT", NULL), 1);

    /* A source that is configured but broken stops the chain: the container is not asked. */
    env = tenv_init(&t, home_var, wit, sts, full_uri, imds, NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, K2P_EAUTH, NULL, NULL, &e);
    assert_string_equal(e.msg,
                        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, "GET", "/creds"), 1);

    /* The container answers 403: an error, IMDS is not asked. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "GET", "/creds", 403, "");
    imds_routes("loader-role", creds_json(body, sizeof body, "ASIAIMDS", EXP));
    env = tenv_init(&t, home_var, full_uri, imds, NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, K2P_EAUTH, NULL, NULL, &e);
    assert_non_null(strstr(e.msg, "container: GET"));
    k2p_cred_chain_free(ch);
    assert_int_equal(k2p_http_stub_count(stub, "PUT", NULL), 0);

    /* Nothing anywhere, IMDS disabled: every provider says why it had nothing. */
    env = tenv_init(&t, home_var, "AWS_EC2_METADATA_DISABLED=true", NULL);
    ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    chain_expect(ch, K2P_EAUTH, NULL, NULL, &e);
    assert_non_null(strstr(e.msg, "no AWS credentials found (tried: environment: "));
    assert_non_null(strstr(e.msg, "; web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set; "));
    assert_non_null(strstr(e.msg, "; container: AWS_CONTAINER_CREDENTIALS_"));
    assert_non_null(strstr(e.msg, "; profile 'default': "));
    assert_non_null(strstr(e.msg, "; imds: disabled by AWS_EC2_METADATA_DISABLED)"));
    k2p_cred_chain_free(ch);

    /* Nothing anywhere, nothing at the IMDS address: fails fast with the same list. */
    {
        char port[16];
        int64_t t0;
        snprintf(port, sizeof port, "%d", closed_port());
        env = tenv_init(&t, home_var, "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:%s", port,
                        NULL);
        ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
        t0 = mono_ms();
        chain_expect(ch, K2P_EAUTH, NULL, NULL, &e);
        assert_true(mono_ms() - t0 < 3000);
        assert_non_null(strstr(e.msg, "no AWS credentials found (tried: "));
        assert_non_null(strstr(e.msg, "imds: no instance metadata service (PUT http://127.0.0.1:"));
        k2p_cred_chain_free(ch);
    }
}

static void test_chain_standard_opts(void **state)
{
    (void)state;
    char body[1024];
    k2p_err e;
    tenv t;
    const k2p_env *env =
        tenv_init(&t, home_var, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/t",
                  "AWS_EC2_METADATA_DISABLED=true", NULL);
    k2p_cred_chain_opts o = {NULL, NULL, NULL, NULL, {"eu-west-1", NULL, k2p_http_stub_url(stub)}};
    k2p_cred_chain *ch = k2p_cred_chain_standard_new(env, &o);

    k2p_http_stub_add(stub, "GET", "/v2/credentials/t", 200,
                      creds_json(body, sizeof body, "ASIAECS", EXP));
    chain_expect(ch, 0, "ASIAECS", "container", &e);
    k2p_cred_chain_free(ch);
    ch = k2p_cred_chain_standard_new(env, NULL);
    assert_non_null(ch);
    k2p_cred_chain_free(ch);
}

/* The chain's clock, moved by the test. */
static int64_t test_clock(void *ctx)
{
    return atomic_load((atomic_llong *)ctx);
}

static void test_chain_refresh(void **state)
{
    (void)state;
    char xml[2048];
    atomic_llong now = EXP_S - 3600;
    k2p_stub_request r;
    k2p_err e;
    tenv t;
    const k2p_env *env = tenv_init(&t, home_var, "AWS_WEB_IDENTITY_TOKEN_FILE=%s", token_path,
                                   "AWS_ROLE_ARN=" ROLE_ARN, "AWS_ENDPOINT_URL_STS=%s",
                                   k2p_http_stub_url(stub), "AWS_EC2_METADATA_DISABLED=true", NULL);
    k2p_cred_chain *ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    k2p_cred_chain_set_clock(ch, test_clock, &now);

    k2p_http_stub_add(stub, "POST", "/", 200,
                      sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIAFIRST", EXP));
    k2p_http_stub_add(
        stub, "POST", "/", 200,
        sts_ok(xml, sizeof xml, "AssumeRoleWithWebIdentity", "ASIASECOND", "2030-01-01T01:00:00Z"));
    chain_expect(ch, 0, "ASIAFIRST", "web identity", &e);
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/"), 1);

    /* Cached until 5 minutes before the expiry. */
    atomic_store(&now, EXP_S - 301);
    chain_expect(ch, 0, "ASIAFIRST", "web identity", &e);
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/"), 1);

    /* Then refreshed, with the token file read again. */
    write_file(token_path, "eyJ-rotated-token");
    atomic_store(&now, EXP_S - 299);
    chain_expect(ch, 0, "ASIASECOND", "web identity", &e);
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/"), 2);
    request(1, &r);
    assert_non_null(strstr(r.body, "WebIdentityToken=eyJ-rotated-token"));
    k2p_stub_request_deinit(&r);

    /* STS fails while the cached credentials are valid: they are served, no error. */
    k2p_http_stub_reset(stub);
    k2p_http_stub_add(stub, "POST", "/", 403,
                      "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>");
    atomic_store(&now, EXP_S + 3600 - 200);
    chain_expect(ch, 0, "ASIASECOND", "web identity", &e);
    assert_int_equal(k2p_http_stub_count(stub, "POST", "/"), 1);

    /* Expired and still refused: the provider's error. */
    atomic_store(&now, EXP_S + 3600);
    chain_expect(ch, K2P_EAUTH, NULL, NULL, &e);
    assert_non_null(strstr(e.msg, "HTTP 403 AccessDenied"));
    k2p_cred_chain_free(ch);
}

typedef struct reader {
    k2p_cred_chain *chain;
    atomic_bool *stop;
    atomic_llong gets;  /* successful calls */
    atomic_llong first; /* calls that returned the first credentials */
    atomic_int failures;
    atomic_int saw_second;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    while (!atomic_load(rd->stop)) {
        k2p_aws_creds c;
        k2p_err e;
        if (k2p_cred_chain_get(rd->chain, &c, &e) != 0 || !c.access_key_id) {
            atomic_fetch_add(&rd->failures, 1);
        } else {
            if (strcmp(c.access_key_id, "ASIAFIRST") == 0)
                atomic_fetch_add(&rd->first, 1);
            else if (strcmp(c.access_key_id, "ASIASECOND") == 0)
                atomic_store(&rd->saw_second, 1);
            else
                atomic_fetch_add(&rd->failures, 1);
            atomic_fetch_add(&rd->gets, 1);
        }
        k2p_aws_creds_deinit(&c);
    }
    return NULL;
}

/* Waits up to 10 s for pred(ctx); returns whether it came true. */
static int wait_for(int (*pred)(void *ctx), void *ctx)
{
    int64_t deadline = mono_ms() + 10000;
    while (!pred(ctx)) {
        struct timespec ts = {0, 1000000};
        if (mono_ms() > deadline)
            return 0;
        nanosleep(&ts, NULL);
    }
    return 1;
}

enum { N_READERS = 8 };

typedef struct progress {
    reader *rd;
    long long base[N_READERS];
    int progressed;
} progress;

/* All readers but the refreshing one made 50 more calls. */
static int readers_progressed(void *ctx)
{
    progress *p = ctx;
    p->progressed = 0;
    for (int i = 0; i < N_READERS; i++)
        p->progressed += atomic_load(&p->rd[i].gets) >= p->base[i] + 50;
    return p->progressed >= N_READERS - 1;
}

static int readers_saw_second(void *ctx)
{
    reader *rd = ctx;
    for (int i = 0; i < N_READERS; i++)
        if (!atomic_load(&rd[i].saw_second))
            return 0;
    return 1;
}

static void test_chain_readers_during_refresh(void **state)
{
    (void)state;
    enum { N = N_READERS };
    char body[1024];
    atomic_llong now = EXP_S - 3600;
    atomic_bool stop = 0;
    reader rd[N];
    pthread_t th[N];
    progress pr;
    k2p_err e;
    tenv t;
    const k2p_env *env = tenv_init(&t, home_var, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/creds",
                                   k2p_http_stub_url(stub), "AWS_EC2_METADATA_DISABLED=true", NULL);
    k2p_cred_chain *ch = k2p_cred_chain_default_new(env, NULL, NULL, NULL, NULL);
    k2p_stub_response held = {K2P_STUB_RESPOND, 200, "application/json", NULL, 1};

    k2p_cred_chain_set_clock(ch, test_clock, &now);
    k2p_http_stub_add(stub, "GET", "/creds", 200, creds_json(body, sizeof body, "ASIAFIRST", EXP));
    held.body = creds_json(body, sizeof body, "ASIASECOND", "2030-01-01T01:00:00Z");
    k2p_http_stub_add_response(stub, "GET", "/creds", &held);
    chain_expect(ch, 0, "ASIAFIRST", "container", &e);

    /* Inside the refresh window: the first reader to notice refreshes and waits at the gate. */
    atomic_store(&now, EXP_S - 200);
    for (int i = 0; i < N; i++) {
        memset(&rd[i], 0, sizeof rd[i]);
        rd[i].chain = ch;
        rd[i].stop = &stop;
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    assert_int_equal(k2p_http_stub_wait_count(stub, "GET", "/creds", 2, 10000), 0);

    /* While the refresh is held, the other 7 keep getting the cached copy. */
    pr.rd = rd;
    for (int i = 0; i < N; i++)
        pr.base[i] = atomic_load(&rd[i].gets);
    if (!wait_for(readers_progressed, &pr))
        fail_msg("only %d of %d readers made progress during the refresh", pr.progressed, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&rd[i].saw_second), 0);
    assert_int_equal(k2p_http_stub_count(stub, "GET", "/creds"), 2);

    /* The refresh completes: everybody moves to the new credentials. */
    k2p_http_stub_open_gate(stub);
    assert_true(wait_for(readers_saw_second, rd));
    atomic_store(&stop, 1);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&rd[i].failures), 0);
    }
    /* Exactly one refresh. */
    assert_int_equal(k2p_http_stub_count(stub, "GET", "/creds"), 2);
    k2p_cred_chain_free(ch);
}

/* ---------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    char dir[400];
    const char *t = getenv("TMPDIR");
    /* libcurl reads proxy settings from the process environment: a test talks to 127.0.0.1
     * directly, never through a proxy. */
    static const char *const proxies[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                          "ALL_PROXY",  "no_proxy",    "NO_PROXY"};
    for (size_t i = 0; i < K2P_ARRAY_LEN(proxies); i++)
        unsetenv(proxies[i]);
    snprintf(tmpdir, sizeof tmpdir, "%s/k2p_credp_XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dir, sizeof dir, "%s/home", tmpdir);
    mkdir(dir, 0700);
    snprintf(home_var, sizeof home_var, "HOME=%s/home", tmpdir);
    snprintf(token_path, sizeof token_path, "%s/token", tmpdir);
    snprintf(config_path, sizeof config_path, "%s/config", tmpdir);
    stub = k2p_http_stub_start();
    return stub ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char dir[400];
    k2p_http_stub_stop(stub);
    unlink(token_path);
    unlink(config_path);
    snprintf(dir, sizeof dir, "%s/home", tmpdir);
    rmdir(dir);
    return rmdir(tmpdir);
}

#define T(f) cmocka_unit_test_setup(f, reset)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_web_identity_success),
        T(test_web_identity_token_reread),
        T(test_web_identity_errors),
        T(test_container_full_uri),
        T(test_container_token_file),
        T(test_container_relative_uri),
        T(test_container_errors),
        T(test_imds_success),
        T(test_imds_disabled),
        T(test_imds_unreachable_fast),
        T(test_imds_errors),
        T(test_profile_assume_role),
        T(test_profile_assume_role_errors),
        T(test_chain_order),
        T(test_chain_standard_opts),
        T(test_chain_refresh),
        T(test_chain_readers_during_refresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

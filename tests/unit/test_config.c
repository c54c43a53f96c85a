/* test_config.c - command line, precedence of dlt files / dlt env / standard env / flags,
 * --from parsing, help, and that docs/configuration.md matches the option table.
 *
 * Threading: single-threaded. The environment is a k2p_env list; dlt files and $HOME live in a
 * mkdtemp directory. Set K2P_UPDATE_DOCS=1 to rewrite docs/configuration.md instead of diffing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kinesis2pg/config.h"

#ifndef K2P_SOURCE_DIR
#define K2P_SOURCE_DIR "."
#endif

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define NOW_US 1714564800000000LL /* 2024-05-01T12:00:00Z */

static char tmpdir[256], dlt_dir[300], home_dir[300], home_var[320];
static char config_toml[400], secrets_toml[400], aws_config[400];

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void clear_files(void)
{
    unlink(config_toml);
    unlink(secrets_toml);
    unlink(aws_config);
}

/* Parses "kinesis2pg --dlt-dir <tmp> <args...>" (NULL-terminated) over env (plus HOME). */
static int run(k2p_config *cfg, k2p_err *e, const char *const *env, size_t nenv, ...)
{
    char *argv[64];
    const char *vars[32];
    int argc = 0;
    va_list ap;

    argv[argc++] = "kinesis2pg";
    argv[argc++] = "--dlt-dir";
    argv[argc++] = dlt_dir;
    va_start(ap, nenv);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = (char *)a;
    va_end(ap);
    vars[0] = home_var;
    for (size_t i = 0; i < nenv; i++)
        vars[i + 1] = env[i];
    k2p_env en = k2p_env_from_list(vars, nenv + 1);
    k2p_err_clear(e);
    return k2p_config_parse_at(cfg, argc, argv, &en, NOW_US, e);
}

#define RUN_OK(cfg, env, n, ...)                                                                   \
    do {                                                                                           \
        k2p_err e_;                                                                                \
        if (run(cfg, &e_, env, n, __VA_ARGS__, NULL) != 0)                                         \
            fail_msg("parse failed: %s", e_.msg);                                                  \
    } while (0)

static void expect_error(const char *const *env, size_t nenv, const char *want, ...)
{
    char *argv[64];
    const char *vars[32];
    int argc = 0;
    va_list ap;
    k2p_config cfg;
    k2p_err e;

    argv[argc++] = "kinesis2pg";
    argv[argc++] = "--dlt-dir";
    argv[argc++] = dlt_dir;
    va_start(ap, want);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = (char *)a;
    va_end(ap);
    vars[0] = home_var;
    for (size_t i = 0; i < nenv; i++)
        vars[i + 1] = env[i];
    k2p_env en = k2p_env_from_list(vars, nenv + 1);
    k2p_err_clear(&e);
    int rc = k2p_config_parse_at(&cfg, argc, argv, &en, NOW_US, &e);
    if (rc != K2P_ECONFIG)
        fail_msg("expected K2P_ECONFIG containing '%s', got %d", want, rc);
    assert_int_equal(e.code, K2P_ECONFIG);
    if (!strstr(e.msg, want))
        fail_msg("message '%s' lacks '%s'", e.msg, want);
    if (strstr(e.msg, "wJalr") || strstr(e.msg, "hunter2"))
        fail_msg("message '%s' holds a secret", e.msg);
    assert_null(cfg.stream);
    k2p_config_deinit(&cfg);
}

/* ---------------------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    RUN_OK(&cfg, NULL, 0, "load", "--stream", "clicks", "--region", "eu-west-1");
    assert_int_equal(cfg.command, K2P_CMD_LOAD);
    assert_false(cfg.help);
    assert_false(cfg.version);
    assert_string_equal(cfg.stream, "clicks");
    assert_int_equal(cfg.from.kind, K2P_FROM_LATEST);
    assert_int_equal(cfg.max_messages, 0);
    assert_int_equal(cfg.ms_behind_latest, 1000);
    assert_false(cfg.raw);
    assert_int_equal(cfg.chunk_size, 1000);
    assert_int_equal(cfg.max_attempts, 10);
    assert_false(cfg.follow);
    assert_string_equal(cfg.table, "clicks");
    assert_string_equal(cfg.schema, "kinesis");
    assert_int_equal(cfg.writers, 2);
    assert_int_equal(cfg.batch_rows, 20000);
    assert_int_equal(cfg.flush_ms, 500);
    assert_int_equal(cfg.memory_mb, 32);
    assert_false(cfg.no_primary_key);
    assert_null(cfg.pg_conninfo);
    assert_string_equal(cfg.region, "eu-west-1");
    assert_string_equal(cfg.endpoint, "https://kinesis.eu-west-1.amazonaws.com");
    assert_null(cfg.profile);
    assert_null(cfg.ca_file);
    assert_null(cfg.aws_access_key_id);
    assert_null(cfg.aws_secret_access_key);
    assert_null(cfg.aws_session_token);
    assert_int_equal(cfg.log_format, K2P_LOG_FORMAT_TEXT);
    assert_int_equal(cfg.log_level, K2P_LOG_LEVEL_INFO);
    assert_null(cfg.metrics_addr);
    assert_null(cfg.state_file);
    assert_string_equal(cfg.dlt_dir, dlt_dir);
    assert_string_equal(k2p_command_name(cfg.command), "load");
    /* Sources, by option name. */
    for (size_t i = 0; k2p_config_option_name(i); i++) {
        const char *n = k2p_config_option_name(i);
        int want = K2P_SRC_DEFAULT;
        if (!strcmp(n, "stream") || !strcmp(n, "region") || !strcmp(n, "dlt-dir"))
            want = K2P_SRC_FLAG;
        else if (!strcmp(n, "table") || !strcmp(n, "endpoint"))
            want = K2P_SRC_DERIVED;
        if (cfg.source[i] != want)
            fail_msg("option %s: source %d, want %d", n, cfg.source[i], want);
    }
    k2p_config_deinit(&cfg);
    assert_null(cfg.stream);
    k2p_config_deinit(&cfg); /* twice is fine */
}

static size_t opt_index(const char *name);

static void test_flag_forms(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    RUN_OK(&cfg, NULL, 0, "--log-level=debug", "tail", "-sone", "--stream=two", "-s", "three",
           "--raw", "--follow=yes", "--chunk-size=10000", "--max-messages", "7", "--region",
           "us-east-1", "--state=/tmp/state", "--from", "TRIM-HORIZON", "--log-format", "JSON");
    assert_int_equal(cfg.command, K2P_CMD_TAIL);
    assert_string_equal(cfg.stream, "three"); /* the last one wins */
    assert_true(cfg.raw);
    assert_true(cfg.follow);
    assert_int_equal(cfg.chunk_size, 10000);
    assert_int_equal(cfg.max_messages, 7);
    assert_string_equal(cfg.state_file, "/tmp/state");
    assert_int_equal(cfg.from.kind, K2P_FROM_TRIM_HORIZON);
    assert_int_equal(cfg.log_level, K2P_LOG_LEVEL_DEBUG);
    assert_int_equal(cfg.log_format, K2P_LOG_FORMAT_JSON);
    assert_null(cfg.table); /* tail writes no table */
    k2p_config_deinit(&cfg);

    RUN_OK(&cfg, NULL, 0, "reset", "--stream", "s", "-y");
    assert_true(cfg.yes);
    assert_null(cfg.region); /* reset needs no region */
    assert_null(cfg.endpoint);
    k2p_config_deinit(&cfg);

    RUN_OK(&cfg, NULL, 0, "status", "--stream", "s", "--json");
    assert_true(cfg.json);
    k2p_config_deinit(&cfg);
    expect_error(NULL, 0, "--raw is not an option of 'status'", "status", "--stream", "s",
                 "--raw=false", NULL);

    RUN_OK(&cfg, NULL, 0, "load", "--stream", "s", "--region", "us-east-1", "--follow=off",
           "--no-primary-key", "--writers", "64", "--batch-rows", "1", "--flush-ms", "3600000",
           "--table", "T", "--schema", "my schema", "--ca-file", "/etc/ca.pem", "--profile", "dev",
           "--metrics-addr", "127.0.0.1:9090");
    assert_false(cfg.follow);
    assert_true(cfg.no_primary_key);
    assert_int_equal(cfg.writers, 64);
    assert_int_equal(cfg.batch_rows, 1);
    assert_int_equal(cfg.flush_ms, 3600000);
    assert_string_equal(cfg.table, "T");
    assert_string_equal(cfg.schema, "my schema");
    assert_string_equal(cfg.ca_file, "/etc/ca.pem");
    assert_string_equal(cfg.profile, "dev");
    assert_string_equal(cfg.metrics_host, "127.0.0.1");
    assert_int_equal(cfg.metrics_port, 9090);
    k2p_config_deinit(&cfg);

    /* The retry budget: AWS_MAX_ATTEMPTS as in the AWS SDKs and CLI, the flag over it. */
    const char *attempts_env[] = {"AWS_MAX_ATTEMPTS=25"};
    RUN_OK(&cfg, attempts_env, 1, "tail", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.max_attempts, 25);
    assert_int_equal(cfg.source[opt_index("max-attempts")], K2P_SRC_ENV);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, attempts_env, 1, "load", "-s", "s", "--region", "r1", "--max-attempts", "1");
    assert_int_equal(cfg.max_attempts, 1);
    assert_int_equal(cfg.source[opt_index("max-attempts")], K2P_SRC_FLAG);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, attempts_env, 1, "status", "-s", "s"); /* not read by status */
    assert_int_equal(cfg.source[opt_index("max-attempts")], K2P_SRC_DEFAULT);
    k2p_config_deinit(&cfg);
    const char *mem_env[] = {"KINESIS2PG_MEMORY_MB=48"};
    RUN_OK(&cfg, mem_env, 1, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.memory_mb, 48);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, mem_env, 1, "load", "-s", "s", "--region", "r1", "--memory-mb=64");
    assert_int_equal(cfg.memory_mb, 64);
    k2p_config_deinit(&cfg);
    expect_error(NULL, 0, "--memory-mb: invalid value '4': must be from 8 to 65536", "load", "-s",
                 "s", "--region", "r1", "--memory-mb", "4", NULL);
    expect_error(NULL, 0, "--memory-mb is not an option of 'tail'", "tail", "-s", "s",
                 "--region", "r1", "--memory-mb", "64", NULL);
    expect_error(NULL, 0, "--max-attempts: invalid value '0': must be from 1 to 100", "load", "-s",
                 "s", "--region", "r1", "--max-attempts", "0", NULL);
    const char *bad_attempts[] = {"AWS_MAX_ATTEMPTS=many"};
    expect_error(bad_attempts, 1, "AWS_MAX_ATTEMPTS: invalid value 'many'", "load", "-s", "s",
                 "--region", "r1", NULL);
}

static void test_metrics_addr(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1", "--metrics-addr", ":9464");
    assert_string_equal(cfg.metrics_host, "0.0.0.0");
    assert_int_equal(cfg.metrics_port, 9464);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1", "--metrics-addr=[::1]:0");
    assert_string_equal(cfg.metrics_host, "::1");
    assert_int_equal(cfg.metrics_port, 0);
    k2p_config_deinit(&cfg);
    expect_error(NULL, 0, "--metrics-addr: invalid value 'localhost': must be HOST:PORT", "load",
                 "-s", "s", "--region", "r1", "--metrics-addr", "localhost", NULL);
    expect_error(NULL, 0, "needs brackets", "load", "-s", "s", "--region", "r1", "--metrics-addr",
                 "::1:90", NULL);
    expect_error(NULL, 0, "port must be a number from 0 to 65535", "load", "-s", "s", "--region",
                 "r1", "--metrics-addr", "h:70000", NULL);
    expect_error(NULL, 0, "port must be", "load", "-s", "s", "--region", "r1", "--metrics-addr",
                 "h:", NULL);
}

/* ---------------------------------------------------------------------------------------- */

static size_t opt_index(const char *name)
{
    for (size_t i = 0; k2p_config_option_name(i); i++)
        if (strcmp(k2p_config_option_name(i), name) == 0)
            return i;
    fail_msg("no option %s", name);
    return 0;
}

static void test_precedence_stream(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    write_file(config_toml, "[sources.kinesis]\nstream_name = \"from_config\"\nchunk_size = 200\n");
    RUN_OK(&cfg, NULL, 0, "load", "--region", "r1");
    assert_string_equal(cfg.stream, "from_config");
    assert_string_equal(cfg.table, "from_config");
    assert_int_equal(cfg.chunk_size, 200);
    assert_int_equal(cfg.source[opt_index("stream")], K2P_SRC_DLT_CONFIG);
    k2p_config_deinit(&cfg);

    write_file(secrets_toml, "[sources]\nkinesis.stream_name = 'from_secrets'\n");
    RUN_OK(&cfg, NULL, 0, "load", "--region", "r1");
    assert_string_equal(cfg.stream, "from_secrets");
    assert_int_equal(cfg.chunk_size, 200);
    assert_int_equal(cfg.source[opt_index("stream")], K2P_SRC_DLT_SECRETS);
    k2p_config_deinit(&cfg);

    const char *env[] = {"SOURCES__KINESIS__STREAM_NAME=from_env",
                         "SOURCES__KINESIS__CHUNK_SIZE=300"};
    RUN_OK(&cfg, env, 2, "load", "--region", "r1");
    assert_string_equal(cfg.stream, "from_env");
    assert_int_equal(cfg.chunk_size, 300);
    assert_int_equal(cfg.source[opt_index("stream")], K2P_SRC_DLT_ENV);
    k2p_config_deinit(&cfg);

    RUN_OK(&cfg, env, 2, "load", "--region", "r1", "--stream", "from_flag", "--chunk-size", "400");
    assert_string_equal(cfg.stream, "from_flag");
    assert_int_equal(cfg.chunk_size, 400);
    assert_int_equal(cfg.source[opt_index("stream")], K2P_SRC_FLAG);
    k2p_config_deinit(&cfg);

    /* An empty variable counts as unset. */
    const char *empty[] = {"SOURCES__KINESIS__STREAM_NAME="};
    RUN_OK(&cfg, empty, 1, "load", "--region", "r1");
    assert_string_equal(cfg.stream, "from_secrets");
    k2p_config_deinit(&cfg);
}

static void test_precedence_region_and_endpoint(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    write_file(aws_config, "[default]\nregion = us-west-2\n[profile dev]\nregion = eu-north-1\n");

    /* Only the AWS profile: its region. */
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s");
    assert_string_equal(cfg.region, "us-west-2");
    assert_int_equal(cfg.source[opt_index("region")], K2P_SRC_DERIVED);
    assert_string_equal(cfg.endpoint, "https://kinesis.us-west-2.amazonaws.com");
    k2p_config_deinit(&cfg);
    const char *prof[] = {"AWS_PROFILE=dev"};
    RUN_OK(&cfg, prof, 1, "load", "-s", "s");
    assert_string_equal(cfg.region, "eu-north-1");
    assert_string_equal(cfg.profile, "dev");
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, prof, 1, "load", "-s", "s", "--profile", "default");
    assert_string_equal(cfg.region, "us-west-2");
    k2p_config_deinit(&cfg);

    /* dlt region_name beats the profile's (it is this source's explicit setting). */
    write_file(secrets_toml, "[sources.kinesis.credentials]\nregion_name = \"ap-south-1\"\n"
                             "endpoint_url = \"http://localhost:4567/\"\n");
    RUN_OK(&cfg, prof, 1, "load", "-s", "s");
    assert_string_equal(cfg.region, "ap-south-1");
    assert_string_equal(cfg.endpoint, "http://localhost:4567");
    assert_int_equal(cfg.source[opt_index("endpoint")], K2P_SRC_DLT_SECRETS);
    k2p_config_deinit(&cfg);

    const char *e1[] = {"SOURCES__KINESIS__CREDENTIALS__REGION_NAME=ca-central-1",
                        "SOURCES__KINESIS__CREDENTIALS__ENDPOINT_URL=http://dlt-env:1"};
    RUN_OK(&cfg, e1, 2, "load", "-s", "s");
    assert_string_equal(cfg.region, "ca-central-1");
    assert_string_equal(cfg.endpoint, "http://dlt-env:1");
    k2p_config_deinit(&cfg);

    const char *e2[] = {"SOURCES__KINESIS__CREDENTIALS__REGION_NAME=ca-central-1",
                        "SOURCES__KINESIS__CREDENTIALS__ENDPOINT_URL=http://dlt-env:1",
                        "AWS_DEFAULT_REGION=sa-east-1", "AWS_ENDPOINT_URL=http://generic:2"};
    RUN_OK(&cfg, e2, 4, "load", "-s", "s");
    assert_string_equal(cfg.region, "sa-east-1");
    assert_string_equal(cfg.endpoint, "http://generic:2");
    assert_int_equal(cfg.source[opt_index("region")], K2P_SRC_ENV);
    k2p_config_deinit(&cfg);

    const char *e3[] = {"SOURCES__KINESIS__CREDENTIALS__REGION_NAME=ca-central-1",
                        "AWS_DEFAULT_REGION=sa-east-1", "AWS_REGION=me-south-1",
                        "AWS_ENDPOINT_URL=http://generic:2",
                        "AWS_ENDPOINT_URL_KINESIS=https://kinesis.example:3/"};
    RUN_OK(&cfg, e3, 5, "load", "-s", "s");
    assert_string_equal(cfg.region, "me-south-1");
    assert_string_equal(cfg.endpoint, "https://kinesis.example:3");
    k2p_config_deinit(&cfg);

    RUN_OK(&cfg, e3, 5, "load", "-s", "s", "--region", "cn-north-1", "--endpoint", "http://flag:4");
    assert_string_equal(cfg.region, "cn-north-1");
    assert_string_equal(cfg.endpoint, "http://flag:4");
    assert_int_equal(cfg.source[opt_index("endpoint")], K2P_SRC_FLAG);
    k2p_config_deinit(&cfg);

    /* China regions live under amazonaws.com.cn. */
    clear_files();
    RUN_OK(&cfg, NULL, 0, "tail", "-s", "s", "--region", "cn-northwest-1");
    assert_string_equal(cfg.endpoint, "https://kinesis.cn-northwest-1.amazonaws.com.cn");
    k2p_config_deinit(&cfg);

    expect_error(NULL, 0, "no AWS region", "load", "-s", "s", NULL);
    expect_error(NULL, 0, "no AWS region", "tail", "-s", "s", "--endpoint", "http://x:1", NULL);
    RUN_OK(&cfg, NULL, 0, "status", "-s", "s");
    assert_null(cfg.region);
    assert_null(cfg.endpoint);
    k2p_config_deinit(&cfg);
    expect_error(NULL, 0, "--region: invalid value 'EU-West-1': must look like us-east-1", "load",
                 "-s", "s", "--region", "EU-West-1", NULL);
    const char *bad_ep[] = {"AWS_ENDPOINT_URL_KINESIS=kinesis.local:4567"};
    expect_error(bad_ep, 1, "AWS_ENDPOINT_URL_KINESIS: invalid value 'kinesis.local:4567'", "load",
                 "-s", "s", "--region", "r1", NULL);
    write_file(aws_config, "[default]\nregion = Not A Region\n");
    expect_error(NULL, 0, "region of AWS profile 'default'", "load", "-s", "s", NULL);
}

static void test_keys(void **state)
{
    (void)state;
    k2p_config cfg;
    k2p_err e;
    clear_files();
    write_file(secrets_toml, "[sources.kinesis.credentials]\n"
                             "aws_access_key_id = \"AKIDFROMDLTFILE\"\n"
                             "aws_secret_access_key = \"" SECRET "\"\n");
    const char *env[] = {"AWS_ACCESS_KEY_ID=AKIDFROMAWSENV", "AWS_SECRET_ACCESS_KEY=other"};
    RUN_OK(&cfg, env, 2, "load", "-s", "s", "--region", "r1");
    assert_string_equal(cfg.aws_access_key_id, "AKIDFROMDLTFILE");
    assert_string_equal(cfg.aws_secret_access_key, SECRET);
    assert_null(cfg.aws_session_token);

    /* The explicit keys come first in the chain, before AWS_ACCESS_KEY_ID. */
    const char *vars[] = {home_var, "AWS_ACCESS_KEY_ID=AKIDFROMAWSENV",
                          "AWS_SECRET_ACCESS_KEY=other"};
    k2p_env en = k2p_env_from_list(vars, 3);
    k2p_cred_chain *ch = k2p_config_cred_chain_new(&cfg, &en);
    k2p_aws_creds c;
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFROMDLTFILE");
    assert_string_equal(c.source, "explicit");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);

    /* The dump masks them. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    k2p_config_dump(&cfg, f);
    fclose(f);
    assert_null(strstr(text, "wJalr"));
    assert_null(strstr(text, "AKIDFROMDLTFILE"));
    assert_non_null(strstr(text, "sources.kinesis.credentials.aws_access_key_id = ****FILE"));
    assert_non_null(strstr(text, "sources.kinesis.credentials.aws_secret_access_key = ****"));
    assert_non_null(strstr(text, "sources.kinesis.credentials.aws_session_token = (unset)"));
    free(text);
    k2p_config_deinit(&cfg);

    /* Without explicit keys the chain uses the environment. */
    clear_files();
    RUN_OK(&cfg, env, 2, "load", "-s", "s", "--region", "r1");
    ch = k2p_config_cred_chain_new(&cfg, &en);
    assert_int_equal(k2p_cred_chain_get(ch, &c, &e), 0);
    assert_string_equal(c.access_key_id, "AKIDFROMAWSENV");
    k2p_aws_creds_deinit(&c);
    k2p_cred_chain_free(ch);
    k2p_config_deinit(&cfg);

    /* dlt env names override the dlt file, per key. */
    write_file(secrets_toml, "[sources.kinesis.credentials]\n"
                             "aws_access_key_id = \"AKIDFROMDLTFILE\"\n"
                             "aws_secret_access_key = \"" SECRET "\"\n");
    const char *denv[] = {"SOURCES__KINESIS__CREDENTIALS__AWS_ACCESS_KEY_ID=AKIDDLTENV",
                          "SOURCES__KINESIS__CREDENTIALS__AWS_SESSION_TOKEN=tok"};
    RUN_OK(&cfg, denv, 2, "tail", "-s", "s", "--region", "r1");
    assert_string_equal(cfg.aws_access_key_id, "AKIDDLTENV");
    assert_string_equal(cfg.aws_secret_access_key, SECRET);
    assert_string_equal(cfg.aws_session_token, "tok");
    k2p_config_deinit(&cfg);

    /* Half a key pair is a config error naming the keys, not their values. */
    write_file(secrets_toml, "[sources.kinesis.credentials]\n"
                             "aws_secret_access_key = \"" SECRET "\"\n");
    expect_error(NULL, 0, "aws_secret_access_key is set but aws_access_key_id is not", "load", "-s",
                 "s", "--region", "r1", NULL);
    write_file(secrets_toml, "[sources.kinesis.credentials]\naws_access_key_id = \"AKID\"\n");
    expect_error(NULL, 0, "aws_access_key_id is set but aws_secret_access_key is not", "load", "-s",
                 "s", "--region", "r1", NULL);
    const char *tok_only[] = {"SOURCES__KINESIS__CREDENTIALS__AWS_SESSION_TOKEN=tok"};
    clear_files();
    expect_error(tok_only, 1, "aws_session_token is set but aws_access_key_id is not", "load", "-s",
                 "s", "--region", "r1", NULL);

    /* A secret of the wrong type: the file and line, no value. */
    write_file(secrets_toml, "[sources.kinesis.credentials]\naws_access_key_id = \"AKID\"\n"
                             "aws_secret_access_key = [\"" SECRET "\"]\n");
    expect_error(NULL, 0,
                 "secrets.toml:3: sources.kinesis.credentials.aws_secret_access_key: invalid "
                 "value: must be a single value, not an array",
                 "load", "-s", "s", "--region", "r1", NULL);
    write_file(secrets_toml, "[sources.kinesis.credentials]\naws_access_key_id = \"AKID\"\n"
                             "aws_secret_access_key = \"" SECRET "\n\"\n");
    expect_error(NULL, 0, "secrets.toml:3: unterminated string", "load", "-s", "s", "--region",
                 "r1", NULL);
    write_file(secrets_toml, "[sources.kinesis.credentials]\naws_access_key_id = \"AKID\"\n"
                             "aws_secret_access_key = \"" SECRET "\\u0001\"\n");
    expect_error(NULL, 0,
                 "sources.kinesis.credentials.aws_secret_access_key: invalid value: must not "
                 "hold control characters",
                 "load", "-s", "s", "--region", "r1", NULL);
}

static void test_pg(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    RUN_OK(&cfg, NULL, 0, "status", "-s", "s");
    assert_null(cfg.pg_conninfo);
    k2p_config_deinit(&cfg);

    write_file(secrets_toml, "[destination.postgres.credentials]\n"
                             "database = \"dlt_data\"\nusername = \"loader\"\n"
                             "password = \"it's \\\\ hunter2\"\nhost = \"db\"\nport = 5432\n");
    RUN_OK(&cfg, NULL, 0, "status", "-s", "s");
    assert_string_equal(cfg.pg_conninfo, "host='db' port='5432' dbname='dlt_data' user='loader' "
                                         "password='it\\'s \\\\ hunter2'");
    assert_int_equal(cfg.source[opt_index("pg")], K2P_SRC_DLT_SECRETS);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    k2p_config_dump(&cfg, f);
    fclose(f);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, "password=****"));
    assert_non_null(strstr(text, "dbname=dlt_data"));
    free(text);
    k2p_config_deinit(&cfg);

    const char *fld[] = {"DESTINATION__POSTGRES__CREDENTIALS__HOST=envhost"};
    RUN_OK(&cfg, fld, 1, "reset", "-s", "s");
    assert_string_equal(cfg.pg_conninfo, "host='envhost' port='5432' dbname='dlt_data' "
                                         "user='loader' password='it\\'s \\\\ hunter2'");
    assert_int_equal(cfg.source[opt_index("pg")], K2P_SRC_DLT_ENV);
    k2p_config_deinit(&cfg);

    write_file(config_toml, "[destination.postgres]\ncredentials = \"postgresql://a@b/c\"\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_string_equal(cfg.pg_conninfo, "postgresql://a@b/c"); /* the string form wins */
    k2p_config_deinit(&cfg);

    const char *url[] = {"DESTINATION__POSTGRES__CREDENTIALS=host=dltenv",
                         "DATABASE_URL=postgres://u@dburl/db"};
    RUN_OK(&cfg, url, 1, "load", "-s", "s", "--region", "r1");
    assert_string_equal(cfg.pg_conninfo, "host=dltenv");
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, url, 2, "load", "-s", "s", "--region", "r1");
    assert_string_equal(cfg.pg_conninfo, "postgres://u@dburl/db");
    assert_int_equal(cfg.source[opt_index("pg")], K2P_SRC_ENV);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, url, 2, "load", "-s", "s", "--region", "r1", "--pg", "dbname=flag");
    assert_string_equal(cfg.pg_conninfo, "dbname=flag");
    k2p_config_deinit(&cfg);

    expect_error(NULL, 0, "--pg: invalid value: not a valid PostgreSQL connection string", "load",
                 "-s", "s", "--region", "r1", "--pg", "host=x password hunter2", NULL);
    const char *bad[] = {"DATABASE_URL=postgres://u:hunter2@h:notaport/db?bogus_param=1"};
    expect_error(bad, 1, "DATABASE_URL: invalid value:", "status", "-s", "s", NULL);
}

/* ---------------------------------------------------------------------------------------- */

static void test_from_values(void **state)
{
    (void)state;
    k2p_from f;
    assert_int_equal(k2p_config_parse_from("latest", NOW_US, &f), 0);
    assert_int_equal(f.kind, K2P_FROM_LATEST);
    assert_int_equal(k2p_config_parse_from("LATEST", NOW_US, &f), 0);
    assert_int_equal(f.kind, K2P_FROM_LATEST);
    assert_int_equal(k2p_config_parse_from("trim_horizon", NOW_US, &f), 0);
    assert_int_equal(f.kind, K2P_FROM_TRIM_HORIZON);
    assert_int_equal(k2p_config_parse_from("Trim-Horizon", NOW_US, &f), 0);
    assert_int_equal(f.kind, K2P_FROM_TRIM_HORIZON);

    static const struct {
        const char *in;
        int64_t at;
    } ok[] = {
        {"2024-05-01T12:00:00Z", NOW_US},
        {"2024-05-01T14:00:00+02:00", NOW_US},
        {"2024-05-01T07:30:00-04:30", NOW_US},
        {"2024-05-01t12:00:00.25z", NOW_US + 250000},
        {"2024-05-01 12:00:00.123456789Z", NOW_US + 123456},
        {"2024-05-01T11:59:59.999999+00:00", NOW_US - 1},
        {"1970-01-01T00:00:00Z", 0},
        {"90s", NOW_US - 90 * 1000000LL},
        {"15m", NOW_US - 900 * 1000000LL},
        {"1h", NOW_US - 3600 * 1000000LL},
        {"2d", NOW_US - 2 * 86400 * 1000000LL},
        {"1w", NOW_US - 7 * 86400 * 1000000LL},
        {"1h30m", NOW_US - 5400 * 1000000LL},
        {"1d2h3m4s", NOW_US - (86400 + 7200 + 180 + 4) * 1000000LL},
        {"0s", NOW_US},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        memset(&f, 0, sizeof f);
        if (k2p_config_parse_from(ok[i].in, NOW_US, &f) != 0)
            fail_msg("rejected '%s'", ok[i].in);
        assert_int_equal(f.kind, K2P_FROM_AT_TIMESTAMP);
        if (f.at_us != ok[i].at)
            fail_msg("'%s': %lld, want %lld", ok[i].in, (long long)f.at_us, (long long)ok[i].at);
    }

    static const char *const bad[] = {
        "",
        "1",
        "1x",
        "-1h",
        "+1h",
        "1.5h",
        "h",
        "1h-",
        "1h 30m",
        "yesterday",
        "now",
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-05-01T12:00:00+2",
        "1969-12-31T23:59:59Z",
        "99999999999999999999s",
        "9223372036854775807w",
        "20000000d",
        "latest ",
        " latest",
        "trim horizon",
        "1H",
        "1hh",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (k2p_config_parse_from(bad[i], NOW_US, &f) != K2P_EINVAL)
            fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(k2p_config_parse_from(NULL, NOW_US, &f), K2P_EINVAL);
}

static void test_from_sources(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1", "--from", "2h");
    assert_int_equal(cfg.from.kind, K2P_FROM_AT_TIMESTAMP);
    assert_int_equal(cfg.from.at_us, NOW_US - 7200 * 1000000LL);
    k2p_config_deinit(&cfg);

    /* dlt's initial_at_timestamp: a number of Unix seconds (0 = latest), or a date-time. */
    write_file(config_toml, "[sources.kinesis]\ninitial_at_timestamp = 0.0\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.from.kind, K2P_FROM_LATEST);
    k2p_config_deinit(&cfg);
    write_file(config_toml, "[sources.kinesis]\ninitial_at_timestamp = 1714564800.5\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.from.kind, K2P_FROM_AT_TIMESTAMP);
    assert_int_equal(cfg.from.at_us, NOW_US + 500000);
    k2p_config_deinit(&cfg);
    write_file(config_toml, "[sources.kinesis]\ninitial_at_timestamp = 1714564800\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.from.at_us, NOW_US);
    k2p_config_deinit(&cfg);
    write_file(config_toml,
               "[sources.kinesis]\ninitial_at_timestamp = 2024-05-01T13:00:00+01:00\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.from.at_us, NOW_US);
    k2p_config_deinit(&cfg);
    const char *env[] = {"SOURCES__KINESIS__INITIAL_AT_TIMESTAMP=trim_horizon"};
    RUN_OK(&cfg, env, 1, "load", "-s", "s", "--region", "r1");
    assert_int_equal(cfg.from.kind, K2P_FROM_TRIM_HORIZON);
    k2p_config_deinit(&cfg);

    write_file(config_toml, "[sources.kinesis]\ninitial_at_timestamp = 2024-05-01T13:00:00\n");
    expect_error(NULL, 0,
                 "config.toml:2: sources.kinesis.initial_at_timestamp: invalid value "
                 "'2024-05-01T13:00:00': must be latest, trim_horizon, an RFC 3339",
                 "load", "-s", "s", "--region", "r1", NULL);
    write_file(config_toml, "[sources.kinesis]\ninitial_at_timestamp = -5\n");
    expect_error(NULL, 0, "must be Unix seconds", "load", "-s", "s", "--region", "r1", NULL);
    clear_files();
    expect_error(NULL, 0, "--from: invalid value 'yesterday': must be latest", "load", "-s", "s",
                 "--region", "r1", "--from", "yesterday", NULL);
}

static void test_raw_from_parse_json(void **state)
{
    (void)state;
    k2p_config cfg;
    clear_files();
    write_file(config_toml, "[sources.kinesis]\nparse_json = false\n");
    RUN_OK(&cfg, NULL, 0, "load", "-s", "s", "--region", "r1");
    assert_true(cfg.raw);
    k2p_config_deinit(&cfg);
    const char *env[] = {"SOURCES__KINESIS__PARSE_JSON=true"};
    RUN_OK(&cfg, env, 1, "load", "-s", "s", "--region", "r1");
    assert_false(cfg.raw);
    k2p_config_deinit(&cfg);
    RUN_OK(&cfg, env, 1, "load", "-s", "s", "--region", "r1", "--raw");
    assert_true(cfg.raw);
    k2p_config_deinit(&cfg);
    write_file(config_toml, "[sources.kinesis]\nparse_json = \"maybe\"\n");
    expect_error(NULL, 0,
                 "config.toml:2: sources.kinesis.parse_json: invalid value 'maybe': "
                 "must be true or false",
                 "load", "-s", "s", "--region", "r1", NULL);
}

/* ---------------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    clear_files();
    expect_error(NULL, 0, "missing command", NULL);
    expect_error(NULL, 0, "missing command", "--stream", "s", NULL);
    expect_error(NULL, 0, "unknown command 'lod'", "lod", NULL);
    expect_error(NULL, 0, "unknown command (use", SECRET, NULL);
    expect_error(NULL, 0, "unknown option '--bogus'", "load", "--bogus", NULL);
    expect_error(NULL, 0, "unknown option '--bogus'", "load", "--bogus=" SECRET, NULL);
    expect_error(NULL, 0, "unknown option '-x'", "load", "-x", NULL);
    expect_error(NULL, 0, "--stream needs a value (--stream NAME)", "load", "--stream", NULL);
    expect_error(NULL, 0, "--stream needs a value", "load", "--stream", "--follow", NULL);
    expect_error(NULL, 0, "--yes is not an option of 'load'", "load", "-s", "s", "--yes", NULL);
    expect_error(NULL, 0, "--state is not an option of 'load'", "--state", "f", "load", "-s", "s",
                 NULL);
    expect_error(NULL, 0, "unexpected argument 'extra' (argument 6)", "load", "-s", "s", "extra",
                 NULL);
    expect_error(NULL, 0, "unexpected argument 7", "load", "-s", "s", "--", "password=hunter2",
                 NULL);
    expect_error(NULL, 0, "--chunk-size: invalid value '0': must be from 1 to 10000", "load", "-s",
                 "s", "--region", "r1", "--chunk-size", "0", NULL);
    expect_error(NULL, 0, "--chunk-size: invalid value '10001'", "load", "-s", "s", "--region",
                 "r1", "--chunk-size=10001", NULL);
    expect_error(NULL, 0, "--chunk-size: invalid value '1e3': must be an integer", "load", "-s",
                 "s", "--region", "r1", "--chunk-size=1e3", NULL);
    expect_error(NULL, 0, "--writers: invalid value '0'", "load", "-s", "s", "--region", "r1",
                 "--writers", "0", NULL);
    expect_error(NULL, 0, "--max-messages: invalid value '-1'", "load", "-s", "s", "--region", "r1",
                 "--max-messages=-1", NULL);
    expect_error(NULL, 0, "--follow: invalid value 'sometimes': must be true or false", "load",
                 "-s", "s", "--region", "r1", "--follow=sometimes", NULL);
    expect_error(NULL, 0, "--log-format: invalid value 'xml': must be one of: text, json", "status",
                 "-s", "s", "--log-format", "xml", NULL);
    expect_error(NULL, 0, "--stream: invalid value 'my stream': a stream name holds only", "load",
                 "--stream", "my stream", NULL);
    expect_error(NULL, 0, "--stream: invalid value: must not be empty", "load", "--stream=", NULL);
    expect_error(NULL, 0, "--table: invalid value", "load", "-s", "s", "--region", "r1", "--table",
                 "a_table_name_that_is_longer_than_sixty_three_bytes_which_postgres_truncates",
                 NULL);
    expect_error(NULL, 0, "too long for a table name", "load", "--region", "r1", "-s",
                 "a_stream_name_that_is_longer_than_sixty_three_bytes_which_postgres_truncates",
                 NULL);
    expect_error(NULL, 0, "no stream: give --stream NAME", "status", NULL);
    const char *badenv[] = {"SOURCES__KINESIS__CHUNK_SIZE=lots"};
    expect_error(badenv, 1, "SOURCES__KINESIS__CHUNK_SIZE: invalid value 'lots'", "load", "-s", "s",
                 "--region", "r1", NULL);

    /* An option of another command is not read at all, so a bad value there does not matter. */
    k2p_config cfg;
    RUN_OK(&cfg, badenv, 1, "reset", "-s", "s");
    k2p_config_deinit(&cfg);
}

static void test_dlt_file_errors(void **state)
{
    (void)state;
    char missing[400];
    clear_files();
    write_file(config_toml, "[sources.kinesis]\nstream_name = \"s\"\nchunk_size = 12x\n");
    expect_error(NULL, 0, "config.toml:3: invalid value", "load", "--region", "r1", NULL);
    write_file(config_toml, "[sources.kinesis]\nstream_name = \"s\"\nchunk_size = \"12\"\n"
                            "max_number_of_messages = 2.5\n");
    expect_error(NULL, 0,
                 "config.toml:4: sources.kinesis.max_number_of_messages: invalid value "
                 "'2.5': must be an integer",
                 "load", "--region", "r1", NULL);
    write_file(config_toml, "[sources.kinesis]\nstream_name = ['a']\n");
    expect_error(NULL, 0,
                 "config.toml:2: sources.kinesis.stream_name: invalid value: must be a "
                 "single value",
                 "load", "--region", "r1", NULL);
    clear_files();
    write_file(secrets_toml, "[sources.kinesis.credentials]\naws_secret_access_key = " SECRET "\n");
    expect_error(NULL, 0, "secrets.toml:2: invalid value", "load", "-s", "s", "--region", "r1",
                 NULL);
    clear_files();

    /* --dlt-dir given explicitly must exist; the default .dlt may be missing. */
    k2p_config cfg;
    k2p_err e;
    snprintf(missing, sizeof missing, "%s/nowhere", tmpdir);
    char *argv[] = {"kinesis2pg", "status", "-s", "s", "--dlt-dir", missing};
    const char *vars[] = {home_var};
    k2p_env en = k2p_env_from_list(vars, 1);
    assert_int_equal(k2p_config_parse_at(&cfg, 6, argv, &en, NOW_US, &e), K2P_ECONFIG);
    assert_non_null(strstr(e.msg, "--dlt-dir: '"));
    assert_non_null(strstr(e.msg, "nowhere' is not a directory"));
    k2p_config_deinit(&cfg);
    char *argv2[] = {"kinesis2pg", "status", "-s", "s"};
    assert_int_equal(k2p_config_parse_at(&cfg, 4, argv2, &en, NOW_US, &e), 0);
    assert_string_equal(cfg.dlt_dir, ".dlt");
    k2p_config_deinit(&cfg);
}

static void test_help_and_version(void **state)
{
    (void)state;
    k2p_config cfg;
    k2p_err e;
    const char *vars[] = {home_var};
    k2p_env en = k2p_env_from_list(vars, 1);

    char *a1[] = {"kinesis2pg", "--help"};
    assert_int_equal(k2p_config_parse_at(&cfg, 2, a1, &en, NOW_US, &e), 0);
    assert_true(cfg.help);
    assert_int_equal(cfg.command, K2P_CMD_NONE);
    k2p_config_deinit(&cfg);

    char *a2[] = {"kinesis2pg", "load", "--bogus", "--stream", "-h"};
    assert_int_equal(k2p_config_parse_at(&cfg, 5, a2, &en, NOW_US, &e), 0);
    assert_true(cfg.help);
    assert_int_equal(cfg.command, K2P_CMD_LOAD);
    k2p_config_deinit(&cfg);

    char *a3[] = {"kinesis2pg", "-V"};
    assert_int_equal(k2p_config_parse_at(&cfg, 2, a3, &en, NOW_US, &e), 0);
    assert_true(cfg.version);
    k2p_config_deinit(&cfg);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    k2p_config_print_help(f, "load");
    fclose(f);
    assert_non_null(strstr(text, "Usage: kinesis2pg load --stream NAME [options]"));
    assert_non_null(strstr(text, "-s, --stream NAME"));
    assert_non_null(strstr(text, "--chunk-size N"));
    assert_non_null(strstr(text, "default: 1000; dlt: sources.kinesis.chunk_size"));
    assert_non_null(strstr(text, "env: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL"));
    assert_null(strstr(text, "--yes"));
    assert_null(strstr(text, "--state"));
    free(text);

    f = open_memstream(&text, &len);
    k2p_config_print_help(f, NULL);
    fclose(f);
    assert_non_null(strstr(text, "kinesis2pg reset --stream NAME [--yes]"));
    assert_non_null(strstr(text, "--log-format FORMAT"));
    assert_null(strstr(text, "--chunk-size"));
    free(text);

    f = open_memstream(&text, &len);
    k2p_config_print_help(f, "reset");
    fclose(f);
    assert_non_null(strstr(text, "-y, --yes"));
    assert_null(strstr(text, "--region"));
    free(text);
}

/* docs/configuration.md is generated from the option table; it must not drift. */
static void test_markdown_up_to_date(void **state)
{
    (void)state;
    char *gen = NULL, path[1024];
    size_t gen_len = 0;
    FILE *f = open_memstream(&gen, &gen_len);
    k2p_config_print_markdown(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/docs/configuration.md", K2P_SOURCE_DIR);

    const char *update = getenv("K2P_UPDATE_DOCS");
    if (update && strcmp(update, "1") == 0) {
        FILE *out = fopen(path, "wb");
        assert_non_null(out);
        assert_int_equal(fwrite(gen, 1, gen_len, out), gen_len);
        assert_int_equal(fclose(out), 0);
        print_message("rewrote %s\n", path);
    }

    FILE *in = fopen(path, "rb");
    if (!in)
        fail_msg("%s is missing: run K2P_UPDATE_DOCS=1 tests/test_config in the build directory",
                 path);
    char *committed = malloc(gen_len + 2);
    size_t n = fread(committed, 1, gen_len + 1, in);
    fclose(in);
    if (n != gen_len || memcmp(committed, gen, gen_len) != 0) {
        size_t i = 0;
        while (i < n && i < gen_len && committed[i] == gen[i])
            i++;
        fail_msg("%s is stale (first difference at byte %zu): run K2P_UPDATE_DOCS=1 "
                 "tests/test_config in the build directory and commit the result",
                 path, i);
    }
    free(committed);
    free(gen);
}

/* ---------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    char dir[400];
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/k2p_config_XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dlt_dir, sizeof dlt_dir, "%s/.dlt", tmpdir);
    snprintf(home_dir, sizeof home_dir, "%s/home", tmpdir);
    snprintf(home_var, sizeof home_var, "HOME=%s", home_dir);
    mkdir(dlt_dir, 0700);
    mkdir(home_dir, 0700);
    snprintf(dir, sizeof dir, "%s/.aws", home_dir);
    mkdir(dir, 0700);
    snprintf(config_toml, sizeof config_toml, "%s/config.toml", dlt_dir);
    snprintf(secrets_toml, sizeof secrets_toml, "%s/secrets.toml", dlt_dir);
    snprintf(aws_config, sizeof aws_config, "%s/.aws/config", home_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char dir[400];
    clear_files();
    snprintf(dir, sizeof dir, "%s/.aws", home_dir);
    rmdir(dir);
    rmdir(home_dir);
    rmdir(dlt_dir);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_metrics_addr),
        cmocka_unit_test(test_precedence_stream),
        cmocka_unit_test(test_precedence_region_and_endpoint),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_pg),
        cmocka_unit_test(test_from_values),
        cmocka_unit_test(test_from_sources),
        cmocka_unit_test(test_raw_from_parse_json),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_dlt_file_errors),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_markdown_up_to_date),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_faults_secrets.c - no secret ever reaches the output (DESIGN §1 "never prints a secret",
 * §7 "Logs ... never a secret").
 *
 * Known secret strings are planted everywhere a user keeps them: the PostgreSQL password in
 * --pg (keyword and URI forms), in DATABASE_URL and in dlt's secrets.toml; the AWS secret key
 * and session token in the environment and in dlt's secrets.toml. Then every command (load,
 * status, tail, reset) is driven through its error paths - wrong PostgreSQL password (a role
 * with scram-sha-256 authentication), unreachable Kinesis endpoint, stream not found, an
 * unknown flag - at --log-level debug and info, text and json logs, plus one successful load
 * and tail. All stdout and stderr of every run is searched for each secret and for a distinctive
 * middle piece of it: none may appear. The test also checks that each error path really was
 * taken (exit code and a word of the message), so a run that fails early cannot pass vacuously.
 *
 * The unreachable endpoint costs the client's whole retry budget (10 attempts, full-jitter
 * backoff 100 ms..5 s: ~10 s each, 2 runs). Normal build: 20-30 s.
 * Threading: single-threaded; the programs and the mock are child processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_testlib.h"
#include "kinesis2pg/common.h"

#define STREAM "sec_stream"
#define PW_ROLE "k2p_pw_user"
#define PW_RIGHT "right-Pw-7Hc2"

/* The secrets, each with a middle piece that is searched for too (a truncated or partly masked
 * secret is still a leak). */
#define PG_PW "pgPw-Zq8J3nS1x9Wd"
#define AWS_SK "awsSecret-Hk4R9tW2mQ7zLp0B"
#define AWS_TOK "sessTok-Jm5V8cX1bN3rT6yU"
#define DLT_SK "dltSecret-Qa7W2eR5tY1uIo"
#define DLT_PG_PW "dltPgPw-Uu3I8oP1aS4dF"
static const char *const secrets[][2] = {
    {PG_PW, "Zq8J3nS1"},  {AWS_SK, "Hk4R9tW2"},    {AWS_TOK, "Jm5V8cX1"},
    {DLT_SK, "Qa7W2eR5"}, {DLT_PG_PW, "Uu3I8oP1"},
};

static k2p_lt g;
static k2p_test_mock mk;
/* The current test's produced set: freed before each test and at the end, so a failed test
 * (cmocka longjmps out of it) leaks nothing. */
static k2p_lt_set g_set;
static char dlt_dir[300], state_file[300];
static char pg_kw[400], pg_uri[400], pg_dlt_url[400];
static int runs, leaks;

static int setup(void **state)
{
    (void)state;
    return k2p_ft_group_start(&g, NULL);
}

static int teardown(void **state)
{
    (void)state;
    k2p_ft_group_stop(&g, &mk, &g_set);
    return 0;
}

/* ---- environment and files ------------------------------------------------------------------ */

/* t->env with AWS_SECRET_ACCESS_KEY replaced, plus `extra` (NULL-terminated). Heap array of
 * borrowed strings; `with_aws_env` 0 drops the AWS keys altogether. */
static char **make_env(int with_aws_env, char *const *extra)
{
    size_t n = 0, ne = 0, j = 0;
    char **env;
    while (g.env[n])
        n++;
    while (extra && extra[ne])
        ne++;
    env = calloc(n + ne + 3, sizeof *env);
    assert_non_null(env);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(g.env[i], "AWS_SECRET_ACCESS_KEY=", 22) == 0 ||
            (!with_aws_env && strncmp(g.env[i], "AWS_ACCESS_KEY_ID=", 18) == 0))
            continue;
        env[j++] = g.env[i];
    }
    if (with_aws_env) {
        env[j++] = (char *)"AWS_SECRET_ACCESS_KEY=" AWS_SK;
        env[j++] = (char *)"AWS_SESSION_TOKEN=" AWS_TOK;
    }
    for (size_t i = 0; i < ne; i++)
        env[j++] = extra[i];
    env[j] = NULL;
    return env;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
}

/* A role that must give a password (scram-sha-256), first in pg_hba.conf. */
static void password_role(void)
{
    char hba[400], *old;
    k2p_buf b;
    k2p_lt_sql(&g, "SET client_min_messages = warning; SET password_encryption = 'scram-sha-256';"
                   " DROP ROLE IF EXISTS " PW_ROLE "; CREATE ROLE " PW_ROLE
                   " LOGIN PASSWORD '" PW_RIGHT "'");
    snprintf(hba, sizeof hba, "%s/data/pg_hba.conf", g.pg.dir);
    old = k2p_ft_slurp(hba);
    k2p_buf_init(&b, 0);
    k2p_buf_printf(&b,
                   "host all " PW_ROLE " 127.0.0.1/32 scram-sha-256\n"
                   "local all " PW_ROLE " scram-sha-256\n%s",
                   old);
    write_file(hba, b.data);
    k2p_buf_deinit(&b);
    free(old);
    assert_int_equal(k2p_lt_i64(&g, "SELECT pg_reload_conf()::int"), 1);
}

/* ---- running and searching ------------------------------------------------------------------ */

/* Searches one run's output for every secret; counts leaks (reported at the end). */
static void scan(const k2p_lt_run *r, const char *what)
{
    for (size_t i = 0; i < K2P_ARRAY_LEN(secrets); i++) {
        for (int k = 0; k < 2; k++) {
            const char *s = secrets[i][k];
            const char *where = strstr(r->out, s) ? "stdout" : strstr(r->err, s) ? "stderr" : NULL;
            if (where) {
                fprintf(stderr,
                        "LEAK in %s of [%s]: %s%s\n---- stdout ----\n%s---- stderr ----\n%s"
                        "---- end ----\n",
                        where, what, k ? "a piece of " : "", secrets[i][0], r->out, r->err);
                leaks++;
                break;
            }
        }
    }
}

/* Runs `kinesis2pg ARGV` with env, scans the output, and checks the exit code and that `expect`
 * (when not NULL) is in stderr (the path we meant to take was taken). */
static void run(const char *what, char **env, const char *const *argv, int code, const char *expect)
{
    char **saved = g.env;
    k2p_lt_run r;
    g.env = env;
    k2p_lt_exec(&g, argv, 120, &r);
    g.env = saved;
    runs++;
    scan(&r, what);
    if (r.exit_code != code || (expect && !strstr(r.err, expect))) {
        fprintf(stderr, "---- [%s] stdout ----\n%s---- stderr ----\n%s---- end ----\n", what, r.out,
                r.err);
        k2p_lt_run_free(&r);
        fail_msg("[%s]: exit %d (expected %d)%s%s%s", what, r.exit_code, code,
                 expect ? ", stderr should mention \"" : "", expect ? expect : "",
                 expect ? "\"" : "");
    }
    fprintf(stderr, "  [%s] exit %d in %.1f s: no secret in %zu + %zu bytes of output\n", what,
            r.exit_code, r.secs, strlen(r.out), strlen(r.err));
    k2p_lt_run_free(&r);
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_no_secret_in_any_output(void **state)
{
    k2p_lt_set *set = &g_set;
    char db_url_env[460], toml[1200], dlt_path[320];
    char **env_aws, **env_url, **env_dlt;
    const char *ep;
    (void)state;
    K2P_LT_REQUIRE(&g);

    /* A stream with records in the mock, a password role, dlt's files. */
    k2p_ft_mock_start(&g, &mk, NULL);
    ep = mk.endpoint;
    k2p_lt_create_stream(&g, STREAM, 2);
    k2p_lt_produce(&g, STREAM, set, "--count 200 --size 80");
    password_role();
    snprintf(pg_kw, sizeof pg_kw,
             "host=127.0.0.1 port=%d dbname=%s user=" PW_ROLE " password=" PG_PW, g.pg.port,
             g.pg.dbname);
    snprintf(pg_uri, sizeof pg_uri, "postgresql://" PW_ROLE ":" PG_PW "@127.0.0.1:%d/%s", g.pg.port,
             g.pg.dbname);
    snprintf(pg_dlt_url, sizeof pg_dlt_url, "postgres://" PW_ROLE ":" PG_PW "@127.0.0.1:%d/%s",
             g.pg.port, g.pg.dbname);
    snprintf(db_url_env, sizeof db_url_env, "DATABASE_URL=%s", pg_dlt_url);
    snprintf(dlt_dir, sizeof dlt_dir, "%s/dlt", g.tmpdir);
    snprintf(state_file, sizeof state_file, "%s/tail.state", g.tmpdir);
    if (mkdir(dlt_dir, 0700) != 0)
        fail_msg("mkdir %s: %s", dlt_dir, strerror(errno));
    snprintf(toml, sizeof toml,
             "[sources.kinesis.credentials]\n"
             "aws_access_key_id = \"AKIDDLTKINESIS2PG\"\n"
             "aws_secret_access_key = \"" DLT_SK "\"\n"
             "aws_session_token = \"" AWS_TOK "\"\n"
             "region_name = \"us-east-1\"\n"
             "\n[destination.postgres.credentials]\n"
             "host = \"127.0.0.1\"\nport = %d\ndatabase = \"%s\"\nusername = \"" PW_ROLE "\"\n"
             "password = \"" DLT_PG_PW "\"\n",
             g.pg.port, g.pg.dbname);
    snprintf(dlt_path, sizeof dlt_path, "%s/secrets.toml", dlt_dir);
    write_file(dlt_path, toml);

    env_aws = make_env(1, NULL);
    {
        char *extra[] = {db_url_env, NULL};
        env_url = make_env(1, extra);
    }
    env_dlt = make_env(0, NULL);

    /* load: wrong PostgreSQL password, keyword and URI forms, text and json logs. */
    run("load --pg keywords, bad password", env_aws,
        ARGV("load", "--stream", STREAM, "--endpoint", ep, "--region", "us-east-1", "--pg", pg_kw,
             "--log-level", "debug"),
        1, "password authentication failed");
    run("load --pg URI, bad password, json logs", env_aws,
        ARGV("load", "--stream", STREAM, "--endpoint", ep, "--region", "us-east-1", "--pg", pg_uri,
             "--log-format", "json", "--log-level", "debug"),
        1, "password authentication failed");
    /* DATABASE_URL instead of --pg. */
    run("load DATABASE_URL, bad password", env_url,
        ARGV("load", "--stream", STREAM, "--endpoint", ep, "--region", "us-east-1", "--log-level",
             "debug"),
        1, "password authentication failed");
    /* dlt's secrets.toml holds both the AWS secret key and the PostgreSQL password. */
    run("load dlt secrets.toml, bad password", env_dlt,
        ARGV("load", "--stream", STREAM, "--endpoint", ep, "--dlt-dir", dlt_dir, "--log-level",
             "debug"),
        1, "password authentication failed");
    /* Kinesis errors, with the secrets in the environment. */
    run("load stream not found", env_aws,
        ARGV("load", "--stream", "no_such_stream", "--endpoint", ep, "--region", "us-east-1",
             "--pg", pg_kw, "--log-level", "debug"),
        1, "not found");
    run("load unreachable endpoint", env_aws,
        ARGV("load", "--stream", STREAM, "--endpoint", "http://127.0.0.1:1", "--region",
             "us-east-1", "--pg", pg_kw, "--log-level", "debug"),
        1, "127.0.0.1:1");
    run("load bad flag", env_aws,
        ARGV("load", "--stream", STREAM, "--pg", pg_kw, "--no-such-flag", PG_PW), 2,
        "no-such-flag");
    run("load bad value", env_url,
        ARGV("load", "--stream", STREAM, "--pg", pg_uri, "--writers", "lots"), 2, "writers");

    /* status and reset: wrong password in each form. */
    run("status --pg keywords", env_aws, ARGV("status", "--stream", STREAM, "--pg", pg_kw), 1,
        "password authentication failed");
    run("status DATABASE_URL json", env_url,
        ARGV("status", "--stream", STREAM, "--json", "--log-level", "debug"), 1,
        "password authentication failed");
    run("status dlt secrets.toml", env_dlt,
        ARGV("status", "--stream", STREAM, "--dlt-dir", dlt_dir), 1,
        "password authentication failed");
    run("reset --pg URI", env_aws, ARGV("reset", "--stream", STREAM, "--yes", "--pg", pg_uri), 1,
        "password authentication failed");
    run("reset dlt secrets.toml", env_dlt,
        ARGV("reset", "--stream", STREAM, "--yes", "--dlt-dir", dlt_dir, "--log-level", "debug"), 1,
        "password authentication failed");

    /* tail: Kinesis errors and a successful run with the secrets in env and dlt files. */
    run("tail stream not found", env_aws,
        ARGV("tail", "--stream", "no_such_stream", "--state", state_file, "--endpoint", ep,
             "--region", "us-east-1", "--log-level", "debug"),
        1, "not found");
    run("tail unreachable endpoint", env_dlt,
        ARGV("tail", "--stream", STREAM, "--state", state_file, "--endpoint", "http://127.0.0.1:1",
             "--dlt-dir", dlt_dir, "--log-level", "debug"),
        1, "127.0.0.1:1");
    run("tail ok", env_aws,
        ARGV("tail", "--stream", STREAM, "--state", state_file, "--endpoint", ep, "--region",
             "us-east-1", "--from", "trim_horizon", "--log-level", "debug"),
        0, NULL);

    /* A successful load with every secret in the environment (the right password this time
     * comes through --pg of a trusted user), then status and reset. */
    run("load ok", env_aws,
        ARGV("load", "--stream", STREAM, "--endpoint", ep, "--region", "us-east-1", "--pg",
             g.pg.conninfo, "--from", "trim_horizon", "--log-level", "debug"),
        0, NULL);
    k2p_lt_assert_table(&g, "kinesis", STREAM, STREAM, set, K2P_LT_JSON);
    run("status ok", env_aws,
        ARGV("status", "--stream", STREAM, "--pg", g.pg.conninfo, "--log-level", "debug"), 0, NULL);
    run("reset ok", env_url,
        ARGV("reset", "--stream", STREAM, "--yes", "--pg", g.pg.conninfo, "--log-level", "debug"),
        0, NULL);

    fprintf(stderr, "  %d runs, %d leak(s)\n", runs, leaks);
    free(env_aws);
    free(env_url);
    free(env_dlt);
    k2p_ft_mock_stop(&mk);
    k2p_lt_set_free(set);
    if (leaks)
        fail_msg("%d secret(s) appeared in the output (LEAK lines above)", leaks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_secret_in_any_output),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

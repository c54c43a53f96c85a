/* loader_testlib.c - shared helpers of the loader's integration tests (see loader_testlib.h).
 *
 * Programs (kinesis2pg) run through fork + execve with a filtered environment, stdin from
 * /dev/null, stdout/stderr to files in the scratch dir, every other descriptor closed (so a
 * loader never holds kinesalite's stdin pipe or the PostgreSQL guardian's pipe open), and
 * PR_SET_PDEATHSIG so none outlives a test that dies. kinesis2pg-produce runs through popen.
 *
 * Threading: the test's main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "loader_testlib.h"

#include "kinesis2pg/base64.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define LT_LOADER K2P_BINARY_DIR "/kinesis2pg"
#define LT_PRODUCE K2P_BINARY_DIR "/kinesis2pg-produce"
#define LT_AWS_KEY "AKIDTESTKINESIS2PG"
#define LT_AWS_SECRET "test-secret-not-real"

/* Output of the last loader run, for failure reports. */
static char *g_last_err;
static char g_last_what[256];

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int verbose(void)
{
    const char *v = getenv("K2P_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* Reads a whole file into a NUL-terminated heap string ("" when missing). */
static char *slurp(const char *path)
{
    k2p_buf b;
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    k2p_buf_init(&b, 0);
    k2p_buf_puts(&b, "");
    if (f) {
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            k2p_buf_append(&b, chunk, n);
        fclose(f);
    }
    return k2p_buf_steal(&b, NULL);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

/* Closes every descriptor >= lo in a freshly forked child. */
static void close_from(int lo)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lo, ~0U, 0) == 0)
        return;
#endif
    for (int fd = lo; fd < 4096; fd++)
        close(fd);
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Our environment minus what could redirect the programs, plus test credentials. */
static char **make_env(void)
{
    static const char *const drop[] = {"AWS_",          "PG",  "DATABASE_URL=", "SOURCES__",
                                       "DESTINATION__", "K2P_"};
    static char *const add[] = {"AWS_ACCESS_KEY_ID=" LT_AWS_KEY,
                                "AWS_SECRET_ACCESS_KEY=" LT_AWS_SECRET,
                                "AWS_EC2_METADATA_DISABLED=true"};
    size_t n = 0, j = 0;
    char **env;
    for (char **e = environ; *e; e++)
        n++;
    env = calloc(n + K2P_ARRAY_LEN(add) + 1, sizeof *env);
    if (!env)
        return NULL;
    for (char **e = environ; *e; e++) {
        int skip = 0;
        for (size_t d = 0; d < K2P_ARRAY_LEN(drop); d++)
            skip |= has_prefix(*e, drop[d]);
        if (!skip)
            env[j++] = *e; /* borrowed: the tests never modify their environment */
    }
    for (size_t a = 0; a < K2P_ARRAY_LEN(add); a++)
        env[j++] = add[a];
    env[j] = NULL;
    return env;
}

/* ---------------------------------------------------------------------------------------------
 * Peers
 */

static int start_peers(k2p_lt *t, int with_kinesalite)
{
    const char *parent = getenv("TMPDIR");
    int rc;

    memset(t, 0, sizeof *t);
    if (!parent || !*parent)
        parent = "/tmp";
    snprintf(t->tmpdir, sizeof t->tmpdir, "%s/k2p-lt-XXXXXX", parent);
    if (!mkdtemp(t->tmpdir)) {
        fprintf(stderr, "loader_testlib: mkdtemp in %s: %s\n", parent, strerror(errno));
        t->tmpdir[0] = '\0';
        return -1;
    }
    t->env = make_env();
    if (!t->env)
        goto fail;
    if (access(LT_PRODUCE, X_OK) != 0) {
        fprintf(stderr, "loader_testlib: %s is missing (build it first)\n", LT_PRODUCE);
        goto fail;
    }
    rc = k2p_test_pg_start(&t->pg);
    if (rc == K2P_ENOTFOUND) {
        fprintf(stderr, "loader_testlib: PostgreSQL is not installed: skipping\n");
        t->skip = 1;
        return 0;
    }
    if (rc != 0 || (with_kinesalite && k2p_test_kinesalite_start(&t->kl) != 0))
        goto fail;
    t->creds = k2p_test_cred_chain();
    if (!t->creds)
        goto fail;
    if (with_kinesalite)
        t->client = k2p_test_kinesis_client(t->kl.endpoint, t->creds);
    t->up = 1;
    return 0;

fail:
    k2p_lt_stop(t);
    return -1;
}

int k2p_lt_start(k2p_lt *t)
{
    return start_peers(t, 1);
}

int k2p_lt_start_pg_only(k2p_lt *t)
{
    return start_peers(t, 0);
}

void k2p_lt_use_endpoint(k2p_lt *t, const char *endpoint)
{
    assert_true(strlen(endpoint) < sizeof t->endpoint);
    snprintf(t->endpoint, sizeof t->endpoint, "%s", endpoint);
    if (t->client)
        k2p_kinesis_free(t->client);
    t->client = k2p_test_kinesis_client(t->endpoint, t->creds);
}

/* The Kinesis endpoint the programs use. */
static const char *kinesis_endpoint(const k2p_lt *t)
{
    return t->endpoint[0] ? t->endpoint : t->kl.endpoint;
}

void k2p_lt_stop(k2p_lt *t)
{
    if (t->client) {
        k2p_kinesis_free(t->client);
        t->client = NULL;
    }
    if (t->creds) {
        k2p_cred_chain_free(t->creds);
        t->creds = NULL;
    }
    k2p_test_kinesalite_stop(&t->kl);
    k2p_test_pg_stop(&t->pg);
    if (t->tmpdir[0]) {
        nftw(t->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        t->tmpdir[0] = '\0';
    }
    free(t->env);
    t->env = NULL;
    free(g_last_err);
    g_last_err = NULL;
    t->up = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Kinesis
 */

void k2p_lt_create_stream(k2p_lt *t, const char *stream, int shards)
{
    k2p_err err = {0};
    if (k2p_kinesis_create_stream(t->client, stream, shards, &err))
        fail_msg("create stream %s: %s", stream, err.msg);
    if (k2p_kinesis_wait_active(t->client, stream, 20000, &err))
        fail_msg("stream %s never became ACTIVE: %s", stream, err.msg);
}

static void set_push(k2p_lt_set *s, const char *shard, const char *seq, const char *pkey,
                     const char *b64)
{
    k2p_lt_rec *r;
    long dl;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        k2p_lt_rec *v = realloc(s->v, cap * sizeof *v);
        assert_non_null(v);
        s->v = v;
        s->cap = cap;
    }
    r = &s->v[s->n];
    memset(r, 0, sizeof *r);
    assert_true(strlen(shard) < sizeof r->shard && strlen(seq) < sizeof r->seq);
    snprintf(r->shard, sizeof r->shard, "%s", shard);
    snprintf(r->seq, sizeof r->seq, "%s", seq);
    r->pkey = k2p_strdup(pkey);
    r->data = malloc(k2p_base64_decoded_max(strlen(b64)) + 1);
    assert_true(r->pkey && r->data);
    dl = k2p_base64_decode(b64, strlen(b64), r->data);
    if (dl < 0)
        fail_msg("kinesis2pg-produce printed invalid base64 for %s/%s", shard, seq);
    r->len = (size_t)dl;
    s->n++;
}

void k2p_lt_set_free(k2p_lt_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].pkey);
        free(s->v[i].data);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

size_t k2p_lt_produce(k2p_lt *t, const char *stream, k2p_lt_set *set, const char *args)
{
    k2p_buf cmd;
    FILE *p;
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    int st;

    k2p_buf_init(&cmd, 0);
    assert_int_equal(k2p_buf_printf(&cmd,
                                    "AWS_ACCESS_KEY_ID=" LT_AWS_KEY
                                    " AWS_SECRET_ACCESS_KEY=" LT_AWS_SECRET " '%s' --endpoint %s"
                                    " --region us-east-1 --stream '%s' --print %s",
                                    LT_PRODUCE, kinesis_endpoint(t), stream, args ? args : ""),
                     0);
    fflush(NULL);
    p = popen(cmd.data, "r");
    if (!p)
        fail_msg("popen %s: %s", cmd.data, strerror(errno));
    while ((len = getline(&line, &cap, p)) > 0) {
        char *f[4], *s = line;
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        for (int i = 0; i < 4; i++) {
            f[i] = s;
            if (i < 3) {
                s = s ? strchr(s, '\t') : NULL;
                if (s)
                    *s++ = '\0';
            }
        }
        if (!f[3])
            fail_msg("unexpected line from kinesis2pg-produce: %s", line);
        if (set)
            set_push(set, f[0], f[1], f[2], f[3]);
        n++;
    }
    free(line);
    st = pclose(p);
    if (st != 0)
        fail_msg("kinesis2pg-produce failed (status %d): %s", st, cmd.data);
    k2p_buf_deinit(&cmd);
    return n;
}

void k2p_lt_sleep_until_wall(int64_t wall_us)
{
    for (;;) {
        int64_t left = wall_us - k2p_wall_us();
        if (left <= 0)
            return;
        sleep_ms((int)K2P_MIN(left / 1000 + 1, 50));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Running the loader
 */

void k2p_lt_run_free(k2p_lt_run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

void k2p_lt_print_last_run(void)
{
    if (g_last_err)
        fprintf(stderr, "---- stderr of the last loader run (%s) ----\n%s---- end ----\n",
                g_last_what, g_last_err);
}

/* Builds a NULL-terminated argv: prefix (n_prefix entries) then args. */
static const char **join_argv(const char *const *prefix, size_t n_prefix, const char *const *args)
{
    size_t n = 0;
    const char **v;
    while (args && args[n])
        n++;
    v = calloc(n_prefix + n + 1, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n_prefix; i++)
        v[i] = prefix[i];
    for (size_t i = 0; i < n; i++)
        v[n_prefix + i] = args[i];
    return v;
}

/* Forks and execs `argv` (argv[0] is the program path) with out/err on the given fds. */
static pid_t spawn(k2p_lt *t, const char *const *argv, int out_fd, int err_fd)
{
    pid_t parent = getpid(), pid;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        signal(SIGPIPE, SIG_DFL);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        close_from(3);
        execve(argv[0], (char *const *)argv, t->env);
        _exit(127);
    }
    return pid;
}

int k2p_lt_wait_pid(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = k2p_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid %d: %s", (int)pid, strerror(errno));
        if (k2p_now_ns() >= deadline)
            return 0;
        sleep_ms(5);
    }
}

/* Formats argv as one line for messages. */
static void describe_argv(k2p_buf *b, const char *const *argv)
{
    for (size_t i = 0; argv[i]; i++) {
        const char *a = argv[i];
        if (i == 0 && strrchr(a, '/'))
            a = strrchr(a, '/') + 1;
        k2p_buf_printf(b, i ? " '%s'" : "%s", a);
    }
}

void k2p_lt_exec(k2p_lt *t, const char *const *argv, int timeout_s, k2p_lt_run *out)
{
    static const char *const prog[] = {LT_LOADER};
    const char **full = join_argv(prog, 1, argv);
    char out_path[320], err_path[320];
    int out_fd, err_fd, status = 0;
    int64_t t0 = k2p_now_ns();
    pid_t pid;
    k2p_buf what;

    memset(out, 0, sizeof *out);
    if (access(LT_LOADER, X_OK) != 0)
        fail_msg("%s is missing: the loader is not built", LT_LOADER);
    snprintf(out_path, sizeof out_path, "%s/run.out", t->tmpdir);
    snprintf(err_path, sizeof err_path, "%s/run.err", t->tmpdir);
    out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(out_fd >= 0 && err_fd >= 0);
    k2p_buf_init(&what, 0);
    describe_argv(&what, full);
    snprintf(g_last_what, sizeof g_last_what, "%s", what.data);
    if (verbose())
        fprintf(stderr, "[loader] %s\n", what.data);

    pid = spawn(t, full, out_fd, err_fd);
    close(out_fd);
    close(err_fd);
    if (!k2p_lt_wait_pid(pid, timeout_s * 1000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        free(g_last_err);
        g_last_err = slurp(err_path);
        k2p_lt_print_last_run();
        fail_msg("kinesis2pg did not finish within %d s: %s", timeout_s, what.data);
    }
    out->secs = (double)(k2p_now_ns() - t0) / 1e9;
    out->out = slurp(out_path);
    out->err = slurp(err_path);
    if (WIFEXITED(status)) {
        out->exit_code = WEXITSTATUS(status);
    } else {
        out->exit_code = -1;
        out->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    free(g_last_err);
    g_last_err = k2p_strdup(out->err);
    if (verbose())
        fprintf(stderr, "[loader] exit %d after %.2f s\n%s", out->exit_code, out->secs, out->err);
    k2p_buf_deinit(&what);
    free(full);
}

static const char **loader_argv(k2p_lt *t, const char *const *args)
{
    const char *const prefix[] = {"load",      "--endpoint", kinesis_endpoint(t), "--region",
                                  "us-east-1", "--pg",       t->pg.conninfo};
    return join_argv(prefix, K2P_ARRAY_LEN(prefix), args);
}

void k2p_lt_run_loader(k2p_lt *t, const char *const *args, int timeout_s, k2p_lt_run *out)
{
    const char **argv = loader_argv(t, args);
    k2p_lt_exec(t, argv, timeout_s, out);
    free(argv);
}

void k2p_lt_expect_exit(const k2p_lt_run *r, int code, const char *what)
{
    if (r->exit_code == code)
        return;
    k2p_lt_print_last_run();
    if (r->signal)
        fail_msg("%s: kinesis2pg died of signal %d (expected exit %d)", what, r->signal, code);
    fail_msg("%s: kinesis2pg exited %d, expected %d (its stderr is above)", what, r->exit_code,
             code);
}

int64_t k2p_lt_load_ok(k2p_lt *t, const char *schema, const char *table, const char *const *args)
{
    k2p_lt_run r;
    int64_t before = k2p_lt_count(t, schema, table), after;
    k2p_lt_run_loader(t, args, 180, &r);
    k2p_lt_expect_exit(&r, 0, "load");
    k2p_lt_run_free(&r);
    after = k2p_lt_count(t, schema, table);
    return after - before;
}

void k2p_lt_expect_rows(int64_t got, int64_t want, const char *file, int line)
{
    if (got == want)
        return;
    k2p_lt_print_last_run();
    fail_msg("%s:%d: the run added %lld rows, expected %lld (loader output above)", file, line,
             (long long)got, (long long)want);
}

void k2p_lt_filter_from_env(void)
{
    const char *f = getenv("K2P_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}

pid_t k2p_lt_spawn_loader(k2p_lt *t, const char *const *args, const char *log_path)
{
    const char **argv = loader_argv(t, args);
    const char **full;
    static const char *const prog[] = {LT_LOADER};
    int fd;
    pid_t pid;

    if (access(LT_LOADER, X_OK) != 0)
        fail_msg("%s is missing: the loader is not built", LT_LOADER);
    full = join_argv(prog, 1, argv);
    fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_msg("open %s: %s", log_path, strerror(errno));
    pid = spawn(t, full, fd, fd);
    close(fd);
    free(full);
    free(argv);
    return pid;
}

/* ---------------------------------------------------------------------------------------------
 * PostgreSQL
 */

char *k2p_lt_qualify(const char *schema, const char *table)
{
    k2p_buf b;
    const char *parts[2] = {schema, table};
    k2p_buf_init(&b, 0);
    for (int i = 0; i < 2; i++) {
        if (i)
            k2p_buf_putc(&b, '.');
        k2p_buf_putc(&b, '"');
        for (const char *c = parts[i]; *c; c++) {
            if (*c == '"')
                k2p_buf_putc(&b, '"');
            k2p_buf_putc(&b, *c);
        }
        k2p_buf_putc(&b, '"');
    }
    return k2p_buf_steal(&b, NULL);
}

char *k2p_lt_literal(const char *text)
{
    k2p_buf b;
    k2p_buf_init(&b, 0);
    k2p_buf_putc(&b, '\'');
    for (const char *c = text; *c; c++) {
        if (*c == '\'')
            k2p_buf_putc(&b, '\'');
        k2p_buf_putc(&b, *c);
    }
    k2p_buf_putc(&b, '\'');
    return k2p_buf_steal(&b, NULL);
}

static PGconn *conn(k2p_lt *t)
{
    PGconn *c = k2p_test_pg_conn(&t->pg);
    if (!c)
        fail_msg("cannot connect to the test PostgreSQL (%s)", t->pg.conninfo);
    return c;
}

/* Runs a formatted query; returns the result (caller PQclears) or fails the test. */
static PGresult *query_v(k2p_lt *t, const char *fmt, va_list ap)
{
    k2p_buf sql;
    PGconn *c = conn(t);
    PGresult *r;
    ExecStatusType st;
    k2p_buf_init(&sql, 0);
    {
        va_list cp;
        char probe[1];
        int n;
        va_copy(cp, ap);
        n = vsnprintf(probe, sizeof probe, fmt, cp);
        va_end(cp);
        assert_true(n >= 0);
        assert_int_equal(k2p_buf_reserve(&sql, (size_t)n + 1), 0);
        vsnprintf(sql.data, (size_t)n + 1, fmt, ap);
        sql.len = (size_t)n;
    }
    r = PQexec(c, sql.data);
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        fprintf(stderr, "SQL failed: %s  in: %.1000s\n", PQerrorMessage(c), sql.data);
        PQclear(r);
        k2p_buf_deinit(&sql);
        fail_msg("SQL failed (see above)");
    }
    k2p_buf_deinit(&sql);
    return r;
}

void k2p_lt_sql(k2p_lt *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PQclear(query_v(t, fmt, ap));
    va_end(ap);
}

char *k2p_lt_str(k2p_lt *t, const char *fmt, ...)
{
    va_list ap;
    PGresult *r;
    char *out = NULL;
    va_start(ap, fmt);
    r = query_v(t, fmt, ap);
    va_end(ap);
    if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        out = k2p_strndup(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return out;
}

int64_t k2p_lt_i64(k2p_lt *t, const char *fmt, ...)
{
    va_list ap;
    PGresult *r;
    int64_t v = 0;
    va_start(ap, fmt);
    r = query_v(t, fmt, ap);
    va_end(ap);
    if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0) || k2p_parse_i64(PQgetvalue(r, 0, 0), &v)) {
        fprintf(stderr, "expected an integer, got %s\n",
                PQntuples(r) < 1       ? "no row"
                : PQgetisnull(r, 0, 0) ? "NULL"
                                       : PQgetvalue(r, 0, 0));
        PQclear(r);
        fail_msg("query did not return an integer (see above)");
    }
    PQclear(r);
    return v;
}

/* Every row's first column, one per line (heap string, "" when no rows). */
static char *rows_text(k2p_lt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *rows_text(k2p_lt *t, const char *fmt, ...)
{
    va_list ap;
    PGresult *r;
    k2p_buf b;
    va_start(ap, fmt);
    r = query_v(t, fmt, ap);
    va_end(ap);
    k2p_buf_init(&b, 0);
    k2p_buf_puts(&b, "");
    for (int i = 0; i < PQntuples(r); i++)
        k2p_buf_printf(&b, "    %s\n", PQgetisnull(r, i, 0) ? "NULL" : PQgetvalue(r, i, 0));
    PQclear(r);
    return k2p_buf_steal(&b, NULL);
}

static int table_exists(k2p_lt *t, const char *qualified)
{
    char *lit = k2p_lt_literal(qualified);
    int64_t v = k2p_lt_i64(t, "SELECT (to_regclass(%s) IS NOT NULL)::int", lit);
    free(lit);
    return v != 0;
}

int64_t k2p_lt_count(k2p_lt *t, const char *schema, const char *table)
{
    char *q = k2p_lt_qualify(schema, table);
    int64_t n = 0;
    if (table_exists(t, q))
        n = k2p_lt_i64(t, "SELECT count(*) FROM %s", q);
    free(q);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Exact comparisons
 */

/* Appends s[0..n) escaped for a COPY text-format field. */
static void copy_text(k2p_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\\':
            k2p_buf_puts(b, "\\\\");
            break;
        case '\t':
            k2p_buf_puts(b, "\\t");
            break;
        case '\n':
            k2p_buf_puts(b, "\\n");
            break;
        case '\r':
            k2p_buf_puts(b, "\\r");
            break;
        default:
            k2p_buf_putc(b, s[i]);
        }
    }
}

static void copy_flush(PGconn *c, k2p_buf *b)
{
    if (b->len && PQputCopyData(c, b->data, (int)b->len) != 1)
        fail_msg("PQputCopyData: %s", PQerrorMessage(c));
    k2p_buf_reset(b);
}

/* FNV-1a over n bytes, continuing from h. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* "k2p <records> <hash of every field of every record>": names the content of a set. */
static void set_tag(const k2p_lt_set *set, char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < set->n; i++) {
        const k2p_lt_rec *e = &set->v[i];
        h = fnv1a(h, e->shard, strlen(e->shard) + 1);
        h = fnv1a(h, e->seq, strlen(e->seq) + 1);
        h = fnv1a(h, e->pkey, strlen(e->pkey) + 1);
        h = fnv1a(h, &e->len, sizeof e->len);
        h = fnv1a(h, e->data, e->len);
    }
    snprintf(out, cap, "k2p %zu %016llx", set->n, (unsigned long long)h);
}

void k2p_lt_load_expected(k2p_lt *t, const k2p_lt_set *set)
{
    static const char hex[] = "0123456789abcdef";
    PGconn *c;
    PGresult *r;
    k2p_buf b;
    int failed = 0;
    char tag[64], *have;

    /* The comparisons EXCEPT ALL up to a million rows: in memory (hashed) they take seconds,
     * spilled to disk (the default 4MB) several times longer. */
    k2p_lt_sql(t, "SET work_mem = '256MB'");
    /* Already loaded on this session (asserts run one after the other on the same set): the
     * table's comment names its content. Loading a million records takes ~10 s. */
    set_tag(set, tag, sizeof tag);
    have = k2p_lt_str(t, "SELECT obj_description(to_regclass('pg_temp.k2p_expected'), 'pg_class')");
    if (have && strcmp(have, tag) == 0) {
        free(have);
        return;
    }
    free(have);
    k2p_lt_sql(t, "SET client_min_messages = warning; DROP TABLE IF EXISTS pg_temp.k2p_expected;"
                  "CREATE TEMP TABLE k2p_expected(shard text, seq numeric, pkey text, data bytea,"
                  " j jsonb);"
                  "CREATE OR REPLACE FUNCTION pg_temp.k2p_try_jsonb(b bytea) RETURNS jsonb"
                  " LANGUAGE plpgsql AS $f$ BEGIN RETURN convert_from(b, 'UTF8')::jsonb;"
                  " EXCEPTION WHEN others THEN RETURN NULL; END $f$");
    c = conn(t);
    r = PQexec(c, "COPY k2p_expected(shard, seq, pkey, data) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        fail_msg("COPY k2p_expected: %s", PQerrorMessage(c));
    PQclear(r);
    k2p_buf_init(&b, 0);
    for (size_t i = 0; i < set->n; i++) {
        const k2p_lt_rec *e = &set->v[i];
        copy_text(&b, e->shard, strlen(e->shard));
        k2p_buf_putc(&b, '\t');
        copy_text(&b, e->seq, strlen(e->seq));
        k2p_buf_putc(&b, '\t');
        copy_text(&b, e->pkey, strlen(e->pkey));
        k2p_buf_puts(&b, "\t\\\\x");
        assert_int_equal(k2p_buf_reserve(&b, e->len * 2 + 2), 0);
        for (size_t j = 0; j < e->len; j++) {
            b.data[b.len++] = hex[e->data[j] >> 4];
            b.data[b.len++] = hex[e->data[j] & 15];
        }
        k2p_buf_putc(&b, '\n');
        if (b.len > (1u << 20))
            copy_flush(c, &b);
    }
    copy_flush(c, &b);
    k2p_buf_deinit(&b);
    if (PQputCopyEnd(c, NULL) != 1)
        fail_msg("PQputCopyEnd: %s", PQerrorMessage(c));
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "COPY k2p_expected: %s", PQerrorMessage(c));
            failed = 1;
        }
        PQclear(r);
    }
    if (failed)
        fail_msg("loading the produced set into PostgreSQL failed");
    k2p_lt_sql(t,
               "UPDATE k2p_expected SET j = pg_temp.k2p_try_jsonb(data); ANALYZE k2p_expected;"
               " COMMENT ON TABLE pg_temp.k2p_expected IS '%s'",
               tag);
}

/* Report builder: collects problems, prints them and fails the test at the end. */
typedef struct report {
    k2p_buf text;
    int problems;
} report;

static void report_add(report *rp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_add(report *rp, const char *fmt, ...)
{
    va_list ap;
    char line[1024];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    k2p_buf_puts(&rp->text, line);
    rp->problems++;
}

static void report_rows(report *rp, const char *title, char *rows)
{
    if (rows && *rows) {
        k2p_buf_printf(&rp->text, "  %s:\n", title);
        k2p_buf_puts(&rp->text, rows);
    }
    free(rows);
}

static void report_finish(report *rp, const char *what)
{
    if (rp->problems) {
        fprintf(stderr, "==== %s: %d problem(s) ====\n%s", what, rp->problems, rp->text.data);
        k2p_lt_print_last_run();
        k2p_buf_deinit(&rp->text);
        fail_msg("%s: the database does not hold what was put (details above)", what);
    }
    k2p_buf_deinit(&rp->text);
}

void k2p_lt_assert_table(k2p_lt *t, const char *schema, const char *table, const char *stream,
                         const k2p_lt_set *set, int mode)
{
    char *q = k2p_lt_qualify(schema, table);
    char *qlit = k2p_lt_literal(q);
    char *slit = k2p_lt_literal(stream);
    const char *want_type = mode == K2P_LT_RAW ? "bytea" : "jsonb";
    const char *exp_sel = mode == K2P_LT_RAW
                              ? "SELECT shard, seq, pkey, data FROM k2p_expected"
                              : "SELECT shard, seq, pkey, j FROM k2p_expected WHERE j IS NOT NULL";
    char act_sel[600];
    int64_t n_exp, n_act, missing, extra, dups, bad_id, bad_stream, null_ts;
    char *type;
    report rp = {{0}, 0};

    k2p_buf_init(&rp.text, 0);
    k2p_buf_puts(&rp.text, "");
    if (!table_exists(t, q)) {
        k2p_lt_print_last_run();
        fail_msg("table %s does not exist", q);
    }
    snprintf(act_sel, sizeof act_sel,
             "SELECT _kinesis__shard_id, _kinesis__seq_no, _kinesis__partition, data FROM %s", q);
    k2p_lt_load_expected(t, set);

    type = k2p_lt_str(t,
                      "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                      " WHERE attrelid = %s::regclass AND attname = 'data' AND NOT attisdropped",
                      qlit);
    if (!type || strcmp(type, want_type) != 0)
        report_add(&rp, "  column data is %s, expected %s\n", type ? type : "(missing)", want_type);
    free(type);

    n_exp = k2p_lt_i64(t, "SELECT count(*) FROM (%s) e", exp_sel);
    n_act = k2p_lt_i64(t, "SELECT count(*) FROM %s", q);
    if (n_exp != n_act)
        report_add(&rp, "  %s has %lld rows, expected %lld (of %zu records put)\n", q,
                   (long long)n_act, (long long)n_exp, set->n);
    missing = k2p_lt_i64(t, "SELECT count(*) FROM (%s EXCEPT ALL %s) d", exp_sel, act_sel);
    if (missing) {
        report_add(&rp, "  %lld record(s) put are missing or differ in %s\n", (long long)missing,
                   q);
        report_rows(&rp, "first missing (shard, seq, pkey, data as put)",
                    rows_text(t,
                              "SELECT left(d::text, 240) FROM (%s EXCEPT ALL %s) d"
                              " ORDER BY d.seq LIMIT 5",
                              exp_sel, act_sel));
    }
    extra = k2p_lt_i64(t, "SELECT count(*) FROM (%s EXCEPT ALL %s) d", act_sel, exp_sel);
    if (extra) {
        report_add(&rp,
                   "  %lld row(s) of %s were not put like that (extra, duplicate or changed)\n",
                   (long long)extra, q);
        report_rows(&rp, "first extra (shard, seq, pkey, data as stored)",
                    rows_text(t,
                              "SELECT left(d::text, 240) FROM (%s EXCEPT ALL %s) d"
                              " ORDER BY 1 LIMIT 5",
                              act_sel, exp_sel));
    }
    dups = k2p_lt_i64(t,
                      "SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY _kinesis__shard_id,"
                      " _kinesis__seq_no HAVING count(*) > 1) d",
                      q);
    if (dups) {
        report_add(&rp, "  %lld (shard, seq) pair(s) are stored more than once\n", (long long)dups);
        report_rows(&rp, "first duplicates (shard, seq, copies)",
                    rows_text(t,
                              "SELECT _kinesis__shard_id || ' ' || _kinesis__seq_no || ' x' ||"
                              " count(*) FROM %s GROUP BY _kinesis__shard_id, _kinesis__seq_no"
                              " HAVING count(*) > 1 ORDER BY 1 LIMIT 5",
                              q));
    }
    bad_id = k2p_lt_i64(t,
                        "SELECT (count(*) - count(_kinesis_msg_id)) +"
                        " (count(_kinesis_msg_id) - count(DISTINCT _kinesis_msg_id)) FROM %s",
                        q);
    if (bad_id)
        report_add(&rp, "  _kinesis_msg_id: %lld NULL or repeated value(s)\n", (long long)bad_id);
    bad_stream = k2p_lt_i64(
        t, "SELECT count(*) FROM %s WHERE _kinesis__stream_name IS DISTINCT FROM %s", q, slit);
    if (bad_stream)
        report_add(&rp, "  %lld row(s) have _kinesis__stream_name other than %s\n",
                   (long long)bad_stream, slit);
    null_ts = k2p_lt_i64(t, "SELECT count(*) FROM %s WHERE _kinesis__ts IS NULL", q);
    if (null_ts)
        report_add(&rp, "  %lld row(s) have a NULL _kinesis__ts\n", (long long)null_ts);

    free(q);
    free(qlit);
    free(slit);
    report_finish(&rp, "assert_table");
}

void k2p_lt_assert_dead_letters(k2p_lt *t, const char *stream, const k2p_lt_set *set)
{
    char *slit = k2p_lt_literal(stream);
    char act_sel[400];
    const char *exp_sel = "SELECT shard, seq, data FROM k2p_expected WHERE j IS NULL";
    int64_t n_exp, n_act, missing, extra, no_reason;
    report rp = {{0}, 0};

    k2p_buf_init(&rp.text, 0);
    k2p_buf_puts(&rp.text, "");
    if (!table_exists(t, "kinesis2pg.dead_letters")) {
        k2p_lt_print_last_run();
        fail_msg("table kinesis2pg.dead_letters does not exist");
    }
    snprintf(act_sel, sizeof act_sel,
             "SELECT shard_id, seq_no, data FROM kinesis2pg.dead_letters WHERE stream = %s", slit);
    k2p_lt_load_expected(t, set);
    n_exp = k2p_lt_i64(t, "SELECT count(*) FROM (%s) e", exp_sel);
    n_act = k2p_lt_i64(t, "SELECT count(*) FROM (%s) a", act_sel);
    if (n_exp != n_act)
        report_add(&rp, "  kinesis2pg.dead_letters has %lld rows for %s, expected %lld\n",
                   (long long)n_act, slit, (long long)n_exp);
    missing = k2p_lt_i64(t, "SELECT count(*) FROM (%s EXCEPT ALL %s) d", exp_sel, act_sel);
    if (missing) {
        report_add(&rp, "  %lld invalid record(s) are not in dead_letters (or differ)\n",
                   (long long)missing);
        report_rows(&rp, "first missing (shard, seq, data as put)",
                    rows_text(t,
                              "SELECT left(d::text, 240) FROM (%s EXCEPT ALL %s) d"
                              " ORDER BY d.seq LIMIT 5",
                              exp_sel, act_sel));
    }
    extra = k2p_lt_i64(t, "SELECT count(*) FROM (%s EXCEPT ALL %s) d", act_sel, exp_sel);
    if (extra) {
        report_add(&rp, "  %lld dead letter(s) were not expected (valid, duplicate or changed)\n",
                   (long long)extra);
        report_rows(&rp, "first extra (shard, seq, data as stored)",
                    rows_text(t,
                              "SELECT left(d::text, 240) FROM (%s EXCEPT ALL %s) d"
                              " ORDER BY 1 LIMIT 5",
                              act_sel, exp_sel));
    }
    no_reason = k2p_lt_i64(t,
                           "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = %s"
                           " AND coalesce(btrim(reason), '') = ''",
                           slit);
    if (no_reason)
        report_add(&rp, "  %lld dead letter(s) have no reason\n", (long long)no_reason);
    free(slit);
    report_finish(&rp, "assert_dead_letters");
}

void k2p_lt_assert_checkpoints(k2p_lt *t, const char *stream, const k2p_lt_set *set)
{
    char *slit = k2p_lt_literal(stream);
    char exp_sel[160], act_sel[400];
    int64_t wrong;
    report rp = {{0}, 0};

    k2p_buf_init(&rp.text, 0);
    k2p_buf_puts(&rp.text, "");
    snprintf(exp_sel, sizeof exp_sel, "SELECT shard, max(seq) FROM k2p_expected GROUP BY shard");
    snprintf(act_sel, sizeof act_sel,
             "SELECT shard_id, sequence_number FROM kinesis2pg.checkpoints WHERE stream = %s",
             slit);
    k2p_lt_load_expected(t, set);
    wrong = k2p_lt_i64(t, "SELECT count(*) FROM (%s EXCEPT %s) d", exp_sel, act_sel);
    if (wrong) {
        report_add(&rp, "  %lld shard(s) are not checkpointed at their last record\n",
                   (long long)wrong);
        report_rows(&rp, "shard: last record put / checkpoint",
                    rows_text(t,
                              "SELECT e.shard || ': ' || e.m || ' / ' ||"
                              " coalesce(c.sequence_number::text, 'none')"
                              " FROM (SELECT shard, max(seq) m FROM k2p_expected GROUP BY shard) e"
                              " LEFT JOIN kinesis2pg.checkpoints c ON c.stream = %s AND"
                              " c.shard_id = e.shard WHERE c.sequence_number IS DISTINCT FROM e.m"
                              " ORDER BY 1",
                              slit));
    }
    free(slit);
    report_finish(&rp, "assert_checkpoints");
}

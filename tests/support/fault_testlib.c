/* fault_testlib.c - helpers of the fault tests (see fault_testlib.h).
 *
 * Threading: the test's main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fault_testlib.h"

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t k2p_ft_ms(void)
{
    return k2p_now_ns() / 1000000;
}

int k2p_ft_long(void)
{
    const char *v = getenv("K2P_TEST_LONG");
    return v && strcmp(v, "1") == 0;
}

int k2p_ft_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}

void k2p_ft_seed(const char *name)
{
    const char *s = getenv("K2P_TEST_SEED");
    int64_t seed = 0;
    if (!s || k2p_parse_i64(s, &seed) || seed == 0)
        seed = k2p_wall_us() & 0x7fffffff;
    fprintf(stderr, "%s: K2P_TEST_SEED=%lld\n", name, (long long)seed);
    g_rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
}

int k2p_ft_group_start(k2p_lt *t, const char *seed_name)
{
    if (seed_name)
        k2p_ft_seed(seed_name);
    return k2p_lt_start_pg_only(t) == 0 ? 0 : -1;
}

void k2p_ft_test_reset(k2p_test_mock *m, k2p_lt_set *set)
{
    if (m->pid > 0)
        k2p_test_mock_stop(m);
    memset(m, 0, sizeof *m);
    k2p_lt_set_free(set);
}

void k2p_ft_group_stop(k2p_lt *t, k2p_test_mock *m, k2p_lt_set *set)
{
    k2p_ft_test_reset(m, set);
    k2p_lt_stop(t);
}

int64_t k2p_ft_rand(int64_t lo, int64_t hi)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (int64_t)(g_rng % (uint64_t)(hi - lo + 1));
}

/* ---------------------------------------------------------------------------------------------
 * mock_kinesis
 */

void k2p_ft_mock_start(k2p_lt *t, k2p_test_mock *m, const char *const *args)
{
    if (k2p_test_mock_start(m, args) != 0)
        fail_msg("mock_kinesis did not start (see above)");
    k2p_lt_use_endpoint(t, m->endpoint);
}

void k2p_ft_mock_preload(k2p_lt *t, k2p_test_mock *m, const char *stream, int shards, long records,
                         int size, const char *const *extra, k2p_lt_set *set)
{
    char n_shards[16], n_records[24], n_size[16], dump[320];
    const char *argv[64];
    size_t n = 0;

    snprintf(n_shards, sizeof n_shards, "%d", shards);
    snprintf(n_records, sizeof n_records, "%ld", records);
    snprintf(n_size, sizeof n_size, "%d", size);
    snprintf(dump, sizeof dump, "%s/%s.dump", t->tmpdir, stream);
    {
        const char *base[] = {"--preload-stream",  stream,    "--preload-shards", n_shards,
                              "--preload-records", n_records, "--preload-size",   n_size,
                              "--dump-jsonl",      dump};
        for (size_t i = 0; i < K2P_ARRAY_LEN(base); i++)
            argv[n++] = base[i];
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(n + 1 < K2P_ARRAY_LEN(argv));
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    k2p_ft_mock_start(t, m, argv);
    k2p_ft_read_dump(dump, set);
    if ((long)set->n < records)
        fail_msg("the dump %s has %zu records, expected %ld", dump, set->n, records);
    remove(dump);
}

void k2p_ft_mock_stop(k2p_test_mock *m)
{
    int rc;
    if (m->pid <= 0)
        return;
    rc = k2p_test_mock_stop(m);
    m->pid = 0;
    if (rc != 0)
        fail_msg("mock_kinesis did not exit cleanly (status %d)", rc);
}

void k2p_ft_mock_control(const k2p_test_mock *m, const char *json)
{
    if (k2p_test_mock_control(m, json) != 0)
        fail_msg("mock_kinesis refused /control %s", json);
}

int64_t k2p_ft_mock_stat(const k2p_test_mock *m, const char *path)
{
    int64_t v = k2p_test_mock_stat(m, path);
    if (v < 0)
        fail_msg("mock_kinesis /stats has no %s", path);
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends one record to the set (copies everything). */
static void set_add(k2p_lt_set *s, const char *shard, const char *seq, const char *pkey,
                    const char *data)
{
    k2p_lt_rec *r;
    size_t dl = strlen(data);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        k2p_lt_rec *v = realloc(s->v, cap * sizeof *v);
        assert_non_null(v);
        s->v = v;
        s->cap = cap;
    }
    r = &s->v[s->n];
    memset(r, 0, sizeof *r);
    if (strlen(shard) >= sizeof r->shard || strlen(seq) >= sizeof r->seq)
        fail_msg("dump line with an overlong shard or sequence: %s %s", shard, seq);
    snprintf(r->shard, sizeof r->shard, "%s", shard);
    snprintf(r->seq, sizeof r->seq, "%s", seq);
    r->pkey = k2p_strdup(pkey);
    assert_non_null(r->pkey);
    if (dl >= 3 && data[0] == '\\' && data[1] == '\\' && data[2] == 'x') {
        size_t hl = dl - 3;
        r->data = malloc(hl / 2 + 1);
        assert_non_null(r->data);
        for (size_t i = 0; i + 1 < hl; i += 2) {
            int hi = hexval(data[3 + i]), lo = hexval(data[4 + i]);
            if (hi < 0 || lo < 0)
                fail_msg("bad hex in dump for %s/%s", shard, seq);
            r->data[i / 2] = (uint8_t)(hi << 4 | lo);
        }
        r->len = hl / 2;
    } else {
        r->data = malloc(dl + 1);
        assert_non_null(r->data);
        memcpy(r->data, data, dl + 1);
        r->len = dl;
    }
    s->n++;
}

void k2p_ft_read_dump(const char *path, k2p_lt_set *set)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if (!f)
        fail_msg("cannot open the mock's dump %s: %s", path, strerror(errno));
    while ((len = getline(&line, &cap, f)) > 0) {
        char *fld[4], *s = line;
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        for (int i = 0; i < 4; i++) {
            if (!s)
                fail_msg("dump line with fewer than 4 fields: %.200s", line);
            fld[i] = s;
            if (i < 3) {
                s = strchr(s, '\t');
                if (s)
                    *s++ = '\0';
            }
        }
        set_add(set, fld[0], fld[1], fld[2], fld[3]);
    }
    free(line);
    fclose(f);
}

/* ---------------------------------------------------------------------------------------------
 * A loader in the background
 */

const char **k2p_ft_args(const char *stream, const char *const *extra)
{
    const char *base[] = {"--stream", stream, "--from", "trim_horizon"};
    size_t n = 0, ne = 0;
    const char **v;
    while (extra && extra[ne])
        ne++;
    v = calloc(K2P_ARRAY_LEN(base) + ne + 1, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < K2P_ARRAY_LEN(base); i++)
        v[n++] = base[i];
    for (size_t i = 0; i < ne; i++)
        v[n++] = extra[i];
    v[n] = NULL;
    return v;
}

pid_t k2p_ft_spawn(k2p_lt *t, const char *const *argv, const char *out_path, const char *err_path)
{
    static const char prog[] = K2P_BINARY_DIR "/kinesis2pg";
    const char **full;
    size_t n = 0;
    int out_fd, err_fd;
    pid_t parent = getpid(), pid;

    while (argv[n])
        n++;
    full = calloc(n + 2, sizeof *full);
    assert_non_null(full);
    full[0] = prog;
    for (size_t i = 0; i < n; i++)
        full[i + 1] = argv[i];
    out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out_fd < 0 || err_fd < 0)
        fail_msg("open %s / %s: %s", out_path, err_path, strerror(errno));
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
        /* Close everything else: no child may hold the mock's or the cluster guardian's pipes. */
#ifdef SYS_close_range
        if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
#endif
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        execve(prog, (char *const *)full, t->env);
        _exit(127);
    }
    close(out_fd);
    close(err_fd);
    free(full);
    return pid;
}

int64_t k2p_ft_wait_rows(k2p_lt *t, const char *schema, const char *table, int64_t rows, pid_t pid,
                         int *status, int timeout_ms)
{
    int64_t deadline = k2p_ft_ms() + timeout_ms, n = 0;
    for (;;) {
        int st = 0;
        n = k2p_lt_count(t, schema, table);
        if (n >= rows)
            return n;
        if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
            if (status)
                *status = st;
            return -1;
        }
        if (k2p_ft_ms() >= deadline)
            return n;
        nap_ms(20);
    }
}

char *k2p_ft_slurp(const char *path)
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

int k2p_ft_wait_log(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = k2p_ft_ms() + timeout_ms;
    for (;;) {
        char *text = k2p_ft_slurp(path);
        int found = strstr(text, needle) != NULL;
        free(text);
        if (found)
            return 1;
        if (k2p_ft_ms() >= deadline)
            return 0;
        nap_ms(20);
    }
}

void k2p_ft_print_tail(const char *path, long tail)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n;
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > tail)
        fseek(f, -tail, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    fprintf(stderr, "---- end of %s ----\n", path);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- (end) ----\n");
    fclose(f);
}

int k2p_ft_reap(pid_t pid, int timeout_ms, const char *log_path, const char *what)
{
    int status = 0;
    if (!k2p_lt_wait_pid(pid, timeout_ms, &status)) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (log_path)
            k2p_ft_print_tail(log_path, 8000);
        fail_msg("%s: the loader did not exit within %d ms (killed)", what, timeout_ms);
    }
    return status;
}

void k2p_ft_expect_status(int status, int code, const char *log_path, const char *what)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == code)
        return;
    if (log_path)
        k2p_ft_print_tail(log_path, 8000);
    if (WIFSIGNALED(status))
        fail_msg("%s: the loader died of signal %d (expected exit %d)", what, WTERMSIG(status),
                 code);
    fail_msg("%s: the loader exited %d (expected %d)", what, WEXITSTATUS(status), code);
}

int64_t k2p_ft_vm_hwm_kb(pid_t pid, const char *comm)
{
    char path[64], line[256];
    FILE *f;
    int64_t kb = -1;
    /* Between fork and exec the child is a copy of the test (and its memory): not yet ours. */
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(line, sizeof line, f) || strncmp(line, comm, strlen(comm)) != 0) {
        fclose(f);
        return -1;
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            char *p = line + 6, *end;
            while (*p == ' ' || *p == '\t')
                p++;
            end = p;
            while (*end >= '0' && *end <= '9')
                end++;
            *end = '\0';
            if (k2p_parse_i64(p, &kb))
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb;
}

int k2p_ft_count_lines(const char *text, const char *needle)
{
    int n = 0;
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = k2p_strndup(p, len);
        assert_non_null(line);
        n += strstr(line, needle) != NULL;
        free(line);
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * PostgreSQL down and up
 */

static int64_t postmaster_pid(const k2p_lt *t)
{
    char path[400], line[32];
    FILE *f;
    int64_t pid = 0;
    snprintf(path, sizeof path, "%s/data/postmaster.pid", t->pg.dir);
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (k2p_parse_i64(line, &pid))
            pid = 0;
    }
    fclose(f);
    return pid;
}

void k2p_ft_pg_down(k2p_lt *t, int sig)
{
    int64_t pid = postmaster_pid(t), deadline;
    if (pid <= 1)
        fail_msg("no postmaster.pid in %s/data: is the test server running?", t->pg.dir);
    if (kill((pid_t)pid, sig) != 0)
        fail_msg("kill postmaster %lld: %s", (long long)pid, strerror(errno));
    deadline = k2p_ft_ms() + 60000;
    while (kill((pid_t)pid, 0) == 0) {
        if (k2p_ft_ms() >= deadline)
            fail_msg("the postmaster (pid %lld) did not exit within 60 s", (long long)pid);
        nap_ms(20);
    }
}

void k2p_ft_pg_start_again(k2p_lt *t)
{
    /* The harness's restart stops (nothing to stop: it says so on stderr) and starts the
     * cluster on the same port. */
    fprintf(stderr, "  (starting PostgreSQL again; a 'pg_ctl stop failed' line from the harness "
                    "is expected: the server is already down)\n");
    if (k2p_test_pg_restart_immediate(&t->pg) != 0)
        fail_msg("PostgreSQL did not start again");
}

int64_t k2p_ft_load_lines(k2p_lt *t, const char *table, const char *path)
{
    char *text = k2p_ft_slurp(path), *end = strrchr(text, '\n');
    PGconn *c = k2p_test_pg_conn(&t->pg);
    PGresult *r;
    size_t len = end ? (size_t)(end - text) + 1 : 0;
    int64_t n = 0;
    int failed = 0;

    if (!c)
        fail_msg("cannot connect to the test PostgreSQL");
    k2p_lt_sql(t, "CREATE TEMP TABLE IF NOT EXISTS \"%s\"(line text)", table);
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    /* CSV with a delimiter and a quote that never occur in JSON text: each line as it is. */
    {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "COPY pg_temp.\"%s\"(line) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x1f',"
                 " QUOTE E'\\x1e')",
                 table);
        r = PQexec(c, sql);
    }
    if (PQresultStatus(r) != PGRES_COPY_IN)
        fail_msg("COPY lines: %s", PQerrorMessage(c));
    PQclear(r);
    if ((len && PQputCopyData(c, text, (int)len) != 1) || PQputCopyEnd(c, NULL) != 1)
        fail_msg("COPY lines: %s", PQerrorMessage(c));
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "COPY lines of %s: %s", path, PQerrorMessage(c));
            failed = 1;
        }
        PQclear(r);
    }
    free(text);
    if (failed)
        fail_msg("loading the lines of %s failed", path);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Exact checks
 */

int64_t k2p_ft_assert_prefix(k2p_lt *t, const char *schema, const char *table, const char *stream,
                             const k2p_lt_set *set)
{
    char *q = k2p_lt_qualify(schema, table);
    char *slit = k2p_lt_literal(stream);
    int64_t rows, extra, dups, holes, bad_ckpt;

    k2p_lt_load_expected(t, set);
    rows = k2p_lt_count(t, schema, table);
    extra = k2p_lt_i64(t,
                       "SELECT count(*) FROM (SELECT _kinesis__shard_id, _kinesis__seq_no,"
                       " _kinesis__partition, data FROM %s EXCEPT ALL SELECT shard, seq, pkey, j"
                       " FROM k2p_expected WHERE j IS NOT NULL) d",
                       q);
    dups = k2p_lt_i64(t,
                      "SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY _kinesis__shard_id,"
                      " _kinesis__seq_no HAVING count(*) > 1) d",
                      q);
    /* Per shard: as many rows as valid records up to its last row, so no hole below it. */
    holes = k2p_lt_i64(t,
                       "SELECT count(*) FROM (SELECT _kinesis__shard_id s, max(_kinesis__seq_no)"
                       " m, count(*) n FROM %s GROUP BY 1) a WHERE a.n <> (SELECT count(*) FROM"
                       " k2p_expected e WHERE e.shard = a.s AND e.seq <= a.m AND e.j IS NOT NULL)",
                       q);
    bad_ckpt = k2p_lt_i64(t,
                          "SELECT count(*) FROM (SELECT _kinesis__shard_id s, max(_kinesis__seq_no)"
                          " m FROM %s GROUP BY 1) a LEFT JOIN kinesis2pg.checkpoints c ON"
                          " c.stream = %s AND c.shard_id = a.s WHERE c.sequence_number IS"
                          " DISTINCT FROM a.m",
                          q, slit);
    if (extra || dups || holes || bad_ckpt) {
        fprintf(stderr,
                "assert_prefix %s: %lld rows; %lld not put like that, %lld duplicated (shard,"
                " seq), %lld shard(s) with a hole below their last row, %lld shard(s) whose"
                " checkpoint is not their last row\n",
                q, (long long)rows, (long long)extra, (long long)dups, (long long)holes,
                (long long)bad_ckpt);
        {
            char *ck = k2p_lt_str(t,
                                  "SELECT string_agg(a.s || ' rows=' || a.n || ' last=' || a.m ||"
                                  " ' ckpt=' || coalesce(c.sequence_number::text, 'none'), E'\\n'"
                                  " ORDER BY a.s) FROM (SELECT _kinesis__shard_id s,"
                                  " max(_kinesis__seq_no) m, count(*) n FROM %s GROUP BY 1) a"
                                  " LEFT JOIN kinesis2pg.checkpoints c ON c.stream = %s AND"
                                  " c.shard_id = a.s",
                                  q, slit);
            fprintf(stderr, "%s\n", ck ? ck : "(no rows)");
            free(ck);
        }
        k2p_lt_print_last_run();
        free(q);
        free(slit);
        fail_msg("the table is not a per-shard prefix of what was put (details above)");
    }
    free(q);
    free(slit);
    return rows;
}

void k2p_ft_assert_key_order(k2p_lt *t, const char *schema, const char *table)
{
    char *q = k2p_lt_qualify(schema, table);
    int64_t bad = k2p_lt_i64(t,
                             "SELECT count(*) FROM (SELECT xmin::text::bigint x,"
                             " lag(xmin::text::bigint) OVER (PARTITION BY _kinesis__partition"
                             " ORDER BY _kinesis__seq_no) px FROM %s) s WHERE px > x",
                             q);
    if (bad) {
        char *ex = k2p_lt_str(t,
                              "SELECT string_agg(r, E'\\n') FROM (SELECT p || ': seq ' || ps ||"
                              " ' (shard ' || psh || ', xid ' || px || ') committed after seq ' ||"
                              " s || ' (shard ' || sh || ', xid ' || x || ')' r FROM (SELECT"
                              " _kinesis__partition p, _kinesis__seq_no s, _kinesis__shard_id sh,"
                              " xmin::text::bigint x, lag(_kinesis__seq_no) OVER w ps,"
                              " lag(_kinesis__shard_id) OVER w psh, lag(xmin::text::bigint) OVER"
                              " w px FROM %s WINDOW w AS (PARTITION BY _kinesis__partition ORDER"
                              " BY _kinesis__seq_no)) d WHERE px > x LIMIT 5) e",
                              q);
        fprintf(stderr, "%s\n", ex ? ex : "");
        free(ex);
        free(q);
        fail_msg("%lld row(s) were committed before an earlier record of their partition key",
                 (long long)bad);
    }
    free(q);
}

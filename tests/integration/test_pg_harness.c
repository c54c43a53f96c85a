/* test_pg_harness.c - the throw-away PostgreSQL harness: start, SQL, COPY, crash-restart, stop,
 * and cleanup when a test process exits or dies without stopping its cluster.
 *
 * Threading: single-threaded test; the cleanup cases fork child processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis2pg/common.h"
#include "pg_harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int start_or_skip(k2p_test_pg *pg)
{
    int rc = k2p_test_pg_start(pg);
    if (rc == K2P_ENOTFOUND)
        return 1;
    assert_int_equal(rc, 0);
    return 0;
}

static int dir_exists(const char *d)
{
    struct stat st;
    return stat(d, &st) == 0;
}

/* Waits up to `ms` for dir to disappear. 1 when gone. */
static int wait_gone(const char *d, int ms)
{
    int64_t deadline = k2p_now_ns() + (int64_t)ms * 1000000;
    while (dir_exists(d)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (k2p_now_ns() > deadline)
            return 0;
        nanosleep(&ts, NULL);
    }
    return 1;
}

static void test_start_copy_query_stop(void **state)
{
    k2p_test_pg pg = {0};
    PGconn *c;
    PGresult *r;
    char dir[256], *s;
    int64_t v = 0;

    (void)state;
    if (start_or_skip(&pg))
        skip();
    assert_true(pg.port > 0);
    assert_non_null(strstr(pg.conninfo, "host=127.0.0.1"));
    assert_true(dir_exists(pg.dir));
    snprintf(dir, sizeof dir, "%s", pg.dir);

    /* The server runs with the settings we asked for. */
    s = k2p_test_pg_query_str(&pg, "SHOW listen_addresses");
    assert_string_equal(s, "127.0.0.1");
    free(s);
    s = k2p_test_pg_query_str(&pg, "SHOW fsync");
    assert_string_equal(s, "off");
    free(s);
    s = k2p_test_pg_query_str(&pg, "SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                   "WHERE datname = current_database()");
    assert_string_equal(s, "UTF8");
    free(s);
    s = k2p_test_pg_query_str(&pg, "SELECT current_database()");
    assert_string_equal(s, pg.dbname);
    free(s);

    assert_int_equal(k2p_test_pg_exec(&pg, "CREATE TABLE t (id int PRIMARY KEY, v text)"), 0);
    assert_int_equal(k2p_test_pg_exec(&pg, "SELECT no_such_column FROM t"), -1);

    /* COPY on a connection of our own, the way the writer will. */
    c = k2p_test_pg_connect(&pg);
    assert_non_null(c);
    r = PQexec(c, "COPY t (id, v) FROM STDIN");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    for (int i = 1; i <= 1000; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "%d\trow %d\n", i, i);
        assert_int_equal(PQputCopyData(c, line, n), 1);
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    while ((r = PQgetResult(c)) != NULL) {
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
    }
    PQfinish(c);

    assert_int_equal(k2p_test_pg_query_i64(&pg, "SELECT count(*) FROM t", &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(k2p_test_pg_query_i64(&pg, "SELECT sum(id) FROM t", &v), 0);
    assert_int_equal(v, 500500);
    s = k2p_test_pg_query_str(&pg, "SELECT v FROM t WHERE id = 42");
    assert_string_equal(s, "row 42");
    free(s);
    assert_null(k2p_test_pg_query_str(&pg, "SELECT NULL"));

    k2p_test_pg_stop(&pg);
    assert_null(pg.priv);
    assert_false(dir_exists(dir));
    k2p_test_pg_stop(&pg); /* idempotent */
}

static void test_restart_immediate_keeps_commits(void **state)
{
    k2p_test_pg pg = {0};
    int64_t v = 0;
    char *before, *after;
    int port;

    (void)state;
    if (start_or_skip(&pg))
        skip();
    port = pg.port;
    before = k2p_test_pg_query_str(&pg, "SELECT pg_postmaster_start_time()::text");
    assert_non_null(before);
    assert_int_equal(k2p_test_pg_exec(&pg, "CREATE TABLE c (x int);"
                                           "INSERT INTO c SELECT generate_series(1, 100)"),
                     0);
    assert_int_equal(k2p_test_pg_restart_immediate(&pg), 0);
    assert_int_equal(pg.port, port);
    /* A new postmaster, which went through crash recovery and kept the commit. */
    after = k2p_test_pg_query_str(&pg, "SELECT pg_postmaster_start_time()::text");
    assert_non_null(after);
    assert_string_not_equal(before, after);
    assert_int_equal(k2p_test_pg_query_i64(&pg, "SELECT count(*) FROM c", &v), 0);
    assert_int_equal(v, 100);
    free(before);
    free(after);
    k2p_test_pg_stop(&pg);
}

static void test_two_clusters_at_once(void **state)
{
    k2p_test_pg a = {0}, b = {0};
    int64_t v = 0;
    (void)state;
    if (start_or_skip(&a))
        skip();
    assert_int_equal(k2p_test_pg_start(&b), 0);
    assert_int_not_equal(a.port, b.port);
    assert_string_not_equal(a.dir, b.dir);
    assert_int_equal(k2p_test_pg_exec(&a, "CREATE TABLE only_a (x int)"), 0);
    assert_int_equal(
        k2p_test_pg_query_i64(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_a'", &v),
        0);
    assert_int_equal(v, 0);
    k2p_test_pg_stop(&b);
    k2p_test_pg_stop(&a);
}

static void test_fsync_option_and_extra_conf(void **state)
{
    k2p_test_pg pg = {0};
    char *s;
    (void)state;
    pg.fsync = 1;
    pg.extra_conf = "work_mem = '7MB'\n";
    if (start_or_skip(&pg))
        skip();
    s = k2p_test_pg_query_str(&pg, "SHOW fsync");
    assert_string_equal(s, "on");
    free(s);
    s = k2p_test_pg_query_str(&pg, "SHOW work_mem");
    assert_string_equal(s, "7MB");
    free(s);
    k2p_test_pg_stop(&pg);
}

static void test_forked_child_leaves_parent_cluster_alone(void **state)
{
    k2p_test_pg pg = {0};
    int64_t v = 0;
    pid_t pid;
    int status;
    (void)state;
    if (start_or_skip(&pg))
        skip();
    assert_int_equal(k2p_test_pg_exec(&pg, "CREATE TABLE f (x int)"), 0); /* cached conn */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exit(0); /* runs the atexit handler with a copy of the registry */
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(dir_exists(pg.dir));
    assert_int_equal(k2p_test_pg_exec(&pg, "INSERT INTO f VALUES (1)"), 0);
    assert_int_equal(k2p_test_pg_query_i64(&pg, "SELECT count(*) FROM f", &v), 0);
    assert_int_equal(v, 1);
    k2p_test_pg_stop(&pg);
}

/* A child starts a cluster, reports its dir, then leaves by `how`: 0 = exit() without stopping
 * (the atexit handler must clean up), 1 = SIGKILL (the guardian must). */
static void child_leaves(int how, char *dir, size_t cap)
{
    int fds[2];
    pid_t pid;
    int status;
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        k2p_test_pg pg = {0};
        close(fds[0]);
        if (k2p_test_pg_start(&pg) != 0)
            _exit(3);
        if (write(fds[1], pg.dir, strlen(pg.dir)) < 0)
            _exit(4);
        close(fds[1]);
        if (how == 1)
            raise(SIGKILL);
        exit(0);
    }
    close(fds[1]);
    n = read(fds[0], dir, cap - 1);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(n > 0);
    dir[n] = '\0';
    if (how == 0) {
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_false(dir_exists(dir)); /* atexit ran before the child exited */
    } else {
        assert_true(WIFSIGNALED(status));
        assert_true(wait_gone(dir, 30000));
    }
}

static void test_cleanup_when_test_exits_without_stop(void **state)
{
    char dir[256];
    (void)state;
    if (!k2p_test_pg_available())
        skip();
    child_leaves(0, dir, sizeof dir);
}

static void test_cleanup_when_test_is_killed(void **state)
{
    char dir[256];
    (void)state;
    if (!k2p_test_pg_available())
        skip();
    child_leaves(1, dir, sizeof dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_copy_query_stop),
        cmocka_unit_test(test_restart_immediate_keeps_commits),
        cmocka_unit_test(test_two_clusters_at_once),
        cmocka_unit_test(test_fsync_option_and_extra_conf),
        cmocka_unit_test(test_forked_child_leaves_parent_cluster_alone),
        cmocka_unit_test(test_cleanup_when_test_exits_without_stop),
        cmocka_unit_test(test_cleanup_when_test_is_killed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* pg_harness.h - a throw-away PostgreSQL cluster for tests and benchmarks.
 *
 * k2p_test_pg_start() runs initdb into a fresh temp dir, starts the server on a free loopback
 * port (trust auth on 127.0.0.1 and the private unix socket only), and creates a database.
 * When the test runs as root the server runs as the `postgres` system user (PostgreSQL refuses
 * root); otherwise as the current user. A guardian process removes the cluster if the test dies
 * without calling k2p_test_pg_stop() (crash, kill -9, ctest timeout), and an atexit handler
 * stops clusters a test forgot (a forked child that exits leaves its parent's clusters alone).
 * Starting a cluster sets SIGPIPE to SIG_IGN.
 *
 * Environment: K2P_PG_BINDIR (server binaries; default `pg_config --bindir`, then
 * /usr/lib/postgresql/<N>/bin, then PATH), K2P_TEST_PG_USER (system user when root; default
 * postgres), K2P_TEST_PG_TMPDIR (parent of the temp dir; default TMPDIR, or /tmp when root so
 * the server user can reach it), K2P_TEST_PG_KEEP=1 (leave the dir behind after stop, for
 * debugging).
 *
 * Threading: start/stop/restart and the exec/query helpers belong to one thread (the test's
 * main thread). k2p_test_pg_connect() may be called from any thread once the server runs; each
 * connection then belongs to its caller.
 */
#ifndef K2P_PG_HARNESS_H
#define K2P_PG_HARNESS_H

#include <stdint.h>

#include <libpq-fe.h>

struct k2p_test_pg_priv;

typedef struct k2p_test_pg {
    /* Options: zero-initialise the struct, set these, then call k2p_test_pg_start(). */
    int fsync;              /* 1: keep fsync and full_page_writes on (default off) */
    const char *extra_conf; /* more postgresql.conf lines ("key = value\n..."), or NULL */

    /* Filled by k2p_test_pg_start(); read-only for the caller. */
    char dir[256];      /* temp dir: data/, the unix socket, server.log, cmd.log */
    char conninfo[256]; /* "host=127.0.0.1 port=N dbname=k2p_test user=postgres" */
    char dbname[64];
    char user[64]; /* database superuser */
    int port;
    struct k2p_test_pg_priv *priv;
} k2p_test_pg;

/* A TCP port on 127.0.0.1 that was free a moment ago (bind port 0). 0 on failure. */
int k2p_test_free_port(void);

/* Starts a cluster. Returns 0; K2P_ENOTFOUND when PostgreSQL's server binaries (or the
 * postgres system user, when root) are missing: tests should skip then; K2P_EIO on any other
 * failure, after printing the failing command's output and the server log to stderr. On
 * failure nothing is left running or on disk. */
int k2p_test_pg_start(k2p_test_pg *pg);

/* Whether a cluster can be started here: the server binaries exist (and, when running as root,
 * the system user to run them as). Cheap: no initdb. Tests skip when it returns 0. */
int k2p_test_pg_available(void);

/* Stops the server (pg_ctl -m fast; immediate if that fails), removes the temp dir and frees
 * the cluster's state. Safe on a cluster that never started or is already stopped. */
void k2p_test_pg_stop(k2p_test_pg *pg);

/* Simulates a crash and recovery: pg_ctl stop -m immediate (SIGQUIT: no shutdown checkpoint),
 * then start again on the same port and wait until it accepts connections. Committed
 * transactions survive (synchronous_commit stays on, so the WAL is in the kernel even with
 * fsync off). Closes the cached connection of the helpers below. Returns 0 or K2P_EIO. */
int k2p_test_pg_restart_immediate(k2p_test_pg *pg);

/* A new connection to the test database (caller PQfinish()es it), or NULL after printing why. */
PGconn *k2p_test_pg_connect(const k2p_test_pg *pg);

/* The helpers' cached connection (opened on first use, reopened if broken), or NULL. */
PGconn *k2p_test_pg_conn(k2p_test_pg *pg);

/* Runs one or more SQL statements on the cached connection. Returns 0, or -1 after printing the
 * server's error to stderr. */
int k2p_test_pg_exec(k2p_test_pg *pg, const char *sql);

/* Runs a query and returns row 0 column 0 as a heap string (caller frees), or NULL when the
 * query fails (error printed), returns no row, or the value is SQL NULL. */
char *k2p_test_pg_query_str(k2p_test_pg *pg, const char *sql);

/* Runs a query whose row 0 column 0 is an integer. Returns 0 and sets *out, or -1. */
int k2p_test_pg_query_i64(k2p_test_pg *pg, const char *sql, int64_t *out);

#endif

/* pg_state.c - schema setup and the loader's state tables (checkpoints, ledger, runs).
 *
 * Threading: each call uses only the connection passed in, on the caller's thread.
 */
#include "pg_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/copy_encode.h"

#define K2P_STR_(x) #x
#define K2P_STR(x) K2P_STR_(x)

static const char state_ddl[] =
    "CREATE SCHEMA IF NOT EXISTS kinesis2pg;\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.schema_version (\n"
    "  version integer NOT NULL,\n"
    "  written_by text NOT NULL,\n"
    "  updated_at timestamptz NOT NULL DEFAULT now());\n"
    "INSERT INTO kinesis2pg.schema_version (version, written_by)\n"
    "  SELECT " K2P_STR(K2P_SCHEMA_VERSION) ", 'kinesis2pg " K2P_VERSION "'\n"
    "  WHERE NOT EXISTS (SELECT 1 FROM kinesis2pg.schema_version);\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.checkpoints (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  shard_id text NOT NULL,\n"
    "  sequence_number numeric,\n"
    "  start_at timestamptz,\n"
    "  parent_shard_ids text[] NOT NULL DEFAULT '{}',\n"
    "  closed boolean NOT NULL DEFAULT false,\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (stream, target, shard_id));\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.ledger (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  shard_id text NOT NULL,\n"
    "  first_seq numeric NOT NULL,\n"
    "  last_seq numeric NOT NULL,\n"
    "  rows integer NOT NULL,\n"
    "  committed_at timestamptz NOT NULL DEFAULT now());\n"
    "CREATE INDEX IF NOT EXISTS ledger_stream_shard_idx\n"
    "  ON kinesis2pg.ledger (stream, target, shard_id, last_seq);\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.runs (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  started_at timestamptz NOT NULL,\n"
    "  finished_at timestamptz,\n"
    "  rows bigint NOT NULL DEFAULT 0,\n"
    "  bytes bigint NOT NULL DEFAULT 0,\n"
    "  dead_letters bigint NOT NULL DEFAULT 0,\n"
    "  status text NOT NULL,\n"
    "  message text);\n"
    "CREATE INDEX IF NOT EXISTS runs_stream_idx ON kinesis2pg.runs (stream, target, started_at);\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.owners (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  epoch bigint NOT NULL,\n"
    "  PRIMARY KEY (stream, target));\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.leases (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  shard_id text NOT NULL,\n"
    "  owner text,\n"
    "  epoch bigint NOT NULL DEFAULT 0,\n"
    "  expires_at timestamptz,\n"
    "  tip_at timestamptz,\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (stream, target, shard_id));\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.workers (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  owner text NOT NULL,\n"
    "  mode text NOT NULL,\n"
    "  started_at timestamptz NOT NULL,\n"
    "  expires_at timestamptz,\n"
    "  PRIMARY KEY (stream, target, owner));\n"
    "CREATE TABLE IF NOT EXISTS kinesis2pg.dead_letters (\n"
    "  stream text NOT NULL,\n"
    "  target text NOT NULL,\n"
    "  shard_id text NOT NULL,\n"
    "  seq_no numeric NOT NULL,\n"
    "  reason text NOT NULL,\n"
    "  data bytea,\n"
    "  at timestamptz NOT NULL DEFAULT now(),\n"
    "  sub_seq bigint);\n"
    "CREATE INDEX IF NOT EXISTS dead_letters_stream_idx\n"
    "  ON kinesis2pg.dead_letters (stream, target, shard_id, seq_no);\n"
    /* Added for KPL aggregates; checked first so that a table that has it is not locked. */
    "DO $$ BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'kinesis2pg'\n"
    "                 AND table_name = 'dead_letters' AND column_name = 'sub_seq') THEN\n"
    "    ALTER TABLE kinesis2pg.dead_letters ADD COLUMN sub_seq bigint;\n"
    "  END IF;\n"
    "END $$;\n";

void k2p_pg_format_ts(int64_t us, char out[K2P_TS_BUF])
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    struct tm tm;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    gmtime_r(&secs, &tm);
    snprintf(out, K2P_TS_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void k2p_pg_describe(PGconn *c, char *out, size_t n)
{
    const char *h = c ? PQhost(c) : NULL, *p = c ? PQport(c) : NULL, *d = c ? PQdb(c) : NULL;
    snprintf(out, n, "%s:%s/%s", h && *h ? h : "(default host)", p && *p ? p : "5432",
             d && *d ? d : "(default db)");
}

/* PQerrorMessage without its trailing newline, into buf. */
static const char *pg_msg(PGconn *c, const PGresult *r, char *buf, size_t n)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    size_t l;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "no connection";
    l = strcspn(m, "\n");
    if (l >= n)
        l = n - 1;
    memcpy(buf, m, l);
    buf[l] = '\0';
    return buf;
}

bool k2p_pg_conn_broken(PGconn *c)
{
    return !c || PQstatus(c) != CONNECTION_OK;
}

PGconn *k2p_pg_connect(const char *conninfo, k2p_err *err)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {conninfo ? conninfo : "", "kinesis2pg", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char where[300], msg[300];
        k2p_pg_describe(c, where, sizeof where);
        pg_msg(c, NULL, msg, sizeof msg);
        k2p_err_set(err, K2P_EIO, "PostgreSQL at %s unreachable: %s", where, msg);
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *k2p_pg_connect_bounded(const char *conninfo, int idle_tx_ms, k2p_err *err)
{
    PGconn *c = k2p_pg_connect(conninfo, err);
    char ms[24];
    const char *p[] = {ms};
    if (!c || idle_tx_ms <= 0)
        return c;
    snprintf(ms, sizeof ms, "%dms", idle_tx_ms);
    if (k2p_pg_exec(c, "SELECT set_config('idle_in_transaction_session_timeout', $1, false)", 1,
                    p, err)) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

int k2p_pg_exec(PGconn *c, const char *sql, int nparams, const char *const *params,
                k2p_err *err)
{
    PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                          : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[400];
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        pg_msg(c, r, msg, sizeof msg);
        rc = K2P_EIO;
        if (state && strcmp(state, "42501") == 0)
            rc = K2P_EAUTH;
        k2p_err_set(err, rc, "PostgreSQL: %s", msg);
    }
    PQclear(r);
    return rc;
}

int k2p_pg_check_schema_version(PGconn *c, k2p_err *err)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('kinesis2pg.schema_version') IS NOT NULL");
    char msg[300], where[300];
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: %s", pg_msg(c, r, msg, sizeof msg));
        PQclear(r);
        return rc;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) { /* a database no loader has set up yet */
        PQclear(r);
        return 0;
    }
    PQclear(r);
    r = PQexec(c, "SELECT version, written_by FROM kinesis2pg.schema_version "
                  "ORDER BY version DESC LIMIT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: %s", pg_msg(c, r, msg, sizeof msg));
    } else if (PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) > K2P_SCHEMA_VERSION) {
        k2p_pg_describe(c, where, sizeof where);
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "the state tables (schema kinesis2pg) in %s are of layout version %s, "
                         "written by %.60s; this kinesis2pg (%s) knows layouts up to version "
                         "%d: run a newer kinesis2pg",
                         where, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), K2P_VERSION,
                         K2P_SCHEMA_VERSION);
    }
    PQclear(r);
    return rc;
}

int k2p_pg_setup(PGconn *c, const char *schema, const char *table, bool raw, bool primary_key,
                 k2p_err *err)
{
    k2p_buf sql;
    int rc;

    if ((rc = k2p_pg_check_schema_version(c, err)))
        return rc;
    k2p_buf_init(&sql, 0);
    /* Serialise DDL between concurrent loaders: CREATE ... IF NOT EXISTS can still race. */
    if (k2p_buf_puts(&sql, "SET client_min_messages = warning;\nBEGIN;\n"
                           "SELECT pg_advisory_xact_lock(4236512347);\n") ||
        k2p_buf_puts(&sql, state_ddl)) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    rc = k2p_copy_sql_create_schema(&sql, schema);
    if (!rc && !(rc = k2p_buf_puts(&sql, ";\n")))
        rc = k2p_copy_sql_create_table(&sql, schema, table, raw ? K2P_COPY_BYTEA : K2P_COPY_JSONB,
                                       primary_key);
    if (!rc)
        rc = k2p_buf_puts(&sql, ";\nCOMMIT;");
    if (rc == K2P_EINVAL) {
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "schema and table names must be 1 to 63 bytes without NUL (--schema, "
                         "--table)");
        goto out;
    } else if (rc) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    rc = k2p_pg_exec(c, sql.data, 0, NULL, err);
    if (rc) {
        char detail[sizeof err->msg];
        memcpy(detail, err->msg, sizeof detail);
        k2p_pg_exec(c, "ROLLBACK", 0, NULL, NULL);
        if (rc == K2P_EAUTH)
            k2p_err_set(err, rc,
                        "no permission to create or use schema \"%s\" / table \"%s\" or schema "
                        "kinesis2pg (%s); grant CREATE and USAGE on them",
                        schema, table, detail);
        else
            k2p_err_set(err, rc, "cannot create table \"%s\".\"%s\" or the state schema: %s",
                        schema, table, detail);
        goto out;
    }
    /* Records are validated as UTF-8 (text columns, jsonb): the database must store UTF8. */
    {
        const char *enc = PQparameterStatus(c, "server_encoding");
        if (enc && strcmp(enc, "UTF8") != 0) {
            rc = k2p_err_set(err, K2P_ECONFIG,
                             "database encoding is %s; kinesis2pg needs a UTF8 database", enc);
            goto out;
        }
    }
    /* The data column must match --raw: loading jsonb into bytea (or back) would fail later.
     * A table made before _kinesis__sub_seq existed gets it (NULL for the rows it has). */
    {
        const char *params[] = {schema, table};
        PGresult *r = PQexecParams(c,
                                   "SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_schema = $1 AND table_name = $2 "
                                   "AND column_name IN ('data', '_kinesis__sub_seq')",
                                   2, NULL, params, NULL, NULL, 0);
        bool has_sub_seq = false;
        for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
            const char *t = PQgetvalue(r, i, 1);
            if (strcmp(PQgetvalue(r, i, 0), "data") != 0)
                has_sub_seq = true;
            else if (strcmp(t, raw ? "bytea" : "jsonb") != 0)
                rc = k2p_err_set(err, K2P_ECONFIG,
                                 "table \"%s\".\"%s\" has data of type %s but this run %s; "
                                 "use %s or another --table",
                                 schema, table, t,
                                 raw ? "stores raw bytes (--raw)" : "stores jsonb",
                                 raw ? "no --raw" : "--raw");
        }
        if (!rc && PQresultStatus(r) == PGRES_TUPLES_OK && !has_sub_seq) {
            k2p_buf_reset(&sql);
            if (k2p_copy_sql_add_sub_seq(&sql, schema, table))
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
            else if ((rc = k2p_pg_exec(c, sql.data, 0, NULL, err))) {
                char detail[sizeof err->msg];
                memcpy(detail, err->msg, sizeof detail);
                k2p_err_set(err, rc, "cannot add column _kinesis__sub_seq to \"%s\".\"%s\": %s",
                            schema, table, detail);
            }
        }
        PQclear(r);
    }
out:
    k2p_buf_deinit(&sql);
    return rc;
}

/* One lock key per (stream, target). A starting loader must get it exclusively (nobody else
 * holds it in any mode); then it holds it shared, like each of its writers' sessions, which
 * take it again on every reconnect: after a PostgreSQL restart, the first of its sessions to
 * come back shuts out a newcomer. */
#define K2P_LOCK_KEY "hashtext('kinesis2pg:' || $1 || ':' || $2)"
/* With --worker-count: the first of two int keys (the second is the count). */
#define K2P_COUNT_KEY "hashtext('kinesis2pg-static-count:' || $1 || ':' || $2)"

int k2p_pg_lock_stream(PGconn *c, const char *stream, const char *target, k2p_err *err)
{
    return k2p_pg_lock_mode(c, stream, target, K2P_LOCK_SINGLE, 0, 0, err);
}

/* The advisory lock keys of the three ways to run (see k2p_pg_lock_mode). $1 stream, $2 target,
 * $3 worker index. */
static const char *const mode_key[] = {
    K2P_LOCK_KEY,
    "hashtext('kinesis2pg-leases:' || $1 || ':' || $2)",
    "hashtext('kinesis2pg-static:' || $1 || ':' || $2)",
};

static const char *const mode_busy[] = {
    "another kinesis2pg is loading stream '%s' into %s; wait for it to finish",
    "kinesis2pg processes with --leases are loading stream '%s' into %s; stop them first, or "
    "run this one with --leases too",
    "kinesis2pg workers with --worker-count are loading stream '%s' into %s; stop them first, "
    "or run this one as one of them",
};

/* Runs a one-row query of booleans; *ok = row 0 column 0 is true. */
static int lock_query(PGconn *c, const char *sql, int n, const char *const *params, bool *ok,
                      k2p_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[300];
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: %s", pg_msg(c, r, msg, sizeof msg));
    } else if (ok) {
        *ok = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    }
    PQclear(r);
    return rc;
}

int k2p_pg_lock_mode(PGconn *c, const char *stream, const char *target, k2p_lock_mode mode,
                     int index, int count, k2p_err *err)
{
    const char *params[] = {stream, target};
    char sql[512];
    bool ok = false;
    int rc;

    /* 1. Our own lock. Single: exclusively first (nobody else loads), then shared like its
     *    writers. Leases, static: shared, as every process of the group holds it. */
    if (mode == K2P_LOCK_SINGLE)
        snprintf(sql, sizeof sql,
                 "SELECT pg_try_advisory_lock(%s), pg_advisory_lock_shared(%s), "
                 "pg_advisory_unlock(%s)",
                 mode_key[0], mode_key[0], mode_key[0]);
    else
        snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock_shared(%s)", mode_key[mode]);
    if ((rc = lock_query(c, sql, 2, params, &ok, err)))
        return rc;
    if (!ok) {
        if (mode == K2P_LOCK_SINGLE) {
            snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock_shared(%s)", mode_key[0]);
            lock_query(c, sql, 2, params, NULL, NULL);
        }
        return k2p_err_set(err, K2P_EINUSE, mode_busy[0], stream, target);
    }
    /* 2. Nobody runs in another way: each other key must be free (taken and given back at
     *    once). Two processes of different ways starting together may both be refused. */
    for (int m = K2P_LOCK_SINGLE; m <= K2P_LOCK_STATIC; m++) {
        if (m == (int)mode)
            continue;
        snprintf(sql, sizeof sql,
                 "SELECT CASE WHEN pg_try_advisory_lock(%s) THEN pg_advisory_unlock(%s) "
                 "ELSE false END",
                 mode_key[m], mode_key[m]);
        if ((rc = lock_query(c, sql, 2, params, &ok, err)))
            return rc;
        if (!ok)
            return k2p_err_set(err, K2P_EINUSE, mode_busy[m], stream, target);
    }
    /* 3. Static: every worker of the group has the same count (each keeps the key of its
     *    count shared; a key of another count held in this database is a worker that splits the
     *    shards differently, which would load some of ours), and one process per worker index
     *    (kept exclusively by this session). */
    if (mode == K2P_LOCK_STATIC) {
        char idx[16], cnt[16], other[24];
        const char *p3[] = {stream, target, idx};
        const char *pc[] = {stream, target, cnt};
        PGresult *r;
        snprintf(idx, sizeof idx, "%d", index);
        snprintf(cnt, sizeof cnt, "%d", count);
        if ((rc = lock_query(c,
                             "SELECT pg_advisory_lock_shared(" K2P_COUNT_KEY ", $3::int)",
                             3, pc, NULL, err)))
            return rc;
        /* Two-key advisory locks show in pg_locks with the first key in classid, the second in
         * objid and objsubid 2. */
        r = PQexecParams(c,
                         "SELECT min(objid::bigint) FROM pg_locks WHERE locktype = 'advisory' "
                         "AND objsubid = 2 AND granted AND database = (SELECT oid FROM "
                         "pg_database WHERE datname = current_database()) "
                         "AND classid = (" K2P_COUNT_KEY ")::oid AND objid <> $3::int::oid",
                         3, NULL, pc, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[300];
            rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: %s", pg_msg(c, r, msg, sizeof msg));
            PQclear(r);
            return rc;
        }
        other[0] = '\0';
        if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            snprintf(other, sizeof other, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        if (other[0])
            return k2p_err_set(err, K2P_EINUSE,
                               "kinesis2pg workers with --worker-count %s are loading stream "
                               "'%s' into %s; this one has --worker-count %d: every worker "
                               "must use the same count",
                               other, stream, target, count);
        if ((rc = lock_query(c,
                             "SELECT pg_try_advisory_lock(hashtext('kinesis2pg-static:' || $1 || "
                             "':' || $2 || ':' || $3))",
                             3, p3, &ok, err)))
            return rc;
        if (!ok)
            return k2p_err_set(err, K2P_EINUSE,
                               "another kinesis2pg is loading worker %d of stream '%s' into %s; "
                               "every worker needs its own --worker-index",
                               index, stream, target);
    }
    return 0;
}

int k2p_pg_lock_stream_shared(PGconn *c, const char *stream, const char *target, k2p_err *err)
{
    return k2p_pg_lock_mode_shared(c, stream, target, K2P_LOCK_SINGLE, err);
}

int k2p_pg_lock_mode_shared(PGconn *c, const char *stream, const char *target,
                            k2p_lock_mode mode, k2p_err *err)
{
    const char *params[] = {stream, target};
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock_shared(%s)", mode_key[mode]);
    return lock_query(c, sql, 2, params, NULL, err);
}

void k2p_stream_state_deinit(k2p_stream_state *s)
{
    for (size_t i = 0; i < s->n; i++) {
        k2p_shard_ckpt *c = &s->shards[i];
        free(c->shard_id);
        free(c->seq);
        for (size_t j = 0; j < c->n_parents; j++)
            free(c->parents[j]);
        for (size_t j = 0; j < c->n_ledger; j++) {
            free(c->ledger[j].first);
            free(c->ledger[j].last);
        }
        free(c->ledger);
    }
    free(s->shards);
    memset(s, 0, sizeof *s);
}

k2p_shard_ckpt *k2p_stream_state_find(const k2p_stream_state *s, const char *shard_id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->shards[i].shard_id, shard_id) == 0)
            return &s->shards[i];
    return NULL;
}

static int query(PGconn *c, const char *sql, int n, const char *const *params, PGresult **out,
                 k2p_err *err)
{
    *out = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*out) != PGRES_TUPLES_OK) {
        char msg[300];
        pg_msg(c, *out, msg, sizeof msg);
        PQclear(*out);
        *out = NULL;
        return k2p_err_set(err, K2P_EIO, "PostgreSQL: reading loader state: %s", msg);
    }
    return 0;
}

int k2p_pg_load_state(PGconn *c, const char *stream, const char *target, k2p_stream_state *out,
                      k2p_err *err)
{
    return k2p_pg_load_state_shard(c, stream, target, NULL, out, err);
}

int k2p_pg_load_state_shard(PGconn *c, const char *stream, const char *target,
                            const char *shard_id, k2p_stream_state *out, k2p_err *err)
{
    const char *params[] = {stream, target, shard_id};
    PGresult *r = NULL;
    int rc, n;

    memset(out, 0, sizeof *out);
    out->prev_run_started_us = -1;
    rc = query(c,
               "SELECT shard_id, sequence_number::text, "
               "(extract(epoch FROM start_at) * 1000000)::bigint, closed, "
               "parent_shard_ids[1], parent_shard_ids[2] "
               "FROM kinesis2pg.checkpoints WHERE stream = $1 AND target = $2 "
               "AND ($3::text IS NULL OR shard_id = $3) ORDER BY shard_id",
               3, params, &r, err);
    if (rc)
        return rc;
    n = PQntuples(r);
    out->shards = calloc((size_t)n + 1, sizeof *out->shards);
    if (!out->shards) {
        PQclear(r);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        k2p_shard_ckpt *s = &out->shards[out->n++];
        int64_t v;
        s->shard_id = k2p_strdup(PQgetvalue(r, i, 0));
        s->seq = PQgetisnull(r, i, 1) ? NULL : k2p_strdup(PQgetvalue(r, i, 1));
        s->start_at_us = -1;
        if (!PQgetisnull(r, i, 2) && k2p_parse_i64(PQgetvalue(r, i, 2), &v) == 0)
            s->start_at_us = v;
        s->closed = strcmp(PQgetvalue(r, i, 3), "t") == 0;
        for (int p = 4; p <= 5; p++)
            if (!PQgetisnull(r, i, p))
                s->parents[s->n_parents++] = k2p_strdup(PQgetvalue(r, i, p));
    }
    PQclear(r);

    /* Ranges committed past a checkpoint: a crash came between a commit and the checkpoint
     * thread's update. Readers skip records inside them. */
    rc = query(c,
               "SELECT l.shard_id, l.first_seq::text, l.last_seq::text "
               "FROM kinesis2pg.ledger l LEFT JOIN kinesis2pg.checkpoints c "
               "  ON c.stream = l.stream AND c.target = l.target AND c.shard_id = l.shard_id "
               "WHERE l.stream = $1 AND l.target = $2 AND ($3::text IS NULL OR l.shard_id = $3) "
               "  AND (c.sequence_number IS NULL OR l.last_seq > c.sequence_number) "
               "ORDER BY l.shard_id, l.first_seq",
               3, params, &r, err);
    if (rc)
        return rc;
    n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        k2p_shard_ckpt *s = k2p_stream_state_find(out, PQgetvalue(r, i, 0));
        k2p_seq_range *nl;
        if (!s)
            continue; /* a ledger row always follows a checkpoint row; be lenient */
        nl = realloc(s->ledger, (s->n_ledger + 1) * sizeof *nl);
        if (!nl) {
            PQclear(r);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
        s->ledger = nl;
        nl[s->n_ledger].first = k2p_strdup(PQgetvalue(r, i, 1));
        nl[s->n_ledger].last = k2p_strdup(PQgetvalue(r, i, 2));
        s->n_ledger++;
    }
    PQclear(r);

    rc = query(c,
               "SELECT (extract(epoch FROM max(started_at)) * 1000000)::bigint "
               "FROM kinesis2pg.runs WHERE stream = $1 AND target = $2",
               2, params, &r, err);
    if (rc)
        return rc;
    if (!PQgetisnull(r, 0, 0)) {
        int64_t v;
        if (k2p_parse_i64(PQgetvalue(r, 0, 0), &v) == 0)
            out->prev_run_started_us = v;
    }
    PQclear(r);
    return 0;
}

int k2p_pg_add_shard(PGconn *c, const char *stream, const char *target, const char *shard_id,
                     const char *const *parents, size_t n_parents, int64_t start_at_us,
                     k2p_err *err)
{
    char ts[K2P_TS_BUF];
    k2p_buf arr;
    int rc;
    k2p_buf_init(&arr, 0);
    k2p_buf_putc(&arr, '{');
    for (size_t i = 0; i < n_parents; i++)
        if (k2p_pg_array_append(&arr, parents[i]))
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (k2p_buf_putc(&arr, '}'))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (start_at_us >= 0)
        k2p_pg_format_ts(start_at_us, ts);
    {
        const char *params[] = {stream, target, shard_id, start_at_us >= 0 ? ts : NULL,
                                arr.data};
        rc = k2p_pg_exec(c,
                         "INSERT INTO kinesis2pg.checkpoints (stream, target, shard_id, start_at, "
                         "parent_shard_ids) VALUES ($1, $2, $3, $4, $5) "
                         "ON CONFLICT (stream, target, shard_id) DO NOTHING",
                         5, params, err);
    }
    k2p_buf_deinit(&arr);
    return rc;
}

int k2p_pg_run_begin(PGconn *c, const char *stream, const char *target, int64_t started_us,
                     int64_t *run_id, k2p_err *err)
{
    char ts[K2P_TS_BUF];
    PGresult *r = NULL;
    int rc;
    k2p_pg_format_ts(started_us, ts);
    {
        const char *params[] = {stream, target, ts};
        rc = query(c,
                   "INSERT INTO kinesis2pg.runs (stream, target, started_at, status) "
                   "VALUES ($1, $2, $3, 'running') RETURNING id",
                   3, params, &r, err);
    }
    if (rc)
        return rc;
    if (k2p_parse_i64(PQgetvalue(r, 0, 0), run_id))
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: unexpected runs row");
    PQclear(r);
    return rc;
}

int k2p_pg_run_end(PGconn *c, int64_t run_id, int64_t rows, int64_t bytes, int64_t dead,
                   const char *status, const char *message, k2p_err *err)
{
    char id[24], r[24], b[24], d[24];
    snprintf(id, sizeof id, "%lld", (long long)run_id);
    snprintf(r, sizeof r, "%lld", (long long)rows);
    snprintf(b, sizeof b, "%lld", (long long)bytes);
    snprintf(d, sizeof d, "%lld", (long long)dead);
    {
        const char *params[] = {id, r, b, d, status, message};
        return k2p_pg_exec(c,
                           "UPDATE kinesis2pg.runs SET finished_at = clock_timestamp(), "
                           "rows = $2, bytes = $3, dead_letters = $4, status = $5, message = $6 "
                           "WHERE id = $1",
                           6, params, err);
    }
}

int k2p_pg_take_ownership(PGconn *c, const char *stream, const char *target, char epoch[24],
                          k2p_err *err)
{
    const char *params[] = {stream, target};
    PGresult *r = NULL;
    int rc = query(c,
                   "INSERT INTO kinesis2pg.owners (stream, target, epoch) VALUES ($1, $2, 1) "
                   "ON CONFLICT (stream, target) DO UPDATE SET epoch = owners.epoch + 1 "
                   "RETURNING epoch",
                   2, params, &r, err);
    if (rc)
        return rc;
    snprintf(epoch, 24, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

const char k2p_pg_fence_sql[] = "SELECT 1 FROM kinesis2pg.owners "
                                "WHERE stream = $1 AND target = $2 AND epoch = $3 FOR SHARE";

int k2p_pg_array_append(k2p_buf *a, const char *v)
{
    if (a->len > 1 && k2p_buf_putc(a, ','))
        return K2P_ENOMEM;
    if (!v)
        return k2p_buf_puts(a, "NULL");
    if (k2p_buf_putc(a, '"'))
        return K2P_ENOMEM;
    for (; *v; v++)
        if (((*v == '"' || *v == '\\') && k2p_buf_putc(a, '\\')) || k2p_buf_putc(a, *v))
            return K2P_ENOMEM;
    return k2p_buf_putc(a, '"');
}

char *k2p_pg_target_name(const char *schema, const char *table)
{
    k2p_buf b;
    k2p_buf_init(&b, 0);
    if (k2p_pg_quote_ident(&b, schema, strlen(schema)) || k2p_buf_putc(&b, '.') ||
        k2p_pg_quote_ident(&b, table, strlen(table))) {
        k2p_buf_deinit(&b);
        return NULL;
    }
    return k2p_buf_steal(&b, NULL);
}

/* lease.c - per-shard leases in PostgreSQL, the workers table, the keeper thread, and the
 * static split (see lease.h).
 *
 * Every time is the database's clock (clock_timestamp()), so processes on hosts with skewed
 * clocks agree on which lease has expired.
 *
 * Threading: SQL helpers on the caller's thread and connection; the keeper on its own thread.
 */
#include "lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/log.h"
#include "pg_state.h"

/* ---- pure ---------------------------------------------------------------------------------- */

uint64_t k2p_lease_hash(const char *shard_id)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)shard_id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

int k2p_static_worker_of(const char *shard_id, int count)
{
    if (count <= 1)
        return 0;
    return (int)(k2p_lease_hash(shard_id) % (uint64_t)count);
}

size_t k2p_lease_target(size_t active, size_t live)
{
    if (live < 1)
        live = 1;
    return (active + live - 1) / live;
}

void k2p_lease_owner_name(char out[K2P_OWNER_BUF])
{
    char host[64] = "";
    uint64_t r = (uint64_t)k2p_now_ns() ^ ((uint64_t)k2p_wall_us() << 17) ^ (uint64_t)getpid();
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "unknown-host");
    host[sizeof host - 1] = '\0';
    r ^= r >> 33;
    r *= 0xff51afd7ed558ccdull;
    r ^= r >> 33;
    snprintf(out, K2P_OWNER_BUF, "%s:%ld:%06llx", host, (long)getpid(),
             (unsigned long long)(r & 0xffffff));
}

/* ---- SQL ----------------------------------------------------------------------------------- */

static int exec_params(PGconn *c, const char *sql, int n, const char *const *p, PGresult **out,
                       k2p_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        const char *m = PQresultErrorMessage(r);
        char msg[300];
        size_t l;
        if (!m || !*m)
            m = PQerrorMessage(c);
        l = strcspn(m, "\n");
        if (l >= sizeof msg)
            l = sizeof msg - 1;
        memcpy(msg, m, l);
        msg[l] = '\0';
        PQclear(r);
        return k2p_err_set(err, K2P_EIO, "PostgreSQL: leases: %s", msg);
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

int k2p_lease_register(PGconn *c, const char *stream, const char *target, const char *owner,
                       const char *mode, int ttl_ms, k2p_err *err)
{
    char ttl[16];
    const char *p[] = {stream, target, owner, mode, ttl};
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    return exec_params(c,
                       "WITH gone AS (DELETE FROM kinesis2pg.workers WHERE stream = $1 AND "
                       "  target = $2 AND expires_at < clock_timestamp() - interval '1 hour') "
                       "INSERT INTO kinesis2pg.workers (stream, target, owner, mode, started_at, "
                       "expires_at) VALUES ($1, $2, $3, $4, clock_timestamp(), "
                       "clock_timestamp() + $5::int * interval '1 millisecond') "
                       "ON CONFLICT (stream, target, owner) DO UPDATE SET "
                       "expires_at = EXCLUDED.expires_at",
                       5, p, NULL, err);
}

int k2p_lease_heartbeat(PGconn *c, const char *stream, const char *target, const char *owner,
                        int ttl_ms, k2p_err *err)
{
    char ttl[16];
    const char *p[] = {stream, target, owner, ttl};
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    /* A data-modifying WITH runs whether or not the main statement reads it. The workers row
     * comes back if someone removed it as expired (started_at then restarts). */
    return exec_params(c,
                       "WITH w AS (INSERT INTO kinesis2pg.workers (stream, target, owner, mode, "
                       "  started_at, expires_at) VALUES ($1, $2, $3, 'leases', "
                       "  clock_timestamp(), clock_timestamp() + $4::int * interval '1 millisecond') "
                       "  ON CONFLICT (stream, target, owner) DO UPDATE SET "
                       "  expires_at = EXCLUDED.expires_at) "
                       "UPDATE kinesis2pg.leases SET "
                       "expires_at = clock_timestamp() + $4::int * interval '1 millisecond', "
                       "updated_at = clock_timestamp() "
                       "WHERE stream = $1 AND target = $2 AND owner = $3",
                       4, p, NULL, err);
}

int k2p_lease_take(PGconn *c, const char *stream, const char *target, const char *shard_id,
                   const char *owner, int ttl_ms, int64_t *epoch, k2p_err *err)
{
    char ttl[16];
    const char *p[] = {stream, target, shard_id, owner, ttl};
    PGresult *r = NULL;
    int rc;
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    *epoch = 0;
    /* The bump waits for every transaction holding the row FOR SHARE (the last owner's fenced
     * commits): once it commits, nothing more of the last owner's can commit for this shard. */
    rc = exec_params(
        c,
        ttl_ms > 0
            ? "INSERT INTO kinesis2pg.leases AS l (stream, target, shard_id, owner, epoch, "
              "expires_at, updated_at) VALUES ($1, $2, $3, $4, 1, "
              "clock_timestamp() + $5::int * interval '1 millisecond', clock_timestamp()) "
              "ON CONFLICT (stream, target, shard_id) DO UPDATE SET owner = EXCLUDED.owner, "
              "epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at, "
              "updated_at = clock_timestamp() "
              "WHERE l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at < clock_timestamp() "
              "RETURNING epoch"
            : "INSERT INTO kinesis2pg.leases AS l (stream, target, shard_id, owner, epoch, "
              "expires_at, updated_at) VALUES ($1, $2, $3, $4, 1, NULL, clock_timestamp()) "
              "ON CONFLICT (stream, target, shard_id) DO UPDATE SET owner = EXCLUDED.owner, "
              "epoch = l.epoch + 1, expires_at = NULL, updated_at = clock_timestamp() "
              "RETURNING epoch",
        ttl_ms > 0 ? 5 : 4, p, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) == 1 && k2p_parse_i64(PQgetvalue(r, 0, 0), epoch) != 0)
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: leases: unexpected epoch");
    PQclear(r);
    return rc;
}

int k2p_lease_release(PGconn *c, const char *stream, const char *target, const char *shard_id,
                      const char *owner, int64_t epoch, int64_t tip_ago_us, k2p_err *err)
{
    char ep[24], ago[24];
    const char *p[] = {stream, target, shard_id, owner, ep, ago};
    snprintf(ep, sizeof ep, "%lld", (long long)epoch);
    snprintf(ago, sizeof ago, "%lld", (long long)tip_ago_us);
    return exec_params(c,
                       "UPDATE kinesis2pg.leases SET owner = NULL, expires_at = NULL, "
                       "tip_at = CASE WHEN $6::bigint >= 0 THEN clock_timestamp() - "
                       "  $6::bigint * interval '1 microsecond' ELSE tip_at END, "
                       "updated_at = clock_timestamp() "
                       "WHERE stream = $1 AND target = $2 AND shard_id = $3 AND owner = $4 "
                       "AND epoch = $5::bigint",
                       6, p, NULL, err);
}

int k2p_lease_release_all(PGconn *c, const char *stream, const char *target, const char *owner,
                          k2p_err *err)
{
    const char *p[] = {stream, target, owner};
    return exec_params(c,
                       "WITH w AS (DELETE FROM kinesis2pg.workers WHERE stream = $1 AND "
                       "  target = $2 AND owner = $3) "
                       "UPDATE kinesis2pg.leases SET owner = NULL, expires_at = NULL, "
                       "updated_at = clock_timestamp() "
                       "WHERE stream = $1 AND target = $2 AND owner = $3",
                       3, p, NULL, err);
}

int k2p_lease_revoke_all(PGconn *c, const char *stream, const char *target, k2p_err *err)
{
    const char *p[] = {stream, target};
    return exec_params(c,
                       "UPDATE kinesis2pg.leases SET epoch = epoch + 1, owner = NULL, "
                       "expires_at = NULL, updated_at = clock_timestamp() "
                       "WHERE stream = $1 AND target = $2 AND owner IS NOT NULL",
                       2, p, NULL, err);
}

void k2p_lease_view_deinit(k2p_lease_view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->rows[i].shard_id);
        free(v->rows[i].owner);
    }
    free(v->rows);
    memset(v, 0, sizeof *v);
}

int k2p_lease_read(PGconn *c, const char *stream, const char *target, const char *owner,
                   k2p_lease_view *out, k2p_err *err)
{
    const char *p[] = {stream, target, owner};
    PGresult *r = NULL;
    int rc, n;

    memset(out, 0, sizeof *out);
    rc = exec_params(
        c,
        "SELECT c.shard_id, c.closed, l.owner, COALESCE(l.epoch, 0), "
        "COALESCE(l.owner IS NOT NULL AND l.expires_at >= clock_timestamp(), false), "
        "COALESCE(l.tip_at >= w.started_at, false), "
        "(SELECT count(*) FROM kinesis2pg.workers x WHERE x.stream = $1 AND x.target = $2 "
        "  AND x.expires_at >= clock_timestamp()) "
        "FROM kinesis2pg.checkpoints c "
        "LEFT JOIN kinesis2pg.leases l ON l.stream = c.stream AND l.target = c.target "
        "  AND l.shard_id = c.shard_id "
        "LEFT JOIN kinesis2pg.workers w ON w.stream = $1 AND w.target = $2 AND w.owner = $3 "
        "WHERE c.stream = $1 AND c.target = $2 ORDER BY c.shard_id",
        3, p, &r, err);
    if (rc)
        return rc;
    n = PQntuples(r);
    out->rows = calloc((size_t)n + 1, sizeof *out->rows);
    if (!out->rows) {
        PQclear(r);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        k2p_lease_row *row = &out->rows[out->n++];
        row->shard_id = k2p_strdup(PQgetvalue(r, i, 0));
        row->closed = strcmp(PQgetvalue(r, i, 1), "t") == 0;
        row->owner = PQgetisnull(r, i, 2) ? NULL : k2p_strdup(PQgetvalue(r, i, 2));
        if (k2p_parse_i64(PQgetvalue(r, i, 3), &row->epoch))
            row->epoch = 0;
        row->live = strcmp(PQgetvalue(r, i, 4), "t") == 0;
        row->tipped = strcmp(PQgetvalue(r, i, 5), "t") == 0;
        if (k2p_parse_i64(PQgetvalue(r, i, 6), &out->live_workers))
            out->live_workers = 1;
        if (!row->shard_id) {
            PQclear(r);
            k2p_lease_view_deinit(out);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return 0;
}

const k2p_lease_row *k2p_lease_view_find(const k2p_lease_view *v, const char *shard_id)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->rows[i].shard_id, shard_id) == 0)
            return &v->rows[i];
    return NULL;
}

const char k2p_lease_fence_sql[] =
    "SELECT 1 FROM kinesis2pg.leases WHERE stream = $1 AND target = $2 "
    "AND (shard_id, epoch) IN (SELECT * FROM unnest($3::text[], $4::bigint[])) FOR SHARE";

/* ---- keeper -------------------------------------------------------------------------------- */

static void *keeper_main(void *arg)
{
    k2p_lease_keeper *k = arg;
    PGconn *c = NULL;
    bool said = false;
    int64_t every_ms = k->ttl_ms / 4 > 50 ? k->ttl_ms / 4 : 50;

    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        k2p_err err = {0};
        int rc;
        struct timespec ts;
        pthread_mutex_unlock(&k->mu);
        if (k2p_pg_conn_broken(c)) {
            PQfinish(c);
            c = k2p_pg_connect(k->conninfo, &err);
        }
        rc = c ? k2p_lease_heartbeat(c, k->stream, k->target, k->owner, k->ttl_ms, &err) : K2P_EIO;
        if (rc == 0) {
            atomic_store(&k->last_ok_us, k2p_wall_us());
            if (said)
                K2P_LOG(K2P_LOG_LEVEL_INFO, "lease_renewed", "leases renewed again");
            said = false;
        } else if (!said) {
            K2P_LOG(K2P_LOG_LEVEL_WARN, "lease_renew_failed",
                    "renewing the leases failed (retrying; after --lease-ttl-ms other processes "
                    "may take them over): %s",
                    err.msg);
            said = true;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(every_ms / 1000);
        ts.tv_nsec += (long)(every_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&k->mu);
        while (!k->stop) {
            if (pthread_cond_timedwait(&k->cv, &k->mu, &ts) != 0)
                break;
        }
    }
    pthread_mutex_unlock(&k->mu);
    PQfinish(c);
    return NULL;
}

int k2p_lease_keeper_start(k2p_lease_keeper *k, k2p_err *err)
{
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    k->stop = false;
    atomic_store(&k->last_ok_us, k2p_wall_us());
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cv);
        return k2p_err_set(err, K2P_EIO, "cannot start the lease keeper thread");
    }
    k->started = true;
    return 0;
}

void k2p_lease_keeper_stop(k2p_lease_keeper *k)
{
    if (!k->started)
        return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    k->started = false;
}

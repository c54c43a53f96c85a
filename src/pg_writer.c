/* pg_writer.c - writer threads: drain shard rings, coalesce batches, COPY them and their
 * ledger rows in one transaction, commit, hand the batches to the checkpoint thread.
 *
 * Each writer owns one libpq connection and a fixed set of shards (a shard's batches always go
 * to the same writer, so they commit in order). A transaction holds: COPY of the target rows,
 * COPY of dead letters, one ledger row per shard (the union of its batches: consecutive, so
 * "every record with a sequence in [first, last] is committed" holds), COMMIT. Transient
 * failures (connection lost, server restarting, deadlock, lock timeout) are retried with
 * backoff on a new connection, redoing the whole transaction; the batches stay in memory until
 * committed.
 *
 * Threading: one thread per k2p_writer; the shard list is shared with the coordinator under
 * list_mu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/log.h"
#include "loader_internal.h"

#define K2P_WRITER_MAX_WAIT_MS 100
#define K2P_COPY_PIECE ((size_t)1 << 20)
#define K2P_WRITER_RETRY_BUDGET_MS 120000

int k2p_writer_add_shard(k2p_writer *w, k2p_shard_rt *s)
{
    int rc = 0;
    pthread_mutex_lock(&w->list_mu);
    if (w->n_shards == w->cap_shards) {
        size_t nc = w->cap_shards ? w->cap_shards * 2 : 16;
        k2p_shard_rt **ns = realloc(w->shards, nc * sizeof *ns);
        if (!ns)
            rc = K2P_ENOMEM;
        else {
            w->shards = ns;
            w->cap_shards = nc;
        }
    }
    if (!rc) {
        w->shards[w->n_shards++] = s;
        s->writer = w;
        k2p_ring_attach(&s->ring, &w->wait, NULL);
    }
    pthread_mutex_unlock(&w->list_mu);
    return rc;
}

typedef struct pending {
    k2p_batch **b;
    size_t n, cap;
    int64_t rows;
    int64_t first_ns;
} pending;

/* ---- the transaction --------------------------------------------------------------------- */

static bool sqlstate_transient(const char *state)
{
    if (!state)
        return true; /* no SQLSTATE: the connection broke */
    return strncmp(state, "08", 2) == 0 ||  /* connection exception */
           strncmp(state, "40", 2) == 0 ||  /* serialization failure, deadlock */
           strncmp(state, "53", 2) == 0 ||  /* insufficient resources */
           strncmp(state, "57", 2) == 0 ||  /* admin shutdown, cannot connect now */
           strcmp(state, "55P03") == 0 ||   /* lock not available */
           strcmp(state, "58030") == 0;     /* I/O error */
}

/* Sets err from a failed result; returns K2P_ERETRY for transient failures, else K2P_EIO. */
static int pg_fail(k2p_writer *w, PGresult *r, const char *what, k2p_err *err)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    char msg[300];
    size_t l;
    if (!m || !*m)
        m = PQerrorMessage(w->conn);
    l = strcspn(m, "\n");
    if (l >= sizeof msg)
        l = sizeof msg - 1;
    memcpy(msg, m, l);
    msg[l] = '\0';
    if (state && strcmp(state, "23505") == 0)
        /* Exactly-once never inserts a record twice: these rows came from elsewhere. */
        return k2p_err_set(err, K2P_EIO,
                           "%s: records of stream '%s' are already in %s (was its state reset, "
                           "or does another tool load it?): truncate the table, load --from "
                           "latest, or use another --table (%s)",
                           what, w->L->o->stream, w->L->qualified_table, msg);
    return k2p_err_set(err,
                       (k2p_pg_conn_broken(w->conn) || sqlstate_transient(state)) ? K2P_ERETRY
                                                                                  : K2P_EIO,
                       "writer %d: %s: %s%s%s", w->index, what, msg, state ? " SQLSTATE " : "",
                       state ? state : "");
}

static int exec_cmd(k2p_writer *w, const char *sql, int n, const char *const *params,
                    const char *what, k2p_err *err)
{
    PGresult *r = n ? PQexecParams(w->conn, sql, n, NULL, params, NULL, NULL, 0)
                    : PQexec(w->conn, sql);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = pg_fail(w, r, what, err);
    PQclear(r);
    return rc;
}

/* Streams header, each batch's buffer at `off` (rows or dead), trailer. */
static int copy_in(k2p_writer *w, const char *sql, pending *p, size_t off, const char *what,
                   k2p_err *err)
{
    PGresult *r = PQexec(w->conn, sql);
    k2p_buf hdr;
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        rc = pg_fail(w, r, what, err);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    k2p_buf_init(&hdr, 0);
    if (k2p_copy_begin(&hdr) || PQputCopyData(w->conn, hdr.data, (int)hdr.len) != 1)
        rc = K2P_ERETRY;
    for (size_t i = 0; !rc && i < p->n; i++) {
        const k2p_buf *b = (const k2p_buf *)((const char *)p->b[i] + off);
        size_t pos = 0;
        /* In pieces of K2P_COPY_PIECE: libpq copies each piece into its send buffer, which
         * grows to the largest piece and never shrinks (a whole multi-megabyte batch at once
         * kept 8 MB per connection resident); it sends as it goes either way. */
        while (!rc && pos < b->len) {
            size_t chunk = K2P_MIN(b->len - pos, K2P_COPY_PIECE);
            if (PQputCopyData(w->conn, b->data + pos, (int)chunk) != 1)
                rc = K2P_ERETRY;
            pos += chunk;
        }
    }
    k2p_buf_reset(&hdr);
    if (!rc && (k2p_copy_end(&hdr) || PQputCopyData(w->conn, hdr.data, (int)hdr.len) != 1))
        rc = K2P_ERETRY;
    k2p_buf_deinit(&hdr);
    if (PQputCopyEnd(w->conn, rc ? "kinesis2pg: send failed" : NULL) != 1 && !rc)
        rc = K2P_ERETRY;
    while ((r = PQgetResult(w->conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc)
            rc = pg_fail(w, r, what, err);
        PQclear(r);
    }
    if (rc == K2P_ERETRY && !err->msg[0])
        pg_fail(w, NULL, what, err);
    return rc;
}

/* Inside the transaction: are we still the owner of (stream, target), or of the lease of every
 * shard in p? (k2p_loader_fence) */
static int fence(k2p_writer *w, const pending *p, k2p_err *err)
{
    k2p_loader *L = w->L;
    k2p_shard_rt **shards = malloc((p->n + 1) * sizeof *shards);
    PGresult *r;
    size_t n = 0;
    int want = 0, rc = 0;

    if (!shards)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    /* A shard's batches are kept together in p: distinct shards are the changes. */
    for (size_t i = 0; i < p->n; i++)
        if (n == 0 || shards[n - 1] != p->b[i]->shard)
            shards[n++] = p->b[i]->shard;
    r = k2p_loader_fence(L, w->conn, shards, n, &want);
    free(shards);
    if (!r)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = pg_fail(w, r, "ownership check", err);
    else if (PQntuples(r) != want)
        rc = k2p_err_set(err, K2P_EINUSE,
                         L->mode == K2P_LOCK_SINGLE
                             ? "another kinesis2pg took over stream '%s' into %s (this one lost "
                               "its lock, e.g. when PostgreSQL restarted); stopping without "
                               "committing"
                             : "another kinesis2pg took over a shard of stream '%s' into %s "
                               "(this process did not renew its lease within --lease-ttl-ms: "
                               "paused, or cut off from PostgreSQL); stopping without committing",
                         L->o->stream, L->qualified_table);
    PQclear(r);
    return rc;
}

/* The ledger rows of p, as PostgreSQL arrays: one per shard, its batches here being
 * consecutive (one writer per shard), so "every record with a sequence number in [first, last]
 * is committed" holds. */
typedef struct ledger_rows {
    k2p_buf shards, firsts, lasts, counts;
    size_t n;
} ledger_rows;

static void ledger_rows_deinit(ledger_rows *lr)
{
    k2p_buf_deinit(&lr->shards);
    k2p_buf_deinit(&lr->firsts);
    k2p_buf_deinit(&lr->lasts);
    k2p_buf_deinit(&lr->counts);
}

static int ledger_rows_of(const pending *p, ledger_rows *lr, k2p_err *err)
{
    memset(lr, 0, sizeof *lr);
    k2p_buf_init(&lr->shards, 0);
    k2p_buf_init(&lr->firsts, 0);
    k2p_buf_init(&lr->lasts, 0);
    k2p_buf_init(&lr->counts, 0);
    if (k2p_buf_putc(&lr->shards, '{') || k2p_buf_putc(&lr->firsts, '{') ||
        k2p_buf_putc(&lr->lasts, '{') || k2p_buf_putc(&lr->counts, '{'))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n;) {
        k2p_shard_rt *s = p->b[i]->shard;
        const char *first = NULL, *last = NULL;
        int64_t n = 0;
        size_t j = i;
        for (; j < p->n && p->b[j]->shard == s; j++) {
            k2p_batch *b = p->b[j];
            if (!b->first_seq[0])
                continue;
            if (!first)
                first = b->first_seq;
            last = b->last_seq;
            n += b->n_rows + b->n_dead;
        }
        if (first) {
            char cnt[24];
            snprintf(cnt, sizeof cnt, "%lld", (long long)n);
            if (k2p_pg_array_append(&lr->shards, s->shard_id) ||
                k2p_pg_array_append(&lr->firsts, first) ||
                k2p_pg_array_append(&lr->lasts, last) || k2p_pg_array_append(&lr->counts, cnt))
                return k2p_err_set(err, K2P_ENOMEM, "out of memory");
            lr->n++;
        }
        i = j;
    }
    if (k2p_buf_putc(&lr->shards, '}') || k2p_buf_putc(&lr->firsts, '}') ||
        k2p_buf_putc(&lr->lasts, '}') || k2p_buf_putc(&lr->counts, '}'))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    return 0;
}

/* One transaction: COPY rows, COPY dead letters, the ledger rows, COMMIT. *commit_sent is set
 * once COMMIT went out: if the connection breaks then, whether it committed is unknown. */
static int commit_pending(k2p_writer *w, pending *p, bool *commit_sent, k2p_err *err)
{
    k2p_loader *L = w->L;
    int64_t rows = 0, dead = 0;
    ledger_rows lr;
    k2p_buf sql;
    int rc = 0;

    *commit_sent = false;
    for (size_t i = 0; i < p->n; i++) {
        rows += p->b[i]->n_rows;
        dead += p->b[i]->n_dead;
    }
    if (rows == 0 && dead == 0)
        return 0; /* only markers: nothing to write */

    k2p_buf_init(&sql, 0);
    if ((rc = ledger_rows_of(p, &lr, err)))
        goto out;
    if ((rc = exec_cmd(w, "BEGIN", 0, NULL, "BEGIN", err)))
        goto out;
    if (rows) {
        k2p_buf_reset(&sql);
        if (k2p_copy_sql_copy(&sql, L->o->schema, L->o->table)) {
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = copy_in(w, sql.data, p, offsetof(k2p_batch, rows), "COPY into the table", err)))
            goto out;
    }
    if (dead &&
        (rc = copy_in(w,
                      "COPY kinesis2pg.dead_letters (stream, target, shard_id, seq_no, sub_seq, reason, data) "
                      "FROM STDIN (FORMAT binary)",
                      p, offsetof(k2p_batch, dead), "COPY into kinesis2pg.dead_letters", err)))
        goto out;
    {
        const char *params[] = {L->o->stream, lr.shards.data, lr.firsts.data, lr.lasts.data,
                                lr.counts.data, L->qualified_table};
        rc = exec_cmd(w,
                      "INSERT INTO kinesis2pg.ledger (stream, target, shard_id, first_seq, "
                      "last_seq, rows) SELECT $1, $6, s, f, l, n FROM unnest($2::text[], "
                      "$3::numeric[], $4::numeric[], $5::int[]) AS u(s, f, l, n)",
                      6, params, "ledger insert", err);
        if (rc)
            goto out;
    }
    /* The ownership check comes last, right before COMMIT: it locks the lease rows FOR SHARE
     * until the transaction ends, and a process frozen (SIGSTOP, a long pause) while holding
     * that lock would hold off a taker's epoch bump, so the window is kept to one round trip
     * instead of the whole COPY. Checked last or first, the guarantee is the same: a taker's
     * bump either committed before (no row: we roll back) or waits for our COMMIT (then it
     * reads our ledger rows). */
    if ((rc = fence(w, p, err)))
        goto out;
    *commit_sent = true;
    rc = exec_cmd(w, "COMMIT", 0, NULL, "COMMIT", err);
    if (rc && !k2p_pg_conn_broken(w->conn))
        *commit_sent = false; /* the server answered: it did not commit */
out:
    if (rc && !k2p_pg_conn_broken(w->conn)) {
        PGresult *r = PQexec(w->conn, "ROLLBACK");
        PQclear(r);
    }
    ledger_rows_deinit(&lr);
    k2p_buf_deinit(&sql);
    return rc;
}

/* After a COMMIT whose answer was lost: did it commit? Its ledger rows say so (they commit
 * with the rows, and the checkpoint thread cannot prune them: it has not been told of these
 * batches). Returns 0 with *committed set, or an error (retried like any other). */
static int committed_before(k2p_writer *w, pending *p, bool *committed, k2p_err *err)
{
    k2p_loader *L = w->L;
    ledger_rows lr;
    int rc = ledger_rows_of(p, &lr, err);
    *committed = false;
    if (!rc) {
        const char *params[] = {L->o->stream, L->qualified_table, lr.shards.data, lr.firsts.data,
                                lr.lasts.data};
        PGresult *r = PQexecParams(
            w->conn,
            "SELECT count(*) FROM kinesis2pg.ledger g JOIN unnest($3::text[], $4::numeric[], "
            "$5::numeric[]) AS u(s, f, l) ON g.shard_id = u.s AND g.first_seq = u.f AND "
            "g.last_seq = u.l WHERE g.stream = $1 AND g.target = $2",
            5, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = pg_fail(w, r, "checking whether the lost COMMIT went through", err);
        else
            *committed = strtoull(PQgetvalue(r, 0, 0), NULL, 10) >= lr.n;
        PQclear(r);
    }
    ledger_rows_deinit(&lr);
    return rc;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Commits p, retrying transient failures on fresh connections until the budget is spent.
 * Then hands every batch to the checkpoint thread. Returns 0 or a fatal code. */
static int flush(k2p_writer *w, pending *p)
{
    k2p_loader *L = w->L;
    int64_t t0 = k2p_now_ns(), deadline = t0 + (int64_t)K2P_WRITER_RETRY_BUDGET_MS * 1000000;
    uint64_t rng = (uint64_t)t0 | 1;
    int attempt = 0, rc;
    bool said = false, commit_unknown = false;

    for (;;) {
        k2p_err err = {0};
        if (k2p_pg_conn_broken(w->conn)) {
            PQfinish(w->conn);
            w->conn = k2p_pg_connect_bounded(L->o->pg_conninfo, L->idle_tx_ms, &err);
            rc = w->conn ? 0 : K2P_ERETRY;
            /* Back after a restart: hold the stream lock again before committing anything. */
            if (!rc && k2p_pg_lock_mode_shared(w->conn, L->o->stream, L->qualified_table, L->mode,
                                               &err))
                rc = K2P_ERETRY;
        } else {
            rc = 0;
        }
        if (!rc && commit_unknown) {
            bool done = false;
            rc = committed_before(w, p, &done, &err);
            if (!rc && done) {
                K2P_LOG(K2P_LOG_LEVEL_INFO, "pg_commit_found",
                        "writer %d: the COMMIT whose answer was lost went through; not redone",
                        w->index);
                break;
            }
            if (!rc)
                commit_unknown = false; /* it did not: redo it */
        }
        if (!rc)
            rc = commit_pending(w, p, &commit_unknown, &err);
        if (!rc)
            break;
        if (rc != K2P_ERETRY || k2p_now_ns() > deadline) {
            k2p_loader_fail(L, K2P_EIO, "%s (batch of %lld rows not committed%s)", err.msg,
                            (long long)p->rows, rc == K2P_ERETRY ? "; gave up after 120 s" : "");
            return rc;
        }
        atomic_store(&w->healthy, false);
        if (!said) {
            K2P_LOG(K2P_LOG_LEVEL_WARN, "pg_retry", "%s; retrying", err.msg);
            said = true;
        }
        sleep_ms(k2p_backoff_ms(attempt++, 100, 5000, &rng));
    }
    if (said)
        K2P_LOG(K2P_LOG_LEVEL_INFO, "pg_recovered", "writer %d: PostgreSQL is back, batch committed",
                w->index);
    atomic_store(&w->healthy, true);
    atomic_fetch_add(&w->transactions, 1);
    for (size_t i = 0; i < p->n; i++) {
        k2p_batch *b = p->b[i];
        k2p_shard_rt *s = b->shard;
        atomic_fetch_add(&s->committed_rows, b->n_rows);
        atomic_fetch_add(&s->committed_dead, b->n_dead);
        atomic_fetch_add(&s->committed_bytes, (long long)b->data_bytes);
        k2p_buf_deinit(&b->rows);
        k2p_buf_deinit(&b->dead);
        k2p_mem_release(L, b->budget);
        b->budget = 0;
        atomic_fetch_add(&L->ckpt_queued, 1);
        if (k2p_ring_push_wait(&w->to_ckpt, b, -1) != 0) {
            atomic_fetch_sub(&L->ckpt_queued, 1);
            k2p_batch_free(b);
        }
    }
    atomic_fetch_add(&w->busy_ns, k2p_now_ns() - t0);
    p->n = 0;
    p->rows = 0;
    return 0;
}

/* Wake-up predicates (they run under the waiter's mutex: atomics only). A reader waiting for
 * memory matters only to a writer that holds rows it could commit to free some; an empty
 * writer waking for it would spin. */
static int has_queued(void *arg)
{
    k2p_writer *w = arg;
    return atomic_load_explicit(&w->queued, memory_order_acquire) > 0 ||
           atomic_load_explicit(&w->L->readers_done, memory_order_acquire);
}

static int has_queued_or_waiter(void *arg)
{
    k2p_writer *w = arg;
    return has_queued(arg) || atomic_load_explicit(&w->L->mem_waiters, memory_order_acquire) > 0;
}

void *k2p_writer_main(void *arg)
{
    k2p_writer *w = arg;
    k2p_loader *L = w->L;
    pending p = {0};
    k2p_shard_rt **snap = NULL;
    size_t snap_cap = 0, rr = 0;

    for (;;) {
        size_t n;
        bool popped = false, any_open = false;
        int64_t now;

        pthread_mutex_lock(&w->list_mu);
        n = w->n_shards;
        if (n > snap_cap) {
            k2p_shard_rt **ns = realloc(snap, n * sizeof *ns);
            if (ns) {
                snap = ns;
                snap_cap = n;
            } else {
                n = snap_cap;
            }
        }
        if (n)
            memcpy(snap, w->shards, n * sizeof *snap);
        pthread_mutex_unlock(&w->list_mu);

        /* Take what is queued, round-robin over shards, up to --batch-rows. */
        for (size_t k = 0; k < n && p.rows < L->o->batch_rows; k++) {
            k2p_shard_rt *s = snap[(rr + k) % n];
            k2p_batch *b;
            int closed = k2p_ring_is_closed(&s->ring);
            while (p.rows < L->o->batch_rows && (b = k2p_ring_pop(&s->ring)) != NULL) {
                atomic_fetch_sub_explicit(&w->queued, 1, memory_order_relaxed);
                if (p.n == p.cap) {
                    size_t nc = p.cap ? p.cap * 2 : 64;
                    k2p_batch **nb = realloc(p.b, nc * sizeof *nb);
                    if (!nb) {
                        k2p_loader_fail(L, K2P_ENOMEM, "writer %d: out of memory", w->index);
                        k2p_batch_free(b);
                        goto out;
                    }
                    p.b = nb;
                    p.cap = nc;
                }
                /* Keep each shard's batches together in order (ledger rows per shard). */
                {
                    size_t pos = p.n;
                    for (size_t q = p.n; q > 0; q--)
                        if (p.b[q - 1]->shard == s) {
                            pos = q;
                            break;
                        }
                    memmove(&p.b[pos + 1], &p.b[pos], (p.n - pos) * sizeof *p.b);
                    p.b[pos] = b;
                    p.n++;
                }
                if (p.rows == 0 && p.n == 1)
                    p.first_ns = k2p_now_ns();
                p.rows += b->n_rows + b->n_dead;
                popped = true;
            }
            if (!closed || k2p_ring_size(&s->ring) > 0)
                any_open = true;
        }
        rr++;
        now = k2p_now_ns();
        if (p.n && (p.rows >= L->o->batch_rows ||
                    now - p.first_ns >= (int64_t)L->o->flush_ms * 1000000 ||
                    atomic_load(&L->readers_done) || !any_open ||
                    atomic_load(&L->mem_waiters) > 0)) {
            if (flush(w, &p))
                goto out;
            continue;
        }
        if (popped)
            continue;
        if (atomic_load(&L->readers_done) && atomic_load(&w->queued) <= 0 && !p.n)
            break;
        {
            int64_t wait_ms = K2P_WRITER_MAX_WAIT_MS;
            if (p.n) {
                int64_t left = L->o->flush_ms - (now - p.first_ns) / 1000000;
                if (left < wait_ms)
                    wait_ms = left > 1 ? left : 1;
            }
            k2p_ring_waiter_wait(&w->wait, p.n ? has_queued_or_waiter : has_queued, w,
                                 wait_ms * 1000000);
        }
    }
out:
    /* On a fatal error, batches still queued are dropped: they were never committed and the
     * next run reads them again from the checkpoint. */
    for (size_t i = 0; i < p.n; i++) {
        k2p_mem_release(L, p.b[i]->budget);
        k2p_batch_free(p.b[i]);
    }
    free(p.b);
    free(snap);
    return NULL;
}

/* checkpoint.c - the checkpoint thread: learns of committed batches from the writers, advances
 * each shard's frontier over gap-free committed batches, persists it and prunes the ledger.
 *
 * A shard's checkpoint is the last sequence number below which every record is durably in the
 * table (or in dead_letters). Batches carry `covers_seq`, the last record their reader had
 * consumed when it sealed them (skipped records included), so the frontier moves over records
 * an earlier crashed run committed. Persisting is an optimisation: the ledger alone keeps a
 * restart exact; so a failed persist is retried later, not fatal. A shard closed (SHARD_END)
 * and persisted is marked `done`, which lets the coordinator start its children.
 *
 * Threading: one thread; consumes each writer's to_ckpt ring; owns ckpt_* fields of shards and
 * its own PostgreSQL connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_internal.h"
#include "kinesis2pg/log.h"

#define K2P_CKPT_PERSIST_MS 200

static void take(k2p_shard_rt *s, const k2p_batch *b)
{
    if (b->batch_no != s->ckpt_next_batch)
        /* Cannot happen: a shard's batches go through one writer, in order. Keep the frontier
         * where it is rather than move it over a gap; the ledger keeps restarts exact. */
        return;
    s->ckpt_next_batch++;
    if (b->covers_seq[0]) {
        memcpy(s->ckpt_seq, b->covers_seq, sizeof s->ckpt_seq);
        s->ckpt_dirty = true;
    }
    if (b->flags & K2P_BATCH_CLOSED) {
        s->ckpt_closed = true;
        s->ckpt_dirty = true;
    }
    if ((b->flags & K2P_BATCH_TIP_EMPTY) && !s->ckpt_seq[0]) {
        s->ckpt_tip_empty = true;
        s->ckpt_dirty = true;
    }
    if (!s->ckpt_dirty) /* nothing to persist: drained as far as this batch */
        atomic_store_explicit(&s->ckpt_saved_batches, s->ckpt_next_batch, memory_order_release);
}

/* Inside the transaction: still the owner of every shard written? (k2p_loader_fence) */
static int fence(k2p_loader *L, k2p_shard_rt *const *shards, size_t n, k2p_err *err)
{
    int want = 0, rc = 0;
    PGresult *r = k2p_loader_fence(L, L->ckpt_conn, shards, n, &want);
    if (!r)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = k2p_err_set(err, K2P_EIO, "PostgreSQL: %s", PQerrorMessage(L->ckpt_conn));
    else if (PQntuples(r) != want)
        rc = k2p_err_set(err, K2P_EINUSE,
                         L->mode == K2P_LOCK_SINGLE
                             ? "another kinesis2pg took over stream '%s' into %s"
                             : "another kinesis2pg took over a shard of stream '%s' into %s "
                               "(this process did not renew its lease in time); stopping without "
                               "committing more",
                         L->o->stream, L->qualified_table);
    PQclear(r);
    return rc;
}

/* Writes every dirty shard's frontier in one transaction. */
static int persist(k2p_loader *L, bool *notify, k2p_err *err)
{
    k2p_buf ids, seqs, closed, empty;
    char ts[K2P_TS_BUF];
    size_t n = 0;
    int rc = 0;
    k2p_shard_rt **dirty = calloc(L->n_shards + 1, sizeof *dirty);

    if (!dirty)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");

    k2p_buf_init(&ids, 0);
    k2p_buf_init(&seqs, 0);
    k2p_buf_init(&closed, 0);
    k2p_buf_init(&empty, 0);
    k2p_buf_putc(&ids, '{');
    k2p_buf_putc(&seqs, '{');
    k2p_buf_putc(&closed, '{');
    k2p_buf_putc(&empty, '{');
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (!s->ckpt_dirty)
            continue;
        if (k2p_pg_array_append(&ids, s->shard_id) || k2p_pg_array_append(&seqs, s->ckpt_seq[0] ? s->ckpt_seq : NULL) ||
            k2p_pg_array_append(&closed, s->ckpt_closed ? "t" : "f") ||
            k2p_pg_array_append(&empty, s->ckpt_tip_empty ? "t" : "f")) {
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
            goto out;
        }
        dirty[n++] = s;
    }
    if (!n)
        goto out;
    if (k2p_buf_putc(&ids, '}') || k2p_buf_putc(&seqs, '}') || k2p_buf_putc(&closed, '}') ||
        k2p_buf_putc(&empty, '}')) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    if (k2p_pg_conn_broken(L->ckpt_conn)) {
        PQfinish(L->ckpt_conn);
        if (!(L->ckpt_conn = k2p_pg_connect_bounded(L->o->pg_conninfo, L->idle_tx_ms, err))) {
            rc = K2P_EIO;
            goto out;
        }
    }
    /* A shard that reached its tip without a record moves its start to this run's start minus
     * a second (DESIGN §1 rule 3), never backwards. */
    k2p_pg_format_ts(L->run_started_us - 1000000, ts);
    {
        const char *p1[] = {L->o->stream, ids.data, seqs.data, closed.data, empty.data, ts,
                            L->qualified_table};
        const char *p2[] = {L->o->stream, ids.data, seqs.data, L->qualified_table};
        if ((rc = k2p_pg_exec(L->ckpt_conn, "BEGIN", 0, NULL, err)) ||
            (rc = fence(L, dirty, n, err)) ||
            (rc = k2p_pg_exec(
                 L->ckpt_conn,
                 "UPDATE kinesis2pg.checkpoints c SET "
                 "sequence_number = GREATEST(u.seq, c.sequence_number), "
                 "closed = c.closed OR u.closed, "
                 "start_at = CASE WHEN u.empty AND u.seq IS NULL AND c.sequence_number IS NULL "
                 "  THEN greatest(COALESCE(c.start_at, '-infinity'), $6::timestamptz) "
                 "  ELSE c.start_at END, "
                 "updated_at = now() "
                 "FROM unnest($2::text[], $3::numeric[], $4::bool[], $5::bool[]) "
                 "  AS u(shard_id, seq, closed, empty) "
                 "WHERE c.stream = $1 AND c.target = $7 AND c.shard_id = u.shard_id",
                 7, p1, err)) ||
            (rc = k2p_pg_exec(L->ckpt_conn,
                              "DELETE FROM kinesis2pg.ledger l "
                              "USING unnest($2::text[], $3::numeric[]) AS u(shard_id, seq) "
                              "WHERE l.stream = $1 AND l.target = $4 "
                              "AND l.shard_id = u.shard_id AND l.last_seq <= u.seq",
                              4, p2, err)) ||
            (rc = k2p_pg_exec(L->ckpt_conn, "COMMIT", 0, NULL, err))) {
            if (!k2p_pg_conn_broken(L->ckpt_conn))
                k2p_pg_exec(L->ckpt_conn, "ROLLBACK", 0, NULL, NULL);
            goto out;
        }
    }
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (!s->ckpt_dirty)
            continue;
        atomic_store(&s->ckpt_saved_us, k2p_wall_us());
        s->ckpt_dirty = false;
        s->ckpt_tip_empty = false;
        atomic_store_explicit(&s->ckpt_saved_batches, s->ckpt_next_batch, memory_order_release);
        if (s->ckpt_closed && !atomic_load(&s->done)) {
            atomic_store(&s->done, true);
            *notify = true;
        }
    }
out:
    free(dirty);
    k2p_buf_deinit(&ids);
    k2p_buf_deinit(&seqs);
    k2p_buf_deinit(&closed);
    k2p_buf_deinit(&empty);
    return rc;
}

static int has_work(void *arg)
{
    k2p_loader *L = arg;
    return atomic_load_explicit(&L->ckpt_queued, memory_order_acquire) > 0 ||
           atomic_load_explicit(&L->writers_done, memory_order_acquire);
}

void *k2p_ckpt_main(void *arg)
{
    k2p_loader *L = arg;
    int64_t last_persist = k2p_now_ns(), retry_at = 0;
    uint64_t rng = (uint64_t)last_persist | 1;
    int failures = 0;
    bool dirty = false, said = false;

    for (;;) {
        bool got = false, finishing = atomic_load(&L->writers_done);
        for (int i = 0; i < L->n_writers; i++) {
            k2p_batch *b;
            while ((b = k2p_ring_pop(&L->writers[i].to_ckpt)) != NULL) {
                atomic_fetch_sub(&L->ckpt_queued, 1);
                take(b->shard, b);
                k2p_batch_free(b);
                got = dirty = true;
            }
        }
        /* After a failure (PostgreSQL down or restarting), try again with backoff rather than
         * reconnecting every wake-up. */
        if (dirty && (finishing || k2p_now_ns() >= retry_at) &&
            (finishing || k2p_now_ns() - last_persist >= K2P_CKPT_PERSIST_MS * 1000000 || !got)) {
            k2p_err err = {0};
            bool notify = false;
            int rc;
            /* The coordinator appends to L->shards only while holding shards_mu. */
            pthread_mutex_lock(&L->shards_mu);
            rc = persist(L, &notify, &err);
            pthread_mutex_unlock(&L->shards_mu);
            if (notify)
                k2p_loader_notify(L);
            last_persist = k2p_now_ns();
            retry_at = rc ? last_persist + k2p_backoff_ms(failures++, 100, 5000, &rng) * 1000000
                          : 0;
            if (rc == 0) {
                failures = 0;
                dirty = false;
                if (said)
                    K2P_LOG(K2P_LOG_LEVEL_INFO, "checkpoint_recovered", "checkpoints saved again");
                said = false;
            } else if (rc == K2P_EINUSE) {
                k2p_loader_fail(L, rc, "%s", err.msg); /* superseded: stop the run */
            } else if (!said) {
                K2P_LOG(K2P_LOG_LEVEL_WARN, "checkpoint_retry",
                        "saving checkpoints failed (will retry): %s", err.msg);
                said = true;
            }
            if (rc && finishing) {
                /* Last chance at the end of the run; the ledger keeps the next run exact. */
                static const struct timespec ts = {0, 200000000};
                nanosleep(&ts, NULL);
                pthread_mutex_lock(&L->shards_mu);
                if (persist(L, &notify, &err) == 0)
                    dirty = false;
                pthread_mutex_unlock(&L->shards_mu);
                break;
            }
        }
        if (finishing && !got && atomic_load(&L->ckpt_queued) <= 0 && !dirty)
            break;
        if (!got)
            k2p_ring_waiter_wait(&L->ckpt_wait, has_work, L,
                                 (int64_t)(dirty ? 20 : 100) * 1000000);
    }
    return NULL;
}

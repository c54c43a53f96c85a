/* loader.c - `kinesis2pg load`: the coordinator. Sets up tables and state, plans each shard's
 * start (shard_plan.c), starts writers, the checkpoint thread and one reader per readable
 * shard, starts children once their parents are read to SHARD_END and checkpointed, and ends
 * the run: drain, final checkpoint, runs row, summary.
 *
 * Threading: k2p_load_run runs on the main thread and owns every other thread; others reach it
 * through k2p_loader_notify / k2p_loader_fail (coord_mu + coord_cv).
 */
#include "kinesis2pg/loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/kinesis_subscribe.h"
#include "kinesis2pg/log.h"
#include "kinesis2pg/metrics.h"
#include "loader_internal.h"
#include "shard_plan.h"

/* Everything between Kinesis and commit: answers being decoded (charged in advance), encoded
 * batches in rings and in writers' transactions. */
#define K2P_DEFAULT_MEMORY ((int64_t)32 << 20)
/* How long the coordinator waits for its PostgreSQL session to come back when it must record a
 * closed shard's children or take a lease: as long as a writer waits with a batch
 * (pg_writer.c). */
#define K2P_PG_WAIT_MS 120000

void k2p_load_opts_from_config(k2p_load_opts *o, const k2p_config *cfg, k2p_cred_chain *creds)
{
    memset(o, 0, sizeof *o);
    o->stream = cfg->stream;
    o->schema = cfg->schema;
    o->table = cfg->table;
    o->pg_conninfo = cfg->pg_conninfo;
    o->endpoint = cfg->endpoint;
    o->region = cfg->region;
    o->ca_file = cfg->ca_file;
    o->creds = creds;
    o->from = cfg->from;
    o->max_messages = cfg->max_messages;
    o->ms_behind_latest = cfg->ms_behind_latest;
    o->raw = cfg->raw;
    o->decompress = cfg->decompress;
    o->consumer = cfg->consumer;
    o->follow = cfg->follow;
    o->primary_key = !cfg->no_primary_key;
    o->chunk_size = (int)cfg->chunk_size;
    o->kinesis_max_attempts = (int)cfg->max_attempts;
    o->writers = (int)cfg->writers;
    o->batch_rows = (int)cfg->batch_rows;
    o->flush_ms = (int)cfg->flush_ms;
    o->poll_min_ms = 200;
    o->idle_ms = 1000;
    o->memory_bytes = cfg->memory_mb > 0 ? cfg->memory_mb << 20 : K2P_DEFAULT_MEMORY;
    o->summary = stderr;
    o->leases = cfg->leases;
    o->lease_ttl_ms = (int)cfg->lease_ttl_ms;
    o->worker_index = (int)cfg->worker_index;
    o->worker_count = (int)cfg->worker_count;
    o->metrics_host = cfg->metrics_host;
    o->metrics_port = cfg->metrics_addr ? cfg->metrics_port : -1;
}

/* ---- shared services ----------------------------------------------------------------------- */

void k2p_loader_notify(k2p_loader *L)
{
    pthread_mutex_lock(&L->coord_mu);
    L->events++;
    pthread_cond_signal(&L->coord_cv);
    pthread_mutex_unlock(&L->coord_mu);
}

void k2p_loader_fail(k2p_loader *L, int code, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&L->coord_mu);
    if (!L->fatal_code) {
        L->fatal_code = code ? code : K2P_EIO;
        va_start(ap, fmt);
        vsnprintf(L->fatal_msg, sizeof L->fatal_msg, fmt, ap);
        va_end(ap);
    }
    L->events++;
    pthread_cond_signal(&L->coord_cv);
    pthread_mutex_unlock(&L->coord_mu);
    atomic_store(&L->stop_readers, true);
    k2p_mem_wake_all(L);
}

void k2p_mem_init(k2p_loader *L)
{
    pthread_mutex_init(&L->mem_mu, NULL);
    for (int i = 0; i < K2P_MEM_CVS; i++)
        pthread_cond_init(&L->mem_cv[i], NULL);
}

void k2p_mem_deinit(k2p_loader *L)
{
    pthread_mutex_destroy(&L->mem_mu);
    for (int i = 0; i < K2P_MEM_CVS; i++)
        pthread_cond_destroy(&L->mem_cv[i]);
}

/* Wakes the waiter whose turn it is (and the few sharing its condition variable). Under
 * mem_mu. */
static void mem_wake_turn(k2p_loader *L)
{
    pthread_cond_broadcast(&L->mem_cv[L->mem_turn % K2P_MEM_CVS]);
}

void k2p_mem_acquire(k2p_loader *L, size_t bytes)
{
    bool waiting = false;
    uint64_t me;
    pthread_mutex_lock(&L->mem_mu);
    /* First come, first served: wait for our turn, then while over budget, unless nothing is
     * in flight (one batch always fits). Without the turns a reader that arrived while room was
     * free took it past those already waiting: on 4 shards one reader found no room for its
     * first call for 5.5 s while the other three read their shards to the end, and the run
     * took twice as long as their pace (docs/benchmarks.md). Each ticket waits on its own
     * condition variable (one of K2P_MEM_CVS), so a release wakes the head of the queue, not
     * every reader: with one condition variable, 256 waiting readers all woke on every commit
     * and every grant (futex and scheduler time on 256-shard loads). */
    me = L->mem_next_turn++;
    while ((me != L->mem_turn ||
            (L->mem_used > 0 && L->mem_used + (int64_t)bytes > L->o->memory_bytes)) &&
           !atomic_load(&L->stop_readers)) {
        if (!waiting) {
            /* Ask the writers to commit now: someone waits for room. Their waiters have
             * mutexes of their own, so notify without holding mem_mu (locks never nest). */
            waiting = true;
            atomic_fetch_add(&L->mem_waiters, 1);
            pthread_mutex_unlock(&L->mem_mu);
            for (int i = 0; i < L->n_writers; i++)
                k2p_ring_waiter_notify(&L->writers[i].wait);
            pthread_mutex_lock(&L->mem_mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&L->mem_cv[me % K2P_MEM_CVS], &L->mem_mu, &ts);
    }
    if (waiting)
        atomic_fetch_sub(&L->mem_waiters, 1);
    L->mem_used += (int64_t)bytes;
    if (me == L->mem_turn) { /* (when stopping, everyone passes and turns no longer matter) */
        L->mem_turn++;
        mem_wake_turn(L); /* the next in line may fit too */
    }
    pthread_mutex_unlock(&L->mem_mu);
}

void k2p_mem_take(k2p_loader *L, size_t bytes)
{
    if (!bytes)
        return;
    pthread_mutex_lock(&L->mem_mu);
    L->mem_used += (int64_t)bytes;
    pthread_mutex_unlock(&L->mem_mu);
}

void k2p_mem_release(k2p_loader *L, size_t bytes)
{
    if (!bytes)
        return;
    pthread_mutex_lock(&L->mem_mu);
    L->mem_used -= (int64_t)bytes;
    mem_wake_turn(L);
    pthread_mutex_unlock(&L->mem_mu);
}

void k2p_mem_wake_all(k2p_loader *L)
{
    pthread_mutex_lock(&L->mem_mu);
    for (int i = 0; i < K2P_MEM_CVS; i++)
        pthread_cond_broadcast(&L->mem_cv[i]);
    pthread_mutex_unlock(&L->mem_mu);
}

/* ---- shards -------------------------------------------------------------------------------- */

static void shard_free(k2p_shard_rt *s)
{
    k2p_batch *b;
    if (!s)
        return;
    while ((b = k2p_ring_pop(&s->ring)) != NULL)
        k2p_batch_free(b);
    k2p_ring_deinit(&s->ring);
    free(s->shard_id);
    for (size_t i = 0; i < s->n_parents; i++)
        free(s->parents[i]);
    free(s->start_seq);
    k2p_stream_state_deinit(&s->own);
    free(s);
}

static k2p_shard_rt *find_shard(k2p_loader *L, const char *id)
{
    for (size_t i = 0; i < L->n_shards; i++)
        if (strcmp(L->shards[i]->shard_id, id) == 0)
            return L->shards[i];
    return NULL;
}

/* Appends a state row for a shard planned in this run, so that children planned later in the
 * same run see their parent. */
static int state_add(k2p_stream_state *st, const char *id, const char *const *parents,
                     size_t np, int64_t start_at_us)
{
    k2p_shard_ckpt *ns = realloc(st->shards, (st->n + 1) * sizeof *ns);
    k2p_shard_ckpt *c;
    if (!ns)
        return K2P_ENOMEM;
    st->shards = ns;
    c = &ns[st->n++];
    memset(c, 0, sizeof *c);
    c->shard_id = k2p_strdup(id);
    c->start_at_us = start_at_us;
    for (size_t i = 0; i < np && i < 2; i++)
        c->parents[c->n_parents++] = k2p_strdup(parents[i]);
    return c->shard_id ? 0 : K2P_ENOMEM;
}

/* Adds a listed shard to the run (once): plans its start, persists it if new. */
static int add_shard(k2p_loader *L, PGconn *conn, const k2p_shard *ls, const k2p_plan_ctx *ctx,
                     k2p_err *err)
{
    const char *parents[2];
    size_t np = 0;
    k2p_plan plan;
    k2p_shard_ckpt *c;
    k2p_shard_rt *s;
    int rc;

    if ((s = find_shard(L, ls->shard_id)) != NULL) {
        /* Added by a planning transaction that was rolled back (the session was cut before
         * its COMMIT answered): record it again, as planned then. Without its row the
         * checkpoints of its batches would update nothing. */
        if (!s->row_pending)
            return 0;
        if ((rc = k2p_pg_add_shard(conn, L->o->stream, L->qualified_table, s->shard_id,
                                   (const char *const *)s->parents, s->n_parents,
                                   s->start_at_us, err)))
            return rc;
        if (!k2p_stream_state_find(&L->state, s->shard_id) &&
            state_add(&L->state, s->shard_id, (const char *const *)s->parents, s->n_parents,
                      s->start_at_us))
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        return 0;
    }
    if (ls->parent_shard_id)
        parents[np++] = ls->parent_shard_id;
    if (ls->adjacent_parent_shard_id)
        parents[np++] = ls->adjacent_parent_shard_id;
    plan = k2p_plan_shard(&L->state, ls->shard_id, parents, np, ctx);
    if (plan.is_new) {
        rc = k2p_pg_add_shard(conn, L->o->stream, L->qualified_table, ls->shard_id, parents, np,
                              plan.start_at_us, err);
        if (rc)
            return rc;
        if (state_add(&L->state, ls->shard_id, parents, np, plan.start_at_us))
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    c = k2p_stream_state_find(&L->state, ls->shard_id);

    s = calloc(1, sizeof *s);
    if (!s || k2p_ring_init(&s->ring, K2P_SHARD_RING)) {
        free(s);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    s->L = L;
    s->shard_id = k2p_strdup(ls->shard_id);
    for (size_t i = 0; i < np; i++)
        s->parents[s->n_parents++] = k2p_strdup(parents[i]);
    s->start_seq = k2p_strdup(plan.seq);
    s->start_at_us = plan.start_at_us;
    s->row_pending = plan.is_new;
    s->had_checkpoint_seq = plan.seq != NULL;
    s->closed_at_listing = ls->ending_seq != NULL;
    if (ls->ending_seq)
        snprintf(s->ending_seq, sizeof s->ending_seq, "%s", ls->ending_seq);
    s->bytes_per_record = 1024; /* until its first answer says better */
    if (c) {
        /* Sharing: the ledger ranges are read again when the lease is taken (k2p_shard_rt.own),
         * as L->state is reloaded on every listing. */
        if (L->mode == K2P_LOCK_SINGLE) {
            s->skip = c->ledger;
            s->n_skip = c->n_ledger;
        }
        s->closed_in_state = c->closed;
    }
    s->mine = L->mode != K2P_LOCK_STATIC ||
              k2p_static_worker_of(ls->shard_id, L->o->worker_count) == L->o->worker_index;
    s->finished = s->closed_in_state;
    s->children_listed = s->closed_in_state && L->mode != K2P_LOCK_SINGLE;
    if (plan.seq)
        memcpy(s->ckpt_seq, plan.seq, K2P_MIN(strlen(plan.seq) + 1, sizeof s->ckpt_seq));
    atomic_store(&s->done, s->closed_in_state);
    atomic_store(&s->state, K2P_READER_PENDING);
    if (!s->shard_id) {
        shard_free(s);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }

    pthread_mutex_lock(&L->shards_mu);
    if (L->n_shards == L->cap_shards) {
        size_t nc = L->cap_shards ? L->cap_shards * 2 : 16;
        k2p_shard_rt **n2 = realloc(L->shards, nc * sizeof *n2);
        if (!n2) {
            pthread_mutex_unlock(&L->shards_mu);
            shard_free(s);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
        L->shards = n2;
        L->cap_shards = nc;
    }
    s->index = L->n_shards;
    L->shards[L->n_shards++] = s;
    pthread_mutex_unlock(&L->shards_mu);
    return k2p_writer_add_shard(&L->writers[s->index % (size_t)L->n_writers], s)
               ? k2p_err_set(err, K2P_ENOMEM, "out of memory")
               : 0;
}

/* The planning transaction committed: every shard's row is in. */
static void rows_committed(k2p_loader *L)
{
    for (size_t i = 0; i < L->n_shards; i++)
        L->shards[i]->row_pending = false;
}

/* Lists the stream's shards and adds the ones not seen yet. */
static int refresh_shards(k2p_loader *L, k2p_kinesis *k, PGconn *conn, const k2p_plan_ctx *ctx,
                          k2p_err *err)
{
    k2p_shard_list list = {0};
    int rc = k2p_kinesis_list_shards(k, L->o->stream, 0, &list, err);
    for (size_t i = 0; !rc && i < list.n; i++)
        rc = add_shard(L, conn, &list.shards[i], ctx, err);
    /* Outside a transaction: a shard is added only after its row was inserted. */
    rows_committed(L);
    k2p_shard_list_deinit(&list);
    return rc;
}

/* The same, but planned in one transaction under a lock that every process of a sharing
 * group takes to plan, on the state as it is now: whichever process records a new shard's start
 * first, the others see it (and the runs row of a process that is still planning does not
 * count as a previous run). The first call (run_id != NULL), in every mode, also inserts our
 * runs row in the same transaction and sets ctx->prev_run_started_us: the plan of a shard
 * without a row depends on whether a run came before, so the runs row must not commit
 * without the shard rows planned with it. */
static int refresh_shards_shared(k2p_loader *L, k2p_kinesis *k, PGconn *conn, k2p_plan_ctx *ctx,
                                 int64_t *run_id, k2p_err *err)
{
    k2p_shard_list list = {0};
    const char *params[] = {L->o->stream, L->qualified_table};
    int rc = k2p_kinesis_list_shards(k, L->o->stream, 0, &list, err);
    if (rc)
        goto out;
    if ((rc = k2p_pg_exec(conn, "BEGIN", 0, NULL, err)) ||
        (rc = k2p_pg_exec(conn,
                          "SELECT pg_advisory_xact_lock(hashtext('kinesis2pg-plan:' || $1 || ':' "
                          "|| $2))",
                          2, params, err)))
        goto fail;
    k2p_stream_state_deinit(&L->state);
    if ((rc = k2p_pg_load_state(conn, L->o->stream, L->qualified_table, &L->state, err)))
        goto fail;
    if (run_id)
        ctx->prev_run_started_us = L->state.prev_run_started_us;
    for (size_t i = 0; !rc && i < list.n; i++)
        rc = add_shard(L, conn, &list.shards[i], ctx, err);
    if (!rc && run_id)
        rc = k2p_pg_run_begin(conn, L->o->stream, L->qualified_table, L->run_started_us, run_id,
                              err);
    if (rc || (rc = k2p_pg_exec(conn, "COMMIT", 0, NULL, err)))
        goto fail;
    rows_committed(L);
    goto out;
fail:
    if (!k2p_pg_conn_broken(conn))
        k2p_pg_exec(conn, "ROLLBACK", 0, NULL, NULL);
    if (run_id)
        *run_id = -1;
out:
    k2p_shard_list_deinit(&list);
    return rc;
}

/* A parent is finished when it is done (closed and checkpointed), or unknown to us (expired
 * past retention: nothing left to read). */
static bool parents_done(k2p_loader *L, const k2p_shard_rt *s)
{
    for (size_t i = 0; i < s->n_parents; i++) {
        k2p_shard_rt *p = find_shard(L, s->parents[i]);
        if (p && !atomic_load(&p->done))
            return false;
    }
    return true;
}

/* ---- sharing: leases and the static split ------------------------------------------------- */

PGresult *k2p_loader_fence(k2p_loader *L, PGconn *conn, k2p_shard_rt *const *shards, size_t n,
                           int *want)
{
    k2p_buf ids, eps;
    PGresult *r = NULL;
    if (L->mode == K2P_LOCK_SINGLE) {
        const char *params[] = {L->o->stream, L->qualified_table, L->epoch};
        *want = 1;
        return PQexecParams(conn, k2p_pg_fence_sql, 3, NULL, params, NULL, NULL, 0);
    }
    k2p_buf_init(&ids, 0);
    k2p_buf_init(&eps, 0);
    if (k2p_buf_putc(&ids, '{') || k2p_buf_putc(&eps, '{'))
        goto out;
    for (size_t i = 0; i < n; i++) {
        char e[24];
        snprintf(e, sizeof e, "%lld", (long long)shards[i]->lease_epoch);
        if (k2p_pg_array_append(&ids, shards[i]->shard_id) || k2p_pg_array_append(&eps, e))
            goto out;
    }
    if (k2p_buf_putc(&ids, '}') || k2p_buf_putc(&eps, '}'))
        goto out;
    {
        const char *params[] = {L->o->stream, L->qualified_table, ids.data, eps.data};
        *want = (int)n;
        r = PQexecParams(conn, k2p_lease_fence_sql, 4, NULL, params, NULL, NULL, 0);
    }
out:
    k2p_buf_deinit(&ids);
    k2p_buf_deinit(&eps);
    return r;
}

/* Starts the reader of a shard whose lease we just took (epoch): reads its row and ledger
 * afresh (the last holder may have committed since we listed it), resumes from there. A shard
 * found closed is not started: *started stays false. */
static int start_held(k2p_loader *L, PGconn *conn, k2p_shard_rt *s, int64_t epoch, bool *started,
                      k2p_err *err)
{
    k2p_shard_ckpt *c;
    int rc;

    *started = false;
    s->held = true;
    s->releasing = false;
    s->lease_epoch = epoch;
    k2p_stream_state_deinit(&s->own);
    s->skip = NULL;
    s->n_skip = 0;
    if ((rc = k2p_pg_load_state_shard(conn, L->o->stream, L->qualified_table, s->shard_id, &s->own,
                                      err))) {
        s->held = false; /* not started: taken again on the next try (start_ready) */
        return rc;
    }
    if ((c = k2p_stream_state_find(&s->own, s->shard_id)) != NULL) {
        if (c->closed) {
            s->finished = true;
            s->db_closed = true;
            atomic_store(&s->done, true);
            return 0;
        }
        free(s->start_seq);
        s->start_seq = NULL;
        if (c->seq && !(s->start_seq = k2p_strdup(c->seq)))
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        s->start_at_us = c->start_at_us;
        s->had_checkpoint_seq = c->seq != NULL;
        s->skip = c->ledger;
        s->n_skip = c->n_ledger;
        /* The frontier the checkpoint thread moves on from (the shard is drained: no batch of
         * it is in flight, see k2p_shard_rt.ckpt_saved_batches). */
        snprintf(s->ckpt_seq, sizeof s->ckpt_seq, "%s", c->seq ? c->seq : "");
    }
    s->last_seq[0] = '\0';
    s->filter_before_us = 0;
    s->stop_reason[0] = '\0';
    atomic_store(&s->stop, false);
    k2p_ring_reopen(&s->ring);
    atomic_store(&s->state, K2P_READER_RUNNING);
    if (pthread_create(&s->thread, NULL, k2p_reader_main, s) != 0)
        return k2p_err_set(err, K2P_EIO, "cannot start a reader thread for shard %s", s->shard_id);
    s->thread_started = true;
    s->ever_started = true;
    *started = true;
    K2P_LOG(K2P_LOG_LEVEL_DEBUG, "lease_taken", "shard=%s epoch=%lld", s->shard_id,
            (long long)epoch);
    return 0;
}

/* True when the shard needs no more reading by anyone in this run (batch mode), or at all. */
static bool shard_finished(const k2p_shard_rt *s)
{
    return s->finished || s->closed_in_state || atomic_load(&s->done);
}

/* One lease tick (sharing modes, coordinator): join readers that ended; give back the leases
 * of drained shards that are finished or asked to go (--leases); read the lease table: closed
 * shards (children may start), shards read to the tip by others since we started, leases we
 * lost (fatal: K2P_EINUSE); then --leases balances: hold ceil(active / live workers) shards,
 * asking readers beyond that to stop and taking free or expired leases below it. */
static int share_tick(k2p_loader *L, PGconn *conn, k2p_err *err)
{
    const bool leases = L->mode == K2P_LOCK_LEASES;
    k2p_lease_view v;
    size_t active = 0, held = 0, target, start;
    int rc;

    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        int st = atomic_load(&s->state);
        if (s->thread_started && st != K2P_READER_RUNNING) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
        }
        if (!s->held || s->thread_started)
            continue;
        if (st == K2P_READER_CAUGHT_UP && !L->o->follow)
            s->finished = true;
        if (!leases || st == K2P_READER_FAILED || (st == K2P_READER_STOPPED && !s->releasing) ||
            (st == K2P_READER_CLOSED && !atomic_load(&s->done)) ||
            atomic_load_explicit(&s->ckpt_saved_batches, memory_order_acquire) !=
                s->next_batch_no)
            continue; /* kept until the end of the run, or not drained yet */
        rc = k2p_lease_release(conn, L->o->stream, L->qualified_table, s->shard_id, L->owner,
                               s->lease_epoch,
                               st == K2P_READER_CAUGHT_UP ? (k2p_now_ns() - s->tip_call_ns) / 1000
                                                          : -1,
                               err);
        if (rc)
            return rc;
        s->held = false;
        s->releasing = false;
    }

    if ((rc = k2p_lease_read(conn, L->o->stream, L->qualified_table, L->owner, &v, err)))
        return rc;
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        const k2p_lease_row *row = k2p_lease_view_find(&v, s->shard_id);
        if (!row)
            continue;
        if (row->closed && !s->db_closed) {
            s->db_closed = true;
            s->finished = true;
            atomic_store(&s->done, true);
        }
        if (row->tipped && !L->o->follow)
            s->finished = true;
        if (s->held && s->lease_epoch &&
            (!row->owner || strcmp(row->owner, L->owner) != 0 || row->epoch != s->lease_epoch)) {
            rc = k2p_err_set(err, K2P_EINUSE,
                             "another kinesis2pg took over shard %s of stream '%s' into %s (this "
                             "process did not renew its lease within --lease-ttl-ms: paused, or "
                             "cut off from PostgreSQL); stopping",
                             s->shard_id, L->o->stream, L->qualified_table);
            goto out;
        }
    }
    if (!leases || atomic_load(&L->stop_readers))
        goto out;

    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (s->held && !s->releasing)
            held++;
        if (!shard_finished(s) && parents_done(L, s))
            active++;
    }
    target = k2p_lease_target(active, v.live_workers > 0 ? (size_t)v.live_workers : 1);
    /* Over: ask the newest readers to stop; their leases go back once they are drained. */
    for (size_t i = L->n_shards; i-- > 0 && held > target;) {
        k2p_shard_rt *s = L->shards[i];
        if (s->held && !s->releasing && atomic_load(&s->state) == K2P_READER_RUNNING) {
            s->releasing = true;
            atomic_store(&s->stop, true);
            held--;
            K2P_LOG(K2P_LOG_LEVEL_INFO, "lease_shed",
                    "shard=%s: giving its lease back to balance %zu active shard(s) over %lld "
                    "process(es)",
                    s->shard_id, active, (long long)v.live_workers);
        }
    }
    /* Under: take free or expired leases, starting at a place of our own so that processes
     * starting together try different shards first. */
    start = L->n_shards ? (size_t)(k2p_lease_hash(L->owner) % L->n_shards) : 0;
    for (size_t j = 0; j < L->n_shards && held < target; j++) {
        k2p_shard_rt *s = L->shards[(start + j) % L->n_shards];
        const k2p_lease_row *row = k2p_lease_view_find(&v, s->shard_id);
        int64_t epoch = 0;
        bool started;
        if (s->held || s->row_pending || shard_finished(s) || !parents_done(L, s) ||
            (row && row->live))
            continue;
        if ((rc = k2p_lease_take(conn, L->o->stream, L->qualified_table, s->shard_id, L->owner,
                                 L->o->lease_ttl_ms, &epoch, err)))
            goto out;
        if (!epoch)
            continue; /* someone was faster */
        if (row && row->owner)
            K2P_LOG(K2P_LOG_LEVEL_INFO, "lease_takeover",
                    "shard=%s: took over the expired lease of %s", s->shard_id, row->owner);
        if ((rc = start_held(L, conn, s, epoch, &started, err)))
            goto out;
        held++;
    }
out:
    k2p_lease_view_deinit(&v);
    return rc;
}

/* Batch mode with --leases: every shard finished (by us or, since we started, by anyone) and
 * no lease of ours left to give back. */
static bool leases_all_finished(k2p_loader *L)
{
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (s->held || s->thread_started || !shard_finished(s))
            return false;
    }
    return true;
}

/* After a coordinator call on our session failed with rc: true, with err cleared, when the
 * session was cut (an outage, a restart, a terminated backend) and the call may be made again
 * once keep_lock has reconnected, for up to K2P_PG_WAIT_MS from the first such failure
 * (*since); false when the run must end with rc. */
static bool retry_after_reconnect(PGconn *conn, int rc, int64_t *since, k2p_err *err)
{
    if (rc == K2P_EINUSE || !k2p_pg_conn_broken(conn))
        return false;
    if (!*since)
        *since = k2p_now_ns();
    if (k2p_now_ns() - *since > (int64_t)K2P_PG_WAIT_MS * 1000000)
        return false;
    k2p_err_clear(err);
    return true;
}

/* A shard that ended (closed and checkpointed, or closed in the database) whose children have
 * not been looked for since (coordinator). */
static bool children_unlisted(k2p_shard_rt *s)
{
    return ((atomic_load(&s->done) && atomic_load(&s->state) == K2P_READER_CLOSED) ||
            s->db_closed) &&
           !s->children_listed;
}

static int start_ready(k2p_loader *L, PGconn *conn, k2p_err *err)
{
    if (L->mode == K2P_LOCK_LEASES)
        return 0; /* share_tick takes leases and starts readers */
    if (L->mode == K2P_LOCK_STATIC) {
        for (size_t i = 0; i < L->n_shards; i++) {
            k2p_shard_rt *s = L->shards[i];
            int64_t epoch = 0;
            bool started;
            int rc;
            if (!s->mine || s->ever_started || s->held || s->row_pending ||
                shard_finished(s) || !parents_done(L, s))
                continue;
            if (atomic_load(&L->stop_readers))
                break;
            /* Ours by the split: taken whoever held it (a replaced pod of the same index is
             * fenced off by the epoch bump). */
            if ((rc = k2p_lease_take(conn, L->o->stream, L->qualified_table, s->shard_id,
                                     L->owner, 0, &epoch, err)) ||
                (rc = start_held(L, conn, s, epoch, &started, err)))
                return rc;
        }
        return 0;
    }
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (s->thread_started || s->closed_in_state || !parents_done(L, s))
            continue;
        if (atomic_load(&L->stop_readers))
            break;
        atomic_store(&s->state, K2P_READER_RUNNING);
        if (pthread_create(&s->thread, NULL, k2p_reader_main, s) != 0)
            return k2p_err_set(err, K2P_EIO, "cannot start a reader thread for shard %s",
                               s->shard_id);
        s->thread_started = true;
        s->ever_started = true;
    }
    return 0;
}

static size_t running_readers(k2p_loader *L)
{
    size_t n = 0;
    for (size_t i = 0; i < L->n_shards; i++)
        n += atomic_load(&L->shards[i]->state) == K2P_READER_RUNNING;
    return n;
}

/* ---- summary ------------------------------------------------------------------------------- */

static const char *state_name(int st)
{
    switch (st) {
    case K2P_READER_PENDING: return "not started";
    case K2P_READER_RUNNING: return "running";
    case K2P_READER_CAUGHT_UP: return "caught up";
    case K2P_READER_CLOSED: return "closed";
    case K2P_READER_STOPPED: return "stopped";
    case K2P_READER_FAILED: return "failed";
    }
    return "?";
}

/* Sharing: the summary lists the shards this process read (or found finished earlier). */
static bool summarised(const k2p_loader *L, const k2p_shard_rt *s)
{
    return L->mode == K2P_LOCK_SINGLE || s->ever_started || s->closed_in_state ||
           (L->mode == K2P_LOCK_STATIC && s->mine);
}

/* The summary as one JSON line (--log-format json). */
static void print_summary_json(k2p_loader *L, const k2p_load_result *res, const char *status)
{
    k2p_buf b;
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    k2p_buf_init(&b, 0);
    k2p_buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"info\",\"event\":\"run_summary\","
                       "\"stream\":",
                   when, ts.tv_nsec / 1000000);
    k2p_buf_put_json_str(&b, L->o->stream, strlen(L->o->stream));
    k2p_buf_puts(&b, ",\"target\":");
    k2p_buf_put_json_str(&b, L->qualified_table, strlen(L->qualified_table));
    k2p_buf_printf(&b,
                   ",\"status\":\"%s\",\"rows\":%lld,\"dead_letters\":%lld,\"bytes\":%lld,"
                   "\"skipped\":%lld,\"seconds\":%.3f,\"shards\":[",
                   status, (long long)res->rows, (long long)res->dead, (long long)res->bytes,
                   (long long)res->skipped, res->seconds);
    for (size_t i = 0, n = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        if (!summarised(L, s))
            continue;
        k2p_buf_puts(&b, n++ ? ",{\"shard\":" : "{\"shard\":");
        k2p_buf_put_json_str(&b, s->shard_id, strlen(s->shard_id));
        k2p_buf_printf(&b, ",\"rows\":%lld,\"dead_letters\":%lld,\"bytes\":%lld,\"state\":\"%s\"",
                       (long long)atomic_load(&s->committed_rows),
                       (long long)atomic_load(&s->committed_dead),
                       (long long)atomic_load(&s->committed_bytes),
                       s->closed_in_state ? "finished earlier" : state_name(atomic_load(&s->state)));
        k2p_buf_puts(&b, ",\"reason\":");
        k2p_buf_put_json_str(&b, s->stop_reason, strlen(s->stop_reason));
        k2p_buf_puts(&b, ",\"checkpoint\":");
        if (s->ckpt_seq[0])
            k2p_buf_put_json_str(&b, s->ckpt_seq, strlen(s->ckpt_seq));
        else
            k2p_buf_puts(&b, "null");
        k2p_buf_putc(&b, '}');
    }
    k2p_buf_puts(&b, "]}\n");
    if (b.data)
        fwrite(b.data, 1, b.len, L->o->summary);
    k2p_buf_deinit(&b);
}

static void print_summary(k2p_loader *L, const k2p_load_result *res, const char *status)
{
    FILE *f = L->o->summary;
    size_t others = 0;
    if (!f)
        return;
    if (k2p_log_json()) {
        print_summary_json(L, res, status);
        return;
    }
    fprintf(f, "kinesis2pg: stream '%s' -> %s: %s\n", L->o->stream, L->qualified_table, status);
    fprintf(f, "  %-24s %10s %10s %12s  %s\n", "shard", "rows", "dead", "bytes", "stopped at");
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        int st = atomic_load(&s->state);
        char where[K2P_SEQ_BUF + 8] = "";
        if (!summarised(L, s)) {
            others++;
            continue;
        }
        if (s->ckpt_seq[0])
            snprintf(where, sizeof where, " at %s", s->ckpt_seq);
        else if (st == K2P_READER_PENDING && s->n_parents)
            snprintf(where, sizeof where, ": waits for its parents");
        if (s->closed_in_state)
            fprintf(f, "  %-24s %10s %10s %12s  finished in an earlier run\n", s->shard_id, "-",
                    "-", "-");
        else
            fprintf(f, "  %-24s %10lld %10lld %12lld  %s%s%s%s%s\n", s->shard_id,
                    (long long)atomic_load(&s->committed_rows),
                    (long long)atomic_load(&s->committed_dead),
                    (long long)atomic_load(&s->committed_bytes), state_name(st),
                    s->stop_reason[0] ? " (" : "", s->stop_reason, s->stop_reason[0] ? ")" : "",
                    where);
    }
    fprintf(f,
            "  total: %lld rows, %lld dead letters, %lld bytes in %.2f s (%.0f rows/s)%s\n",
            (long long)res->rows, (long long)res->dead, (long long)res->bytes, res->seconds,
            res->seconds > 0 ? (double)(res->rows + res->dead) / res->seconds : 0.0, "");
    if (others)
        fprintf(f, "  %zu other shard(s) were read by other processes (%s)\n", others,
                L->mode == K2P_LOCK_LEASES ? "--leases" : "--worker-count");
    if (res->skipped)
        fprintf(f, "  %lld records were already committed by an interrupted run and skipped\n",
                (long long)res->skipped);
    if (res->dead)
        fprintf(f, "  dead letters: kinesis2pg status --stream %s, or SELECT shard_id, seq_no, "
                   "reason FROM kinesis2pg.dead_letters WHERE stream = '%s'\n",
                L->o->stream, L->o->stream);
}

/* ---- metrics (called on the metrics server's thread: atomics and short locks only) --------- */

static int shard_labels(k2p_buf *lb, const k2p_loader *L, const char *shard)
{
    k2p_buf_reset(lb);
    return k2p_prom_label(lb, "stream", L->o->stream) || k2p_prom_label(lb, "shard", shard);
}

static int render_metrics(void *ud, k2p_buf *out)
{
    k2p_loader *L = ud;
    int64_t now_us = k2p_wall_us(), mem;
    k2p_buf lb;
    int rc = 0;
    static const struct {
        const char *name, *type, *help;
    } shard_metrics[] = {
        {"kinesis2pg_rows_total", "counter", "Rows committed to the target table."},
        {"kinesis2pg_dead_letters_total", "counter", "Records committed to kinesis2pg.dead_letters."},
        {"kinesis2pg_bytes_total", "counter", "Payload bytes committed."},
        {"kinesis2pg_records_read_total", "counter", "Records returned by GetRecords."},
        {"kinesis2pg_records_skipped_total", "counter",
         "Records skipped as already committed by an interrupted run."},
        {"kinesis2pg_millis_behind_latest", "gauge", "Last MillisBehindLatest of the shard."},
        {"kinesis2pg_checkpoint_age_seconds", "gauge",
         "Seconds since the shard's checkpoint was last saved (-1: not yet this run)."},
        {"kinesis2pg_ring_batches", "gauge", "Batches queued between the reader and its writer."},
        {"kinesis2pg_shard_reading", "gauge", "1 while the shard's reader runs."},
    };

    k2p_buf_init(&lb, 0);
    pthread_mutex_lock(&L->shards_mu);
    for (size_t m = 0; !rc && m < K2P_ARRAY_LEN(shard_metrics); m++) {
        rc = k2p_prom_help(out, shard_metrics[m].name, shard_metrics[m].type,
                           shard_metrics[m].help);
        for (size_t i = 0; !rc && i < L->n_shards; i++) {
            k2p_shard_rt *s = L->shards[i];
            double v = 0;
            int64_t saved;
            switch (m) {
            case 0: v = (double)atomic_load(&s->committed_rows); break;
            case 1: v = (double)atomic_load(&s->committed_dead); break;
            case 2: v = (double)atomic_load(&s->committed_bytes); break;
            case 3: v = (double)atomic_load(&s->read_records); break;
            case 4: v = (double)atomic_load(&s->skipped); break;
            case 5: v = (double)atomic_load(&s->millis_behind); break;
            case 6:
                saved = atomic_load(&s->ckpt_saved_us);
                v = saved ? (double)(now_us - saved) / 1e6 : -1;
                break;
            case 7: v = (double)k2p_ring_size(&s->ring); break;
            case 8: v = atomic_load(&s->state) == K2P_READER_RUNNING; break;
            }
            rc = shard_labels(&lb, L, s->shard_id) ||
                 k2p_prom_sample(out, shard_metrics[m].name, lb.data, v);
        }
    }
    if (!rc)
        rc = k2p_prom_help(out, "kinesis2pg_kinesis_retries_total", "counter",
                           "GetRecords retries, by reason (throttled: ProvisionedThroughput"
                           "Exceeded and friends; transient: 5xx, timeouts, resets).");
    for (size_t i = 0; !rc && i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        rc = shard_labels(&lb, L, s->shard_id) || k2p_prom_label(&lb, "reason", "throttled") ||
             k2p_prom_sample(out, "kinesis2pg_kinesis_retries_total", lb.data,
                             (double)atomic_load(&s->retries_throttled)) ||
             shard_labels(&lb, L, s->shard_id) || k2p_prom_label(&lb, "reason", "transient") ||
             k2p_prom_sample(out, "kinesis2pg_kinesis_retries_total", lb.data,
                             (double)atomic_load(&s->retries_transient));
    }
    pthread_mutex_unlock(&L->shards_mu);

    if (!rc)
        rc = k2p_prom_help(out, "kinesis2pg_writer_transactions_total", "counter",
                           "Transactions committed by each writer.") ||
             k2p_prom_help(out, "kinesis2pg_writer_busy_seconds_total", "counter",
                           "Seconds each writer spent committing.");
    for (int i = 0; !rc && i < L->n_writers; i++) {
        char w[16];
        snprintf(w, sizeof w, "%d", i);
        k2p_buf_reset(&lb);
        rc = k2p_prom_label(&lb, "stream", L->o->stream) || k2p_prom_label(&lb, "writer", w) ||
             k2p_prom_sample(out, "kinesis2pg_writer_transactions_total", lb.data,
                             (double)atomic_load(&L->writers[i].transactions)) ||
             k2p_prom_sample(out, "kinesis2pg_writer_busy_seconds_total", lb.data,
                             (double)atomic_load(&L->writers[i].busy_ns) / 1e9);
    }
    pthread_mutex_lock(&L->mem_mu);
    mem = L->mem_used;
    pthread_mutex_unlock(&L->mem_mu);
    k2p_buf_reset(&lb);
    if (!rc)
        rc = k2p_prom_label(&lb, "stream", L->o->stream) ||
             k2p_prom_help(out, "kinesis2pg_memory_in_flight_bytes", "gauge",
                           "Bytes of encoded batches between readers and commit.") ||
             k2p_prom_sample(out, "kinesis2pg_memory_in_flight_bytes", lb.data, (double)mem) ||
             k2p_prom_help(out, "kinesis2pg_memory_budget_bytes", "gauge",
                           "The in-flight budget; readers wait above it.") ||
             k2p_prom_sample(out, "kinesis2pg_memory_budget_bytes", lb.data,
                             (double)L->o->memory_bytes) ||
             k2p_prom_label(&lb, "version", K2P_VERSION) ||
             k2p_prom_help(out, "kinesis2pg_info", "gauge", "Build and run information.") ||
             k2p_prom_sample(out, "kinesis2pg_info", lb.data, 1);
    k2p_buf_deinit(&lb);
    return rc ? K2P_ENOMEM : 0;
}

/* Ready: set up, no fatal error, every writer's connection healthy, and a GetRecords answered
 * within the last 30 s (a reader at the tip still polls every second). A --leases process
 * reading no shard (more processes than shards, or waiting for the balance to hand it some) is
 * a standby, there to take over: ready while its heartbeat keeps it in the group. */
static int ready_check(void *ud, char *why, size_t n)
{
    k2p_loader *L = ud;
    int64_t newest = 0, now = k2p_wall_us();
    size_t reading = 0;
    if (!atomic_load(&L->running)) {
        snprintf(why, n, "starting or stopping");
        return 0;
    }
    if (atomic_load(&L->stop_readers)) {
        snprintf(why, n, "stopping");
        return 0;
    }
    for (int i = 0; i < L->n_writers; i++)
        if (!atomic_load(&L->writers[i].healthy)) {
            snprintf(why, n, "writer %d cannot commit to PostgreSQL (retrying)", i);
            return 0;
        }
    pthread_mutex_lock(&L->shards_mu);
    for (size_t i = 0; i < L->n_shards; i++) {
        int64_t t = atomic_load(&L->shards[i]->last_call_ok_us);
        if (t > newest)
            newest = t;
        reading += atomic_load(&L->shards[i]->state) == K2P_READER_RUNNING;
    }
    pthread_mutex_unlock(&L->shards_mu);
    if (L->mode == K2P_LOCK_LEASES && reading == 0) {
        int64_t ttl_us = (int64_t)L->o->lease_ttl_ms * 1000;
        if (now - atomic_load(&L->keeper.last_ok_us) > ttl_us) {
            snprintf(why, n, "no shard to read, and no lease heartbeat in the last %d ms",
                     L->o->lease_ttl_ms);
            return 0;
        }
        return 1;
    }
    if (now - newest > 30000000) {
        snprintf(why, n, "no successful GetRecords in the last 30 s");
        return 0;
    }
    return 1;
}

/* One progress line, rewritten in place, when the summary goes to a terminal (text logs). */
static void progress(k2p_loader *L, int64_t t0_ns, bool final)
{
    FILE *f = L->o->summary;
    long long rows = 0, dead = 0, lag = 0;
    size_t reading = 0;
    double secs = (double)(k2p_now_ns() - t0_ns) / 1e9;
    if (!f || k2p_log_json() || !isatty(fileno(f)))
        return;
    if (final) {
        fputs("\r\033[K", f);
        return;
    }
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        long long m = atomic_load(&s->millis_behind);
        rows += atomic_load(&s->committed_rows);
        dead += atomic_load(&s->committed_dead);
        reading += atomic_load(&s->state) == K2P_READER_RUNNING;
        if (m > lag)
            lag = m;
    }
    fprintf(f, "\r\033[K  %lld rows, %lld dead letters, %.0f rows/s, %zu shard(s) reading, "
               "max lag %lld ms",
            rows, dead, secs > 0 ? (double)(rows + dead) / secs : 0.0, reading, lag);
    fflush(f);
}

/* Keeps the stream lock: a session advisory lock dies with its session, e.g. when PostgreSQL
 * restarts. Once a second, check the coordinator's connection; if it broke, reconnect and hold
 * the lock (shared) again; writers do the same on every reconnect. Whichever of our sessions
 * comes back first shuts out a newcomer; if a newcomer was first, fencing
 * (k2p_pg_take_ownership) stops us from committing and the run ends with a clear error. */
static void keep_lock(k2p_loader *L, PGconn **conn)
{
    k2p_err e = {0};
    if (*conn && PQstatus(*conn) == CONNECTION_OK) {
        PGresult *r = PQexec(*conn, "SELECT 1");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            return;
    }
    PQfinish(*conn);
    if (!(*conn = k2p_pg_connect(L->o->pg_conninfo, &e)))
        return; /* still down: the writers wait and retry too */
    if (k2p_pg_lock_mode_shared(*conn, L->o->stream, L->qualified_table, L->mode, &e) == 0)
        K2P_LOG(K2P_LOG_LEVEL_INFO, "lock_retaken", "stream lock held again after reconnecting");
}

/* ---- the run ------------------------------------------------------------------------------- */

static int validate(const k2p_load_opts *o, k2p_err *err)
{
    if (!o->stream || !*o->stream)
        return k2p_err_set(err, K2P_ECONFIG, "--stream is required");
    if (o->chunk_size < 1 || o->chunk_size > 10000)
        return k2p_err_set(err, K2P_ECONFIG, "--chunk-size must be between 1 and 10000");
    if (o->writers < 1 || o->writers > 64)
        return k2p_err_set(err, K2P_ECONFIG, "--writers must be between 1 and 64");
    if (o->batch_rows < 1 || o->flush_ms < 1)
        return k2p_err_set(err, K2P_ECONFIG, "--batch-rows and --flush-ms must be positive");
    if (o->worker_count < 0 || o->worker_index < 0 ||
        (o->worker_count > 0 && o->worker_index >= o->worker_count))
        return k2p_err_set(err, K2P_ECONFIG,
                           "--worker-index must be from 0 to --worker-count - 1");
    if (o->leases && o->worker_count > 0)
        return k2p_err_set(err, K2P_ECONFIG, "--leases and --worker-count exclude each other");
    if (o->leases && o->lease_ttl_ms < 1000)
        return k2p_err_set(err, K2P_ECONFIG, "--lease-ttl-ms must be at least 1000");
    return 0;
}

static int loader_init(k2p_loader *L, const k2p_load_opts *o)
{
    memset(L, 0, sizeof *L);
    L->o = o;
    k2p_mem_init(L);
    pthread_mutex_init(&L->coord_mu, NULL);
    pthread_cond_init(&L->coord_cv, NULL);
    pthread_mutex_init(&L->shards_mu, NULL);
    if (k2p_ring_waiter_init(&L->ckpt_wait))
        return K2P_ENOMEM;
    L->writers = calloc((size_t)o->writers, sizeof *L->writers);
    if (!L->writers)
        return K2P_ENOMEM;
    L->n_writers = o->writers;
    for (int i = 0; i < o->writers; i++) {
        k2p_writer *w = &L->writers[i];
        w->L = L;
        w->index = i;
        atomic_store(&w->healthy, true);
        pthread_mutex_init(&w->list_mu, NULL);
        if (k2p_ring_waiter_init(&w->wait) || k2p_ring_init(&w->to_ckpt, K2P_CKPT_RING))
            return K2P_ENOMEM;
        k2p_ring_attach(&w->to_ckpt, &L->ckpt_wait, NULL);
    }
    return 0;
}

static void loader_deinit(k2p_loader *L)
{
    for (size_t i = 0; i < L->n_shards; i++)
        shard_free(L->shards[i]);
    free(L->shards);
    for (int i = 0; i < L->n_writers; i++) {
        k2p_writer *w = &L->writers[i];
        k2p_batch *b;
        while ((b = k2p_ring_pop(&w->to_ckpt)) != NULL)
            k2p_batch_free(b);
        k2p_ring_deinit(&w->to_ckpt);
        k2p_ring_waiter_deinit(&w->wait);
        pthread_mutex_destroy(&w->list_mu);
        free(w->shards);
        PQfinish(w->conn);
    }
    free(L->writers);
    k2p_ring_waiter_deinit(&L->ckpt_wait);
    PQfinish(L->ckpt_conn);
    k2p_stream_state_deinit(&L->state);
    free(L->qualified_table);
    k2p_mem_deinit(L);
    pthread_mutex_destroy(&L->coord_mu);
    pthread_cond_destroy(&L->coord_cv);
    pthread_mutex_destroy(&L->shards_mu);
}

int k2p_load_run(const k2p_load_opts *o, k2p_load_result *res, k2p_err *err)
{
    k2p_loader L;
    PGconn *conn = NULL;
    k2p_kinesis *k = NULL;
    k2p_kinesis_opts ko = {0};
    k2p_plan_ctx ctx;
    k2p_metrics *metrics = NULL;
    int64_t run_id = -1, t0 = k2p_now_ns(), last_progress = t0;
    int rc, writers_started = 0, seen_at_tick = -1, fatal = 0;
    const char *status = "ok";
    bool relist = false, looked = false;
    /* Since when our session has been broken while it had work to do (record a closed
     * shard's children, take a shard's lease with --worker-count); 0: not waiting. */
    int64_t pg_wait_since = 0;
    int64_t last_tick = 0;
    const int64_t tick_ms = o->leases && o->lease_ttl_ms / 4 < 1000 ? o->lease_ttl_ms / 4 : 1000;

    memset(res, 0, sizeof *res);
    if ((rc = validate(o, err)))
        return rc;
    if (loader_init(&L, o)) {
        loader_deinit(&L);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    if (o->metrics_port >= 0) {
        k2p_metrics_source src = {render_metrics, ready_check, &L};
        if (!(metrics = k2p_metrics_start(o->metrics_host, o->metrics_port, &src, err))) {
            loader_deinit(&L);
            return err->code;
        }
    }
    /* The budget pays for the big buffers of fetches and batches; the cache of freed ones
     * (buf.c) may only use what of it they leave, plus half as much again. Big blocks in use
     * run past the budget by several MiB (a reader's answer buffer and arena between calls, the
     * writers' COPY data): with the bound at the budget itself, 4 shards of 4 MB answers left
     * the cache empty, doubling page faults (78k -> 155k) and loader CPU per row (2.0 -> 3.6 s
     * per million rows, make bench of 2026-12-04). At 1.5 x the faults are back to 65-71k and
     * peak RSS is 52 MiB (docs/benchmarks.md). The cache's own bound (24 MiB by default) is
     * the same figure here: 4 shards of 4 MB answers cycle six 8 MiB blocks, and with room for
     * three, one was freed and another mapped afresh every few calls (faults 61k -> 38k and
     * loader CPU 2.0 -> 1.5 s per million rows without that bound; peak RSS 57-58 MiB). */
    k2p_buf_pool_set_limit((size_t)o->memory_bytes + (size_t)o->memory_bytes / 2);
    k2p_buf_pool_set_max((size_t)o->memory_bytes + (size_t)o->memory_bytes / 2);

    /* Kinesis first: a wrong endpoint or stream is the most common mistake. */
    ko.endpoint = o->endpoint;
    ko.region = o->region;
    ko.ca_file = o->ca_file;
    ko.creds = o->creds;
    ko.max_attempts = o->kinesis_max_attempts;
    if (!(k = k2p_kinesis_new(&ko, err))) {
        rc = err->code;
        goto out;
    }
    k2p_kinesis_set_cancel_flag(k, &L.stop_readers);
    {
        k2p_stream_summary sum;
        rc = k2p_kinesis_describe_stream_summary(k, o->stream, &sum, err);
        if (rc == K2P_ENOTFOUND) {
            k2p_err_set(err, rc, "stream '%s' not found at %s (region %s)", o->stream,
                        o->endpoint, o->region);
            goto out;
        }
        if (rc == K2P_EAUTH) {
            char d[sizeof err->msg];
            memcpy(d, err->msg, sizeof d);
            k2p_err_set(err, rc, "Kinesis rejected the credentials: %s", d);
            goto out;
        }
        if (rc)
            goto out;
        if (o->consumer) {
            k2p_consumer c;
            if ((rc = k2p_kinesis_ensure_consumer(k, sum.stream_arn, o->consumer, 0, &c, err)))
                goto out;
            snprintf(L.consumer_arn, sizeof L.consumer_arn, "%s", c.arn);
            K2P_LOG(K2P_LOG_LEVEL_INFO, "fanout",
                    "reading with enhanced fan-out (SubscribeToShard) as consumer %s", c.arn);
        }
    }

    if (!(conn = k2p_pg_connect(o->pg_conninfo, err))) {
        rc = err->code;
        goto out;
    }
    if ((rc = k2p_pg_setup(conn, o->schema, o->table, o->raw, o->primary_key, err)))
        goto out;
    if (!(L.qualified_table = k2p_pg_target_name(o->schema, o->table))) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    L.mode = o->leases ? K2P_LOCK_LEASES : o->worker_count > 0 ? K2P_LOCK_STATIC : K2P_LOCK_SINGLE;
    if ((rc = k2p_pg_lock_mode(conn, o->stream, L.qualified_table, L.mode, o->worker_index,
                               o->worker_count, err)) ||
        (rc = k2p_pg_take_ownership(conn, o->stream, L.qualified_table, L.epoch, err)))
        goto out;
    if (L.mode == K2P_LOCK_SINGLE) {
        /* Fence off lease holders that lost their advisory lock (a PostgreSQL restart). */
        if ((rc = k2p_lease_revoke_all(conn, o->stream, L.qualified_table, err)) ||
            (rc = k2p_pg_load_state(conn, o->stream, L.qualified_table, &L.state, err)))
            goto out;
    } else {
        /* A writer or the checkpoint thread frozen between its FOR SHARE ownership check and
         * COMMIT holds the lease rows; PostgreSQL ends that session after one TTL, which is
         * when another process may take the lease anyway, so the taker never waits longer. */
        L.idle_tx_ms = o->lease_ttl_ms > 0 ? o->lease_ttl_ms : 10000;
        k2p_lease_owner_name(L.owner);
        if ((rc = k2p_lease_register(conn, o->stream, L.qualified_table, L.owner,
                                     L.mode == K2P_LOCK_LEASES ? "leases" : "static",
                                     L.idle_tx_ms, err)))
            goto out;
        K2P_LOG(K2P_LOG_LEVEL_INFO, "sharing", "owner=%s mode=%s worker=%d/%d", L.owner,
                L.mode == K2P_LOCK_LEASES ? "leases" : "static", o->worker_index,
                o->worker_count);
    }
    L.run_started_us = k2p_wall_us();
    ctx.from = o->from;
    ctx.run_started_us = L.run_started_us;
    ctx.prev_run_started_us = L.state.prev_run_started_us;
    if (L.mode == K2P_LOCK_LEASES) {
        L.keeper.conninfo = o->pg_conninfo;
        L.keeper.stream = o->stream;
        L.keeper.target = L.qualified_table;
        L.keeper.owner = L.owner;
        L.keeper.ttl_ms = o->lease_ttl_ms;
        if ((rc = k2p_lease_keeper_start(&L.keeper, err)))
            goto out;
    }

    /* Writers and the checkpoint thread first: readers push to them. */
    for (int i = 0; i < o->writers; i++) {
        k2p_writer *w = &L.writers[i];
        if (!(w->conn = k2p_pg_connect_bounded(o->pg_conninfo, L.idle_tx_ms, err)) ||
            (rc = k2p_pg_lock_mode_shared(w->conn, o->stream, L.qualified_table, L.mode, err))) {
            rc = err->code;
            goto stop;
        }
        if (pthread_create(&w->thread, NULL, k2p_writer_main, w) != 0) {
            rc = k2p_err_set(err, K2P_EIO, "cannot start writer threads");
            goto stop;
        }
        w->thread_started = true;
        writers_started++;
    }
    if (!(L.ckpt_conn = k2p_pg_connect_bounded(o->pg_conninfo, L.idle_tx_ms, err))) {
        rc = err->code;
        goto stop;
    }
    if (pthread_create(&L.ckpt_thread, NULL, k2p_ckpt_main, &L) != 0) {
        rc = k2p_err_set(err, K2P_EIO, "cannot start the checkpoint thread");
        goto stop;
    }
    L.ckpt_started = true;

    /* In every mode the first plan and our runs row commit together: a run killed between
     * the two (runs row in, shard rows not) made the next run take the stream's shards for
     * shards created after a previous run and start them at that run's start time, skipping
     * every record put before it (seen once in test_faults_process's kill -9 loop under TSan:
     * 13,050 of 120,000 rows, the rest "caught up" past). */
    rc = refresh_shards_shared(&L, k, conn, &ctx, &run_id, err);
    if (rc || (rc = start_ready(&L, conn, err)) ||
        (L.mode != K2P_LOCK_SINGLE && (rc = share_tick(&L, conn, err))))
        goto stop;
    last_tick = k2p_now_ns();
    atomic_store(&L.running, true);

    /* Wait for events: readers finishing, parents checkpointed as closed, errors, signals. */
    for (int seen = -1;;) {
        pthread_mutex_lock(&L.coord_mu);
        if (L.events == seen && !L.fatal_code && !(o->stop && *o->stop)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&L.coord_cv, &L.coord_mu, &ts);
        }
        seen = L.events;
        /* Read under coord_mu (k2p_loader_fail writes it from any thread); one set after this
         * bumps events too, so the next turn sees it without waiting. */
        fatal = L.fatal_code;
        pthread_mutex_unlock(&L.coord_mu);

        if (k2p_now_ns() - last_progress >= 1000000000LL) {
            progress(&L, t0, false);
            keep_lock(&L, &conn);
            last_progress = k2p_now_ns();
        }
        /* Sharing: a lease tick every tick_ms, or soon after a reader ended. */
        if (L.mode != K2P_LOCK_SINGLE && !fatal && !(o->stop && *o->stop) &&
            !atomic_load(&L.stop_readers) &&
            (k2p_now_ns() - last_tick >= tick_ms * 1000000 ||
             (seen != seen_at_tick && k2p_now_ns() - last_tick >= 100000000LL))) {
            seen_at_tick = seen;
            last_tick = k2p_now_ns();
            if (k2p_pg_conn_broken(conn)) {
                keep_lock(&L, &conn);
                if (k2p_pg_conn_broken(conn))
                    continue; /* PostgreSQL away: the keeper and writers retry too */
            }
            if ((rc = share_tick(&L, conn, err))) {
                if (rc != K2P_EINUSE && k2p_pg_conn_broken(conn)) {
                    rc = 0; /* a lost connection: next tick */
                    k2p_err_clear(err);
                    continue;
                }
                break;
            }
        }
        if (fatal || (o->stop && *o->stop)) {
            if (o->stop && *o->stop)
                atomic_store(&L.signalled, true);
            atomic_store(&L.stop_readers, true);
            k2p_mem_wake_all(&L);
            break;
        }
        if (atomic_load(&L.stop_readers)) /* --max-messages */
            break;
        /* A parent finished: its children may exist now (kinesalite sends no ChildShards,
         * so list again) and may start. */
        relist = false;
        for (size_t i = 0; i < L.n_shards; i++)
            relist = relist || children_unlisted(L.shards[i]);
        /* The children are recorded on our session: while it is broken, wait for keep_lock to
         * reconnect (the run does not end with children unlisted), for as long as a writer
         * waits for PostgreSQL to come back. */
        if (!k2p_pg_conn_broken(conn))
            pg_wait_since = 0;
        if (relist && k2p_pg_conn_broken(conn)) {
            if (!pg_wait_since)
                pg_wait_since = k2p_now_ns();
            if (k2p_now_ns() - pg_wait_since > (int64_t)K2P_PG_WAIT_MS * 1000000) {
                rc = k2p_err_set(err, K2P_EIO,
                                 "PostgreSQL: cannot record the new shards of stream '%s': no "
                                 "connection for %d s",
                                 o->stream, K2P_PG_WAIT_MS / 1000);
                break;
            }
            continue;
        }
        for (size_t i = 0; relist && i < L.n_shards; i++)
            if (children_unlisted(L.shards[i]))
                L.shards[i]->children_listed = true;
        if (relist && (rc = L.mode == K2P_LOCK_SINGLE
                                 ? refresh_shards(&L, k, conn, &ctx, err)
                                 : refresh_shards_shared(&L, k, conn, &ctx, NULL, err))) {
            if (!retry_after_reconnect(conn, rc, &pg_wait_since, err))
                break;
            /* PostgreSQL went away under the listing (an outage, a restart): list again once
             * keep_lock has reconnected (above). Listing is idempotent: a shard already added
             * is skipped (add_shard), a checkpoint row already inserted is kept (ON CONFLICT
             * DO NOTHING). */
            for (size_t i = 0; i < L.n_shards; i++)
                if (L.shards[i]->children_listed && !L.shards[i]->closed_in_state)
                    L.shards[i]->children_listed = false;
            rc = 0;
            continue; /* not on to the end-of-run checks below with the children unlisted */
        }
        if ((rc = start_ready(&L, conn, err))) {
            /* --worker-count takes a shard's lease on our session: cut under it, try again once
             * keep_lock has reconnected (a shard not started is not given up on). */
            if (!retry_after_reconnect(conn, rc, &pg_wait_since, err))
                break;
            rc = 0;
            continue;
        }
        if (L.mode == K2P_LOCK_LEASES) {
            /* Batch: done once every shard was read to its tip since we started (by anyone)
             * or is closed, and our leases are given back (see docs/operations.md). */
            if (!o->follow && leases_all_finished(&L))
                break;
            continue;
        }
        if (running_readers(&L) > 0)
            looked = false;
        else if (!o->follow && L.mode == K2P_LOCK_STATIC && !looked) {
            /* Before leaving, look once more at the parents other workers close: a child of
             * theirs may have become ready. */
            looked = true;
            if ((rc = share_tick(&L, conn, err))) {
                /* Our session cut under it: look again once keep_lock has reconnected. */
                if (!retry_after_reconnect(conn, rc, &pg_wait_since, err))
                    break;
                looked = false;
                rc = 0;
            }
            continue;
        }
        if (!o->follow && running_readers(&L) == 0) {
            /* A shard read to SHARD_END whose last batch is still being committed has children
             * to list (and start) once it is done, and one done whose children are not listed
             * yet (the listing failed and waits for our session): the run is not over. Leaving
             * here ended a batch run with a split's children neither recorded nor read whenever
             * the other readers were caught up first (always, with one shard). */
            bool waiting = false;
            for (size_t i = 0; i < L.n_shards && !waiting; i++)
                waiting = (atomic_load(&L.shards[i]->state) == K2P_READER_CLOSED &&
                           !atomic_load(&L.shards[i]->done)) ||
                          children_unlisted(L.shards[i]);
            if (!waiting)
                break;
        }
    }

stop:
    atomic_store(&L.running, false);
    atomic_store(&L.stop_readers, true);
    k2p_mem_wake_all(&L);
    for (size_t i = 0; i < L.n_shards; i++)
        if (L.shards[i]->thread_started)
            pthread_join(L.shards[i]->thread, NULL);
    atomic_store(&L.readers_done, true);
    for (int i = 0; i < L.n_writers; i++) {
        k2p_ring_waiter_notify(&L.writers[i].wait);
        if (L.writers[i].thread_started)
            pthread_join(L.writers[i].thread, NULL);
    }
    atomic_store(&L.writers_done, true);
    k2p_ring_waiter_notify(&L.ckpt_wait);
    if (L.ckpt_started)
        pthread_join(L.ckpt_thread, NULL);

    for (size_t i = 0; i < L.n_shards; i++) {
        k2p_shard_rt *s = L.shards[i];
        res->rows += atomic_load(&s->committed_rows);
        res->dead += atomic_load(&s->committed_dead);
        res->bytes += atomic_load(&s->committed_bytes);
        res->skipped += atomic_load(&s->skipped);
    }
    res->seconds = (double)(k2p_now_ns() - t0) / 1e9;
    if (L.fatal_code && !rc) {
        rc = L.fatal_code;
        k2p_err_set(err, rc, "%s", L.fatal_msg);
    }
    if (L.mode != K2P_LOCK_SINGLE && conn) {
        /* Give our leases back at once (a crash leaves them to expire). A shard read to its tip
         * and wholly committed tells the others so (tip_at). */
        k2p_err e2 = {0};
        k2p_lease_keeper_stop(&L.keeper);
        if (k2p_pg_conn_broken(conn)) {
            PQfinish(conn);
            conn = k2p_pg_connect(o->pg_conninfo, &e2);
        }
        for (size_t i = 0; conn && !rc && !L.fatal_code && L.mode == K2P_LOCK_LEASES &&
                           i < L.n_shards;
             i++) {
            k2p_shard_rt *s = L.shards[i];
            if (s->held && atomic_load(&s->state) == K2P_READER_CAUGHT_UP &&
                atomic_load(&s->ckpt_saved_batches) == s->next_batch_no)
                k2p_lease_release(conn, o->stream, L.qualified_table, s->shard_id, L.owner,
                                  s->lease_epoch, (k2p_now_ns() - s->tip_call_ns) / 1000, &e2);
        }
        if (conn)
            k2p_lease_release_all(conn, o->stream, L.qualified_table, L.owner, &e2);
    }
    if (rc)
        status = "failed";
    else if (o->stop && *o->stop)
        status = "interrupted";
    else if (o->max_messages && atomic_load(&L.quota_claimed) >= o->max_messages)
        status = "max-messages";
    if (run_id >= 0 && conn) {
        k2p_err e2 = {0};
        if (k2p_pg_conn_broken(conn)) {
            PQfinish(conn);
            conn = k2p_pg_connect(o->pg_conninfo, &e2);
        }
        if (conn)
            k2p_pg_run_end(conn, run_id, res->rows, res->bytes, res->dead, status,
                           rc ? err->msg : NULL, &e2);
    }
    progress(&L, t0, true);
    print_summary(&L, res, status);
out:
    k2p_lease_keeper_stop(&L.keeper);
    k2p_metrics_stop(metrics); /* before the state it reads goes away */
    k2p_kinesis_free(k);
    PQfinish(conn);
    loader_deinit(&L);
    k2p_buf_pool_set_limit(SIZE_MAX);
    k2p_buf_pool_set_max(K2P_BUF_POOL_DEFAULT_MAX);
    return rc;
}

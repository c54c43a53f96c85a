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
    o->writers = (int)cfg->writers;
    o->batch_rows = (int)cfg->batch_rows;
    o->flush_ms = (int)cfg->flush_ms;
    o->poll_min_ms = 200;
    o->idle_ms = 1000;
    o->memory_bytes = K2P_DEFAULT_MEMORY;
    o->summary = stderr;
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
}

void k2p_mem_acquire(k2p_loader *L, size_t bytes)
{
    bool waiting = false;
    pthread_mutex_lock(&L->mem_mu);
    /* Wait while over budget, unless nothing is in flight (one batch always fits). */
    while (L->mem_used > 0 && L->mem_used + (int64_t)bytes > L->o->memory_bytes &&
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
        pthread_cond_timedwait(&L->mem_cv, &L->mem_mu, &ts);
    }
    if (waiting)
        atomic_fetch_sub(&L->mem_waiters, 1);
    L->mem_used += (int64_t)bytes;
    pthread_mutex_unlock(&L->mem_mu);
}

void k2p_mem_release(k2p_loader *L, size_t bytes)
{
    if (!bytes)
        return;
    pthread_mutex_lock(&L->mem_mu);
    L->mem_used -= (int64_t)bytes;
    pthread_cond_broadcast(&L->mem_cv);
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

    if (find_shard(L, ls->shard_id))
        return 0;
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
    s->had_checkpoint_seq = plan.seq != NULL;
    s->closed_at_listing = ls->ending_seq != NULL;
    if (ls->ending_seq)
        snprintf(s->ending_seq, sizeof s->ending_seq, "%s", ls->ending_seq);
    s->bytes_per_record = 1024; /* until its first answer says better */
    if (c) {
        s->skip = c->ledger;
        s->n_skip = c->n_ledger;
        s->closed_in_state = c->closed;
    }
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

/* Lists the stream's shards and adds the ones not seen yet. */
static int refresh_shards(k2p_loader *L, k2p_kinesis *k, PGconn *conn, const k2p_plan_ctx *ctx,
                          k2p_err *err)
{
    k2p_shard_list list = {0};
    int rc = k2p_kinesis_list_shards(k, L->o->stream, 0, &list, err);
    for (size_t i = 0; !rc && i < list.n; i++)
        rc = add_shard(L, conn, &list.shards[i], ctx, err);
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

static int start_ready(k2p_loader *L, k2p_err *err)
{
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
    for (size_t i = 0; i < L->n_shards; i++) {
        k2p_shard_rt *s = L->shards[i];
        k2p_buf_puts(&b, i ? ",{\"shard\":" : "{\"shard\":");
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
 * within the last 30 s (a reader at the tip still polls every second). */
static int ready_check(void *ud, char *why, size_t n)
{
    k2p_loader *L = ud;
    int64_t newest = 0, now = k2p_wall_us();
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
    }
    pthread_mutex_unlock(&L->shards_mu);
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
    if (k2p_pg_lock_stream_shared(*conn, L->o->stream, L->qualified_table, &e) == 0)
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
    return 0;
}

static int loader_init(k2p_loader *L, const k2p_load_opts *o)
{
    memset(L, 0, sizeof *L);
    L->o = o;
    pthread_mutex_init(&L->mem_mu, NULL);
    pthread_cond_init(&L->mem_cv, NULL);
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
    pthread_mutex_destroy(&L->mem_mu);
    pthread_cond_destroy(&L->mem_cv);
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
    int rc, writers_started = 0;
    const char *status = "ok";
    bool relist = false;

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
    if ((rc = k2p_pg_lock_stream(conn, o->stream, L.qualified_table, err)) ||
        (rc = k2p_pg_take_ownership(conn, o->stream, L.qualified_table, L.epoch, err)) ||
        (rc = k2p_pg_load_state(conn, o->stream, L.qualified_table, &L.state, err)))
        goto out;
    L.run_started_us = k2p_wall_us();
    ctx.from = o->from;
    ctx.run_started_us = L.run_started_us;
    ctx.prev_run_started_us = L.state.prev_run_started_us;
    if ((rc = k2p_pg_run_begin(conn, o->stream, L.qualified_table, L.run_started_us, &run_id,
                               err)))
        goto out;

    /* Writers and the checkpoint thread first: readers push to them. */
    for (int i = 0; i < o->writers; i++) {
        k2p_writer *w = &L.writers[i];
        if (!(w->conn = k2p_pg_connect(o->pg_conninfo, err)) ||
            (rc = k2p_pg_lock_stream_shared(w->conn, o->stream, L.qualified_table, err))) {
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
    if (!(L.ckpt_conn = k2p_pg_connect(o->pg_conninfo, err))) {
        rc = err->code;
        goto stop;
    }
    if (pthread_create(&L.ckpt_thread, NULL, k2p_ckpt_main, &L) != 0) {
        rc = k2p_err_set(err, K2P_EIO, "cannot start the checkpoint thread");
        goto stop;
    }
    L.ckpt_started = true;

    if ((rc = refresh_shards(&L, k, conn, &ctx, err)) || (rc = start_ready(&L, err)))
        goto stop;
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
        pthread_mutex_unlock(&L.coord_mu);

        if (k2p_now_ns() - last_progress >= 1000000000LL) {
            progress(&L, t0, false);
            keep_lock(&L, &conn);
            last_progress = k2p_now_ns();
        }
        if (L.fatal_code || (o->stop && *o->stop)) {
            if (o->stop && *o->stop)
                atomic_store(&L.signalled, true);
            atomic_store(&L.stop_readers, true);
            break;
        }
        if (atomic_load(&L.stop_readers)) /* --max-messages */
            break;
        /* A parent finished: its children may exist now (kinesalite sends no ChildShards,
         * so list again) and may start. */
        relist = false;
        for (size_t i = 0; i < L.n_shards; i++) {
            k2p_shard_rt *s = L.shards[i];
            if (atomic_load(&s->done) && atomic_load(&s->state) == K2P_READER_CLOSED &&
                !s->children_listed) {
                s->children_listed = true;
                relist = true;
            }
        }
        if (relist && (rc = refresh_shards(&L, k, conn, &ctx, err)))
            break;
        if ((rc = start_ready(&L, err)))
            break;
        if (!o->follow && running_readers(&L) == 0) {
            /* Anything left to start must wait for a parent that is still being committed. */
            bool waiting = false;
            for (size_t i = 0; i < L.n_shards; i++) {
                k2p_shard_rt *s = L.shards[i];
                if (s->thread_started || s->closed_in_state)
                    continue;
                for (size_t j = 0; j < s->n_parents; j++) {
                    k2p_shard_rt *p = find_shard(&L, s->parents[j]);
                    if (p && atomic_load(&p->state) == K2P_READER_CLOSED && !atomic_load(&p->done))
                        waiting = true;
                }
            }
            if (!waiting)
                break;
        }
    }

stop:
    atomic_store(&L.running, false);
    atomic_store(&L.stop_readers, true);
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
    k2p_metrics_stop(metrics); /* before the state it reads goes away */
    k2p_kinesis_free(k);
    PQfinish(conn);
    loader_deinit(&L);
    return rc;
}

/* shard_reader.c - one thread per shard: GetRecords in a loop, decode each record straight
 * into a batch already in COPY BINARY format (target rows, or dead letters with a reason), and
 * push the batch to the shard's ring for its writer.
 *
 * Pacing: at most one GetRecords per poll_min_ms (AWS allows 5 per second per shard); at the
 * tip, batch mode stops, follow mode sleeps idle_ms between polls. Throttling and transient
 * errors are retried inside the client; an expired iterator is renewed after the last record
 * read. Records inside ledger ranges (committed by an earlier run that crashed before its
 * checkpoint) are consumed but not written again.
 *
 * Threading: the reader thread owns its k2p_kinesis handle, its records buffer and the batch
 * it is filling; a batch pushed to the ring belongs to the writer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/json_validate.h"
#include "kinesis2pg/kinesis_subscribe.h"
#include "kinesis2pg/seqnum.h"
#include "kinesis2pg/unpack.h"
#include "loader_internal.h"
#include "shard_iter.h"

/* Buffers a reader keeps between calls; larger ones are freed after each answer, so an idle
 * shard costs little and memory follows the in-flight budget, not the shard count. */
#define K2P_READER_KEEP_BYTES ((size_t)128 << 10)

k2p_batch *k2p_batch_new(k2p_shard_rt *s)
{
    k2p_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->shard = s;
    k2p_buf_init(&b->rows, 0);
    k2p_buf_init(&b->dead, 0);
    b->created_ns = k2p_now_ns();
    return b;
}

void k2p_batch_free(k2p_batch *b)
{
    if (!b)
        return;
    k2p_buf_deinit(&b->rows);
    k2p_buf_deinit(&b->dead);
    free(b);
}

static void copy_seq(char dst[K2P_SEQ_BUF], const char *src, size_t n)
{
    if (n >= K2P_SEQ_BUF)
        n = K2P_SEQ_BUF - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Sleeps up to ms, in steps, returning early when the run is stopping. */
static void nap(k2p_loader *L, int64_t ms)
{
    while (ms > 0 && !atomic_load(&L->stop_readers)) {
        int64_t step = ms > 50 ? 50 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* What a batch buffer costs, for the budget: the pages its rows fill. A small one gives its
 * spare capacity back. A big one (K2P_BUF_POOL_MIN and more) keeps it, so that the block goes
 * back to the big-block cache whole when the batch is committed, the size the next
 * GetRecords answer needs: shrunk blocks were too small for one, and growing them again
 * faulted their pages back in (51-56k page faults per million rows instead of 38k). Pages
 * beyond len that an earlier user of the block touched stay resident: the cache's bound
 * (1.5 x the budget, loader.c) covers them. */
static size_t held(k2p_buf *buf)
{
    if (buf->cap < K2P_BUF_POOL_MIN) {
        k2p_buf_shrink(buf);
        return buf->cap;
    }
    return (buf->len + 4095) & ~(size_t)4095;
}

/* Hands b to the writer. On failure (stopping) b is freed: it was never committed, so the next
 * run reads it again. Returns 0 or -1. */
static int push_batch(k2p_shard_rt *s, k2p_batch *b)
{
    k2p_loader *L = s->L;
    b->batch_no = s->next_batch_no;
    b->budget = held(&b->rows) + held(&b->dead) + sizeof *b;
    if (s->fetch_held) {
        /* Polling: the rows were paid for before they were read (fetch_charge). The batch
         * keeps that payment rather than waiting for a new one while its rows exist. */
        size_t from_fetch = K2P_MIN(b->budget, s->fetch_charge);
        s->fetch_charge -= from_fetch;
        k2p_mem_take(L, b->budget - from_fetch);
    } else {
        k2p_mem_acquire(L, b->budget); /* fan-out: events arrive unasked, wait here */
    }
    atomic_fetch_add_explicit(&s->writer->queued, 1, memory_order_release);
    for (;;) {
        int rc = k2p_ring_push_wait(&s->ring, b, 100 * 1000000LL);
        if (rc == 0) {
            s->next_batch_no++;
            return 0;
        }
        if (rc != K2P_EAGAIN || atomic_load(&L->stop_readers)) {
            atomic_fetch_sub(&s->writer->queued, 1);
            k2p_mem_release(L, b->budget);
            k2p_batch_free(b);
            return -1;
        }
    }
}

/* True when seq lies in one of the shard's skip ranges. `*idx` walks the sorted ranges as
 * sequence numbers grow. */
static bool in_skip_range(k2p_shard_rt *s, const char *seq, size_t *idx)
{
    while (*idx < s->n_skip && k2p_seq_cmps(seq, s->skip[*idx].last) > 0)
        (*idx)++;
    return *idx < s->n_skip && k2p_seq_cmps(seq, s->skip[*idx].first) >= 0;
}

/* Appends a text or bytea field (int32 length + bytes) to a COPY BINARY tuple. */
static int put_field(k2p_buf *out, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    return k2p_buf_append(out, len, 4) || k2p_buf_append(out, p, n) ? K2P_ENOMEM : 0;
}

/* Appends a dead_letters tuple: stream, target, shard_id, seq_no numeric, sub_seq int8,
 * reason, data bytea. */
static int put_dead(k2p_buf *out, const k2p_shard_rt *s, const k2p_record *r,
                    const k2p_user_record *ur, const char *reason)
{
    unsigned char num[K2P_NUMERIC_MAX_BYTES];
    unsigned char sub[8];
    size_t nl = k2p_copy_numeric(r->seq, r->seq_len, num);
    size_t before = out->len;
    const char *stream = s->L->o->stream, *target = s->L->qualified_table;
    if (!nl)
        return K2P_EINVAL;
    for (int i = 0; i < 8; i++)
        sub[i] = (unsigned char)((uint64_t)ur->sub_seq >> (56 - 8 * i));
    if (k2p_buf_append(out, "\0\7", 2) || put_field(out, stream, strlen(stream)) ||
        put_field(out, target, strlen(target)) ||
        put_field(out, s->shard_id, strlen(s->shard_id)) || put_field(out, num, nl) ||
        (ur->has_sub_seq ? put_field(out, sub, 8)
                         : k2p_buf_append(out, "\xff\xff\xff\xff", 4)) || /* NULL */
        put_field(out, reason, strlen(reason)) || put_field(out, ur->data, ur->data_len)) {
        out->len = before;
        return K2P_ENOMEM;
    }
    return 0;
}

/* Encodes one user record of r into b: a target row, or a dead letter with the reason. */
static int encode_one(k2p_shard_rt *s, k2p_batch *b, const k2p_record *r,
                      const k2p_user_record *ur, const char *id)
{
    k2p_loader *L = s->L;
    char reason[200];
    k2p_json_error je;
    size_t bad;

    if (ur->reason) {
        snprintf(reason, sizeof reason, "%s", ur->reason);
    } else if (!k2p_utf8_valid(ur->pkey, ur->pkey_len, &bad)) {
        snprintf(reason, sizeof reason, "partition key is not valid UTF-8 (byte %zu)", bad);
    } else if (!L->o->raw && k2p_json_validate(ur->data, ur->data_len, &je) != K2P_JSON_OK) {
        k2p_json_error_format(&je, reason, sizeof reason);
    } else {
        k2p_copy_row row = {
            .shard_id = s->shard_id,
            .shard_id_len = strlen(s->shard_id),
            .seq_no = r->seq,
            .seq_no_len = r->seq_len,
            .has_sub_seq = ur->has_sub_seq,
            .sub_seq = ur->sub_seq,
            .msg_id = ur->has_sub_seq ? NULL : id,
            .arrival_us = r->arrival_us,
            .partition = ur->pkey,
            .partition_len = ur->pkey_len,
            .stream = L->o->stream,
            .stream_len = strlen(L->o->stream),
            .data = ur->data,
            .data_len = ur->data_len,
        };
        int rc = k2p_copy_put_row(&b->rows, &row, L->o->raw ? K2P_COPY_BYTEA : K2P_COPY_JSONB);
        if (rc == 0) {
            b->n_rows++;
            return 0;
        }
        if (rc != K2P_EINVAL)
            return rc;
        snprintf(reason, sizeof reason, "record cannot be stored as a row (envelope field "
                                        "out of range)");
    }
    b->n_dead++;
    return put_dead(&b->dead, s, r, ur, reason);
}

/* Encodes the user records of one Kinesis record (one, unless it is a KPL aggregate) into b.
 * An aggregate is never split between batches, so its rows commit together and the ledger
 * and checkpoints, which count Kinesis records, stay exact. Returns 0 or an error that is not
 * the record's fault (*why says what). */
static int encode(k2p_shard_rt *s, k2p_batch *b, const k2p_record *r, k2p_unpacker *u,
                  const char *id, const char **why)
{
    k2p_user_record ur = {0};
    int rc = k2p_unpack_begin(u, r);
    *why = "out of memory";
    if (rc == K2P_EIO)
        *why = "MD5 failed while checking a KPL aggregate";
    while (rc == 0 && (rc = k2p_unpack_next(u, &ur)) == 1)
        rc = encode_one(s, b, r, &ur, id);
    if (rc && rc != K2P_ENOMEM && ur.reason)
        *why = ur.reason;
    return rc;
}

static void set_state(k2p_shard_rt *s, k2p_reader_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_state(k2p_shard_rt *s, k2p_reader_state st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->stop_reason, sizeof s->stop_reason, fmt, ap);
    va_end(ap);
    atomic_store(&s->state, (int)st);
}

static int get_iterator(k2p_shard_rt *s, k2p_kinesis *k, char **it, k2p_err *err)
{
    k2p_iter_pos pos = {s->last_seq, s->start_seq, s->start_at_us, &s->filter_before_us};
    return k2p_shard_iter_open(k, s->L->o->stream, s->shard_id, &pos, it, err);
}

/* While a GetRecords waits out throttling, the memory charged for its answer goes back to the
 * budget, so one throttled shard does not keep others from reading. */
static void release_fetch(void *ud)
{
    k2p_shard_rt *s = ud;
    if (s->fetch_held)
        k2p_mem_release(s->L, s->fetch_charge);
}

static void reacquire_fetch(void *ud)
{
    k2p_shard_rt *s = ud;
    if (s->fetch_held)
        k2p_mem_acquire(s->L, s->fetch_charge);
}

/* Charges (or gives back) the answer of the GetRecords in progress. */
static void fetch_charge(k2p_shard_rt *s, size_t bytes)
{
    s->fetch_charge = bytes;
    k2p_mem_acquire(s->L, bytes);
    s->fetch_held = true;
}

static void fetch_release(k2p_shard_rt *s)
{
    if (s->fetch_held)
        k2p_mem_release(s->L, s->fetch_charge);
    s->fetch_held = false;
}

/* Why the run is stopping, for the summary. */
static const char *stop_reason(k2p_loader *L)
{
    if (atomic_load(&L->signalled))
        return "signal";
    if (L->o->max_messages && atomic_load(&L->quota_claimed) >= L->o->max_messages)
        return "--max-messages reached";
    return "another part of the run failed";
}

/* The GetRecords Limit for the next call. With --max-messages, claims records from the run's
 * budget first (what a call does not read is given back right after it), so a run never reads
 * more than asked. While the budget is spent but other readers hold claims they may give back,
 * waits; returns 0 when the budget is spent for good (or the run stops). */
static int claim_quota(k2p_loader *L)
{
    const k2p_load_opts *o = L->o;
    long long cur;
    if (!o->max_messages)
        return o->chunk_size;
    cur = atomic_load(&L->quota_claimed);
    while (!atomic_load(&L->stop_readers)) {
        long long take = o->max_messages - cur;
        if (take <= 0) {
            /* Outstanding claims: claimed minus what calls have read. */
            if (cur - atomic_load(&L->records_read) <= 0)
                return 0;
            nap(L, 10);
            cur = atomic_load(&L->quota_claimed);
            continue;
        }
        if (take > o->chunk_size)
            take = o->chunk_size;
        if (atomic_compare_exchange_weak(&L->quota_claimed, &cur, cur + take))
            return (int)take;
    }
    return 0;
}

/* Message ids are computed a block of K2P_ID_BLOCK records at a time: arrays for a whole
 * 10,000-record answer were ~350 KB per shard, kept for the whole run (22 MB of peak RSS on
 * 64 shards). */
#define K2P_ID_BLOCK 1024

static void ids_free(k2p_shard_rt *s)
{
    free(s->ids);
    free(s->id_seqs);
    free(s->id_lens);
    s->ids = NULL;
    s->id_seqs = NULL;
    s->id_lens = NULL;
}

/* The message ids of n (<= K2P_ID_BLOCK) of recs' records from `from` on, as ordinary records,
 * eight at a time where the CPU can (k2p_copy_msg_ids); NULL when the scratch space cannot be
 * had (then each row computes its own). */
static const char (*ids_of(k2p_shard_rt *s, const k2p_records *recs, size_t from,
                           size_t n))[K2P_MSG_ID_LEN + 1]
{
    if (!s->ids) {
        s->ids = malloc(K2P_ID_BLOCK * sizeof *s->ids);
        s->id_seqs = malloc(K2P_ID_BLOCK * sizeof *s->id_seqs);
        s->id_lens = malloc(K2P_ID_BLOCK * sizeof *s->id_lens);
        if (!s->ids || !s->id_seqs || !s->id_lens) {
            ids_free(s);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        s->id_seqs[i] = recs->recs[from + i].seq;
        s->id_lens[i] = recs->recs[from + i].seq_len;
    }
    k2p_copy_msg_ids(s->shard_id, strlen(s->shard_id), s->id_seqs, s->id_lens, NULL, n, s->ids);
    return (const char(*)[K2P_MSG_ID_LEN + 1])s->ids;
}

/* Turns the records of one answer into a new batch: rows and dead letters, minus records
 * before the start time and records an interrupted run committed (ledger ranges), and moves the
 * reader's position past them. NULL when that failed: the run is failed and the state set. */
static k2p_batch *batch_of(k2p_shard_rt *s, const k2p_records *recs, k2p_unpacker *u,
                           size_t *skip_idx)
{
    const char *why = "out of memory";
    k2p_batch *b = k2p_batch_new(s);
    const char(*ids)[K2P_MSG_ID_LEN + 1] = NULL;
    /* Room for all the rows at once (a guess from the last batch, 1/16 over): a big buffer
     * then takes one cached block of its final size instead of growing through copies and
     * fresh pages. A wrong guess costs only that growth. */
    if (b && recs->n) {
        size_t extra = s->row_extra ? s->row_extra : 128;
        size_t guess = recs->data_bytes + recs->n * extra;
        (void)k2p_buf_reserve(&b->rows, guess + guess / 16);
    }
    for (size_t i = 0; b && i < recs->n; i++) {
        const k2p_record *r = &recs->recs[i];
        if (i % K2P_ID_BLOCK == 0)
            ids = ids_of(s, recs, i, K2P_MIN(K2P_ID_BLOCK, recs->n - i));
        copy_seq(b->covers_seq, r->seq, r->seq_len);
        if (s->filter_before_us) {
            /* Before the start time (see get_iterator): not ours to load. */
            if (r->arrival_us < s->filter_before_us)
                continue;
            s->filter_before_us = 0;
        }
        if (in_skip_range(s, r->seq, skip_idx)) {
            atomic_fetch_add(&s->skipped, 1);
            continue;
        }
        if (encode(s, b, r, u, ids ? ids[i % K2P_ID_BLOCK] : NULL, &why)) {
            k2p_batch_free(b);
            b = NULL;
            break;
        }
        if (!b->first_seq[0])
            copy_seq(b->first_seq, r->seq, r->seq_len);
        copy_seq(b->last_seq, r->seq, r->seq_len);
        b->data_bytes += r->data_len;
    }
    if (!b) {
        k2p_loader_fail(s->L, K2P_ENOMEM, "shard %s: encoding rows: %s", s->shard_id, why);
        set_state(s, K2P_READER_FAILED, "%s", why);
        return NULL;
    }
    if (b->n_rows && b->rows.len > b->data_bytes)
        s->row_extra = (b->rows.len - b->data_bytes) / (size_t)b->n_rows;
    if (recs->n) {
        copy_seq(s->last_seq, recs->recs[recs->n - 1].seq, recs->recs[recs->n - 1].seq_len);
        atomic_fetch_add(&s->read_records, (long long)recs->n);
        s->any_record = true;
    }
    return b;
}

/* ---- enhanced fan-out (--consumer): SubscribeToShard events instead of GetRecords -------- */

typedef struct fanout {
    k2p_shard_rt *s;
    k2p_unpacker *u;
    size_t skip_idx;
} fanout;

/* Takes up to n records from the --max-messages budget; returns how many. */
static size_t claim_exact(k2p_loader *L, size_t n)
{
    long long cur = atomic_load(&L->quota_claimed);
    for (;;) {
        long long take = L->o->max_messages - cur;
        if (take <= 0)
            return 0;
        if ((size_t)take > n)
            take = (long long)n;
        if (atomic_compare_exchange_weak(&L->quota_claimed, &cur, cur + take))
            return (size_t)take;
    }
}

/* One SubscribeToShardEvent: the same batch, ring and checkpoint path as a GetRecords answer. */
static int on_event(void *ud, const k2p_subscribe_event *ev)
{
    fanout *f = ud;
    k2p_shard_rt *s = f->s;
    k2p_loader *L = s->L;
    const k2p_load_opts *o = L->o;
    k2p_records view = *ev->records; /* the part of the event taken */
    k2p_batch *b;
    bool caught_up, quota_hit = false, shard_end = ev->shard_end;
    size_t skip = 0;

    if (atomic_load(&L->stop_readers)) {
        set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
        return K2P_SUB_STOP;
    }
    if (atomic_load(&s->stop)) {
        set_state(s, K2P_READER_STOPPED, "%s", "lease given to another process");
        return K2P_SUB_STOP;
    }
    /* After a re-subscription, nothing at or before what was taken is taken again. */
    while (skip < view.n && s->last_seq[0] && k2p_seq_cmps(view.recs[skip].seq, s->last_seq) <= 0)
        skip++;
    if (skip) { /* (recs is NULL in an empty event) */
        view.recs += skip;
        view.n -= skip;
    }
    if (o->max_messages) {
        size_t take = claim_exact(L, view.n);
        quota_hit = take < view.n || atomic_load(&L->quota_claimed) >= o->max_messages;
        if (take < view.n)
            shard_end = false; /* records of the shard are left */
        view.n = take;
    }
    atomic_fetch_add(&L->records_read, (long long)view.n);
    atomic_store(&s->millis_behind, view.millis_behind);
    atomic_store(&s->last_call_ok_us, k2p_wall_us());
    if (!(b = batch_of(s, &view, f->u, &f->skip_idx)))
        return K2P_EFATAL;
    k2p_unpacker_trim(f->u, K2P_READER_KEEP_BYTES);
    /* Some services (kinesis-local) never end a closed shard's subscription: its
     * EndingSequenceNumber, once read, is the end too. */
    if (!quota_hit && s->ending_seq[0] && s->last_seq[0] &&
        k2p_seq_cmps(s->last_seq, s->ending_seq) >= 0)
        shard_end = true;
    if (shard_end) {
        b->flags |= K2P_BATCH_CLOSED;
        if (push_batch(s, b) == 0)
            set_state(s, K2P_READER_CLOSED, "read to SHARD_END");
        else
            set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
        return K2P_SUB_STOP;
    }
    /* Caught up: near the tip, and this event brought nothing that arrived before the run
     * began (events have no Limit to compare with; a busy stream keeps sending records, so the
     * run ends at the first record written after it started). */
    caught_up = !s->closed_at_listing && view.millis_behind >= 0 &&
                view.millis_behind < o->ms_behind_latest &&
                (ev->records->n == 0 ||
                 ev->records->recs[ev->records->n - 1].arrival_us >= L->run_started_us);
    if (caught_up && !o->follow && !s->any_record)
        b->flags |= K2P_BATCH_TIP_EMPTY;
    if (b->covers_seq[0] || b->flags) {
        if (push_batch(s, b) != 0) {
            set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
            return K2P_SUB_STOP;
        }
    } else {
        k2p_batch_free(b);
    }
    if (quota_hit) {
        set_state(s, K2P_READER_STOPPED, "--max-messages reached");
        return K2P_SUB_STOP;
    }
    if (caught_up && !o->follow) {
        s->tip_call_ns = k2p_now_ns(); /* the event came after the run started */
        set_state(s, K2P_READER_CAUGHT_UP, "%s", "");
        return K2P_SUB_STOP;
    }
    return 0;
}

/* The reader's loop with --consumer: one SubscribeToShard session after another (the client
 * re-subscribes from the last ContinuationSequenceNumber) until the shard ends, the run is
 * caught up (batch mode), or it stops. */
static void read_fanout(k2p_shard_rt *s, const k2p_kinesis_opts *ko, k2p_unpacker *u)
{
    k2p_loader *L = s->L;
    k2p_err err = {0};
    k2p_subscribe_result res;
    k2p_subscribe_opts so = {.max_attempts = ko->max_attempts};
    k2p_subscription *sub = k2p_subscription_new(ko, &so, &err);
    fanout f = {s, u, 0};
    k2p_iter_pos pos = {s->last_seq, s->start_seq, s->start_at_us, &s->filter_before_us};
    k2p_iter_start start = k2p_shard_iter_start(&pos);
    int rc;

    start.timeout_ms = 0; /* no GetShardIterator AT_TIMESTAMP quirk to work around here */
    if (!sub) {
        k2p_loader_fail(L, err.code, "shard %s: %s", s->shard_id, err.msg);
        set_state(s, K2P_READER_FAILED, "%s", err.msg);
        return;
    }
    k2p_subscription_set_cancel_flag(sub, &L->stop_readers);
    rc = k2p_subscription_run(sub, L->consumer_arn, s->shard_id, &start, on_event, &f, &res,
                              &err);
    if (rc == 0 && res.end == K2P_SUB_END_SHARD &&
        atomic_load(&s->state) == K2P_READER_RUNNING) {
        /* the service ended the shard after an event the callback had already taken */
        k2p_batch *b = k2p_batch_new(s);
        if (b) {
            b->flags |= K2P_BATCH_CLOSED;
            if (push_batch(s, b) == 0)
                set_state(s, K2P_READER_CLOSED, "read to SHARD_END");
        }
    }
    if (atomic_load(&s->state) == K2P_READER_RUNNING) {
        if (rc && !atomic_load(&L->stop_readers)) {
            k2p_loader_fail(L, rc, "stream '%s' shard %s: %s", L->o->stream, s->shard_id,
                            err.msg);
            set_state(s, K2P_READER_FAILED, "%s", err.msg);
        } else {
            set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
        }
    }
    atomic_store(&s->retries_transient, (long long)res.retries);
    k2p_subscription_free(sub);
}

void *k2p_reader_main(void *arg)
{
    k2p_shard_rt *s = arg;
    k2p_loader *L = s->L;
    const k2p_load_opts *o = L->o;
    k2p_kinesis_opts ko = {0};
    k2p_kinesis *k = NULL;
    k2p_records recs;
    k2p_unpacker unpack;
    k2p_err err = {0};
    char *it = NULL;
    size_t skip_idx = 0;
    int64_t last_call = 0;
    size_t last_bytes = 0; /* payload bytes of the last answer, for pacing */

    k2p_records_init(&recs);
    k2p_unpacker_init(&unpack, o->decompress, 0);
    s->any_record = s->had_checkpoint_seq;
    ko.endpoint = o->endpoint;
    ko.region = o->region;
    ko.ca_file = o->ca_file;
    ko.creds = o->creds;
    ko.max_attempts = o->kinesis_max_attempts;
    if (!(k = k2p_kinesis_new(&ko, &err))) {
        k2p_loader_fail(L, err.code, "stream '%s' shard %s: %s", o->stream, s->shard_id, err.msg);
        set_state(s, K2P_READER_FAILED, "%s", err.msg);
        goto out;
    }
    k2p_kinesis_set_cancel_flag(k, &L->stop_readers);
    k2p_kinesis_set_backoff_hooks(k, release_fetch, reacquire_fetch, s);
    if (L->consumer_arn[0]) {
        read_fanout(s, &ko, &unpack);
        goto out;
    }
    if (get_iterator(s, k, &it, &err)) {
        if (!atomic_load(&L->stop_readers))
            k2p_loader_fail(L, err.code, "%s", err.msg);
        set_state(s, atomic_load(&L->stop_readers) ? K2P_READER_STOPPED : K2P_READER_FAILED,
                  "%s", err.msg);
        goto out;
    }

    for (;;) {
        k2p_batch *b;
        int64_t now, wait;
        bool caught_up, empty;
        int rc, limit, pace_ms;

        if (atomic_load(&L->stop_readers)) {
            set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
            break;
        }
        if (atomic_load(&s->stop)) {
            set_state(s, K2P_READER_STOPPED, "%s", "lease given to another process");
            break;
        }
        limit = claim_quota(L);
        if (!limit) {
            set_state(s, K2P_READER_STOPPED, "%s",
                      atomic_load(&L->stop_readers) ? stop_reason(L) : "--max-messages reached");
            break;
        }
        now = k2p_now_ns();
        /* At most one call per poll_min_ms; once the service has throttled this shard, also
         * no faster than its 2 MB/s read limit for what the last answer carried. */
        pace_ms = o->poll_min_ms;
        if (atomic_load(&s->retries_throttled) > 0 && last_bytes / 2000 > (size_t)pace_ms)
            pace_ms = (int)(last_bytes / 2000);
        wait = (last_call + (int64_t)pace_ms * 1000000 - now) / 1000000;
        if (last_call && wait > 0)
            nap(L, wait);
        /* Charge the answer to the in-flight budget before asking for it: at most two of
         * response (1.4x the payload), decoded records (1x) and encoded rows (1.2x) are alive
         * at once. Released below, once the
         * rows are in a batch (which is then charged what it really holds). */
        fetch_charge(s, (size_t)((double)limit * s->bytes_per_record * 2.5) + 65536);
        last_call = k2p_now_ns();
        rc = k2p_kinesis_get_records(k, it, limit, &recs, &err);
        k2p_kinesis_trim(k, K2P_READER_KEEP_BYTES); /* parsed: the response is not needed */
        if (rc)
            fetch_release(s);
        else
            atomic_fetch_add(&L->records_read, (long long)recs.n);
        if (o->max_messages) /* give back what was claimed but not read */
            atomic_fetch_sub(&L->quota_claimed, (long long)limit - (rc ? 0 : (long long)recs.n));
        if (rc == K2P_EEXPIRED) {
            free(it);
            it = NULL;
            if (get_iterator(s, k, &it, &err) == 0)
                continue;
            rc = err.code;
        }
        if (rc) {
            if (atomic_load(&L->stop_readers)) {
                set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
                break;
            }
            k2p_loader_fail(L, rc, "stream '%s' shard %s: %s", o->stream, s->shard_id, err.msg);
            set_state(s, K2P_READER_FAILED, "%s", err.msg);
            break;
        }
        atomic_store(&s->millis_behind, recs.millis_behind);
        atomic_store(&s->last_call_ok_us, k2p_wall_us());
        {
            const k2p_kinesis_stats *ks = k2p_kinesis_get_stats(k);
            atomic_store(&s->retries_throttled, (long long)ks->retries_throttled);
            atomic_store(&s->retries_transient, (long long)ks->retries_transient);
        }

        b = batch_of(s, &recs, &unpack, &skip_idx);
        /* Learn the record size for the next charge. The charge itself is handed to the batch
         * (push_batch) and what is left given back after it. */
        last_bytes = recs.data_bytes;
        if (recs.n && recs.data_bytes)
            s->bytes_per_record =
                0.7 * s->bytes_per_record + 0.3 * ((double)recs.data_bytes / (double)recs.n);
        if (!b)
            break;
        if (!recs.next_iterator) {
            /* SHARD_END: everything of this shard is in this and earlier batches. */
            b->flags |= K2P_BATCH_CLOSED;
            if (push_batch(s, b) == 0)
                set_state(s, K2P_READER_CLOSED, "read to SHARD_END");
            else
                set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
            break;
        }
        /* A shard ListShards reported closed is read until SHARD_END, however empty the
         * answers: some services (kinesalite) drop NextShardIterator only after an empty read
         * past the end, and its children may start only then. */
        caught_up = !s->closed_at_listing && recs.n < (size_t)limit &&
                    recs.millis_behind < o->ms_behind_latest;
        empty = recs.n == 0;
        /* Everything needed from the answer is in the batch now: free the decoded records
         * before pushing, which may wait for room in the budget. */
        free(it);
        it = k2p_strdup(recs.next_iterator);
        k2p_records_trim(&recs, K2P_READER_KEEP_BYTES);
        k2p_unpacker_trim(&unpack, K2P_READER_KEEP_BYTES);
        if (!it) {
            k2p_batch_free(b);
            k2p_loader_fail(L, K2P_ENOMEM, "shard %s: out of memory", s->shard_id);
            set_state(s, K2P_READER_FAILED, "out of memory");
            break;
        }
        if (caught_up && !o->follow && !s->any_record)
            b->flags |= K2P_BATCH_TIP_EMPTY;
        if (b->covers_seq[0] || b->flags) {
            if (push_batch(s, b) != 0) {
                set_state(s, K2P_READER_STOPPED, "%s", stop_reason(L));
                break;
            }
        } else {
            k2p_batch_free(b); /* nothing read */
        }
        fetch_release(s);
        if (caught_up && !o->follow) {
            s->tip_call_ns = last_call;
            set_state(s, K2P_READER_CAUGHT_UP, "%s", "");
            break;
        }
        /* Following the tip: sleep after an empty answer only; while records keep coming,
         * the next call follows after poll_min_ms, which keeps latency low. */
        if (caught_up && empty)
            nap(L, o->idle_ms);
    }
out:
    fetch_release(s);
    /* No more batches from this shard: the writer drains the ring and drops it. */
    k2p_ring_close(&s->ring);
    free(it);
    k2p_records_deinit(&recs);
    k2p_unpacker_deinit(&unpack);
    ids_free(s);
    k2p_kinesis_free(k);
    k2p_loader_notify(L);
    return NULL;
}

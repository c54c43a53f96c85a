/* loader_internal.h - what the loader's threads share: shards, batches, writers, the memory
 * budget and the coordinator's event channel.
 *
 * Ownership and threads:
 *  - k2p_shard_rt: created and freed by the coordinator (main thread); lives for the whole
 *    run. Its reader thread writes the reader_* fields; the checkpoint thread owns ckpt_*;
 *    counters that others read are atomics.
 *  - k2p_batch: made by a reader, handed to its writer through the shard's SPSC ring, then to
 *    the checkpoint thread through the writer's SPSC ring, which frees it.
 *  - Locks are never nested: coord_mu, shards_mu, list_mu, mem_mu are each taken alone, and no
 *    thread takes a ring waiter's mutex while holding one of them.
 */
#ifndef K2P_LOADER_INTERNAL_H
#define K2P_LOADER_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/loader.h"
#include "kinesis2pg/ring.h"
#include "lease.h"
#include "pg_state.h"

#define K2P_SEQ_BUF 132
#define K2P_SHARD_RING 16    /* batches queued per shard */
#define K2P_CKPT_RING 4096   /* committed batches queued per writer */
#define K2P_MEM_CVS 64       /* condition variables of the memory budget's queue */

enum {
    K2P_BATCH_CLOSED = 1,    /* the shard ended (SHARD_END) after this batch */
    K2P_BATCH_TIP_EMPTY = 2, /* reached the tip without ever finding a record */
};

typedef enum k2p_reader_state {
    K2P_READER_PENDING = 0, /* waiting for its parents */
    K2P_READER_RUNNING,
    K2P_READER_CAUGHT_UP,   /* reached the tip (batch mode) */
    K2P_READER_CLOSED,      /* read to SHARD_END */
    K2P_READER_STOPPED,     /* stop request or --max-messages */
    K2P_READER_FAILED,
} k2p_reader_state;

struct k2p_loader;
struct k2p_writer;

typedef struct k2p_shard_rt {
    struct k2p_loader *L;
    char *shard_id;
    char *parents[2];
    size_t n_parents;
    size_t index; /* in L->shards */

    /* Start position (planned by the coordinator before the reader starts). */
    char *start_seq;     /* AFTER_SEQUENCE_NUMBER this, or NULL */
    int64_t start_at_us; /* else AT_TIMESTAMP this; -1: TRIM_HORIZON */
    k2p_seq_range *skip; /* ledger ranges committed past the checkpoint; borrowed from state */
    size_t n_skip;
    bool had_checkpoint_seq;
    int64_t filter_before_us; /* reader: skip records until one arrived at/after this (0: off) */
    double bytes_per_record;  /* reader: running estimate, to charge a GetRecords in advance */
    size_t row_extra;         /* reader: COPY bytes per row beyond its data, last batch's */
    size_t fetch_charge;      /* reader: what the GetRecords in progress is charged */
    bool fetch_held;          /* reader: that charge is currently held */
    bool closed_in_state; /* finished in an earlier run */
    bool closed_at_listing; /* ListShards gave an EndingSequenceNumber: read to SHARD_END */
    char ending_seq[K2P_SEQ_BUF]; /* that EndingSequenceNumber ("" while open) */
    bool children_listed; /* coordinator: shards re-listed after this one closed */
    /* Coordinator: its checkpoints row was inserted by a planning transaction that has not
     * committed (yet): not started until it has, and inserted again if it failed. */
    bool row_pending;

    /* Reader thread. */
    pthread_t thread;
    bool thread_started;
    k2p_ring ring; /* reader → writer */
    struct k2p_writer *writer;
    uint64_t next_batch_no;
    char last_seq[K2P_SEQ_BUF]; /* last record consumed (reader only) */
    bool any_record;            /* reader: a record was ever read (this run or before) */
    /* reader: message ids of the records being encoded, a block at a time (shard_reader.c) */
    char (*ids)[K2P_MSG_ID_LEN + 1];
    const char **id_seqs;
    size_t *id_lens;
    atomic_llong millis_behind;     /* last MillisBehindLatest (-1 unknown) */
    atomic_llong last_call_ok_us;   /* wall time of the last successful GetRecords */
    atomic_llong retries_throttled; /* copies of the reader's client stats, for metrics */
    atomic_llong retries_transient;
    atomic_int state; /* k2p_reader_state */
    char stop_reason[160];

    /* Counters (readers add "read", writers add "committed"); atomics for the summary. */
    atomic_llong read_records;
    atomic_llong skipped;
    atomic_llong committed_rows;
    atomic_llong committed_dead;
    atomic_llong committed_bytes;

    /* Checkpoint thread only. */
    uint64_t ckpt_next_batch; /* next batch number expected */
    char ckpt_seq[K2P_SEQ_BUF];
    bool ckpt_dirty;
    bool ckpt_closed;
    bool ckpt_tip_empty;
    atomic_bool done; /* closed and persisted: children may start (set by checkpoint thread) */
    atomic_llong ckpt_saved_us; /* wall time the checkpoint was last persisted (0: never) */
    /* Batches the checkpoint thread has taken and persisted (or that needed no persisting):
     * equal to next_batch_no once the reader is joined, the shard is drained. Release store
     * by the checkpoint thread; the coordinator's acquire load orders its later writes of
     * ckpt_seq after the checkpoint thread's last access. */
    atomic_ullong ckpt_saved_batches;

    /* Sharing the stream (--leases, --worker-count; lease.h). Coordinator only, unless said. */
    bool mine;            /* static split: this worker's shard (always true with --leases) */
    bool held;            /* we hold its lease: reader running, or draining before release */
    bool releasing;       /* asked to stop for balance: give the lease back once drained */
    bool finished;        /* batch: read to the tip since this process started, or closed */
    bool db_closed;       /* checkpoints.closed seen by a lease tick */
    bool ever_started;    /* a reader ran in this process (summary) */
    /* The epoch of our lease. Written only while no batch of the shard is in flight; writers
     * and the checkpoint thread read it for the shard's batches (ordered by thread start and
     * the rings). */
    int64_t lease_epoch;
    k2p_stream_state own; /* the shard's row and ledger, read when its lease was taken */
    atomic_bool stop;     /* reader: give the shard up (lease released for balance) */
    int64_t tip_call_ns;  /* reader: when the GetRecords that found the tip was sent */
} k2p_shard_rt;

typedef struct k2p_batch {
    k2p_shard_rt *shard;
    uint64_t batch_no;
    k2p_buf rows; /* COPY BINARY tuples for the target table (no header/trailer) */
    k2p_buf dead; /* COPY BINARY tuples for kinesis2pg.dead_letters */
    uint32_t n_rows, n_dead;
    uint64_t data_bytes;
    size_t budget;                   /* bytes charged to the memory budget */
    char first_seq[K2P_SEQ_BUF];     /* first record in this batch ("" if none) */
    char last_seq[K2P_SEQ_BUF];      /* last record in this batch */
    char covers_seq[K2P_SEQ_BUF];    /* last record consumed, including skipped ("" if none) */
    int flags;
    int64_t created_ns;
} k2p_batch;

typedef struct k2p_writer {
    struct k2p_loader *L;
    int index;
    pthread_t thread;
    bool thread_started;
    PGconn *conn;
    k2p_ring_waiter wait;      /* readers' pushes wake it */
    atomic_llong queued;       /* batches pushed to its rings and not yet popped */
    pthread_mutex_t list_mu;
    k2p_shard_rt **shards;     /* the shards it drains (grows) */
    size_t n_shards, cap_shards;
    k2p_ring to_ckpt;          /* committed batches → checkpoint thread */
    atomic_llong busy_ns;
    atomic_llong transactions; /* committed */
    atomic_bool healthy;       /* false while retrying a failed transaction */
} k2p_writer;

typedef struct k2p_loader {
    const k2p_load_opts *o;
    k2p_lock_mode mode;        /* single loader, --leases or --worker-count */
    int idle_tx_ms; /* sharing modes: writer and checkpoint sessions idle inside a transaction
                       this long are ended by PostgreSQL (k2p_pg_connect_bounded); 0 otherwise */
    char owner[K2P_OWNER_BUF]; /* our name in kinesis2pg.leases / workers (sharing modes) */
    k2p_lease_keeper keeper;   /* --leases: renews our leases */
    char *qualified_table; /* "schema"."table", quoted */
    char epoch[24];        /* our ownership epoch of (stream, target): see k2p_pg_take_ownership */
    char consumer_arn[2048]; /* --consumer: read with SubscribeToShard as this ("": polling) */
    int64_t run_started_us;
    k2p_stream_state state;

    pthread_mutex_t shards_mu; /* guards appends to `shards` (coordinator) vs. the checkpoint
                                  thread's iteration; the coordinator reads without it */
    k2p_shard_rt **shards;
    size_t n_shards, cap_shards;

    k2p_writer *writers;
    int n_writers;

    /* Checkpoint thread. */
    pthread_t ckpt_thread;
    bool ckpt_started;
    PGconn *ckpt_conn;
    k2p_ring_waiter ckpt_wait;
    atomic_llong ckpt_queued;
    atomic_bool writers_done; /* all writers exited: checkpoint thread drains and exits */

    /* Memory budget: bytes of batches between readers and commit. */
    pthread_mutex_t mem_mu;
    pthread_cond_t mem_cv[K2P_MEM_CVS]; /* ticket t waits on mem_cv[t % K2P_MEM_CVS] */
    int64_t mem_used;
    uint64_t mem_next_turn, mem_turn; /* k2p_mem_acquire's queue: tickets taken, now served */
    atomic_int mem_waiters; /* readers waiting for room: writers commit what they have */

    /* Run-wide flags. */
    atomic_bool stop_readers;  /* --max-messages, a signal or a fatal error */
    atomic_bool signalled;     /* the coordinator saw the stop signal (threads never read o->stop) */
    atomic_bool running;       /* set up and reading: /readyz can say ready */
    atomic_bool readers_done;  /* coordinator: no reader will push again */
    atomic_llong records_read; /* for the summary's status */
    atomic_llong quota_claimed; /* --max-messages: records readers may still ask for */

    /* Coordinator's event channel: any thread sets a flag and signals. */
    pthread_mutex_t coord_mu;
    pthread_cond_t coord_cv;
    int events; /* bumped on every event, under coord_mu */
    int fatal_code;
    char fatal_msg[512];
} k2p_loader;

/* Reports a fatal error (first one wins) and asks everything to stop. Any thread. */
void k2p_loader_fail(k2p_loader *L, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Wakes the coordinator. Any thread. */
void k2p_loader_notify(k2p_loader *L);

/* Memory budget: k2p_mem_acquire blocks while more than the budget is in flight (unless
 * nothing is), first come first served; call it before allocating. k2p_mem_take never
 * blocks: for memory that exists already and must be counted (waiting would not free it).
 * k2p_mem_wake_all wakes every waiter (after stop_readers is set: they pass). */
void k2p_mem_init(k2p_loader *L);
void k2p_mem_deinit(k2p_loader *L);
void k2p_mem_acquire(k2p_loader *L, size_t bytes);
void k2p_mem_take(k2p_loader *L, size_t bytes);
void k2p_mem_release(k2p_loader *L, size_t bytes);
void k2p_mem_wake_all(k2p_loader *L);

/* Batches. */
k2p_batch *k2p_batch_new(k2p_shard_rt *s);
void k2p_batch_free(k2p_batch *b);

/* Threads. */
void *k2p_reader_main(void *arg);  /* arg: k2p_shard_rt */
void *k2p_writer_main(void *arg);  /* arg: k2p_writer */
void *k2p_ckpt_main(void *arg);    /* arg: k2p_loader */

/* Runs the ownership fence inside a transaction that commits batches of shards[0..n) (distinct)
 * on conn: the owners epoch of (stream, target) for a single loader, the (shard, epoch) leases
 * otherwise. Returns the result (the caller clears it; NULL when out of memory) and in *want the
 * rows a fence that holds returns: fewer means another process took over. Writer and checkpoint
 * threads. */
PGresult *k2p_loader_fence(k2p_loader *L, PGconn *conn, k2p_shard_rt *const *shards, size_t n,
                           int *want);

/* Adds a shard to a writer's list (coordinator). */
int k2p_writer_add_shard(k2p_writer *w, k2p_shard_rt *s);

#endif

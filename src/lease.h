/* lease.h - several kinesis2pg processes on one (stream, target) (issue 7).
 *
 * Two ways to share the shards, next to the default single loader (pg_state.h, lock modes):
 *  - --leases: a shard is read by the process holding its row of kinesis2pg.leases. Taking a
 *    lease (free, released, or expired: not renewed for --lease-ttl-ms) bumps its epoch; the
 *    holder renews all its leases and its kinesis2pg.workers row every quarter of the TTL from
 *    a keeper thread; the live workers balance the shard count between them.
 *  - --worker-count N --worker-index I: shard S belongs to worker k2p_static_worker_of(S, N);
 *    a worker takes the leases of its shards unconditionally (bumping the epoch, no expiry).
 * In both, every transaction that commits rows, ledger rows or checkpoints of shards first runs
 * k2p_lease_fence_sql on their (shard, epoch) pairs, FOR SHARE: a process whose lease was taken
 * over (paused past the TTL, cut off from PostgreSQL) commits nothing more for that shard, and
 * the new holder, which reads the shard's checkpoint and ledger after its epoch bump commits,
 * sees everything the old one committed.
 *
 * Threading: the SQL helpers run on the caller's thread with the caller's connection; the
 * keeper is one thread with its own connection.
 */
#ifndef K2P_LEASE_H
#define K2P_LEASE_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/common.h"

#define K2P_OWNER_BUF 160

/* ---- pure ---------------------------------------------------------------------------------- */

/* FNV-1a 64 of the shard id: stable across versions, platforms and runs (documented). */
uint64_t k2p_lease_hash(const char *shard_id);

/* The static worker (0..count-1) of a shard: k2p_lease_hash(shard_id) % count. Children hash
 * independently of their parents; a child waits for parents closed by other workers. */
int k2p_static_worker_of(const char *shard_id, int count);

/* Shards one of `live` workers should hold out of `active`: ceil(active / live) (live >= 1). */
size_t k2p_lease_target(size_t active, size_t live);

/* "host:pid:random": this process's owner name in kinesis2pg.leases / workers. */
void k2p_lease_owner_name(char out[K2P_OWNER_BUF]);

/* ---- SQL ----------------------------------------------------------------------------------- */

/* Adds (or renews) this process's kinesis2pg.workers row: started_at is the database's clock at
 * the first call (what "read to the tip since this process started" compares with), expiry
 * ttl_ms ahead. Removes workers rows expired for over an hour. */
int k2p_lease_register(PGconn *c, const char *stream, const char *target, const char *owner,
                       const char *mode, int ttl_ms, k2p_err *err);

/* Renews the workers row and every lease the owner holds by ttl_ms. */
int k2p_lease_heartbeat(PGconn *c, const char *stream, const char *target, const char *owner,
                        int ttl_ms, k2p_err *err);

/* Takes the lease of a shard. ttl_ms > 0: only if it is free, released, or expired (a live
 * lease of another process is never taken); ttl_ms == 0 (static split): whoever holds it, with
 * no expiry. On 0, *epoch is the new epoch, or 0 when the lease was not free. */
int k2p_lease_take(PGconn *c, const char *stream, const char *target, const char *shard_id,
                   const char *owner, int ttl_ms, int64_t *epoch, k2p_err *err);

/* Gives a lease back (if still ours at that epoch). tip_ago_us >= 0: the shard was read to its
 * tip by a GetRecords issued that long ago, all of it committed: tip_at is set to the database's
 * now minus that (batch mode's "finished" test of the other processes). */
int k2p_lease_release(PGconn *c, const char *stream, const char *target, const char *shard_id,
                      const char *owner, int64_t epoch, int64_t tip_ago_us, k2p_err *err);

/* Gives back every lease of the owner and removes its workers row (end of a run). */
int k2p_lease_release_all(PGconn *c, const char *stream, const char *target, const char *owner,
                          k2p_err *err);

/* Bumps the epoch of every held lease of (stream, target) and frees it: a single loader or
 * `reset` fences out lease holders that lost their advisory lock. */
int k2p_lease_revoke_all(PGconn *c, const char *stream, const char *target, k2p_err *err);

/* One shard as the coordinator sees it on each lease tick. */
typedef struct k2p_lease_row {
    char *shard_id;
    char *owner;    /* NULL: nobody */
    int64_t epoch;
    bool closed;    /* checkpoints.closed: read to SHARD_END and committed (by anyone) */
    bool live;      /* held by an owner whose lease has not expired */
    bool tipped;    /* tip_at at or after this process's workers.started_at */
} k2p_lease_row;

typedef struct k2p_lease_view {
    k2p_lease_row *rows;
    size_t n;
    int64_t live_workers; /* workers rows not expired (this process included) */
} k2p_lease_view;

/* Reads every checkpoints row of (stream, target) with its lease, and the live worker count. */
int k2p_lease_read(PGconn *c, const char *stream, const char *target, const char *owner,
                   k2p_lease_view *out, k2p_err *err);
void k2p_lease_view_deinit(k2p_lease_view *v);
const k2p_lease_row *k2p_lease_view_find(const k2p_lease_view *v, const char *shard_id);

/* The per-shard fence: $1 stream, $2 target, $3 text[] shard ids, $4 bigint[] epochs (distinct
 * shards). Returns one row per pair that still holds; fewer rows than pairs means a lease was
 * taken over and the transaction must not commit. */
extern const char k2p_lease_fence_sql[];

/* ---- keeper thread ------------------------------------------------------------------------- */

typedef struct k2p_lease_keeper {
    const char *conninfo, *stream, *target, *owner; /* borrowed; outlive the keeper */
    int ttl_ms;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;               /* under mu */
    atomic_llong last_ok_us; /* wall time of the last successful heartbeat */
} k2p_lease_keeper;

/* Starts the thread: a heartbeat every ttl_ms / 4 on its own connection, reconnecting after a
 * failure (said once on stderr). 0 or K2P_EIO. */
int k2p_lease_keeper_start(k2p_lease_keeper *k, k2p_err *err);

/* Stops and joins it (no-op if not started). */
void k2p_lease_keeper_stop(k2p_lease_keeper *k);

#endif

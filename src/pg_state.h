/* pg_state.h - the loader's state in PostgreSQL (schema kinesis2pg) and the target table DDL.
 *
 * Tables (DESIGN §2): checkpoints, ledger, runs, dead_letters. All SQL the loader runs outside
 * the COPY hot path lives here. Every function takes the connection it is given and runs on
 * the caller's thread; connections are never shared between threads.
 */
#ifndef K2P_PG_STATE_H
#define K2P_PG_STATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

/* A half-open run of sequence numbers committed by one batch: [first, last]. */
typedef struct k2p_seq_range {
    char *first;
    char *last;
} k2p_seq_range;

/* One shard's persisted position. */
typedef struct k2p_shard_ckpt {
    char *shard_id;
    char *seq;           /* checkpoint: every record <= seq is in the table; NULL if none */
    int64_t start_at_us; /* with seq NULL: start AT_TIMESTAMP this; -1 = TRIM_HORIZON */
    bool closed;         /* read to SHARD_END and all of it committed */
    char *parents[2];
    size_t n_parents;
    k2p_seq_range *ledger; /* committed ranges above seq (from a run that crashed), sorted */
    size_t n_ledger;
} k2p_shard_ckpt;

typedef struct k2p_stream_state {
    k2p_shard_ckpt *shards;
    size_t n;
    int64_t prev_run_started_us; /* -1 when this is the stream's first run */
} k2p_stream_state;

void k2p_stream_state_deinit(k2p_stream_state *s);
k2p_shard_ckpt *k2p_stream_state_find(const k2p_stream_state *s, const char *shard_id);

/* Connects with application_name=kinesis2pg; conninfo NULL = libpq defaults (PG* env vars).
 * Errors name host, port and database, never the password. */
PGconn *k2p_pg_connect(const char *conninfo, k2p_err *err);

/* k2p_pg_connect, then, when idle_tx_ms > 0, idle_in_transaction_session_timeout = idle_tx_ms:
 * PostgreSQL ends the session if it stays idle inside a transaction that long. For sessions
 * that hold lease rows FOR SHARE until COMMIT: a process frozen there (SIGSTOP, a stalled VM)
 * would otherwise keep a taker waiting for as long as it stays frozen. */
PGconn *k2p_pg_connect_bounded(const char *conninfo, int idle_tx_ms, k2p_err *err);

/* Formats "host:port/dbname" of a connection for messages. */
void k2p_pg_describe(PGconn *c, char *out, size_t n);

/* The layout of the state tables this build reads and writes, recorded in
 * kinesis2pg.schema_version. A release that changes them raises it and migrates older ones;
 * a build meeting a newer layout stops instead of misreading it. */
#define K2P_SCHEMA_VERSION 1

/* K2P_ECONFIG, naming both versions, when the database's state tables are of a newer layout
 * than K2P_SCHEMA_VERSION; 0 when they are not (or do not exist yet); K2P_EIO on a failed
 * query. */
int k2p_pg_check_schema_version(PGconn *c, k2p_err *err);

/* Creates schema kinesis2pg and its tables, and the target table, if missing (idempotent,
 * serialised by an advisory lock so concurrent first runs do not race), after
 * k2p_pg_check_schema_version. */
int k2p_pg_setup(PGconn *c, const char *schema, const char *table, bool raw, bool primary_key,
                 k2p_err *err);

/* The loader's state is kept per (stream, target): the same stream can be loaded into two
 * tables, each with its own positions. target is k2p_pg_target_name(schema, table). */

/* "schema"."table", quoted (heap), or NULL when a name is empty, longer than 63 bytes or has
 * a NUL. */
char *k2p_pg_target_name(const char *schema, const char *table);

/* How the processes loading one (stream, target) share it. */
typedef enum k2p_lock_mode {
    K2P_LOCK_SINGLE = 0, /* one loader (the default) */
    K2P_LOCK_LEASES,     /* --leases: any number, shards shared through kinesis2pg.leases */
    K2P_LOCK_STATIC,     /* --worker-count: one per worker index, shards split by hash */
} k2p_lock_mode;

/* Session advisory locks, one key per way of running. Single: the key is taken exclusively to
 * check that nobody holds it, then kept in shared mode, so one loader runs at a time. Leases
 * and static: the group's key is kept shared by every process of the group (static also keeps
 * a key of its worker index exclusively, and a key of its worker count shared: a worker of
 * another count is refused). In every mode the other ways' keys must be free, so the three
 * never mix. K2P_EINUSE with a message saying who runs. */
int k2p_pg_lock_mode(PGconn *c, const char *stream, const char *target, k2p_lock_mode mode,
                     int index, int count, k2p_err *err);

/* The running loader's other sessions (writers, on every connect) hold its mode's key shared. */
int k2p_pg_lock_mode_shared(PGconn *c, const char *stream, const char *target,
                            k2p_lock_mode mode, k2p_err *err);

/* k2p_pg_lock_mode / _shared with K2P_LOCK_SINGLE. */
int k2p_pg_lock_stream(PGconn *c, const char *stream, const char *target, k2p_err *err);
int k2p_pg_lock_stream_shared(PGconn *c, const char *stream, const char *target, k2p_err *err);

/* Fencing. A session advisory lock does not survive a PostgreSQL restart, so a second loader
 * could start while the first one carries on: each loader takes ownership of (stream, target)
 * by bumping its epoch, and every transaction that writes rows or checkpoints first runs
 * k2p_pg_fence_sql ($1 stream, $2 target, $3 epoch): no row means another loader took over,
 * and the transaction must not commit. FOR SHARE holds off a new owner's bump until it ends.
 * On 0, epoch holds the new epoch as text. */
int k2p_pg_take_ownership(PGconn *c, const char *stream, const char *target, char epoch[24],
                          k2p_err *err);
extern const char k2p_pg_fence_sql[];

/* Reads checkpoints, ledger ranges above them and the previous run's start. */
int k2p_pg_load_state(PGconn *c, const char *stream, const char *target, k2p_stream_state *out,
                      k2p_err *err);

/* The same for one shard (shard_id NULL: all): its row and its ledger ranges, read afresh when
 * a process takes the shard's lease (its last owner may have committed since). */
int k2p_pg_load_state_shard(PGconn *c, const char *stream, const char *target,
                            const char *shard_id, k2p_stream_state *out, k2p_err *err);

/* Records where a shard without a checkpoint starts (start_at_us -1 = TRIM_HORIZON). Does
 * nothing when the shard already has a row. */
int k2p_pg_add_shard(PGconn *c, const char *stream, const char *target, const char *shard_id,
                     const char *const *parents, size_t n_parents, int64_t start_at_us,
                     k2p_err *err);

/* Inserts a runs row with status 'running' started at started_us (the loader's clock, which
 * also positions Kinesis iterators); returns its id. */
int k2p_pg_run_begin(PGconn *c, const char *stream, const char *target, int64_t started_us,
                     int64_t *run_id, k2p_err *err);
int k2p_pg_run_end(PGconn *c, int64_t run_id, int64_t rows, int64_t bytes, int64_t dead,
                   const char *status, const char *message, k2p_err *err);

/* Runs a statement that returns no rows; 0 or K2P_EIO with the server's message. */
int k2p_pg_exec(PGconn *c, const char *sql, int nparams, const char *const *params,
                k2p_err *err);

/* True when the connection is unusable and must be reopened. */
bool k2p_pg_conn_broken(PGconn *c);

/* Appends one element to a PostgreSQL array literal being built in `a` (which starts with '{';
 * the caller closes it with '}'): double-quoted, with " and \ backslash-escaped; NULL for
 * v == NULL. 0 or K2P_ENOMEM. */
int k2p_pg_array_append(k2p_buf *a, const char *v);

/* Formats µs since the epoch as an ISO 8601 UTC timestamp for SQL parameters. */
#define K2P_TS_BUF 64
void k2p_pg_format_ts(int64_t us, char out[K2P_TS_BUF]);

#endif

/* mock_ctl.h - mock_kinesis's run-time knobs: fault injection ratios, latency, iterator TTL,
 * per-shard limits, the "reshard at record count" trigger, the seeded RNG that decides faults,
 * and the counters served at GET /stats.
 *
 * One setter, mock_ctl_set(key, value), is used by the command-line flags, POST /control
 * (a JSON object) and GET /control?key=value&..., so the three never disagree on a name.
 *
 * Threading: thread-safe. The configuration is guarded by `lock` (request threads take a
 * snapshot per request); counters and the RNG position are lock-free atomics.
 */
#ifndef MOCK_CTL_H
#define MOCK_CTL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "mock_store.h"

typedef enum mock_op {
    MOCK_OP_CREATE_STREAM,
    MOCK_OP_DELETE_STREAM,
    MOCK_OP_DESCRIBE_STREAM,
    MOCK_OP_DESCRIBE_STREAM_SUMMARY,
    MOCK_OP_LIST_STREAMS,
    MOCK_OP_LIST_SHARDS,
    MOCK_OP_GET_SHARD_ITERATOR,
    MOCK_OP_GET_RECORDS,
    MOCK_OP_PUT_RECORD,
    MOCK_OP_PUT_RECORDS,
    MOCK_OP_SPLIT_SHARD,
    MOCK_OP_MERGE_SHARDS,
    MOCK_OP_REGISTER_STREAM_CONSUMER,
    MOCK_OP_DESCRIBE_STREAM_CONSUMER,
    MOCK_OP_LIST_STREAM_CONSUMERS,
    MOCK_OP_DEREGISTER_STREAM_CONSUMER,
    MOCK_OP_SUBSCRIBE_TO_SHARD,
    MOCK_OP_UNKNOWN,
    MOCK_OP_COUNT
} mock_op;

/* "CreateStream", ... ("Unknown" for MOCK_OP_UNKNOWN). */
const char *mock_op_name(mock_op op);
/* MOCK_OP_UNKNOWN when the name is not an operation we serve. */
mock_op mock_op_from_name(const char *s, size_t n);

/* Faults drawn once per request (in this order over one uniform draw). */
typedef enum mock_fault {
    MOCK_F_THROTTLE, /* 400 ProvisionedThroughputExceededException */
    MOCK_F_ERROR500, /* 500 InternalFailure */
    MOCK_F_RESET,    /* close the connection (RST) without answering */
    MOCK_F_TRUNCATE, /* Content-Length larger than the bytes sent, then close */
    MOCK_F_EXPIRE,   /* GetRecords only: 400 ExpiredIteratorException */
    MOCK_F_DRAWN,    /* number of the above */
    MOCK_F_NONE = MOCK_F_DRAWN,
} mock_fault;

/* Every fault counter at GET /stats under "faults". */
typedef enum mock_stat_fault {
    MOCK_S_THROTTLE,
    MOCK_S_ERROR500,
    MOCK_S_RESET,
    MOCK_S_TRUNCATE,
    MOCK_S_EXPIRE,
    MOCK_S_PUT_FAIL,     /* PutRecords entries failed on purpose */
    MOCK_S_LIMIT_CALLS,  /* --limits: more than 5 GetRecords/s on a shard */
    MOCK_S_LIMIT_BYTES,  /* --limits: more than 2 MB/s read from a shard */
    MOCK_S_ITERATOR_TTL, /* iterators older than iterator_ttl_ms */
    MOCK_S_LATENCY,      /* responses delayed by latency_ms */
    MOCK_S_SUB_RESET,    /* subscriptions whose connection was reset after an event */
    MOCK_S_SUB_ERROR,    /* subscriptions ended by an `error` message (InternalFailure) */
    MOCK_S_COUNT
} mock_stat_fault;

typedef struct mock_fault_cfg {
    double ratio[MOCK_F_DRAWN]; /* probabilities; their sum is <= 1 */
    double put_fail;            /* probability per PutRecords entry */
    int64_t latency_ms;
    int64_t iterator_ttl_ms;
    bool limits;
    uint32_t ops_mask; /* operations faults apply to (bit per mock_op) */
    /* Reshard trigger: once records_served >= reshard_at (> 0), split or merge. */
    int64_t reshard_at;
    char reshard_stream[MOCK_NAME_MAX + 1]; /* "" = the only stream */
    char split_shard[32];
    char split_hash[40]; /* "" = middle of the shard's range */
    char merge_a[32], merge_b[32];
    /* Enhanced fan-out. */
    int64_t subscription_ms;   /* a subscription ends after this (AWS: 300000) */
    int64_t consumer_delay_ms; /* consumers stay CREATING / DELETING this long (default 0) */
    int64_t takeover_ms;       /* a new subscription takes over an active one of the same
                                  consumer and shard only after this (AWS: 5000); before, it
                                  gets ResourceInUseException */
    double sub_reset;          /* per SubscribeToShardEvent: reset the connection after it */
    double sub_error;          /* per SubscribeToShardEvent: send an `error` message instead
                                  and end the stream */
} mock_fault_cfg;

typedef struct mock_stats {
    atomic_uint_least64_t ops[MOCK_OP_COUNT];
    atomic_uint_least64_t faults[MOCK_S_COUNT];
    atomic_uint_least64_t http_requests, status_4xx, status_5xx;
    atomic_uint_least64_t records_served, bytes_served, records_put;
    atomic_uint_least64_t reshards, reshard_failures;
    atomic_uint_least64_t conns_accepted, conns_h2; /* conns_h2: began with the HTTP/2 preface */
    atomic_int_least64_t conns_open; /* a gauge: never reset */
    atomic_uint_least64_t subs_started, sub_events, sub_in_use, sub_takeovers;
    atomic_int_least64_t subs_open; /* a gauge: never reset */
} mock_stats;

typedef struct mock_ctl {
    pthread_mutex_t lock;
    mock_fault_cfg cfg; /* @locks lock */
    atomic_uint_least64_t seed;
    atomic_uint_least64_t draws; /* RNG position: draw i is mix(seed, i) */
    atomic_int reshard_fired;    /* 1 once the armed trigger has fired */
    mock_stats stats;
} mock_ctl;

/* Defaults: no faults, TTL 300000 ms, limits off, faults apply to every operation. */
int mock_ctl_init(mock_ctl *c, uint64_t seed);
void mock_ctl_deinit(mock_ctl *c);

/* Sets one knob from its text form. Keys: throttle, error500, reset, truncate, expire,
 * put_fail (0..1), latency_ms, iterator_ttl_ms, limits (0/1/true/false), fault_ops
 * (comma-separated operation names, or "all"), seed, reshard_at, reshard_stream, split
 * (SHARD or SHARD:HASHKEY), merge (SHARD,SHARD), subscription_ms, consumer_delay_ms,
 * takeover_ms, sub_reset, sub_error (0..1), reset_stats, clear (all faults off).
 * 0 or K2P_EINVAL (message in err, nothing changed). */
int mock_ctl_set(mock_ctl *c, const char *key, const char *value, k2p_err *err);

/* Applies a JSON object ({"throttle":0.3,...}) or a query string ("throttle=0.3&...") as one
 * change: all keys or none. 0 or K2P_EINVAL. */
int mock_ctl_apply_json(mock_ctl *c, const char *body, size_t len, k2p_err *err);
int mock_ctl_apply_query(mock_ctl *c, const char *q, size_t len, k2p_err *err);

/* A consistent copy of the configuration. */
void mock_ctl_snapshot(mock_ctl *c, mock_fault_cfg *out);

/* The next uniform number in [0, 1) of the seeded sequence. */
double mock_ctl_uniform(mock_ctl *c);

/* Draws the fault for one request of `op` (MOCK_F_NONE mostly) and counts it. */
mock_fault mock_ctl_decide(mock_ctl *c, const mock_fault_cfg *cfg, mock_op op);

static inline void mock_stat_add(atomic_uint_least64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

/* Appends the configuration / the counters as a JSON object. 0 or K2P_ENOMEM. */
int mock_ctl_config_json(mock_ctl *c, k2p_buf *out);
int mock_ctl_stats_json(mock_ctl *c, k2p_buf *out);

#endif

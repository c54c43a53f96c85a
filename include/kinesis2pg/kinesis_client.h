/* kinesis_client.h - the Kinesis Data Streams API (JSON 1.1 protocol) over libcurl.
 *
 * A k2p_kinesis is one connection's worth of state: a CURL easy handle kept alive between
 * calls, a response buffer, a retry RNG. Create one per thread (each shard reader owns one).
 * The credential chain it borrows is shared and thread-safe.
 *
 * Every operation signs with SigV4, sends, classifies errors from the AWS error type, and
 * retries throttling and transient failures with exponential backoff and full jitter, up to
 * the configured budget. K2P_EEXPIRED (ExpiredIteratorException) is never retried here: the
 * caller gets a new iterator.
 *
 * Threading: a k2p_kinesis must not be used by two threads at once.
 */
#ifndef K2P_KINESIS_CLIENT_H
#define K2P_KINESIS_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

typedef struct k2p_kinesis_opts {
    const char *endpoint;     /* "https://kinesis.eu-west-1.amazonaws.com", "http://127.0.0.1:4567" */
    const char *region;       /* signing region; required */
    const char *ca_file;      /* extra CA bundle for https, or NULL */
    k2p_cred_chain *creds;    /* borrowed, shared; required */
    long connect_timeout_ms;  /* 0: 5000 */
    long timeout_ms;          /* whole request; 0: 30000 */
    int max_attempts;         /* per call, throttling and transient errors; 0: 10 */
    int backoff_base_ms;      /* 0: 100 */
    int backoff_max_ms;       /* 0: 5000 */
} k2p_kinesis_opts;

typedef struct k2p_kinesis k2p_kinesis;

/* Statistics of one handle, for metrics and tests. Only the owning thread writes them. */
typedef struct k2p_kinesis_stats {
    uint64_t requests;
    uint64_t retries_throttled;
    uint64_t retries_transient;
    uint64_t bytes_received;
} k2p_kinesis_stats;

/* Copies opts (strings are duplicated). NULL on failure with `err` set (bad endpoint URL,
 * https without TLS support). */
k2p_kinesis *k2p_kinesis_new(const k2p_kinesis_opts *opts, k2p_err *err);
void k2p_kinesis_free(k2p_kinesis *k);
const k2p_kinesis_stats *k2p_kinesis_get_stats(const k2p_kinesis *k);

/* Frees the response buffer when it holds more than keep_bytes (it grows back on the next
 * call): an idle handle then costs little. */
void k2p_kinesis_trim(k2p_kinesis *k, size_t keep_bytes);

/* Called around every retry backoff sleep of this handle: before(ud) just before it sleeps,
 * after(ud) when it wakes (either may be NULL). The loader gives back the memory it charged for
 * an answer while the call waits out throttling. Borrowed; set before use. */
void k2p_kinesis_set_backoff_hooks(k2p_kinesis *k, void (*before)(void *), void (*after)(void *),
                                   void *ud);

/* Makes the next backoff sleeps return early when *flag becomes true (shutdown). Borrowed. */
void k2p_kinesis_set_cancel_flag(k2p_kinesis *k, const atomic_bool *flag);

/* ---- shards ------------------------------------------------------------------------------ */

typedef struct k2p_shard {
    char *shard_id;
    char *parent_shard_id;          /* NULL when none */
    char *adjacent_parent_shard_id; /* NULL when none */
    char *starting_hash_key;
    char *ending_hash_key;
    char *starting_seq;
    char *ending_seq; /* NULL while the shard is open */
} k2p_shard;

typedef struct k2p_shard_list {
    k2p_shard *shards;
    size_t n, cap;
} k2p_shard_list;

void k2p_shard_list_deinit(k2p_shard_list *l);

typedef struct k2p_stream_summary {
    char stream_name[129];
    char stream_arn[2048];
    char status[32]; /* CREATING, ACTIVE, UPDATING, DELETING */
    int open_shards;
    int retention_hours;
} k2p_stream_summary;

/* ---- records ----------------------------------------------------------------------------- */

typedef struct k2p_record {
    const char *seq; /* NUL-terminated, inside the arena */
    const char *pkey;
    const uint8_t *data; /* decoded bytes (not NUL-terminated) */
    uint32_t seq_len, pkey_len, data_len;
    int64_t arrival_us; /* ApproximateArrivalTimestamp, µs since the epoch (ms precision) */
} k2p_record;

typedef struct k2p_child_shard {
    char *shard_id;
    char *parents[2];
    size_t n_parents;
} k2p_child_shard;

/* One GetRecords answer. Reuse it across calls: k2p_records_reset keeps the allocations. */
typedef struct k2p_records {
    k2p_record *recs;
    size_t n, cap;
    bool recs_in_arena;   /* recs is the start of arena (not allocated on its own) */
    k2p_buf arena;        /* sequence numbers, partition keys and data, back to back */
    char *next_iterator;  /* NULL: the shard is closed and every record was returned */
    int64_t millis_behind; /* -1 when absent */
    k2p_child_shard *children;
    size_t n_children;
    size_t data_bytes; /* sum of data_len */
} k2p_records;

void k2p_records_init(k2p_records *r);
void k2p_records_reset(k2p_records *r);
void k2p_records_deinit(k2p_records *r);
/* Resets r and frees its arena and record table when they exceed keep_bytes. */
void k2p_records_trim(k2p_records *r, size_t keep_bytes);

typedef enum k2p_iter_type {
    K2P_ITER_TRIM_HORIZON,
    K2P_ITER_LATEST,
    K2P_ITER_AT_TIMESTAMP,
    K2P_ITER_AT_SEQUENCE_NUMBER,
    K2P_ITER_AFTER_SEQUENCE_NUMBER,
} k2p_iter_type;

typedef struct k2p_iter_start {
    k2p_iter_type type;
    const char *seq;      /* for AT_/AFTER_SEQUENCE_NUMBER */
    int64_t timestamp_us; /* for AT_TIMESTAMP */
    int timeout_ms;       /* 0: the handle's timeout and retries; else one attempt, this long */
} k2p_iter_start;

/* "TRIM_HORIZON", ... */
const char *k2p_iter_type_name(k2p_iter_type t);

/* ---- producing --------------------------------------------------------------------------- */

typedef struct k2p_put_entry {
    const void *data;
    size_t len;
    const char *partition_key;
    const char *explicit_hash_key; /* or NULL */
} k2p_put_entry;

typedef struct k2p_put_result {
    char shard_id[64];
    char seq[132]; /* up to 129 digits */
} k2p_put_result;

/* ---- operations -------------------------------------------------------------------------- */

int k2p_kinesis_create_stream(k2p_kinesis *k, const char *stream, int shards, k2p_err *err);
int k2p_kinesis_delete_stream(k2p_kinesis *k, const char *stream, k2p_err *err);
int k2p_kinesis_describe_stream_summary(k2p_kinesis *k, const char *stream,
                                        k2p_stream_summary *out, k2p_err *err);

/* Waits (polling DescribeStreamSummary) until the stream is ACTIVE or timeout_ms passes. */
int k2p_kinesis_wait_active(k2p_kinesis *k, const char *stream, int timeout_ms, k2p_err *err);

/* Every shard of the stream (all pages; StreamName on the first request only, NextToken
 * after). max_results 0 = service default. Appends to *out. */
int k2p_kinesis_list_shards(k2p_kinesis *k, const char *stream, int max_results,
                            k2p_shard_list *out, k2p_err *err);

/* *iterator is a heap string on 0. */
int k2p_kinesis_get_shard_iterator(k2p_kinesis *k, const char *stream, const char *shard_id,
                                   const k2p_iter_start *start, char **iterator, k2p_err *err);

/* Fills *out (reset first). Returns 0, K2P_EEXPIRED, or an error after retries. */
int k2p_kinesis_get_records(k2p_kinesis *k, const char *iterator, int limit, k2p_records *out,
                            k2p_err *err);

/* Puts n entries in calls of at most 500 entries / 5 MiB, retrying only the entries that
 * failed (with backoff) until all succeed or the attempt budget is spent. results (may be
 * NULL) receives each entry's shard and sequence number, in order. */
int k2p_kinesis_put_records(k2p_kinesis *k, const char *stream, const k2p_put_entry *entries,
                            size_t n, k2p_put_result *results, k2p_err *err);

int k2p_kinesis_split_shard(k2p_kinesis *k, const char *stream, const char *shard_id,
                            const char *new_starting_hash_key, k2p_err *err);
int k2p_kinesis_merge_shards(k2p_kinesis *k, const char *stream, const char *shard_id,
                             const char *adjacent_shard_id, k2p_err *err);

/* ---- pure parts (no I/O), exposed for unit tests and fuzzing ------------------------------ */

/* Classifies a failed response (HTTP status and body) into a K2P_E* code; fills err with
 * the AWS error type and message. */
int k2p_kinesis_classify_error(long http_status, const char *body, size_t len, k2p_err *err);

int k2p_kinesis_parse_get_records(const char *body, size_t len, k2p_records *out, k2p_err *err);

/* Appends the page's shards; *next_token is a heap string or NULL when this was the last page. */
int k2p_kinesis_parse_list_shards(const char *body, size_t len, k2p_shard_list *out,
                                  char **next_token, k2p_err *err);

/* Full-jitter exponential backoff: a uniform random delay in [0, min(max, base * 2^attempt)].
 * `rng` is the caller's xorshift state (non-zero). */
int64_t k2p_backoff_ms(int attempt, int base_ms, int max_ms, uint64_t *rng);

#endif

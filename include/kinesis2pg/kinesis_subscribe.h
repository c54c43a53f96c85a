/* kinesis_subscribe.h - enhanced fan-out: stream consumers and SubscribeToShard over HTTP/2.
 *
 * Consumers (RegisterStreamConsumer, DescribeStreamConsumer, ListStreamConsumers,
 * DeregisterStreamConsumer) are ordinary JSON 1.1 calls made with a k2p_kinesis handle and its
 * retry policy. k2p_kinesis_ensure_consumer is what `--consumer NAME` needs: reuse the
 * consumer of that name, or register it, and wait until it is ACTIVE.
 *
 * A k2p_subscription reads one shard at a time with SubscribeToShard: its own libcurl handle
 * speaking HTTP/2 (prior knowledge on http:// endpoints, negotiated by ALPN on https://),
 * SigV4-signed like every other call, the response streamed through the event-stream decoder
 * (event_stream.h). Each SubscribeToShardEvent is parsed with the GetRecords parser into a
 * k2p_records and handed to a callback with its ContinuationSequenceNumber. One call of
 * k2p_subscription_run keeps a shard flowing: it re-subscribes from the last
 * ContinuationSequenceNumber (AFTER_SEQUENCE_NUMBER) when a subscription ends (the service
 * ends each after 5 minutes; we end ours a little earlier, at session_ms) or fails with a
 * retryable error, and returns at the shard's end (ChildShards) or when the callback says stop.
 *
 * Threading: a k2p_subscription belongs to one thread (the shard reader); the callback runs on
 * that thread, inside libcurl's write callback. The credential chain is shared (thread-safe).
 */
#ifndef K2P_KINESIS_SUBSCRIBE_H
#define K2P_KINESIS_SUBSCRIBE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/kinesis_client.h"

/* ---- consumers ----------------------------------------------------------------------------- */

typedef struct k2p_consumer {
    char name[129];
    char arn[2048];
    char status[32];    /* CREATING, DELETING, ACTIVE */
    double created_at;  /* ConsumerCreationTimestamp, epoch seconds (0 when absent) */
} k2p_consumer;

typedef struct k2p_consumer_list {
    k2p_consumer *items;
    size_t n, cap;
} k2p_consumer_list;

void k2p_consumer_list_deinit(k2p_consumer_list *l);

/* RegisterStreamConsumer. K2P_EINUSE when a consumer of that name exists. */
int k2p_kinesis_register_consumer(k2p_kinesis *k, const char *stream_arn, const char *name,
                                  k2p_consumer *out, k2p_err *err);

/* DescribeStreamConsumer by consumer ARN, or (consumer_arn NULL) by stream ARN and name.
 * K2P_ENOTFOUND when there is none. */
int k2p_kinesis_describe_consumer(k2p_kinesis *k, const char *consumer_arn,
                                  const char *stream_arn, const char *name, k2p_consumer *out,
                                  k2p_err *err);

/* ListStreamConsumers, every page; appends to *out. */
int k2p_kinesis_list_consumers(k2p_kinesis *k, const char *stream_arn, k2p_consumer_list *out,
                               k2p_err *err);

/* DeregisterStreamConsumer by consumer ARN. */
int k2p_kinesis_deregister_consumer(k2p_kinesis *k, const char *consumer_arn, k2p_err *err);

/* The consumer `name` of the stream, ready to subscribe: an existing one is reused (found with
 * DescribeStreamConsumer by stream ARN and name), a missing one registered (if another process
 * registers it first, that one is reused); then it is described until it is ACTIVE or
 * timeout_ms passes (0: 60000). A consumer that is DELETING is waited out and registered
 * again. *out is valid on 0. Get the stream ARN from k2p_kinesis_describe_stream_summary. */
int k2p_kinesis_ensure_consumer(k2p_kinesis *k, const char *stream_arn, const char *name,
                                int timeout_ms, k2p_consumer *out, k2p_err *err);

/* ---- SubscribeToShard ---------------------------------------------------------------------- */

/* One SubscribeToShardEvent, as the callback sees it. Everything is borrowed for the call. */
typedef struct k2p_subscribe_event {
    const k2p_records *records;   /* Records, MillisBehindLatest, ChildShards; next_iterator is
                                     always NULL (there is none in fan-out) */
    const char *continuation_seq; /* ContinuationSequenceNumber; NULL at the shard's end */
    bool shard_end;               /* no ContinuationSequenceNumber: the shard is closed and
                                     every record was delivered; records->children says which
                                     shards follow */
    uint64_t subscription;        /* 1 for the first SubscribeToShard of a run, +1 each time */
} k2p_subscribe_event;

/* Returns 0 to go on, K2P_SUB_STOP to end the run cleanly, or a negative K2P_E* code to end it
 * with that error (put the detail in your own state). */
typedef int (*k2p_subscribe_cb)(void *ud, const k2p_subscribe_event *ev);
#define K2P_SUB_STOP 1

typedef struct k2p_subscribe_opts {
    size_t max_message;  /* largest event-stream message; 0: 16 MiB */
    long session_ms;     /* end a subscription after this and subscribe again; 0: 280000
                            (the service ends it at 300000) */
    long idle_ms;        /* no byte for this long: the connection is dead, subscribe again;
                            0: 30000 (the service sends an event every 5 s or so) */
    int max_attempts;    /* consecutive failed subscriptions before giving up; 0: 10 */
    int backoff_base_ms; /* 0: 200 */
    int backoff_max_ms;  /* 0: 5000 */
} k2p_subscribe_opts;

typedef enum k2p_sub_end {
    K2P_SUB_END_NONE = 0,
    K2P_SUB_END_SERVER,   /* the service ended the subscription (the 5-minute limit) */
    K2P_SUB_END_SESSION,  /* we ended it at session_ms */
    K2P_SUB_END_SHARD,    /* shard end: ContinuationSequenceNumber absent */
    K2P_SUB_END_CALLBACK, /* the callback returned K2P_SUB_STOP */
} k2p_sub_end;

/* What one subscription (or a whole run) did. */
typedef struct k2p_subscribe_result {
    k2p_sub_end end;
    char continuation_seq[132]; /* the last ContinuationSequenceNumber delivered, or "" */
    uint64_t subscriptions;     /* SubscribeToShard calls that were answered with 200 */
    uint64_t events;            /* SubscribeToShardEvents delivered */
    uint64_t records;
    uint64_t retries;           /* failed subscriptions retried */
    uint64_t bytes;             /* event-stream bytes received */
} k2p_subscribe_result;

typedef struct k2p_subscription k2p_subscription;

/* conn: the same options as the shard's k2p_kinesis (endpoint, region, creds, ca_file,
 * connect_timeout_ms; timeout_ms is unused: a subscription is long). sub may be NULL
 * (defaults). Strings are copied. NULL with err set on failure. */
k2p_subscription *k2p_subscription_new(const k2p_kinesis_opts *conn, const k2p_subscribe_opts *sub,
                                       k2p_err *err);
void k2p_subscription_free(k2p_subscription *s);

/* Makes a subscription and retry sleeps stop soon after *flag becomes true (shutdown): the
 * call in flight is aborted and the run returns K2P_ERETRY ("cancelled"). Borrowed. */
void k2p_subscription_set_cancel_flag(k2p_subscription *s, const atomic_bool *flag);

/* One SubscribeToShard call: streams its events to cb until the service ends it, session_ms
 * passes, the shard ends or cb returns non-zero. *res (reset first) says which and holds the
 * last ContinuationSequenceNumber delivered, even on error. Returns 0 (see res->end), the
 * callback's negative code, K2P_EINUSE (another subscription of this consumer to this shard
 * is active, or one was made less than 5 s ago), K2P_ETHROTTLED, K2P_ERETRY (connection lost,
 * idle, 5xx, an `error` message, a truncated stream), K2P_ENOTFOUND, K2P_EAUTH, K2P_EFATAL or
 * K2P_EPARSE (malformed stream or event). No retries here. */
int k2p_subscription_subscribe(k2p_subscription *s, const char *consumer_arn, const char *shard_id,
                               const k2p_iter_start *start, k2p_subscribe_cb cb, void *ud,
                               k2p_subscribe_result *res, k2p_err *err);

/* Keeps the shard flowing: subscribes at `start`, then again AFTER_SEQUENCE_NUMBER the last
 * ContinuationSequenceNumber whenever a subscription ends (server or session limit) or fails
 * with K2P_EINUSE, K2P_ETHROTTLED, K2P_ERETRY or K2P_EPARSE (up to max_attempts in a row, with
 * full-jitter backoff; an answered subscription resets the count). Returns 0 when the shard
 * ended (res->end == K2P_SUB_END_SHARD; the last event carried the ChildShards) or the
 * callback returned K2P_SUB_STOP (res->end == K2P_SUB_END_CALLBACK); else the error. *res
 * sums the whole run. */
int k2p_subscription_run(k2p_subscription *s, const char *consumer_arn, const char *shard_id,
                         const k2p_iter_start *start, k2p_subscribe_cb cb, void *ud,
                         k2p_subscribe_result *res, k2p_err *err);

/* ---- pure parts (no I/O), for tests and fuzzing --------------------------------------------- */

/* Parses a SubscribeToShardEvent payload: records (as k2p_kinesis_parse_get_records does) and
 * the ContinuationSequenceNumber into cont (NUL-terminated; "" when absent or null). Returns 0
 * or K2P_EPARSE / K2P_ENOMEM. */
int k2p_kinesis_parse_subscribe_event(const char *payload, size_t len, k2p_records *out,
                                      char cont[132], k2p_err *err);

#endif

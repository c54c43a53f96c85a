/* mock_api.h - mock_kinesis's request handler: the Kinesis JSON 1.1 operations (POST / with
 * X-Amz-Target: Kinesis_20131202.<Op>), fault injection around them, and the test endpoints
 * GET /stats, GET|POST /control and GET /healthz.
 *
 * Threading: mock_api_handle is called concurrently by every HTTP worker thread; it takes the
 * store lock (read for reads, write for changes) and snapshots the fault configuration once
 * per request.
 */
#ifndef MOCK_API_H
#define MOCK_API_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "mock_ctl.h"
#include "mock_http.h"
#include "mock_store.h"

/* The active subscriptions (enhanced fan-out), one per consumer and shard: who owns each and
 * since when. Guarded by its own mutex, never taken with the store lock held. */
typedef struct mock_sub_entry {
    char key[MOCK_NAME_MAX * 2 + 64]; /* stream gen / consumer ARN TS / consumer / shard */
    uint64_t owner;                   /* the subscription's id */
    int64_t started_ms;
} mock_sub_entry;

typedef struct mock_sub_registry {
    pthread_mutex_t lock;
    mock_sub_entry *v; /* @locks lock */
    size_t n, cap;
    atomic_uint_least64_t next_id;
} mock_sub_registry;

typedef struct mock_server {
    mock_store store;
    mock_ctl ctl;
    mock_sub_registry subs;
    bool log_requests; /* one line per request on stderr */
} mock_server;

/* The mock_handler of mock_http; ud is the mock_server. */
void mock_api_handle(void *ud, const mock_req *req, mock_resp *resp);

/* Performs the reshard configured in cfg (split or merge) now. 0 or an error with err set.
 * Takes the store's write lock. */
int mock_api_reshard(mock_server *srv, const mock_fault_cfg *cfg, k2p_err *err);

/* ---- shared with mock_efo.c (enhanced fan-out) ---------------------------------------------- */

/* An AWS-style error answer: HTTP status, {"__type":type,"message":...}, x-amzn-ErrorType. */
void mock_api_error(mock_resp *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Index of an iterator / starting position type (TRIM_HORIZON 0, LATEST 1, AT_TIMESTAMP 2,
 * AT_SEQUENCE_NUMBER 3, AFTER_SEQUENCE_NUMBER 4) checked against its sequence number and
 * timestamp; -1 after answering the error. */
int mock_api_iter_type(const char *type, const char *seq, const cJSON *ts, const char *member,
                       mock_resp *r);

/* The record position type `ti` starts at in shard sh. 0, or -1 after answering (a sequence
 * number of another shard or stream). @locks store read. */
int mock_api_seek(const mock_shard *sh, int ti, const char *seq, const cJSON *ts,
                  const char *stream, uint64_t *pos, mock_resp *r);

/* Appends ,"ChildShards":[...] for closed shard sh. 0 or K2P_ENOMEM. @locks store read. */
int mock_api_put_children(k2p_buf *b, const mock_stream *s, const mock_shard *sh);

/* Fires the armed reshard trigger once records_served (now `served`) reaches it. Takes the
 * store's write lock: call without the store lock. */
void mock_api_maybe_reshard(mock_server *srv, const mock_fault_cfg *cfg, uint64_t served);

/* mock_efo.c: the consumer operations and SubscribeToShard. @locks none held. */
void mock_efo_register(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r);
void mock_efo_describe(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r);
void mock_efo_list(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in, mock_resp *r);
void mock_efo_deregister(mock_server *srv, const mock_fault_cfg *cfg, const cJSON *in,
                         mock_resp *r);
/* `truncate`: the drawn fault; the first SubscribeToShardEvent is cut in half and the stream
 * ends there. */
void mock_efo_subscribe(mock_server *srv, const mock_fault_cfg *cfg, const mock_req *q,
                        const cJSON *in, bool truncate, mock_resp *r);

/* The subscription registry. 0 or K2P_ENOMEM. */
int mock_efo_init(mock_server *srv);
void mock_efo_deinit(mock_server *srv);

#endif

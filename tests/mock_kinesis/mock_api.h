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

#include <stdbool.h>

#include "mock_ctl.h"
#include "mock_http.h"
#include "mock_store.h"

typedef struct mock_server {
    mock_store store;
    mock_ctl ctl;
    bool log_requests; /* one line per request on stderr */
} mock_server;

/* The mock_handler of mock_http; ud is the mock_server. */
void mock_api_handle(void *ud, const mock_req *req, mock_resp *resp);

/* Performs the reshard configured in cfg (split or merge) now. 0 or an error with err set.
 * Takes the store's write lock. */
int mock_api_reshard(mock_server *srv, const mock_fault_cfg *cfg, k2p_err *err);

#endif

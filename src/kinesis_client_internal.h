/* kinesis_client_internal.h - what kinesis_client.c lends its sibling modules (stream consumers
 * and SubscribeToShard in kinesis_subscribe.c): one signed JSON 1.1 call with the handle's retry
 * policy, its cancellable sleep, and the pieces of a request (endpoint, signed headers) for
 * calls made on another curl handle. Not part of the public API.
 *
 * Threading: as for the handle: one thread at a time.
 */
#ifndef K2P_KINESIS_CLIENT_INTERNAL_H
#define K2P_KINESIS_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/kinesis_client.h"

/* Sends body (a JSON object) as Kinesis_20131202.<op>, retrying throttling and transient
 * errors like every other operation; `what` names the object for error messages. On 0,
 * *resp and *resp_len are the 200 response body, valid until the handle's next call. */
int k2p_kinesis_call_json(k2p_kinesis *k, const char *op, const char *what, const char *body,
                          size_t len, const char **resp, size_t *resp_len, k2p_err *err);

/* Sleeps ms milliseconds, returning early when the handle's cancel flag is raised. */
void k2p_kinesis_sleep_ms(k2p_kinesis *k, int64_t ms);

/* True when the handle's cancel flag is raised. */
int k2p_kinesis_cancelled(const k2p_kinesis *k);

/* curl_global_init, once per process. Any thread. */
void k2p_kinesis_curl_init(void);

/* The options every Kinesis request handle shares: URL, no signals, keep-alive, connect timeout,
 * error buffer, TLS verification (plus ca_file), http/https only, no redirects, POST, and the
 * progress callback (cancellation). The caller adds timeouts, body handling and HTTP version. */
int k2p_kinesis_curl_setup(CURL *c, const char *url, const char *ca_file, long connect_timeout_ms,
                           char *errbuf, curl_xferinfo_callback progress, void *ud, k2p_err *err);

/* An endpoint URL's "host[:port]" (heap, for the Host header) and whether it is https (tls may
 * be NULL). K2P_ECONFIG for a URL that is not http(s). */
int k2p_kinesis_parse_endpoint(const char *endpoint, char **host, bool *tls, k2p_err *err);

/* The headers of a SigV4-signed JSON 1.1 POST of body as Kinesis_20131202.<op> (Host,
 * Content-Type, X-Amz-Target, X-Amz-Date, Authorization, an empty Expect, and the session
 * token when the credentials have one) into *hl (caller frees with curl_slist_free_all).
 * Credentials come from the chain; a malformed credentials file is K2P_ECONFIG. */
int k2p_kinesis_sign_json(k2p_cred_chain *chain, const char *host, const char *region,
                          const char *op, const void *body, size_t len, struct curl_slist **hl,
                          k2p_err *err);

#endif

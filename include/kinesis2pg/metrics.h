/* metrics.h - the --metrics-addr HTTP endpoint: Prometheus text exposition at /metrics,
 * liveness at /healthz, readiness at /readyz.
 *
 * The HTTP side is libmicrohttpd (GNU, in Debian; see docs/operations.md): a thread of its own
 * answers requests by calling back into the owner, which renders from atomics and never blocks
 * the loader's threads.
 *
 * Threading: start/stop from the main thread; the callbacks run on libmicrohttpd's thread and
 * must only read thread-safe state.
 */
#ifndef K2P_METRICS_H
#define K2P_METRICS_H

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

typedef struct k2p_metrics_source {
    /* Appends the Prometheus text exposition to out; 0 or K2P_ENOMEM. */
    int (*render)(void *ud, k2p_buf *out);
    /* Returns 1 when ready; may write a one-line reason into why (for a 503 body). */
    int (*ready)(void *ud, char *why, size_t n);
    void *ud;
} k2p_metrics_source;

typedef struct k2p_metrics k2p_metrics;

/* Listens on host:port (host NULL or "0.0.0.0": all IPv4 addresses; "::" all IPv6; port 0: a
 * free port, see k2p_metrics_port). `src` is copied. NULL on failure with err set. */
k2p_metrics *k2p_metrics_start(const char *host, int port, const k2p_metrics_source *src,
                               k2p_err *err);

/* The port it listens on. */
int k2p_metrics_port(const k2p_metrics *m);

/* Stops the server (waits for requests in progress) and frees it. NULL is fine. */
void k2p_metrics_stop(k2p_metrics *m);

/* Prometheus helpers: append `name{labels} value\n` with label values escaped. */
int k2p_prom_help(k2p_buf *out, const char *name, const char *type, const char *help);
int k2p_prom_sample(k2p_buf *out, const char *name, const char *labels, double value);
/* Appends `key="value"` (escaping \, " and newline) to a label buffer, comma-separated. */
int k2p_prom_label(k2p_buf *labels, const char *key, const char *value);

#endif

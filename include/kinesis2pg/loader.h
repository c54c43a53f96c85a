/* loader.h - `kinesis2pg load`: shard readers → rings → COPY writers → checkpoint thread.
 *
 * k2p_load_run() is the whole command: it sets up the tables, plans where every shard starts
 * (DESIGN §1 rules 1-4), runs one reader thread per readable shard, a pool of writer threads
 * and a checkpoint thread, and returns when every shard is caught up (or closed), when
 * --max-messages is reached, on a stop request (signal), or on a fatal error. Exactly-once
 * as DESIGN §4 describes.
 *
 * Threading: call from the main thread; it starts and joins every other thread itself.
 */
#ifndef K2P_LOADER_H
#define K2P_LOADER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/config.h"

typedef struct k2p_load_opts {
    const char *stream;
    const char *schema;
    const char *table;
    const char *pg_conninfo; /* NULL: libpq defaults */
    const char *endpoint;
    const char *region;
    const char *ca_file;
    k2p_cred_chain *creds; /* borrowed */
    k2p_from from;
    int64_t max_messages;     /* 0: unlimited */
    int64_t ms_behind_latest; /* caught up below this */
    bool raw;
    int decompress;     /* K2P_DECOMPRESS_* (0: auto) */
    const char *consumer; /* enhanced fan-out (SubscribeToShard) as this consumer; NULL: polling */
    bool follow;
    bool primary_key;
    int chunk_size;     /* GetRecords Limit */
    int writers;
    int batch_rows;     /* rows per writer transaction */
    int flush_ms;       /* a writer commits what it has after this long */
    int poll_min_ms;    /* minimum time between GetRecords calls of one shard (200) */
    int idle_ms;        /* sleep at the tip in follow mode (1000) */
    int64_t memory_bytes; /* bytes of encoded rows in flight between readers and writers */
    int kinesis_max_attempts; /* 0: client default */
    bool leases;              /* share shards with other --leases processes (lease.h) */
    int lease_ttl_ms;         /* lease lifetime without renewal */
    int worker_index;         /* static split: this worker (with worker_count > 0) */
    int worker_count;         /* static split over this many workers; 0: off */
    /* Set to nonzero (from a signal handler) to stop: readers stop, writers drain, exit 0. */
    volatile sig_atomic_t *stop;
    FILE *summary; /* where the end-of-run summary goes (stderr); NULL: none */
    const char *metrics_host; /* with metrics_port >= 0: serve /metrics, /healthz, /readyz */
    int metrics_port;         /* -1: no metrics endpoint */
} k2p_load_opts;

/* Fills opts from a parsed configuration (strings borrowed from cfg). */
void k2p_load_opts_from_config(k2p_load_opts *o, const k2p_config *cfg, k2p_cred_chain *creds);

typedef struct k2p_load_result {
    int64_t rows;      /* rows committed to the target table this run */
    int64_t dead;      /* records committed to kinesis2pg.dead_letters this run */
    int64_t bytes;     /* payload bytes of those */
    int64_t skipped;   /* records already committed by an earlier, crashed run */
    double seconds;
} k2p_load_result;

/* Runs the load. Returns 0 (done or stopped cleanly), K2P_ECONFIG (usage: exit 2) or another
 * error (exit 1) with err->msg naming what failed. */
int k2p_load_run(const k2p_load_opts *o, k2p_load_result *res, k2p_err *err);

#endif

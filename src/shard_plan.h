/* shard_plan.h - where a shard starts reading: DESIGN §1 incremental rules 1-4, as a pure
 * function of the persisted state, the shard's lineage and the run's clock.
 *
 * Threading: reentrant; no I/O.
 */
#ifndef K2P_SHARD_PLAN_H
#define K2P_SHARD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/config.h"
#include "pg_state.h"

typedef struct k2p_plan_ctx {
    k2p_from from;                /* --from */
    int64_t run_started_us;       /* this run's start (loader's wall clock) */
    int64_t prev_run_started_us;  /* the previous run's start, or -1 on the stream's first run */
} k2p_plan_ctx;

typedef struct k2p_plan {
    bool is_new;         /* no row yet: the caller persists start_at_us before reading */
    const char *seq;     /* resume AFTER_SEQUENCE_NUMBER this (borrowed from the state), or */
    int64_t start_at_us; /* start AT_TIMESTAMP this; -1 means TRIM_HORIZON */
} k2p_plan;

/* Plans shard `shard_id` with parents `parents[0..n)`:
 *  1. a checkpoint sequence: resume after it;
 *  -  a row without a sequence (never committed a record, or not reached by a cut-short run):
 *     its recorded start, so a shard a previous run did not reach is never skipped;
 *  4. a new shard with a known parent: TRIM_HORIZON when a parent delivered records or itself
 *     starts at TRIM_HORIZON (every record of a child follows its parents'), else the earliest
 *     parent start (the parent was read from that time, so is the child);
 *  2. a new shard on the stream's first run: --from (latest = this run's start);
 *  3. a new shard on a later run: the previous run's start minus one second. */
k2p_plan k2p_plan_shard(const k2p_stream_state *st, const char *shard_id,
                        const char *const *parents, size_t n_parents, const k2p_plan_ctx *ctx);

#endif

/* shard_plan.c - start positions of shards (DESIGN §1 rules 1-4). Pure.
 *
 * Threading: reentrant.
 */
#include "shard_plan.h"

#include <string.h>

k2p_plan k2p_plan_shard(const k2p_stream_state *st, const char *shard_id,
                        const char *const *parents, size_t n_parents, const k2p_plan_ctx *ctx)
{
    k2p_plan p = {false, NULL, -1};
    const k2p_shard_ckpt *c = k2p_stream_state_find(st, shard_id);
    bool known_parent = false, whole = false;
    int64_t earliest = INT64_MAX;

    if (c) {
        p.seq = c->seq;
        p.start_at_us = c->start_at_us;
        return p;
    }
    p.is_new = true;
    for (size_t i = 0; i < n_parents; i++) {
        const k2p_shard_ckpt *pc = parents[i] ? k2p_stream_state_find(st, parents[i]) : NULL;
        if (!pc)
            continue;
        known_parent = true;
        if (pc->seq || pc->start_at_us < 0)
            whole = true;
        else if (pc->start_at_us < earliest)
            earliest = pc->start_at_us;
    }
    if (known_parent) {
        p.start_at_us = whole ? -1 : earliest;
        return p;
    }
    if (ctx->prev_run_started_us < 0) {
        switch (ctx->from.kind) {
        case K2P_FROM_TRIM_HORIZON: p.start_at_us = -1; break;
        case K2P_FROM_AT_TIMESTAMP: p.start_at_us = ctx->from.at_us; break;
        case K2P_FROM_LATEST: p.start_at_us = ctx->run_started_us; break;
        }
        return p;
    }
    p.start_at_us = ctx->prev_run_started_us - 1000000;
    return p;
}

/* shard_iter.h - opens a shard iterator at a planned position: after a sequence number, at a
 * time, or at TRIM_HORIZON; shared by the loader's readers and `tail`.
 *
 * Threading: uses the caller's k2p_kinesis handle on the caller's thread.
 */
#ifndef K2P_SHARD_ITER_H
#define K2P_SHARD_ITER_H

#include <stdint.h>

#include "kinesis2pg/kinesis_client.h"

/* Where to (re)open: the first non-empty of last_seq (resume after the last record read),
 * start_seq (a checkpoint), start_at_us >= 0 (AT_TIMESTAMP), else TRIM_HORIZON. */
typedef struct k2p_iter_pos {
    const char *last_seq;
    const char *start_seq;
    int64_t start_at_us;
    /* In/out: when nonzero, records that arrived before this are to be skipped until the first
     * one at or after it (set when AT_TIMESTAMP fell back to TRIM_HORIZON, see below). */
    int64_t *filter_before_us;
} k2p_iter_pos;

/* The start position pos describes (AT_TIMESTAMP with its 2 s attempt, see below, unless
 * *pos->filter_before_us is already set); for GetShardIterator and SubscribeToShard. */
k2p_iter_start k2p_shard_iter_start(const k2p_iter_pos *pos);

/* Opens the iterator into *it (heap). An AT_TIMESTAMP request gets one 2 s attempt: kinesalite
 * never answers it when no record arrived at or after the time (AWS answers with an iterator at
 * the tip); then the shard is read from TRIM_HORIZON and *pos->filter_before_us is set so the
 * caller skips up to the first record at or after the time: the same records, the slow way.
 * Returns 0 or the client's error. */
int k2p_shard_iter_open(k2p_kinesis *k, const char *stream, const char *shard_id,
                        const k2p_iter_pos *pos, char **it, k2p_err *err);

#endif

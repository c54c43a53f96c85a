/* shard_iter.c - opening shard iterators at planned positions (see shard_iter.h).
 *
 * Threading: the caller's thread and client handle.
 */
#include "shard_iter.h"

#include "kinesis2pg/log.h"

#define K2P_AT_TIMESTAMP_TIMEOUT_MS 2000

k2p_iter_start k2p_shard_iter_start(const k2p_iter_pos *pos)
{
    k2p_iter_start st = {K2P_ITER_TRIM_HORIZON, NULL, 0, 0};
    if (pos->last_seq && pos->last_seq[0]) {
        st.type = K2P_ITER_AFTER_SEQUENCE_NUMBER;
        st.seq = pos->last_seq;
    } else if (pos->start_seq && pos->start_seq[0]) {
        st.type = K2P_ITER_AFTER_SEQUENCE_NUMBER;
        st.seq = pos->start_seq;
    } else if (pos->start_at_us >= 0 && !*pos->filter_before_us) {
        st.type = K2P_ITER_AT_TIMESTAMP;
        st.timestamp_us = pos->start_at_us;
        st.timeout_ms = K2P_AT_TIMESTAMP_TIMEOUT_MS;
    }
    return st;
}

int k2p_shard_iter_open(k2p_kinesis *k, const char *stream, const char *shard_id,
                        const k2p_iter_pos *pos, char **it, k2p_err *err)
{
    k2p_iter_start st = k2p_shard_iter_start(pos);
    int rc = k2p_kinesis_get_shard_iterator(k, stream, shard_id, &st, it, err);
    if (rc == K2P_ERETRY && st.type == K2P_ITER_AT_TIMESTAMP) {
        K2P_LOG(K2P_LOG_LEVEL_INFO, "at_timestamp_fallback",
                "shard %s: GetShardIterator AT_TIMESTAMP did not answer in %d ms; reading from "
                "TRIM_HORIZON and skipping records that arrived before",
                shard_id, K2P_AT_TIMESTAMP_TIMEOUT_MS);
        *pos->filter_before_us = pos->start_at_us;
        st.type = K2P_ITER_TRIM_HORIZON;
        st.timeout_ms = 0;
        rc = k2p_kinesis_get_shard_iterator(k, stream, shard_id, &st, it, err);
    }
    return rc;
}

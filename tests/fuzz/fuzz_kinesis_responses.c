/* fuzz_kinesis_responses.c - libFuzzer target for the Kinesis response parsers and the error
 * classifier: GetRecords, ListShards and error bodies must never crash, leak or overrun.
 * Threading: single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>

#include "kinesis2pg/kinesis_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    k2p_records recs;
    k2p_shard_list shards = {0};
    char *token = NULL;
    k2p_err err;

    k2p_records_init(&recs);
    if (k2p_kinesis_parse_get_records(body, size, &recs, &err) == 0) {
        /* Touch every byte the parser claims to have produced. */
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < recs.n; i++) {
            for (uint32_t j = 0; j < recs.recs[i].data_len; j++)
                sink ^= recs.recs[i].data[j];
            sink ^= (uint8_t)recs.recs[i].seq[recs.recs[i].seq_len];
            sink ^= (uint8_t)recs.recs[i].pkey[recs.recs[i].pkey_len];
        }
        (void)sink;
    }
    k2p_records_deinit(&recs);
    k2p_kinesis_parse_list_shards(body, size, &shards, &token, &err);
    free(token);
    k2p_shard_list_deinit(&shards);
    k2p_kinesis_classify_error(400, body, size, &err);
    return 0;
}

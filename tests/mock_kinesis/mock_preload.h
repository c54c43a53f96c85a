/* mock_preload.h - fills mock_kinesis with a stream of generated records before it serves,
 * so a benchmark reads at memory speed, and optionally writes the same rows to a file that a
 * benchmark can load into PostgreSQL with psql's \copy for comparison.
 *
 * Records are deterministic: record i (0-based, i < records) goes to shard i % shards, its
 * partition key is one of 8 keys "user-<k>" that hash into that shard (so a PutRecords with
 * the same key lands on the same shard), and its content depends only on (seed, i).
 * JSON records look like
 *   {"id":17,"user":"user-123","event":"click","amount":12.34,"payload":"Qx0c..."}
 * padded by "payload" to about `size` bytes; binary records are `size` pseudo-random bytes.
 * Arrival times are spread evenly over the `span_ms` before the preload.
 *
 * Dump format (--dump-jsonl): one line per record, tab-separated, in shard then sequence
 * order:  shard_id <TAB> sequence_number <TAB> partition_key <TAB> data
 * where data is the JSON text as is (it holds no tab, newline or backslash, so it is also
 * valid COPY text), or for binary records \\x<hex> (COPY text for a bytea \x literal).
 *
 * Threading: call before the server starts, from the main thread.
 */
#ifndef MOCK_PRELOAD_H
#define MOCK_PRELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "kinesis2pg/common.h"
#include "mock_store.h"

typedef struct mock_preload_opts {
    const char *stream;
    int shards;
    int64_t records;
    int64_t size;
    bool binary;
    int64_t span_ms;
    uint64_t seed;
    const char *dump_path; /* NULL: no dump */
} mock_preload_opts;

/* Creates the stream and its records. 0 or an error (err set). */
int mock_preload(mock_store *st, const mock_preload_opts *o, k2p_err *err);

#endif

/* copy_encode.h - encodes Kinesis records as rows of a binary COPY stream for the target table,
 * and builds the SQL around it (CREATE SCHEMA/TABLE, COPY ... FROM STDIN).
 *
 * Format: PostgreSQL's binary COPY, measured against text COPY by bench/copy_format_bench.c:
 * 1.24-1.53x the rows/s for jsonb and 2x for bytea, with 0.5-0.74x the encoder CPU (numbers in
 * that file). A 19-byte header, then per row an int16 field count and, per field, an int32
 * length and the type's binary "send" representation, then an int16 -1 trailer. All integers
 * are big-endian. A batch is k2p_copy_begin() + rows + k2p_copy_end(); several batches
 * can be concatenated into one COPY by dropping the inner headers/trailers (the writer streams
 * the header once, each batch's rows, then the trailer).
 *
 * Table columns (DESIGN §2), in COPY order:
 *   _kinesis_msg_id text        dlt's digest128(shard_id + sequence_number): base64 of the first
 *                               15 bytes of SHAKE128 over the UTF-8 bytes of the shard id
 *                               followed directly by the decimal sequence number (20 chars).
 *                               Identical to the dlt kinesis source's id, so tables loaded by
 *                               either tool deduplicate against each other; stable forever
 *                               (FIPS 202, fixed input layout). Costs one Keccak-f[1600]
 *                               permutation, ~0.55 us per row: negligible next to Kinesis's
 *                               2 MB/s per shard, and worth the compatibility.
 *                               A user record of a KPL aggregate hashes the shard id, the
 *                               sequence number, ':' and its sub-sequence number in decimal
 *                               ("shardId-000000000000" "4960..." ":3"), so every user record
 *                               has its own id and a plain record keeps dlt's.
 *   _kinesis__shard_id text, _kinesis__seq_no numeric,
 *   _kinesis__sub_seq bigint    the position in the KPL aggregate; NULL for a plain record,
 *   _kinesis__ts timestamptz, _kinesis__partition text, _kinesis__stream_name text,
 *   data jsonb | bytea.
 *
 * Threading: pure functions on caller buffers; reentrant. Readers encode straight into their
 * batch buffer, so writers never re-encode.
 */
#ifndef K2P_COPY_ENCODE_H
#define K2P_COPY_ENCODE_H

#include "kinesis2pg/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define K2P_COPY_NCOLS 8
#define K2P_MSG_ID_LEN 20 /* base64 of 15 bytes: no padding */
#define K2P_SEQNO_MAX_DIGITS 129
#define K2P_PG_IDENT_MAX 63 /* NAMEDATALEN - 1: longer names would be truncated silently */
#define K2P_COPY_HEADER_LEN 19
#define K2P_COPY_TRAILER_LEN 2
/* Binary numeric of a sequence number: 4 int16 header fields + up to 33 base-10000 digits. */
#define K2P_NUMERIC_MAX_BYTES (8 + 2 * ((K2P_SEQNO_MAX_DIGITS + 3) / 4))
/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC). */
#define K2P_PG_EPOCH_OFFSET_US INT64_C(946684800000000)

/* What the data column holds. */
enum {
    K2P_COPY_JSONB = 0, /* payload is JSON text already checked by k2p_json_validate() */
    K2P_COPY_BYTEA = 1, /* raw payload bytes (--raw) */
};

/* Column names in COPY order. */
extern const char *const k2p_copy_columns[K2P_COPY_NCOLS];

/* One record, borrowed pointers. Text fields must be valid UTF-8 without NUL bytes (Kinesis
 * guarantees this for shard ids, partition keys and stream names). */
typedef struct k2p_copy_row {
    const char *shard_id;
    size_t shard_id_len;
    const char *seq_no; /* decimal: 0|[1-9][0-9]{0,128} */
    size_t seq_no_len;
    bool has_sub_seq;   /* a user record of a KPL aggregate: */
    uint32_t sub_seq;   /* its position in the aggregate */
    const char *msg_id; /* its message id when already computed (k2p_copy_msg_ids: K2P_MSG_ID_LEN
                           chars), or NULL */
    int64_t arrival_us; /* ApproximateArrivalTimestamp, microseconds since the Unix epoch */
    const char *partition;
    size_t partition_len;
    const char *stream;
    size_t stream_len;
    const void *data; /* payload */
    size_t data_len;
} k2p_copy_row;

/* Appends the binary COPY header. Returns 0 or K2P_ENOMEM. */
int k2p_copy_begin(k2p_buf *out);

/* Appends one row; data_type is K2P_COPY_JSONB or K2P_COPY_BYTEA. Returns 0, K2P_EINVAL (bad
 * sequence number, NUL in a text field, timestamp outside PostgreSQL's range, field over 1 GB)
 * or K2P_ENOMEM (buffer bound); on error `out` is unchanged. */
int k2p_copy_put_row(k2p_buf *out, const k2p_copy_row *row, int data_type);

/* Appends the trailer (int16 -1). Returns 0 or K2P_ENOMEM. */
int k2p_copy_end(k2p_buf *out);

/* Writes the message id (K2P_MSG_ID_LEN chars + NUL) of a record into out. */
void k2p_copy_msg_id(const char *shard_id, size_t shard_id_len, const char *seq_no,
                     size_t seq_no_len, char out[K2P_MSG_ID_LEN + 1]);

/* The same for the user record at position sub_seq of a KPL aggregate. */
void k2p_copy_msg_id_sub(const char *shard_id, size_t shard_id_len, const char *seq_no,
                         size_t seq_no_len, uint32_t sub_seq, char out[K2P_MSG_ID_LEN + 1]);

/* The message ids of n records of one shard into out[i]: as k2p_copy_msg_id, or as
 * k2p_copy_msg_id_sub where sub_seq[i] >= 0 (sub_seq may be NULL). Eight at a time with AVX-512
 * where the CPU has it (~5x the rate of one at a time), else one by one. */
void k2p_copy_msg_ids(const char *shard_id, size_t shard_id_len, const char *const seq_no[],
                      const size_t seq_no_len[], const int64_t sub_seq[], size_t n,
                      char out[][K2P_MSG_ID_LEN + 1]);

/* SHAKE128 (FIPS 202) of n bytes into outlen bytes of output. */
void k2p_shake128(const void *in, size_t n, unsigned char *out, size_t outlen);

/* Is s a valid sequence number: 0|[1-9][0-9]{0,128}? */
int k2p_copy_seqno_valid(const char *s, size_t n);

/* Encodes a sequence number as PostgreSQL's binary numeric (numeric_send) into out, which must
 * hold K2P_NUMERIC_MAX_BYTES. Returns the length written, or 0 if the digits are invalid. */
size_t k2p_copy_numeric(const char *digits, size_t n, unsigned char *out);

/* Converts Unix-epoch microseconds to PostgreSQL's binary timestamptz (microseconds since
 * 2000-01-01 UTC). Returns 0, or K2P_EINVAL outside PostgreSQL's range (4713 BC - 294276 AD). */
int k2p_copy_timestamptz(int64_t unix_us, int64_t *pg_us);

/* Appends ident as a double-quoted SQL identifier, doubling embedded quotes. Returns 0,
 * K2P_EINVAL (empty, longer than K2P_PG_IDENT_MAX bytes, or holding a NUL byte) or
 * K2P_ENOMEM. */
int k2p_pg_quote_ident(k2p_buf *out, const char *ident, size_t len);

/* Appends `CREATE SCHEMA IF NOT EXISTS "schema"`. 0, K2P_EINVAL or K2P_ENOMEM. */
int k2p_copy_sql_create_schema(k2p_buf *out, const char *schema);

/* Appends `CREATE TABLE IF NOT EXISTS "schema"."table" (...)` with the columns above, data as
 * jsonb or bytea, and PRIMARY KEY (_kinesis_msg_id) when primary_key is nonzero. The
 * metadata columns are NOT NULL. 0, K2P_EINVAL or K2P_ENOMEM. */
int k2p_copy_sql_create_table(k2p_buf *out, const char *schema, const char *table, int data_type,
                              int primary_key);

/* Appends `ALTER TABLE "schema"."table" ADD COLUMN IF NOT EXISTS "_kinesis__sub_seq" bigint`:
 * tables made before the column existed get it. 0, K2P_EINVAL or K2P_ENOMEM. */
int k2p_copy_sql_add_sub_seq(k2p_buf *out, const char *schema, const char *table);

/* Appends `COPY "schema"."table" ("_kinesis_msg_id", ...) FROM STDIN (FORMAT binary)`.
 * 0, K2P_EINVAL or K2P_ENOMEM. */
int k2p_copy_sql_copy(k2p_buf *out, const char *schema, const char *table);

#endif

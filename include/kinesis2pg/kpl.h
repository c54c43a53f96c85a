/* kpl.h - de-aggregation of Kinesis Producer Library (KPL) aggregated records.
 *
 * Format (amazon-kinesis-producer, aggregation-format.md): the 4 magic bytes F3 89 9A C2, a
 * protobuf (proto2) AggregatedRecord, and the 16-byte MD5 of the protobuf bytes:
 *
 *   message AggregatedRecord { repeated string partition_key_table     = 1;
 *                              repeated string explicit_hash_key_table = 2;
 *                              repeated Record records                 = 3; }
 *   message Record { required uint64 partition_key_index     = 1;
 *                    optional uint64 explicit_hash_key_index = 2;
 *                    required bytes  data                    = 3;
 *                    repeated Tag    tags                    = 4; }
 *   message Tag    { required string key = 1; optional string value = 2; }
 *
 * As the Kinesis Client Library decides: a record is aggregated only if it starts with the
 * magic, has more than 16 bytes after it, and the MD5 matches; otherwise it is an ordinary
 * record that merely looks similar. Unlike the KCL (which then passes the bytes through as one
 * record), a record with the right magic and MD5 whose protobuf is malformed is reported as
 * corrupt, so the loader dead-letters it with the reason instead of storing protobuf bytes.
 *
 * The decoder is hand-written (see docs/payload-decoding.md): zero-copy, one allocation sized
 * by a counting pass, bounded by K2P_KPL_MAX_RECORDS.
 *
 * Threading: k2p_kpl_parse is reentrant; a k2p_kpl_agg belongs to one thread at a time (each
 * reader thread keeps its own and reuses it for every record).
 */
#ifndef K2P_KPL_H
#define K2P_KPL_H

#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"

#define K2P_KPL_MAGIC "\xF3\x89\x9A\xC2"
#define K2P_KPL_MAGIC_LEN 4
#define K2P_KPL_DIGEST_LEN 16

/* At most this many user records, and entries in each key table, per aggregate. (A user
 * record takes at least 6 bytes; the KPL's aggregates are at most 51200 bytes by default.) */
#define K2P_KPL_MAX_RECORDS 100000

enum {
    K2P_KPL_NOT_AGGREGATED = 0, /* an ordinary record: use its data and partition key as is */
    K2P_KPL_OK = 1,             /* agg->records lists the user records (possibly none) */
    K2P_KPL_CORRUPT = 2,        /* magic and MD5 right, protobuf malformed: agg->reason */
};

/* One user record. Every pointer points into the buffer given to k2p_kpl_parse (no copies):
 * valid while that buffer is. Keys are valid UTF-8 without NUL bytes, not NUL-terminated. */
typedef struct k2p_kpl_record {
    const char *partition_key;
    size_t partition_key_len;
    const char *explicit_hash_key; /* NULL when the record has none */
    size_t explicit_hash_key_len;
    const uint8_t *data; /* may be NULL when data_len is 0 */
    size_t data_len;
    uint32_t sub_sequence; /* 0-based position in the aggregate (the KCL's subSequenceNumber) */
} k2p_kpl_record;

typedef struct k2p_kpl_key {
    const char *p;
    size_t n;
} k2p_kpl_key;

typedef struct k2p_kpl_agg {
    k2p_kpl_record *records; /* `count` entries, valid until the next parse or deinit */
    size_t count;
    /* One line for a dead letter or a log on K2P_KPL_CORRUPT ("kpl: record 3:
     * partition_key_index 7 out of range (2 keys) at byte 41"); on K2P_KPL_NOT_AGGREGATED
     * says why when the magic was there ("kpl: MD5 mismatch ..."), else "". Byte offsets count
     * from the start of the Kinesis record's data. */
    char reason[192];
    /* private: storage reused across calls */
    size_t records_cap;
    k2p_kpl_key *keys;
    size_t keys_cap;
} k2p_kpl_agg;

/* Initialises caller storage; no allocation until the first aggregate. */
void k2p_kpl_agg_init(k2p_kpl_agg *agg);

/* Frees the storage; the struct can be initialised again. */
void k2p_kpl_agg_deinit(k2p_kpl_agg *agg);

/* Parses the n bytes of one Kinesis record's data (after base64 decoding).
 * Returns:
 *   K2P_KPL_NOT_AGGREGATED  agg->count = 0; treat `data` as an ordinary record.
 *   K2P_KPL_OK              agg->records[0..count) are the user records, in order, each with
 *                           its own partition key; count may be 0 (an aggregate of nothing).
 *   K2P_KPL_CORRUPT         agg->count = 0, agg->reason says what is wrong.
 *   K2P_ENOMEM              the record table could not be allocated (not the record's fault).
 *   K2P_EIO                 mbedTLS's MD5 failed (not the record's fault).
 * Never reads past data + n. The caller's thread; see the threading note above. */
int k2p_kpl_parse(const uint8_t *data, size_t n, k2p_kpl_agg *agg);

/* Appends one aggregate of the n user records recs[i].partition_key/data (other fields are
 * ignored) to out, as the KPL writes it: magic, AggregatedRecord with each distinct partition
 * key once, MD5. For producers (kinesis2pg-produce --aggregate). Returns 0, K2P_EINVAL (none,
 * which would read as an ordinary record, or more than K2P_KPL_MAX_RECORDS), K2P_ENOMEM or K2P_EIO (MD5 failed); out is unchanged on error. */
int k2p_kpl_build(const k2p_kpl_record *recs, size_t n, k2p_buf *out);

/* 1 when data starts with the aggregation magic (a cheap pre-check; MD5 not verified). */
int k2p_kpl_has_magic(const uint8_t *data, size_t n);

#endif

/* unpack.h - turns one Kinesis record into the user records it carries: KPL de-aggregation
 * first, then `--decompress` of each payload (docs/payload-decoding.md, "Order").
 *
 *   k2p_unpack_begin(u, rec);
 *   while ((rc = k2p_unpack_next(u, &ur)) == 1)
 *       ... ur.reason ? dead letter : row ...
 *   if (rc < 0) ... not the record's fault (out of memory, MD5 failure) ...
 *
 * A record that is not an aggregate yields one user record without a sub-sequence number; an
 * aggregate yields one per user record (none for an empty aggregate), each with its own
 * partition key and sub-sequence number; a corrupt aggregate yields one dead letter holding the
 * whole record. A payload that fails to decompress is a dead letter holding its original
 * (compressed) bytes, so nothing is lost and it can be examined.
 *
 * Both the loader's reader threads and `tail` use it, so both see the same user records.
 *
 * Threading: a k2p_unpacker belongs to one thread (each reader keeps its own and reuses its
 * buffers for every record).
 */
#ifndef K2P_UNPACK_H
#define K2P_UNPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/kpl.h"

typedef struct k2p_user_record {
    const char *pkey; /* valid UTF-8 without NUL for aggregated records; else as Kinesis gave it */
    size_t pkey_len;
    const uint8_t *data; /* the decoded payload; on a dead letter, the bytes to keep */
    size_t data_len;
    bool has_sub_seq;    /* from a KPL aggregate */
    uint32_t sub_seq;    /* its 0-based position in the aggregate */
    const char *reason;  /* NULL: a payload to load; else why it is a dead letter */
} k2p_user_record;

typedef struct k2p_unpacker {
    int decompress;    /* K2P_DECOMPRESS_* */
    size_t max_out;    /* decompressed payloads larger than this are dead letters */
    /* private */
    k2p_kpl_agg agg;
    k2p_buf out;       /* decompressed payload, reused */
    const k2p_record *rec;
    int kpl_rc;
    size_t next;
    char reason[256];
} k2p_unpacker;

/* mode: K2P_DECOMPRESS_*; max_out: limit of a decompressed payload (0: the default). */
void k2p_unpacker_init(k2p_unpacker *u, int mode, size_t max_out);
void k2p_unpacker_deinit(k2p_unpacker *u);

/* Starts on rec (which must outlive the iteration). Returns 0, or K2P_ENOMEM / K2P_EIO when
 * the aggregate could not be examined (not the record's fault: the run must stop, not
 * dead-letter it). */
int k2p_unpack_begin(k2p_unpacker *u, const k2p_record *rec);

/* The next user record into *ur (valid until the next call): 1, or 0 when there are no more,
 * or K2P_ENOMEM / K2P_EINVAL when decompression failed for a reason that is not the payload's
 * fault (*ur->reason then says what). */
int k2p_unpack_next(k2p_unpacker *u, k2p_user_record *ur);

/* Frees buffers larger than keep_bytes (between records: what k2p_unpack_next returned is no
 * longer valid). Keeps an idle reader small after one huge payload or aggregate. */
void k2p_unpacker_trim(k2p_unpacker *u, size_t keep_bytes);

#endif

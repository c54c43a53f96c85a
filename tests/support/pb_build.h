/* pb_build.h - a small protobuf writer for tests: builds KPL aggregated records (and their
 * malformations) byte by byte, in the format of include/kinesis2pg/kpl.h.
 *
 * Allocation failures abort the test program.
 * Threading: a k2p_pb belongs to one thread.
 */
#ifndef K2P_PB_BUILD_H
#define K2P_PB_BUILD_H

#include <stddef.h>
#include <stdint.h>

typedef struct k2p_pb {
    uint8_t *p;
    size_t n, cap;
} k2p_pb;

void k2p_pb_raw(k2p_pb *b, const void *p, size_t n);
void k2p_pb_free(k2p_pb *b);
void k2p_pb_varint(k2p_pb *b, uint64_t v);
void k2p_pb_key(k2p_pb *b, uint32_t field, unsigned wire_type);
void k2p_pb_uint(k2p_pb *b, uint32_t field, uint64_t v);
void k2p_pb_bytes(k2p_pb *b, uint32_t field, const void *p, size_t n);
void k2p_pb_str(k2p_pb *b, uint32_t field, const char *s);

/* Appends a Record (field 3 of AggregatedRecord): partition_key_index, explicit_hash_key_index
 * (< 0: none), data. */
void k2p_pb_kpl_record(k2p_pb *agg, uint64_t pk, long long ehk, const void *data, size_t n);

/* Appends magic + body + MD5(body) to out: the data of one aggregated Kinesis record. */
void k2p_pb_kpl_wrap(k2p_pb *out, const k2p_pb *body);

#endif

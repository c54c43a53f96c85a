/* mock_store.h - mock_kinesis's data model: streams, shards, records, sequence numbers,
 * 128-bit hash keys and the opaque tokens (shard iterators, ListShards NextToken).
 *
 * Records are stored pre-encoded: each record is one JSON fragment of a GetRecords answer
 * ({"SequenceNumber":...,"Data":"<base64>",...}) in an append-only arena of large blocks that
 * never move, so serving a GetRecords is a loop of memcpy.
 *
 * Sequence numbers are 56-digit decimal strings, like real Kinesis ones:
 *   "49" | shard creation (epoch s, 10 digits) | shard index (8) | record index (20) |
 *   "000" | arrival (epoch ms, 13)
 * so they increase within a shard, a child shard's numbers exceed its parents', and a number
 * names the shard it came from. Record i (0-based) of a shard has index i + 1; index 0 is the
 * shard's StartingSequenceNumber; a closed shard's EndingSequenceNumber has index 10^19 - 1.
 *
 * Threading: the store has one reader/writer lock (`lock`, writer-preferring). Functions that
 * take a mock_store/mock_stream/mock_shard say which mode they need: "@locks read" (read or
 * write held) or "@locks write". The per-shard `lim_lock` guards only the --limits state and
 * is taken with the store lock held in either mode (order: store lock, then lim_lock).
 * Tokens, sequence and hash-key helpers are pure.
 */
#ifndef MOCK_STORE_H
#define MOCK_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

typedef unsigned __int128 mock_u128;
#define MOCK_U128_MAX (~(mock_u128)0)

#define MOCK_SEQ_LEN 56
#define MOCK_NAME_MAX 128
#define MOCK_SHARD_ID_LEN 20 /* "shardId-000000000000" */
#define MOCK_ACCOUNT "000000000000"
#define MOCK_REGION "us-east-1"

/* One stored record: where its GetRecords JSON fragment is, and what limits need. */
typedef struct mock_rec {
    int64_t arrival_ms;
    uint32_t block; /* arena block index */
    uint32_t off;   /* offset in the block */
    uint32_t len;   /* fragment length */
    uint32_t data_len;
} mock_rec;

typedef struct mock_shard {
    uint32_t ix;
    char id[MOCK_SHARD_ID_LEN + 1];
    int32_t parent, adjacent; /* shard indexes, -1 for none */
    mock_u128 hash_lo, hash_hi;
    int64_t create_ms;
    int64_t close_ms; /* 0 while open */
    mock_rec *recs;   /* @locks store lock (read to read, write to append) */
    size_t n, cap;
    /* --limits state, guarded by lim_lock. */
    pthread_mutex_t lim_lock;
    int64_t calls_ns[5]; /* times of the last 5 GetRecords calls, ring */
    unsigned call_pos;
    int64_t read_free_ns; /* reads allowed again from this time (2 MB/s debt) */
} mock_shard;

/* A registered stream consumer (enhanced fan-out). Its status is a function of time:
 * CREATING until create_ms + the consumer delay, then ACTIVE; DELETING from delete_ms for the
 * delay, then gone (mock_consumer_status). */
typedef struct mock_consumer {
    char name[MOCK_NAME_MAX + 1];
    int64_t create_ms;
    int64_t delete_ms; /* 0 unless deregistered */
    int64_t arn_ts;    /* the ":<seconds>" that ends its ARN; unique per stream */
} mock_consumer;

#define MOCK_CONSUMERS_MAX 20 /* per stream, like AWS */

typedef struct mock_stream {
    char name[MOCK_NAME_MAX + 1];
    uint64_t gen; /* unique per CreateStream: tokens of a deleted stream stay invalid */
    int64_t create_ms;
    mock_shard **shards;
    size_t n_shards, cap_shards;
    /* Arena of record fragments: blocks never move once allocated. */
    char **blocks;
    size_t n_blocks, cap_blocks;
    size_t last_used, last_cap;
    k2p_buf scratch;                             /* fragment under construction; @locks write */
    mock_consumer consumers[MOCK_CONSUMERS_MAX]; /* @locks store lock; in creation order */
    size_t n_consumers;
    int64_t last_arn_ts;
} mock_stream;

typedef struct mock_store {
    pthread_rwlock_t lock;
    mock_stream **streams; /* @locks store lock */
    size_t n, cap;
    uint64_t next_gen;
    uint64_t mac_key; /* keys the token checksums */
} mock_store;

/* ---- store -------------------------------------------------------------------------------- */

/* Initialises caller storage. 0 or K2P_ENOMEM. */
int mock_store_init(mock_store *st, uint64_t seed);
/* Frees every stream. No other thread may use the store. */
void mock_store_deinit(mock_store *st);

/* @locks read. NULL when absent. */
mock_stream *mock_store_find(const mock_store *st, const char *name);

/* Creates a stream of `shards` shards with even hash ranges, created at create_ms.
 * Returns 0, K2P_EINUSE (exists) or K2P_ENOMEM. @locks write. */
int mock_store_create(mock_store *st, const char *name, int shards, int64_t create_ms,
                      mock_stream **out);

/* 0 or K2P_ENOTFOUND. @locks write. */
int mock_store_delete(mock_store *st, const char *name);

/* ---- streams and shards ------------------------------------------------------------------- */

/* The open shard whose hash range holds `key`, or NULL. @locks read. */
mock_shard *mock_stream_route(const mock_stream *s, mock_u128 key);

/* Index of the shard named "shardId-NNN" (or "NNN"), or -1. @locks read. */
int mock_stream_resolve_shard(const mock_stream *s, const char *id);

/* Open shards. @locks read. */
int mock_stream_open_shards(const mock_stream *s);

/* Appends a record whose Data is already base64 (b64, canonical) to shard `sh`. Its arrival is
 * max(arrival_ms, the shard's last arrival) so arrivals never decrease. seq_out (may be NULL)
 * receives the sequence number. 0 or K2P_ENOMEM. @locks write. */
int mock_stream_append(mock_stream *s, mock_shard *sh, const char *b64, size_t b64_len,
                       size_t data_len, const char *pkey, size_t pkey_len, int64_t arrival_ms,
                       char seq_out[MOCK_SEQ_LEN + 1]);

/* The JSON fragment of a record. @locks read. */
static inline const char *mock_rec_frag(const mock_stream *s, const mock_rec *r)
{
    return s->blocks[r->block] + r->off;
}

/* Closes shard `ix` and adds two children split at new_start. 0, K2P_EINVAL (message in err,
 * like AWS's InvalidArgumentException) or K2P_ENOMEM. @locks write. */
int mock_stream_split(mock_stream *s, int ix, mock_u128 new_start, int64_t now_ms, k2p_err *err);

/* Closes shards a and b (adjacent hash ranges, both open) and adds their child. @locks write. */
int mock_stream_merge(mock_stream *s, int a, int b, int64_t now_ms, k2p_err *err);

/* First record position whose arrival is >= ts_ms (n when none). @locks read. */
size_t mock_shard_seek_time(const mock_shard *sh, int64_t ts_ms);

/* ---- consumers ---------------------------------------------------------------------------- */

typedef enum mock_consumer_state {
    MOCK_CONSUMER_CREATING,
    MOCK_CONSUMER_ACTIVE,
    MOCK_CONSUMER_DELETING,
    MOCK_CONSUMER_GONE,
} mock_consumer_state;

/* The state of c at now_ms, consumers taking delay_ms to be created or deleted. Pure. */
mock_consumer_state mock_consumer_status(const mock_consumer *c, int64_t now_ms, int64_t delay_ms);
/* "CREATING", "ACTIVE", "DELETING" (and "GONE"). */
const char *mock_consumer_state_name(mock_consumer_state st);

/* Drops the consumers that are gone at now_ms. @locks write. */
void mock_stream_purge_consumers(mock_stream *s, int64_t now_ms, int64_t delay_ms);

/* The consumer named `name` that is not gone at now_ms, or NULL. @locks read. */
mock_consumer *mock_stream_find_consumer(mock_stream *s, const char *name, int64_t now_ms,
                                         int64_t delay_ms);

/* Registers consumer `name` (purging gone ones first). 0, K2P_EINUSE (a live one of that
 * name) or K2P_ENOMEM (MOCK_CONSUMERS_MAX live ones: LimitExceededException). @locks write. */
int mock_stream_add_consumer(mock_stream *s, const char *name, int64_t now_ms, int64_t delay_ms,
                             mock_consumer **out);

/* Writes the consumer's ARN, arn:aws:kinesis:REGION:ACCOUNT:stream/S/consumer/C:TS. */
void mock_consumer_arn(const mock_stream *s, const mock_consumer *c, char *out, size_t cap);

/* Splits a consumer ARN into stream name, consumer name and TS. 0 or K2P_EINVAL. Pure. */
int mock_consumer_arn_parse(const char *arn, char stream[MOCK_NAME_MAX + 1],
                            char consumer[MOCK_NAME_MAX + 1], int64_t *ts);

/* ---- sequence numbers --------------------------------------------------------------------- */

#define MOCK_SEQ_INDEX_END 9999999999999999999ull /* 19 nines: fits uint64_t */

/* Formats the sequence number of `index` (record position + 1) of shard `sh`. */
void mock_seq_format(const mock_shard *sh, uint64_t index, int64_t arrival_ms,
                     char out[MOCK_SEQ_LEN + 1]);

typedef struct mock_seq_info {
    int64_t create_s;
    uint32_t shard_ix;
    uint64_t index;
} mock_seq_info;

/* Parses a sequence number of ours. 0 or K2P_EINVAL (not one of ours). */
int mock_seq_parse(const char *s, size_t n, mock_seq_info *out);

/* The shard's starting / ending (closed shards only) sequence numbers. */
void mock_shard_start_seq(const mock_shard *sh, char out[MOCK_SEQ_LEN + 1]);
void mock_shard_end_seq(const mock_shard *sh, char out[MOCK_SEQ_LEN + 1]);

/* ---- 128-bit hash keys -------------------------------------------------------------------- */

/* Parses a decimal number in [0, 2^128 - 1]. 0 or K2P_EINVAL. */
int mock_u128_parse(const char *s, size_t n, mock_u128 *out);
/* Writes the decimal form (NUL-terminated) and returns its length. */
size_t mock_u128_format(mock_u128 v, char out[40]);
/* MD5 of the partition key as a big-endian 128-bit number (how Kinesis routes records). */
mock_u128 mock_hash_key(const char *pkey, size_t n);

/* ---- tokens ------------------------------------------------------------------------------- */

typedef struct mock_token {
    char kind; /* 'I' shard iterator, 'T' ListShards NextToken */
    uint64_t gen;
    uint32_t shard; /* iterator: shard index; NextToken: filter flags */
    uint64_t pos;   /* iterator: next record position; NextToken: next shard index */
    int64_t issued_ms;
    char stream[MOCK_NAME_MAX + 1];
} mock_token;

#define MOCK_TOKEN_MAX 256 /* base64 characters, NUL included */

/* Encodes t (base64, NUL-terminated) into out; returns the length. */
size_t mock_token_encode(const mock_store *st, const mock_token *t, char out[MOCK_TOKEN_MAX]);
/* 0, or K2P_EINVAL when s is not a token this store issued (garbage, tampered, wrong kind). */
int mock_token_decode(const mock_store *st, char kind, const char *s, size_t n, mock_token *t);

/* ---- misc --------------------------------------------------------------------------------- */

/* splitmix64: the mock's one mixing function (RNG steps, token checksums). */
uint64_t mock_mix64(uint64_t x);

/* Wall clock in ms since the epoch. */
int64_t mock_wall_ms(void);

/* True for a valid stream name: 1..128 of [a-zA-Z0-9_.-]. */
bool mock_stream_name_valid(const char *s);

#endif

/* mock_preload.c - generates mock_kinesis's preloaded stream (see mock_preload.h).
 *
 * Shards are filled one after the other so each shard's fragments sit together in the arena
 * (GetRecords then copies one contiguous run of memory).
 * Threading: main thread, before the server starts; takes the store's write lock anyway.
 */
#include "mock_preload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"
#include "kinesis2pg/buf.h"

#define KEYS_PER_SHARD 8

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char *const events[] = {"click", "view", "purchase", "signup"};

/* Finds KEYS_PER_SHARD partition keys per shard ("user-<k>") that hash into it. keys[s][j]
 * is the number k. 0 or K2P_ENOMEM. */
static int find_keys(const mock_stream *s, uint32_t (*keys)[KEYS_PER_SHARD])
{
    size_t need = s->n_shards * KEYS_PER_SHARD, have = 0;
    uint8_t *fill = calloc(s->n_shards, 1);
    if (!fill)
        return K2P_ENOMEM;
    for (uint32_t k = 0; have < need && k < UINT32_MAX; k++) {
        char pk[24];
        int n = snprintf(pk, sizeof pk, "user-%u", (unsigned)k);
        const mock_shard *sh = mock_stream_route(s, mock_hash_key(pk, (size_t)n));
        if (sh && fill[sh->ix] < KEYS_PER_SHARD) {
            keys[sh->ix][fill[sh->ix]++] = k;
            have++;
        }
    }
    free(fill);
    return 0;
}

/* The payload of record `id` into b (reset first). */
static int gen_record(k2p_buf *b, const mock_preload_opts *o, uint64_t id, const char *user)
{
    uint64_t h = mock_mix64(o->seed * 0x9e3779b97f4a7c15ull ^ id), x = h;
    size_t target = (size_t)o->size;
    int rc;

    k2p_buf_reset(b);
    if (o->binary) {
        if (k2p_buf_reserve(b, target))
            return K2P_ENOMEM;
        for (size_t i = 0; i < target; i++) {
            if (i % 8 == 0)
                x = mock_mix64(x);
            b->data[i] = (char)(x >> (8 * (i % 8)));
        }
        b->len = target;
        return 0;
    }
    rc = k2p_buf_printf(b,
                        "{\"id\":%llu,\"user\":\"%s\",\"event\":\"%s\",\"amount\":%llu.%02llu,"
                        "\"payload\":\"",
                        (unsigned long long)id, user, events[h % K2P_ARRAY_LEN(events)],
                        (unsigned long long)((h >> 8) % 100000 / 100),
                        (unsigned long long)((h >> 8) % 100));
    if (rc)
        return rc;
    {
        size_t pad = target > b->len + 2 ? target - b->len - 2 : 0;
        if (k2p_buf_reserve(b, pad + 2))
            return K2P_ENOMEM;
        for (size_t i = 0; i < pad; i++) {
            if (i % 10 == 0)
                x = mock_mix64(x);
            b->data[b->len++] = alphabet[(x >> (6 * (i % 10))) & 63];
        }
    }
    return k2p_buf_puts(b, "\"}");
}

static int dump_line(FILE *f, const mock_shard *sh, const char *seq, const char *pk,
                     const k2p_buf *data, bool binary)
{
    static const char hex[] = "0123456789abcdef";
    if (fprintf(f, "%s\t%s\t%s\t", sh->id, seq, pk) < 0)
        return -1;
    if (binary) {
        fputs("\\\\x", f);
        for (size_t i = 0; i < data->len; i++) {
            unsigned char c = (unsigned char)data->data[i];
            putc(hex[c >> 4], f);
            putc(hex[c & 15], f);
        }
    } else {
        fwrite(data->data, 1, data->len, f);
    }
    return putc('\n', f) == EOF ? -1 : 0;
}

int mock_preload(mock_store *st, const mock_preload_opts *o, k2p_err *err)
{
    uint32_t(*keys)[KEYS_PER_SHARD] = NULL;
    int64_t now = mock_wall_ms(), t0 = now - o->span_ms;
    mock_stream *s = NULL;
    k2p_buf data, b64;
    FILE *dump = NULL;
    int rc = 0;

    k2p_buf_init(&data, 2u << 20);
    k2p_buf_init(&b64, 4u << 20);
    pthread_rwlock_wrlock(&st->lock);
    if (o->shards < 1 || o->records < 0 || o->size < 1 || o->size > (1 << 20)) {
        rc = k2p_err_set(err, K2P_EINVAL,
                         "preload: need shards >= 1, records >= 0, 1 <= size "
                         "<= 1048576");
        goto out;
    }
    rc = mock_store_create(st, o->stream, o->shards, t0 - 1000, &s);
    if (rc) {
        k2p_err_set(err, rc, "preload: cannot create stream %s: %s", o->stream, k2p_strerror(rc));
        goto out;
    }
    keys = calloc(s->n_shards, sizeof *keys);
    if (!keys || find_keys(s, keys)) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    if (o->dump_path) {
        dump = fopen(o->dump_path, "w");
        if (!dump) {
            rc = k2p_err_set(err, K2P_EIO, "preload: cannot write %s: %s", o->dump_path,
                             strerror(errno));
            goto out;
        }
        setvbuf(dump, NULL, _IOFBF, 1u << 20);
    }
    for (int si = 0; si < o->shards; si++) {
        mock_shard *sh = s->shards[si];
        int64_t m = o->records / o->shards + (si < o->records % o->shards);
        for (int64_t j = 0; j < m; j++) {
            uint64_t id = (uint64_t)j * (uint64_t)o->shards + (uint64_t)si;
            char pk[24], seq[MOCK_SEQ_LEN + 1];
            int pl = snprintf(pk, sizeof pk, "user-%u", (unsigned)keys[si][j % KEYS_PER_SHARD]);
            int64_t arrival = t0 + (m > 1 ? j * o->span_ms / m : 0);
            size_t el;
            if (gen_record(&data, o, id, pk) ||
                k2p_buf_reserve(&b64, k2p_base64_encoded_len(data.len) + 1)) {
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
                goto out;
            }
            el = k2p_base64_encode((const uint8_t *)data.data, data.len, b64.data);
            if (mock_stream_append(s, sh, b64.data, el, data.len, pk, (size_t)pl, arrival, seq)) {
                rc = k2p_err_set(err, K2P_ENOMEM,
                                 "preload: out of memory after %lld records of shard %s",
                                 (long long)j, sh->id);
                goto out;
            }
            if (dump && dump_line(dump, sh, seq, pk, &data, o->binary)) {
                rc = k2p_err_set(err, K2P_EIO, "preload: writing %s: %s", o->dump_path,
                                 strerror(errno));
                goto out;
            }
        }
    }
out:
    if (dump && fclose(dump) != 0 && !rc)
        rc = k2p_err_set(err, K2P_EIO, "preload: closing %s: %s", o->dump_path, strerror(errno));
    pthread_rwlock_unlock(&st->lock);
    free(keys);
    k2p_buf_deinit(&data);
    k2p_buf_deinit(&b64);
    return rc;
}

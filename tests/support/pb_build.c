/* pb_build.c - a small protobuf writer for tests (see pb_build.h).
 *
 * Threading: a k2p_pb belongs to one thread.
 */
#include "pb_build.h"

#include <mbedtls/md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/kpl.h"

void k2p_pb_raw(k2p_pb *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fputs("pb_build: out of memory\n", stderr);
            abort();
        }
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void k2p_pb_free(k2p_pb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void k2p_pb_varint(k2p_pb *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    k2p_pb_raw(b, tmp, n);
}

void k2p_pb_key(k2p_pb *b, uint32_t field, unsigned wire_type)
{
    k2p_pb_varint(b, (uint64_t)field << 3 | wire_type);
}

void k2p_pb_uint(k2p_pb *b, uint32_t field, uint64_t v)
{
    k2p_pb_key(b, field, 0);
    k2p_pb_varint(b, v);
}

void k2p_pb_bytes(k2p_pb *b, uint32_t field, const void *p, size_t n)
{
    k2p_pb_key(b, field, 2);
    k2p_pb_varint(b, n);
    k2p_pb_raw(b, p, n);
}

void k2p_pb_str(k2p_pb *b, uint32_t field, const char *s)
{
    k2p_pb_bytes(b, field, s, strlen(s));
}

void k2p_pb_kpl_record(k2p_pb *agg, uint64_t pk, long long ehk, const void *data, size_t n)
{
    k2p_pb r = {0};
    k2p_pb_uint(&r, 1, pk);
    if (ehk >= 0)
        k2p_pb_uint(&r, 2, (uint64_t)ehk);
    k2p_pb_bytes(&r, 3, data, n);
    k2p_pb_bytes(agg, 3, r.p, r.n);
    k2p_pb_free(&r);
}

void k2p_pb_kpl_wrap(k2p_pb *out, const k2p_pb *body)
{
    unsigned char md[16];
    if (mbedtls_md5_ret(body->p, body->n, md) != 0) {
        fputs("pb_build: MD5 failed\n", stderr);
        abort();
    }
    k2p_pb_raw(out, K2P_KPL_MAGIC, K2P_KPL_MAGIC_LEN);
    k2p_pb_raw(out, body->p, body->n);
    k2p_pb_raw(out, md, sizeof md);
}

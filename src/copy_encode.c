/* copy_encode.c - binary COPY rows for the target table, the message id hash (SHAKE128, as
 * dlt's digest128), and the table's SQL (see copy_encode.h).
 *
 * Threading: pure functions on caller buffers; reentrant.
 */
#include "kinesis2pg/copy_encode.h"

#include "kinesis2pg/common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *const k2p_copy_columns[K2P_COPY_NCOLS] = {
    "_kinesis_msg_id",
    "_kinesis__shard_id",
    "_kinesis__seq_no",
    "_kinesis__sub_seq",
    "_kinesis__ts",
    "_kinesis__partition",
    "_kinesis__stream_name",
    "data",
};

/* PostgreSQL's timestamp range (src/include/datatype/timestamp.h): MIN_TIMESTAMP <= t <
 * END_TIMESTAMP, in microseconds since 2000-01-01. */
#define PG_MIN_TIMESTAMP INT64_C(-211813488000000000)
#define PG_END_TIMESTAMP INT64_C(9223371331200000000)
#define FIELD_MAX ((size_t)0x3FFFFFFF) /* 1 GB - 1: PostgreSQL's MaxAllocSize bound */

/* ---------------------------------------------------------------------------------------------
 * SHAKE128 (FIPS 202): Keccak-f[1600], rate 168 bytes, domain suffix 0x1F.
 */

static const uint64_t keccak_rc[24] = {
    UINT64_C(0x0000000000000001), UINT64_C(0x0000000000008082), UINT64_C(0x800000000000808A),
    UINT64_C(0x8000000080008000), UINT64_C(0x000000000000808B), UINT64_C(0x0000000080000001),
    UINT64_C(0x8000000080008081), UINT64_C(0x8000000000008009), UINT64_C(0x000000000000008A),
    UINT64_C(0x0000000000000088), UINT64_C(0x0000000080008009), UINT64_C(0x000000008000000A),
    UINT64_C(0x000000008000808B), UINT64_C(0x800000000000008B), UINT64_C(0x8000000000008089),
    UINT64_C(0x8000000000008003), UINT64_C(0x8000000000008002), UINT64_C(0x8000000000000080),
    UINT64_C(0x000000000000800A), UINT64_C(0x800000008000000A), UINT64_C(0x8000000080008081),
    UINT64_C(0x8000000000008080), UINT64_C(0x0000000080000001), UINT64_C(0x8000000080008008),
};

#define ROTL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

/* Keccak-f[1600], fully unrolled with the 25 lanes in locals (a[x + 5y]); generated from the
 * FIPS 202 step mappings: theta, rho (offsets r[x][y]), pi (b[y][2x + 3y]), chi, iota. */
static void keccak_f1600(uint64_t st[25])
{
    uint64_t a00 = st[0], a01 = st[1], a02 = st[2], a03 = st[3], a04 = st[4], a05 = st[5],
             a06 = st[6], a07 = st[7], a08 = st[8], a09 = st[9], a10 = st[10], a11 = st[11],
             a12 = st[12];
    uint64_t a13 = st[13], a14 = st[14], a15 = st[15], a16 = st[16], a17 = st[17], a18 = st[18],
             a19 = st[19], a20 = st[20], a21 = st[21], a22 = st[22], a23 = st[23], a24 = st[24];
    uint64_t b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12;
    uint64_t b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23, b24;
    uint64_t c0, c1, c2, c3, c4, d0, d1, d2, d3, d4;

    for (int round = 0; round < 24; round++) {
        /* theta */
        c0 = a00 ^ a05 ^ a10 ^ a15 ^ a20;
        c1 = a01 ^ a06 ^ a11 ^ a16 ^ a21;
        c2 = a02 ^ a07 ^ a12 ^ a17 ^ a22;
        c3 = a03 ^ a08 ^ a13 ^ a18 ^ a23;
        c4 = a04 ^ a09 ^ a14 ^ a19 ^ a24;
        d0 = c4 ^ ROTL64(c1, 1);
        d1 = c0 ^ ROTL64(c2, 1);
        d2 = c1 ^ ROTL64(c3, 1);
        d3 = c2 ^ ROTL64(c4, 1);
        d4 = c3 ^ ROTL64(c0, 1);
        /* rho and pi: b[y][2x+3y] = rot(a[x][y] ^ d[x], r[x][y]) */
        b00 = a00 ^ d0;
        b10 = ROTL64(a01 ^ d1, 1);
        b20 = ROTL64(a02 ^ d2, 62);
        b05 = ROTL64(a03 ^ d3, 28);
        b15 = ROTL64(a04 ^ d4, 27);
        b16 = ROTL64(a05 ^ d0, 36);
        b01 = ROTL64(a06 ^ d1, 44);
        b11 = ROTL64(a07 ^ d2, 6);
        b21 = ROTL64(a08 ^ d3, 55);
        b06 = ROTL64(a09 ^ d4, 20);
        b07 = ROTL64(a10 ^ d0, 3);
        b17 = ROTL64(a11 ^ d1, 10);
        b02 = ROTL64(a12 ^ d2, 43);
        b12 = ROTL64(a13 ^ d3, 25);
        b22 = ROTL64(a14 ^ d4, 39);
        b23 = ROTL64(a15 ^ d0, 41);
        b08 = ROTL64(a16 ^ d1, 45);
        b18 = ROTL64(a17 ^ d2, 15);
        b03 = ROTL64(a18 ^ d3, 21);
        b13 = ROTL64(a19 ^ d4, 8);
        b14 = ROTL64(a20 ^ d0, 18);
        b24 = ROTL64(a21 ^ d1, 2);
        b09 = ROTL64(a22 ^ d2, 61);
        b19 = ROTL64(a23 ^ d3, 56);
        b04 = ROTL64(a24 ^ d4, 14);
        /* chi */
        a00 = b00 ^ (~b01 & b02);
        a01 = b01 ^ (~b02 & b03);
        a02 = b02 ^ (~b03 & b04);
        a03 = b03 ^ (~b04 & b00);
        a04 = b04 ^ (~b00 & b01);
        a05 = b05 ^ (~b06 & b07);
        a06 = b06 ^ (~b07 & b08);
        a07 = b07 ^ (~b08 & b09);
        a08 = b08 ^ (~b09 & b05);
        a09 = b09 ^ (~b05 & b06);
        a10 = b10 ^ (~b11 & b12);
        a11 = b11 ^ (~b12 & b13);
        a12 = b12 ^ (~b13 & b14);
        a13 = b13 ^ (~b14 & b10);
        a14 = b14 ^ (~b10 & b11);
        a15 = b15 ^ (~b16 & b17);
        a16 = b16 ^ (~b17 & b18);
        a17 = b17 ^ (~b18 & b19);
        a18 = b18 ^ (~b19 & b15);
        a19 = b19 ^ (~b15 & b16);
        a20 = b20 ^ (~b21 & b22);
        a21 = b21 ^ (~b22 & b23);
        a22 = b22 ^ (~b23 & b24);
        a23 = b23 ^ (~b24 & b20);
        a24 = b24 ^ (~b20 & b21);
        /* iota */
        a00 ^= keccak_rc[round];
    }
    st[0] = a00;
    st[1] = a01;
    st[2] = a02;
    st[3] = a03;
    st[4] = a04;
    st[5] = a05;
    st[6] = a06;
    st[7] = a07;
    st[8] = a08;
    st[9] = a09;
    st[10] = a10;
    st[11] = a11;
    st[12] = a12;
    st[13] = a13;
    st[14] = a14;
    st[15] = a15;
    st[16] = a16;
    st[17] = a17;
    st[18] = a18;
    st[19] = a19;
    st[20] = a20;
    st[21] = a21;
    st[22] = a22;
    st[23] = a23;
    st[24] = a24;
}

#define SHAKE128_RATE 168

/* Lanes are little-endian: byte i of the state is byte (i % 8) of lane i / 8. */
static inline void xor_byte(uint64_t st[25], size_t i, unsigned char b)
{
    st[i / 8] ^= (uint64_t)b << (8 * (i % 8));
}

/* Sponge state: 25 lanes and the byte position inside the current block. */
typedef struct shake_ctx {
    uint64_t st[25];
    size_t pos;
} shake_ctx;

static void shake_absorb(shake_ctx *c, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xor_byte(c->st, c->pos++, p[i]);
        if (c->pos == SHAKE128_RATE) {
            keccak_f1600(c->st);
            c->pos = 0;
        }
    }
}

static void shake_squeeze(shake_ctx *c, unsigned char *out, size_t outlen)
{
    xor_byte(c->st, c->pos, 0x1F); /* SHAKE domain bits + first pad bit */
    xor_byte(c->st, SHAKE128_RATE - 1, 0x80);
    keccak_f1600(c->st);
    for (size_t i = 0, o = 0; o < outlen; i++, o++) {
        if (i == SHAKE128_RATE) {
            keccak_f1600(c->st);
            i = 0;
        }
        out[o] = (unsigned char)(c->st[i / 8] >> (8 * (i % 8)));
    }
}

void k2p_shake128(const void *in, size_t n, unsigned char *out, size_t outlen)
{
    shake_ctx c;
    memset(&c, 0, sizeof c);
    shake_absorb(&c, in, n);
    shake_squeeze(&c, out, outlen);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define K2P_LITTLE_ENDIAN 1
#else
/* Lane i of the state is bytes 8i..8i+7 of the block, least significant first. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
#endif

/* SHAKE128 of a message (given in parts) shorter than the rate (every message id: a shard id
 * and a sequence number are ~76 bytes), up to 16 bytes of output: one block holding the whole
 * message and its padding, one permutation; no byte-by-byte absorbing. */
static void shake_short(const unsigned char *const parts[], const size_t lens[], size_t nparts,
                        unsigned char *out, size_t outlen)
{
    uint64_t st[25];
    size_t n = 0;
#ifdef K2P_LITTLE_ENDIAN
    /* The state's bytes are the lanes' bytes in order: write the block straight into it. */
    unsigned char *block = (unsigned char *)st;
    memset(st, 0, sizeof st);
#else
    unsigned char block[SHAKE128_RATE];
    memset(block, 0, sizeof block);
#endif
    for (size_t i = 0; i < nparts; i++) {
        memcpy(block + n, parts[i], lens[i]);
        n += lens[i];
    }
    block[n] ^= 0x1F; /* SHAKE domain bits + first pad bit */
    block[SHAKE128_RATE - 1] ^= 0x80;
#ifndef K2P_LITTLE_ENDIAN
    for (size_t i = 0; i < SHAKE128_RATE / 8; i++)
        st[i] = load_le64(block + 8 * i);
    for (size_t i = SHAKE128_RATE / 8; i < 25; i++)
        st[i] = 0;
#endif
    keccak_f1600(st);
    for (size_t o = 0; o < outlen; o++)
        out[o] = (unsigned char)(st[o / 8] >> (8 * (o % 8)));
}

/* The id's text: base64 of the digest's first 15 bytes (no padding). */
static void id_text(const unsigned char digest[15], char out[K2P_MSG_ID_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int g = 0; g < 5; g++) {
        uint32_t v =
            (uint32_t)digest[3 * g] << 16 | (uint32_t)digest[3 * g + 1] << 8 | digest[3 * g + 2];
        out[4 * g] = b64[v >> 18];
        out[4 * g + 1] = b64[(v >> 12) & 63];
        out[4 * g + 2] = b64[(v >> 6) & 63];
        out[4 * g + 3] = b64[v & 63];
    }
    out[K2P_MSG_ID_LEN] = '\0';
}

/* dlt: digest128(shard_id + sequence_number) = base64(shake_128(utf8).digest(15)); a user
 * record of a KPL aggregate adds ":" and its sub-sequence number in decimal. */
static void msg_id(const char *shard_id, size_t shard_id_len, const char *seq_no,
                   size_t seq_no_len, const char *sub, size_t sub_len, char out[K2P_MSG_ID_LEN + 1])
{
    unsigned char digest[15];
    size_t n = shard_id_len + seq_no_len + sub_len;

    if (n < SHAKE128_RATE) {
        const unsigned char *parts[3] = {(const unsigned char *)shard_id,
                                         (const unsigned char *)seq_no, (const unsigned char *)sub};
        size_t lens[3] = {shard_id_len, seq_no_len, sub_len};
        shake_short(parts, lens, sub_len ? 3 : 2, digest, sizeof digest);
    } else {
        shake_ctx c;
        memset(&c, 0, sizeof c);
        shake_absorb(&c, (const unsigned char *)shard_id, shard_id_len);
        shake_absorb(&c, (const unsigned char *)seq_no, seq_no_len);
        if (sub_len)
            shake_absorb(&c, (const unsigned char *)sub, sub_len);
        shake_squeeze(&c, digest, sizeof digest);
    }
    id_text(digest, out);
}

void k2p_copy_msg_id(const char *shard_id, size_t shard_id_len, const char *seq_no,
                     size_t seq_no_len, char out[K2P_MSG_ID_LEN + 1])
{
    msg_id(shard_id, shard_id_len, seq_no, seq_no_len, NULL, 0, out);
}

void k2p_copy_msg_id_sub(const char *shard_id, size_t shard_id_len, const char *seq_no,
                         size_t seq_no_len, uint32_t sub_seq, char out[K2P_MSG_ID_LEN + 1])
{
    char sub[16];
    int n = snprintf(sub, sizeof sub, ":%" PRIu32, sub_seq);
    msg_id(shard_id, shard_id_len, seq_no, seq_no_len, sub, (size_t)n, out);
}

/* Message ids in batches: eight SHAKE128 states side by side, one in each 64-bit element of
 * the AVX-512 registers. The permutation is the one above with vector operations (XOR5 and chi
 * are one ternary-logic instruction each); a batch costs about what one id costs alone, so ids
 * come ~5x faster (bench machine, 8 ids: 80-95 ns per id against 430-600 ns). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define K2P_HAVE_X8 1
#define V_XOR(a, b) _mm512_xor_si512((a), (b))
#define V_ROL(a, n) _mm512_rol_epi64((a), (n))
#define XOR5(a, b, c, d, e)                                                                       \
    _mm512_ternarylogic_epi64(_mm512_ternarylogic_epi64((a), (b), (c), 0x96), (d), (e), 0x96)
#define CHI(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0xD2) /* a ^ (~b & c) */

__attribute__((target("avx512f"))) static void keccak_x8(__m512i st[25])
{
    __m512i a00 = st[0], a01 = st[1], a02 = st[2], a03 = st[3], a04 = st[4], a05 = st[5],
             a06 = st[6], a07 = st[7], a08 = st[8], a09 = st[9], a10 = st[10], a11 = st[11],
             a12 = st[12];
    __m512i a13 = st[13], a14 = st[14], a15 = st[15], a16 = st[16], a17 = st[17], a18 = st[18],
             a19 = st[19], a20 = st[20], a21 = st[21], a22 = st[22], a23 = st[23], a24 = st[24];
    __m512i b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12;
    __m512i b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23, b24;
    __m512i c0, c1, c2, c3, c4, d0, d1, d2, d3, d4;

    for (int round = 0; round < 24; round++) {
        /* theta */
        c0 = XOR5(a00, a05, a10, a15, a20);
        c1 = XOR5(a01, a06, a11, a16, a21);
        c2 = XOR5(a02, a07, a12, a17, a22);
        c3 = XOR5(a03, a08, a13, a18, a23);
        c4 = XOR5(a04, a09, a14, a19, a24);
        d0 = V_XOR(c4, V_ROL(c1, 1));
        d1 = V_XOR(c0, V_ROL(c2, 1));
        d2 = V_XOR(c1, V_ROL(c3, 1));
        d3 = V_XOR(c2, V_ROL(c4, 1));
        d4 = V_XOR(c3, V_ROL(c0, 1));
        /* rho and pi: b[y][2x+3y] = rot(a[x][y] ^ d[x], r[x][y]) */
        b00 = V_XOR(a00, d0);
        b10 = V_ROL(V_XOR(a01, d1), 1);
        b20 = V_ROL(V_XOR(a02, d2), 62);
        b05 = V_ROL(V_XOR(a03, d3), 28);
        b15 = V_ROL(V_XOR(a04, d4), 27);
        b16 = V_ROL(V_XOR(a05, d0), 36);
        b01 = V_ROL(V_XOR(a06, d1), 44);
        b11 = V_ROL(V_XOR(a07, d2), 6);
        b21 = V_ROL(V_XOR(a08, d3), 55);
        b06 = V_ROL(V_XOR(a09, d4), 20);
        b07 = V_ROL(V_XOR(a10, d0), 3);
        b17 = V_ROL(V_XOR(a11, d1), 10);
        b02 = V_ROL(V_XOR(a12, d2), 43);
        b12 = V_ROL(V_XOR(a13, d3), 25);
        b22 = V_ROL(V_XOR(a14, d4), 39);
        b23 = V_ROL(V_XOR(a15, d0), 41);
        b08 = V_ROL(V_XOR(a16, d1), 45);
        b18 = V_ROL(V_XOR(a17, d2), 15);
        b03 = V_ROL(V_XOR(a18, d3), 21);
        b13 = V_ROL(V_XOR(a19, d4), 8);
        b14 = V_ROL(V_XOR(a20, d0), 18);
        b24 = V_ROL(V_XOR(a21, d1), 2);
        b09 = V_ROL(V_XOR(a22, d2), 61);
        b19 = V_ROL(V_XOR(a23, d3), 56);
        b04 = V_ROL(V_XOR(a24, d4), 14);
        /* chi */
        a00 = CHI(b00, b01, b02);
        a01 = CHI(b01, b02, b03);
        a02 = CHI(b02, b03, b04);
        a03 = CHI(b03, b04, b00);
        a04 = CHI(b04, b00, b01);
        a05 = CHI(b05, b06, b07);
        a06 = CHI(b06, b07, b08);
        a07 = CHI(b07, b08, b09);
        a08 = CHI(b08, b09, b05);
        a09 = CHI(b09, b05, b06);
        a10 = CHI(b10, b11, b12);
        a11 = CHI(b11, b12, b13);
        a12 = CHI(b12, b13, b14);
        a13 = CHI(b13, b14, b10);
        a14 = CHI(b14, b10, b11);
        a15 = CHI(b15, b16, b17);
        a16 = CHI(b16, b17, b18);
        a17 = CHI(b17, b18, b19);
        a18 = CHI(b18, b19, b15);
        a19 = CHI(b19, b15, b16);
        a20 = CHI(b20, b21, b22);
        a21 = CHI(b21, b22, b23);
        a22 = CHI(b22, b23, b24);
        a23 = CHI(b23, b24, b20);
        a24 = CHI(b24, b20, b21);
        /* iota */
        a00 = V_XOR(a00, _mm512_set1_epi64((long long)keccak_rc[round]));
    }
    st[0] = a00;
    st[1] = a01;
    st[2] = a02;
    st[3] = a03;
    st[4] = a04;
    st[5] = a05;
    st[6] = a06;
    st[7] = a07;
    st[8] = a08;
    st[9] = a09;
    st[10] = a10;
    st[11] = a11;
    st[12] = a12;
    st[13] = a13;
    st[14] = a14;
    st[15] = a15;
    st[16] = a16;
    st[17] = a17;
    st[18] = a18;
    st[19] = a19;
    st[20] = a20;
    st[21] = a21;
    st[22] = a22;
    st[23] = a23;
    st[24] = a24;
}

/* Eight one-block states (25 lanes each, state k at lanes[k]) through the permutation; the
 * first 16 bytes of each come out in digest[k]. */
__attribute__((target("avx512f"))) static void shake_x8(const uint64_t lanes[8][25],
                                                        unsigned char digest[8][16])
{
    const __m512i idx = _mm512_setr_epi64(0, 25, 50, 75, 100, 125, 150, 175);
    __m512i st[25];
    uint64_t out[2][8];
    for (int i = 0; i < 25; i++)
        st[i] = _mm512_i64gather_epi64(_mm512_add_epi64(idx, _mm512_set1_epi64(i)), lanes, 8);
    keccak_x8(st);
    _mm512_storeu_si512((void *)out[0], st[0]);
    _mm512_storeu_si512((void *)out[1], st[1]);
    for (int k = 0; k < 8; k++) {
        memcpy(digest[k], &out[0][k], 8); /* x86-64: little-endian lanes */
        memcpy(digest[k] + 8, &out[1][k], 8);
    }
}
#undef V_XOR
#undef V_ROL
#undef XOR5
#undef CHI
#endif

void k2p_copy_msg_ids(const char *shard_id, size_t shard_id_len, const char *const seq_no[],
                      const size_t seq_no_len[], const int64_t sub_seq[], size_t n,
                      char out[][K2P_MSG_ID_LEN + 1])
{
    size_t i = 0;
#ifdef K2P_HAVE_X8
    if (n >= 8 && __builtin_cpu_supports("avx512f")) {
        uint64_t lanes[8][25];
        unsigned char digest[8][16];
        for (; n - i >= 8; i += 8) {
            bool one_block = true;
            memset(lanes, 0, sizeof lanes);
            for (size_t k = 0; k < 8 && one_block; k++) {
                unsigned char *b = (unsigned char *)lanes[k];
                char sub[16];
                size_t sl = 0, len = shard_id_len + seq_no_len[i + k];
                if (sub_seq && sub_seq[i + k] >= 0)
                    sl = (size_t)snprintf(sub, sizeof sub, ":%" PRIu32, (uint32_t)sub_seq[i + k]);
                if (len + sl >= SHAKE128_RATE) {
                    one_block = false; /* a long id: this group goes one by one below */
                    break;
                }
                memcpy(b, shard_id, shard_id_len);
                memcpy(b + shard_id_len, seq_no[i + k], seq_no_len[i + k]);
                if (sl)
                    memcpy(b + len, sub, sl);
                b[len + sl] ^= 0x1F;
                b[SHAKE128_RATE - 1] ^= 0x80;
            }
            if (!one_block)
                break;
            shake_x8((const uint64_t(*)[25])lanes, digest);
            for (size_t k = 0; k < 8; k++)
                id_text(digest[k], out[i + k]);
        }
    }
#endif
    for (; i < n; i++) {
        if (sub_seq && sub_seq[i] >= 0)
            k2p_copy_msg_id_sub(shard_id, shard_id_len, seq_no[i], seq_no_len[i],
                                (uint32_t)sub_seq[i], out[i]);
        else
            k2p_copy_msg_id(shard_id, shard_id_len, seq_no[i], seq_no_len[i], out[i]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Field encoders
 */

static inline unsigned char *put_be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return p + 2;
}

static inline unsigned char *put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static inline unsigned char *put_be64(unsigned char *p, uint64_t v)
{
    p = put_be32(p, (uint32_t)(v >> 32));
    return put_be32(p, (uint32_t)v);
}

/* The length and leading-zero rules of a sequence number; the digits are checked by the caller
 * (k2p_copy_numeric checks them while it converts). */
static inline int seqno_shape_ok(const char *s, size_t n)
{
    return n > 0 && n <= K2P_SEQNO_MAX_DIGITS && (s[0] != '0' || n == 1);
}

int k2p_copy_seqno_valid(const char *s, size_t n)
{
    if (!seqno_shape_ok(s, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)(s[i] - '0') > 9u)
            return 0;
    }
    return 1;
}

size_t k2p_copy_numeric(const char *digits, size_t n, unsigned char *out)
{
    /* numeric_send: int16 ndigits, int16 weight, int16 sign (0 = positive), int16 dscale, then
     * ndigits base-10000 digits, most significant first. The value is an integer, so the
     * weight of the first group is ngroups - 1 and dscale is 0; trailing zero groups are
     * dropped and zero has no digits, as PostgreSQL stores (and sends) it. */
    uint16_t groups[(K2P_SEQNO_MAX_DIGITS + 3) / 4];
    size_t ngroups, first, ndigits, i = 0;
    unsigned bad = 0;
    unsigned char *p = out;

    /* Validated while converted (one pass over the digits, not two). */
    if (!seqno_shape_ok(digits, n))
        return 0;
    ngroups = (n + 3) / 4;
    first = n - 4 * (ngroups - 1);
    for (size_t g = 0; g < ngroups; g++) {
        size_t len = g == 0 ? first : 4;
        unsigned v = 0;
        for (size_t k = 0; k < len; k++) {
            unsigned d = (unsigned)(unsigned char)digits[i++] - '0';
            bad |= d > 9u;
            v = v * 10 + d;
        }
        groups[g] = (uint16_t)v;
    }
    if (bad)
        return 0;
    ndigits = ngroups;
    while (ndigits > 0 && groups[ndigits - 1] == 0)
        ndigits--;
    p = put_be16(p, (uint16_t)ndigits);
    p = put_be16(p, (uint16_t)(ndigits ? ngroups - 1 : 0));
    p = put_be16(p, 0x0000);
    p = put_be16(p, 0);
    for (size_t g = 0; g < ndigits; g++)
        p = put_be16(p, groups[g]);
    return (size_t)(p - out);
}

int k2p_copy_timestamptz(int64_t unix_us, int64_t *pg_us)
{
    if (unix_us < PG_MIN_TIMESTAMP + K2P_PG_EPOCH_OFFSET_US ||
        unix_us - K2P_PG_EPOCH_OFFSET_US >= PG_END_TIMESTAMP)
        return K2P_EINVAL;
    *pg_us = unix_us - K2P_PG_EPOCH_OFFSET_US;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Rows
 */

static const unsigned char copy_header[K2P_COPY_HEADER_LEN] = {
    'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xFF, '\r', '\n', '\0', /* signature */
    0,   0,   0,   0,                                           /* flags: no OIDs */
    0,   0,   0,   0,                                           /* header extension length */
};

int k2p_copy_begin(k2p_buf *out)
{
    return k2p_buf_append(out, copy_header, sizeof copy_header);
}

int k2p_copy_end(k2p_buf *out)
{
    static const unsigned char trailer[K2P_COPY_TRAILER_LEN] = {0xFF, 0xFF};
    return k2p_buf_append(out, trailer, sizeof trailer);
}

static inline unsigned char *put_field(unsigned char *p, const void *v, size_t n)
{
    p = put_be32(p, (uint32_t)n);
    if (n)
        memcpy(p, v, n);
    return p + n;
}

static int text_ok(const char *s, size_t n)
{
    return n <= FIELD_MAX && (n == 0 || memchr(s, '\0', n) == NULL);
}

int k2p_copy_put_row(k2p_buf *out, const k2p_copy_row *row, int data_type)
{
    unsigned char num[K2P_NUMERIC_MAX_BYTES];
    char id[K2P_MSG_ID_LEN + 1];
    size_t numlen, need, datalen;
    int64_t ts;
    unsigned char *p;

    if (data_type != K2P_COPY_JSONB && data_type != K2P_COPY_BYTEA)
        return K2P_EINVAL;
    numlen = k2p_copy_numeric(row->seq_no, row->seq_no_len, num);
    if (!numlen || k2p_copy_timestamptz(row->arrival_us, &ts) != 0 ||
        !text_ok(row->shard_id, row->shard_id_len) ||
        !text_ok(row->partition, row->partition_len) || !text_ok(row->stream, row->stream_len) ||
        row->data_len >= FIELD_MAX)
        return K2P_EINVAL;
    datalen = row->data_len + (data_type == K2P_COPY_JSONB ? 1 : 0);
    need = 2 + 4 * K2P_COPY_NCOLS + K2P_MSG_ID_LEN + row->shard_id_len + numlen +
           (row->has_sub_seq ? 8 : 0) + 8 + row->partition_len + row->stream_len + datalen;
    if (k2p_buf_reserve(out, need) != 0)
        return K2P_ENOMEM;
    if (row->msg_id)
        memcpy(id, row->msg_id, K2P_MSG_ID_LEN);
    else if (row->has_sub_seq)
        k2p_copy_msg_id_sub(row->shard_id, row->shard_id_len, row->seq_no, row->seq_no_len,
                            row->sub_seq, id);
    else
        k2p_copy_msg_id(row->shard_id, row->shard_id_len, row->seq_no, row->seq_no_len, id);

    p = (unsigned char *)out->data + out->len;
    p = put_be16(p, K2P_COPY_NCOLS);
    p = put_field(p, id, K2P_MSG_ID_LEN);
    p = put_field(p, row->shard_id, row->shard_id_len);
    p = put_field(p, num, numlen);
    if (row->has_sub_seq) {
        p = put_be32(p, 8);
        p = put_be64(p, row->sub_seq);
    } else {
        p = put_be32(p, UINT32_MAX); /* -1: NULL */
    }
    p = put_be32(p, 8);
    p = put_be64(p, (uint64_t)ts);
    p = put_field(p, row->partition, row->partition_len);
    p = put_field(p, row->stream, row->stream_len);
    p = put_be32(p, (uint32_t)datalen);
    if (data_type == K2P_COPY_JSONB)
        *p++ = 1; /* jsonb binary format version 1: the JSON text follows */
    if (row->data_len)
        memcpy(p, row->data, row->data_len);
    p += row->data_len;
    out->len += need;
    out->data[out->len] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * SQL
 */

int k2p_pg_quote_ident(k2p_buf *out, const char *ident, size_t len)
{
    size_t start = out->len;
    if (!ident || len == 0 || len > K2P_PG_IDENT_MAX || memchr(ident, '\0', len))
        return K2P_EINVAL;
    if (k2p_buf_putc(out, '"'))
        goto oom;
    for (size_t i = 0; i < len; i++) {
        if (ident[i] == '"' && k2p_buf_putc(out, '"'))
            goto oom;
        if (k2p_buf_putc(out, ident[i]))
            goto oom;
    }
    if (k2p_buf_putc(out, '"'))
        goto oom;
    return 0;
oom:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return K2P_ENOMEM;
}

/* "schema"."table" */
static int put_qualified(k2p_buf *out, const char *schema, const char *table)
{
    int rc;
    if (!schema || !table)
        return K2P_EINVAL;
    rc = k2p_pg_quote_ident(out, schema, strlen(schema));
    if (!rc)
        rc = k2p_buf_putc(out, '.');
    if (!rc)
        rc = k2p_pg_quote_ident(out, table, strlen(table));
    return rc;
}

/* Runs a builder; on failure truncates `out` back to where it was. */
static int finish(k2p_buf *out, size_t start, int rc)
{
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

int k2p_copy_sql_create_schema(k2p_buf *out, const char *schema)
{
    size_t start = out->len;
    int rc = k2p_buf_puts(out, "CREATE SCHEMA IF NOT EXISTS ");
    if (!rc)
        rc = schema ? k2p_pg_quote_ident(out, schema, strlen(schema)) : K2P_EINVAL;
    return finish(out, start, rc);
}

int k2p_copy_sql_create_table(k2p_buf *out, const char *schema, const char *table, int data_type,
                              int primary_key)
{
    static const char *const types[K2P_COPY_NCOLS] = {
        "text NOT NULL",
        "text NOT NULL",
        "numeric NOT NULL",
        "bigint",
        "timestamptz NOT NULL",
        "text NOT NULL",
        "text NOT NULL",
        NULL,
    };
    size_t start = out->len;
    int rc;

    if (data_type != K2P_COPY_JSONB && data_type != K2P_COPY_BYTEA)
        return K2P_EINVAL;
    rc = k2p_buf_puts(out, "CREATE TABLE IF NOT EXISTS ");
    if (!rc)
        rc = put_qualified(out, schema, table);
    if (!rc)
        rc = k2p_buf_puts(out, " (");
    for (int i = 0; !rc && i < K2P_COPY_NCOLS; i++) {
        rc = k2p_buf_puts(out, i ? ", " : "");
        if (!rc)
            rc = k2p_pg_quote_ident(out, k2p_copy_columns[i], strlen(k2p_copy_columns[i]));
        if (!rc)
            rc = k2p_buf_printf(out, " %s",
                                types[i] ? types[i]
                                         : (data_type == K2P_COPY_JSONB ? "jsonb" : "bytea"));
    }
    if (!rc && primary_key)
        rc = k2p_buf_puts(out, ", PRIMARY KEY (\"_kinesis_msg_id\")");
    if (!rc)
        rc = k2p_buf_putc(out, ')');
    return finish(out, start, rc);
}

int k2p_copy_sql_add_sub_seq(k2p_buf *out, const char *schema, const char *table)
{
    size_t start = out->len;
    int rc = k2p_buf_puts(out, "ALTER TABLE ");
    if (!rc)
        rc = put_qualified(out, schema, table);
    if (!rc)
        rc = k2p_buf_puts(out, " ADD COLUMN IF NOT EXISTS \"_kinesis__sub_seq\" bigint");
    return finish(out, start, rc);
}

int k2p_copy_sql_copy(k2p_buf *out, const char *schema, const char *table)
{
    size_t start = out->len;
    int rc = k2p_buf_puts(out, "COPY ");
    if (!rc)
        rc = put_qualified(out, schema, table);
    if (!rc)
        rc = k2p_buf_puts(out, " (");
    for (int i = 0; !rc && i < K2P_COPY_NCOLS; i++) {
        rc = k2p_buf_puts(out, i ? ", " : "");
        if (!rc)
            rc = k2p_pg_quote_ident(out, k2p_copy_columns[i], strlen(k2p_copy_columns[i]));
    }
    if (!rc)
        rc = k2p_buf_puts(out, ") FROM STDIN (FORMAT binary)");
    return finish(out, start, rc);
}

/* base64.c - standard base64 (RFC 4648 §4, padded): encoder and strict table-driven decoder.
 *
 * The decoder works a quantum (4 characters -> 3 bytes) at a time with one table look-up per
 * character; invalid characters are caught by OR-ing the looked-up values together and
 * testing one bit per quantum, so the hot loop has a single branch.
 * Threading: reentrant; the tables are read-only.
 */
#include "kinesis2pg/base64.h"

#include <limits.h>

static const char enc_table[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, BAD for everything else (including '='). */
#define BAD 0x80
/* clang-format off */
#define R8(x) x, x, x, x, x, x, x, x
static const uint8_t dec_table[256] = {
    R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD),                           /* 0x00-0x27 */
    BAD, BAD, BAD, 62, BAD, BAD, BAD, 63,                                   /* 0x28-0x2f */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, BAD, BAD, BAD, BAD, BAD, BAD,   /* 0x30-0x3f */
    BAD, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,                  /* 0x40-0x4f */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, BAD, BAD, BAD, BAD, BAD,    /* 0x50-0x5f */
    BAD, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,        /* 0x60-0x6f */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, BAD, BAD, BAD, BAD, BAD,    /* 0x70-0x7f */
    R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), /* 0x80-0xbf */
    R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), R8(BAD), /* 0xc0-0xff */
};
#undef R8
/* clang-format on */

size_t k2p_base64_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? 4 : 0);
}

size_t k2p_base64_decoded_max(size_t n)
{
    return n / 4 * 3 + (n % 4 ? 3 : 0);
}

size_t k2p_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0, o = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
        out[o++] = enc_table[(v >> 6) & 63];
        out[o++] = enc_table[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = enc_table[v >> 18];
        out[o++] = enc_table[(v >> 12) & 63];
        out[o++] = enc_table[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

long k2p_base64_decode(const char *in, size_t n, uint8_t *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t full, o = 0;
    unsigned bad = 0;

    if (n % 4 != 0 || n / 4 * 3 > (size_t)LONG_MAX)
        return -1;
    if (n == 0)
        return 0;

    /* Every quantum but the last has no padding. */
    full = n - 4;
    for (size_t i = 0; i < full; i += 4) {
        unsigned a = dec_table[s[i]], b = dec_table[s[i + 1]];
        unsigned c = dec_table[s[i + 2]], d = dec_table[s[i + 3]];
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        bad |= a | b | c | d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (bad & BAD)
        return -1;

    /* The last quantum: "xxxx", "xxx=" or "xx==". Strict: the bits that padding drops must be
     * zero, so every byte string has exactly one accepted encoding. */
    {
        const unsigned char *q = s + full;
        unsigned a = dec_table[q[0]], b = dec_table[q[1]];
        if ((a | b) & BAD)
            return -1;
        if (q[2] == '=') {
            if (q[3] != '=' || (b & 15))
                return -1;
            out[o++] = (uint8_t)(a << 2 | b >> 4);
        } else {
            unsigned c = dec_table[q[2]];
            if (c & BAD)
                return -1;
            if (q[3] == '=') {
                if (c & 3)
                    return -1;
                out[o++] = (uint8_t)(a << 2 | b >> 4);
                out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
            } else {
                unsigned d = dec_table[q[3]];
                if (d & BAD)
                    return -1;
                out[o++] = (uint8_t)(a << 2 | b >> 4);
                out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
                out[o++] = (uint8_t)((c & 3) << 6 | d);
            }
        }
    }
    return (long)o;
}

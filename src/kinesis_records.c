/* kinesis_records.c - the GetRecords response parser: a small in-place JSON scanner for the
 * response's known shape, decoding each record's base64 Data straight from the response buffer
 * into the records arena.
 *
 * Why not the general JSON library: GetRecords is the hot path (up to 10 MB and 10,000 records
 * per call). A tree parser copies every string (the whole response again) and allocates a node
 * per value; this scanner makes one arena reservation per response and touches each byte once
 * (with AVX2, a Data string is decoded 32 characters at a time while it is scanned).
 * It still accepts any valid JSON: unknown keys are skipped, any key order is fine, strings may
 * use every escape (a Data string escaped as "\/" decodes through a scratch copy). Nesting is
 * limited to 64 levels and every read is bounds-checked: it is fuzzed
 * (tests/fuzz/fuzz_kinesis_responses.c) and returns K2P_EPARSE on anything malformed.
 *
 * Threading: reentrant.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define K2P_HAVE_AVX2_PATH 1
#endif

#include "kinesis2pg/base64.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/seqnum.h"

#define MAX_DEPTH 64

typedef struct scan {
    const char *p, *end;
    const char *what; /* first problem, for the error message */
} scan;

typedef struct span {
    const char *s; /* raw bytes between the quotes */
    size_t n;
    bool escaped;  /* contains backslash escapes */
} span;

static bool fail(scan *sc, const char *what)
{
    if (!sc->what)
        sc->what = what;
    return false;
}

static void ws(scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static bool eat(scan *sc, char c)
{
    ws(sc);
    if (sc->p < sc->end && *sc->p == c) {
        sc->p++;
        return true;
    }
    return false;
}

static bool peek(scan *sc, char c)
{
    ws(sc);
    return sc->p < sc->end && *sc->p == c;
}

/* First byte in [p, end) that is '"', '\\' or a control character (below 0x20), or end. One
 * pass, 16 bytes at a time where SSE2 is there (every x86-64), 8 at a time elsewhere. */
static const char *string_stop(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1F);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* v <= 0x1F unsigned  <=>  min(v, 0x1F) == v */
        __m128i hit =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                         _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

/* The rest of a string token whose opening quote was eaten and whose raw span starts at
 * out->s: its raw span (validated escapes, no control characters). */
static bool string_rest(scan *sc, span *out)
{
    out->escaped = false;
    /* Fast path: nothing but plain characters up to the closing quote. */
    sc->p = string_stop(sc->p, sc->end);
    if (sc->p < sc->end && *sc->p == '"') {
        out->n = (size_t)(sc->p - out->s);
        sc->p++;
        return true;
    }
    while (sc->p < sc->end) {
        unsigned char c = (unsigned char)*sc->p;
        if (c == '"') {
            out->n = (size_t)(sc->p - out->s);
            sc->p++;
            return true;
        }
        if (c < 0x20)
            return fail(sc, "control character in a string");
        if (c == '\\') {
            out->escaped = true;
            if (sc->end - sc->p < 2)
                break;
            switch (sc->p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                sc->p += 2;
                continue;
            case 'u':
                if (sc->end - sc->p < 6)
                    return fail(sc, "truncated \\u escape");
                for (int i = 2; i < 6; i++)
                    if (!strchr("0123456789abcdefABCDEF", sc->p[i]) || !sc->p[i])
                        return fail(sc, "bad \\u escape");
                sc->p += 6;
                continue;
            default:
                return fail(sc, "bad escape");
            }
        }
        sc->p++;
    }
    return fail(sc, "unterminated string");
}

/* A string token: its raw span (validated escapes, no control characters). */
static bool string(scan *sc, span *out)
{
    if (!eat(sc, '"'))
        return fail(sc, "expected a string");
    out->s = sc->p;
    return string_rest(sc, out);
}

#ifdef K2P_HAVE_AVX2_PATH
/* Decodes base64 from in, 32 characters (24 bytes) at a time, while a block holds only the 64
 * alphabet characters (no '=', quote, backslash, control or non-ASCII byte). Writes 32 bytes per
 * block at out (24 used): out needs 8 bytes of slack. Returns the characters decoded, a multiple
 * of 32. The classification and the packing are Muła and Lemire's ("Faster Base64 Encoding and
 * Decoding using AVX2 Instructions", 2018; as in aklomp/base64): a character is valid when the
 * bit sets looked up by its low and its high nibble do not intersect. */
__attribute__((target("avx2"))) static size_t b64_blocks_avx2(const char *in, size_t n,
                                                              uint8_t *out)
{
    const __m256i lut_lo =
        _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A,
                         0x1B, 0x1B, 0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                         0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    const __m256i lut_hi =
        _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10,
                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    /* Added to a character, by its high nibble ('/' apart), to make its 6-bit value. */
    const __m256i lut_roll =
        _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19, 4,
                         -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i mask_2f = _mm256_set1_epi8(0x2F);
    const __m256i pack1 = _mm256_set1_epi32(0x01400140);
    const __m256i pack2 = _mm256_set1_epi32(0x00011000);
    const __m256i shuf = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2,
                                          1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m256i perm = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    size_t i = 0;

    for (; n - i >= 32; i += 32, out += 24) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + i));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(v, 4), mask_2f);
        __m256i lo = _mm256_and_si256(v, mask_2f);
        __m256i roll;
        if (!_mm256_testz_si256(_mm256_shuffle_epi8(lut_lo, lo), _mm256_shuffle_epi8(lut_hi, hi)))
            break;
        roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(_mm256_cmpeq_epi8(v, mask_2f), hi));
        v = _mm256_add_epi8(v, roll);
        /* 4 x 6 bits -> 3 bytes per 32-bit lane, then the 24 bytes together. */
        v = _mm256_madd_epi16(_mm256_maddubs_epi16(v, pack1), pack2);
        v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, shuf), perm);
        _mm256_storeu_si256((__m256i *)(void *)out, v);
    }
    return i;
}
#endif

/* The Data string: like string(), but while it is made of whole blocks of plain base64 it is
 * also decoded, into dst, in the same pass (such blocks hold no quote, backslash or control
 * byte, so the token ends after them). *pre is how many characters at the start of the span
 * were decoded (a multiple of 4, into *pre / 4 * 3 bytes at dst). dst needs room for the
 * decoded span plus 8 bytes. */
static bool data_string(scan *sc, span *out, uint8_t *dst, size_t *pre)
{
    *pre = 0;
    if (!eat(sc, '"'))
        return fail(sc, "expected a string");
    out->s = sc->p;
#ifdef K2P_HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2")) {
        *pre = b64_blocks_avx2(sc->p, (size_t)(sc->end - sc->p), dst);
        sc->p += *pre;
    }
#else
    (void)dst;
#endif
    return string_rest(sc, out);
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Writes the unescaped bytes of a validated span to out (room for sp->n bytes: unescaping
 * never grows). Returns the length, or -1 for an unpaired surrogate. */
static long unescape(const span *sp, char *out)
{
    const char *p = sp->s, *e = sp->s + sp->n;
    char *o = out;
    while (p < e) {
        unsigned cp;
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        switch (p[1]) {
        case 'b': *o++ = '\b'; p += 2; continue;
        case 'f': *o++ = '\f'; p += 2; continue;
        case 'n': *o++ = '\n'; p += 2; continue;
        case 'r': *o++ = '\r'; p += 2; continue;
        case 't': *o++ = '\t'; p += 2; continue;
        case 'u': break;
        default: *o++ = p[1]; p += 2; continue;
        }
        cp = hex4(p + 2);
        p += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (e - p < 6 || p[0] != '\\' || p[1] != 'u')
                return -1;
            lo = hex4(p + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return -1;
        }
        /* A \u escape is 6 (or 12) bytes; its UTF-8 is at most 3 (or 4): never grows. */
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xC0 | (cp >> 6));
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xE0 | (cp >> 12));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (char)(0xF0 | (cp >> 18));
            *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    return (long)(o - out);
}

static bool number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E';
}

/* Exact value of [-]digits[.digits] with at most 15 significant digits (every record's
 * ApproximateArrivalTimestamp): the mantissa and 10^fraction digits are exact doubles, so one
 * division rounds correctly, as strtod does (Clinger's fast path). False for anything else. */
static bool number_fast(const char *s, size_t n, double *out)
{
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *e = s + n;
    bool neg = s < e && *s == '-';
    uint64_t m = 0;
    int digits = 0, frac = -1;
    for (s += neg; s < e; s++) {
        if (*s == '.' && frac < 0 && digits > 0) {
            frac = 0;
            continue;
        }
        if (*s < '0' || *s > '9' || ++digits > 15)
            return false;
        m = m * 10 + (uint64_t)(*s - '0');
        if (frac >= 0)
            frac++;
    }
    if (digits == 0 || frac == 0)
        return false;
    *out = (double)m / pow10[frac < 0 ? 0 : frac];
    if (neg)
        *out = -*out;
    return true;
}

static bool number(scan *sc, double *out)
{
    char buf[64];
    const char *s;
    size_t n;
    char *endp;
    ws(sc);
    s = sc->p;
    while (sc->p < sc->end && number_char(*sc->p))
        sc->p++;
    n = (size_t)(sc->p - s);
    if (n == 0 || n >= sizeof buf)
        return fail(sc, "expected a number");
    if (number_fast(s, n, out))
        return true;
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, &endp);
    if (*endp || !isfinite(*out))
        return fail(sc, "bad number");
    return true;
}

static bool literal(scan *sc, const char *word)
{
    size_t n = strlen(word);
    ws(sc);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
        return fail(sc, "bad literal");
    sc->p += n;
    return true;
}

static bool skip_value(scan *sc, int depth);

static bool skip_container(scan *sc, char close, bool object, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(sc, "nested too deep");
    if (eat(sc, close))
        return true;
    do {
        if (object) {
            span k;
            if (!string(sc, &k) || !eat(sc, ':'))
                return fail(sc, "expected a key");
        }
        if (!skip_value(sc, depth + 1))
            return false;
    } while (eat(sc, ','));
    return eat(sc, close) || fail(sc, object ? "expected '}'" : "expected ']'");
}

static bool skip_value(scan *sc, int depth)
{
    span sp;
    double d;
    ws(sc);
    if (sc->p >= sc->end)
        return fail(sc, "truncated");
    switch (*sc->p) {
    case '"': return string(sc, &sp);
    case '{': sc->p++; return skip_container(sc, '}', true, depth);
    case '[': sc->p++; return skip_container(sc, ']', false, depth);
    case 't': return literal(sc, "true");
    case 'f': return literal(sc, "false");
    case 'n': return literal(sc, "null");
    default: return number(sc, &d);
    }
}

static bool key_is(const span *k, const char *name)
{
    return !k->escaped && k->n == strlen(name) && memcmp(k->s, name, k->n) == 0;
}

/* ---- the response ---------------------------------------------------------------------------- */

/* Appends a string's unescaped bytes plus a NUL to the arena; returns its start. */
static char *arena_str(k2p_records *out, const span *sp, size_t *len)
{
    char *dst = out->arena.data + out->arena.len;
    long n;
    if (!sp->escaped) {
        memcpy(dst, sp->s, sp->n);
        n = (long)sp->n;
    } else if ((n = unescape(sp, dst)) < 0) {
        return NULL;
    }
    dst[n] = '\0';
    out->arena.len += (size_t)n + 1;
    *len = (size_t)n;
    return dst;
}

/* For sizing the record table once per answer: the shortest record an answer can hold,
 * {"SequenceNumber":"1","PartitionKey":"","Data":""}, and the most records GetRecords returns
 * (its Limit). A wrong guess only costs the table's growth. */
#define K2P_RECORD_JSON_MIN 50
#define K2P_GET_RECORDS_MAX 10000

/* Makes room for n records in out's table. A table at the start of the arena cannot grow
 * there (the records' strings follow it): it moves to an allocation of its own. */
static bool table_room(k2p_records *out, size_t n)
{
    k2p_record *nr;
    if (n <= out->cap)
        return true;
    if (out->recs_in_arena) {
        if (!(nr = malloc(n * sizeof *nr)))
            return false;
        memcpy(nr, out->recs, out->n * sizeof *nr);
        out->recs_in_arena = false;
    } else if (!(nr = realloc(out->recs, n * sizeof *nr))) {
        return false;
    }
    out->recs = nr;
    out->cap = n;
    return true;
}

/* Reserves out's arena for an answer of len bytes and puts the record table at its start,
 * sized for as many records as the answer can hold (at most GetRecords' Limit; more only
 * moves the table out, above). The table had an allocation of its own, freed after every
 * call: at 480 KB for 10,000 records that is above glibc's mmap threshold (pinned in
 * main.c), so each answer mapped it afresh, half of the loader's page faults. The arena is
 * one of the big blocks the buffer cache recycles. */
static bool arena_and_table(k2p_records *out, size_t len)
{
    size_t n = K2P_MIN(len / K2P_RECORD_JSON_MIN + 1, K2P_GET_RECORDS_MAX);
    size_t table = n * sizeof(k2p_record);
    if (k2p_buf_reserve(&out->arena, table + len + len / 8 + 64))
        return false;
    if (!out->recs_in_arena)
        free(out->recs);
    /* k2p_buf blocks come from malloc (or the cache of malloc'd blocks): aligned for any
     * type, and table keeps what follows it 8-byte aligned. */
    out->recs = (k2p_record *)(void *)out->arena.data;
    out->cap = n;
    out->recs_in_arena = true;
    out->arena.len = table;
    return true;
}

static bool record(scan *sc, k2p_records *out)
{
    span seq = {0}, pk = {0}, data = {0}, k;
    bool have_seq = false, have_pk = false, have_data = false;
    double ts = 0;
    k2p_record *r;
    size_t sl, pl, pre = 0;
    long dn;
    /* The payload goes first in the record's part of the arena: Data is decoded while it is
     * scanned, before the record's end says where its other strings are. */
    uint8_t *dst = (uint8_t *)out->arena.data + out->arena.len;

    if (!eat(sc, '{'))
        return fail(sc, "record is not an object");
    if (!eat(sc, '}')) {
        do {
            if (!string(sc, &k) || !eat(sc, ':'))
                return fail(sc, "expected a key in a record");
            if (key_is(&k, "SequenceNumber")) {
                if (!string(sc, &seq))
                    return fail(sc, "SequenceNumber is not a string");
                have_seq = true;
            } else if (key_is(&k, "PartitionKey")) {
                if (!string(sc, &pk))
                    return fail(sc, "PartitionKey is not a string");
                have_pk = true;
            } else if (key_is(&k, "Data")) {
                if (!data_string(sc, &data, dst, &pre))
                    return fail(sc, "Data is not a string");
                have_data = true;
            } else if (key_is(&k, "ApproximateArrivalTimestamp")) {
                if (!number(sc, &ts))
                    return fail(sc, "ApproximateArrivalTimestamp is not a number");
            } else if (!skip_value(sc, 2)) {
                return false;
            }
        } while (eat(sc, ','));
        if (!eat(sc, '}'))
            return fail(sc, "expected '}' after a record");
    }
    if (!have_seq || !have_pk || !have_data)
        return fail(sc, "record without SequenceNumber, PartitionKey or Data");
    if (seq.escaped || !k2p_seq_valid(seq.s, seq.n))
        return fail(sc, "record with an invalid SequenceNumber");

    if (out->n == out->cap && !table_room(out, out->n ? out->n * 2 : 1024))
        return fail(sc, "out of memory");
    r = &out->recs[out->n];
    if (data.escaped) {
        /* Unescape in place at the arena's end, then decode over it: base64 shrinks. */
        char *tmp = (char *)dst;
        long tl = unescape(&data, tmp);
        dn = tl < 0 ? -1 : k2p_base64_decode(tmp, (size_t)tl, dst);
    } else {
        /* The characters data_string() did not decode: the last (padded) quanta. */
        dn = k2p_base64_decode(data.s + pre, data.n - pre, dst + pre / 4 * 3);
        if (dn >= 0)
            dn += (long)(pre / 4 * 3);
    }
    if (dn < 0)
        return fail(sc, "record Data is not valid base64");
    r->data = dst;
    r->data_len = (uint32_t)dn;
    out->arena.len += (size_t)dn;
    out->data_bytes += (size_t)dn;
    r->seq = arena_str(out, &seq, &sl);
    r->seq_len = (uint32_t)sl;
    r->pkey = arena_str(out, &pk, &pl);
    if (!r->pkey)
        return fail(sc, "PartitionKey with an unpaired surrogate escape");
    r->pkey_len = (uint32_t)pl;
    /* Fractional epoch seconds with millisecond precision: round to the millisecond so that
     * 1732123456.789 does not become ...788999 µs. */
    r->arrival_us = (ts > 0 && ts < 1e11) ? llround(ts * 1000.0) * 1000 : 0;
    out->n++;
    return true;
}

static bool child_shards(scan *sc, k2p_records *out)
{
    if (!eat(sc, '['))
        return fail(sc, "ChildShards is not an array");
    if (eat(sc, ']'))
        return true;
    do {
        span k, v;
        k2p_child_shard *cs;
        k2p_child_shard *nc = realloc(out->children, (out->n_children + 1) * sizeof *nc);
        if (!nc)
            return fail(sc, "out of memory");
        out->children = nc;
        cs = &nc[out->n_children++];
        memset(cs, 0, sizeof *cs);
        if (!eat(sc, '{'))
            return fail(sc, "child shard is not an object");
        if (!eat(sc, '}')) {
            do {
                if (!string(sc, &k) || !eat(sc, ':'))
                    return fail(sc, "expected a key in ChildShards");
                if (key_is(&k, "ShardId")) {
                    if (!string(sc, &v) || v.escaped || cs->shard_id)
                        return fail(sc, "bad ShardId in ChildShards");
                    if (!(cs->shard_id = k2p_strndup(v.s, v.n)))
                        return fail(sc, "out of memory");
                } else if (key_is(&k, "ParentShards")) {
                    if (!eat(sc, '['))
                        return fail(sc, "ParentShards is not an array");
                    if (!eat(sc, ']')) {
                        do {
                            if (!string(sc, &v) || v.escaped || cs->n_parents >= 2)
                                return fail(sc, "bad ParentShards");
                            if (!(cs->parents[cs->n_parents] = k2p_strndup(v.s, v.n)))
                                return fail(sc, "out of memory");
                            cs->n_parents++;
                        } while (eat(sc, ','));
                        if (!eat(sc, ']'))
                            return fail(sc, "expected ']' after ParentShards");
                    }
                } else if (!skip_value(sc, 3)) {
                    return false;
                }
            } while (eat(sc, ','));
            if (!eat(sc, '}'))
                return fail(sc, "expected '}' in ChildShards");
        }
        if (!cs->shard_id)
            return fail(sc, "child shard without ShardId");
    } while (eat(sc, ','));
    return eat(sc, ']') || fail(sc, "expected ']' after ChildShards");
}

int k2p_kinesis_parse_get_records(const char *body, size_t len, k2p_records *out, k2p_err *err)
{
    scan sc = {body, body + len, NULL};
    bool have_records = false;
    span k, v;

    k2p_records_reset(out);
    /* Every output byte comes from a longer input span (base64 and escapes shrink), plus one
     * NUL per string: the response length bounds the arena, so one reservation suffices and
     * record pointers never move. (data_string() may write 8 bytes past a payload's
     * decoded end: still inside the bound, as the 32 characters behind them gave 24 bytes.)
     * The length bounds the record count too: the table is sized once, at the arena's start
     * (arena_and_table), not doubled through copies into fresh pages (page faults there were
     * ~10 % of the loader's CPU). */
    if (!arena_and_table(out, len))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory for a %zu-byte GetRecords answer",
                           len);
    if (!eat(&sc, '{')) {
        fail(&sc, "GetRecords body is not a JSON object");
        goto bad;
    }
    if (!eat(&sc, '}')) {
        do {
            if (!string(&sc, &k) || !eat(&sc, ':')) {
                fail(&sc, "expected a key");
                goto bad;
            }
            if (key_is(&k, "Records")) {
                if (!eat(&sc, '[')) {
                    fail(&sc, "GetRecords without a Records array");
                    goto bad;
                }
                have_records = true;
                if (!eat(&sc, ']')) {
                    do {
                        if (!record(&sc, out))
                            goto bad;
                    } while (eat(&sc, ','));
                    if (!eat(&sc, ']')) {
                        fail(&sc, "expected ']' after Records");
                        goto bad;
                    }
                }
            } else if (key_is(&k, "NextShardIterator")) {
                if (peek(&sc, 'n')) {
                    if (!literal(&sc, "null"))
                        goto bad;
                } else if (!string(&sc, &v) || v.escaped) {
                    fail(&sc, "bad NextShardIterator");
                    goto bad;
                } else {
                    free(out->next_iterator); /* a repeated key: the last one wins */
                    if (!(out->next_iterator = k2p_strndup(v.s, v.n)))
                        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
                }
            } else if (key_is(&k, "MillisBehindLatest")) {
                double d;
                if (!number(&sc, &d))
                    goto bad;
                if (d < 0 || d > 1e15) { /* about 30,000 years: nonsense */
                    fail(&sc, "MillisBehindLatest out of range");
                    goto bad;
                }
                out->millis_behind = (int64_t)d;
            } else if (key_is(&k, "ChildShards")) {
                if (peek(&sc, 'n') ? !literal(&sc, "null") : !child_shards(&sc, out))
                    goto bad;
            } else if (!skip_value(&sc, 1)) {
                goto bad;
            }
        } while (eat(&sc, ','));
        if (!eat(&sc, '}')) {
            fail(&sc, "expected '}' at the end");
            goto bad;
        }
    }
    ws(&sc);
    if (sc.p != sc.end) {
        fail(&sc, "trailing bytes after the JSON object");
        goto bad;
    }
    if (!have_records) {
        fail(&sc, "GetRecords without a Records array");
        goto bad;
    }
    return 0;
bad:
    {
        const char *what = sc.what ? sc.what : "malformed JSON";
        int code = strcmp(what, "out of memory") == 0 ? K2P_ENOMEM : K2P_EPARSE;
        size_t at = (size_t)(sc.p - body);
        k2p_records_reset(out);
        return k2p_err_set(err, code, "malformed Kinesis response: %s (at byte %zu)", what, at);
    }
}

/* json_validate.c - single-pass check that a payload is acceptable to PostgreSQL's jsonb
 * (see json_validate.h for the exact rules and limits).
 *
 * A goto-driven state machine with an explicit bit stack (1 = object, 0 = array) instead of
 * recursion, so hostile nesting costs 512 bytes of stack, not a crash. Strings are skipped 16
 * bytes at a time with SSE2 (8 elsewhere) while they hold nothing that needs a look (quote,
 * backslash, control byte or non-ASCII byte).
 *
 * Threading: pure, reentrant.
 */
#include "kinesis2pg/json_validate.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* PostgreSQL numeric limits (src/backend/utils/adt/numeric.c, PostgreSQL 15). */
#define PG_NUMERIC_MAX_EXPONENT 1073741823 /* INT_MAX / 2: |exponent| must stay below */
#define PG_NUMERIC_DSCALE_MAX 16383        /* 0x3FFF */
#define PG_NUMERIC_WEIGHT_MAX 32767        /* int16 weight, base-10000 digits */
#define PG_NUMERIC_WEIGHT_MIN (-32768)

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

typedef const unsigned char *cursor;

static inline uint64_t load64(cursor p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Nonzero when one of the 8 bytes is '"', '\\', below 0x20 or above 0x7F. May flag a byte
 * above a real hit (borrow propagation); callers rescan the word byte by byte. */
static inline uint64_t string_special(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"');
    uint64_t b = x ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x) | x) & HIGHS;
}

static inline int is_digit(unsigned c)
{
    return c - '0' < 10u;
}

/* Length (2-4) of the valid UTF-8 sequence at p (*p >= 0x80), or 0 if it is invalid:
 * overlong, a surrogate (U+D800-DFFF), above U+10FFFF, or truncated. */
static size_t utf8_seq(cursor p, cursor end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    unsigned lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
        return (avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
        return (avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                (p[3] & 0xC0) == 0x80)
                   ? 4
                   : 0;
    }
    return 0; /* continuation byte, C0/C1, F5-FF */
}

int k2p_utf8_valid(const void *data, size_t len, size_t *bad_at)
{
    cursor s = data, p = s, end = s + len;
    while (p < end) {
        size_t n;
        if (end - p >= 8) {
            uint64_t x = load64(p);
            /* No high bit and no zero byte: eight plain ASCII characters. */
            if (!((x | ((x - ONES) & ~x)) & HIGHS)) {
                p += 8;
                continue;
            }
        }
        if (*p == 0)
            break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        n = utf8_seq(p, end);
        if (!n)
            break;
        p += n;
    }
    if (p == end)
        return 1;
    if (bad_at)
        *bad_at = (size_t)(p - s);
    return 0;
}

/* Four hex digits at p (p + 4 <= end checked by the caller) as a code unit, or -1. */
static long hex4(cursor p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c - '0' < 10u)
            v |= (long)(c - '0');
        else if ((c | 0x20) - 'a' < 6u)
            v |= (long)((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    return v;
}

/* Scans the string whose opening quote is at *pp. On success returns 0 with *pp just past the
 * closing quote; else a reason with *pp at the offending byte and *detail set. */
static int scan_string(cursor *pp, cursor end, const char **detail)
{
    cursor p = *pp + 1;
    for (;;) {
        unsigned c;
#if defined(__SSE2__)
        /* 16 bytes at a time: as signed bytes, "below 0x20" holds control and non-ASCII bytes
         * alike. Stops at the first byte that needs a look. */
        {
            const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
            const __m128i space = _mm_set1_epi8(0x20);
            while (end - p >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
                unsigned m = (unsigned)_mm_movemask_epi8(
                    _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                 _mm_cmplt_epi8(v, space)));
                if (m) {
                    p += __builtin_ctz(m);
                    break;
                }
                p += 16;
            }
        }
#endif
        while (end - p >= 8 && !string_special(load64(p)))
            p += 8;
        while (p < end && (c = *p) != '"' && c != '\\' && c >= 0x20 && c < 0x80)
            p++;
        if (p >= end) {
            *detail = "unterminated string";
            *pp = p;
            return K2P_JSON_SYNTAX;
        }
        c = *p;
        if (c == '"') {
            *pp = p + 1;
            return 0;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (!n) {
                *detail = "invalid UTF-8 sequence";
                *pp = p;
                return K2P_JSON_UTF8;
            }
            p += n;
            continue;
        }
        if (c < 0x20) {
            *detail = "unescaped control character in a string";
            *pp = p;
            return K2P_JSON_SYNTAX;
        }
        /* A backslash escape. */
        *pp = p;
        if (end - p < 2) {
            *detail = "unterminated string";
            return K2P_JSON_SYNTAX;
        }
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u': {
            long cu = end - p >= 6 ? hex4(p + 2) : -1;
            if (cu < 0) {
                *detail = "\\u must be followed by four hex digits";
                return K2P_JSON_SYNTAX;
            }
            if (cu == 0) {
                *detail = "\\u0000 cannot be stored in jsonb";
                return K2P_JSON_NUL;
            }
            if (cu >= 0xDC00 && cu <= 0xDFFF) {
                *detail = "low surrogate escape without a high surrogate before it";
                return K2P_JSON_SURROGATE;
            }
            if (cu >= 0xD800 && cu <= 0xDBFF) {
                long lo = (end - p >= 12 && p[6] == '\\' && p[7] == 'u') ? hex4(p + 8) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    *detail = "high surrogate escape not followed by a low surrogate escape";
                    return K2P_JSON_SURROGATE;
                }
                p += 12;
            } else {
                p += 6;
            }
            break;
        }
        default:
            *detail = "invalid escape sequence";
            return K2P_JSON_SYNTAX;
        }
    }
}

/* Scans the number starting at *pp ('-' or a digit) and checks it fits numeric. On success
 * returns 0 with *pp past it; else a reason with *pp at the offending byte (the number's start
 * for range errors). */
static int scan_number(cursor *pp, cursor end, const char **detail)
{
    cursor start = *pp, p = start, d;
    int64_t frac_digits = 0, msd = 0, exponent = 0, dscale, w, weight;
    int nonzero = 0, exp_neg = 0;

    if (*p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        d = p;
        while (p < end && is_digit(*p))
            p++;
        nonzero = 1;
        msd = (int64_t)(p - d) - 1; /* decimal position of the leading digit */
    } else {
        *detail = "expected a digit";
        *pp = p;
        return K2P_JSON_SYNTAX;
    }
    if (p < end && *p == '.') {
        d = ++p;
        while (p < end && is_digit(*p)) {
            if (!nonzero && *p != '0') {
                nonzero = 1;
                msd = -(int64_t)(p - d) - 1;
            }
            p++;
        }
        frac_digits = (int64_t)(p - d);
        if (frac_digits == 0) {
            *detail = "expected a digit after the decimal point";
            *pp = p;
            return K2P_JSON_SYNTAX;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            exp_neg = *p++ == '-';
        if (p == end || !is_digit(*p)) {
            *detail = "expected a digit in the exponent";
            *pp = p;
            return K2P_JSON_SYNTAX;
        }
        while (p < end && is_digit(*p)) {
            if (exponent < INT64_C(1000000000000)) /* saturate: anything this big fails */
                exponent = exponent * 10 + (*p - '0');
            p++;
        }
        if (exp_neg)
            exponent = -exponent;
    }

    /* numeric_in (set_var_from_str + make_result): the exponent must be below INT_MAX/2 in
     * magnitude, the display scale (digits after the point once the exponent is applied) fits
     * 14 bits, and the weight of the leading base-10000 digit fits int16. */
    *pp = start;
    if (exponent >= PG_NUMERIC_MAX_EXPONENT || exponent <= -PG_NUMERIC_MAX_EXPONENT) {
        *detail = "exponent out of range for numeric";
        return K2P_JSON_NUMERIC;
    }
    dscale = frac_digits - exponent;
    if (dscale > PG_NUMERIC_DSCALE_MAX) {
        *detail = "more than 16383 digits after the decimal point";
        return K2P_JSON_NUMERIC;
    }
    if (nonzero) {
        w = msd + exponent;
        weight = w >= 0 ? w / 4 : -((-w + 3) / 4); /* floor(w / 4) */
        if (weight > PG_NUMERIC_WEIGHT_MAX || weight < PG_NUMERIC_WEIGHT_MIN) {
            *detail = "magnitude out of range for numeric";
            return K2P_JSON_NUMERIC;
        }
    }
    *pp = p;
    return 0;
}

#define SKIP_WS()                                                                                  \
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))                       \
    p++

int k2p_json_validate(const void *data, size_t len, k2p_json_error *err)
{
    cursor s = data, p = s, end = s + len;
    uint64_t stack[K2P_JSON_MAX_DEPTH / 64]; /* bit set = object; words zeroed as reached */
    size_t depth = 0;
    const char *detail = "";
    int reason = K2P_JSON_SYNTAX;

    if (len > K2P_JSON_MAX_LEN) {
        reason = K2P_JSON_TOO_LARGE;
        detail = "payload larger than 32 MiB";
        p = s + K2P_JSON_MAX_LEN;
        goto fail;
    }
    SKIP_WS();
    if (p == end) {
        reason = K2P_JSON_EMPTY;
        detail = len ? "only whitespace" : "no bytes";
        goto fail;
    }

value:
    if (p == end) {
        detail = "unexpected end of input, expected a value";
        goto fail;
    }
    switch (*p) {
    case '{':
    case '[':
        if (depth == K2P_JSON_MAX_DEPTH) {
            reason = K2P_JSON_DEPTH;
            detail = "too many nested arrays/objects";
            goto fail;
        }
        if (depth % 64 == 0)
            stack[depth / 64] = 0;
        if (*p == '{')
            stack[depth / 64] |= UINT64_C(1) << (depth % 64);
        else
            stack[depth / 64] &= ~(UINT64_C(1) << (depth % 64));
        depth++;
        p++;
        SKIP_WS();
        if (stack[(depth - 1) / 64] >> ((depth - 1) % 64) & 1) {
            if (p < end && *p == '}') {
                p++;
                depth--;
                goto after_value;
            }
            if (p == end || *p != '"') {
                detail = "expected a string key or '}'";
                goto fail;
            }
            goto key;
        }
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto after_value;
        }
        goto value;
    case '"':
        reason = scan_string(&p, end, &detail);
        if (reason)
            goto fail;
        reason = K2P_JSON_SYNTAX;
        goto after_value;
    case 't':
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            p += 4;
            goto after_value;
        }
        detail = "invalid literal";
        goto fail;
    case 'f':
        if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            p += 5;
            goto after_value;
        }
        detail = "invalid literal";
        goto fail;
    case 'n':
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            p += 4;
            goto after_value;
        }
        detail = "invalid literal";
        goto fail;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        reason = scan_number(&p, end, &detail);
        if (reason)
            goto fail;
        reason = K2P_JSON_SYNTAX;
        goto after_value;
    default:
        detail = "expected a value";
        goto fail;
    }

key: /* p is at the key's opening quote */
    reason = scan_string(&p, end, &detail);
    if (reason)
        goto fail;
    reason = K2P_JSON_SYNTAX;
    SKIP_WS();
    if (p == end || *p != ':') {
        detail = "expected ':' after an object key";
        goto fail;
    }
    p++;
    SKIP_WS();
    goto value;

after_value:
    SKIP_WS();
    if (depth == 0) {
        if (p != end) {
            detail = "unexpected data after the JSON value";
            goto fail;
        }
        return K2P_JSON_OK;
    }
    if (p == end) {
        detail = "unexpected end of input inside an array or object";
        goto fail;
    }
    if (stack[(depth - 1) / 64] >> ((depth - 1) % 64) & 1) {
        if (*p == ',') {
            p++;
            SKIP_WS();
            if (p == end || *p != '"') {
                detail = "expected a string key";
                goto fail;
            }
            goto key;
        }
        if (*p == '}') {
            p++;
            depth--;
            goto after_value;
        }
        detail = "expected ',' or '}'";
        goto fail;
    }
    if (*p == ',') {
        p++;
        SKIP_WS();
        goto value;
    }
    if (*p == ']') {
        p++;
        depth--;
        goto after_value;
    }
    detail = "expected ',' or ']'";

fail:
    /* PostgreSQL checks the encoding before parsing: an invalid UTF-8 byte where the grammar
     * went wrong is an encoding error, not a syntax error. */
    if (reason == K2P_JSON_SYNTAX && p < end && *p >= 0x80 && !utf8_seq(p, end)) {
        reason = K2P_JSON_UTF8;
        detail = "invalid UTF-8 sequence";
    }
    if (err) {
        err->reason = reason;
        err->offset = (size_t)(p - s);
        err->detail = detail;
    }
    return reason;
}

const char *k2p_json_reason_str(int reason)
{
    switch (reason) {
    case K2P_JSON_OK:
        return "valid";
    case K2P_JSON_EMPTY:
        return "empty payload";
    case K2P_JSON_SYNTAX:
        return "invalid JSON";
    case K2P_JSON_UTF8:
        return "invalid UTF-8";
    case K2P_JSON_NUL:
        return "\\u0000 not allowed in jsonb";
    case K2P_JSON_SURROGATE:
        return "unpaired Unicode surrogate escape";
    case K2P_JSON_DEPTH:
        return "nesting deeper than 4096";
    case K2P_JSON_NUMERIC:
        return "number out of range for numeric";
    case K2P_JSON_TOO_LARGE:
        return "payload larger than 32 MiB";
    default:
        return "unknown reason";
    }
}

size_t k2p_json_error_format(const k2p_json_error *err, char *buf, size_t cap)
{
    int n;
    switch (err->reason) {
    case K2P_JSON_OK:
    case K2P_JSON_EMPTY:
    case K2P_JSON_TOO_LARGE:
        n = snprintf(buf, cap, "%s", k2p_json_reason_str(err->reason));
        break;
    case K2P_JSON_NUL:
    case K2P_JSON_UTF8:
        /* The detail only repeats the reason. */
        n = snprintf(buf, cap, "%s at byte %zu", k2p_json_reason_str(err->reason), err->offset);
        break;
    default:
        n = snprintf(buf, cap, "%s at byte %zu: %s", k2p_json_reason_str(err->reason), err->offset,
                     err->detail ? err->detail : "");
    }
    return n < 0 ? 0 : (size_t)n;
}

/* kinesis_records.c - the GetRecords response parser: a small in-place JSON scanner for the
 * response's known shape, decoding each record's base64 Data straight from the response buffer
 * into the records arena.
 *
 * Why not the general JSON library: GetRecords is the hot path (up to 10 MB and 10,000 records
 * per call). A tree parser copies every string (the whole response again) and allocates a node
 * per value; this scanner makes one arena reservation per response and touches each byte once.
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

/* A string token: its raw span (validated escapes, no control characters). */
static bool string(scan *sc, span *out)
{
    if (!eat(sc, '"'))
        return fail(sc, "expected a string");
    out->s = sc->p;
    out->escaped = false;
    {
        /* Fast path (base64 Data is most of a response): find the closing quote with memchr;
         * if no backslash or control character precedes it, the string is done. */
        const char *q = memchr(sc->p, '"', (size_t)(sc->end - sc->p));
        if (q && !memchr(sc->p, '\\', (size_t)(q - sc->p))) {
            const unsigned char *u = (const unsigned char *)sc->p;
            size_t n = (size_t)(q - sc->p), i;
            for (i = 0; i < n && u[i] >= 0x20; i++)
                ;
            if (i == n) {
                out->n = n;
                sc->p = q + 1;
                return true;
            }
        }
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

static bool number(scan *sc, double *out)
{
    char buf[64];
    const char *s;
    size_t n;
    char *endp;
    ws(sc);
    s = sc->p;
    while (sc->p < sc->end && strchr("+-0123456789.eE", *sc->p) && *sc->p)
        sc->p++;
    n = (size_t)(sc->p - s);
    if (n == 0 || n >= sizeof buf)
        return fail(sc, "expected a number");
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

static bool record(scan *sc, k2p_records *out)
{
    span seq = {0}, pk = {0}, data = {0}, k;
    bool have_seq = false, have_pk = false, have_data = false;
    double ts = 0;
    k2p_record *r;
    size_t sl, pl;
    long dn;

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
                if (!string(sc, &data))
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

    if (out->n == out->cap) {
        size_t nc = out->cap ? out->cap * 2 : 1024;
        k2p_record *nr = realloc(out->recs, nc * sizeof *nr);
        if (!nr)
            return fail(sc, "out of memory");
        out->recs = nr;
        out->cap = nc;
    }
    r = &out->recs[out->n];
    r->seq = arena_str(out, &seq, &sl);
    r->seq_len = (uint32_t)sl;
    r->pkey = arena_str(out, &pk, &pl);
    if (!r->pkey)
        return fail(sc, "PartitionKey with an unpaired surrogate escape");
    r->pkey_len = (uint32_t)pl;
    if (data.escaped) {
        /* Unescape in place at the arena's end, then decode over it: base64 shrinks. */
        char *tmp = out->arena.data + out->arena.len;
        long tl = unescape(&data, tmp);
        dn = tl < 0 ? -1 : k2p_base64_decode(tmp, (size_t)tl, (uint8_t *)tmp);
    } else {
        dn = k2p_base64_decode(data.s, data.n, (uint8_t *)out->arena.data + out->arena.len);
    }
    if (dn < 0)
        return fail(sc, "record Data is not valid base64");
    r->data = (const uint8_t *)out->arena.data + out->arena.len;
    r->data_len = (uint32_t)dn;
    out->arena.len += (size_t)dn;
    out->data_bytes += (size_t)dn;
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
     * record pointers never move. */
    if (k2p_buf_reserve(&out->arena, len + len / 8 + 64))
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

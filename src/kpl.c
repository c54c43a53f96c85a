/* kpl.c - KPL aggregated record de-aggregation: the magic, the MD5 trailer, and a small proto2
 * decoder for the three messages (AggregatedRecord, Record, Tag).
 *
 * The protobuf is walked three times: a counting pass validates everything that can be checked
 * locally (wire types, lengths, varints, required fields, UTF-8 keys, limits) and counts table
 * entries and records; after one allocation of exactly that size a second pass records the key
 * tables, and a third resolves each record's key indexes (the tables may come after the records
 * in the message). Nothing is copied: the results point into the input.
 *
 * Threading: k2p_kpl_parse is reentrant; its k2p_kpl_agg belongs to the calling thread.
 */
#include "kinesis2pg/kpl.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/json_validate.h"

#include <mbedtls/md5.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Wire types the three messages can contain (groups, 3 and 4, are refused: proto2 never emits
 * them for these messages and skipping them needs a nesting-aware scanner). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

enum { AGG_PK_TABLE = 1, AGG_EHK_TABLE = 2, AGG_RECORDS = 3 };
enum { REC_PK_INDEX = 1, REC_EHK_INDEX = 2, REC_DATA = 3, REC_TAGS = 4 };
enum { TAG_KEY = 1, TAG_VALUE = 2 };

enum { PASS_COUNT, PASS_TABLES, PASS_RECORDS };
enum { IN_AGG, IN_RECORD, IN_TAG };

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

typedef struct parser {
    const uint8_t *base; /* start of the Kinesis record: offsets in reasons count from here */
    k2p_kpl_agg *agg;
    int in;      /* IN_*: which message is being read, for the reason */
    size_t rec;  /* index of the record being read */
    size_t n_pk; /* table sizes, known after the counting pass */
    size_t n_ehk;
    size_t n_rec;
} parser;

typedef struct rec_fields {
    uint64_t pk_index, ehk_index;
    int has_pk, has_ehk, has_data;
    span data;
} rec_fields;

void k2p_kpl_agg_init(k2p_kpl_agg *agg)
{
    memset(agg, 0, sizeof *agg);
}

void k2p_kpl_agg_deinit(k2p_kpl_agg *agg)
{
    free(agg->records);
    free(agg->keys);
    memset(agg, 0, sizeof *agg);
}

int k2p_kpl_has_magic(const uint8_t *data, size_t n)
{
    return n >= K2P_KPL_MAGIC_LEN && memcmp(data, K2P_KPL_MAGIC, K2P_KPL_MAGIC_LEN) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Wire format                                                                                 */

static int corrupt(const parser *ps, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "kpl: <where>: <what> at byte N" into agg->reason. Returns K2P_KPL_CORRUPT. */
static int corrupt(const parser *ps, const uint8_t *at, const char *fmt, ...)
{
    char what[128], where[48];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (ps->in == IN_AGG)
        snprintf(where, sizeof where, "AggregatedRecord");
    else
        snprintf(where, sizeof where, "record %zu%s", ps->rec, ps->in == IN_TAG ? " tag" : "");
    snprintf(ps->agg->reason, sizeof ps->agg->reason, "kpl: %s: %s at byte %zu", where, what,
             (size_t)(at - ps->base));
    return K2P_KPL_CORRUPT;
}

/* Base-128 varint, at most 10 bytes and 64 bits. Returns 0 or K2P_KPL_CORRUPT. */
static int get_varint(const parser *ps, cursor *c, uint64_t *v)
{
    const uint8_t *start = c->p;
    uint64_t x = 0;

    for (unsigned shift = 0;; shift += 7) {
        uint8_t b;
        if (c->p == c->end)
            return corrupt(ps, start, "truncated varint");
        b = *c->p++;
        if (shift == 63 && b > 1)
            return corrupt(ps, start, "varint longer than 64 bits");
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *v = x;
    return 0;
}

/* A field key: field number (1 .. 2^29-1) and wire type. */
static int get_key(const parser *ps, cursor *c, uint32_t *field, unsigned *wt)
{
    const uint8_t *at = c->p;
    uint64_t k = 0;

    if (get_varint(ps, c, &k))
        return K2P_KPL_CORRUPT;
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return corrupt(ps, at, "invalid field number %llu", (unsigned long long)(k >> 3));
    *field = (uint32_t)(k >> 3);
    *wt = (unsigned)(k & 7);
    return 0;
}

/* A length-delimited payload, which must lie inside the enclosing message. */
static int get_len(const parser *ps, cursor *c, span *s)
{
    const uint8_t *at = c->p;
    uint64_t n = 0;

    if (get_varint(ps, c, &n))
        return K2P_KPL_CORRUPT;
    if (n > (uint64_t)(c->end - c->p))
        return corrupt(ps, at, "length %llu runs past the end of the message (%zu bytes left)",
                       (unsigned long long)n, (size_t)(c->end - c->p));
    s->p = c->p;
    s->n = (size_t)n;
    c->p += n;
    return 0;
}

static int skip_field(const parser *ps, cursor *c, const uint8_t *at, uint32_t field, unsigned wt)
{
    uint64_t v = 0;
    span s;
    size_t w;

    switch (wt) {
    case WT_VARINT:
        return get_varint(ps, c, &v);
    case WT_LEN:
        return get_len(ps, c, &s);
    case WT_I64:
    case WT_I32:
        w = wt == WT_I64 ? 8 : 4;
        if ((size_t)(c->end - c->p) < w)
            return corrupt(ps, at, "truncated %zu-byte field %u", w, field);
        c->p += w;
        return 0;
    default:
        return corrupt(ps, at, "field %u has unsupported wire type %u", field, wt);
    }
}

static int expect_wt(const parser *ps, const uint8_t *at, uint32_t field, const char *name,
                     unsigned wt, unsigned want)
{
    if (wt == want)
        return 0;
    return corrupt(ps, at, "field %u (%s) has wire type %u, expected %u", field, name, wt, want);
}

/* ------------------------------------------------------------------------------------------ */
/* Messages                                                                                    */

/* Tag { required string key = 1; optional string value = 2; }: validated, then ignored (the
 * KPL and KCL do not use tags either). */
static int parse_tag(parser *ps, span msg)
{
    cursor c = {msg.p, msg.p + msg.n};
    int has_key = 0;

    while (c.p < c.end) {
        const uint8_t *at = c.p;
        uint32_t field = 0;
        unsigned wt = 0;
        span s;

        if (get_key(ps, &c, &field, &wt))
            return K2P_KPL_CORRUPT;
        if (field == TAG_KEY || field == TAG_VALUE) {
            if (expect_wt(ps, at, field, field == TAG_KEY ? "key" : "value", wt, WT_LEN) ||
                get_len(ps, &c, &s))
                return K2P_KPL_CORRUPT;
            has_key |= field == TAG_KEY;
        } else if (skip_field(ps, &c, at, field, wt)) {
            return K2P_KPL_CORRUPT;
        }
    }
    if (!has_key)
        return corrupt(ps, msg.p, "missing key");
    return 0;
}

/* Record: the fields into r (a repeated scalar field: the last one wins, as in protobuf). */
static int parse_record(parser *ps, span msg, rec_fields *r)
{
    cursor c = {msg.p, msg.p + msg.n};

    memset(r, 0, sizeof *r);
    ps->in = IN_RECORD;
    while (c.p < c.end) {
        const uint8_t *at = c.p;
        uint32_t field = 0;
        unsigned wt = 0;
        span tag;
        int rc = 0;

        if (get_key(ps, &c, &field, &wt))
            return K2P_KPL_CORRUPT;
        switch (field) {
        case REC_PK_INDEX:
            rc = expect_wt(ps, at, field, "partition_key_index", wt, WT_VARINT);
            rc = rc ? rc : get_varint(ps, &c, &r->pk_index);
            r->has_pk = 1;
            break;
        case REC_EHK_INDEX:
            rc = expect_wt(ps, at, field, "explicit_hash_key_index", wt, WT_VARINT);
            rc = rc ? rc : get_varint(ps, &c, &r->ehk_index);
            r->has_ehk = 1;
            break;
        case REC_DATA:
            rc = expect_wt(ps, at, field, "data", wt, WT_LEN);
            rc = rc ? rc : get_len(ps, &c, &r->data);
            r->has_data = 1;
            break;
        case REC_TAGS:
            rc = expect_wt(ps, at, field, "tags", wt, WT_LEN);
            rc = rc ? rc : get_len(ps, &c, &tag);
            if (!rc) {
                ps->in = IN_TAG;
                rc = parse_tag(ps, tag);
                ps->in = IN_RECORD;
            }
            break;
        default:
            rc = skip_field(ps, &c, at, field, wt);
            break;
        }
        if (rc)
            return rc;
    }
    if (!r->has_pk)
        return corrupt(ps, msg.p, "missing partition_key_index");
    if (!r->has_data)
        return corrupt(ps, msg.p, "missing data");
    return 0;
}

/* Fills agg->records[ps->rec] from r, checking the key indexes against the tables. */
static int resolve_record(parser *ps, span msg, const rec_fields *r)
{
    k2p_kpl_agg *agg = ps->agg;
    k2p_kpl_record *out = &agg->records[ps->rec];
    const k2p_kpl_key *pk, *ehk = NULL;

    ps->in = IN_RECORD;
    if (r->pk_index >= ps->n_pk)
        return corrupt(ps, msg.p, "partition_key_index %llu out of range (%zu keys)",
                       (unsigned long long)r->pk_index, ps->n_pk);
    pk = &agg->keys[r->pk_index];
    if (r->has_ehk) {
        if (r->ehk_index >= ps->n_ehk)
            return corrupt(ps, msg.p, "explicit_hash_key_index %llu out of range (%zu keys)",
                           (unsigned long long)r->ehk_index, ps->n_ehk);
        ehk = &agg->keys[ps->n_pk + r->ehk_index];
    }
    out->partition_key = pk->p;
    out->partition_key_len = pk->n;
    out->explicit_hash_key = ehk ? ehk->p : NULL;
    out->explicit_hash_key_len = ehk ? ehk->n : 0;
    out->data = r->data.n ? r->data.p : NULL;
    out->data_len = r->data.n;
    out->sub_sequence = (uint32_t)ps->rec;
    return 0;
}

/* One pass over AggregatedRecord (see the top of the file). */
static int walk(parser *ps, span msg, int pass)
{
    static const char *const table_name[] = {"", "partition_key_table", "explicit_hash_key_table"};
    cursor c = {msg.p, msg.p + msg.n};
    size_t n_pk = 0, n_ehk = 0, n_rec = 0;

    while (c.p < c.end) {
        const uint8_t *at = c.p;
        uint32_t field = 0;
        unsigned wt = 0;
        span s;
        rec_fields r;
        size_t bad;

        ps->in = IN_AGG;
        if (get_key(ps, &c, &field, &wt))
            return K2P_KPL_CORRUPT;
        if (field == AGG_PK_TABLE || field == AGG_EHK_TABLE) {
            size_t *count = field == AGG_PK_TABLE ? &n_pk : &n_ehk;
            if (expect_wt(ps, at, field, table_name[field], wt, WT_LEN) || get_len(ps, &c, &s))
                return K2P_KPL_CORRUPT;
            if (pass == PASS_COUNT) {
                if (*count == K2P_KPL_MAX_RECORDS)
                    return corrupt(ps, at, "more than %d entries in %s", K2P_KPL_MAX_RECORDS,
                                   table_name[field]);
                /* Keys end up in text columns: PostgreSQL takes neither bad UTF-8 nor NUL. */
                if (!k2p_utf8_valid(s.p, s.n, &bad))
                    return corrupt(ps, s.p + bad, "%s entry %zu is not UTF-8 text",
                                   table_name[field], *count);
            } else if (pass == PASS_TABLES) {
                k2p_kpl_key *k = &ps->agg->keys[field == AGG_PK_TABLE ? n_pk : ps->n_pk + n_ehk];
                k->p = (const char *)s.p;
                k->n = s.n;
            }
            (*count)++;
        } else if (field == AGG_RECORDS) {
            if (expect_wt(ps, at, field, "records", wt, WT_LEN) || get_len(ps, &c, &s))
                return K2P_KPL_CORRUPT;
            if (pass == PASS_COUNT && n_rec == K2P_KPL_MAX_RECORDS)
                return corrupt(ps, at, "more than %d user records", K2P_KPL_MAX_RECORDS);
            ps->rec = n_rec;
            if (pass == PASS_COUNT && parse_record(ps, s, &r))
                return K2P_KPL_CORRUPT;
            if (pass == PASS_RECORDS && (parse_record(ps, s, &r) || resolve_record(ps, s, &r)))
                return K2P_KPL_CORRUPT;
            n_rec++;
        } else if (skip_field(ps, &c, at, field, wt)) {
            return K2P_KPL_CORRUPT;
        }
    }
    if (pass == PASS_COUNT) {
        ps->n_pk = n_pk;
        ps->n_ehk = n_ehk;
        ps->n_rec = n_rec;
    }
    return 0;
}

/* Makes room for the tables and records the counting pass found (storage is kept across calls
 * and never shrinks). Both counts are at most K2P_KPL_MAX_RECORDS: no overflow. */
static int reserve_tables(k2p_kpl_agg *agg, size_t n_keys, size_t n_rec)
{
    if (n_keys > agg->keys_cap) {
        k2p_kpl_key *k = realloc(agg->keys, n_keys * sizeof *k);
        if (!k)
            return K2P_ENOMEM;
        agg->keys = k;
        agg->keys_cap = n_keys;
    }
    if (n_rec > agg->records_cap) {
        k2p_kpl_record *r = realloc(agg->records, n_rec * sizeof *r);
        if (!r)
            return K2P_ENOMEM;
        agg->records = r;
        agg->records_cap = n_rec;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int k2p_kpl_parse(const uint8_t *data, size_t n, k2p_kpl_agg *agg)
{
    unsigned char digest[K2P_KPL_DIGEST_LEN];
    parser ps;
    span msg;
    int rc;

    agg->count = 0;
    agg->reason[0] = '\0';
    if (!k2p_kpl_has_magic(data, n))
        return K2P_KPL_NOT_AGGREGATED;
    /* As the KCL: the protobuf must have at least one byte. */
    if (n <= K2P_KPL_MAGIC_LEN + K2P_KPL_DIGEST_LEN) {
        snprintf(agg->reason, sizeof agg->reason,
                 "kpl: aggregation magic but only %zu bytes: an ordinary record", n);
        return K2P_KPL_NOT_AGGREGATED;
    }
    msg.p = data + K2P_KPL_MAGIC_LEN;
    msg.n = n - K2P_KPL_MAGIC_LEN - K2P_KPL_DIGEST_LEN;
    if (mbedtls_md5_ret(msg.p, msg.n, digest) != 0) {
        snprintf(agg->reason, sizeof agg->reason, "kpl: MD5 computation failed");
        return K2P_EIO;
    }
    if (memcmp(digest, msg.p + msg.n, K2P_KPL_DIGEST_LEN) != 0) {
        snprintf(agg->reason, sizeof agg->reason,
                 "kpl: aggregation magic but MD5 mismatch: an ordinary record");
        return K2P_KPL_NOT_AGGREGATED;
    }

    memset(&ps, 0, sizeof ps);
    ps.base = data;
    ps.agg = agg;
    rc = walk(&ps, msg, PASS_COUNT);
    if (rc)
        return rc;
    if (reserve_tables(agg, ps.n_pk + ps.n_ehk, ps.n_rec)) {
        snprintf(agg->reason, sizeof agg->reason, "kpl: out of memory for %zu user records",
                 ps.n_rec);
        return K2P_ENOMEM;
    }
    rc = walk(&ps, msg, PASS_TABLES);
    if (!rc)
        rc = walk(&ps, msg, PASS_RECORDS);
    if (rc)
        return rc;
    agg->count = ps.n_rec;
    return K2P_KPL_OK;
}

/* ---- building aggregates (producers: kinesis2pg-produce --aggregate) ---------------------- */

static int put_varint(k2p_buf *out, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return k2p_buf_append(out, tmp, n);
}

static int put_len_field(k2p_buf *out, unsigned field, const void *p, size_t n)
{
    return put_varint(out, (uint64_t)field << 3 | WT_LEN) || put_varint(out, n) ||
           k2p_buf_append(out, p, n);
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >>= 7)
        n++;
    return n;
}

int k2p_kpl_build(const k2p_kpl_record *recs, size_t n, k2p_buf *out)
{
    size_t start = out->len, body;
    size_t *key_of = n ? calloc(n, sizeof *key_of) : NULL;
    size_t n_keys = 0;
    unsigned char digest[K2P_KPL_DIGEST_LEN];
    int rc = 0;

    if (n && !key_of)
        return K2P_ENOMEM;
    if (n == 0 || n > K2P_KPL_MAX_RECORDS) {
        free(key_of);
        return K2P_EINVAL;
    }
    rc = k2p_buf_append(out, K2P_KPL_MAGIC, K2P_KPL_MAGIC_LEN);
    body = out->len;
    /* partition_key_table: each distinct key once, in order of first use */
    for (size_t i = 0; !rc && i < n; i++) {
        size_t j;
        for (j = 0; j < i; j++)
            if (recs[j].partition_key_len == recs[i].partition_key_len &&
                memcmp(recs[j].partition_key, recs[i].partition_key,
                       recs[i].partition_key_len) == 0)
                break;
        if (j < i) {
            key_of[i] = key_of[j];
            continue;
        }
        key_of[i] = n_keys++;
        rc = put_len_field(out, AGG_PK_TABLE, recs[i].partition_key, recs[i].partition_key_len);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        /* Record { partition_key_index = 1; data = 3; } */
        size_t len = 1 + varint_len(key_of[i]) + 1 + varint_len(recs[i].data_len) +
                     recs[i].data_len;
        rc = put_varint(out, (uint64_t)AGG_RECORDS << 3 | WT_LEN) || put_varint(out, len) ||
             put_varint(out, (uint64_t)REC_PK_INDEX << 3 | WT_VARINT) ||
             put_varint(out, key_of[i]) ||
             put_len_field(out, REC_DATA, recs[i].data, recs[i].data_len);
    }
    free(key_of);
    if (!rc && mbedtls_md5_ret((const unsigned char *)out->data + body, out->len - body,
                               digest) != 0)
        rc = K2P_EIO;
    if (!rc)
        rc = k2p_buf_append(out, digest, sizeof digest);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

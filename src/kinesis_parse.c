/* kinesis_parse.c - pure parsing of Kinesis JSON 1.1 responses and error classification.
 *
 * No I/O: takes a response body, fills structs. Every field is checked for type; a missing
 * or mistyped required field is K2P_EPARSE, never a crash (these functions are fuzzed).
 * Threading: reentrant.
 */
#include "kinesis2pg/kinesis_client.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"
#include "kinesis2pg/seqnum.h"

/* ---- errors ------------------------------------------------------------------------------ */

struct aws_error_class {
    const char *type;
    int code;
};

/* Error types by what the caller should do. Anything unknown: 5xx → transient, 4xx → fatal. */
static const struct aws_error_class aws_errors[] = {
    {"ProvisionedThroughputExceededException", K2P_ETHROTTLED},
    {"LimitExceededException", K2P_ETHROTTLED},
    {"KMSThrottlingException", K2P_ETHROTTLED},
    {"ThrottlingException", K2P_ETHROTTLED},
    {"RequestLimitExceeded", K2P_ETHROTTLED},
    {"ExpiredIteratorException", K2P_EEXPIRED},
    {"ResourceNotFoundException", K2P_ENOTFOUND},
    {"ResourceInUseException", K2P_EINUSE},
    {"AccessDeniedException", K2P_EAUTH},
    {"UnrecognizedClientException", K2P_EAUTH},
    {"InvalidSignatureException", K2P_EAUTH},
    {"IncompleteSignature", K2P_EAUTH},
    {"MissingAuthenticationToken", K2P_EAUTH},
    {"ExpiredTokenException", K2P_EAUTH},
    {"InternalFailure", K2P_ERETRY},
    {"InternalFailureException", K2P_ERETRY},
    {"ServiceUnavailable", K2P_ERETRY},
    {"ServiceUnavailableException", K2P_ERETRY},
    {"KMSInternalException", K2P_ERETRY},
    {"ValidationException", K2P_EFATAL},
    {"InvalidArgumentException", K2P_EFATAL},
    {"SerializationException", K2P_EFATAL},
    {"ExpiredNextTokenException", K2P_EFATAL},
    {"KMSAccessDeniedException", K2P_EAUTH},
    {"KMSDisabledException", K2P_EFATAL},
    {"KMSInvalidStateException", K2P_EFATAL},
    {"KMSNotFoundException", K2P_EFATAL},
    {"KMSOptInRequired", K2P_EFATAL},
};

int k2p_kinesis_classify_error(long http_status, const char *body, size_t len, k2p_err *err)
{
    char type[64] = "";
    char message[384] = "";
    int code;
    cJSON *root = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;

    if (cJSON_IsObject(root)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "__type");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
        if (!cJSON_IsString(m))
            m = cJSON_GetObjectItemCaseSensitive(root, "Message");
        if (cJSON_IsString(t)) {
            /* "com.amazonaws.kinesis.v20131202#ResourceNotFoundException" or the bare name. */
            const char *s = strrchr(t->valuestring, '#');
            s = s ? s + 1 : t->valuestring;
            /* Some services append ":http://internal.amazon.com/..." */
            size_t n = strcspn(s, ":");
            if (n >= sizeof type)
                n = sizeof type - 1;
            memcpy(type, s, n);
            type[n] = '\0';
        }
        if (cJSON_IsString(m)) {
            size_t n = strlen(m->valuestring);
            if (n >= sizeof message)
                n = sizeof message - 1;
            memcpy(message, m->valuestring, n);
            message[n] = '\0';
        }
    }
    cJSON_Delete(root);

    code = 0;
    for (size_t i = 0; i < K2P_ARRAY_LEN(aws_errors) && type[0]; i++) {
        if (strcmp(type, aws_errors[i].type) == 0) {
            code = aws_errors[i].code;
            break;
        }
    }
    if (!code) {
        if (http_status >= 500 || http_status == 0)
            code = K2P_ERETRY;
        else if (http_status == 429)
            code = K2P_ETHROTTLED;
        else if (http_status == 403)
            code = K2P_EAUTH;
        else
            code = K2P_EFATAL;
    }
    if (err) {
        err->http_status = http_status;
        memcpy(err->aws_type, type, sizeof err->aws_type);
        if (type[0])
            k2p_err_set(err, code, "%s (HTTP %ld): %s", type, http_status,
                        message[0] ? message : "no message");
        else
            k2p_err_set(err, code, "HTTP %ld from the Kinesis endpoint%s", http_status,
                        (body && len && !root) ? " with a body that is not JSON" : "");
    }
    return code;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static const char *opt_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *dup_opt(const cJSON *obj, const char *key)
{
    return k2p_strdup(opt_str(obj, key));
}

static int parse_fail(cJSON *root, k2p_err *err, const char *what)
{
    cJSON_Delete(root);
    return k2p_err_set(err, K2P_EPARSE, "malformed Kinesis response: %s", what);
}

/* ---- GetRecords -------------------------------------------------------------------------- */

void k2p_records_init(k2p_records *r)
{
    memset(r, 0, sizeof *r);
    k2p_buf_init(&r->arena, 0);
    r->millis_behind = -1;
}

static void free_children(k2p_records *r)
{
    for (size_t i = 0; i < r->n_children; i++) {
        free(r->children[i].shard_id);
        for (size_t j = 0; j < r->children[i].n_parents; j++)
            free(r->children[i].parents[j]);
    }
    free(r->children);
    r->children = NULL;
    r->n_children = 0;
}

void k2p_records_reset(k2p_records *r)
{
    r->n = 0;
    k2p_buf_reset(&r->arena);
    free(r->next_iterator);
    r->next_iterator = NULL;
    r->millis_behind = -1;
    r->data_bytes = 0;
    free_children(r);
}

void k2p_records_deinit(k2p_records *r)
{
    k2p_records_reset(r);
    free(r->recs);
    k2p_buf_deinit(&r->arena);
    memset(r, 0, sizeof *r);
}

static int parse_children(const cJSON *arr, k2p_records *out)
{
    int n = cJSON_GetArraySize(arr);
    const cJSON *c;
    if (n <= 0)
        return 0;
    out->children = calloc((size_t)n, sizeof *out->children);
    if (!out->children)
        return K2P_ENOMEM;
    cJSON_ArrayForEach(c, arr)
    {
        k2p_child_shard *cs = &out->children[out->n_children];
        const cJSON *parents = cJSON_GetObjectItemCaseSensitive(c, "ParentShards");
        const cJSON *p;
        const char *id = opt_str(c, "ShardId");
        if (!id)
            return K2P_EPARSE;
        cs->shard_id = k2p_strdup(id);
        out->n_children++;
        if (!cs->shard_id)
            return K2P_ENOMEM;
        cJSON_ArrayForEach(p, parents)
        {
            if (!cJSON_IsString(p) || cs->n_parents >= 2)
                return K2P_EPARSE;
            if (!(cs->parents[cs->n_parents] = k2p_strdup(p->valuestring)))
                return K2P_ENOMEM;
            cs->n_parents++;
        }
    }
    return 0;
}

int k2p_kinesis_parse_get_records(const char *body, size_t len, k2p_records *out, k2p_err *err)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *recs, *r, *mbl, *children;
    const char *next;
    size_t n = 0, need = 0, i = 0;
    int rc;

    k2p_records_reset(out);
    if (!cJSON_IsObject(root))
        return parse_fail(root, err, "GetRecords body is not a JSON object");
    recs = cJSON_GetObjectItemCaseSensitive(root, "Records");
    if (!cJSON_IsArray(recs))
        return parse_fail(root, err, "GetRecords without a Records array");

    /* Pass 1: validate and size, so the arena is allocated once and pointers stay put. */
    cJSON_ArrayForEach(r, recs)
    {
        const char *seq = opt_str(r, "SequenceNumber");
        const char *pk = opt_str(r, "PartitionKey");
        const char *data = opt_str(r, "Data");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(r, "ApproximateArrivalTimestamp");
        size_t sl, dl;
        if (!seq || !pk || !data || !cJSON_IsObject(r))
            return parse_fail(root, err, "record without SequenceNumber, PartitionKey or Data");
        sl = strlen(seq);
        if (!k2p_seq_valid(seq, sl))
            return parse_fail(root, err, "record with an invalid SequenceNumber");
        if (ts && !cJSON_IsNumber(ts))
            return parse_fail(root, err, "record with a non-numeric ApproximateArrivalTimestamp");
        dl = strlen(data);
        need += sl + 1 + strlen(pk) + 1 + k2p_base64_decoded_max(dl);
        n++;
    }
    if (n > out->cap) {
        k2p_record *nr = realloc(out->recs, n * sizeof *nr);
        if (!nr) {
            cJSON_Delete(root);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory for %zu records", n);
        }
        out->recs = nr;
        out->cap = n;
    }
    if (k2p_buf_reserve(&out->arena, need)) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory for a %zu-byte GetRecords batch",
                           need);
    }

    /* Pass 2: copy into the arena. */
    cJSON_ArrayForEach(r, recs)
    {
        k2p_record *rec = &out->recs[i++];
        const char *seq = opt_str(r, "SequenceNumber");
        const char *pk = opt_str(r, "PartitionKey");
        const char *data = opt_str(r, "Data");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(r, "ApproximateArrivalTimestamp");
        size_t sl = strlen(seq), pl = strlen(pk), dl = strlen(data);
        char *a = out->arena.data + out->arena.len;
        long dn;

        memcpy(a, seq, sl + 1);
        rec->seq = a;
        rec->seq_len = (uint32_t)sl;
        a += sl + 1;
        memcpy(a, pk, pl + 1);
        rec->pkey = a;
        rec->pkey_len = (uint32_t)pl;
        a += pl + 1;
        dn = k2p_base64_decode(data, dl, (uint8_t *)a);
        if (dn < 0) {
            out->n = i - 1;
            return parse_fail(root, err, "record Data is not valid base64");
        }
        rec->data = (const uint8_t *)a;
        rec->data_len = (uint32_t)dn;
        a += dn;
        out->arena.len = (size_t)(a - out->arena.data);
        out->data_bytes += (size_t)dn;
        /* Fractional epoch seconds with millisecond precision: round to the millisecond so a
         * value like 1732123456.789 does not become ...788999 µs. */
        rec->arrival_us = 0;
        if (ts && isfinite(ts->valuedouble) && ts->valuedouble > 0 && ts->valuedouble < 1e11)
            rec->arrival_us = llround(ts->valuedouble * 1000.0) * 1000;
    }
    out->n = n;

    next = opt_str(root, "NextShardIterator");
    if (next && !(out->next_iterator = k2p_strdup(next))) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    mbl = cJSON_GetObjectItemCaseSensitive(root, "MillisBehindLatest");
    if (cJSON_IsNumber(mbl))
        out->millis_behind = (int64_t)mbl->valuedouble;
    children = cJSON_GetObjectItemCaseSensitive(root, "ChildShards");
    if (cJSON_IsArray(children) && (rc = parse_children(children, out)) != 0) {
        cJSON_Delete(root);
        return rc == K2P_ENOMEM ? k2p_err_set(err, rc, "out of memory")
                                : k2p_err_set(err, rc, "malformed Kinesis response: ChildShards");
    }
    cJSON_Delete(root);
    return 0;
}

/* ---- ListShards -------------------------------------------------------------------------- */

void k2p_shard_list_deinit(k2p_shard_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        k2p_shard *s = &l->shards[i];
        free(s->shard_id);
        free(s->parent_shard_id);
        free(s->adjacent_parent_shard_id);
        free(s->starting_hash_key);
        free(s->ending_hash_key);
        free(s->starting_seq);
        free(s->ending_seq);
    }
    free(l->shards);
    memset(l, 0, sizeof *l);
}

int k2p_kinesis_parse_list_shards(const char *body, size_t len, k2p_shard_list *out,
                                  char **next_token, k2p_err *err)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *shards, *s;
    const char *tok;

    *next_token = NULL;
    if (!cJSON_IsObject(root))
        return parse_fail(root, err, "ListShards body is not a JSON object");
    shards = cJSON_GetObjectItemCaseSensitive(root, "Shards");
    if (!cJSON_IsArray(shards))
        return parse_fail(root, err, "ListShards without a Shards array");
    cJSON_ArrayForEach(s, shards)
    {
        const cJSON *hk = cJSON_GetObjectItemCaseSensitive(s, "HashKeyRange");
        const cJSON *sr = cJSON_GetObjectItemCaseSensitive(s, "SequenceNumberRange");
        k2p_shard *sh;
        if (!opt_str(s, "ShardId"))
            return parse_fail(root, err, "shard without ShardId");
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 16;
            k2p_shard *ns = realloc(out->shards, nc * sizeof *ns);
            if (!ns) {
                cJSON_Delete(root);
                return k2p_err_set(err, K2P_ENOMEM, "out of memory");
            }
            out->shards = ns;
            out->cap = nc;
        }
        sh = &out->shards[out->n++];
        memset(sh, 0, sizeof *sh);
        sh->shard_id = dup_opt(s, "ShardId");
        sh->parent_shard_id = dup_opt(s, "ParentShardId");
        sh->adjacent_parent_shard_id = dup_opt(s, "AdjacentParentShardId");
        sh->starting_hash_key = dup_opt(hk, "StartingHashKey");
        sh->ending_hash_key = dup_opt(hk, "EndingHashKey");
        sh->starting_seq = dup_opt(sr, "StartingSequenceNumber");
        sh->ending_seq = dup_opt(sr, "EndingSequenceNumber");
        if (!sh->shard_id) {
            cJSON_Delete(root);
            return k2p_err_set(err, K2P_ENOMEM, "out of memory");
        }
    }
    tok = opt_str(root, "NextToken");
    if (tok && *tok && !(*next_token = k2p_strdup(tok))) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    cJSON_Delete(root);
    return 0;
}

/* ---- backoff ----------------------------------------------------------------------------- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int64_t k2p_backoff_ms(int attempt, int base_ms, int max_ms, uint64_t *rng)
{
    int64_t cap = base_ms;
    for (int i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    if (cap <= 0)
        return 0;
    return (int64_t)(xorshift64(rng) % (uint64_t)(cap + 1));
}

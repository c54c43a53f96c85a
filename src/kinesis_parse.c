/* kinesis_parse.c - pure parsing of Kinesis JSON 1.1 responses and error classification.
 *
 * No I/O: takes a response body, fills structs. Every field is checked for type; a missing
 * or mistyped required field is K2P_EPARSE, never a crash (these functions are fuzzed).
 * Threading: reentrant.
 */
#include "kinesis2pg/kinesis_client.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>


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

void k2p_records_trim(k2p_records *r, size_t keep_bytes)
{
    k2p_records_reset(r);
    if (r->arena.cap > keep_bytes) {
        size_t max = r->arena.max;
        k2p_buf_deinit(&r->arena);
        k2p_buf_init(&r->arena, max);
    }
    if (r->recs_in_arena ? r->arena.cap == 0 : r->cap * sizeof *r->recs > keep_bytes) {
        if (!r->recs_in_arena)
            free(r->recs);
        r->recs = NULL;
        r->cap = 0;
        r->recs_in_arena = false;
    }
}

void k2p_records_deinit(k2p_records *r)
{
    k2p_records_reset(r);
    if (!r->recs_in_arena)
        free(r->recs);
    k2p_buf_deinit(&r->arena);
    memset(r, 0, sizeof *r);
}

/* k2p_kinesis_parse_get_records is in kinesis_records.c (the hot path's own scanner). */

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

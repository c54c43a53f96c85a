/* fuzz_kpl.c - libFuzzer target for KPL de-aggregation (k2p_kpl_parse).
 *
 * Each input is parsed twice: as a Kinesis record's data as it is (nearly always "not
 * aggregated": the MD5 guards the parser), and as the protobuf body of an aggregate, wrapped
 * here in the magic and its correct MD5 so the fuzzer reaches the decoder. Checked for every
 * input: the outcome is one of the three; "not aggregated" only without magic+MD5; a corrupt
 * one has a "kpl: " reason and no records; an OK one has at most K2P_KPL_MAX_RECORDS records,
 * numbered 0..n-1, whose keys and data lie inside the body and whose keys are UTF-8 text.
 * Seeds: corpus/kpl/ (*.pb are bodies, *.record whole records).
 *
 * Threading: single-threaded.
 */
#include "kinesis2pg/json_validate.h"
#include "kinesis2pg/kpl.h"

#include <mbedtls/md5.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (size_t)(hi - q);
}

/* Checks an outcome; body..body_end is where record contents may point. */
static void check(int rc, const k2p_kpl_agg *agg, const uint8_t *body, const uint8_t *body_end)
{
    switch (rc) {
    case K2P_KPL_NOT_AGGREGATED:
        if (agg->count)
            abort();
        break;
    case K2P_KPL_CORRUPT:
        if (agg->count || strncmp(agg->reason, "kpl: ", 5) != 0)
            abort();
        break;
    case K2P_KPL_OK:
        if (agg->count > K2P_KPL_MAX_RECORDS || agg->reason[0])
            abort();
        for (size_t i = 0; i < agg->count; i++) {
            const k2p_kpl_record *r = &agg->records[i];
            if (r->sub_sequence != i || !r->partition_key ||
                !inside(r->partition_key, r->partition_key_len, body, body_end) ||
                !k2p_utf8_valid(r->partition_key, r->partition_key_len, NULL))
                abort();
            if (r->explicit_hash_key &&
                (!inside(r->explicit_hash_key, r->explicit_hash_key_len, body, body_end) ||
                 !k2p_utf8_valid(r->explicit_hash_key, r->explicit_hash_key_len, NULL)))
                abort();
            if (!r->explicit_hash_key && r->explicit_hash_key_len)
                abort();
            if (r->data_len && !inside(r->data, r->data_len, body, body_end))
                abort();
        }
        break;
    default: /* K2P_ENOMEM / K2P_EIO cannot happen here */
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    k2p_kpl_agg agg;
    uint8_t *rec;
    int rc;

    if (size > ((size_t)1 << 20))
        return 0;
    k2p_kpl_agg_init(&agg);

    /* 1. the input as a record */
    rc = k2p_kpl_parse(data, size, &agg);
    check(rc, &agg, size >= K2P_KPL_MAGIC_LEN ? data + K2P_KPL_MAGIC_LEN : data, data + size);
    if (rc != K2P_KPL_NOT_AGGREGATED && size <= K2P_KPL_MAGIC_LEN + K2P_KPL_DIGEST_LEN)
        abort();

    /* 2. the input as the body of an aggregate with the right magic and MD5 */
    rec = malloc(size + K2P_KPL_MAGIC_LEN + K2P_KPL_DIGEST_LEN);
    if (!rec)
        abort();
    memcpy(rec, K2P_KPL_MAGIC, K2P_KPL_MAGIC_LEN);
    if (size)
        memcpy(rec + K2P_KPL_MAGIC_LEN, data, size);
    if (mbedtls_md5_ret(data, size, rec + K2P_KPL_MAGIC_LEN + size) != 0)
        abort();
    rc = k2p_kpl_parse(rec, size + K2P_KPL_MAGIC_LEN + K2P_KPL_DIGEST_LEN, &agg);
    check(rc, &agg, rec + K2P_KPL_MAGIC_LEN, rec + K2P_KPL_MAGIC_LEN + size);
    if ((rc == K2P_KPL_NOT_AGGREGATED) != (size == 0))
        abort();

    free(rec);
    k2p_kpl_agg_deinit(&agg);
    return 0;
}

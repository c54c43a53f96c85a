/* unpack.c - a Kinesis record's user records: KPL de-aggregation, then decompression of each
 * payload (see unpack.h and docs/payload-decoding.md).
 *
 * Threading: a k2p_unpacker belongs to one thread.
 */
#include "kinesis2pg/unpack.h"

#include <stdio.h>
#include <string.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/payload_decode.h"

void k2p_unpacker_init(k2p_unpacker *u, int mode, size_t max_out)
{
    memset(u, 0, sizeof *u);
    u->decompress = mode;
    u->max_out = max_out ? max_out : K2P_DECOMPRESS_DEFAULT_MAX;
    k2p_kpl_agg_init(&u->agg);
    k2p_buf_init(&u->out, 0);
}

void k2p_unpacker_deinit(k2p_unpacker *u)
{
    k2p_kpl_agg_deinit(&u->agg);
    k2p_buf_deinit(&u->out);
    u->rec = NULL;
}

int k2p_unpack_begin(k2p_unpacker *u, const k2p_record *rec)
{
    u->rec = rec;
    u->next = 0;
    u->kpl_rc = K2P_KPL_NOT_AGGREGATED;
    /* The magic check is a few bytes: ordinary records never pay for the parser. */
    if (k2p_kpl_has_magic(rec->data, rec->data_len)) {
        int rc = k2p_kpl_parse(rec->data, rec->data_len, &u->agg);
        if (rc < 0)
            return rc;
        u->kpl_rc = rc;
    }
    return 0;
}

/* Decompresses ur's payload in place of the original, or makes it a dead letter. */
static int decompress(k2p_unpacker *u, k2p_user_record *ur)
{
    const char *why = NULL;
    int rc;
    if (u->decompress == K2P_DECOMPRESS_NONE)
        return 0;
    rc = k2p_payload_decompress(ur->data, ur->data_len, u->decompress, u->max_out, &u->out, &why);
    switch (rc) {
    case K2P_DECODED:
        ur->data = (const uint8_t *)u->out.data;
        ur->data_len = u->out.len;
        return 0;
    case K2P_PASSTHROUGH:
        return 0;
    case K2P_DECODE_FAILED:
        /* The reasons are static and do not say the limit; a dead letter should. */
        if (strstr(why, "limit"))
            snprintf(u->reason, sizeof u->reason, "%s: more than %zu bytes", why, u->max_out);
        else
            snprintf(u->reason, sizeof u->reason, "%s", why);
        ur->reason = u->reason;
        return 0;
    default:
        ur->reason = why ? why : "decompression failed";
        return rc < 0 ? rc : K2P_EINVAL;
    }
}

int k2p_unpack_next(k2p_unpacker *u, k2p_user_record *ur)
{
    const k2p_record *r = u->rec;
    memset(ur, 0, sizeof *ur);
    if (!r)
        return 0;
    if (u->kpl_rc == K2P_KPL_OK) {
        const k2p_kpl_record *k;
        if (u->next >= u->agg.count)
            return 0;
        k = &u->agg.records[u->next++];
        ur->pkey = k->partition_key;
        ur->pkey_len = k->partition_key_len;
        ur->data = k->data;
        ur->data_len = k->data_len;
        ur->has_sub_seq = true;
        ur->sub_seq = k->sub_sequence;
    } else {
        /* Not aggregated: the record itself; a corrupt aggregate: all of it, as a dead letter. */
        if (u->next++)
            return 0;
        ur->pkey = r->pkey;
        ur->pkey_len = r->pkey_len;
        ur->data = r->data;
        ur->data_len = r->data_len;
        if (u->kpl_rc == K2P_KPL_CORRUPT) {
            ur->reason = u->agg.reason;
            return 1;
        }
    }
    {
        int rc = decompress(u, ur);
        return rc ? rc : 1;
    }
}

void k2p_unpacker_trim(k2p_unpacker *u, size_t keep_bytes)
{
    if (u->out.cap > keep_bytes)
        k2p_buf_deinit(&u->out);
    if (u->agg.records_cap * sizeof *u->agg.records + u->agg.keys_cap * sizeof *u->agg.keys >
        keep_bytes) {
        k2p_kpl_agg_deinit(&u->agg);
        k2p_kpl_agg_init(&u->agg);
    }
    u->rec = NULL;
}

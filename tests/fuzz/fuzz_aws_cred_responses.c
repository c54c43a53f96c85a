/* fuzz_aws_cred_responses.c - libFuzzer target for the credential answer extractors: STS XML
 * (k2p_sts_xml_extract) and container/IMDS JSON (k2p_cred_json_extract) must never crash, leak
 * or overrun; a failed extraction must leave nothing behind; every value kept must be a
 * NUL-terminated string within K2P_CRED_FIELD_MAX; and turning a document into credentials must
 * succeed or fail cleanly.
 * Threading: single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/aws_cred_parse.h"
#include "kinesis2pg/json_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_doc(const k2p_cred_doc *d, int rc)
{
    const char *f[] = {d->access_key_id, d->secret_access_key,
                       d->session_token, d->expiration,
                       d->code,          d->message};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (rc != 0 && f[i])
            abort();
        if (f[i] && strlen(f[i]) > K2P_CRED_FIELD_MAX)
            abort();
    }
    if (rc == 0) {
        k2p_aws_creds c;
        k2p_err e;
        int r = k2p_cred_doc_to_creds(d, "fuzz", "fuzz", &c, &e);
        if (r == 0 && (!c.access_key_id || !c.secret_access_key || !c.session_token))
            abort();
        if (r != 0 && c.access_key_id)
            abort();
        k2p_aws_creds_deinit(&c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    k2p_cred_doc d;
    k2p_err err;
    int rc;

    rc = k2p_sts_xml_extract(s, size, &d, &err);
    if (rc != 0 && rc != K2P_EPARSE && rc != K2P_ENOMEM)
        abort();
    check_doc(&d, rc);
    k2p_cred_doc_deinit(&d);

    rc = k2p_cred_json_extract(s, size, &d, &err);
    if (rc != 0 && rc != K2P_EPARSE && rc != K2P_ENOMEM)
        abort();
    /* Only valid JSON objects are accepted. */
    if (rc == 0 && k2p_json_validate(s, size, NULL) != K2P_JSON_OK)
        abort();
    check_doc(&d, rc);
    k2p_cred_doc_deinit(&d);
    return 0;
}

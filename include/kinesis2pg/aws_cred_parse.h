/* aws_cred_parse.h - pure extractors for what credential endpoints answer: STS's XML
 * (AssumeRole, AssumeRoleWithWebIdentity, ErrorResponse) and the JSON of the container
 * credentials endpoint (ECS, EKS Pod Identity) and of EC2 instance metadata (IMDS).
 *
 * No XML or JSON library: the answers are small and flat, and a library would keep copies of
 * the secrets in memory we cannot zero. Both extractors read at most K2P_CRED_RESPONSE_MAX bytes,
 * keep values of at most K2P_CRED_FIELD_MAX bytes, never recurse, and never quote the input in a
 * message (any of it may be a secret). They are fuzzed by tests/fuzz/fuzz_aws_cred_responses.c.
 *
 * Threading: reentrant; a k2p_cred_doc belongs to one thread at a time.
 */
#ifndef K2P_AWS_CRED_PARSE_H
#define K2P_AWS_CRED_PARSE_H

#include <stddef.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/common.h"

#define K2P_CRED_RESPONSE_MAX ((size_t)64 << 10) /* longest answer accepted */
#define K2P_CRED_FIELD_MAX ((size_t)8 << 10)     /* longest value kept (session tokens ~2 KB) */

/* The fields of one answer; each NULL when absent. Heap strings, zeroed when freed. */
typedef struct k2p_cred_doc {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* XML SessionToken, JSON Token */
    char *expiration;    /* as written, normally RFC 3339 */
    char *code;          /* XML Error/Code; JSON "Code" (IMDS: "Success") */
    char *message;       /* XML Error/Message; JSON "Message" */
} k2p_cred_doc;

/* Frees every field (zeroed first) and zeroes *d. Safe on a zeroed doc and on NULL. */
void k2p_cred_doc_deinit(k2p_cred_doc *d);

/* Extracts Credentials/{AccessKeyId,SecretAccessKey,SessionToken,Expiration} and
 * Error/{Code,Message} from an STS answer, wherever those parents sit (namespace prefixes are
 * ignored). Checks that the document is well-formed as far as it matters: balanced, properly
 * nested tags, one root, known entities only (the five predefined ones and numeric character
 * references), no DOCTYPE, at most 32 levels. Text values are entity-decoded (CDATA kept as is)
 * and trimmed of XML white space. A field present twice is an error.
 * Returns 0, K2P_EPARSE (err->msg says what, never the content) or K2P_ENOMEM; on error *out is
 * left zeroed. *out needs no initialisation. */
int k2p_sts_xml_extract(const char *xml, size_t len, k2p_cred_doc *out, k2p_err *err);

/* Extracts the top-level string members AccessKeyId, SecretAccessKey, Token, Expiration, Code
 * and Message of a JSON object (other members of any type are skipped). The document must be one
 * valid JSON object (RFC 8259, UTF-8); escapes are decoded. A wanted member that is not a string,
 * or present twice, is an error. Returns 0, K2P_EPARSE or K2P_ENOMEM; on error *out is zeroed. */
int k2p_cred_json_extract(const char *json, size_t len, k2p_cred_doc *out, k2p_err *err);

/* Turns an extracted answer into temporary credentials: AccessKeyId, SecretAccessKey, the
 * session token and an RFC 3339 Expiration are all required. `what` begins each message
 * ("web identity: STS answer from https://sts.eu-west-1.amazonaws.com/"); `source` is stored in
 * out->source (a static string). Returns 0, K2P_EPARSE (a field is missing or the expiration is
 * not a time: the message names the field, never a value) or K2P_ENOMEM. */
int k2p_cred_doc_to_creds(const k2p_cred_doc *d, const char *what, const char *source,
                          k2p_aws_creds *out, k2p_err *err);

#endif

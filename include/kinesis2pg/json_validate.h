/* json_validate.h - decides, in one pass and without allocating, whether a record's payload can
 * be stored in a PostgreSQL jsonb column; if not, says why (the dead letter's reason).
 *
 * Accepted exactly when all of these hold (checked against PostgreSQL 15's jsonb_in/jsonb_recv
 * by tests/integration/test_jsonb_agree.c):
 *   - valid UTF-8 (no overlong forms, no UTF-16 surrogates encoded in UTF-8, nothing above
 *     U+10FFFF); the database encoding is assumed to be UTF8;
 *   - one RFC 8259 JSON value of any type, with optional whitespace (space, tab, CR, LF) around
 *     it; no byte order mark, no comments, no trailing commas;
 *   - no \u0000 escape (jsonb stores text, which cannot hold NUL) and no unpaired UTF-16
 *     surrogate escape (a \uD800-\uDBFF escape must be followed by a \uDC00-\uDFFF escape);
 *   - every number fits PostgreSQL's numeric: decimal exponent below 2^30 in magnitude, at most
 *     16383 digits after the decimal point once the exponent is applied, and a magnitude below
 *     10^131072;
 *   - at most K2P_JSON_MAX_DEPTH nested arrays/objects;
 *   - at most K2P_JSON_MAX_LEN bytes.
 *
 * The depth limit: PostgreSQL parses JSON recursively and stops at its stack limit
 * (max_stack_depth, default 2MB), which on PostgreSQL 15/x86-64 allows about 13000 levels at
 * the default, about 3000 at 500kB and 1000 at 200kB. We accept 4096 levels: far beyond any
 * real payload, and safely inside what a default server takes, so a payload we accept never
 * fails a whole COPY batch. A deeper payload becomes a dead letter.
 * The size limit: jsonb values are limited to 256 MiB, and the binary form can be up to ~6x the
 * text ("[0,0,0,...]"); 32 MiB of text always fits. (Kinesis records are at most 10 MiB.)
 *
 * Threading: pure functions, reentrant.
 */
#ifndef K2P_JSON_VALIDATE_H
#define K2P_JSON_VALIDATE_H

#include <stddef.h>

#define K2P_JSON_MAX_DEPTH 4096
#define K2P_JSON_MAX_LEN ((size_t)32 << 20)

/* Why a payload cannot go into jsonb. 0 means it can. */
enum {
    K2P_JSON_OK = 0,
    K2P_JSON_EMPTY = 1,     /* no bytes, or only whitespace */
    K2P_JSON_SYNTAX = 2,    /* not one valid JSON value */
    K2P_JSON_UTF8 = 3,      /* not valid UTF-8 */
    K2P_JSON_NUL = 4,       /* a \u0000 escape */
    K2P_JSON_SURROGATE = 5, /* an unpaired or misordered \uD800-\uDFFF escape */
    K2P_JSON_DEPTH = 6,     /* more than K2P_JSON_MAX_DEPTH nested containers */
    K2P_JSON_NUMERIC = 7,   /* a number outside PostgreSQL numeric's range */
    K2P_JSON_TOO_LARGE = 8, /* more than K2P_JSON_MAX_LEN bytes */
};

typedef struct k2p_json_error {
    int reason;         /* K2P_JSON_* */
    size_t offset;      /* 0-based byte offset of the offending byte (the length at the end) */
    const char *detail; /* static text: "expected ':' after an object key", ... */
} k2p_json_error;

/* Validates len bytes at data (which need not be NUL-terminated). Returns K2P_JSON_OK, or the
 * reason with `err` (optional) filled in. Never reads past data + len. */
int k2p_json_validate(const void *data, size_t len, k2p_json_error *err);

/* A static one-line description of a reason: "invalid JSON", "\u0000 not allowed in jsonb". */
const char *k2p_json_reason_str(int reason);

/* Formats a full message such as "invalid JSON at byte 12: expected ':' after an object key"
 * into buf (always NUL-terminated when cap > 0). Returns the length it wanted to write. */
size_t k2p_json_error_format(const k2p_json_error *err, char *buf, size_t cap);

/* Checks that len bytes are valid UTF-8 (as PostgreSQL's UTF8 encoding check: no overlongs,
 * surrogates, or code points above U+10FFFF; NUL bytes are rejected too, as text cannot hold
 * them). Returns 1 if valid; otherwise 0 with *bad_at (optional) set to the offset of the first
 * bad byte. */
int k2p_utf8_valid(const void *data, size_t len, size_t *bad_at);

#endif

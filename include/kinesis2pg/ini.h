/* ini.h - parsers for the configuration files kinesis2pg reads: AWS shared files
 * (~/.aws/credentials, ~/.aws/config: INI) and dlt's .dlt/config.toml / .dlt/secrets.toml (a TOML
 * subset), plus the RFC 3339 timestamp parser they and the command line share.
 *
 * The parsers are pure: they read a memory buffer and produce a flat list of entries; the
 * *_load_file wrappers only add the file reading. Malformed input gives K2P_EPARSE with
 * "<origin>:<line>: <what was expected>" in err->msg. A message never quotes the input, since
 * any part of it may be a secret. Values are kept in memory only as long as the list lives and
 * are zeroed when it is freed.
 *
 * Threading: reentrant; a k2p_kv_list belongs to one thread at a time.
 */
#ifndef K2P_INI_H
#define K2P_INI_H

#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/common.h"

/* What a value was written as. INI values are always strings. */
typedef enum k2p_kv_type {
    K2P_KV_STRING = 0,
    K2P_KV_INTEGER,  /* value holds the number in plain decimal ("0x1f" becomes "31") */
    K2P_KV_FLOAT,    /* value holds the literal without '_' ("1e3", "inf", "-0.5") */
    K2P_KV_BOOL,     /* "true" or "false" */
    K2P_KV_DATETIME, /* TOML date/time literal, as written */
    K2P_KV_ARRAY,    /* TOML array: validated and skipped; value is "" */
} k2p_kv_type;

typedef struct k2p_kv {
    /* INI: the section header trimmed, runs of blanks folded to one space ("default",
     * "profile dev"). TOML: always "" (keys are fully qualified). */
    char *section;
    /* INI: the key, lower-cased. TOML: the fully-qualified dotted key
     * ("sources.kinesis.credentials.aws_access_key_id"); quoted key parts are kept verbatim. */
    char *key;
    char *value; /* unescaped text; may be a secret */
    k2p_kv_type type;
    int line; /* 1-based line where the entry starts */
} k2p_kv;

typedef struct k2p_kv_list {
    k2p_kv *items;
    size_t n;
    size_t cap;
} k2p_kv_list;

/* Initialises caller storage; no allocation. */
void k2p_kv_list_init(k2p_kv_list *l);

/* Frees every entry (values are zeroed first: they may be secrets) and resets to empty. */
void k2p_kv_list_deinit(k2p_kv_list *l);

/* The last entry with this section and key (INI keys compare case-insensitively; pass "" as the
 * section for TOML), or NULL. The pointer is valid until the list changes. */
const k2p_kv *k2p_kv_find(const k2p_kv_list *l, const char *section, const char *key);

/* True when some key starts with `prefix` in `section`. */
int k2p_kv_has_prefix(const k2p_kv_list *l, const char *section, const char *prefix);

/* Parses an AWS shared config/credentials file held in data[0..len), appending entries to *out.
 * Follows the AWS SDKs' profile-file rules: `[section]` headers (a trailing `#`/`;` comment is
 * allowed), `key = value` properties (a comment must be preceded by a blank), full-line `#`/`;`
 * comments, and indented continuation lines (appended to the previous value after a '\n').
 * `origin` names the input in messages (NULL: "input").
 * Returns 0, K2P_EPARSE (line number in err->msg) or K2P_ENOMEM; on error *out is emptied. */
int k2p_ini_parse(const char *origin, const char *data, size_t len, k2p_kv_list *out, k2p_err *err);

/* Parses the TOML subset dlt users write: `[a.b]` tables, dotted and quoted keys, basic and
 * literal strings (single- and multi-line, all escapes), integers (decimal/hex/octal/binary,
 * '_' separators), floats, booleans, date/times, inline tables (flattened into dotted keys),
 * and arrays (checked, stored as K2P_KV_ARRAY with an empty value). `[[array.of.tables]]`
 * sections are checked and skipped. A key defined twice is an error, as in TOML.
 * Returns 0, K2P_EPARSE or K2P_ENOMEM; on error *out is emptied. */
int k2p_toml_parse(const char *origin, const char *data, size_t len, k2p_kv_list *out,
                   k2p_err *err);

/* Reads a whole file (at most 4 MiB) and parses it as above; `path` names it in messages.
 * Returns 0, K2P_ENOTFOUND (no such file: err->msg says which), K2P_EIO (unreadable, too large,
 * a directory), K2P_EPARSE or K2P_ENOMEM. The file's bytes are zeroed after parsing. */
int k2p_ini_load_file(const char *path, k2p_kv_list *out, k2p_err *err);
int k2p_toml_load_file(const char *path, k2p_kv_list *out, k2p_err *err);

/* Parses an RFC 3339 date-time: `YYYY-MM-DD(T|t| )HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM)` (digits
 * past microseconds are truncated; second 60 is accepted as a leap second) into microseconds since
 * the Unix epoch (years 0001..9999). Returns 0 or K2P_EINVAL. Pure, no time zone database. */
int k2p_parse_rfc3339(const char *s, int64_t *epoch_us);

/* Formats epoch microseconds as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` into buf (at least 32 bytes).
 * Returns buf. */
char *k2p_format_rfc3339(int64_t epoch_us, char *buf, size_t size);

#endif

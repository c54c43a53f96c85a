/* config.h - the command line and its configuration sources (DESIGN §1).
 *
 * One option table in config.c drives argv parsing, `--help`, and docs/configuration.md.
 * Sources, lowest to highest precedence: dlt files (.dlt/config.toml, then .dlt/secrets.toml),
 * dlt-style environment names (SOURCES__KINESIS__STREAM_NAME: the dlt key upper-cased, dots as
 * "__"), standard AWS / libpq variables (AWS_REGION, DATABASE_URL, ...), then flags.
 * Explicit AWS keys (dlt [sources.kinesis.credentials]) feed the first provider of the
 * credential chain, ahead of AWS_ACCESS_KEY_ID (DESIGN §6).
 *
 * Threading: parsing runs once on the main thread; the parsed k2p_config is then read-only and
 * may be read from any thread.
 */
#ifndef K2P_CONFIG_H
#define K2P_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/env.h"

typedef enum k2p_command {
    K2P_CMD_NONE = 0, /* only with --help / --version */
    K2P_CMD_LOAD,
    K2P_CMD_STATUS,
    K2P_CMD_TAIL,
    K2P_CMD_RESET,
} k2p_command;

/* Where a shard without a checkpoint starts (`--from`). */
typedef enum k2p_from_kind {
    K2P_FROM_LATEST = 0,
    K2P_FROM_TRIM_HORIZON,
    K2P_FROM_AT_TIMESTAMP,
} k2p_from_kind;

typedef struct k2p_from {
    k2p_from_kind kind;
    int64_t at_us; /* K2P_FROM_AT_TIMESTAMP: microseconds since the Unix epoch; else 0 */
} k2p_from;

typedef enum k2p_log_format { K2P_LOG_FORMAT_TEXT = 0, K2P_LOG_FORMAT_JSON } k2p_log_format;

typedef enum k2p_log_level {
    K2P_LOG_LEVEL_ERROR = 0,
    K2P_LOG_LEVEL_WARN,
    K2P_LOG_LEVEL_INFO,
    K2P_LOG_LEVEL_DEBUG,
} k2p_log_level;

/* Where a setting's value came from, lowest precedence first. */
typedef enum k2p_config_source {
    K2P_SRC_DEFAULT = 0,
    K2P_SRC_DERIVED,     /* computed: table from stream, endpoint from region, AWS profile region */
    K2P_SRC_DLT_CONFIG,  /* <dlt-dir>/config.toml */
    K2P_SRC_DLT_SECRETS, /* <dlt-dir>/secrets.toml */
    K2P_SRC_DLT_ENV,     /* SOURCES__KINESIS__... */
    K2P_SRC_ENV,         /* AWS_REGION, DATABASE_URL, ... */
    K2P_SRC_FLAG,
} k2p_config_source;

#define K2P_CONFIG_MAX_OPTIONS 48

typedef struct k2p_config {
    k2p_command command;
    bool help;    /* --help given: print k2p_config_print_help(stdout, command name), exit 0 */
    bool version; /* --version given: print the version, exit 0 */

    /* Source (load, tail; stream also status, reset). */
    char *stream;             /* required for every command */
    k2p_from from;            /* default latest */
    int64_t max_messages;     /* 0 = unlimited */
    int64_t ms_behind_latest; /* default 1000 */
    bool raw;                 /* store payload as bytea instead of jsonb */
    int decompress;           /* K2P_DECOMPRESS_* (payload_decode.h) */
    char *consumer;           /* --consumer: enhanced fan-out as this consumer; NULL: polling */
    int64_t chunk_size;       /* GetRecords Limit, 1..10000, default 1000 */
    bool follow;

    /* Target (load, status, reset). */
    char *table;                           /* default: the stream name */
    char *schema;                          /* default "kinesis" */
    int64_t writers, batch_rows, flush_ms; /* 2, 50000, 500 */
    int64_t memory_mb;                     /* in-flight budget, MiB: 32 */
    bool no_primary_key;
    char *pg_conninfo; /* NULL: libpq defaults (PG* env). May hold a password: never print it */

    /* AWS (load, tail, status). */
    char *region;   /* required for load and tail; may be NULL for status and reset */
    char *endpoint; /* no trailing '/'; computed from the region when not configured */
    char *profile;  /* NULL: "default" */
    char *ca_file;  /* NULL: system CA store */
    int64_t max_attempts; /* tries per Kinesis call (AWS_MAX_ATTEMPTS), default 10 */
    /* Explicit keys from dlt secrets / SOURCES__KINESIS__CREDENTIALS__*: secrets, never print. */
    char *aws_access_key_id, *aws_secret_access_key, *aws_session_token;

    /* Operations. */
    k2p_log_format log_format;
    k2p_log_level log_level;
    bool leases;          /* load --leases */
    int64_t lease_ttl_ms; /* 10000 */
    int64_t worker_index; /* --worker-index (JOB_COMPLETION_INDEX), 0 */
    int64_t worker_count; /* --worker-count (KINESIS2PG_WORKER_COUNT), 0 = off */
    char *metrics_addr; /* HOST:PORT as given, or NULL */
    char *metrics_host; /* parsed from metrics_addr ("0.0.0.0" for ":PORT"; no brackets) */
    int metrics_port;   /* 0..65535 */
    char *state_file;   /* tail --state */
    bool yes;           /* reset --yes */
    bool json;          /* status --json */
    char *dlt_dir;      /* default ".dlt" */

    /* Per option (table order, see k2p_config_option_name), a k2p_config_source. */
    unsigned char source[K2P_CONFIG_MAX_OPTIONS];
} k2p_config;

/* Parses argv (argv[0] is the program) over the environment and the dlt files. Returns 0 or
 * K2P_ECONFIG with a one-line err->msg naming the flag, variable or file:line at fault (never a
 * secret). With --help or --version it returns 0 at once with cfg->help / cfg->version set and
 * cfg->command as far as known. cfg needs no initialisation; call k2p_config_deinit after either
 * result. Reads the dlt files and (for the region fallback) the AWS config file. */
int k2p_config_parse(k2p_config *cfg, int argc, char **argv, const k2p_env *env, k2p_err *err);

/* Same, with the wall clock given (used by relative `--from` durations): for tests. */
int k2p_config_parse_at(k2p_config *cfg, int argc, char **argv, const k2p_env *env, int64_t now_us,
                        k2p_err *err);

/* Frees every string (secrets zeroed first) and zeroes *cfg. Safe on a zeroed config. */
void k2p_config_deinit(k2p_config *cfg);

/* Parses a `--from` value: latest, trim_horizon (any case, '-' or '_'), an RFC 3339 time with
 * offset, or a duration before now_us (90s, 15m, 1h, 2d, 1w, or sums such as 1h30m).
 * Returns 0 or K2P_EINVAL. */
int k2p_config_parse_from(const char *s, int64_t now_us, k2p_from *out);

/* `--help` text: the command's usage and options, or the global usage when `command` is NULL
 * or unknown. */
void k2p_config_print_help(FILE *f, const char *command);

/* docs/configuration.md, generated from the option table. */
void k2p_config_print_markdown(FILE *f);

/* Every setting with its source, one per line, for --log-level debug. Secrets are masked
 * (the access key id shows its last 4 characters; a connection string its fields but not its
 * password). */
void k2p_config_dump(const k2p_config *cfg, FILE *f);

/* The credential chain for this configuration (DESIGN §6): the explicit keys (if any), the
 * environment, web identity, container credentials, the shared profile files for cfg->profile
 * (role_arn + source_profile included), then IMDSv2. `env` is borrowed and must
 * outlive the chain. NULL on OOM. */
k2p_cred_chain *k2p_config_cred_chain_new(const k2p_config *cfg, const k2p_env *env);

/* "load", "status", "tail", "reset", or "" for K2P_CMD_NONE. */
const char *k2p_command_name(k2p_command c);

/* The flag name (without "--") or dlt key of option i of cfg->source, or NULL past the end. */
const char *k2p_config_option_name(size_t i);

#endif

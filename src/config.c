/* config.c - the option table, and from it: argv parsing over the environment and dlt files,
 * `--help`, docs/configuration.md and a masked dump.
 *
 * Every option is one row of `opts` below (flag, metavar, type, default, standard env vars, dlt
 * key, commands, help). Parsing walks the table once per source in precedence order; help and
 * Markdown print the same rows, so the three never drift (a unit test diffs the Markdown against
 * the committed docs/configuration.md).
 *
 * Threading: parsing runs on the main thread before any other starts; the result is read-only.
 */
#include "kinesis2pg/config.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/ini.h"

#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef K2P_VERSION
#define K2P_VERSION "0.0.0"
#endif

/* ------------------------------------------------------------------------------------------ */
/* The option table                                                                            */
/* ------------------------------------------------------------------------------------------ */

enum {
    C_LOAD = 1 << 0,
    C_STATUS = 1 << 1,
    C_TAIL = 1 << 2,
    C_RESET = 1 << 3,
    C_ALL = C_LOAD | C_STATUS | C_TAIL | C_RESET,
    C_AWS = C_LOAD | C_TAIL | C_STATUS,
    C_PG = C_LOAD | C_STATUS | C_RESET,
};

typedef enum opt_type { T_STRING, T_INT, T_BOOL, T_ENUM, T_FROM, T_HELP, T_VERSION } opt_type;

enum {
    F_SECRET = 1,     /* never printed, never quoted in a message */
    F_DLT_INVERT = 2, /* the dlt key means the opposite (parse_json vs --raw) */
};

/* Returns NULL when v is acceptable, else why not (a fixed phrase). */
typedef const char *(*check_fn)(const char *v);

typedef struct opt {
    const char *name; /* flag without "--"; NULL for keys read only from dlt files and env */
    char short_name;
    const char *metavar;
    opt_type type;
    const char *def;     /* default, written as a value would be; NULL: unset */
    const char *def_doc; /* the default as documented when `def` does not say it */
    const char *env[3];  /* standard environment variables, first wins */
    const char *dlt_key; /* also read as the dlt env name: upper-cased, '.' -> "__" */
    unsigned cmds;
    unsigned flags;
    int64_t min, max;
    const char *const *choices;
    check_fn check;
    size_t off;
    const char *help;
} opt;

enum opt_id {
    O_STREAM,
    O_FROM,
    O_MAX_MESSAGES,
    O_MS_BEHIND,
    O_CHUNK,
    O_RAW,
    O_DECOMPRESS,
    O_CONSUMER,
    O_FOLLOW,
    O_TABLE,
    O_SCHEMA,
    O_WRITERS,
    O_BATCH_ROWS,
    O_FLUSH_MS,
    O_MEMORY_MB,
    O_NO_PK,
    O_PG,
    O_REGION,
    O_ENDPOINT,
    O_PROFILE,
    O_CA_FILE,
    O_MAX_ATTEMPTS,
    O_KEY_ID,
    O_SECRET,
    O_TOKEN,
    O_STATE,
    O_YES,
    O_JSON,
    O_METRICS,
    O_LEASES,
    O_LEASE_TTL,
    O_WORKER_INDEX,
    O_WORKER_COUNT,
    O_LOG_FORMAT,
    O_LOG_LEVEL,
    O_DLT_DIR,
    O_HELP,
    O_VERSION,
    O_COUNT
};
_Static_assert(O_COUNT <= K2P_CONFIG_MAX_OPTIONS, "raise K2P_CONFIG_MAX_OPTIONS");
_Static_assert(sizeof(k2p_log_format) == sizeof(int) && sizeof(k2p_log_level) == sizeof(int),
               "enum options are stored as int");

static const char *check_stream(const char *v);
static const char *check_consumer(const char *v);
static const char *check_ident(const char *v);
static const char *check_region(const char *v);
static const char *check_url(const char *v);
static const char *check_hostport(const char *v);
static const char *check_conninfo(const char *v);
static const char *check_word(const char *v);

static const char *const log_formats[] = {"text", "json", NULL};
/* In the order of K2P_DECOMPRESS_* (payload_decode.h). */
static const char *const decompress_modes[] = {"auto", "zstd", "gzip", "none", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

#define OFF(f) offsetof(k2p_config, f)

/* clang-format off */
/* One option per row reads better than one field per line. */
static const opt opts[O_COUNT] = {
    [O_STREAM] = {"stream", 's', "NAME", T_STRING, NULL, "required", {NULL},
                  "sources.kinesis.stream_name", C_ALL, 0, 0, 0, NULL, check_stream, OFF(stream),
                  "Kinesis stream to read; also the default table name"},
    [O_FROM] = {"from", 0, "WHERE", T_FROM, "latest", NULL, {NULL},
                "sources.kinesis.initial_at_timestamp", C_LOAD | C_TAIL, 0, 0, 0, NULL, NULL,
                OFF(from),
                "where a shard without a checkpoint starts: latest, trim_horizon, an RFC 3339 "
                "time (2024-05-01T12:00:00Z), or a duration ago (90s, 15m, 1h, 2d, 1h30m); "
                "a dlt number is Unix seconds, 0 meaning latest"},
    [O_MAX_MESSAGES] = {"max-messages", 0, "N", T_INT, "0", "unlimited", {NULL},
                        "sources.kinesis.max_number_of_messages", C_LOAD | C_TAIL, 0, 0,
                        INT64_MAX, NULL, NULL, OFF(max_messages),
                        "read at most N records this run (the shards share the budget); "
                        "0 = unlimited"},
    [O_MS_BEHIND] = {"ms-behind-latest", 0, "MS", T_INT, "1000", NULL, {NULL},
                     "sources.kinesis.milliseconds_behind_latest", C_LOAD | C_TAIL, 0, 0,
                     604800000, NULL, NULL, OFF(ms_behind_latest),
                     "a shard is caught up when MillisBehindLatest < MS and the last response "
                     "was not full"},
    [O_CHUNK] = {"chunk-size", 0, "N", T_INT, "1000", NULL, {NULL}, "sources.kinesis.chunk_size",
                 C_LOAD | C_TAIL, 0, 1, 10000, NULL, NULL, OFF(chunk_size),
                 "records per GetRecords call (1..10000)"},
    [O_RAW] = {"raw", 0, NULL, T_BOOL, "false", NULL, {NULL}, "sources.kinesis.parse_json",
               C_LOAD | C_TAIL, F_DLT_INVERT, 0, 0, NULL, NULL, OFF(raw),
               "store the payload as bytea instead of jsonb (dlt: parse_json = false)"},
    [O_DECOMPRESS] = {"decompress", 0, "MODE", T_ENUM, "auto", NULL, {NULL}, NULL, C_LOAD | C_TAIL,
                      0, 0, 0, decompress_modes, NULL, OFF(decompress),
                      "auto (zstd or gzip by their magic bytes), zstd, gzip or none"},
    [O_CONSUMER] = {"consumer", 0, "NAME", T_STRING, NULL, "off: GetRecords polling", {NULL},
                    NULL, C_LOAD, 0, 0, 0, NULL, check_consumer, OFF(consumer),
                    "read with enhanced fan-out (SubscribeToShard) as stream consumer NAME, "
                    "registered if missing"},
    [O_FOLLOW] = {"follow", 0, NULL, T_BOOL, "false", NULL, {NULL}, NULL, C_LOAD | C_TAIL, 0, 0, 0,
                  NULL, NULL, OFF(follow),
                  "never stop at the tip (SIGTERM: flush, checkpoint, exit 0)"},
    [O_TABLE] = {"table", 0, "NAME", T_STRING, NULL, "the stream name", {NULL}, NULL, C_PG, 0, 0,
                 0, NULL, check_ident, OFF(table), "target table (always quoted)"},
    [O_SCHEMA] = {"schema", 0, "NAME", T_STRING, "kinesis", NULL, {NULL}, NULL, C_PG, 0, 0, 0,
                  NULL, check_ident, OFF(schema), "target schema (dlt's dataset_name)"},
    [O_WRITERS] = {"writers", 0, "N", T_INT, "2", NULL, {NULL}, NULL, C_LOAD, 0, 1, 64, NULL, NULL,
                   OFF(writers), "PostgreSQL writer connections (1..64)"},
    [O_BATCH_ROWS] = {"batch-rows", 0, "N", T_INT, "20000", NULL, {NULL}, NULL, C_LOAD, 0, 1,
                      10000000, NULL, NULL, OFF(batch_rows),
                      "rows a writer coalesces into one transaction"},
    [O_FLUSH_MS] = {"flush-ms", 0, "MS", T_INT, "500", NULL, {NULL}, NULL, C_LOAD, 0, 1, 3600000,
                    NULL, NULL, OFF(flush_ms),
                    "longest a writer holds rows before committing them"},
    [O_MEMORY_MB] = {"memory-mb", 0, "MIB", T_INT, "32", NULL, {"KINESIS2PG_MEMORY_MB"}, NULL,
                     C_LOAD, 0, 8, 65536, NULL, NULL, OFF(memory_mb),
                     "in-flight budget for GetRecords answers and uncommitted rows, in MiB; "
                     "peak RSS is about 1.5 x this + 16 MiB + 100 KiB a shard; more reads ahead "
                     "faster (docs/operations.md, Memory)"},
    [O_NO_PK] = {"no-primary-key", 0, NULL, T_BOOL, "false", NULL, {NULL}, NULL, C_LOAD, 0, 0, 0,
                 NULL, NULL, OFF(no_primary_key),
                 "create the table without the primary key on _kinesis_msg_id"},
    [O_PG] = {"pg", 0, "CONNINFO", T_STRING, NULL, "libpq defaults (PGHOST, ...)",
              {"DATABASE_URL"}, "destination.postgres.credentials", C_PG, F_SECRET, 0, 0, NULL,
              check_conninfo, OFF(pg_conninfo),
              "PostgreSQL connection string or URI; dlt's table form (host, port, database, "
              "username, password) works too"},
    [O_REGION] = {"region", 0, "REGION", T_STRING, NULL, "AWS profile's region",
                  {"AWS_REGION", "AWS_DEFAULT_REGION"}, "sources.kinesis.credentials.region_name",
                  C_AWS, 0, 0, 0, NULL, check_region, OFF(region),
                  "AWS region (required by load and tail)"},
    [O_ENDPOINT] = {"endpoint", 0, "URL", T_STRING, NULL, "https://kinesis.REGION.amazonaws.com",
                    {"AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL"},
                    "sources.kinesis.credentials.endpoint_url", C_AWS, 0, 0, 0, NULL, check_url,
                    OFF(endpoint), "Kinesis endpoint; http:// for local emulators"},
    [O_PROFILE] = {"profile", 0, "NAME", T_STRING, NULL, "default", {"AWS_PROFILE"},
                   "sources.kinesis.credentials.profile_name", C_AWS, 0, 0, 0, NULL, check_word,
                   OFF(profile), "profile of ~/.aws/credentials and ~/.aws/config"},
    [O_CA_FILE] = {"ca-file", 0, "FILE", T_STRING, NULL, "system CA store", {"AWS_CA_BUNDLE"},
                   NULL, C_AWS, 0, 0, 0, NULL, check_word, OFF(ca_file),
                   "PEM bundle to verify the endpoint's TLS certificate"},
    [O_MAX_ATTEMPTS] = {"max-attempts", 0, "N", T_INT, "10", NULL, {"AWS_MAX_ATTEMPTS"}, NULL,
                        C_LOAD | C_TAIL, 0, 1, 100, NULL, NULL, OFF(max_attempts),
                        "tries per Kinesis call before the run fails (1..100), throttling "
                        "included; backoff 100 ms doubling up to 5 s, jittered"},
    [O_KEY_ID] = {NULL, 0, NULL, T_STRING, NULL, NULL, {NULL},
                  "sources.kinesis.credentials.aws_access_key_id", C_AWS, F_SECRET, 0, 0, NULL,
                  check_word, OFF(aws_access_key_id),
                  "explicit AWS access key id (used before AWS_ACCESS_KEY_ID)"},
    [O_SECRET] = {NULL, 0, NULL, T_STRING, NULL, NULL, {NULL},
                  "sources.kinesis.credentials.aws_secret_access_key", C_AWS, F_SECRET, 0, 0,
                  NULL, check_word, OFF(aws_secret_access_key), "explicit AWS secret access key"},
    [O_TOKEN] = {NULL, 0, NULL, T_STRING, NULL, NULL, {NULL},
                 "sources.kinesis.credentials.aws_session_token", C_AWS, F_SECRET, 0, 0, NULL,
                 check_word, OFF(aws_session_token),
                 "explicit AWS session token (temporary keys)"},
    [O_STATE] = {"state", 0, "FILE", T_STRING, NULL, NULL, {NULL}, NULL, C_TAIL, 0, 0, 0, NULL,
                 check_word, OFF(state_file), "keep tail's shard positions in FILE"},
    [O_YES] = {"yes", 'y', NULL, T_BOOL, "false", NULL, {NULL}, NULL, C_RESET, 0, 0, 0, NULL, NULL,
               OFF(yes), "do not ask before forgetting checkpoints"},
    [O_JSON] = {"json", 0, NULL, T_BOOL, "false", NULL, {NULL}, NULL, C_STATUS, 0, 0, 0, NULL,
                NULL, OFF(json), "print the status as JSON"},
    [O_METRICS] = {"metrics-addr", 0, "HOST:PORT", T_STRING, NULL, "off", {NULL}, NULL, C_LOAD, 0,
                   0, 0, NULL, check_hostport, OFF(metrics_addr),
                   "serve Prometheus /metrics, /healthz and /readyz here"},
    [O_LEASES] = {"leases", 0, NULL, T_BOOL, "false", NULL, {"KINESIS2PG_LEASES"}, NULL, C_LOAD,
                  0, 0, 0, NULL, NULL, OFF(leases),
                  "share the shards with every other load --leases of the same stream and table: "
                  "per-shard leases in PostgreSQL, balanced over the live processes, taken over "
                  "when one dies (docs/operations.md, Scaling out)"},
    [O_LEASE_TTL] = {"lease-ttl-ms", 0, "MS", T_INT, "10000", NULL, {NULL}, NULL, C_LOAD, 0, 1000,
                     600000, NULL, NULL, OFF(lease_ttl_ms),
                     "with --leases: a lease not renewed for this long may be taken over "
                     "(renewed every quarter of it)"},
    [O_WORKER_INDEX] = {"worker-index", 0, "I", T_INT, "0", NULL, {"JOB_COMPLETION_INDEX"}, NULL,
                        C_LOAD, 0, 0, 9999, NULL, NULL, OFF(worker_index),
                        "with --worker-count: this process loads the shards whose id hashes to "
                        "I (0 to worker-count - 1); a Kubernetes Indexed Job sets "
                        "JOB_COMPLETION_INDEX"},
    [O_WORKER_COUNT] = {"worker-count", 0, "N", T_INT, "0", "off", {"KINESIS2PG_WORKER_COUNT"},
                        NULL, C_LOAD, 0, 0, 10000, NULL, NULL, OFF(worker_count),
                        "split the shards statically over N processes (FNV-1a hash of the shard "
                        "id modulo N), one per --worker-index; 0 = off"},
    [O_LOG_FORMAT] = {"log-format", 0, "FORMAT", T_ENUM, "text", NULL, {NULL}, NULL, C_ALL, 0, 0,
                      0, log_formats, NULL, OFF(log_format), "log lines on stderr: text or json"},
    [O_LOG_LEVEL] = {"log-level", 0, "LEVEL", T_ENUM, "info", NULL, {NULL}, NULL, C_ALL, 0, 0, 0,
                     log_levels, NULL, OFF(log_level), "error, warn, info or debug"},
    [O_DLT_DIR] = {"dlt-dir", 0, "DIR", T_STRING, ".dlt", NULL, {NULL}, NULL, C_ALL, 0, 0, 0, NULL,
                   check_word, OFF(dlt_dir),
                   "directory of dlt's config.toml and secrets.toml (missing: ignored)"},
    [O_HELP] = {"help", 'h', NULL, T_HELP, NULL, NULL, {NULL}, NULL, C_ALL, 0, 0, 0, NULL, NULL, 0,
                "print this help and exit"},
    [O_VERSION] = {"version", 'V', NULL, T_VERSION, NULL, NULL, {NULL}, NULL, C_ALL, 0, 0, 0, NULL,
                   NULL, 0, "print the version and exit"},
};
/* clang-format on */

static const struct command_info {
    const char *name;
    k2p_command cmd;
    unsigned bit;
    const char *usage;
    const char *summary;
} commands[] = {
    {"load", K2P_CMD_LOAD, C_LOAD, "load --stream NAME [options]",
     "load new records into PostgreSQL and exit when caught up; with --follow, run forever"},
    {"status", K2P_CMD_STATUS, C_STATUS, "status --stream NAME [options]",
     "show per-shard checkpoints, rows and the last runs"},
    {"tail", K2P_CMD_TAIL, C_TAIL, "tail --stream NAME [--state FILE] [options]",
     "print records as JSON lines on stdout"},
    {"reset", K2P_CMD_RESET, C_RESET, "reset --stream NAME [--yes] [options]",
     "forget the stream's checkpoints (asks first, unless --yes)"},
};

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

const char *k2p_command_name(k2p_command c)
{
    for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++)
        if (commands[i].cmd == c)
            return commands[i].name;
    return "";
}

const char *k2p_config_option_name(size_t i)
{
    if (i >= O_COUNT)
        return NULL;
    return opts[i].name ? opts[i].name : opts[i].dlt_key;
}

static const struct command_info *command_by_name(const char *name)
{
    for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++)
        if (name && strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static unsigned command_bit(k2p_command c)
{
    for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++)
        if (commands[i].cmd == c)
            return commands[i].bit;
    return 0;
}

/* dlt's environment name for a key: "sources.kinesis.stream_name" ->
 * "SOURCES__KINESIS__STREAM_NAME". */
static void dlt_env_name(const char *key, char *out, size_t size)
{
    size_t o = 0;
    for (; *key && o + 3 < size; key++) {
        if (*key == '.') {
            out[o++] = '_';
            out[o++] = '_';
        } else if (*key >= 'a' && *key <= 'z') {
            out[o++] = (char)(*key - 'a' + 'A');
        } else {
            out[o++] = *key;
        }
    }
    out[o] = '\0';
}

static int ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return *a == *b;
}

/* True when s is short and plain enough to quote in a message without risk of echoing a
 * secret pasted in the wrong place. */
static int quotable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0;
}

static int set_string(char **dst, const char *v)
{
    char *p = k2p_strdup(v);
    if (!p)
        return K2P_ENOMEM;
    k2p_free_secret(dst);
    *dst = p;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Value checks                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Kinesis names (streams, consumers): [a-zA-Z0-9_.-]{1,128}. 0 ok, 1 bad length, 2 bad char. */
static int aws_name_check(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > 128)
        return 1;
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
              *v == '_' || *v == '.' || *v == '-'))
            return 2;
    return 0;
}

static const char *check_stream(const char *v)
{
    switch (aws_name_check(v)) {
    case 1: return "a stream name has 1 to 128 characters";
    case 2: return "a stream name holds only letters, digits, '_', '.' and '-'";
    default: return NULL;
    }
}

static const char *check_consumer(const char *v)
{
    switch (aws_name_check(v)) {
    case 1: return "a consumer name has 1 to 128 characters";
    case 2: return "a consumer name holds only letters, digits, '_', '.' and '-'";
    default: return NULL;
    }
}

static const char *check_ident(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > 63)
        return "must be 1 to 63 bytes (PostgreSQL's identifier limit)";
    return NULL;
}

static const char *check_region(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > 64)
        return "must look like us-east-1";
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= '0' && *v <= '9') || *v == '-'))
            return "must look like us-east-1 (lower-case letters, digits and '-')";
    return NULL;
}

static const char *check_word(const char *v)
{
    if (!*v)
        return "must not be empty";
    for (; *v; v++)
        if ((unsigned char)*v < ' ' || *v == 0x7F)
            return "must not hold control characters";
    return NULL;
}

static const char *check_url(const char *v)
{
    const char *host;
    if (strncmp(v, "https://", 8) == 0)
        host = v + 8;
    else if (strncmp(v, "http://", 7) == 0)
        host = v + 7;
    else
        return "must start with https:// (or http:// for a local emulator)";
    if (!*host || *host == '/')
        return "has no host";
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || *v == 0x7F)
            return "must not hold blanks or control characters";
    return NULL;
}

/* Splits HOST:PORT ("[v6]:PORT", ":PORT"). host gets a heap copy when non-NULL. */
static const char *split_hostport(const char *v, char **host, int *port)
{
    const char *colon, *hs = v, *he;
    int64_t p;
    if (v[0] == '[') {
        he = strchr(v, ']');
        if (!he || he[1] != ':')
            return "must be HOST:PORT ([ADDR]:PORT for IPv6)";
        hs = v + 1;
        colon = he + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return "must be HOST:PORT";
        he = colon;
        if (memchr(v, ':', (size_t)(colon - v)))
            return "an IPv6 address needs brackets: [ADDR]:PORT";
    }
    if (k2p_parse_i64(colon + 1, &p) < 0 || p < 0 || p > 65535)
        return "the port must be a number from 0 to 65535";
    for (const char *c = hs; c < he; c++)
        if ((unsigned char)*c <= ' ' || *c == '/' || *c == 0x7F)
            return "the host must not hold blanks, '/' or control characters";
    if (host) {
        *host = he > hs ? k2p_strndup(hs, (size_t)(he - hs)) : k2p_strdup("0.0.0.0");
        if (!*host)
            return "out of memory";
    }
    if (port)
        *port = (int)p;
    return NULL;
}

static const char *check_hostport(const char *v)
{
    return split_hostport(v, NULL, NULL);
}

static const char *check_conninfo(const char *v)
{
    char *msg = NULL;
    PQconninfoOption *o = PQconninfoParse(v, &msg);
    /* libpq's message may quote the string, password included: do not pass it on. */
    if (msg)
        PQfreemem(msg);
    if (!o)
        return "not a valid PostgreSQL connection string or URI";
    PQconninfoFree(o);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* --from                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* "90s", "15m", "1h", "2d", "1w", or sums such as "1h30m". Microseconds in *us. */
static int parse_duration(const char *s, int64_t *us)
{
    int64_t total = 0;
    if (!*s)
        return K2P_EINVAL;
    while (*s) {
        int64_t n = 0, unit;
        if (*s < '0' || *s > '9')
            return K2P_EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (n > (INT64_MAX / 10) - 9)
                return K2P_EINVAL;
            n = n * 10 + (*s - '0');
        }
        switch (*s++) {
        case 's':
            unit = 1000000;
            break;
        case 'm':
            unit = 60 * (int64_t)1000000;
            break;
        case 'h':
            unit = 3600 * (int64_t)1000000;
            break;
        case 'd':
            unit = 86400 * (int64_t)1000000;
            break;
        case 'w':
            unit = 7 * 86400 * (int64_t)1000000;
            break;
        default:
            return K2P_EINVAL;
        }
        if (n > (INT64_MAX - total) / unit)
            return K2P_EINVAL;
        total += n * unit;
    }
    *us = total;
    return 0;
}

int k2p_config_parse_from(const char *s, int64_t now_us, k2p_from *out)
{
    int64_t t;
    if (!s)
        return K2P_EINVAL;
    if (ascii_ieq(s, "latest")) {
        out->kind = K2P_FROM_LATEST;
        out->at_us = 0;
        return 0;
    }
    if (ascii_ieq(s, "trim_horizon") || ascii_ieq(s, "trim-horizon")) {
        out->kind = K2P_FROM_TRIM_HORIZON;
        out->at_us = 0;
        return 0;
    }
    if (k2p_parse_rfc3339(s, &t) == 0) {
        if (t < 0)
            return K2P_EINVAL;
    } else if (parse_duration(s, &t) == 0) {
        if (t > now_us)
            return K2P_EINVAL;
        t = now_us - t;
    } else {
        return K2P_EINVAL;
    }
    out->kind = K2P_FROM_AT_TIMESTAMP;
    out->at_us = t;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Applying a value from some source                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct parse_ctx {
    k2p_config *cfg;
    const k2p_env *env;
    int64_t now_us;
    k2p_err *err;
    const char *flag_val[O_COUNT]; /* last value on the command line (borrowed from argv) */
    k2p_kv_list dlt_config, dlt_secrets;
    char *dlt_config_path, *dlt_secrets_path;
} parse_ctx;

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (ascii_ieq(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (ascii_ieq(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return K2P_EINVAL;
}

static int bad_value(parse_ctx *c, const opt *o, const char *origin, const char *v, const char *why)
{
    if ((o->flags & F_SECRET) || !v)
        return k2p_err_set(c->err, K2P_ECONFIG, "%s: invalid value: %s", origin, why);
    return k2p_err_set(c->err, K2P_ECONFIG, "%s: invalid value '%.64s'%s: %s", origin, v,
                       strlen(v) > 64 ? "..." : "", why);
}

/* Converts and stores value `v` (of TOML type `t`; K2P_KV_STRING for flags and env) into option
 * `id`, recording `src`. `origin` names where it came from in messages. */
static int apply(parse_ctx *c, int id, const char *v, k2p_kv_type t, k2p_config_source src,
                 const char *origin)
{
    const opt *o = &opts[id];
    void *field = (char *)c->cfg + o->off;
    const char *why;
    char range[96];

    if (t == K2P_KV_ARRAY)
        return bad_value(c, o, origin, NULL, "must be a single value, not an array");
    switch (o->type) {
    case T_STRING:
        if (!*v)
            return bad_value(c, o, origin, NULL, "must not be empty");
        if (o->check && (why = o->check(v)) != NULL)
            return bad_value(c, o, origin, v, why);
        if (set_string(field, v) < 0)
            return k2p_err_set(c->err, K2P_ENOMEM, "out of memory");
        break;
    case T_INT: {
        int64_t n;
        if ((t != K2P_KV_STRING && t != K2P_KV_INTEGER) || k2p_parse_i64(v, &n) < 0)
            return bad_value(c, o, origin, v, "must be an integer");
        if (n < o->min || n > o->max) {
            snprintf(range, sizeof range, "must be from %lld to %lld", (long long)o->min,
                     (long long)o->max);
            return bad_value(c, o, origin, v, range);
        }
        *(int64_t *)field = n;
        break;
    }
    case T_BOOL: {
        bool b;
        if (parse_bool(v, &b) < 0)
            return bad_value(c, o, origin, v, "must be true or false");
        if ((o->flags & F_DLT_INVERT) && src >= K2P_SRC_DLT_CONFIG && src <= K2P_SRC_DLT_ENV)
            b = !b;
        *(bool *)field = b;
        break;
    }
    case T_ENUM: {
        int i;
        for (i = 0; o->choices[i]; i++)
            if (ascii_ieq(v, o->choices[i]))
                break;
        if (!o->choices[i]) {
            k2p_buf b;
            k2p_buf_init(&b, sizeof range);
            for (int j = 0; o->choices[j]; j++)
                (void)k2p_buf_printf(&b, "%s%s", j ? ", " : "must be one of: ", o->choices[j]);
            snprintf(range, sizeof range, "%s", b.data ? b.data : "invalid");
            k2p_buf_deinit(&b);
            return bad_value(c, o, origin, v, range);
        }
        memcpy(field, &i, sizeof i);
        break;
    }
    case T_FROM: {
        k2p_from f;
        if (t == K2P_KV_INTEGER || t == K2P_KV_FLOAT) {
            /* dlt's initial_at_timestamp as a number: Unix seconds, 0 meaning LATEST. */
            char *end;
            double secs = strtod(v, &end);
            if (*end || !isfinite(secs) || secs < 0 || secs >= 253402300800.0)
                return bad_value(c, o, origin, v, "must be Unix seconds from 0 to year 9999");
            f.kind = secs == 0 ? K2P_FROM_LATEST : K2P_FROM_AT_TIMESTAMP;
            f.at_us = (int64_t)(secs * 1e6);
        } else if (k2p_config_parse_from(v, c->now_us, &f) < 0) {
            return bad_value(c, o, origin, v,
                             "must be latest, trim_horizon, an RFC 3339 time with a zone "
                             "(2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00) or a "
                             "duration ago (90s, 15m, 1h, 2d, 1h30m)");
        }
        *(k2p_from *)field = f;
        break;
    }
    case T_HELP:
    case T_VERSION:
        break;
    }
    c->cfg->source[id] = (unsigned char)src;
    return 0;
}

/* Sets option `id` from the highest source that has it; leaves the default otherwise. */
static int resolve(parse_ctx *c, int id)
{
    const opt *o = &opts[id];
    char origin[512];
    const char *v;

    if (c->flag_val[id]) {
        snprintf(origin, sizeof origin, "--%s", o->name);
        return apply(c, id, c->flag_val[id], K2P_KV_STRING, K2P_SRC_FLAG, origin);
    }
    for (size_t i = 0; i < K2P_ARRAY_LEN(o->env) && o->env[i]; i++)
        if ((v = k2p_env_get(c->env, o->env[i])) != NULL)
            return apply(c, id, v, K2P_KV_STRING, K2P_SRC_ENV, o->env[i]);
    if (o->dlt_key) {
        const k2p_kv *kv;
        dlt_env_name(o->dlt_key, origin, sizeof origin);
        if ((v = k2p_env_get(c->env, origin)) != NULL)
            return apply(c, id, v, K2P_KV_STRING, K2P_SRC_DLT_ENV, origin);
        if ((kv = k2p_kv_find(&c->dlt_secrets, "", o->dlt_key)) != NULL) {
            snprintf(origin, sizeof origin, "%s:%d: %s", c->dlt_secrets_path, kv->line, o->dlt_key);
            return apply(c, id, kv->value, kv->type, K2P_SRC_DLT_SECRETS, origin);
        }
        if ((kv = k2p_kv_find(&c->dlt_config, "", o->dlt_key)) != NULL) {
            snprintf(origin, sizeof origin, "%s:%d: %s", c->dlt_config_path, kv->line, o->dlt_key);
            return apply(c, id, kv->value, kv->type, K2P_SRC_DLT_CONFIG, origin);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                                */
/* ------------------------------------------------------------------------------------------ */

static int find_long(const char *name, size_t n)
{
    for (int i = 0; i < O_COUNT; i++)
        if (opts[i].name && strlen(opts[i].name) == n && memcmp(opts[i].name, name, n) == 0)
            return i;
    return -1;
}

static int find_short(char ch)
{
    for (int i = 0; i < O_COUNT; i++)
        if (opts[i].short_name && opts[i].short_name == ch)
            return i;
    return -1;
}

/* Records the first error only; scanning goes on so that a later --help still wins. */
static void scan_error(int *rc, k2p_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void scan_error(int *rc, k2p_err *err, const char *fmt, ...)
{
    va_list ap;
    if (*rc < 0)
        return;
    *rc = K2P_ECONFIG;
    if (err) {
        err->code = K2P_ECONFIG;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
}

static int scan_argv(parse_ctx *c, int argc, char **argv)
{
    k2p_config *cfg = c->cfg;
    int rc = 0, only_args = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int id, has_val = 0;

        if (only_args || a[0] != '-' || a[1] == '\0') {
            const struct command_info *ci = command_by_name(a);
            if (cfg->command == K2P_CMD_NONE && ci)
                cfg->command = ci->cmd;
            else if (cfg->command == K2P_CMD_NONE && quotable(a))
                scan_error(&rc, c->err, "unknown command '%s' (use load, status, tail or reset)",
                           a);
            else if (cfg->command == K2P_CMD_NONE)
                scan_error(&rc, c->err, "unknown command (use load, status, tail or reset)");
            else if (quotable(a))
                scan_error(&rc, c->err, "unexpected argument '%s' (argument %d)", a, i);
            else
                scan_error(&rc, c->err, "unexpected argument %d (quote values with spaces)", i);
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            id = find_long(name, n);
            if (id < 0) {
                scan_error(&rc, c->err, "unknown option '--%.*s'", (int)K2P_MIN(n, 64), name);
                continue;
            }
            if (eq) {
                val = eq + 1;
                has_val = 1;
            }
        } else {
            id = find_short(a[1]);
            if (id < 0) {
                if ((unsigned char)a[1] > ' ' && (unsigned char)a[1] < 0x7F)
                    scan_error(&rc, c->err, "unknown option '-%c'", a[1]);
                else
                    scan_error(&rc, c->err, "unknown option (argument %d)", i);
                continue;
            }
            if (a[2]) {
                val = a + 2;
                has_val = 1;
            }
        }
        const opt *o = &opts[id];
        if (o->type == T_HELP) {
            cfg->help = true;
            continue;
        }
        if (o->type == T_VERSION) {
            cfg->version = true;
            continue;
        }
        if (o->type == T_BOOL) {
            if (!has_val)
                val = "true";
        } else if (!has_val) {
            if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] != '\0')) {
                scan_error(&rc, c->err, "--%s needs a value (--%s %s)", o->name, o->name,
                           o->metavar);
                continue;
            }
            val = argv[++i];
        }
        c->flag_val[id] = val;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* dlt files and derived settings                                                              */
/* ------------------------------------------------------------------------------------------ */

static char *path_join(const char *dir, const char *name)
{
    k2p_buf b;
    k2p_buf_init(&b, 8192);
    if (k2p_buf_printf(&b, "%s/%s", dir, name) < 0) {
        k2p_buf_deinit(&b);
        return NULL;
    }
    return k2p_buf_steal(&b, NULL);
}

static int load_dlt_files(parse_ctx *c)
{
    const char *dir = c->cfg->dlt_dir;
    k2p_err e;
    int rc;
    struct stat st;

    if (c->cfg->source[O_DLT_DIR] == K2P_SRC_FLAG && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
        return k2p_err_set(c->err, K2P_ECONFIG, "--dlt-dir: '%s' is not a directory", dir);
    c->dlt_config_path = path_join(dir, "config.toml");
    c->dlt_secrets_path = path_join(dir, "secrets.toml");
    if (!c->dlt_config_path || !c->dlt_secrets_path)
        return k2p_err_set(c->err, K2P_ENOMEM, "out of memory");
    k2p_err_clear(&e);
    rc = k2p_toml_load_file(c->dlt_config_path, &c->dlt_config, &e);
    if (rc == 0 || rc == K2P_ENOTFOUND)
        rc = k2p_toml_load_file(c->dlt_secrets_path, &c->dlt_secrets, &e);
    if (rc < 0 && rc != K2P_ENOTFOUND)
        return k2p_err_set(c->err, rc == K2P_ENOMEM ? K2P_ENOMEM : K2P_ECONFIG, "%s", e.msg);
    return 0;
}

/* Appends ` key='value'` to a libpq conninfo, quoting as libpq reads it. */
static int conninfo_put(k2p_buf *b, const char *key, const char *v)
{
    int rc = k2p_buf_printf(b, "%s%s='", b->len ? " " : "", key);
    for (; rc == 0 && *v; v++) {
        if (*v == '\'' || *v == '\\')
            rc = k2p_buf_putc(b, '\\');
        if (rc == 0)
            rc = k2p_buf_putc(b, *v);
    }
    return rc == 0 ? k2p_buf_putc(b, '\'') : rc;
}

/* dlt's table form of [destination.postgres.credentials] (each field from the dlt env name,
 * secrets.toml or config.toml) as a conninfo. Sets cfg->pg_conninfo or leaves it NULL. */
static int pg_from_dlt_fields(parse_ctx *c)
{
    static const char *const fields[][2] = {
        {"host", "host"},       {"port", "port"},         {"database", "dbname"},
        {"username", "user"},   {"password", "password"}, {"connect_timeout", "connect_timeout"},
        {"sslmode", "sslmode"},
    };
    k2p_buf b;
    char key[128], envname[160];
    int rc = 0, best = K2P_SRC_DEFAULT;

    k2p_buf_init(&b, 64 * 1024);
    for (size_t i = 0; i < K2P_ARRAY_LEN(fields) && rc == 0; i++) {
        const k2p_kv *kv;
        const char *v = NULL;
        int src = K2P_SRC_DEFAULT;
        snprintf(key, sizeof key, "%s.%s", opts[O_PG].dlt_key, fields[i][0]);
        dlt_env_name(key, envname, sizeof envname);
        if ((v = k2p_env_get(c->env, envname)) != NULL)
            src = K2P_SRC_DLT_ENV;
        else if ((kv = k2p_kv_find(&c->dlt_secrets, "", key)) && kv->type != K2P_KV_ARRAY)
            v = kv->value, src = K2P_SRC_DLT_SECRETS;
        else if ((kv = k2p_kv_find(&c->dlt_config, "", key)) && kv->type != K2P_KV_ARRAY)
            v = kv->value, src = K2P_SRC_DLT_CONFIG;
        if (v && *v) {
            rc = conninfo_put(&b, fields[i][1], v);
            best = K2P_MAX(best, src);
        }
    }
    if (rc == 0 && b.len) {
        c->cfg->pg_conninfo = k2p_buf_steal(&b, NULL);
        c->cfg->source[O_PG] = (unsigned char)best;
    }
    if (b.data)
        memset(b.data, 0, b.cap);
    k2p_buf_deinit(&b);
    return rc < 0 ? k2p_err_set(c->err, K2P_ENOMEM, "out of memory") : 0;
}

static int derive(parse_ctx *c)
{
    k2p_config *cfg = c->cfg;
    unsigned bit = command_bit(cfg->command);
    const char *why;

    if ((bit & C_PG) && !cfg->pg_conninfo && pg_from_dlt_fields(c) < 0)
        return c->err ? c->err->code : K2P_ENOMEM;

    if (!cfg->stream)
        return k2p_err_set(c->err, K2P_ECONFIG,
                           "no stream: give --stream NAME, set SOURCES__KINESIS__STREAM_NAME, or "
                           "stream_name under [sources.kinesis] in %s",
                           c->dlt_config_path ? c->dlt_config_path : ".dlt/config.toml");
    if ((bit & C_PG) && !cfg->table) {
        if ((why = check_ident(cfg->stream)) != NULL)
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "the stream name is too long for a table name (%s): give --table",
                               why);
        if (set_string(&cfg->table, cfg->stream) < 0)
            return k2p_err_set(c->err, K2P_ENOMEM, "out of memory");
        cfg->source[O_TABLE] = K2P_SRC_DERIVED;
    }

    if (bit & C_AWS) {
        if (!cfg->region) {
            /* Last resort: the `region` of the AWS profile in ~/.aws/config. */
            cfg->region = k2p_aws_region_from_env(c->env, cfg->profile);
            if (cfg->region && (why = check_region(cfg->region)) != NULL) {
                k2p_err_set(c->err, K2P_ECONFIG,
                            "region of AWS profile '%s' in the AWS config file: %s",
                            k2p_aws_profile_name(c->env, cfg->profile), why);
                return K2P_ECONFIG;
            }
            if (cfg->region)
                cfg->source[O_REGION] = K2P_SRC_DERIVED;
        }
        if (!cfg->region && (bit & (C_LOAD | C_TAIL)))
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "no AWS region: give --region, set AWS_REGION, set region_name "
                               "under [sources.kinesis.credentials] in %s, or region in the AWS "
                               "profile",
                               c->dlt_secrets_path ? c->dlt_secrets_path : ".dlt/secrets.toml");
        if (cfg->endpoint) {
            size_t n = strlen(cfg->endpoint);
            while (n > 0 && cfg->endpoint[n - 1] == '/')
                cfg->endpoint[--n] = '\0';
        } else if (cfg->region) {
            k2p_buf b;
            k2p_buf_init(&b, 1024);
            int cn = strncmp(cfg->region, "cn-", 3) == 0;
            if (k2p_buf_printf(&b, "https://kinesis.%s.amazonaws.com%s", cfg->region,
                               cn ? ".cn" : "") < 0) {
                k2p_buf_deinit(&b);
                return k2p_err_set(c->err, K2P_ENOMEM, "out of memory");
            }
            cfg->endpoint = k2p_buf_steal(&b, NULL);
            cfg->source[O_ENDPOINT] = K2P_SRC_DERIVED;
        }
        int has_id = cfg->aws_access_key_id != NULL,
            has_secret = cfg->aws_secret_access_key != NULL;
        if (has_id != has_secret || (cfg->aws_session_token && !has_id))
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "sources.kinesis.credentials: %s is set but %s is not (check %s and "
                               "SOURCES__KINESIS__CREDENTIALS__*)",
                               has_id       ? "aws_access_key_id"
                               : has_secret ? "aws_secret_access_key"
                                            : "aws_session_token",
                               has_id ? "aws_secret_access_key" : "aws_access_key_id",
                               c->dlt_secrets_path ? c->dlt_secrets_path : ".dlt/secrets.toml");
    }

    if (cfg->metrics_addr &&
        (why = split_hostport(cfg->metrics_addr, &cfg->metrics_host, &cfg->metrics_port)) != NULL)
        return k2p_err_set(c->err, K2P_ECONFIG, "--metrics-addr: %s", why);
    if (bit & C_LOAD) {
        if (cfg->worker_count > 0 && cfg->worker_index >= cfg->worker_count)
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "--worker-index %lld%s must be below --worker-count %lld",
                               (long long)cfg->worker_index,
                               cfg->source[O_WORKER_INDEX] == K2P_SRC_ENV
                                   ? " (from JOB_COMPLETION_INDEX)"
                                   : "",
                               (long long)cfg->worker_count);
        if (cfg->worker_count == 0 && cfg->source[O_WORKER_INDEX] == K2P_SRC_FLAG)
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "--worker-index needs --worker-count (or KINESIS2PG_WORKER_COUNT)");
        if (cfg->worker_count > 0 && cfg->leases)
            return k2p_err_set(c->err, K2P_ECONFIG,
                               "--leases and --worker-count are two ways to share the shards: "
                               "use one");
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parse                                                                                       */
/* ------------------------------------------------------------------------------------------ */

void k2p_config_deinit(k2p_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < O_COUNT; i++)
        if (opts[i].type == T_STRING)
            k2p_free_secret((char **)((char *)cfg + opts[i].off));
    k2p_free_secret(&cfg->metrics_host);
    memset(cfg, 0, sizeof *cfg);
}

int k2p_config_parse_at(k2p_config *cfg, int argc, char **argv, const k2p_env *env, int64_t now_us,
                        k2p_err *err)
{
    parse_ctx c;
    int rc = 0;
    unsigned bit;

    memset(cfg, 0, sizeof *cfg);
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    c.env = env;
    c.now_us = now_us;
    c.err = err;
    k2p_kv_list_init(&c.dlt_config);
    k2p_kv_list_init(&c.dlt_secrets);

    for (int i = 0; i < O_COUNT && rc == 0; i++)
        if (opts[i].def)
            rc = apply(&c, i, opts[i].def, K2P_KV_STRING, K2P_SRC_DEFAULT, "default");
    if (rc < 0)
        goto out;

    rc = scan_argv(&c, argc, argv);
    if (cfg->help || cfg->version) {
        k2p_err_clear(err);
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    if (cfg->command == K2P_CMD_NONE) {
        rc = k2p_err_set(err, K2P_ECONFIG,
                         "missing command: use load, status, tail or reset (see --help)");
        goto out;
    }
    bit = command_bit(cfg->command);
    for (int i = 0; i < O_COUNT; i++) {
        if (c.flag_val[i] && !(opts[i].cmds & bit)) {
            rc = k2p_err_set(
                err, K2P_ECONFIG, "--%s is not an option of '%s' (see 'kinesis2pg %s --help')",
                opts[i].name, k2p_command_name(cfg->command), k2p_command_name(cfg->command));
            goto out;
        }
    }

    if ((rc = resolve(&c, O_DLT_DIR)) < 0 || (rc = load_dlt_files(&c)) < 0)
        goto out;
    for (int i = 0; i < O_COUNT; i++) {
        if (i == O_DLT_DIR || !(opts[i].cmds & bit))
            continue;
        if ((rc = resolve(&c, i)) < 0)
            goto out;
    }
    rc = derive(&c);
out:
    k2p_kv_list_deinit(&c.dlt_config);
    k2p_kv_list_deinit(&c.dlt_secrets);
    free(c.dlt_config_path);
    free(c.dlt_secrets_path);
    if (rc < 0) {
        k2p_command cmd = cfg->command;
        k2p_config_deinit(cfg);
        cfg->command = cmd;
        if (rc != K2P_ENOMEM)
            rc = K2P_ECONFIG;
        if (err)
            err->code = rc;
    }
    return rc;
}

int k2p_config_parse(k2p_config *cfg, int argc, char **argv, const k2p_env *env, k2p_err *err)
{
    return k2p_config_parse_at(cfg, argc, argv, env, k2p_wall_us(), err);
}

k2p_cred_chain *k2p_config_cred_chain_new(const k2p_config *cfg, const k2p_env *env)
{
    /* The configured region also picks the STS endpoint (web identity, role_arn profiles), and
     * the CA bundle verifies https credential endpoints as it does the Kinesis endpoint. */
    k2p_cred_chain_opts o = {cfg->aws_access_key_id,
                             cfg->aws_secret_access_key,
                             cfg->aws_session_token,
                             cfg->profile,
                             {cfg->region, cfg->ca_file, NULL}};
    return k2p_cred_chain_standard_new(env, &o);
}

/* ------------------------------------------------------------------------------------------ */
/* --help                                                                                      */
/* ------------------------------------------------------------------------------------------ */

#define HELP_COL 30
#define HELP_WIDTH 100

/* Prints text word-wrapped from column `col` (the cursor is already there) to HELP_WIDTH.
 * NBSP (a '\x01' byte) joins words that must stay on one line; it prints as a blank. */
#define NBSP "\x01"

static void wrap(FILE *f, const char *text, int col)
{
    int x = col;
    while (*text) {
        const char *w = text;
        while (*w == ' ')
            w++;
        const char *e = w;
        while (*e && *e != ' ')
            e++;
        int n = (int)(e - w);
        if (n == 0)
            break;
        if (x > col && x + 1 + n > HELP_WIDTH) {
            fprintf(f, "\n%*s", col, "");
            x = col;
        } else if (x > col) {
            fputc(' ', f);
            x++;
        }
        for (int i = 0; i < n; i++)
            fputc(w[i] == '\x01' ? ' ' : w[i], f);
        x += n;
        text = e;
    }
    fputc('\n', f);
}

static const char *default_text(const opt *o)
{
    if (o->def_doc)
        return o->def_doc;
    if (o->type == T_BOOL)
        return NULL;
    return o->def;
}

static void help_option(FILE *f, const opt *o)
{
    char left[64], extra[400], envs[256] = "";
    const char *d = default_text(o);

    if (o->short_name)
        snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
    else
        snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
    if ((int)strlen(left) + 2 >= HELP_COL - 2)
        fprintf(f, "  %s\n%*s", left, HELP_COL, "");
    else
        fprintf(f, "  %-*s", HELP_COL - 2, left);
    wrap(f, o->help, HELP_COL);

    for (size_t i = 0; i < K2P_ARRAY_LEN(o->env) && o->env[i]; i++)
        snprintf(envs + strlen(envs), sizeof envs - strlen(envs), "%s%s", i ? ", " : "", o->env[i]);
    snprintf(extra, sizeof extra, "%s%s%s%s%s%s%s", d ? "default:" NBSP : "", d ? d : "",
             envs[0] && d ? "; " : "", envs[0] ? "env:" NBSP : "", envs,
             o->dlt_key && (d || envs[0]) ? "; " : "", o->dlt_key ? "dlt:" NBSP : "");
    if (o->dlt_key)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%s", o->dlt_key);
    if (extra[0]) {
        fprintf(f, "%*s", HELP_COL, "");
        wrap(f, extra, HELP_COL);
    }
}

void k2p_config_print_help(FILE *f, const char *command)
{
    const struct command_info *ci = command_by_name(command);

    if (!ci) {
        fprintf(f, "kinesis2pg %s - load Amazon Kinesis records into PostgreSQL\n\nUsage:\n",
                K2P_VERSION);
        for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++)
            fprintf(f, "  kinesis2pg %s\n      %s\n", commands[i].usage, commands[i].summary);
        fprintf(f, "  kinesis2pg --help | --version\n\nOptions for every command:\n");
        for (int i = 0; i < O_COUNT; i++)
            if (opts[i].name && (opts[i].cmds & C_ALL) == C_ALL)
                help_option(f, &opts[i]);
        fprintf(f, "\nRun 'kinesis2pg COMMAND --help' for the options of a command.\n");
    } else {
        fprintf(f, "Usage: kinesis2pg %s\n\n", ci->usage);
        wrap(f, ci->summary, 0);
        fprintf(f, "\nOptions:\n");
        for (int i = 0; i < O_COUNT; i++)
            if (opts[i].name && (opts[i].cmds & ci->bit))
                help_option(f, &opts[i]);
        if (ci->bit & C_AWS) {
            fprintf(f, "\nAWS credentials (first found): ");
            wrap(f,
                 "aws_access_key_id / aws_secret_access_key / aws_session_token under "
                 "[sources.kinesis.credentials] in .dlt/secrets.toml (or "
                 "SOURCES__KINESIS__CREDENTIALS__AWS_ACCESS_KEY_ID, ...); AWS_ACCESS_KEY_ID / "
                 "AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; web identity "
                 "(AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN); container credentials "
                 "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI); the --profile in "
                 "~/.aws/credentials or ~/.aws/config (static keys or role_arn); EC2 instance "
                 "metadata (IMDSv2; AWS_EC2_METADATA_DISABLED=true skips it).",
                 31);
        }
    }
    fprintf(f, "\n");
    wrap(f,
         "Settings come from, lowest precedence first: .dlt/config.toml, .dlt/secrets.toml, dlt "
         "environment names (a dlt key upper-cased with '__' for '.', e.g. "
         "SOURCES__KINESIS__STREAM_NAME), standard environment variables, then flags. "
         "Flags take '--name value' or '--name=value'. See docs/configuration.md.",
         0);
}

/* ------------------------------------------------------------------------------------------ */
/* Markdown                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s, f);
    }
}

static void md_commands(FILE *f, unsigned cmds)
{
    int first = 1;
    if ((cmds & C_ALL) == C_ALL) {
        fputs("all", f);
        return;
    }
    for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++) {
        if (cmds & commands[i].bit) {
            fprintf(f, "%s%s", first ? "" : ", ", commands[i].name);
            first = 0;
        }
    }
}

static void md_option_row(FILE *f, const opt *o)
{
    const char *d = default_text(o);
    char envname[160];

    if (o->name) {
        fprintf(f, "| `--%s", o->name);
        if (o->metavar)
            fprintf(f, " %s", o->metavar);
        fputc('`', f);
        if (o->short_name)
            fprintf(f, " (`-%c`)", o->short_name);
    } else {
        fputs("| (no flag)", f);
    }
    fputs(" | ", f);
    if (o->def_doc) {
        md_text(f, o->def_doc); /* prose, not a value */
    } else if (d) {
        fputc('`', f);
        md_text(f, d);
        fputc('`', f);
    } else if (o->type == T_BOOL) {
        fputs("off", f);
    }
    fputs(" | ", f);
    for (size_t i = 0; i < K2P_ARRAY_LEN(o->env) && o->env[i]; i++)
        fprintf(f, "%s`%s`", i ? "<br>" : "", o->env[i]);
    if (o->dlt_key) {
        dlt_env_name(o->dlt_key, envname, sizeof envname);
        fprintf(f, "%s`%s`", o->env[0] ? "<br>" : "", envname);
    }
    fputs(" | ", f);
    if (o->dlt_key)
        fprintf(f, "`%s`", o->dlt_key);
    fputs(" | ", f);
    md_commands(f, o->cmds);
    fputs(" | ", f);
    md_text(f, o->help);
    if (o->flags & F_SECRET)
        fputs(" (secret: never printed)", f);
    fputs(" |\n", f);
}

void k2p_config_print_markdown(FILE *f)
{
    fputs("# Configuration reference\n\n"
          "<!-- Generated from the option table in src/config.c by k2p_config_print_markdown().\n"
          "     Do not edit by hand: after changing the table run\n"
          "     `K2P_UPDATE_DOCS=1 build/tests/test_config` (the unit test fails while this file\n"
          "     is stale). -->\n\n",
          f);
    fputs("## Commands\n\n| command | what it does |\n|---|---|\n", f);
    for (size_t i = 0; i < K2P_ARRAY_LEN(commands); i++) {
        fprintf(f, "| `kinesis2pg %s` | ", commands[i].usage);
        md_text(f, commands[i].summary);
        fputs(" |\n", f);
    }
    fputs("| `kinesis2pg --help \\| --version` | print help (of a command: "
          "`kinesis2pg load --help`) or the version |\n\n",
          f);

    fputs("## Where settings come from\n\n"
          "Each setting is taken from the first of these that has it, highest precedence first:\n\n"
          "1. **Flags**: `--name value` or `--name=value`; a boolean flag alone means true\n"
          "   (`--raw`, or `--raw=false`). A flag given twice: the last one wins.\n"
          "2. **Standard environment variables** (AWS and libpq names such as `AWS_REGION`,\n"
          "   `AWS_ENDPOINT_URL_KINESIS`, `DATABASE_URL`), the first listed winning.\n"
          "3. **dlt environment names**: the dlt key upper-cased, each `.` written `__`\n"
          "   (`SOURCES__KINESIS__STREAM_NAME`), as dlt itself reads them.\n"
          "4. **dlt files** in the `--dlt-dir` directory (default `.dlt`): `secrets.toml`, then\n"
          "   `config.toml`. A dlt user keeps their files as they are. Missing files are\n"
          "   ignored; a malformed one is an error naming the file and line.\n"
          "5. The built-in default.\n\n"
          "Then a few settings are derived:\n\n"
          "- `--table` defaults to the stream name.\n"
          "- `--region`, when none of the above sets it, is the `region` of the AWS profile\n"
          "  (`--profile`, `AWS_PROFILE`, else `default`) in `~/.aws/config` (or\n"
          "  `AWS_CONFIG_FILE`). `load` and `tail` need a region.\n"
          "- `--endpoint` defaults to `https://kinesis.REGION.amazonaws.com`\n"
          "  (`.amazonaws.com.cn` for `cn-` regions).\n"
          "- `--pg`, when none of the above sets it, is built from dlt's table form\n"
          "  `[destination.postgres.credentials]` (`host`, `port`, `database`, `username`,\n"
          "  `password`, `connect_timeout`, `sslmode`); with nothing at all, libpq's own\n"
          "  defaults apply (`PGHOST`, `PGUSER`, `PGPASSWORD`, `~/.pgpass`, ...).\n\n"
          "Errors in any source exit with status 2 and name the flag, variable or `file:line`\n"
          "at fault; a secret value is never printed.\n\n",
          f);

    fputs("## Options\n\n"
          "| option | default | environment | dlt key | commands | description |\n"
          "|---|---|---|---|---|---|\n",
          f);
    for (int i = 0; i < O_COUNT; i++)
        if (opts[i].name)
            md_option_row(f, &opts[i]);

    fputs("\n## AWS credentials\n\n"
          "The first source that has credentials is used:\n\n"
          "1. Explicit keys from dlt: `[sources.kinesis.credentials]` in `secrets.toml` (or\n"
          "   `config.toml`), or their dlt environment names. They are not flags, so they never\n"
          "   show in `ps`. As in dlt, they take precedence over `AWS_ACCESS_KEY_ID`.\n"
          "2. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (and\n"
          "   `AWS_CREDENTIAL_EXPIRATION`). One of the key pair without the other is an error.\n"
          "3. Web identity (EKS IAM roles for service accounts): `AWS_WEB_IDENTITY_TOKEN_FILE`\n"
          "   and `AWS_ROLE_ARN` (and `AWS_ROLE_SESSION_NAME`), exchanged at STS\n"
          "   AssumeRoleWithWebIdentity; the token file is read again at every refresh.\n"
          "4. Container credentials (ECS, EKS Pod Identity):\n"
          "   `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `AWS_CONTAINER_CREDENTIALS_FULL_URI`,\n"
          "   with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or\n"
          "   `AWS_CONTAINER_AUTHORIZATION_TOKEN`.\n"
          "5. The shared files: the profile (`--profile`, `AWS_PROFILE`, else `default`) in\n"
          "   `~/.aws/credentials` (`[NAME]`, or `AWS_SHARED_CREDENTIALS_FILE`), then in\n"
          "   `~/.aws/config` (`[profile NAME]`, or `AWS_CONFIG_FILE`). A profile named\n"
          "   explicitly must exist. Static keys, or `role_arn` with `source_profile` or\n"
          "   `credential_source` (STS AssumeRole) or with `web_identity_token_file`.\n"
          "6. EC2 instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`; endpoint\n"
          "   `AWS_EC2_METADATA_SERVICE_ENDPOINT`. Without IMDS it gives up within about 2 s.\n\n"
          "STS is called at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else\n"
          "`https://sts.REGION.amazonaws.com` for `--region`. Temporary credentials are refreshed\n"
          "five minutes before they expire. See docs/kinesis-client.md.\n\n"
          "| key | default | environment | dlt key | commands | description |\n"
          "|---|---|---|---|---|---|\n",
          f);
    for (int i = 0; i < O_COUNT; i++)
        if (!opts[i].name)
            md_option_row(f, &opts[i]);

    fputs("\n## Example\n\n"
          "`.dlt/config.toml`:\n\n"
          "```toml\n"
          "[sources.kinesis]\n"
          "stream_name = \"clickstream\"\n"
          "chunk_size = 5000\n"
          "```\n\n"
          "`.dlt/secrets.toml`:\n\n"
          "```toml\n"
          "[sources.kinesis.credentials]\n"
          "aws_access_key_id = \"AKIA...\"\n"
          "aws_secret_access_key = \"...\"\n"
          "region_name = \"eu-central-1\"\n\n"
          "[destination.postgres.credentials]\n"
          "database = \"analytics\"\n"
          "username = \"loader\"\n"
          "password = \"...\"\n"
          "host = \"db.internal\"\n"
          "port = 5432\n"
          "```\n\n"
          "Then `kinesis2pg load` loads `clickstream` into `kinesis.clickstream`;\n"
          "`SOURCES__KINESIS__STREAM_NAME=orders kinesis2pg load` or\n"
          "`kinesis2pg load --stream orders` loads another stream with the same credentials.\n",
          f);
}

/* ------------------------------------------------------------------------------------------ */
/* Dump                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static const char *source_name(int s)
{
    switch (s) {
    case K2P_SRC_DERIVED:
        return "derived";
    case K2P_SRC_DLT_CONFIG:
        return "dlt config.toml";
    case K2P_SRC_DLT_SECRETS:
        return "dlt secrets.toml";
    case K2P_SRC_DLT_ENV:
        return "dlt env";
    case K2P_SRC_ENV:
        return "env";
    case K2P_SRC_FLAG:
        return "flag";
    default:
        return "default";
    }
}

static void dump_conninfo(FILE *f, const char *ci)
{
    char *msg = NULL;
    PQconninfoOption *o = PQconninfoParse(ci, &msg), *p;
    if (msg)
        PQfreemem(msg);
    if (!o) {
        fputs("(set, unparsable)", f);
        return;
    }
    int n = 0;
    for (p = o; p->keyword; p++) {
        if (!p->val || !*p->val)
            continue;
        if (strcmp(p->keyword, "password") == 0)
            fprintf(f, "%spassword=****", n++ ? " " : "");
        else
            fprintf(f, "%s%s=%s", n++ ? " " : "", p->keyword, p->val);
    }
    PQconninfoFree(o);
}

void k2p_config_dump(const k2p_config *cfg, FILE *f)
{
    char ts[40];
    fprintf(f, "command = %s\n", k2p_command_name(cfg->command));
    for (int i = 0; i < O_COUNT; i++) {
        const opt *o = &opts[i];
        const void *field = (const char *)cfg + o->off;
        if (o->type == T_HELP || o->type == T_VERSION)
            continue;
        fprintf(f, "%s = ", k2p_config_option_name((size_t)i));
        switch (o->type) {
        case T_STRING: {
            const char *s = *(char *const *)field;
            if (!s)
                fputs("(unset)", f);
            else if (i == O_PG)
                dump_conninfo(f, s);
            else if (i == O_KEY_ID)
                fprintf(f, "****%s", strlen(s) > 8 ? s + strlen(s) - 4 : "");
            else if (o->flags & F_SECRET)
                fputs("****", f);
            else
                fputs(s, f);
            break;
        }
        case T_INT:
            fprintf(f, "%lld", (long long)*(const int64_t *)field);
            break;
        case T_BOOL:
            fputs(*(const bool *)field ? "true" : "false", f);
            break;
        case T_ENUM: {
            int v;
            memcpy(&v, field, sizeof v);
            fputs(o->choices[v], f);
            break;
        }
        case T_FROM: {
            const k2p_from *fr = field;
            if (fr->kind == K2P_FROM_LATEST)
                fputs("latest", f);
            else if (fr->kind == K2P_FROM_TRIM_HORIZON)
                fputs("trim_horizon", f);
            else
                fputs(k2p_format_rfc3339(fr->at_us, ts, sizeof ts), f);
            break;
        }
        default:
            break;
        }
        fprintf(f, "  (%s)\n", source_name(cfg->source[i]));
    }
}

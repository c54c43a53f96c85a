/* mock_ctl.c - fault configuration, the seeded fault RNG, and the /stats and /control JSON.
 *
 * Threading: the configuration is copied under `lock`; counters are relaxed atomics (they
 * are statistics: nothing is ordered by them). The RNG is a counter: draw i is
 * mix(seed + i), so a single-connection client sees the same faults on every run with the
 * same seed; with several connections the order of draws follows the order of requests.
 */
#include "mock_ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[MOCK_OP_COUNT] = {
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "GetShardIterator",
    "GetRecords",
    "PutRecord",
    "PutRecords",
    "SplitShard",
    "MergeShards",
    "RegisterStreamConsumer",
    "DescribeStreamConsumer",
    "ListStreamConsumers",
    "DeregisterStreamConsumer",
    "SubscribeToShard",
    "Unknown",
};

static const char *const ratio_keys[MOCK_F_DRAWN] = {"throttle", "error500", "reset", "truncate",
                                                     "expire"};

static const char *const stat_fault_names[MOCK_S_COUNT] = {
    "throttle",    "error500",    "reset",        "truncate", "expire",    "put_fail",
    "limit_calls", "limit_bytes", "iterator_ttl", "latency",  "sub_reset", "sub_error",
};

#define ALL_OPS ((1u << MOCK_OP_COUNT) - 1)

const char *mock_op_name(mock_op op)
{
    return (unsigned)op < MOCK_OP_COUNT ? op_names[op] : "Unknown";
}

mock_op mock_op_from_name(const char *s, size_t n)
{
    for (int i = 0; i < MOCK_OP_UNKNOWN; i++) {
        if (strlen(op_names[i]) == n && memcmp(op_names[i], s, n) == 0)
            return (mock_op)i;
    }
    return MOCK_OP_UNKNOWN;
}

static void cfg_defaults(mock_fault_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->iterator_ttl_ms = 300000;
    cfg->ops_mask = ALL_OPS;
    cfg->subscription_ms = 300000;
    cfg->takeover_ms = 5000;
}

int mock_ctl_init(mock_ctl *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    if (pthread_mutex_init(&c->lock, NULL))
        return K2P_ENOMEM;
    cfg_defaults(&c->cfg);
    atomic_init(&c->seed, seed);
    atomic_init(&c->draws, 0);
    atomic_init(&c->reshard_fired, 0);
    return 0;
}

void mock_ctl_deinit(mock_ctl *c)
{
    pthread_mutex_destroy(&c->lock);
}

void mock_ctl_snapshot(mock_ctl *c, mock_fault_cfg *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->cfg;
    pthread_mutex_unlock(&c->lock);
}

double mock_ctl_uniform(mock_ctl *c)
{
    uint64_t i = atomic_fetch_add_explicit(&c->draws, 1, memory_order_relaxed);
    uint64_t s = atomic_load_explicit(&c->seed, memory_order_relaxed);
    return (double)(mock_mix64(s * 0x9e3779b97f4a7c15ull + i) >> 11) * 0x1.0p-53;
}

mock_fault mock_ctl_decide(mock_ctl *c, const mock_fault_cfg *cfg, mock_op op)
{
    double sum = 0, u;
    if (!(cfg->ops_mask & (1u << op)))
        return MOCK_F_NONE;
    for (int i = 0; i < MOCK_F_DRAWN; i++)
        sum += cfg->ratio[i];
    if (sum <= 0)
        return MOCK_F_NONE;
    u = mock_ctl_uniform(c);
    sum = 0;
    for (int i = 0; i < MOCK_F_DRAWN; i++) {
        sum += cfg->ratio[i];
        if (u < sum) {
            if (i == MOCK_F_EXPIRE && op != MOCK_OP_GET_RECORDS)
                return MOCK_F_NONE;
            mock_stat_add(&c->stats.faults[i], 1); /* mock_fault and mock_stat_fault agree */
            return (mock_fault)i;
        }
    }
    return MOCK_F_NONE;
}

/* ---- setting knobs ------------------------------------------------------------------------ */

/* Side effects of a change, applied only when the whole change is valid. */
typedef struct ctl_effects {
    bool set_seed, reset_stats, arm_reshard;
    uint64_t seed;
} ctl_effects;

static int parse_ratio(const char *key, const char *v, double *out, k2p_err *err)
{
    char *end;
    double d;
    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < 0 || d > 1)
        return k2p_err_set(err, K2P_EINVAL, "%s must be a number in [0, 1], not '%s'", key, v);
    *out = d;
    return 0;
}

static int parse_int(const char *key, const char *v, int64_t min, int64_t *out, k2p_err *err)
{
    /* JSON numbers may arrive as "5.0": accept a whole-valued decimal too. */
    if (k2p_parse_i64(v, out)) {
        char *end;
        double d;
        errno = 0;
        d = strtod(v, &end);
        if (errno || end == v || *end || d != floor(d) || fabs(d) > 9e15)
            return k2p_err_set(err, K2P_EINVAL, "%s must be a whole number, not '%s'", key, v);
        *out = (int64_t)d;
    }
    if (*out < min)
        return k2p_err_set(err, K2P_EINVAL, "%s must be >= %lld, not '%s'", key, (long long)min, v);
    return 0;
}

static int parse_bool(const char *key, const char *v, bool *out, k2p_err *err)
{
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "no")) {
        *out = false;
        return 0;
    }
    return k2p_err_set(err, K2P_EINVAL, "%s must be true or false, not '%s'", key, v);
}

static int parse_ops(const char *v, uint32_t *mask, k2p_err *err)
{
    uint32_t m = 0;
    const char *p = v;
    if (!strcmp(v, "all") || !strcmp(v, "*")) {
        *mask = ALL_OPS;
        return 0;
    }
    while (*p) {
        size_t n = strcspn(p, ",");
        mock_op op = mock_op_from_name(p, n);
        if (n && op == MOCK_OP_UNKNOWN)
            return k2p_err_set(err, K2P_EINVAL, "fault_ops: '%.*s' is not an operation", (int)n, p);
        if (n)
            m |= 1u << op;
        p += n;
        if (*p == ',')
            p++;
    }
    *mask = m;
    return 0;
}

static int copy_field(const char *key, const char *v, char *dst, size_t cap, k2p_err *err)
{
    size_t n = strlen(v);
    if (n >= cap)
        return k2p_err_set(err, K2P_EINVAL, "%s: '%s' is too long", key, v);
    memcpy(dst, v, n + 1);
    return 0;
}

/* Applies one key to cfg (a copy) and fx. Caller holds c->lock. */
static int cfg_set(mock_fault_cfg *cfg, ctl_effects *fx, const char *key, const char *v,
                   k2p_err *err)
{
    int64_t i64;
    double sum = 0;
    int rc;

    for (int i = 0; i < MOCK_F_DRAWN; i++) {
        if (!strcmp(key, ratio_keys[i])) {
            if ((rc = parse_ratio(key, v, &cfg->ratio[i], err)))
                return rc;
            for (int j = 0; j < MOCK_F_DRAWN; j++)
                sum += cfg->ratio[j];
            if (sum > 1.0 + 1e-9)
                return k2p_err_set(err, K2P_EINVAL,
                                   "throttle + error500 + reset + truncate + expire must not "
                                   "exceed 1 (now %g)",
                                   sum);
            return 0;
        }
    }
    if (!strcmp(key, "put_fail"))
        return parse_ratio(key, v, &cfg->put_fail, err);
    if (!strcmp(key, "sub_reset") || !strcmp(key, "sub_error")) {
        double *dst = !strcmp(key, "sub_reset") ? &cfg->sub_reset : &cfg->sub_error;
        if ((rc = parse_ratio(key, v, dst, err)))
            return rc;
        if (cfg->sub_reset + cfg->sub_error > 1.0 + 1e-9)
            return k2p_err_set(err, K2P_EINVAL, "sub_reset + sub_error must not exceed 1");
        return 0;
    }
    if (!strcmp(key, "subscription_ms"))
        return parse_int(key, v, 1, &cfg->subscription_ms, err);
    if (!strcmp(key, "consumer_delay_ms"))
        return parse_int(key, v, 0, &cfg->consumer_delay_ms, err);
    if (!strcmp(key, "takeover_ms"))
        return parse_int(key, v, 0, &cfg->takeover_ms, err);
    if (!strcmp(key, "latency_ms"))
        return parse_int(key, v, 0, &cfg->latency_ms, err);
    if (!strcmp(key, "iterator_ttl_ms"))
        return parse_int(key, v, 1, &cfg->iterator_ttl_ms, err);
    if (!strcmp(key, "limits"))
        return parse_bool(key, v, &cfg->limits, err);
    if (!strcmp(key, "fault_ops"))
        return parse_ops(v, &cfg->ops_mask, err);
    if (!strcmp(key, "seed")) {
        if ((rc = parse_int(key, v, 0, &i64, err)))
            return rc;
        fx->set_seed = true;
        fx->seed = (uint64_t)i64;
        return 0;
    }
    if (!strcmp(key, "reshard_at")) {
        if ((rc = parse_int(key, v, 0, &cfg->reshard_at, err)))
            return rc;
        fx->arm_reshard = true;
        return 0;
    }
    if (!strcmp(key, "reshard_stream"))
        return copy_field(key, v, cfg->reshard_stream, sizeof cfg->reshard_stream, err);
    if (!strcmp(key, "split")) {
        const char *colon = strchr(v, ':');
        size_t n = colon ? (size_t)(colon - v) : strlen(v);
        mock_u128 hk;
        if (n == 0 || n >= sizeof cfg->split_shard)
            return k2p_err_set(err, K2P_EINVAL, "split: '%s' is not SHARD or SHARD:HASHKEY", v);
        if (colon && mock_u128_parse(colon + 1, strlen(colon + 1), &hk))
            return k2p_err_set(err, K2P_EINVAL, "split: '%s': bad hash key", v);
        memcpy(cfg->split_shard, v, n);
        cfg->split_shard[n] = '\0';
        if ((rc = copy_field(key, colon ? colon + 1 : "", cfg->split_hash, sizeof cfg->split_hash,
                             err)))
            return rc;
        cfg->merge_a[0] = cfg->merge_b[0] = '\0';
        return 0;
    }
    if (!strcmp(key, "merge")) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : 0;
        if (!comma || n == 0 || n >= sizeof cfg->merge_a || !comma[1] ||
            strlen(comma + 1) >= sizeof cfg->merge_b)
            return k2p_err_set(err, K2P_EINVAL, "merge: '%s' is not SHARD,SHARD", v);
        memcpy(cfg->merge_a, v, n);
        cfg->merge_a[n] = '\0';
        memcpy(cfg->merge_b, comma + 1, strlen(comma + 1) + 1);
        cfg->split_shard[0] = cfg->split_hash[0] = '\0';
        return 0;
    }
    if (!strcmp(key, "reset_stats")) {
        fx->reset_stats = true;
        return 0;
    }
    if (!strcmp(key, "clear")) {
        cfg_defaults(cfg);
        return 0;
    }
    return k2p_err_set(err, K2P_EINVAL, "unknown control key '%s'", key);
}

static void reset_stats(mock_stats *s)
{
    for (int i = 0; i < MOCK_OP_COUNT; i++)
        atomic_store_explicit(&s->ops[i], 0, memory_order_relaxed);
    for (int i = 0; i < MOCK_S_COUNT; i++)
        atomic_store_explicit(&s->faults[i], 0, memory_order_relaxed);
    atomic_store_explicit(&s->http_requests, 0, memory_order_relaxed);
    atomic_store_explicit(&s->status_4xx, 0, memory_order_relaxed);
    atomic_store_explicit(&s->status_5xx, 0, memory_order_relaxed);
    atomic_store_explicit(&s->records_served, 0, memory_order_relaxed);
    atomic_store_explicit(&s->bytes_served, 0, memory_order_relaxed);
    atomic_store_explicit(&s->records_put, 0, memory_order_relaxed);
    atomic_store_explicit(&s->reshards, 0, memory_order_relaxed);
    atomic_store_explicit(&s->reshard_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->conns_accepted, 0, memory_order_relaxed);
    atomic_store_explicit(&s->conns_h2, 0, memory_order_relaxed);
    atomic_store_explicit(&s->subs_started, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sub_events, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sub_in_use, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sub_takeovers, 0, memory_order_relaxed);
}

static void commit(mock_ctl *c, const mock_fault_cfg *cfg, const ctl_effects *fx)
{
    c->cfg = *cfg;
    if (fx->set_seed) {
        atomic_store_explicit(&c->seed, fx->seed, memory_order_relaxed);
        atomic_store_explicit(&c->draws, 0, memory_order_relaxed);
    }
    if (fx->reset_stats)
        reset_stats(&c->stats);
    if (fx->arm_reshard)
        atomic_store_explicit(&c->reshard_fired, 0, memory_order_relaxed);
}

int mock_ctl_set(mock_ctl *c, const char *key, const char *value, k2p_err *err)
{
    mock_fault_cfg cfg;
    ctl_effects fx = {0};
    int rc;
    pthread_mutex_lock(&c->lock);
    cfg = c->cfg;
    rc = cfg_set(&cfg, &fx, key, value, err);
    if (!rc)
        commit(c, &cfg, &fx);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int mock_ctl_apply_json(mock_ctl *c, const char *body, size_t len, k2p_err *err)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *it;
    mock_fault_cfg cfg;
    ctl_effects fx = {0};
    int rc = 0;

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_EINVAL, "the control body must be a JSON object");
    }
    pthread_mutex_lock(&c->lock);
    cfg = c->cfg;
    cJSON_ArrayForEach(it, root)
    {
        char num[64];
        const char *v;
        if (cJSON_IsString(it))
            v = it->valuestring;
        else if (cJSON_IsBool(it))
            v = cJSON_IsTrue(it) ? "1" : "0";
        else if (cJSON_IsNumber(it)) {
            snprintf(num, sizeof num, "%.17g", it->valuedouble);
            v = num;
        } else {
            rc = k2p_err_set(err, K2P_EINVAL, "control key '%s' needs a string, number or bool",
                             it->string ? it->string : "?");
            break;
        }
        if ((rc = cfg_set(&cfg, &fx, it->string ? it->string : "", v, err)))
            break;
    }
    if (!rc)
        commit(c, &cfg, &fx);
    pthread_mutex_unlock(&c->lock);
    cJSON_Delete(root);
    return rc;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (NUL-terminated, room for n + 1); '+' is a space. */
static void url_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
}

int mock_ctl_apply_query(mock_ctl *c, const char *q, size_t len, k2p_err *err)
{
    mock_fault_cfg cfg;
    ctl_effects fx = {0};
    size_t i = 0;
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    cfg = c->cfg;
    while (i < len && !rc) {
        size_t n = 0, eq;
        char key[64], val[512];
        while (i + n < len && q[i + n] != '&')
            n++;
        for (eq = 0; eq < n && q[i + eq] != '='; eq++)
            ;
        if (n && (eq >= sizeof key || n - eq >= sizeof val)) {
            rc = k2p_err_set(err, K2P_EINVAL, "control parameter too long");
            break;
        }
        if (n) {
            url_decode(q + i, eq, key);
            url_decode(eq < n ? q + i + eq + 1 : "", eq < n ? n - eq - 1 : 0, val);
            rc = cfg_set(&cfg, &fx, key, eq < n ? val : "1", err);
        }
        i += n + 1;
    }
    if (!rc)
        commit(c, &cfg, &fx);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- JSON out ----------------------------------------------------------------------------- */

static uint64_t ld(atomic_uint_least64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

int mock_ctl_config_json(mock_ctl *c, k2p_buf *out)
{
    mock_fault_cfg cfg;
    int rc = 0;
    bool first = true;

    mock_ctl_snapshot(c, &cfg);
    rc |= k2p_buf_putc(out, '{');
    for (int i = 0; i < MOCK_F_DRAWN; i++)
        rc |= k2p_buf_printf(out, "\"%s\":%g,", ratio_keys[i], cfg.ratio[i]);
    rc |= k2p_buf_printf(out,
                         "\"put_fail\":%g,\"latency_ms\":%lld,\"iterator_ttl_ms\":%lld,"
                         "\"limits\":%s,\"seed\":%llu,\"fault_ops\":\"",
                         cfg.put_fail, (long long)cfg.latency_ms, (long long)cfg.iterator_ttl_ms,
                         cfg.limits ? "true" : "false", (unsigned long long)ld(&c->seed));
    if (cfg.ops_mask == ALL_OPS) {
        rc |= k2p_buf_puts(out, "all");
    } else {
        for (int i = 0; i < MOCK_OP_UNKNOWN; i++) {
            if (cfg.ops_mask & (1u << i)) {
                rc |= k2p_buf_printf(out, "%s%s", first ? "" : ",", op_names[i]);
                first = false;
            }
        }
    }
    rc |= k2p_buf_printf(out, "\",\"reshard_at\":%lld,\"reshard_fired\":%s,\"reshard_stream\":",
                         (long long)cfg.reshard_at,
                         atomic_load_explicit(&c->reshard_fired, memory_order_relaxed) ? "true"
                                                                                       : "false");
    rc |= k2p_buf_put_json_str(out, cfg.reshard_stream, strlen(cfg.reshard_stream));
    rc |= k2p_buf_puts(out, ",\"split\":");
    if (cfg.split_shard[0]) {
        char sp[80];
        snprintf(sp, sizeof sp, "%s%s%s", cfg.split_shard, cfg.split_hash[0] ? ":" : "",
                 cfg.split_hash);
        rc |= k2p_buf_put_json_str(out, sp, strlen(sp));
    } else {
        rc |= k2p_buf_puts(out, "null");
    }
    rc |= k2p_buf_puts(out, ",\"merge\":");
    if (cfg.merge_a[0])
        rc |= k2p_buf_printf(out, "\"%s,%s\"", cfg.merge_a, cfg.merge_b);
    else
        rc |= k2p_buf_puts(out, "null");
    rc |= k2p_buf_printf(out,
                         ",\"subscription_ms\":%lld,\"consumer_delay_ms\":%lld,"
                         "\"takeover_ms\":%lld,\"sub_reset\":%g,\"sub_error\":%g}",
                         (long long)cfg.subscription_ms, (long long)cfg.consumer_delay_ms,
                         (long long)cfg.takeover_ms, cfg.sub_reset, cfg.sub_error);
    return rc ? K2P_ENOMEM : 0;
}

int mock_ctl_stats_json(mock_ctl *c, k2p_buf *out)
{
    mock_stats *s = &c->stats;
    uint64_t total = 0;
    int rc = 0;

    for (int i = 0; i < MOCK_OP_COUNT; i++)
        total += ld(&s->ops[i]);
    rc |= k2p_buf_printf(out, "{\"requests\":{\"total\":%llu", (unsigned long long)total);
    for (int i = 0; i < MOCK_OP_COUNT; i++)
        rc |= k2p_buf_printf(out, ",\"%s\":%llu", op_names[i], (unsigned long long)ld(&s->ops[i]));
    rc |= k2p_buf_puts(out, "},\"faults\":{");
    for (int i = 0; i < MOCK_S_COUNT; i++)
        rc |= k2p_buf_printf(out, "%s\"%s\":%llu", i ? "," : "", stat_fault_names[i],
                             (unsigned long long)ld(&s->faults[i]));
    rc |= k2p_buf_printf(
        out,
        "},\"http_requests\":%llu,\"status_4xx\":%llu,\"status_5xx\":%llu,"
        "\"records_served\":%llu,\"bytes_served\":%llu,\"records_put\":%llu,"
        "\"reshards\":%llu,\"reshard_failures\":%llu,"
        "\"connections\":{\"accepted\":%llu,\"h2\":%llu,\"open\":%lld},"
        "\"subscriptions\":{\"started\":%llu,\"open\":%lld,\"events\":%llu,\"in_use\":%llu,"
        "\"takeovers\":%llu}}",
        (unsigned long long)ld(&s->http_requests), (unsigned long long)ld(&s->status_4xx),
        (unsigned long long)ld(&s->status_5xx), (unsigned long long)ld(&s->records_served),
        (unsigned long long)ld(&s->bytes_served), (unsigned long long)ld(&s->records_put),
        (unsigned long long)ld(&s->reshards), (unsigned long long)ld(&s->reshard_failures),
        (unsigned long long)ld(&s->conns_accepted), (unsigned long long)ld(&s->conns_h2),
        (long long)atomic_load_explicit(&s->conns_open, memory_order_relaxed),
        (unsigned long long)ld(&s->subs_started),
        (long long)atomic_load_explicit(&s->subs_open, memory_order_relaxed),
        (unsigned long long)ld(&s->sub_events), (unsigned long long)ld(&s->sub_in_use),
        (unsigned long long)ld(&s->sub_takeovers));
    return rc ? K2P_ENOMEM : 0;
}

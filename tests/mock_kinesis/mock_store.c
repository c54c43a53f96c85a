/* mock_store.c - mock_kinesis's streams, shards and pre-encoded records; sequence numbers,
 * hash keys and opaque tokens.
 *
 * Threading: see mock_store.h. Everything that touches streams expects the caller to hold
 * st->lock in the mode its comment says; the helpers at the bottom are pure.
 */
#include "mock_store.h"

#include <mbedtls/md5.h>
#include <mbedtls/version.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"

#define ARENA_BLOCK ((size_t)32 << 20)

/* ---- misc --------------------------------------------------------------------------------- */

uint64_t mock_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int64_t mock_wall_ms(void)
{
    return k2p_wall_us() / 1000;
}

bool mock_stream_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MOCK_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* ---- 128-bit hash keys -------------------------------------------------------------------- */

int mock_u128_parse(const char *s, size_t n, mock_u128 *out)
{
    mock_u128 v = 0;
    if (n == 0 || n > 39)
        return K2P_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return K2P_EINVAL;
        d = (unsigned)(s[i] - '0');
        if (v > (MOCK_U128_MAX - d) / 10)
            return K2P_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

size_t mock_u128_format(mock_u128 v, char out[40])
{
    char tmp[40];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

mock_u128 mock_hash_key(const char *pkey, size_t n)
{
    unsigned char md[16];
    mock_u128 v = 0;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    mbedtls_md5((const unsigned char *)pkey, n, md);
#else
    mbedtls_md5_ret((const unsigned char *)pkey, n, md);
#endif
    for (int i = 0; i < 16; i++)
        v = v << 8 | md[i];
    return v;
}

/* ---- sequence numbers --------------------------------------------------------------------- */

/* Writes v as exactly `width` decimal digits (zero-padded; v must fit). */
static char *put_digits(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* Writes v in decimal without padding (JSON numbers have no leading zeros). */
static char *put_uint(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

void mock_seq_format(const mock_shard *sh, uint64_t index, int64_t arrival_ms,
                     char out[MOCK_SEQ_LEN + 1])
{
    /* Every field is clamped to its width, so the result is always 56 digits. Hand-made
     * rather than snprintf: this runs once per record put or preloaded. */
    int64_t cs = K2P_MIN(K2P_MAX(sh->create_ms / 1000, 0), 9999999999LL);
    int64_t am = K2P_MIN(K2P_MAX(arrival_ms, 0), 9999999999999LL);
    char *p = out;
    *p++ = '4';
    *p++ = '9';
    p = put_digits(p, (uint64_t)cs, 10);
    p = put_digits(p, sh->ix % 100000000u, 8);
    p = put_digits(p, K2P_MIN(index, MOCK_SEQ_INDEX_END), 20);
    p = put_digits(p, 0, 3);
    p = put_digits(p, (uint64_t)am, 13);
    *p = '\0';
}

static uint64_t digits_u64(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

int mock_seq_parse(const char *s, size_t n, mock_seq_info *out)
{
    /* The 20-digit index field starts with 0: indexes stay below 10^19 (uint64_t). */
    if (n != MOCK_SEQ_LEN || s[0] != '4' || s[1] != '9' || s[20] != '0')
        return K2P_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return K2P_EINVAL;
    }
    out->create_s = (int64_t)digits_u64(s + 2, 10);
    out->shard_ix = (uint32_t)digits_u64(s + 12, 8);
    out->index = digits_u64(s + 20, 20);
    return 0;
}

void mock_shard_start_seq(const mock_shard *sh, char out[MOCK_SEQ_LEN + 1])
{
    mock_seq_format(sh, 0, sh->create_ms, out);
}

void mock_shard_end_seq(const mock_shard *sh, char out[MOCK_SEQ_LEN + 1])
{
    mock_seq_format(sh, MOCK_SEQ_INDEX_END, sh->close_ms, out);
}

/* ---- consumers ---------------------------------------------------------------------------- */

mock_consumer_state mock_consumer_status(const mock_consumer *c, int64_t now_ms, int64_t delay_ms)
{
    if (c->delete_ms)
        return now_ms >= c->delete_ms + delay_ms ? MOCK_CONSUMER_GONE : MOCK_CONSUMER_DELETING;
    return now_ms >= c->create_ms + delay_ms ? MOCK_CONSUMER_ACTIVE : MOCK_CONSUMER_CREATING;
}

const char *mock_consumer_state_name(mock_consumer_state st)
{
    static const char *const names[] = {"CREATING", "ACTIVE", "DELETING", "GONE"};
    return names[st];
}

void mock_stream_purge_consumers(mock_stream *s, int64_t now_ms, int64_t delay_ms)
{
    size_t j = 0;
    for (size_t i = 0; i < s->n_consumers; i++) {
        if (mock_consumer_status(&s->consumers[i], now_ms, delay_ms) != MOCK_CONSUMER_GONE)
            s->consumers[j++] = s->consumers[i];
    }
    s->n_consumers = j;
}

mock_consumer *mock_stream_find_consumer(mock_stream *s, const char *name, int64_t now_ms,
                                         int64_t delay_ms)
{
    for (size_t i = 0; i < s->n_consumers; i++) {
        mock_consumer *c = &s->consumers[i];
        if (strcmp(c->name, name) == 0 &&
            mock_consumer_status(c, now_ms, delay_ms) != MOCK_CONSUMER_GONE)
            return c;
    }
    return NULL;
}

int mock_stream_add_consumer(mock_stream *s, const char *name, int64_t now_ms, int64_t delay_ms,
                             mock_consumer **out)
{
    mock_consumer *c;
    mock_stream_purge_consumers(s, now_ms, delay_ms);
    if (mock_stream_find_consumer(s, name, now_ms, delay_ms))
        return K2P_EINUSE;
    if (s->n_consumers == MOCK_CONSUMERS_MAX)
        return K2P_ENOMEM;
    c = &s->consumers[s->n_consumers++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->create_ms = now_ms;
    /* ARNs end in the creation second; a consumer registered again gets a new ARN. */
    c->arn_ts = K2P_MAX(now_ms / 1000, s->last_arn_ts + 1);
    s->last_arn_ts = c->arn_ts;
    *out = c;
    return 0;
}

void mock_consumer_arn(const mock_stream *s, const mock_consumer *c, char *out, size_t cap)
{
    snprintf(out, cap,
             "arn:aws:kinesis:" MOCK_REGION ":" MOCK_ACCOUNT ":stream/%s/consumer/%s:%lld", s->name,
             c->name, (long long)c->arn_ts);
}

int mock_consumer_arn_parse(const char *arn, char stream[MOCK_NAME_MAX + 1],
                            char consumer[MOCK_NAME_MAX + 1], int64_t *ts)
{
    const char *st = strstr(arn, ":stream/"), *cn, *colon;
    size_t sl, cl;
    if (!st)
        return K2P_EINVAL;
    st += 8;
    cn = strstr(st, "/consumer/");
    if (!cn)
        return K2P_EINVAL;
    sl = (size_t)(cn - st);
    cn += 10;
    colon = strrchr(cn, ':');
    if (!colon || colon == cn || !colon[1])
        return K2P_EINVAL;
    cl = (size_t)(colon - cn);
    if (sl == 0 || sl > MOCK_NAME_MAX || cl > MOCK_NAME_MAX)
        return K2P_EINVAL;
    if (k2p_parse_i64(colon + 1, ts) || *ts < 0)
        return K2P_EINVAL;
    memcpy(stream, st, sl);
    stream[sl] = '\0';
    memcpy(consumer, cn, cl);
    consumer[cl] = '\0';
    return mock_stream_name_valid(stream) && mock_stream_name_valid(consumer) ? 0 : K2P_EINVAL;
}

/* ---- store -------------------------------------------------------------------------------- */

int mock_store_init(mock_store *st, uint64_t seed)
{
    pthread_rwlockattr_t a;
    memset(st, 0, sizeof *st);
    st->next_gen = 1;
    st->mac_key = mock_mix64(seed ^ 0x6d6f636b6b696e65ull);
    if (pthread_rwlockattr_init(&a))
        return K2P_ENOMEM;
    /* Writers (PutRecords, resharding) must not starve behind a stream of GetRecords. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&st->lock, &a)) {
        pthread_rwlockattr_destroy(&a);
        return K2P_ENOMEM;
    }
    pthread_rwlockattr_destroy(&a);
    return 0;
}

static void shard_free(mock_shard *sh)
{
    if (!sh)
        return;
    pthread_mutex_destroy(&sh->lim_lock);
    free(sh->recs);
    free(sh);
}

static void stream_free(mock_stream *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_shards; i++)
        shard_free(s->shards[i]);
    free(s->shards);
    for (size_t i = 0; i < s->n_blocks; i++)
        free(s->blocks[i]);
    free(s->blocks);
    k2p_buf_deinit(&s->scratch);
    free(s);
}

void mock_store_deinit(mock_store *st)
{
    for (size_t i = 0; i < st->n; i++)
        stream_free(st->streams[i]);
    free(st->streams);
    st->streams = NULL;
    st->n = st->cap = 0;
    pthread_rwlock_destroy(&st->lock);
}

mock_stream *mock_store_find(const mock_store *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++) {
        if (strcmp(st->streams[i]->name, name) == 0)
            return st->streams[i];
    }
    return NULL;
}

/* Adds a new shard to s; NULL on OOM. @locks write. */
static mock_shard *shard_add(mock_stream *s, mock_u128 lo, mock_u128 hi, int parent, int adjacent,
                             int64_t create_ms)
{
    mock_shard *sh;
    if (s->n_shards == s->cap_shards) {
        size_t nc = s->cap_shards ? s->cap_shards * 2 : 8;
        mock_shard **ns = realloc(s->shards, nc * sizeof *ns);
        if (!ns)
            return NULL;
        s->shards = ns;
        s->cap_shards = nc;
    }
    sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    if (pthread_mutex_init(&sh->lim_lock, NULL)) {
        free(sh);
        return NULL;
    }
    sh->ix = (uint32_t)s->n_shards;
    snprintf(sh->id, sizeof sh->id, "shardId-%012u", (unsigned)sh->ix);
    sh->parent = parent;
    sh->adjacent = adjacent;
    sh->hash_lo = lo;
    sh->hash_hi = hi;
    sh->create_ms = create_ms;
    s->shards[s->n_shards++] = sh;
    return sh;
}

int mock_store_create(mock_store *st, const char *name, int shards, int64_t create_ms,
                      mock_stream **out)
{
    mock_stream *s;
    mock_u128 width;

    if (mock_store_find(st, name))
        return K2P_EINUSE;
    if (st->n == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 8;
        mock_stream **ns = realloc(st->streams, nc * sizeof *ns);
        if (!ns)
            return K2P_ENOMEM;
        st->streams = ns;
        st->cap = nc;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        return K2P_ENOMEM;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->gen = st->next_gen++;
    s->create_ms = create_ms;
    k2p_buf_init(&s->scratch, 16u << 20);
    /* Even split of [0, 2^128) as AWS does: width = floor(2^128 / shards). */
    width = MOCK_U128_MAX / (unsigned)shards;
    if (MOCK_U128_MAX % (unsigned)shards == (unsigned)shards - 1)
        width++;
    for (int i = 0; i < shards; i++) {
        mock_u128 lo = width * (unsigned)i;
        mock_u128 hi = i == shards - 1 ? MOCK_U128_MAX : width * (unsigned)(i + 1) - 1;
        if (!shard_add(s, lo, hi, -1, -1, create_ms)) {
            stream_free(s);
            return K2P_ENOMEM;
        }
    }
    st->streams[st->n++] = s;
    if (out)
        *out = s;
    return 0;
}

int mock_store_delete(mock_store *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++) {
        if (strcmp(st->streams[i]->name, name) == 0) {
            stream_free(st->streams[i]);
            st->streams[i] = st->streams[--st->n];
            return 0;
        }
    }
    return K2P_ENOTFOUND;
}

/* ---- streams and shards ------------------------------------------------------------------- */

mock_shard *mock_stream_route(const mock_stream *s, mock_u128 key)
{
    for (size_t i = 0; i < s->n_shards; i++) {
        mock_shard *sh = s->shards[i];
        if (!sh->close_ms && key >= sh->hash_lo && key <= sh->hash_hi)
            return sh;
    }
    return NULL;
}

int mock_stream_resolve_shard(const mock_stream *s, const char *id)
{
    const char *d = strncmp(id, "shardId-", 8) == 0 ? id + 8 : id;
    size_t n = strlen(d);
    uint64_t v = 0;
    if (n == 0 || n > 12)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    return v < s->n_shards ? (int)v : -1;
}

int mock_stream_open_shards(const mock_stream *s)
{
    int n = 0;
    for (size_t i = 0; i < s->n_shards; i++)
        n += !s->shards[i]->close_ms;
    return n;
}

/* Copies a fragment into the arena. 0 or K2P_ENOMEM. @locks write. */
static int arena_add(mock_stream *s, const char *p, size_t n, uint32_t *block, uint32_t *off)
{
    if (n > UINT32_MAX)
        return K2P_ENOMEM;
    if (!s->n_blocks || s->last_used + n > s->last_cap) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        char *b;
        if (s->n_blocks == s->cap_blocks) {
            size_t nc = s->cap_blocks ? s->cap_blocks * 2 : 16;
            char **nb = realloc(s->blocks, nc * sizeof *nb);
            if (!nb)
                return K2P_ENOMEM;
            s->blocks = nb;
            s->cap_blocks = nc;
        }
        if (s->n_blocks >= UINT32_MAX || !(b = malloc(cap)))
            return K2P_ENOMEM;
        s->blocks[s->n_blocks++] = b;
        s->last_used = 0;
        s->last_cap = cap;
    }
    memcpy(s->blocks[s->n_blocks - 1] + s->last_used, p, n);
    *block = (uint32_t)(s->n_blocks - 1);
    *off = (uint32_t)s->last_used;
    s->last_used += n;
    return 0;
}

int mock_stream_append(mock_stream *s, mock_shard *sh, const char *b64, size_t b64_len,
                       size_t data_len, const char *pkey, size_t pkey_len, int64_t arrival_ms,
                       char seq_out[MOCK_SEQ_LEN + 1])
{
    char seq[MOCK_SEQ_LEN + 1];
    k2p_buf *f = &s->scratch;
    mock_rec *r;

    if (sh->n && sh->recs[sh->n - 1].arrival_ms > arrival_ms)
        arrival_ms = sh->recs[sh->n - 1].arrival_ms;
    arrival_ms = K2P_MIN(K2P_MAX(arrival_ms, 0), 9999999999999LL);
    if (sh->n == sh->cap) {
        size_t nc = sh->cap ? sh->cap * 2 : 1024;
        mock_rec *nr = realloc(sh->recs, nc * sizeof *nr);
        if (!nr)
            return K2P_ENOMEM;
        sh->recs = nr;
        sh->cap = nc;
    }
    mock_seq_format(sh, (uint64_t)sh->n + 1, arrival_ms, seq);
    k2p_buf_reset(f);
    if (k2p_buf_reserve(f, 128 + b64_len))
        return K2P_ENOMEM;
    {
        /* {"SequenceNumber":"<56>","ApproximateArrivalTimestamp":<s>.<ms>,"Data":"  */
        static const char h1[] = "{\"SequenceNumber\":\"";
        static const char h2[] = "\",\"ApproximateArrivalTimestamp\":";
        static const char h3[] = ",\"Data\":\"";
        char *p = f->data;
        memcpy(p, h1, sizeof h1 - 1);
        p += sizeof h1 - 1;
        memcpy(p, seq, MOCK_SEQ_LEN);
        p += MOCK_SEQ_LEN;
        memcpy(p, h2, sizeof h2 - 1);
        p += sizeof h2 - 1;
        p = put_uint(p, (uint64_t)(arrival_ms / 1000)); /* arrival_ms >= 0 here */
        *p++ = '.';
        p = put_digits(p, (uint64_t)(arrival_ms % 1000), 3);
        memcpy(p, h3, sizeof h3 - 1);
        p += sizeof h3 - 1;
        f->len = (size_t)(p - f->data);
    }
    if (k2p_buf_append(f, b64, b64_len) || k2p_buf_puts(f, "\",\"PartitionKey\":") ||
        k2p_buf_put_json_str(f, pkey, pkey_len) || k2p_buf_putc(f, '}'))
        return K2P_ENOMEM;
    r = &sh->recs[sh->n];
    if (arena_add(s, f->data, f->len, &r->block, &r->off))
        return K2P_ENOMEM;
    r->len = (uint32_t)f->len;
    r->arrival_ms = arrival_ms;
    r->data_len = (uint32_t)data_len;
    sh->n++;
    if (seq_out)
        memcpy(seq_out, seq, sizeof seq);
    return 0;
}

static int not_open(const mock_stream *s, const mock_shard *sh, const char *op, k2p_err *err)
{
    return k2p_err_set(err, K2P_EINVAL,
                       "%s: shard %s in stream %s under account " MOCK_ACCOUNT
                       " is not open (it has been closed by an earlier reshard).",
                       op, sh->id, s->name);
}

int mock_stream_split(mock_stream *s, int ix, mock_u128 new_start, int64_t now_ms, k2p_err *err)
{
    mock_shard *p = s->shards[ix];
    mock_u128 lo = p->hash_lo, hi = p->hash_hi;
    char a[40], b[40], c[40];

    if (p->close_ms)
        return not_open(s, p, "SplitShard", err);
    /* The same rule kinesalite applies: lo + 1 < new_start < hi. */
    if (new_start <= lo + 1 || new_start >= hi) {
        mock_u128_format(new_start, a);
        mock_u128_format(lo, b);
        mock_u128_format(hi, c);
        return k2p_err_set(err, K2P_EINVAL,
                           "NewStartingHashKey %s used in SplitShard() on shard %s in stream %s "
                           "under account " MOCK_ACCOUNT " is not both greater than one plus "
                           "the shard's StartingHashKey %s and less than the shard's "
                           "EndingHashKey %s.",
                           a, p->id, s->name, b, c);
    }
    if (!shard_add(s, lo, new_start - 1, ix, -1, now_ms) ||
        !shard_add(s, new_start, hi, ix, -1, now_ms))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    p = s->shards[ix]; /* shard_add may have moved the pointer array, not the shards */
    p->close_ms = now_ms > p->create_ms ? now_ms : p->create_ms;
    if (p->n && p->recs[p->n - 1].arrival_ms > p->close_ms)
        p->close_ms = p->recs[p->n - 1].arrival_ms;
    return 0;
}

int mock_stream_merge(mock_stream *s, int a, int b, int64_t now_ms, k2p_err *err)
{
    mock_shard *x = s->shards[a], *y = s->shards[b];
    mock_u128 lo, hi;

    if (x->close_ms)
        return not_open(s, x, "MergeShards", err);
    if (y->close_ms)
        return not_open(s, y, "MergeShards", err);
    /* hash_hi + 1 wraps to 0 for the last range: compare only below the maximum. */
    if (x->hash_hi != MOCK_U128_MAX && x->hash_hi + 1 == y->hash_lo) {
        lo = x->hash_lo;
        hi = y->hash_hi;
    } else if (y->hash_hi != MOCK_U128_MAX && y->hash_hi + 1 == x->hash_lo) {
        lo = y->hash_lo;
        hi = x->hash_hi;
    } else {
        return k2p_err_set(err, K2P_EINVAL,
                           "Shards %s and %s in stream %s under account " MOCK_ACCOUNT
                           " are not an adjacent pair of shards eligible for merging",
                           x->id, y->id, s->name);
    }
    if (!shard_add(s, lo, hi, a, b, now_ms))
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    for (int i = 0; i < 2; i++) {
        mock_shard *p = s->shards[i ? b : a];
        p->close_ms = now_ms > p->create_ms ? now_ms : p->create_ms;
        if (p->n && p->recs[p->n - 1].arrival_ms > p->close_ms)
            p->close_ms = p->recs[p->n - 1].arrival_ms;
    }
    return 0;
}

size_t mock_shard_seek_time(const mock_shard *sh, int64_t ts_ms)
{
    size_t lo = 0, hi = sh->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sh->recs[mid].arrival_ms < ts_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- tokens ------------------------------------------------------------------------------- */

#define TOKEN_FIXED 31 /* magic(2) gen(8) shard(4) pos(8) issued(8) name_len(1) */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t token_mac(const mock_store *st, const uint8_t *p, size_t n)
{
    uint64_t h = st->mac_key;
    for (size_t i = 0; i < n; i++)
        h = mock_mix64(h ^ p[i]);
    return h;
}

size_t mock_token_encode(const mock_store *st, const mock_token *t, char out[MOCK_TOKEN_MAX])
{
    uint8_t raw[TOKEN_FIXED + MOCK_NAME_MAX + 8];
    size_t nl = strlen(t->stream), n;

    if (nl > MOCK_NAME_MAX)
        nl = MOCK_NAME_MAX;
    raw[0] = 'K';
    raw[1] = (uint8_t)t->kind;
    put_le(raw + 2, t->gen, 8);
    put_le(raw + 10, t->shard, 4);
    put_le(raw + 14, t->pos, 8);
    put_le(raw + 22, (uint64_t)t->issued_ms, 8);
    raw[30] = (uint8_t)nl;
    memcpy(raw + TOKEN_FIXED, t->stream, nl);
    n = TOKEN_FIXED + nl;
    put_le(raw + n, token_mac(st, raw, n), 8);
    n += 8;
    return k2p_base64_encode(raw, n, out);
}

int mock_token_decode(const mock_store *st, char kind, const char *s, size_t n, mock_token *t)
{
    uint8_t raw[TOKEN_FIXED + MOCK_NAME_MAX + 8 + 3];
    long dn;
    size_t nl;

    if (n >= MOCK_TOKEN_MAX || k2p_base64_decoded_max(n) > sizeof raw)
        return K2P_EINVAL;
    dn = k2p_base64_decode(s, n, raw);
    if (dn < TOKEN_FIXED + 8 || raw[0] != 'K' || raw[1] != (uint8_t)kind)
        return K2P_EINVAL;
    nl = raw[30];
    if (nl == 0 || nl > MOCK_NAME_MAX || (size_t)dn != TOKEN_FIXED + nl + 8)
        return K2P_EINVAL;
    if (get_le(raw + TOKEN_FIXED + nl, 8) != token_mac(st, raw, TOKEN_FIXED + nl))
        return K2P_EINVAL;
    t->kind = kind;
    t->gen = get_le(raw + 2, 8);
    t->shard = (uint32_t)get_le(raw + 10, 4);
    t->pos = get_le(raw + 14, 8);
    t->issued_ms = (int64_t)get_le(raw + 22, 8);
    memcpy(t->stream, raw + TOKEN_FIXED, nl);
    t->stream[nl] = '\0';
    return 0;
}

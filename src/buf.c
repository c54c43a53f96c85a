/* buf.c - bounded growable byte buffer, and the cache of big blocks behind it.
 *
 * Why a cache: the loader's hot buffers (a GetRecords answer, its decoded records, a batch of
 * COPY rows) are megabytes each, made and dropped a few times per call. glibc serves blocks
 * that big with mmap and returns them with munmap, so every byte of every batch was a fresh
 * zeroed page: page faults and munmap were a third of the loader's CPU (docs/benchmarks.md).
 * A freed block of K2P_BUF_POOL_MIN or more goes to a small process-wide cache instead, and
 * the next big reservation takes the smallest cached block that fits: its pages are already
 * mapped. The cache holds at most k2p_buf_pool_set_max() bytes (K2P_BUF_POOL_DEFAULT_MAX), so
 * what it adds to the peak RSS is bounded; the oldest blocks leave first.
 *
 * A second bound, k2p_buf_pool_set_limit(), covers big blocks in use and cached together (the
 * loader sets it to 1.5 x its in-flight budget: see loader.c). The budget already pays for
 * most of the big blocks its batches and fetches use; the cache only keeps what they freed, so
 * without this bound a busy run could hold its whole budget in use plus a full cache (24 MiB)
 * on top.
 * Blocks in use are counted in big_live as buffers take, grow, shrink and free them; when they
 * grow past the limit, cached blocks are freed first. A freed block becomes cached only into
 * room that the block itself just gave back, so a steady run keeps its cache.
 *
 * Threading: a buffer has one owner at a time; the cache is shared, under its own mutex
 * (taken once per big block, never per append).
 */
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K2P_BUF_DEFAULT_MAX ((size_t)1 << 30)
#define POOL_SLOTS 16

/* ---- the big-block cache ----------------------------------------------------------------- */

typedef struct pool_block {
    char *p;
    size_t cap;
} pool_block;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_block pool[POOL_SLOTS];                /* oldest first; under pool_mu */
static size_t pool_n, pool_bytes;                  /* under pool_mu */
static size_t pool_max = K2P_BUF_POOL_DEFAULT_MAX; /* under pool_mu */
static size_t pool_limit = SIZE_MAX;               /* cached + in use; under pool_mu */
static _Atomic size_t big_live;                    /* big blocks held by buffers */

/* What a block of cap bytes counts toward big_live. */
static size_t big(size_t cap)
{
    return cap >= K2P_BUF_POOL_MIN ? cap : 0;
}

/* How many cached bytes still fit under pool_limit; pool_mu held. */
static size_t pool_room(void)
{
    size_t live = atomic_load_explicit(&big_live, memory_order_relaxed);
    return live >= pool_limit ? 0 : pool_limit - live;
}

static void pool_remove(size_t i)
{
    pool_bytes -= pool[i].cap;
    memmove(&pool[i], &pool[i + 1], (pool_n - i - 1) * sizeof *pool);
    pool_n--;
}

/* A cached block of at most `most` bytes: the smallest of at least need bytes, else the
 * largest (the caller grows it, keeping its mapped pages). NULL when there is none. */
static char *pool_take(size_t need, size_t most, size_t *cap)
{
    char *p = NULL;
    size_t best = SIZE_MAX;
    pthread_mutex_lock(&pool_mu);
    for (size_t i = 0; i < pool_n; i++) {
        size_t c = pool[i].cap, bc = best == SIZE_MAX ? 0 : pool[best].cap;
        if (c > most)
            continue;
        if (best == SIZE_MAX || (c >= need ? bc < need || c < bc : bc < need && c > bc))
            best = i;
    }
    if (best != SIZE_MAX) {
        p = pool[best].p;
        *cap = pool[best].cap;
        pool_remove(best);
    }
    pthread_mutex_unlock(&pool_mu);
    return p;
}

/* Frees a block, or caches it when it is big. Blocks pushed out of the cache are freed
 * outside the mutex. */
static void block_free(char *p, size_t cap)
{
    char *evicted[POOL_SLOTS + 1];
    size_t ne = 0;
    if (!p)
        return;
    if (cap < K2P_BUF_POOL_MIN) {
        free(p);
        return;
    }
    atomic_fetch_sub_explicit(&big_live, cap, memory_order_relaxed);
    pthread_mutex_lock(&pool_mu);
    if (cap > pool_max || cap > pool_room()) {
        evicted[ne++] = p;
    } else {
        while (pool_n && (pool_n == POOL_SLOTS || pool_bytes + cap > pool_max ||
                          pool_bytes + cap > pool_room())) {
            evicted[ne++] = pool[0].p;
            pool_remove(0);
        }
        pool[pool_n].p = p;
        pool[pool_n].cap = cap;
        pool_n++;
        pool_bytes += cap;
    }
    pthread_mutex_unlock(&pool_mu);
    while (ne)
        free(evicted[--ne]);
}

/* Takes out of the cache the oldest blocks beyond `keep` bytes (all of them for 0), or beyond
 * what pool_limit leaves room for, and frees them outside the mutex. */
static void pool_shrink_to(size_t keep)
{
    char *evicted[POOL_SLOTS];
    size_t ne = 0;
    pthread_mutex_lock(&pool_mu);
    while (pool_n && (pool_bytes > keep || pool_bytes > pool_room())) {
        evicted[ne++] = pool[0].p;
        pool_remove(0);
    }
    pthread_mutex_unlock(&pool_mu);
    while (ne)
        free(evicted[--ne]);
}

void k2p_buf_pool_set_max(size_t bytes)
{
    pthread_mutex_lock(&pool_mu);
    pool_max = bytes;
    pthread_mutex_unlock(&pool_mu);
    pool_shrink_to(bytes);
}

void k2p_buf_pool_set_limit(size_t bytes)
{
    pthread_mutex_lock(&pool_mu);
    pool_limit = bytes;
    pthread_mutex_unlock(&pool_mu);
    pool_shrink_to(SIZE_MAX);
}

size_t k2p_buf_big_bytes(void)
{
    return atomic_load_explicit(&big_live, memory_order_relaxed);
}

/* A buffer's block went from old_cap to new_cap bytes: counts it, and when big blocks in use
 * grew, frees cached ones that no longer fit under pool_limit. */
static void live_change(size_t old_cap, size_t new_cap)
{
    size_t o = big(old_cap), n = big(new_cap);
    if (n > o) {
        atomic_fetch_add_explicit(&big_live, n - o, memory_order_relaxed);
        pool_shrink_to(SIZE_MAX);
    } else if (o > n) {
        atomic_fetch_sub_explicit(&big_live, o - n, memory_order_relaxed);
    }
}

void k2p_buf_pool_drain(void)
{
    pool_shrink_to(0);
}

size_t k2p_buf_pool_bytes(void)
{
    size_t n;
    pthread_mutex_lock(&pool_mu);
    n = pool_bytes;
    pthread_mutex_unlock(&pool_mu);
    return n;
}

/* ---- buffers ----------------------------------------------------------------------------- */

void k2p_buf_init(k2p_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : K2P_BUF_DEFAULT_MAX;
}

void k2p_buf_deinit(k2p_buf *b)
{
    block_free(b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

void k2p_buf_reset(k2p_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int k2p_buf_reserve(k2p_buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;
    if (extra > b->max || b->len > b->max - extra)
        return K2P_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    if (ncap >= K2P_BUF_POOL_MIN && b->cap < K2P_BUF_POOL_MIN) {
        /* Becoming big: a cached block saves the page faults of a fresh one, for the cost of
         * copying what the buffer holds (under K2P_BUF_POOL_MIN). One too small is grown by
         * realloc, which keeps its pages (mremap). A big buffer grows by realloc alone. */
        size_t pcap;
        if ((p = pool_take(need, b->max + 1, &pcap)) != NULL && pcap < need) {
            char *q = realloc(p, ncap);
            if (!q)
                free(p);
            p = q;
            pcap = ncap;
        }
        if (p) {
            if (b->data)
                memcpy(p, b->data, b->len + 1);
            free(b->data);
            b->data = p;
            live_change(b->cap, pcap);
            b->cap = pcap;
            return 0;
        }
    }
    p = realloc(b->data, ncap);
    if (!p)
        return K2P_ENOMEM;
    b->data = p;
    live_change(b->cap, ncap);
    b->cap = ncap;
    return 0;
}

int k2p_buf_append(k2p_buf *b, const void *p, size_t n)
{
    if (k2p_buf_reserve(b, n))
        return K2P_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int k2p_buf_puts(k2p_buf *b, const char *s)
{
    return k2p_buf_append(b, s, strlen(s));
}

int k2p_buf_putc(k2p_buf *b, char c)
{
    return k2p_buf_append(b, &c, 1);
}

int k2p_buf_printf(k2p_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || k2p_buf_reserve(b, (size_t)n))
        return K2P_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int k2p_buf_put_json_str(k2p_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (k2p_buf_reserve(b, n + 2))
        return K2P_ENOMEM;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t el = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        } else {
            esc[0] = (char)c;
            el = 1;
        }
        if (k2p_buf_append(b, esc, el))
            return K2P_ENOMEM;
    }
    return k2p_buf_putc(b, '"');
}

void k2p_buf_shrink(k2p_buf *b)
{
    char *p;
    if (!b->data || b->cap <= b->len + 1)
        return;
    p = realloc(b->data, b->len + 1);
    if (p) {
        b->data = p;
        live_change(b->cap, b->len + 1);
        b->cap = b->len + 1;
    }
}

char *k2p_buf_steal(k2p_buf *b, size_t *len)
{
    char *p = b->data;
    live_change(b->cap, 0); /* the caller frees it */
    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

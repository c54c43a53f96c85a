/* ring.h - bounded lock-free single-producer/single-consumer ring of pointers, plus a waiting
 * layer (bounded spin, then a condition variable) for when it is full or empty.
 *
 * Threading: exactly one producer thread calls k2p_ring_push*(), exactly one consumer thread
 * calls k2p_ring_pop*(); k2p_ring_size(), k2p_ring_close() and k2p_ring_is_closed() are safe
 * from any thread. init/deinit/attach happen while no other thread uses the ring.
 *
 * Layout (as ConcurrencyKit's ck_ring and DPDK's rte_ring): capacity is a power of two,
 * `mask = capacity - 1`, and head/tail are free-running counters (only ever incremented; the
 * slot is `counter & mask`, the fill is `tail - head`, correct across wrap-around of size_t).
 * The consumer's line (head + its cached copy of tail) and the producer's line (tail + its
 * cached copy of head) are separated by 64 bytes of padding on both sides, so they never share
 * a cache line whatever the alignment of the struct (no _Alignas: a ring embedded in malloc'd
 * memory would be misaligned, which UBSan reports). The cached copies let each side touch the
 * other side's line only when the ring looks full (producer) or empty (consumer).
 *
 * Memory ordering: a slot is written by the producer before it publishes `tail` with a release
 * store, and read by the consumer after an acquire load of `tail`; the consumer releases the
 * slot with a release store of `head`, which the producer acquires before reusing the slot.
 * Slots themselves are plain pointers: the index pairs order every access to them.
 *
 * Waiting protocol (k2p_ring_waiter; no lost wake-ups):
 *   sleeper:  lock(mu); RMW sleepers += 1 (acq_rel); if ready(): sleepers -= 1, unlock,
 *             return; cond_timedwait(cv, mu); sleepers -= 1; loop.
 *   notifier: <publish progress: release store of tail, head or closed>;
 *             n = RMW sleepers += 0 (acq_rel); if (n > 0) { lock(mu); broadcast(cv); unlock }
 * Both sides do a read-modify-write of the same `sleepers`, so the two RMWs are totally
 * ordered. If the sleeper's comes first, the notifier reads n > 0 and broadcasts under the
 * mutex, which it can only take once the sleeper is inside cond_timedwait (the sleeper holds mu
 * from its RMW until the wait releases it) or has left. If the notifier's comes first, the
 * sleeper's acquire RMW reads from the notifier's release RMW (or a later RMW in its release
 * sequence), so the published progress happens-before ready(), which sees it and does not
 * sleep. (RMWs rather than seq_cst fences: ThreadSanitizer models them exactly, and GCC warns
 * that it does not model fences.) The timeout bounds the wait; it is not a polling period:
 * an idle thread sleeps in the kernel. Each push/pop pays one uncontended locked RMW (no lock,
 * no syscall) unless somebody sleeps: cheap next to a batch of thousands of rows.
 *
 * Close: k2p_ring_close() (either side, or a third thread) makes pushes fail with
 * K2P_RING_CLOSED and wakes both sides; pops still drain what is queued, then report
 * K2P_RING_CLOSED. Items pushed by the producer before it closed are always drained; an item
 * pushed concurrently with a close by another thread may stay queued: after joining both
 * threads, drain with k2p_ring_pop() before k2p_ring_deinit().
 */
#ifndef K2P_RING_H
#define K2P_RING_H

#include "kinesis2pg/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define K2P_RING_CACHE_LINE 64
#define K2P_RING_MAX_CAPACITY ((size_t)1 << 30)
/* Busy-wait rounds (each a CPU pause hint) before sleeping: a few microseconds. */
#define K2P_RING_SPINS 256
/* Returned (positive, not an error) by the waiting calls when the ring is closed. */
#define K2P_RING_CLOSED 1

/* A place for one or more threads to sleep until some predicate holds. Caller storage. */
typedef struct k2p_ring_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    atomic_int sleepers;
} k2p_ring_waiter;

typedef struct k2p_ring {
    char pad0_[K2P_RING_CACHE_LINE];
    /* Consumer's line. */
    atomic_size_t head; /* next slot to pop; written by the consumer only */
    size_t tail_cache;  /* consumer's last view of tail */
    char pad1_[K2P_RING_CACHE_LINE];
    /* Producer's line. */
    atomic_size_t tail; /* next slot to fill; written by the producer only */
    size_t head_cache;  /* producer's last view of head */
    char pad2_[K2P_RING_CACHE_LINE];
    /* Read-mostly. */
    size_t mask;
    void **slots;
    atomic_int closed;
    k2p_ring_waiter *cons_w; /* where the consumer sleeps; notified by pushes */
    k2p_ring_waiter *prod_w; /* where the producer sleeps; notified by pops */
    /* The default waiters, each on lines of its own: the producer RMWs own_cons_.sleepers on
     * every push, the consumer own_prod_.sleepers on every pop. */
    char pad3_[K2P_RING_CACHE_LINE];
    k2p_ring_waiter own_cons_;
    char pad4_[K2P_RING_CACHE_LINE];
    k2p_ring_waiter own_prod_;
    char pad5_[K2P_RING_CACHE_LINE];
} k2p_ring;

/* ---- waiter ----------------------------------------------------------------------------- */

/* Returns 0 or K2P_ENOMEM. */
static inline int k2p_ring_waiter_init(k2p_ring_waiter *w)
{
    pthread_condattr_t ca;
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        return K2P_ENOMEM;
    if (pthread_condattr_init(&ca) != 0) {
        pthread_mutex_destroy(&w->mu);
        return K2P_ENOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&w->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&w->mu);
        return K2P_ENOMEM;
    }
    pthread_condattr_destroy(&ca);
    atomic_init(&w->sleepers, 0);
    return 0;
}

/* No thread may be waiting. */
static inline void k2p_ring_waiter_deinit(k2p_ring_waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Wakes whoever sleeps on `w`. Call after publishing the progress they wait for (the release
 * store comes first in program order). Lock-free unless somebody sleeps. Any thread. */
static inline void k2p_ring_waiter_notify(k2p_ring_waiter *w)
{
    /* An RMW, not a load: it is ordered with the sleeper's RMW in k2p_ring_waiter_wait(), and
     * its release half carries the caller's publishing store to a sleeper that comes later
     * (see the protocol at the top of the file). */
    if (atomic_fetch_add_explicit(&w->sleepers, 0, memory_order_acq_rel) > 0) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static inline void k2p_ring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Waits until ready(arg) returns nonzero: spins K2P_RING_SPINS rounds, then sleeps on `w` until
 * notified or `timeout_ns` has passed (< 0: no limit). Returns 0 when ready, K2P_EAGAIN on
 * timeout. ready() must only read atomics (it runs with w->mu held). Any thread. */
static inline int k2p_ring_waiter_wait(k2p_ring_waiter *w, int (*ready)(void *), void *arg,
                                       int64_t timeout_ns)
{
    struct timespec deadline;
    int rc = 0;

    for (int i = 0; i < K2P_RING_SPINS; i++) {
        if (ready(arg))
            return 0;
        k2p_ring_cpu_relax();
    }
    if (timeout_ns == 0)
        return ready(arg) ? 0 : K2P_EAGAIN;
    if (timeout_ns > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)(timeout_ns / 1000000000);
        deadline.tv_nsec += (long)(timeout_ns % 1000000000);
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&w->mu);
    for (;;) {
        int err;
        /* Pairs with the RMW in k2p_ring_waiter_notify(): either it sees us, or we (acquire)
         * see what it published before it, in ready(). */
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_acq_rel);
        if (ready(arg)) {
            atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
            rc = 0;
            break;
        }
        if (timeout_ns < 0)
            err = pthread_cond_wait(&w->cv, &w->mu);
        else
            err = pthread_cond_timedwait(&w->cv, &w->mu, &deadline);
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
        if (err == ETIMEDOUT) {
            rc = ready(arg) ? 0 : K2P_EAGAIN;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* ---- ring ------------------------------------------------------------------------------- */

/* Initialises caller storage for at least `capacity` items (rounded up to a power of two, at
 * most K2P_RING_MAX_CAPACITY), with its own two waiters attached. Returns 0, K2P_EINVAL
 * (capacity 0 or too large) or K2P_ENOMEM. */
static inline int k2p_ring_init(k2p_ring *r, size_t capacity)
{
    size_t cap = 1;
    if (capacity == 0 || capacity > K2P_RING_MAX_CAPACITY)
        return K2P_EINVAL;
    while (cap < capacity)
        cap <<= 1;
    r->slots = calloc(cap, sizeof *r->slots);
    if (!r->slots)
        return K2P_ENOMEM;
    if (k2p_ring_waiter_init(&r->own_cons_) != 0) {
        free(r->slots);
        return K2P_ENOMEM;
    }
    if (k2p_ring_waiter_init(&r->own_prod_) != 0) {
        k2p_ring_waiter_deinit(&r->own_cons_);
        free(r->slots);
        return K2P_ENOMEM;
    }
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->tail_cache = 0;
    r->head_cache = 0;
    atomic_init(&r->closed, 0);
    r->cons_w = &r->own_cons_;
    r->prod_w = &r->own_prod_;
    return 0;
}

/* Frees the slots and the ring's own waiters. Items still queued are the caller's: drain them
 * with k2p_ring_pop() first. No thread may use the ring. */
static inline void k2p_ring_deinit(k2p_ring *r)
{
    free(r->slots);
    r->slots = NULL;
    k2p_ring_waiter_deinit(&r->own_cons_);
    k2p_ring_waiter_deinit(&r->own_prod_);
}

/* Replaces where the consumer (`consumer`) or producer (`producer`) sleeps; NULL keeps the
 * current one. A consumer draining several rings attaches one shared waiter to all of them and
 * waits on it with a predicate that checks every ring. Before the threads start. */
static inline void k2p_ring_attach(k2p_ring *r, k2p_ring_waiter *consumer,
                                   k2p_ring_waiter *producer)
{
    if (consumer)
        r->cons_w = consumer;
    if (producer)
        r->prod_w = producer;
}

static inline size_t k2p_ring_capacity(const k2p_ring *r)
{
    return r->mask + 1;
}

/* Approximate fill (exact when both sides are quiet). Any thread. */
static inline size_t k2p_ring_size(k2p_ring *r)
{
    /* Load head first: head <= tail at every instant, and tail only grows, so reading tail
     * second can only overestimate; clamp to the capacity. */
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t n = t - h;
    return n > r->mask + 1 ? r->mask + 1 : n;
}

/* Opens a closed ring again for a new producer: only once the old producer thread is gone and
 * before the new one starts. The consumer just sees it open again. */
static inline void k2p_ring_reopen(k2p_ring *r)
{
    /* Pairs with the acquire loads in k2p_ring_is_closed(). */
    atomic_store_explicit(&r->closed, 0, memory_order_release);
}

/* Marks the ring closed and wakes both sides. Idempotent. Any thread. */
static inline void k2p_ring_close(k2p_ring *r)
{
    /* Pairs with the acquire loads in k2p_ring_is_closed(): a consumer that sees the flag also
     * sees every item the closing producer pushed before. */
    atomic_store_explicit(&r->closed, 1, memory_order_release);
    k2p_ring_waiter_notify(r->cons_w);
    k2p_ring_waiter_notify(r->prod_w);
}

static inline int k2p_ring_is_closed(k2p_ring *r)
{
    return atomic_load_explicit(&r->closed, memory_order_acquire);
}

/* Queues `item` (not NULL). On 0 the ring owns it; on K2P_EAGAIN (full) or K2P_RING_CLOSED the
 * caller still does. Never blocks. Producer thread only. */
static inline int k2p_ring_push(k2p_ring *r, void *item)
{
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed); /* our own counter */
    if (atomic_load_explicit(&r->closed, memory_order_relaxed))
        return K2P_RING_CLOSED;
    if (t - r->head_cache > r->mask) {
        /* Looks full: refresh. Pairs with the release store of head in k2p_ring_pop(): the
         * consumer has finished reading the slot we are about to overwrite. */
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->head_cache > r->mask)
            return K2P_EAGAIN;
    }
    r->slots[t & r->mask] = item;
    /* Publish the slot before the tail; pairs with the acquire load of tail in k2p_ring_pop(). */
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    k2p_ring_waiter_notify(r->cons_w);
    return 0;
}

/* Takes the oldest item, or returns NULL when the ring is empty. The caller owns the item.
 * Never blocks. Consumer thread only. */
static inline void *k2p_ring_pop(k2p_ring *r)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed); /* our own counter */
    void *item;
    if (h == r->tail_cache) {
        /* Looks empty: refresh. Pairs with the release store of tail in k2p_ring_push(): the
         * slot's contents are visible. */
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->tail_cache)
            return NULL;
    }
    item = r->slots[h & r->mask];
    /* Release the slot to the producer; pairs with the acquire load of head in k2p_ring_push(). */
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    k2p_ring_waiter_notify(r->prod_w);
    return item;
}

/* Predicates for the waiters. They read the other side's counter with acquire loads (pairing
 * with its release stores) and never touch the caches, which belong to the ring's own side. */
static inline int k2p_ring_ready_to_push(void *arg)
{
    k2p_ring *r = arg;
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return t - atomic_load_explicit(&r->head, memory_order_acquire) <= r->mask ||
           atomic_load_explicit(&r->closed, memory_order_acquire);
}

static inline int k2p_ring_ready_to_pop(void *arg)
{
    k2p_ring *r = arg;
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    return atomic_load_explicit(&r->tail, memory_order_acquire) != h ||
           atomic_load_explicit(&r->closed, memory_order_acquire);
}

/* Queues `item`, waiting up to `timeout_ns` (< 0: no limit) for room. Returns 0 (the ring owns
 * the item), K2P_EAGAIN (timed out, still full) or K2P_RING_CLOSED; on both the caller still
 * owns the item. Producer thread only. */
static inline int k2p_ring_push_wait(k2p_ring *r, void *item, int64_t timeout_ns)
{
    int64_t deadline = timeout_ns > 0 ? k2p_now_ns() + timeout_ns : 0;
    for (;;) {
        int rc = k2p_ring_push(r, item);
        int64_t left = timeout_ns;
        if (rc != K2P_EAGAIN)
            return rc;
        if (timeout_ns > 0) {
            left = deadline - k2p_now_ns();
            if (left <= 0)
                return K2P_EAGAIN;
        }
        if (k2p_ring_waiter_wait(r->prod_w, k2p_ring_ready_to_push, r, left) != 0)
            return k2p_ring_push(r, item);
    }
}

/* Takes the oldest item into *out, waiting up to `timeout_ns` (< 0: no limit) for one.
 * Returns 0 (*out set, the caller owns it), K2P_EAGAIN (timed out, still empty) or
 * K2P_RING_CLOSED (closed and drained: nothing more will come). Consumer thread only. */
static inline int k2p_ring_pop_wait(k2p_ring *r, void **out, int64_t timeout_ns)
{
    int64_t deadline = timeout_ns > 0 ? k2p_now_ns() + timeout_ns : 0;
    for (;;) {
        int64_t left = timeout_ns;
        int closed = k2p_ring_is_closed(r);
        /* Pop after reading `closed`: everything the closer pushed before closing is visible
         * now, so "closed and empty" really means drained. */
        if ((*out = k2p_ring_pop(r)) != NULL)
            return 0;
        if (closed)
            return K2P_RING_CLOSED;
        if (timeout_ns > 0) {
            left = deadline - k2p_now_ns();
            if (left <= 0)
                return K2P_EAGAIN;
        }
        if (k2p_ring_waiter_wait(r->cons_w, k2p_ring_ready_to_pop, r, left) != 0) {
            closed = k2p_ring_is_closed(r); /* timed out: one last look, as above */
            if ((*out = k2p_ring_pop(r)) != NULL)
                return 0;
            return closed ? K2P_RING_CLOSED : K2P_EAGAIN;
        }
    }
}

#endif

/* test_ring.c - the SPSC ring: single-thread semantics, wrap-around (of slots and of the
 * free-running counters), full/empty, close, timeouts, no CPU burnt while idle, and stress runs
 * with a producer and a consumer thread checking order and loss.
 *
 * Stress size: K2P_RING_STRESS_N items (default 10 million, 2 million under sanitizers).
 *
 * Threading: each stress case starts its own producer/consumer threads and joins them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/ring.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static uint64_t stress_n(void)
{
    const char *e = getenv("K2P_RING_STRESS_N");
    int64_t v;
    if (e && k2p_parse_i64(e, &v) == 0 && v > 0)
        return (uint64_t)v;
    return SANITIZED ? 2000000u : 10000000u;
}

#define ITEM(i) ((void *)(uintptr_t)(i))

static void test_init_rounds_capacity(void **state)
{
    k2p_ring r;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 0), K2P_EINVAL);
    assert_int_equal(k2p_ring_init(&r, K2P_RING_MAX_CAPACITY + 1), K2P_EINVAL);
    assert_int_equal(k2p_ring_init(&r, 5), 0);
    assert_int_equal(k2p_ring_capacity(&r), 8);
    k2p_ring_deinit(&r);
    assert_int_equal(k2p_ring_init(&r, 1), 0);
    assert_int_equal(k2p_ring_capacity(&r), 1);
    assert_int_equal(k2p_ring_push(&r, ITEM(7)), 0);
    assert_int_equal(k2p_ring_push(&r, ITEM(8)), K2P_EAGAIN);
    assert_ptr_equal(k2p_ring_pop(&r), ITEM(7));
    assert_null(k2p_ring_pop(&r));
    k2p_ring_deinit(&r);
    assert_int_equal(k2p_ring_init(&r, 1024), 0);
    assert_int_equal(k2p_ring_capacity(&r), 1024);
    k2p_ring_deinit(&r);
}

static void test_full_and_empty(void **state)
{
    k2p_ring r;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 8), 0);
    assert_null(k2p_ring_pop(&r));
    assert_int_equal(k2p_ring_size(&r), 0);
    for (uintptr_t i = 1; i <= 8; i++) {
        assert_int_equal(k2p_ring_push(&r, ITEM(i)), 0);
        assert_int_equal(k2p_ring_size(&r), i);
    }
    assert_int_equal(k2p_ring_push(&r, ITEM(9)), K2P_EAGAIN);
    assert_int_equal(k2p_ring_size(&r), 8);
    assert_ptr_equal(k2p_ring_pop(&r), ITEM(1));
    assert_int_equal(k2p_ring_push(&r, ITEM(9)), 0); /* the freed slot is reused */
    assert_int_equal(k2p_ring_push(&r, ITEM(10)), K2P_EAGAIN);
    for (uintptr_t i = 2; i <= 9; i++)
        assert_ptr_equal(k2p_ring_pop(&r), ITEM(i));
    assert_null(k2p_ring_pop(&r));
    assert_null(k2p_ring_pop(&r));
    assert_int_equal(k2p_ring_size(&r), 0);
    k2p_ring_deinit(&r);
}

static void test_wrap_around_slots(void **state)
{
    k2p_ring r;
    uintptr_t next_in = 1, next_out = 1;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 4), 0);
    /* Uneven push/pop counts walk every slot offset many times. */
    for (int round = 0; round < 1000; round++) {
        int pushes = 1 + round % 4, pops = 1 + (round * 7) % 4;
        for (int i = 0; i < pushes; i++) {
            if (k2p_ring_push(&r, ITEM(next_in)) == 0)
                next_in++;
        }
        for (int i = 0; i < pops; i++) {
            void *p = k2p_ring_pop(&r);
            if (!p)
                break;
            assert_ptr_equal(p, ITEM(next_out));
            next_out++;
        }
        assert_int_equal(k2p_ring_size(&r), next_in - next_out);
    }
    while (next_out < next_in) {
        assert_ptr_equal(k2p_ring_pop(&r), ITEM(next_out));
        next_out++;
    }
    assert_null(k2p_ring_pop(&r));
    assert_true(next_in > 1000);
    k2p_ring_deinit(&r);
}

static void test_wrap_around_counters(void **state)
{
    k2p_ring r;
    const size_t start = SIZE_MAX - 5; /* the counters overflow after a few items */
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 4), 0);
    atomic_store(&r.head, start);
    atomic_store(&r.tail, start);
    r.head_cache = r.tail_cache = start;
    for (uintptr_t i = 1; i <= 40; i++) {
        assert_int_equal(k2p_ring_push(&r, ITEM(i)), 0);
        if (i % 3 == 0)
            assert_int_equal(k2p_ring_push(&r, ITEM(1000 + i)), 0);
        assert_int_equal(k2p_ring_size(&r), i % 3 == 0 ? 2 : 1);
        assert_ptr_equal(k2p_ring_pop(&r), ITEM(i));
        if (i % 3 == 0)
            assert_ptr_equal(k2p_ring_pop(&r), ITEM(1000 + i));
        assert_null(k2p_ring_pop(&r));
    }
    for (uintptr_t i = 1; i <= 4; i++)
        assert_int_equal(k2p_ring_push(&r, ITEM(i)), 0);
    assert_int_equal(k2p_ring_push(&r, ITEM(5)), K2P_EAGAIN);
    assert_int_equal(k2p_ring_size(&r), 4);
    assert_true(atomic_load(&r.tail) < start); /* it did wrap */
    for (uintptr_t i = 1; i <= 4; i++)
        assert_ptr_equal(k2p_ring_pop(&r), ITEM(i));
    k2p_ring_deinit(&r);
}

static void test_close_drains(void **state)
{
    k2p_ring r;
    void *p = NULL;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 4), 0);
    assert_int_equal(k2p_ring_push(&r, ITEM(1)), 0);
    assert_int_equal(k2p_ring_push(&r, ITEM(2)), 0);
    assert_false(k2p_ring_is_closed(&r));
    k2p_ring_close(&r);
    k2p_ring_close(&r); /* idempotent */
    assert_true(k2p_ring_is_closed(&r));
    assert_int_equal(k2p_ring_push(&r, ITEM(3)), K2P_RING_CLOSED);
    assert_int_equal(k2p_ring_push_wait(&r, ITEM(3), -1), K2P_RING_CLOSED);
    assert_int_equal(k2p_ring_pop_wait(&r, &p, -1), 0);
    assert_ptr_equal(p, ITEM(1));
    assert_int_equal(k2p_ring_pop_wait(&r, &p, 0), 0);
    assert_ptr_equal(p, ITEM(2));
    assert_int_equal(k2p_ring_pop_wait(&r, &p, -1), K2P_RING_CLOSED);
    assert_null(p);
    k2p_ring_deinit(&r);
}

static void test_timeouts(void **state)
{
    k2p_ring r;
    void *p;
    int64_t t0;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 2), 0);
    t0 = k2p_now_ns();
    assert_int_equal(k2p_ring_pop_wait(&r, &p, 50 * 1000000), K2P_EAGAIN);
    assert_true(k2p_now_ns() - t0 >= 50 * 1000000);
    assert_int_equal(k2p_ring_pop_wait(&r, &p, 0), K2P_EAGAIN);
    assert_int_equal(k2p_ring_push_wait(&r, ITEM(1), 0), 0);
    assert_int_equal(k2p_ring_push_wait(&r, ITEM(2), 0), 0);
    t0 = k2p_now_ns();
    assert_int_equal(k2p_ring_push_wait(&r, ITEM(3), 30 * 1000000), K2P_EAGAIN);
    assert_true(k2p_now_ns() - t0 >= 30 * 1000000);
    assert_int_equal(k2p_ring_pop_wait(&r, &p, 1000), 0);
    assert_ptr_equal(p, ITEM(1));
    assert_int_equal(k2p_ring_push_wait(&r, ITEM(3), 1000), 0);
    k2p_ring_deinit(&r);
}

/* ---- idle consumer: sleeps in the kernel, woken by a push and by close ------------------- */

struct idle_ctx {
    k2p_ring *r;
    int rc_first, rc_second;
    void *first;
};

static void *idle_consumer(void *arg)
{
    struct idle_ctx *c = arg;
    void *p = NULL;
    c->rc_first = k2p_ring_pop_wait(c->r, &c->first, -1);
    c->rc_second = k2p_ring_pop_wait(c->r, &p, -1);
    return NULL;
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void test_idle_wait_burns_no_cpu(void **state)
{
    k2p_ring r;
    pthread_t th;
    struct idle_ctx c = {0};
    int64_t cpu0, cpu_used;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 4), 0);
    c.r = &r;
    assert_int_equal(pthread_create(&th, NULL, idle_consumer, &c), 0);
    sleep_ms(50); /* let it reach the condition variable */
    cpu0 = cpu_ns();
    sleep_ms(300);
    cpu_used = cpu_ns() - cpu0;
    /* A spinning consumer would use ~300 ms of CPU here. */
    assert_true(cpu_used < 60 * 1000000);
    assert_int_equal(k2p_ring_push(&r, ITEM(42)), 0); /* wakes it */
    sleep_ms(50);
    k2p_ring_close(&r); /* wakes it again, now for good */
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.rc_first, 0);
    assert_ptr_equal(c.first, ITEM(42));
    assert_int_equal(c.rc_second, K2P_RING_CLOSED);
    k2p_ring_deinit(&r);
}

/* ---- stress: lock-free push/pop, spinning on full/empty -------------------------------- */

struct stress_ctx {
    k2p_ring *r;
    uint64_t n;
    uint64_t received;
    uint64_t bad; /* out-of-order or wrong items seen by the consumer */
};

static void *spin_producer(void *arg)
{
    struct stress_ctx *c = arg;
    for (uint64_t i = 1; i <= c->n; i++) {
        unsigned spins = 0;
        while (k2p_ring_push(c->r, ITEM(i)) == K2P_EAGAIN) {
            if (++spins % 64 == 0)
                sched_yield();
        }
    }
    return NULL;
}

static void *spin_consumer(void *arg)
{
    struct stress_ctx *c = arg;
    uint64_t expect = 1;
    unsigned spins = 0;
    while (expect <= c->n) {
        void *p = k2p_ring_pop(c->r);
        if (!p) {
            if (++spins % 64 == 0)
                sched_yield();
            continue;
        }
        if ((uintptr_t)p != expect)
            c->bad++;
        expect++;
        c->received++;
    }
    return NULL;
}

static void test_stress_lock_free(void **state)
{
    k2p_ring r;
    pthread_t prod, cons;
    struct stress_ctx c = {0};
    int64_t t0;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 1024), 0);
    c.r = &r;
    c.n = stress_n();
    t0 = k2p_now_ns();
    assert_int_equal(pthread_create(&cons, NULL, spin_consumer, &c), 0);
    assert_int_equal(pthread_create(&prod, NULL, spin_producer, &c), 0);
    assert_int_equal(pthread_join(prod, NULL), 0);
    assert_int_equal(pthread_join(cons, NULL), 0);
    print_message("lock-free stress: %llu items in %.2f s\n", (unsigned long long)c.n,
                  (double)(k2p_now_ns() - t0) / 1e9);
    assert_int_equal(c.received, c.n);
    assert_int_equal(c.bad, 0);
    assert_null(k2p_ring_pop(&r));
    k2p_ring_deinit(&r);
}

/* ---- stress: blocking push/pop on a tiny ring, heap items, close at the end ------------- */

struct item {
    uint64_t seq;
    uint64_t check; /* written by the producer before the push: TSan checks the publication */
};

static void *wait_producer(void *arg)
{
    struct stress_ctx *c = arg;
    for (uint64_t i = 1; i <= c->n; i++) {
        struct item *it = malloc(sizeof *it);
        int rc;
        if (!it)
            abort();
        it->seq = i;
        it->check = i * 2654435761u;
        rc = k2p_ring_push_wait(c->r, it, 10LL * 1000000000);
        if (rc != 0) { /* a lost wake-up would show up as a 10 s timeout */
            free(it);
            c->bad++;
            break;
        }
    }
    k2p_ring_close(c->r);
    return NULL;
}

static void *wait_consumer(void *arg)
{
    struct stress_ctx *c = arg;
    uint64_t expect = 1;
    for (;;) {
        void *p;
        int rc = k2p_ring_pop_wait(c->r, &p, 10LL * 1000000000);
        struct item *it = p;
        if (rc == K2P_RING_CLOSED)
            break;
        if (rc != 0) {
            c->bad++;
            break;
        }
        if (it->seq != expect || it->check != expect * 2654435761u)
            c->bad++;
        expect++;
        c->received++;
        free(it);
    }
    return NULL;
}

static void test_stress_blocking(void **state)
{
    k2p_ring r;
    pthread_t prod, cons;
    struct stress_ctx c = {0};
    int64_t t0;
    (void)state;
    assert_int_equal(k2p_ring_init(&r, 8), 0);
    c.r = &r;
    c.n = stress_n() / 10;
    t0 = k2p_now_ns();
    assert_int_equal(pthread_create(&cons, NULL, wait_consumer, &c), 0);
    assert_int_equal(pthread_create(&prod, NULL, wait_producer, &c), 0);
    assert_int_equal(pthread_join(prod, NULL), 0);
    assert_int_equal(pthread_join(cons, NULL), 0);
    print_message("blocking stress: %llu items in %.2f s\n", (unsigned long long)c.n,
                  (double)(k2p_now_ns() - t0) / 1e9);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.received, c.n);
    k2p_ring_deinit(&r);
}

/* ---- several rings, one consumer sleeping on a shared waiter ---------------------------- */

#define NRINGS 3

struct multi_ctx {
    k2p_ring rings[NRINGS];
    k2p_ring_waiter shared;
    uint64_t n;
    uint64_t bad;
};

struct prod_arg {
    struct multi_ctx *m;
    int idx;
    int failed;
};

static void *multi_producer(void *arg)
{
    struct prod_arg *a = arg;
    k2p_ring *r = &a->m->rings[a->idx];
    for (uint64_t i = 1; i <= a->m->n; i++) {
        if (k2p_ring_push_wait(r, ITEM(i), 10LL * 1000000000) != 0) {
            a->failed = 1;
            break;
        }
    }
    k2p_ring_close(r);
    return NULL;
}

static int any_ready(void *arg)
{
    struct multi_ctx *m = arg;
    for (int i = 0; i < NRINGS; i++) {
        if (k2p_ring_ready_to_pop(&m->rings[i]))
            return 1;
    }
    return 0;
}

static void test_shared_consumer_waiter(void **state)
{
    struct multi_ctx *m = calloc(1, sizeof *m);
    pthread_t th[NRINGS];
    struct prod_arg args[NRINGS];
    uint64_t expect[NRINGS];
    int open = NRINGS;
    (void)state;
    assert_non_null(m);
    m->n = stress_n() / 20;
    assert_int_equal(k2p_ring_waiter_init(&m->shared), 0);
    for (int i = 0; i < NRINGS; i++) {
        assert_int_equal(k2p_ring_init(&m->rings[i], 16), 0);
        k2p_ring_attach(&m->rings[i], &m->shared, NULL);
        expect[i] = 1;
    }
    for (int i = 0; i < NRINGS; i++) {
        args[i].m = m;
        args[i].idx = i;
        args[i].failed = 0;
        assert_int_equal(pthread_create(&th[i], NULL, multi_producer, &args[i]), 0);
    }
    while (open > 0) {
        int progressed = 0;
        open = 0;
        for (int i = 0; i < NRINGS; i++) {
            void *p;
            int closed = k2p_ring_is_closed(&m->rings[i]);
            while ((p = k2p_ring_pop(&m->rings[i])) != NULL) {
                if ((uintptr_t)p != expect[i])
                    m->bad++;
                expect[i]++;
                progressed = 1;
            }
            if (!closed)
                open++;
        }
        if (open > 0 && !progressed)
            assert_int_equal(k2p_ring_waiter_wait(&m->shared, any_ready, m, 10LL * 1000000000), 0);
    }
    for (int i = 0; i < NRINGS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_false(args[i].failed);
        assert_int_equal(expect[i], m->n + 1);
        assert_null(k2p_ring_pop(&m->rings[i]));
        k2p_ring_deinit(&m->rings[i]);
    }
    assert_int_equal(m->bad, 0);
    k2p_ring_waiter_deinit(&m->shared);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rounds_capacity),
        cmocka_unit_test(test_full_and_empty),
        cmocka_unit_test(test_wrap_around_slots),
        cmocka_unit_test(test_wrap_around_counters),
        cmocka_unit_test(test_close_drains),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_idle_wait_burns_no_cpu),
        cmocka_unit_test(test_stress_lock_free),
        cmocka_unit_test(test_stress_blocking),
        cmocka_unit_test(test_shared_consumer_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

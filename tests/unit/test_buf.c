/* test_buf.c - the bounded buffer and its cache of big blocks (buf.c).
 * Threading: single-threaded, except test_pool_threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

static int setup(void **state)
{
    (void)state;
    k2p_buf_pool_set_max(K2P_BUF_POOL_DEFAULT_MAX);
    k2p_buf_pool_drain();
    return 0;
}

static void test_basics(void **state)
{
    k2p_buf b;
    (void)state;
    k2p_buf_init(&b, 8);
    assert_int_equal(k2p_buf_puts(&b, "abc"), 0);
    assert_int_equal(k2p_buf_printf(&b, "%d", 42), 0);
    assert_string_equal(b.data, "abc42");
    assert_int_equal(k2p_buf_append(&b, "xyzw", 4), K2P_ENOMEM); /* over max: unchanged */
    assert_string_equal(b.data, "abc42");
    k2p_buf_deinit(&b);
    assert_null(b.data);
}

/* A freed big block is cached and is what the next big reservation gets; small ones are not. */
static void test_pool_reuses_big_blocks(void **state)
{
    k2p_buf a, b;
    char *block;
    (void)state;
    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 3 << 20), 0);
    memset(a.data, 'x', 3 << 20);
    block = a.data;
    k2p_buf_deinit(&a);
    assert_true(k2p_buf_pool_bytes() >= (size_t)3 << 20);

    k2p_buf_init(&b, 0);
    assert_int_equal(k2p_buf_puts(&b, "keep me"), 0); /* small first, then big */
    assert_int_equal(k2p_buf_reserve(&b, 2 << 20), 0);
    assert_ptr_equal(b.data, block);
    assert_string_equal(b.data, "keep me"); /* contents moved along */
    assert_int_equal(k2p_buf_pool_bytes(), 0);
    k2p_buf_deinit(&b);

    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 1000), 0);
    k2p_buf_deinit(&a);
    assert_int_equal(k2p_buf_pool_bytes(), (size_t)4 << 20); /* only the big one */
    k2p_buf_pool_drain();
    assert_int_equal(k2p_buf_pool_bytes(), 0);
}

/* A cached block smaller than asked for is grown (its pages kept), not passed over. */
static void test_pool_grows_small_cached_block(void **state)
{
    k2p_buf a;
    (void)state;
    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 1 << 20), 0); /* a 2 MiB block */
    k2p_buf_deinit(&a);
    assert_int_equal(k2p_buf_pool_bytes(), (size_t)2 << 20);
    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 5 << 20), 0);
    assert_true(a.cap >= ((size_t)5 << 20) + 1);
    memset(a.data, 'y', 5 << 20);
    assert_int_equal(k2p_buf_pool_bytes(), 0);
    k2p_buf_deinit(&a);
    k2p_buf_pool_drain();
}

/* The cache never holds more than its bound: the oldest blocks leave first. */
static void test_pool_bound(void **state)
{
    k2p_buf bufs[6];
    (void)state;
    k2p_buf_pool_set_max((size_t)10 << 20);
    for (int i = 0; i < 6; i++) {
        k2p_buf_init(&bufs[i], 0);
        assert_int_equal(k2p_buf_reserve(&bufs[i], 3 << 20), 0); /* 4 MiB blocks */
    }
    for (int i = 0; i < 6; i++) {
        k2p_buf_deinit(&bufs[i]);
        assert_true(k2p_buf_pool_bytes() <= (size_t)10 << 20);
    }
    assert_int_equal(k2p_buf_pool_bytes(), (size_t)8 << 20);
    k2p_buf_pool_set_max(0); /* no cache at all */
    assert_int_equal(k2p_buf_pool_bytes(), 0);
    k2p_buf_init(&bufs[0], 0);
    assert_int_equal(k2p_buf_reserve(&bufs[0], 3 << 20), 0);
    k2p_buf_deinit(&bufs[0]);
    assert_int_equal(k2p_buf_pool_bytes(), 0);
    k2p_buf_pool_set_max(K2P_BUF_POOL_DEFAULT_MAX);
}

/* With a limit, big blocks in use plus cached ones stay within it: a freed block is cached
 * only into room it gave back, and blocks in use growing push cached ones out. */
static void test_pool_limit_counts_blocks_in_use(void **state)
{
    k2p_buf a, b, c;
    (void)state;
    k2p_buf_pool_set_limit((size_t)12 << 20);
    k2p_buf_init(&a, 0);
    k2p_buf_init(&b, 0);
    k2p_buf_init(&c, 0);
    assert_int_equal(k2p_buf_big_bytes(), 0);
    assert_int_equal(k2p_buf_reserve(&a, 3 << 20), 0); /* 4 MiB blocks */
    assert_int_equal(k2p_buf_reserve(&b, 3 << 20), 0);
    assert_int_equal(k2p_buf_big_bytes(), (size_t)8 << 20);
    k2p_buf_deinit(&a); /* 4 in use + 4 cached <= 12 */
    assert_int_equal(k2p_buf_pool_bytes(), (size_t)4 << 20);
    assert_int_equal(k2p_buf_big_bytes(), (size_t)4 << 20);

    assert_int_equal(k2p_buf_reserve(&c, 7 << 20), 0); /* a fresh 8 MiB one: 12 in use */
    assert_int_equal(k2p_buf_big_bytes(), (size_t)12 << 20);
    assert_int_equal(k2p_buf_pool_bytes(), 0); /* the cached block made room */
    k2p_buf_deinit(&b);
    assert_int_equal(k2p_buf_pool_bytes(), (size_t)4 << 20);

    /* Shrinking below the big size, and stealing, stop counting the block. */
    assert_int_equal(k2p_buf_puts(&c, "x"), 0);
    k2p_buf_shrink(&c);
    assert_int_equal(k2p_buf_big_bytes(), 0);
    k2p_buf_deinit(&c);
    assert_int_equal(k2p_buf_reserve(&a, 3 << 20), 0); /* takes the cached block */
    assert_int_equal(k2p_buf_pool_bytes(), 0);
    free(k2p_buf_steal(&a, NULL));
    assert_int_equal(k2p_buf_big_bytes(), 0);

    k2p_buf_pool_set_limit(SIZE_MAX);
    k2p_buf_pool_drain();
}

/* Shrink and steal still give back plain malloc blocks, whatever the cache did. */
static void test_shrink_and_steal(void **state)
{
    k2p_buf a;
    char *p;
    size_t len;
    (void)state;
    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 3 << 20), 0);
    k2p_buf_deinit(&a);
    k2p_buf_init(&a, 0);
    assert_int_equal(k2p_buf_reserve(&a, 2 << 20), 0); /* from the cache */
    memset(a.data, 'z', 1 << 20);
    a.len = 1 << 20;
    a.data[a.len] = '\0';
    k2p_buf_shrink(&a);
    assert_int_equal(a.cap, ((size_t)1 << 20) + 1);
    p = k2p_buf_steal(&a, &len);
    assert_int_equal(len, (size_t)1 << 20);
    assert_int_equal(p[len - 1], 'z');
    free(p);
    k2p_buf_pool_drain();
}

static void *churn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        k2p_buf b;
        k2p_buf_init(&b, 0);
        if (k2p_buf_reserve(&b, (size_t)(1 + i % 3) << 20) != 0)
            return (void *)1;
        memset(b.data, i, 4096);
        k2p_buf_deinit(&b);
    }
    return NULL;
}

/* Readers and writers free and take blocks from several threads. */
static void test_pool_threads(void **state)
{
    pthread_t t[4];
    void *rv;
    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_true(k2p_buf_pool_bytes() <= K2P_BUF_POOL_DEFAULT_MAX);
    k2p_buf_pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basics, setup),
        cmocka_unit_test_setup(test_pool_reuses_big_blocks, setup),
        cmocka_unit_test_setup(test_pool_grows_small_cached_block, setup),
        cmocka_unit_test_setup(test_pool_bound, setup),
        cmocka_unit_test_setup(test_pool_limit_counts_blocks_in_use, setup),
        cmocka_unit_test_setup(test_shrink_and_steal, setup),
        cmocka_unit_test_setup(test_pool_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_shard_plan.c - the incremental rules 1-4 of DESIGN §1, including the cases dlt gets
 * wrong (a shard a cut-short run never reached; children of parents we read).
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "shard_plan.h"

#define T0 1700000000000000LL
#define RUN (T0 + 3600000000LL)

static k2p_shard_ckpt ck(const char *id, const char *seq, int64_t start)
{
    k2p_shard_ckpt c;
    memset(&c, 0, sizeof c);
    c.shard_id = (char *)id;
    c.seq = (char *)seq;
    c.start_at_us = start;
    return c;
}

static void test_first_run_uses_from(void **state)
{
    k2p_stream_state st = {NULL, 0, -1};
    k2p_plan_ctx ctx = {{K2P_FROM_LATEST, 0}, RUN, -1};
    k2p_plan p;
    (void)state;
    p = k2p_plan_shard(&st, "s0", NULL, 0, &ctx);
    assert_true(p.is_new);
    assert_null(p.seq);
    assert_int_equal(p.start_at_us, RUN); /* latest = this run's start, persisted as a time */
    ctx.from.kind = K2P_FROM_TRIM_HORIZON;
    assert_int_equal(k2p_plan_shard(&st, "s0", NULL, 0, &ctx).start_at_us, -1);
    ctx.from.kind = K2P_FROM_AT_TIMESTAMP;
    ctx.from.at_us = T0;
    assert_int_equal(k2p_plan_shard(&st, "s0", NULL, 0, &ctx).start_at_us, T0);
}

static void test_checkpoint_and_unreached_rows(void **state)
{
    k2p_shard_ckpt rows[] = {ck("s0", "123", -1), ck("s1", NULL, T0), ck("s2", NULL, -1)};
    k2p_stream_state st = {rows, 3, T0};
    k2p_plan_ctx ctx = {{K2P_FROM_LATEST, 0}, RUN, T0};
    k2p_plan p;
    (void)state;
    p = k2p_plan_shard(&st, "s0", NULL, 0, &ctx); /* rule 1 */
    assert_false(p.is_new);
    assert_string_equal(p.seq, "123");
    /* A shard the previous run never reached keeps its recorded start (dlt would skip it). */
    p = k2p_plan_shard(&st, "s1", NULL, 0, &ctx);
    assert_false(p.is_new);
    assert_null(p.seq);
    assert_int_equal(p.start_at_us, T0);
    assert_int_equal(k2p_plan_shard(&st, "s2", NULL, 0, &ctx).start_at_us, -1);
}

static void test_new_shard_later_run(void **state)
{
    k2p_shard_ckpt rows[] = {ck("s0", "5", -1)};
    k2p_stream_state st = {rows, 1, T0};
    k2p_plan_ctx ctx = {{K2P_FROM_TRIM_HORIZON, 0}, RUN, T0};
    const char *unknown[] = {"gone-parent"};
    k2p_plan p;
    (void)state;
    p = k2p_plan_shard(&st, "s9", NULL, 0, &ctx); /* rule 3 */
    assert_true(p.is_new);
    assert_int_equal(p.start_at_us, T0 - 1000000);
    p = k2p_plan_shard(&st, "s9", unknown, 1, &ctx); /* parent expired: same rule */
    assert_int_equal(p.start_at_us, T0 - 1000000);
}

static void test_children_of_read_parents(void **state)
{
    k2p_shard_ckpt rows[] = {ck("p0", "77", T0), ck("p1", NULL, T0 + 5), ck("p2", NULL, T0 + 9),
                             ck("p3", NULL, -1)};
    k2p_stream_state st = {rows, 4, T0};
    k2p_plan_ctx ctx = {{K2P_FROM_LATEST, 0}, RUN, T0};
    const char *a[] = {"p0"}, *b[] = {"p1", "p2"}, *c[] = {"p3"}, *d[] = {"p1", "p0"};
    (void)state;
    /* Rule 4: a parent that delivered records: read the child whole. */
    assert_int_equal(k2p_plan_shard(&st, "c", a, 1, &ctx).start_at_us, -1);
    assert_int_equal(k2p_plan_shard(&st, "c", d, 2, &ctx).start_at_us, -1);
    /* Parents read from a time but empty: the child from the earliest of those times. */
    assert_int_equal(k2p_plan_shard(&st, "c", b, 2, &ctx).start_at_us, T0 + 5);
    /* A parent read from TRIM_HORIZON: the child too, whatever --from says. */
    assert_int_equal(k2p_plan_shard(&st, "c", c, 1, &ctx).start_at_us, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_run_uses_from),
        cmocka_unit_test(test_checkpoint_and_unreached_rows),
        cmocka_unit_test(test_new_shard_later_run),
        cmocka_unit_test(test_children_of_read_parents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

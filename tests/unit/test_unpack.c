/* test_unpack.c - unit tests of src/unpack.c: a Kinesis record's user records (KPL
 * de-aggregation, then --decompress per payload).
 *
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "kinesis2pg/common.h"
#include "kinesis2pg/payload_decode.h"
#include "kinesis2pg/unpack.h"
#include "pb_build.h"

static k2p_record rec_of(const void *data, size_t n, const char *pkey)
{
    k2p_record r = {0};
    r.seq = "42";
    r.seq_len = 2;
    r.pkey = pkey;
    r.pkey_len = (uint32_t)strlen(pkey);
    r.data = data;
    r.data_len = (uint32_t)n;
    return r;
}

static void zstd_of(const char *s, k2p_pb *out)
{
    size_t n = strlen(s), cap = ZSTD_compressBound(n);
    uint8_t *p = malloc(cap);
    size_t got;
    assert_non_null(p);
    got = ZSTD_compress(p, cap, s, n, 1);
    assert_false(ZSTD_isError(got));
    k2p_pb_raw(out, p, got);
    free(p);
}

static void expect(const k2p_user_record *ur, const char *pkey, const char *data, long long sub)
{
    assert_int_equal(ur->pkey_len, strlen(pkey));
    assert_memory_equal(ur->pkey, pkey, ur->pkey_len);
    assert_int_equal(ur->data_len, strlen(data));
    assert_memory_equal(ur->data, data, ur->data_len);
    assert_int_equal(ur->has_sub_seq, sub >= 0);
    if (sub >= 0)
        assert_int_equal(ur->sub_seq, sub);
    assert_null(ur->reason);
}

static void test_plain_record(void **state)
{
    k2p_unpacker u;
    k2p_user_record ur;
    k2p_record r = rec_of("{\"a\":1}", 7, "pk");
    (void)state;
    k2p_unpacker_init(&u, K2P_DECOMPRESS_AUTO, 0);
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    expect(&ur, "pk", "{\"a\":1}", -1);
    assert_ptr_equal(ur.data, r.data); /* no copy */
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);
    /* an empty payload is one (empty) user record */
    r = rec_of(NULL, 0, "e");
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_int_equal(ur.data_len, 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);
    k2p_unpacker_deinit(&u);
}

static void test_aggregate_of_compressed(void **state)
{
    k2p_unpacker u;
    k2p_user_record ur;
    k2p_pb body = {0}, data = {0}, z = {0};
    k2p_record r;
    (void)state;
    zstd_of("{\"z\":true}", &z);
    k2p_pb_str(&body, 1, "k0");
    k2p_pb_str(&body, 1, "k1");
    k2p_pb_kpl_record(&body, 1, -1, "{\"i\":0}", 7);
    k2p_pb_kpl_record(&body, 0, -1, z.p, z.n);
    k2p_pb_kpl_record(&body, 1, -1, "\x28\xb5\x2f\xfd" "bad", 7);
    k2p_pb_kpl_wrap(&data, &body);
    r = rec_of(data.p, data.n, "outer");

    k2p_unpacker_init(&u, K2P_DECOMPRESS_AUTO, 0);
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    expect(&ur, "k1", "{\"i\":0}", 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    expect(&ur, "k0", "{\"z\":true}", 1);
    /* a user record that fails to decompress: a dead letter with its own (original) bytes */
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_non_null(ur.reason);
    assert_memory_equal(ur.reason, "zstd: ", 6);
    assert_true(ur.has_sub_seq);
    assert_int_equal(ur.sub_seq, 2);
    assert_int_equal(ur.data_len, 7);
    assert_memory_equal(ur.data, "\x28\xb5\x2f\xfd" "bad", 7);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);

    /* --decompress none: the compressed bytes as they are */
    k2p_unpacker_deinit(&u);
    k2p_unpacker_init(&u, K2P_DECOMPRESS_NONE, 0);
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_int_equal(ur.data_len, z.n);
    assert_memory_equal(ur.data, z.p, z.n);
    assert_null(ur.reason);

    /* trimming between records frees what grew, and the unpacker keeps working */
    k2p_unpacker_trim(&u, 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0); /* trim ends the record */
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    expect(&ur, "k1", "{\"i\":0}", 0);
    k2p_unpacker_deinit(&u);
    k2p_pb_free(&body);
    k2p_pb_free(&data);
    k2p_pb_free(&z);
}

static void test_empty_and_corrupt_aggregates(void **state)
{
    k2p_unpacker u;
    k2p_user_record ur;
    k2p_pb body = {0}, data = {0};
    k2p_record r;
    (void)state;
    k2p_unpacker_init(&u, K2P_DECOMPRESS_AUTO, 0);

    k2p_pb_str(&body, 1, "unused");
    k2p_pb_kpl_wrap(&data, &body);
    r = rec_of(data.p, data.n, "outer");
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0); /* no user records */

    k2p_pb_kpl_record(&body, 3, -1, "{}", 2); /* key index out of range */
    data.n = 0;
    k2p_pb_kpl_wrap(&data, &body);
    r = rec_of(data.p, data.n, "outer");
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_non_null(ur.reason);
    assert_non_null(strstr(ur.reason, "out of range"));
    assert_false(ur.has_sub_seq);
    assert_ptr_equal(ur.data, r.data); /* the whole record is kept */
    assert_int_equal(ur.data_len, r.data_len);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);

    /* a wrong MD5: an ordinary record, passed through */
    data.p[data.n - 1] ^= 0x80;
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_null(ur.reason);
    assert_ptr_equal(ur.data, r.data);
    assert_int_equal(k2p_unpack_next(&u, &ur), 0);
    k2p_unpacker_deinit(&u);
    k2p_pb_free(&body);
    k2p_pb_free(&data);
}

static void test_bomb_names_the_limit(void **state)
{
    k2p_unpacker u;
    k2p_user_record ur;
    k2p_pb z = {0};
    char *big = malloc(4096 + 1);
    k2p_record r;
    (void)state;
    assert_non_null(big);
    memset(big, ' ', 4096);
    big[4096] = '\0';
    zstd_of(big, &z);
    r = rec_of(z.p, z.n, "b");
    k2p_unpacker_init(&u, K2P_DECOMPRESS_AUTO, 1000);
    assert_int_equal(k2p_unpack_begin(&u, &r), 0);
    assert_int_equal(k2p_unpack_next(&u, &ur), 1);
    assert_non_null(ur.reason);
    assert_non_null(strstr(ur.reason, "decompression bomb"));
    assert_non_null(strstr(ur.reason, "more than 1000 bytes"));
    assert_ptr_equal(ur.data, r.data);
    k2p_unpacker_deinit(&u);
    k2p_pb_free(&z);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_record),
        cmocka_unit_test(test_aggregate_of_compressed),
        cmocka_unit_test(test_empty_and_corrupt_aggregates),
        cmocka_unit_test(test_bomb_names_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

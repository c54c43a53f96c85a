/* test_base64.c - unit tests of the base64 codec (src/base64.c): RFC 4648 vectors, every byte
 * value and every length round trip, and strict rejection of malformed input.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"

/* RFC 4648 §10. */
static const struct {
    const char *plain, *encoded;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_lengths(void **state)
{
    (void)state;
    assert_int_equal(k2p_base64_encoded_len(0), 0);
    assert_int_equal(k2p_base64_encoded_len(1), 4);
    assert_int_equal(k2p_base64_encoded_len(2), 4);
    assert_int_equal(k2p_base64_encoded_len(3), 4);
    assert_int_equal(k2p_base64_encoded_len(4), 8);
    assert_int_equal(k2p_base64_encoded_len(1048576), 1398104);
    assert_int_equal(k2p_base64_decoded_max(0), 0);
    assert_int_equal(k2p_base64_decoded_max(4), 3);
    assert_int_equal(k2p_base64_decoded_max(5), 6);
    assert_int_equal(k2p_base64_decoded_max(8), 6);
    assert_int_equal(k2p_base64_decoded_max(1398104), 1048578);
}

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        const char *p = rfc4648[i].plain, *e = rfc4648[i].encoded;
        char enc[16];
        uint8_t dec[16];
        size_t pn = strlen(p), en = strlen(e);

        memset(enc, 'X', sizeof enc);
        assert_int_equal(k2p_base64_encoded_len(pn), en);
        assert_int_equal(k2p_base64_encode((const uint8_t *)p, pn, enc), en);
        assert_string_equal(enc, e);

        assert_true(k2p_base64_decoded_max(en) >= pn);
        assert_int_equal(k2p_base64_decode(e, en, dec), (long)pn);
        assert_memory_equal(dec, p, pn);
    }
}

static void test_alphabet(void **state)
{
    /* Bytes chosen so the encoding walks the whole alphabet, '+' and '/' included. */
    static const uint8_t bytes[] = {0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30,
                                    0xd3, 0x8f, 0x41, 0x14, 0x93, 0x51, 0x55, 0x97, 0x61, 0x96,
                                    0x9b, 0x71, 0xd7, 0x9f, 0x82, 0x18, 0xa3, 0x92, 0x59, 0xa7,
                                    0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf, 0xc3, 0x1c, 0xb3, 0xd3,
                                    0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf};
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char enc[65];
    uint8_t dec[48];
    (void)state;
    assert_int_equal(k2p_base64_encode(bytes, sizeof bytes, enc), 64);
    assert_string_equal(enc, alphabet);
    assert_int_equal(k2p_base64_decode(alphabet, 64, dec), 48);
    assert_memory_equal(dec, bytes, sizeof bytes);
}

static void test_every_byte_round_trip(void **state)
{
    uint8_t all[256], dec[256 + 3];
    char enc[344 + 1];
    (void)state;
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;

    /* Every byte value at every position in a quantum, and every length up to 256. */
    for (size_t off = 0; off < 3; off++) {
        for (size_t n = 0; n + off <= 256; n++) {
            size_t en = k2p_base64_encode(all + off, n, enc);
            assert_int_equal(en, k2p_base64_encoded_len(n));
            assert_int_equal(strlen(enc), en);
            assert_int_equal(k2p_base64_decode(enc, en, dec), (long)n);
            assert_memory_equal(dec, all + off, n);
        }
    }
    /* Each single byte, alone. */
    for (int i = 0; i < 256; i++) {
        uint8_t b = (uint8_t)i;
        assert_int_equal(k2p_base64_encode(&b, 1, enc), 4);
        assert_int_equal(k2p_base64_decode(enc, 4, dec), 1);
        assert_int_equal(dec[0], b);
    }
}

static void test_large_round_trip(void **state)
{
    size_t n = 1 << 20;
    uint8_t *in = malloc(n), *out = malloc(k2p_base64_decoded_max(k2p_base64_encoded_len(n)));
    char *enc = malloc(k2p_base64_encoded_len(n) + 1);
    uint32_t x = 2463534242u;
    (void)state;
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(enc);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
        in[i] = (uint8_t)x;
    }
    assert_int_equal(k2p_base64_encode(in, n, enc), k2p_base64_encoded_len(n));
    assert_int_equal(k2p_base64_decode(enc, k2p_base64_encoded_len(n), out), (long)n);
    assert_memory_equal(in, out, n);
    free(in);
    free(out);
    free(enc);
}

static long dec(const char *s)
{
    uint8_t out[64];
    return k2p_base64_decode(s, strlen(s), out);
}

static void test_invalid_length(void **state)
{
    (void)state;
    assert_int_equal(dec("Z"), -1);
    assert_int_equal(dec("Zg"), -1);
    assert_int_equal(dec("Zg="), -1);
    assert_int_equal(dec("Zm9"), -1);
    assert_int_equal(dec("Zm9vY"), -1);
    assert_int_equal(dec("Zm9vYg=== "), -1);
}

static void test_invalid_padding(void **state)
{
    (void)state;
    assert_int_equal(dec("===="), -1);
    assert_int_equal(dec("Z==="), -1);
    assert_int_equal(dec("=Zg="), -1);
    assert_int_equal(dec("Zg=a"), -1);
    assert_int_equal(dec("Z=g="), -1);
    /* Padding only at the very end, never inside the data. */
    assert_int_equal(dec("Zg==Zm9v"), -1);
    assert_int_equal(dec("Zm8=Zm9v"), -1);
    assert_int_equal(dec("Zm9vYg==Zg=="), -1);
    /* Non-zero bits under the padding: only the canonical encoding is accepted. */
    assert_int_equal(dec("Zh=="), -1);
    assert_int_equal(dec("Zm9="), -1);
    assert_int_equal(dec("Zg=="), 1);
    assert_int_equal(dec("Zm8="), 2);
}

static void test_invalid_characters(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t out[16];
    (void)state;
    assert_int_equal(dec("Zm9v Yg=="), -1);
    assert_int_equal(dec("Zm9v\nYg=="), -1);
    assert_int_equal(dec("Zm9-"), -1); /* base64url is not accepted */
    assert_int_equal(dec("Zm9_"), -1);

    /* Every byte outside the alphabet, at every position of a first and a last quantum. */
    for (int c = 0; c < 256; c++) {
        if (c == '=' || (c != 0 && strchr(alphabet, c)))
            continue;
        for (int pos = 0; pos < 8; pos++) {
            char s[9] = "Zm9vYmFy";
            s[pos] = (char)c;
            assert_int_equal(k2p_base64_decode(s, 8, out), -1);
        }
    }
}

int main(void)
{
    /* clang-format off */
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_alphabet),
        cmocka_unit_test(test_every_byte_round_trip),
        cmocka_unit_test(test_large_round_trip),
        cmocka_unit_test(test_invalid_length),
        cmocka_unit_test(test_invalid_padding),
        cmocka_unit_test(test_invalid_characters),
    };
    /* clang-format on */
    return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}

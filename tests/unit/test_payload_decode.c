/* test_payload_decode.c - unit tests of --decompress (src/payload_decode.c): zstd and gzip
 * round trips compressed here with libzstd and zlib (text, JSON, binary, empty, several frames
 * or members, skippable frames), the exact output limit, 1 GiB bombs refused at the limit with
 * bounded memory, truncated, corrupt and trailing-garbage inputs, forced modes, and passthrough
 * of plain payloads that start like a magic.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zlib.h>
#include <zstd.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"
#include "kinesis2pg/payload_decode.h"

#define MiB ((size_t)1 << 20)

/* ------------------------------------------------------------------------------------------ */
/* Helpers: compressors and inputs                                                             */

/* A growable byte vector for compressed data built by the tests. */
typedef struct vec {
    uint8_t *p;
    size_t n, cap;
} vec;

static void vec_put(vec *v, const void *p, size_t n)
{
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 1024;
        while (cap < v->n + n)
            cap *= 2;
        v->p = realloc(v->p, cap);
        assert_non_null(v->p);
        v->cap = cap;
    }
    if (n)
        memcpy(v->p + v->n, p, n);
    v->n += n;
}

static void vec_free(vec *v)
{
    free(v->p);
    memset(v, 0, sizeof *v);
}

/* chunk[0..n) = gen(at + i), or zeros without gen. */
static void fill(uint8_t *chunk, size_t n, size_t at, uint8_t (*gen)(size_t))
{
    if (!gen) {
        memset(chunk, 0, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        chunk[i] = gen(at + i);
}

/* One zstd frame of `n` bytes of src, with the content size in the header and a checksum. */
static void zstd_frame(vec *v, const void *src, size_t n, int level)
{
    size_t bound = ZSTD_compressBound(n), r;
    uint8_t *tmp = malloc(bound);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(tmp);
    assert_non_null(c);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)));
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)));
    r = ZSTD_compress2(c, tmp, bound, src, n);
    assert_false(ZSTD_isError(r));
    vec_put(v, tmp, r);
    ZSTD_freeCCtx(c);
    free(tmp);
}

/* A zstd frame as a stream compressor writes it without knowing the size: no content size in
 * the header, so the decoder cannot take its one-pass shortcut. `total` bytes, each from
 * gen(i) (NULL: zeros), fed in 64 KiB pieces; wlog 0 leaves the window to the level. */
static void zstd_stream(vec *v, size_t total, uint8_t (*gen)(size_t), int level, int wlog)
{
    static uint8_t chunk[64 * 1024];
    uint8_t outb[64 * 1024];
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t done = 0;
    assert_non_null(c);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)));
    if (wlog)
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog)));
    for (;;) {
        size_t piece = K2P_MIN(sizeof chunk, total - done);
        ZSTD_EndDirective mode = done + piece == total ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer in = {chunk, piece, 0};
        size_t left;
        /* The first call must not be ZSTD_e_end, or zstd learns the size after all. */
        if (done == 0 && mode == ZSTD_e_end && piece > 0) {
            piece = 1;
            in.size = 1;
            mode = ZSTD_e_continue;
        }
        fill(chunk, piece, done, gen);
        do {
            ZSTD_outBuffer out = {outb, sizeof outb, 0};
            left = ZSTD_compressStream2(c, &out, &in, mode);
            assert_false(ZSTD_isError(left));
            vec_put(v, outb, out.pos);
        } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
        done += piece;
        if (mode == ZSTD_e_end)
            break;
    }
    ZSTD_freeCCtx(c);
}

/* One gzip member of `total` bytes from gen(i) (NULL: zeros), or of src when src != NULL. */
static void gzip_member(vec *v, const void *src, size_t total, uint8_t (*gen)(size_t), int level)
{
    static uint8_t chunk[64 * 1024];
    uint8_t outb[64 * 1024];
    z_stream zs;
    size_t done = 0;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    for (;;) {
        size_t piece = K2P_MIN(sizeof chunk, total - done);
        int flush = done + piece == total ? Z_FINISH : Z_NO_FLUSH, zr;
        if (src) {
            zs.next_in = (Bytef *)(uintptr_t)((const uint8_t *)src + done);
        } else {
            fill(chunk, piece, done, gen);
            zs.next_in = chunk;
        }
        zs.avail_in = (uInt)piece;
        do {
            zs.next_out = outb;
            zs.avail_out = sizeof outb;
            zr = deflate(&zs, flush);
            assert_true(zr == Z_OK || zr == Z_STREAM_END || zr == Z_BUF_ERROR);
            vec_put(v, outb, sizeof outb - zs.avail_out);
        } while (zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
        done += piece;
        if (flush == Z_FINISH)
            break;
    }
    deflateEnd(&zs);
}

static uint8_t gen_binary(size_t i)
{
    /* xorshift-ish, deterministic, poorly compressible */
    uint32_t x = (uint32_t)i * 2654435761u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    return (uint8_t)(x ^ (x >> 15));
}

static uint8_t gen_text(size_t i)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog; ";
    return (uint8_t)words[(i * 7 + i / 45) % (sizeof words - 1)];
}

static uint8_t *make(size_t n, uint8_t (*gen)(size_t))
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = gen(i);
    return p;
}

/* Decompresses and expects K2P_DECODED with exactly want[0..wn). */
static void expect_decoded(const vec *v, int mode, size_t max_out, const void *want, size_t wn)
{
    k2p_buf out;
    const char *reason = "unset";
    int rc;
    k2p_buf_init(&out, 0);
    rc = k2p_payload_decompress(v->p, v->n, mode, max_out, &out, &reason);
    if (rc != K2P_DECODED)
        fail_msg("rc %d, reason %s", rc, reason ? reason : "(null)");
    assert_null(reason);
    assert_int_equal(out.len, wn);
    assert_non_null(out.data);
    assert_int_equal(out.data[out.len], '\0');
    if (wn)
        assert_memory_equal(out.data, want, wn);
    assert_true(out.cap <= max_out + 1);
    k2p_buf_deinit(&out);
}

/* Decompresses and expects K2P_DECODE_FAILED with a reason containing `needle`. */
static void expect_failed(const void *p, size_t n, int mode, size_t max_out, const char *needle)
{
    k2p_buf out;
    const char *reason = NULL;
    int rc;
    k2p_buf_init(&out, 0);
    k2p_buf_append(&out, "stale", 5);
    rc = k2p_payload_decompress(p, n, mode, max_out, &out, &reason);
    if (rc != K2P_DECODE_FAILED)
        fail_msg("n=%zu: rc %d (want failure with '%s')", n, rc, needle);
    assert_non_null(reason);
    if (!strstr(reason, needle))
        fail_msg("n=%zu: reason '%s' lacks '%s'", n, reason, needle);
    assert_int_equal(out.len, 0);
    k2p_buf_deinit(&out);
}

static void expect_passthrough(const void *p, size_t n, int mode)
{
    k2p_buf out;
    const char *reason = "unset";
    k2p_buf_init(&out, 0);
    k2p_buf_append(&out, "stale", 5);
    assert_int_equal(k2p_payload_decompress(p, n, mode, MiB, &out, &reason), K2P_PASSTHROUGH);
    assert_null(reason);
    assert_int_equal(out.len, 0);
    k2p_buf_deinit(&out);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* ------------------------------------------------------------------------------------------ */
/* Bombs (first, while the process's peak RSS is still small)                                  */

/* 1 GiB of zeros compressed to a few hundred KiB must be refused once the output reaches the
 * limit, without allocating (or touching) more than the limit. */
static void check_bomb(const vec *bomb, int mode, const char *name)
{
    const size_t limit = 8 * MiB;
    long before = max_rss_kib(), grew_kib;
    k2p_buf out;
    const char *reason = NULL;
    int rc;

    k2p_buf_init(&out, 0);
    rc = k2p_payload_decompress(bomb->p, bomb->n, mode, limit, &out, &reason);
    grew_kib = max_rss_kib() - before;
    assert_int_equal(rc, K2P_DECODE_FAILED);
    assert_non_null(reason);
    assert_non_null(strstr(reason, name));
    assert_non_null(strstr(reason, "larger than the limit"));
    assert_int_equal(out.len, 0);
    /* The buffer stopped at the limit (+ NUL) ... */
    assert_true(out.cap <= limit + 1);
    /* ... and the process never held much more than it: 1 GiB would show. */
    if (grew_kib > (long)(limit / 1024) + 48 * 1024)
        fail_msg("%s bomb: peak RSS grew by %ld KiB for a %zu KiB limit", name, grew_kib,
                 limit / 1024);
    k2p_buf_deinit(&out);
}

static void test_zstd_bomb(void **state)
{
    vec bomb = {0};
    (void)state;
    zstd_stream(&bomb, (size_t)1 << 30, NULL, 1, 0);
    assert_true(bomb.n < 512 * 1024);
    check_bomb(&bomb, K2P_DECOMPRESS_AUTO, "zstd: ");
    check_bomb(&bomb, K2P_DECOMPRESS_ZSTD, "zstd: ");
    vec_free(&bomb);
}

static void test_zstd_bomb_declared_size(void **state)
{
    /* A frame that honestly declares 1 GiB: refused by the window limit or at the limit. */
    vec bomb = {0};
    ZSTD_CCtx *c = ZSTD_createCCtx();
    static uint8_t zeros[64 * 1024];
    uint8_t outb[64 * 1024];
    k2p_buf out;
    const char *reason = NULL;
    (void)state;
    assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, (size_t)1 << 30)));
    for (size_t done = 0; done < ((size_t)1 << 30); done += sizeof zeros) {
        int last = done + sizeof zeros == ((size_t)1 << 30);
        ZSTD_inBuffer in = {zeros, sizeof zeros, 0};
        size_t left;
        do {
            ZSTD_outBuffer o = {outb, sizeof outb, 0};
            left = ZSTD_compressStream2(c, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
            assert_false(ZSTD_isError(left));
            vec_put(&bomb, outb, o.pos);
        } while (last ? left != 0 : in.pos < in.size);
    }
    ZSTD_freeCCtx(c);
    assert_int_equal(ZSTD_getFrameContentSize(bomb.p, bomb.n), (unsigned long long)1 << 30);
    k2p_buf_init(&out, 0);
    assert_int_equal(
        k2p_payload_decompress(bomb.p, bomb.n, K2P_DECOMPRESS_AUTO, 4 * MiB, &out, &reason),
        K2P_DECODE_FAILED);
    assert_non_null(strstr(reason, "limit (decompression bomb?)"));
    assert_true(out.cap <= 4 * MiB + 1);
    k2p_buf_deinit(&out);
    vec_free(&bomb);
}

static void test_gzip_bomb(void **state)
{
    vec bomb = {0};
    (void)state;
    gzip_member(&bomb, NULL, (size_t)1 << 30, NULL, 1);
    assert_true(bomb.n < 8 * MiB);
    check_bomb(&bomb, K2P_DECOMPRESS_AUTO, "gzip: ");
    check_bomb(&bomb, K2P_DECOMPRESS_GZIP, "gzip: ");
    vec_free(&bomb);
}

/* ------------------------------------------------------------------------------------------ */
/* Round trips                                                                                 */

static const char json[] =
    "{\"id\":42,\"name\":\"caf\xc3\xa9\",\"tags\":[\"a\",\"b\"],\"ok\":true}";

static void test_zstd_round_trips(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 70000, 3 * MiB + 17};
    (void)state;
    for (size_t s = 0; s < K2P_ARRAY_LEN(sizes); s++) {
        uint8_t *bin = make(sizes[s], gen_binary), *txt = make(sizes[s], gen_text);
        vec a = {0}, b = {0}, c = {0}, d = {0};
        zstd_frame(&a, bin, sizes[s], 3);
        zstd_frame(&b, txt, sizes[s], 19);
        zstd_stream(&c, sizes[s], gen_text, 1, 0);
        zstd_stream(&d, sizes[s], gen_binary, 3, 0);
        expect_decoded(&a, K2P_DECOMPRESS_AUTO, 4 * MiB, bin, sizes[s]);
        expect_decoded(&b, K2P_DECOMPRESS_ZSTD, 4 * MiB, txt, sizes[s]);
        expect_decoded(&c, K2P_DECOMPRESS_AUTO, 4 * MiB, txt, sizes[s]);
        expect_decoded(&d, K2P_DECOMPRESS_ZSTD, 4 * MiB, bin, sizes[s]);
        vec_free(&a);
        vec_free(&b);
        vec_free(&c);
        vec_free(&d);
        free(bin);
        free(txt);
    }
}

static void test_zstd_json(void **state)
{
    vec v = {0};
    (void)state;
    zstd_frame(&v, json, strlen(json), 3);
    expect_decoded(&v, K2P_DECOMPRESS_AUTO, K2P_DECOMPRESS_DEFAULT_MAX, json, strlen(json));
    vec_free(&v);
}

static void test_zstd_multi_frame(void **state)
{
    /* frame, skippable frame, frame, frame of nothing, streamed frame: one output */
    static const uint8_t skippable[] = {0x5e, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'};
    uint8_t *txt = make(200000, gen_text);
    vec v = {0}, want = {0};
    (void)state;
    zstd_frame(&v, "hello, ", 7, 3);
    vec_put(&want, "hello, ", 7);
    vec_put(&v, skippable, sizeof skippable);
    zstd_frame(&v, json, strlen(json), 1);
    vec_put(&want, json, strlen(json));
    zstd_frame(&v, "", 0, 1);
    zstd_stream(&v, 200000, gen_text, 5, 0);
    vec_put(&want, txt, 200000);
    expect_decoded(&v, K2P_DECOMPRESS_AUTO, MiB, want.p, want.n);
    vec_free(&v);
    vec_free(&want);
    free(txt);
}

static void test_zstd_skippable_only(void **state)
{
    /* A skippable frame first is still zstd; with nothing else the output is empty. */
    static const uint8_t skippable[] = {0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, '{', '}'};
    vec v = {0}, w = {0};
    (void)state;
    vec_put(&v, skippable, sizeof skippable);
    expect_decoded(&v, K2P_DECOMPRESS_AUTO, MiB, "", 0);
    vec_put(&w, skippable, sizeof skippable);
    zstd_frame(&w, json, strlen(json), 3);
    expect_decoded(&w, K2P_DECOMPRESS_AUTO, MiB, json, strlen(json));
    vec_free(&v);
    vec_free(&w);
}

static void test_gzip_round_trips(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 70000, 3 * MiB + 17};
    (void)state;
    for (size_t s = 0; s < K2P_ARRAY_LEN(sizes); s++) {
        uint8_t *bin = make(sizes[s], gen_binary), *txt = make(sizes[s], gen_text);
        vec a = {0}, b = {0};
        gzip_member(&a, bin, sizes[s], NULL, 6);
        gzip_member(&b, txt, sizes[s], NULL, 9);
        expect_decoded(&a, K2P_DECOMPRESS_AUTO, 4 * MiB, bin, sizes[s]);
        expect_decoded(&b, K2P_DECOMPRESS_GZIP, 4 * MiB, txt, sizes[s]);
        vec_free(&a);
        vec_free(&b);
        free(bin);
        free(txt);
    }
}

static void test_gzip_json_and_multi_member(void **state)
{
    uint8_t *bin = make(100000, gen_binary);
    vec v = {0}, want = {0}, j = {0};
    (void)state;
    gzip_member(&j, json, strlen(json), NULL, 6);
    expect_decoded(&j, K2P_DECOMPRESS_AUTO, K2P_DECOMPRESS_DEFAULT_MAX, json, strlen(json));
    /* as `cat a.gz b.gz c.gz` makes: three members, one of them empty */
    gzip_member(&v, json, strlen(json), NULL, 6);
    vec_put(&want, json, strlen(json));
    gzip_member(&v, "", 0, NULL, 6);
    gzip_member(&v, bin, 100000, NULL, 1);
    vec_put(&want, bin, 100000);
    expect_decoded(&v, K2P_DECOMPRESS_GZIP, MiB, want.p, want.n);
    vec_free(&v);
    vec_free(&want);
    vec_free(&j);
    free(bin);
}

/* ------------------------------------------------------------------------------------------ */
/* The limit, exactly                                                                          */

static void test_limit_boundary(void **state)
{
    const size_t n = 100000;
    uint8_t *txt = make(n, gen_text);
    vec zf = {0}, zs = {0}, gz = {0};
    (void)state;
    zstd_frame(&zf, txt, n, 3);          /* declares its size */
    zstd_stream(&zs, n, gen_text, 3, 0); /* does not */
    gzip_member(&gz, txt, n, NULL, 6);
    expect_decoded(&zf, K2P_DECOMPRESS_AUTO, n, txt, n);
    expect_decoded(&zs, K2P_DECOMPRESS_AUTO, n, txt, n);
    expect_decoded(&gz, K2P_DECOMPRESS_AUTO, n, txt, n);
    expect_failed(zf.p, zf.n, K2P_DECOMPRESS_AUTO, n - 1, "zstd: output larger than the limit");
    expect_failed(zs.p, zs.n, K2P_DECOMPRESS_AUTO, n - 1, "zstd: output larger than the limit");
    expect_failed(gz.p, gz.n, K2P_DECOMPRESS_AUTO, n - 1, "gzip: output larger than the limit");
    /* a limit of 0 takes only empty output */
    expect_failed(zf.p, zf.n, K2P_DECOMPRESS_AUTO, 0, "larger than the limit");
    vec_free(&zf);
    vec_free(&zs);
    vec_free(&gz);
    free(txt);
}

static void test_buffer_max_lowers_limit(void **state)
{
    /* out->max below max_out is the limit; and out->max is restored afterwards. */
    const size_t n = 50000;
    uint8_t *txt = make(n, gen_text);
    vec v = {0};
    k2p_buf out;
    const char *reason = NULL;
    (void)state;
    gzip_member(&v, txt, n, NULL, 6);
    k2p_buf_init(&out, 1000);
    assert_int_equal(k2p_payload_decompress(v.p, v.n, K2P_DECOMPRESS_AUTO, MiB, &out, &reason),
                     K2P_DECODE_FAILED);
    assert_non_null(strstr(reason, "larger than the limit"));
    assert_int_equal(out.max, 1000);
    assert_true(out.cap <= 1001);
    k2p_buf_deinit(&out);
    vec_free(&v);
    free(txt);
}

static void test_buffer_reuse(void **state)
{
    /* One buffer for many records, as the reader does: each result replaces the last. */
    vec a = {0}, b = {0};
    k2p_buf out;
    const char *reason;
    uint8_t *big = make(300000, gen_text);
    (void)state;
    zstd_frame(&a, big, 300000, 3);
    gzip_member(&b, "{}", 2, NULL, 6);
    k2p_buf_init(&out, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(k2p_payload_decompress(a.p, a.n, 0, MiB, &out, &reason), K2P_DECODED);
        assert_int_equal(out.len, 300000);
        assert_memory_equal(out.data, big, 300000);
        assert_int_equal(k2p_payload_decompress(b.p, b.n, 0, MiB, &out, &reason), K2P_DECODED);
        assert_int_equal(out.len, 2);
        assert_string_equal(out.data, "{}");
        assert_int_equal(k2p_payload_decompress("{}", 2, 0, MiB, &out, &reason), K2P_PASSTHROUGH);
        assert_int_equal(out.len, 0);
    }
    k2p_buf_deinit(&out);
    vec_free(&a);
    vec_free(&b);
    free(big);
}

static void test_zstd_window_limit(void **state)
{
    /* A small streamed payload that asks for a 128 MiB window: refused while the limit
     * rounds up to less (zstd would allocate the window before producing a byte). */
    uint8_t *txt = make(1000, gen_text);
    vec v = {0}, w = {0};
    (void)state;
    zstd_stream(&v, 1000, gen_text, 3, 27);
    expect_failed(v.p, v.n, K2P_DECOMPRESS_AUTO, 32 * MiB, "zstd: frame window larger");
    expect_failed(v.p, v.n, K2P_DECOMPRESS_AUTO, 64 * MiB, "zstd: frame window larger");
    expect_decoded(&v, K2P_DECOMPRESS_AUTO, 64 * MiB + 1, txt, 1000);
    expect_decoded(&v, K2P_DECOMPRESS_AUTO, 128 * MiB, txt, 1000);
    /* 8 MiB windows (zstd -19 on a stream) decode under any limit that fits the output */
    zstd_stream(&w, 1000, gen_text, 19, 23);
    expect_decoded(&w, K2P_DECOMPRESS_AUTO, 1000, txt, 1000);
    expect_failed(w.p, w.n, K2P_DECOMPRESS_AUTO, 999, "zstd: output larger than the limit");
    vec_free(&v);
    vec_free(&w);
    free(txt);
}

/* ------------------------------------------------------------------------------------------ */
/* Broken inputs                                                                               */

static void test_truncated(void **state)
{
    /* Every proper prefix that still shows the magic is a failure, never a short success. */
    uint8_t *txt = make(5000, gen_text);
    vec z = {0}, zs = {0}, g = {0};
    (void)state;
    zstd_frame(&z, txt, 5000, 3);
    zstd_stream(&zs, 5000, gen_text, 3, 0);
    gzip_member(&g, txt, 5000, NULL, 6);
    for (size_t n = 4; n < z.n; n++)
        expect_failed(z.p, n, K2P_DECOMPRESS_AUTO, MiB, "zstd: ");
    for (size_t n = 4; n < zs.n; n++)
        expect_failed(zs.p, n, K2P_DECOMPRESS_AUTO, MiB, "zstd: ");
    for (size_t n = 3; n < g.n; n++)
        expect_failed(g.p, n, K2P_DECOMPRESS_AUTO, MiB, "gzip: ");
    /* the typical cuts say so */
    expect_failed(z.p, z.n - 1, K2P_DECOMPRESS_AUTO, MiB, "zstd: truncated frame");
    expect_failed(z.p, z.n / 2, K2P_DECOMPRESS_AUTO, MiB, "zstd: truncated frame");
    expect_failed(g.p, g.n - 1, K2P_DECOMPRESS_AUTO, MiB, "gzip: truncated data");
    expect_failed(g.p, g.n / 2, K2P_DECOMPRESS_AUTO, MiB, "gzip: truncated data");
    vec_free(&z);
    vec_free(&zs);
    vec_free(&g);
    free(txt);
}

static void test_corrupt(void **state)
{
    uint8_t *txt = make(5000, gen_text);
    vec z = {0}, g = {0};
    (void)state;
    zstd_frame(&z, txt, 5000, 3);
    gzip_member(&g, txt, 5000, NULL, 6);

    /* any single flipped byte after the magic: a failure (or, rarely, a decode that the
     * checksum still catches) - never a crash or a silent wrong answer */
    for (size_t i = 4; i < z.n; i++) {
        k2p_buf out;
        const char *reason = NULL;
        int rc;
        z.p[i] ^= 0x5a;
        k2p_buf_init(&out, 0);
        rc = k2p_payload_decompress(z.p, z.n, K2P_DECOMPRESS_AUTO, MiB, &out, &reason);
        if (rc == K2P_DECODED) /* only possible if the flip hit an ignored bit */
            assert_memory_equal(out.data, txt, 5000);
        else
            assert_int_equal(rc, K2P_DECODE_FAILED);
        k2p_buf_deinit(&out);
        z.p[i] ^= 0x5a;
    }
    /* the checksum at the end of the frame */
    z.p[z.n - 1] ^= 1;
    expect_failed(z.p, z.n, K2P_DECOMPRESS_AUTO, MiB, "zstd: checksum mismatch");
    z.p[z.n - 1] ^= 1;

    /* gzip: CRC32, ISIZE, header, deflate body */
    g.p[g.n - 8] ^= 1;
    expect_failed(g.p, g.n, K2P_DECOMPRESS_AUTO, MiB, "gzip: CRC mismatch");
    g.p[g.n - 8] ^= 1;
    g.p[g.n - 1] ^= 1;
    expect_failed(g.p, g.n, K2P_DECOMPRESS_AUTO, MiB, "gzip: length mismatch");
    g.p[g.n - 1] ^= 1;
    g.p[3] = 0xe0; /* reserved FLG bits */
    expect_failed(g.p, g.n, K2P_DECOMPRESS_AUTO, MiB, "gzip: bad header");
    g.p[3] = 0;
    memset(g.p + 10, 0xff, 8); /* invalid block type 3 */
    expect_failed(g.p, g.n, K2P_DECOMPRESS_AUTO, MiB, "gzip: corrupt deflate data");

    /* a zstd magic followed by garbage */
    expect_failed("\x28\xb5\x2f\xfd\xff\xff\xff\xff\xff\xff", 10, K2P_DECOMPRESS_AUTO, MiB,
                  "zstd: ");
    vec_free(&z);
    vec_free(&g);
    free(txt);
}

static void test_trailing_data(void **state)
{
    vec z = {0}, g = {0};
    (void)state;
    zstd_frame(&z, json, strlen(json), 3);
    vec_put(&z, "\n", 1);
    expect_failed(z.p, z.n, K2P_DECOMPRESS_AUTO, MiB, "zstd: trailing data after the last frame");
    vec_put(&z, "garbage", 7);
    expect_failed(z.p, z.n, K2P_DECOMPRESS_AUTO, MiB, "zstd: trailing data after the last frame");
    gzip_member(&g, json, strlen(json), NULL, 6);
    vec_put(&g, "\0\0\0\0", 4); /* padding gzip(1) would only warn about */
    expect_failed(g.p, g.n, K2P_DECOMPRESS_AUTO, MiB, "gzip: trailing data after the last member");
    vec_free(&z);
    vec_free(&g);
}

/* ------------------------------------------------------------------------------------------ */
/* Modes and passthrough                                                                       */

static void test_passthrough_lookalikes(void **state)
{
    static const struct {
        const char *p;
        size_t n;
    } plain[] = {
        {"", 0},
        {json, sizeof json - 1},
        {"[1,2,3]", 7},
        {"plain text", 10},
        {"\x28\xb5\x2f", 3},        /* zstd magic, cut short */
        {"\x28\xb5\x2f\xfe{}", 6},  /* one bit off */
        {"\xfd\x2f\xb5\x28{}", 6},  /* big-endian magic */
        {"\x50\x2a\x4d\x19", 4},    /* skippable magic, one bit off */
        {"\x1f\x8b", 2},            /* gzip magic, cut short */
        {"\x1f\x8b\x07rest", 7},    /* gzip magic with another method */
        {"\x1f\x9d\x90", 3},        /* compress(1) */
        {"\xf3\x89\x9a\xc2...", 7}, /* KPL magic: not this module's */
        {"BZh91AY&SY", 10},         /* bzip2 is not detected */
    };
    (void)state;
    for (size_t i = 0; i < K2P_ARRAY_LEN(plain); i++) {
        expect_passthrough(plain[i].p, plain[i].n, K2P_DECOMPRESS_AUTO);
        expect_passthrough(plain[i].p, plain[i].n, K2P_DECOMPRESS_NONE);
        assert_int_equal(k2p_payload_sniff(plain[i].p, plain[i].n), K2P_DECOMPRESS_NONE);
    }
}

static void test_modes(void **state)
{
    vec z = {0}, g = {0};
    (void)state;
    zstd_frame(&z, json, strlen(json), 3);
    gzip_member(&g, json, strlen(json), NULL, 6);
    assert_int_equal(k2p_payload_sniff(z.p, z.n), K2P_DECOMPRESS_ZSTD);
    assert_int_equal(k2p_payload_sniff(g.p, g.n), K2P_DECOMPRESS_GZIP);

    /* none: even compressed data passes through */
    expect_passthrough(z.p, z.n, K2P_DECOMPRESS_NONE);
    expect_passthrough(g.p, g.n, K2P_DECOMPRESS_NONE);
    /* forced modes take only their own format */
    expect_decoded(&z, K2P_DECOMPRESS_ZSTD, MiB, json, strlen(json));
    expect_decoded(&g, K2P_DECOMPRESS_GZIP, MiB, json, strlen(json));
    expect_failed(g.p, g.n, K2P_DECOMPRESS_ZSTD, MiB, "zstd: not zstd data");
    expect_failed(z.p, z.n, K2P_DECOMPRESS_GZIP, MiB, "gzip: not gzip data");
    expect_failed(json, strlen(json), K2P_DECOMPRESS_ZSTD, MiB, "zstd: not zstd data");
    expect_failed(json, strlen(json), K2P_DECOMPRESS_GZIP, MiB, "gzip: not gzip data");
    expect_failed("", 0, K2P_DECOMPRESS_ZSTD, MiB, "zstd: not zstd data");
    expect_failed("", 0, K2P_DECOMPRESS_GZIP, MiB, "gzip: not gzip data");

    /* an unknown mode is the caller's error, not the payload's */
    {
        k2p_buf out;
        const char *reason = NULL;
        k2p_buf_init(&out, 0);
        assert_int_equal(k2p_payload_decompress(z.p, z.n, 7, MiB, &out, &reason), K2P_EINVAL);
        assert_non_null(reason);
        assert_int_equal(k2p_payload_decompress(z.p, z.n, 0, MiB, &out, NULL), K2P_DECODED);
        k2p_buf_deinit(&out);
    }
    assert_string_equal(k2p_payload_mode_name(K2P_DECOMPRESS_AUTO), "auto");
    assert_string_equal(k2p_payload_mode_name(K2P_DECOMPRESS_ZSTD), "zstd");
    assert_string_equal(k2p_payload_mode_name(K2P_DECOMPRESS_GZIP), "gzip");
    assert_string_equal(k2p_payload_mode_name(K2P_DECOMPRESS_NONE), "none");
    assert_null(k2p_payload_mode_name(4));
    vec_free(&z);
    vec_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zstd_bomb),
        cmocka_unit_test(test_gzip_bomb),
        cmocka_unit_test(test_zstd_bomb_declared_size),
        cmocka_unit_test(test_zstd_round_trips),
        cmocka_unit_test(test_zstd_json),
        cmocka_unit_test(test_zstd_multi_frame),
        cmocka_unit_test(test_zstd_skippable_only),
        cmocka_unit_test(test_gzip_round_trips),
        cmocka_unit_test(test_gzip_json_and_multi_member),
        cmocka_unit_test(test_limit_boundary),
        cmocka_unit_test(test_buffer_max_lowers_limit),
        cmocka_unit_test(test_buffer_reuse),
        cmocka_unit_test(test_zstd_window_limit),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_passthrough_lookalikes),
        cmocka_unit_test(test_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

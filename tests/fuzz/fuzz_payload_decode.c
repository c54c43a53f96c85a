/* fuzz_payload_decode.c - libFuzzer target for --decompress (k2p_payload_decompress).
 *
 * Runs every input through all four modes with a 1 MiB limit. Besides "no crash, no
 * out-of-bounds access, no leak" it checks properties that must hold for every input:
 *   - the outcome matches the mode and the magic (passthrough only for none or no magic;
 *     a forced mode on the other format fails; auto equals the forced mode of its format);
 *   - a decoded result fits the limit, its buffer too, and is NUL-terminated;
 *   - the limit is exact: the same input decodes identically with limit = its output size,
 *     and fails as "larger than the limit" with one byte less;
 *   - a failure has a "zstd: "/"gzip: " reason and leaves the buffer empty.
 * Seeds: corpus/payload_decode/ (zstd frames with and without sizes and checksums, skippable
 * frames, gzip members with every header field, multi-frame/member, truncated, trailing data).
 *
 * Threading: single-threaded.
 */
#include "kinesis2pg/buf.h"
#include "kinesis2pg/payload_decode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT ((size_t)1 << 20)

static int run(const uint8_t *data, size_t size, int mode, size_t limit, k2p_buf *out)
{
    const char *reason = "unset";
    int rc = k2p_payload_decompress(data, size, mode, limit, out, &reason);

    switch (rc) {
    case K2P_PASSTHROUGH:
        if (reason || out->len)
            abort();
        break;
    case K2P_DECODED:
        if (reason || out->len > limit || out->cap > limit + 1 || !out->data ||
            out->data[out->len] != '\0')
            abort();
        break;
    case K2P_DECODE_FAILED:
        if (!reason || out->len ||
            (strncmp(reason, "zstd: ", 6) != 0 && strncmp(reason, "gzip: ", 6) != 0))
            abort();
        break;
    default: /* K2P_ENOMEM cannot happen at these sizes; K2P_EINVAL only for a bad mode */
        abort();
    }
    return rc;
}

/* The limit is exact: out holds a K2P_DECODED result made under a larger limit. */
static void check_boundary(const uint8_t *data, size_t size, int mode, const k2p_buf *out)
{
    k2p_buf again;
    const char *reason = NULL;

    k2p_buf_init(&again, 0);
    if (run(data, size, mode, out->len, &again) != K2P_DECODED || again.len != out->len ||
        memcmp(again.data, out->data, out->len) != 0)
        abort();
    if (out->len > 0) {
        if (k2p_payload_decompress(data, size, mode, out->len - 1, &again, &reason) !=
                K2P_DECODE_FAILED ||
            !strstr(reason, "larger than the limit"))
            abort();
    }
    k2p_buf_deinit(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    k2p_buf out[4];
    int rc[4], kind;

    if (size > LIMIT)
        return 0;
    kind = k2p_payload_sniff(data, size);
    for (int m = 0; m < 4; m++) {
        k2p_buf_init(&out[m], 0);
        rc[m] = run(data, size, m, LIMIT, &out[m]);
    }
    if (rc[K2P_DECOMPRESS_NONE] != K2P_PASSTHROUGH)
        abort();
    if (kind == K2P_DECOMPRESS_NONE) {
        if (rc[K2P_DECOMPRESS_AUTO] != K2P_PASSTHROUGH ||
            rc[K2P_DECOMPRESS_ZSTD] != K2P_DECODE_FAILED ||
            rc[K2P_DECOMPRESS_GZIP] != K2P_DECODE_FAILED)
            abort();
    } else {
        int other = kind == K2P_DECOMPRESS_ZSTD ? K2P_DECOMPRESS_GZIP : K2P_DECOMPRESS_ZSTD;
        if (rc[other] != K2P_DECODE_FAILED || rc[K2P_DECOMPRESS_AUTO] == K2P_PASSTHROUGH ||
            rc[K2P_DECOMPRESS_AUTO] != rc[kind] || out[K2P_DECOMPRESS_AUTO].len != out[kind].len ||
            memcmp(out[K2P_DECOMPRESS_AUTO].data, out[kind].data, out[kind].len) != 0)
            abort();
        if (rc[kind] == K2P_DECODED)
            check_boundary(data, size, kind, &out[kind]);
    }
    for (int m = 0; m < 4; m++)
        k2p_buf_deinit(&out[m]);
    return 0;
}

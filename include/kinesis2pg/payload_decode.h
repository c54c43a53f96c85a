/* payload_decode.h - `--decompress auto|zstd|gzip|none`: turns a compressed record payload back
 * into the bytes the producer compressed, into a buffer that never grows past a limit.
 *
 * What is recognised (by the first bytes, never by guessing):
 *   - zstd: a frame (magic 28 B5 2F FD) or a skippable frame (magic 50..5F 2A 4D 18); any
 *     number of concatenated frames, skippable ones included; nothing may follow the last one.
 *   - gzip: a member (magic 1F 8B 08, deflate); any number of concatenated members; nothing may
 *     follow the last one.
 * No JSON text can begin with either magic (their first bytes are '(', 'P'..'_' and 0x1F), so
 * auto-detection never touches a JSON payload, however it starts.
 *
 * Bounded: the output never exceeds max_out bytes and the buffer never holds more than
 * max_out + 1 (the NUL); a payload that would decompress to more fails with "... output larger
 * than the limit (decompression bomb?)" after at most max_out bytes of work. A zstd frame may
 * ask for a window of up to 8 MiB (every level from 1 to 19 stays within it), or up to the limit
 * rounded up to a power of two when that is larger (at most 128 MiB); a frame asking for more is
 * refused before the decoder allocates the window. Peak memory of one call: the output buffer,
 * plus ~200 KiB of zstd state and at most one window (only touched as far as output is made),
 * or ~45 KiB of zlib state.
 *
 * Threading: pure functions without global state; each call creates and frees its own decoder,
 * so any thread may call them at once on its own buffers (the reader threads do).
 */
#ifndef K2P_PAYLOAD_DECODE_H
#define K2P_PAYLOAD_DECODE_H

#include <stddef.h>

#include "kinesis2pg/buf.h"

/* --decompress modes. The values follow the order auto, zstd, gzip, none, so the index of the
 * option's choice list can be used as is. */
enum {
    K2P_DECOMPRESS_AUTO = 0, /* zstd or gzip magic decides; anything else passes through */
    K2P_DECOMPRESS_ZSTD = 1, /* every payload must be zstd */
    K2P_DECOMPRESS_GZIP = 2, /* every payload must be gzip */
    K2P_DECOMPRESS_NONE = 3, /* never decompress */
};

/* Outcomes of k2p_payload_decompress() (negative K2P_E* codes are not the payload's fault). */
enum {
    K2P_PASSTHROUGH = 0,   /* not compressed (or mode none): use the input as it is */
    K2P_DECODED = 1,       /* out holds the decompressed bytes */
    K2P_DECODE_FAILED = 2, /* the payload is a dead letter; *reason says why */
};

/* The limit the loader passes: the most a jsonb-bound payload may be (K2P_JSON_MAX_LEN). */
#define K2P_DECOMPRESS_DEFAULT_MAX ((size_t)32 << 20)

/* Decompresses n bytes at `in` according to `mode` into `out`, which is reset first (its
 * allocation is reused: pass the same buffer for every record). At most max_out bytes of output
 * are accepted; out->max, when smaller, lowers that limit.
 *
 * Returns:
 *   K2P_DECODED        out->data holds out->len bytes, NUL-terminated (data is never NULL).
 *   K2P_PASSTHROUGH    out is empty; the caller uses `in` itself. Mode none, or mode auto and
 *                      no zstd/gzip magic (an empty input included).
 *   K2P_DECODE_FAILED  out is empty; *reason is a static one-line message starting with
 *                      "zstd: " or "gzip: ": "not zstd data" (forced mode), "corrupt frame",
 *                      "truncated frame", "checksum mismatch", "trailing data after the last
 *                      frame", "output larger than the limit (decompression bomb?)", ...
 *   K2P_ENOMEM         an allocation below the limit failed (out empty, *reason set): retry or
 *                      stop, do not dead-letter the record for it.
 *   K2P_EINVAL         unknown mode, or the library refused to initialise (*reason set).
 * `reason` may be NULL. Never reads past in + n. Any thread; no shared state.
 */
int k2p_payload_decompress(const void *in, size_t n, int mode, size_t max_out, k2p_buf *out,
                           const char **reason);

/* Which compression the first bytes announce: K2P_DECOMPRESS_ZSTD, K2P_DECOMPRESS_GZIP, or
 * K2P_DECOMPRESS_NONE (no magic: what mode auto passes through). Pure, no allocation. */
int k2p_payload_sniff(const void *in, size_t n);

/* "auto", "zstd", "gzip", "none"; NULL for an unknown mode. */
const char *k2p_payload_mode_name(int mode);

#endif

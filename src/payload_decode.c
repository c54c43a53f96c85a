/* payload_decode.c - bounded zstd/gzip decompression of record payloads (--decompress).
 *
 * Both decoders write straight into the caller's k2p_buf, grown geometrically but never past
 * the limit; once the buffer is full the decoder gets a one-byte probe instead, and a byte in
 * the probe means the payload is larger than the limit. So a bomb costs at most max_out bytes of
 * memory and of work, and is refused without being inflated.
 *
 * Threading: pure functions; each call owns its decoder state (no globals, no caches), so any
 * thread may call them concurrently on its own buffers.
 */
#include "kinesis2pg/payload_decode.h"
#include "kinesis2pg/common.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* The zstd windows we accept: always up to 8 MiB (what levels 1-19 use when the compressor
 * does not know the size: a stream's frame must decode whatever the limit), more when the limit
 * is larger, never past zstd's default ceiling of 128 MiB (ZSTD_WINDOWLOG_LIMIT_DEFAULT, which
 * lives in zstd's static-linking-only section). */
#define ZSTD_WLOG_FLOOR 23
#define ZSTD_WLOG_MAX 27

/* First allocation when the payload does not announce its size. */
#define INITIAL_ROOM ((size_t)4096)

static const char R_TOO_LARGE_ZSTD[] = "zstd: output larger than the limit (decompression bomb?)";
static const char R_TOO_LARGE_GZIP[] = "gzip: output larger than the limit (decompression bomb?)";

/* ------------------------------------------------------------------------------------------ */
/* Detection                                                                                   */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int is_zstd(const uint8_t *p, size_t n)
{
    if (n < 4)
        return 0;
    return le32(p) == ZSTD_MAGICNUMBER ||
           (le32(p) & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

static int is_gzip(const uint8_t *p, size_t n)
{
    /* ID1 ID2 and CM = 8 (deflate), the only method gzip defines. */
    return n >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 0x08;
}

int k2p_payload_sniff(const void *in, size_t n)
{
    const uint8_t *p = in;
    if (is_zstd(p, n))
        return K2P_DECOMPRESS_ZSTD;
    if (is_gzip(p, n))
        return K2P_DECOMPRESS_GZIP;
    return K2P_DECOMPRESS_NONE;
}

const char *k2p_payload_mode_name(int mode)
{
    switch (mode) {
    case K2P_DECOMPRESS_AUTO:
        return "auto";
    case K2P_DECOMPRESS_ZSTD:
        return "zstd";
    case K2P_DECOMPRESS_GZIP:
        return "gzip";
    case K2P_DECOMPRESS_NONE:
        return "none";
    default:
        return NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The bounded output                                                                          */

typedef struct sink {
    k2p_buf *out;
    size_t limit;
    uint8_t probe; /* handed out once the buffer holds `limit` bytes */
} sink;

typedef struct room {
    uint8_t *dst;
    size_t cap;
    int probing;
} room;

/* Points r at free space for the decoder: the buffer's spare capacity, grown (doubling) up to
 * the limit, or the one-byte probe when the buffer is at the limit. `hint` (0: none) is the
 * first allocation when the payload announced its size. Returns 0 or K2P_ENOMEM. */
static int sink_room(sink *s, size_t hint, room *r)
{
    k2p_buf *b = s->out;
    size_t left = s->limit - b->len;

    if (left == 0) {
        r->dst = &s->probe;
        r->cap = 1;
        r->probing = 1;
        return 0;
    }
    if (b->len == 0 && hint && b->cap <= hint) {
        if (k2p_buf_reserve(b, K2P_MIN(hint, left)))
            return K2P_ENOMEM;
    } else if (b->cap < b->len + 2) { /* no byte free besides the NUL */
        size_t want = b->len ? b->len : INITIAL_ROOM;
        if (k2p_buf_reserve(b, K2P_MIN(want, left)))
            return K2P_ENOMEM;
    }
    r->dst = (uint8_t *)b->data + b->len;
    r->cap = K2P_MIN(b->cap - 1 - b->len, left);
    r->probing = 0;
    return 0;
}

/* Accounts for `produced` bytes written at r. Returns 1 when they went into the probe. */
static int sink_commit(sink *s, const room *r, size_t produced)
{
    if (r->probing)
        return produced > 0;
    s->out->len += produced;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* zstd                                                                                        */

/* The largest window log we let a frame ask for. Beyond the floor, a window larger than the
 * limit is only useful to output larger than the limit: such a frame is refused before zstd
 * allocates the window (it allocates it up front when the frame does not declare its size). */
static int zstd_window_log(size_t limit)
{
    int wlog = ZSTD_WLOG_FLOOR;
    while (wlog < ZSTD_WLOG_MAX && ((size_t)1 << wlog) < limit)
        wlog++;
    return wlog;
}

static const char *zstd_reason(size_t err, unsigned frames_done)
{
    switch (ZSTD_getErrorCode(err)) {
    case ZSTD_error_prefix_unknown:
        return frames_done ? "zstd: trailing data after the last frame" : "zstd: not zstd data";
    case ZSTD_error_frameParameter_windowTooLarge:
        return "zstd: frame window larger than the limit (decompression bomb?)";
    case ZSTD_error_checksum_wrong:
        return "zstd: checksum mismatch";
    case ZSTD_error_dictionary_wrong:
    case ZSTD_error_dictionary_corrupted:
        return "zstd: frame needs a dictionary";
    case ZSTD_error_frameParameter_unsupported:
    case ZSTD_error_version_unsupported:
        return "zstd: unsupported frame parameters";
    default:
        return "zstd: corrupt frame";
    }
}

/* The decompressed size the first frame declares, if it fits the limit (0: none). Letting the
 * first allocation match it lets zstd decode the frame in one pass straight into the buffer. */
static size_t zstd_hint(const uint8_t *in, size_t n, size_t limit)
{
    unsigned long long sz = ZSTD_getFrameContentSize(in, n);
    if (sz == ZSTD_CONTENTSIZE_UNKNOWN || sz == ZSTD_CONTENTSIZE_ERROR || sz == 0 || sz > limit)
        return 0;
    return (size_t)sz;
}

static int unzstd(const uint8_t *in, size_t n, sink *s, const char **reason)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = {in, n, 0};
    size_t hint = zstd_hint(in, n, s->limit), ret;
    unsigned frames_done = 0;
    int rc;

    if (!d) {
        *reason = "zstd: out of memory";
        return K2P_ENOMEM;
    }
    ret = ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, zstd_window_log(s->limit));
    if (ZSTD_isError(ret)) {
        *reason = "zstd: cannot set the window limit";
        rc = K2P_EINVAL;
        goto out;
    }
    for (;;) {
        room r;
        size_t in_before = ib.pos;
        ZSTD_outBuffer ob;

        if (sink_room(s, hint, &r)) {
            *reason = "zstd: out of memory";
            rc = K2P_ENOMEM;
            goto out;
        }
        ob.dst = r.dst;
        ob.size = r.cap;
        ob.pos = 0;
        ret = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(ret)) {
            rc = ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation ? K2P_ENOMEM
                                                                        : K2P_DECODE_FAILED;
            *reason = rc == K2P_ENOMEM ? "zstd: out of memory" : zstd_reason(ret, frames_done);
            goto out;
        }
        if (sink_commit(s, &r, ob.pos)) {
            *reason = R_TOO_LARGE_ZSTD;
            rc = K2P_DECODE_FAILED;
            goto out;
        }
        if (ret == 0) { /* a frame ended and is fully flushed */
            frames_done++;
            if (ib.pos == ib.size)
                break;
            continue;
        }
        /* The frame goes on. With all input consumed and room left over, the decoder is
         * waiting for bytes that will never come. */
        if (ib.pos == ib.size && ob.pos < ob.size) {
            *reason = "zstd: truncated frame";
            rc = K2P_DECODE_FAILED;
            goto out;
        }
        if (ib.pos == in_before && ob.pos == 0) { /* defensive: zstd promises progress */
            *reason = "zstd: corrupt frame";
            rc = K2P_DECODE_FAILED;
            goto out;
        }
    }
    rc = K2P_DECODED;
out:
    ZSTD_freeDCtx(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* gzip                                                                                        */

static const char *gzip_reason(const z_stream *zs)
{
    /* zlib's messages are static strings; these are the ones worth telling apart. */
    if (zs->msg && strcmp(zs->msg, "incorrect data check") == 0)
        return "gzip: CRC mismatch";
    if (zs->msg && strcmp(zs->msg, "incorrect length check") == 0)
        return "gzip: length mismatch";
    if (zs->msg && (strcmp(zs->msg, "incorrect header check") == 0 ||
                    strcmp(zs->msg, "unknown compression method") == 0 ||
                    strcmp(zs->msg, "unknown header flags set") == 0 ||
                    strcmp(zs->msg, "header crc mismatch") == 0))
        return "gzip: bad header";
    return "gzip: corrupt deflate data";
}

/* ISIZE, the last member's size mod 2^32, as a first-allocation hint (0: none). */
static size_t gzip_hint(const uint8_t *in, size_t n, size_t limit)
{
    uint32_t isize;
    if (n < 18)
        return 0;
    isize = le32(in + n - 4);
    return isize <= limit ? (size_t)isize : 0;
}

static int gunzip(const uint8_t *in, size_t n, sink *s, const char **reason)
{
    z_stream zs;
    size_t hint = gzip_hint(in, n, s->limit);
    size_t fed = 0; /* bytes of `in` handed to zlib so far (avail_in is only a uInt) */
    int zr, rc;

    memset(&zs, 0, sizeof zs);
    zr = inflateInit2(&zs, 15 + 16); /* 32 KiB window, gzip wrapper only */
    if (zr != Z_OK) {
        *reason = zr == Z_MEM_ERROR ? "gzip: out of memory" : "gzip: zlib refused to initialise";
        return zr == Z_MEM_ERROR ? K2P_ENOMEM : K2P_EINVAL;
    }
    for (;;) {
        room r;
        uInt out_given;
        size_t produced;

        if (sink_room(s, hint, &r)) {
            *reason = "gzip: out of memory";
            rc = K2P_ENOMEM;
            goto out;
        }
        if (zs.avail_in == 0 && fed < n) {
            size_t chunk = K2P_MIN(n - fed, (size_t)UINT_MAX);
            zs.next_in = (Bytef *)(uintptr_t)(in + fed); /* zlib never writes through it */
            zs.avail_in = (uInt)chunk;
            fed += chunk;
        }
        out_given = (uInt)K2P_MIN(r.cap, (size_t)UINT_MAX);
        zs.next_out = r.dst;
        zs.avail_out = out_given;
        zr = inflate(&zs, Z_NO_FLUSH);
        produced = out_given - zs.avail_out;
        if (sink_commit(s, &r, produced)) {
            *reason = R_TOO_LARGE_GZIP;
            rc = K2P_DECODE_FAILED;
            goto out;
        }
        if (zr == Z_STREAM_END) {
            size_t used = fed - zs.avail_in;
            if (used == n)
                break;
            /* Another member may follow; anything else is not gzip's. */
            if (!is_gzip(in + used, n - used)) {
                *reason = "gzip: trailing data after the last member";
                rc = K2P_DECODE_FAILED;
                goto out;
            }
            if (inflateReset(&zs) != Z_OK) {
                *reason = "gzip: zlib refused to reset";
                rc = K2P_EINVAL;
                goto out;
            }
            continue;
        }
        if (zr == Z_OK || zr == Z_BUF_ERROR) {
            /* All input consumed and room left over: zlib waits for more that never comes. */
            if (zs.avail_in == 0 && fed == n && produced < out_given) {
                *reason = "gzip: truncated data";
                rc = K2P_DECODE_FAILED;
                goto out;
            }
            if (zr == Z_BUF_ERROR && produced == 0 && zs.avail_out > 0) {
                *reason = "gzip: corrupt deflate data"; /* defensive: no progress possible */
                rc = K2P_DECODE_FAILED;
                goto out;
            }
            continue;
        }
        if (zr == Z_MEM_ERROR) {
            *reason = "gzip: out of memory";
            rc = K2P_ENOMEM;
            goto out;
        }
        *reason = zr == Z_DATA_ERROR ? gzip_reason(&zs) : "gzip: corrupt deflate data";
        rc = K2P_DECODE_FAILED;
        goto out;
    }
    rc = K2P_DECODED;
out:
    inflateEnd(&zs);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

int k2p_payload_decompress(const void *in, size_t n, int mode, size_t max_out, k2p_buf *out,
                           const char **reason)
{
    const uint8_t *p = in;
    const char *why = NULL;
    size_t saved_max = out->max;
    sink s;
    int kind, rc;

    k2p_buf_reset(out);
    kind = k2p_payload_sniff(p, n);
    switch (mode) {
    case K2P_DECOMPRESS_NONE:
        rc = K2P_PASSTHROUGH;
        goto done;
    case K2P_DECOMPRESS_AUTO:
        if (kind == K2P_DECOMPRESS_NONE) {
            rc = K2P_PASSTHROUGH;
            goto done;
        }
        break;
    case K2P_DECOMPRESS_ZSTD:
    case K2P_DECOMPRESS_GZIP:
        if (kind != mode) {
            why = mode == K2P_DECOMPRESS_ZSTD ? "zstd: not zstd data" : "gzip: not gzip data";
            rc = K2P_DECODE_FAILED;
            goto done;
        }
        break;
    default:
        why = "unknown --decompress mode";
        rc = K2P_EINVAL;
        goto done;
    }

    s.out = out;
    s.limit = K2P_MIN(max_out, out->max);
    s.probe = 0;
    /* k2p_buf rounds its capacity up to a power of two but never past max + 1: lowering max to
     * the limit for the duration of the call keeps the allocation within the limit too. */
    out->max = s.limit;
    if (k2p_buf_reserve(out, 0)) { /* data is never NULL on K2P_DECODED, even when empty */
        why = "out of memory";
        rc = K2P_ENOMEM;
    } else if (kind == K2P_DECOMPRESS_ZSTD) {
        rc = unzstd(p, n, &s, &why);
    } else {
        rc = gunzip(p, n, &s, &why);
    }
    out->max = saved_max;
    if (rc == K2P_DECODED)
        out->data[out->len] = '\0';
    else
        k2p_buf_reset(out);
done:
    if (reason)
        *reason = why;
    return rc;
}

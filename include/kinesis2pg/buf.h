/* buf.h - a growable byte buffer with a hard upper bound (like curl's dynbuf).
 *
 * Big blocks (K2P_BUF_POOL_MIN and more) are recycled through a small process-wide cache rather
 * than given back to the system at once: see buf.c for why, k2p_buf_pool_set_max() and
 * k2p_buf_pool_set_limit().
 *
 * Threading: a buffer belongs to one thread at a time; no internal locking. The cache is
 * thread-safe.
 */
#ifndef K2P_BUF_H
#define K2P_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct k2p_buf {
    char *data;    /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
    size_t max;    /* appends that would exceed this fail with K2P_ENOMEM; 0 = 1 GiB */
} k2p_buf;

/* Initialises caller storage; no allocation until the first append. */
void k2p_buf_init(k2p_buf *b, size_t max);

/* Frees the storage and resets to empty; the buffer can be reused. */
void k2p_buf_deinit(k2p_buf *b);

/* Sets len to 0, keeps the allocation. */
void k2p_buf_reset(k2p_buf *b);

/* Makes room for `extra` more bytes (plus a NUL). Returns 0 or K2P_ENOMEM. */
int k2p_buf_reserve(k2p_buf *b, size_t extra);

/* Appends n bytes; 0 or K2P_ENOMEM (buffer unchanged on failure). */
int k2p_buf_append(k2p_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. */
int k2p_buf_puts(k2p_buf *b, const char *s);

/* Appends one byte. */
int k2p_buf_putc(k2p_buf *b, char c);

/* Appends printf-style formatted text. */
int k2p_buf_printf(k2p_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as a JSON string literal, quotes included (escapes ", \, control chars). */
int k2p_buf_put_json_str(k2p_buf *b, const char *s, size_t n);

/* Gives back unused capacity (keeps len bytes + NUL). Never fails: on a refused realloc the
 * buffer stays as it was. */
void k2p_buf_shrink(k2p_buf *b);

/* Takes the data out of the buffer (caller frees); the buffer is left empty. */
char *k2p_buf_steal(k2p_buf *b, size_t *len);

/* Blocks at least this big are cached when freed, for the next big reservation. */
#define K2P_BUF_POOL_MIN ((size_t)1 << 20)
/* Default bound of the cache, in bytes. */
#define K2P_BUF_POOL_DEFAULT_MAX ((size_t)24 << 20)

/* Sets the cache's bound (0: no cache) and frees the oldest cached blocks beyond it. */
void k2p_buf_pool_set_max(size_t bytes);

/* Caps big blocks in use and cached together (SIZE_MAX, the default: no such cap): a freed
 * block is cached only while it fits, and when blocks in use grow, the oldest cached ones are
 * freed. The loader sets 1.5 x its in-flight budget here (loader.c says why). Process-wide,
 * like the cache. */
void k2p_buf_pool_set_limit(size_t bytes);

/* Bytes of big blocks (K2P_BUF_POOL_MIN and more) held by buffers now, cache not included. */
size_t k2p_buf_big_bytes(void);

/* Frees every cached block (e.g. before exit, or when going idle). */
void k2p_buf_pool_drain(void);

/* Bytes held by the cache now. */
size_t k2p_buf_pool_bytes(void);

#endif

/* common.h - error codes, the error detail struct and small helpers shared by every module.
 *
 * Threading: everything here is reentrant; a k2p_err belongs to the thread that passes it.
 */
#ifndef K2P_COMMON_H
#define K2P_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Every function that can fail returns 0 or one of these (negative) codes. */
enum {
    K2P_OK = 0,
    K2P_EINVAL = -1,     /* bad argument or malformed input given by the caller */
    K2P_ENOMEM = -2,     /* allocation failed or a bound was exceeded */
    K2P_EIO = -3,        /* I/O, network or file failure */
    K2P_ETHROTTLED = -4, /* AWS throttling: ProvisionedThroughputExceeded, LimitExceeded, KMSThrottling */
    K2P_EEXPIRED = -5,   /* ExpiredIteratorException: get a new iterator */
    K2P_ERETRY = -6,     /* transient: 5xx, timeout, connection reset, truncated body */
    K2P_EFATAL = -7,     /* will not succeed on retry: AccessDenied, ValidationException, ... */
    K2P_EPARSE = -8,     /* a response or file could not be parsed */
    K2P_ENOTFOUND = -9,  /* ResourceNotFoundException, missing file or key */
    K2P_EAGAIN = -10,    /* would block (ring full/empty) */
    K2P_ECONFIG = -11,   /* configuration/usage error: exit code 2 */
    K2P_EAUTH = -12,     /* credentials missing, malformed or rejected */
    K2P_EINUSE = -13,    /* ResourceInUseException */
};

/* Error detail. `code` repeats the return value; `msg` is one line, never holds a secret. */
typedef struct k2p_err {
    int code;
    char aws_type[64]; /* AWS error type (e.g. "ExpiredIteratorException"), or "" */
    long http_status;  /* HTTP status of the failed request, or 0 */
    char msg[512];
} k2p_err;

/* Sets code and a printf-style message on `err` (which may be NULL). Returns `code`. */
int k2p_err_set(k2p_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets `err` (may be NULL) to K2P_OK with an empty message. */
void k2p_err_clear(k2p_err *err);

/* A static name for a K2P_E* code ("throttled", "expired iterator", ...). */
const char *k2p_strerror(int code);

/* Duplicates at most n bytes of s into a NUL-terminated heap string; NULL on OOM. */
char *k2p_strndup(const char *s, size_t n);

/* Duplicates s (which may be NULL: returns NULL). */
char *k2p_strdup(const char *s);

/* Frees *p (may be NULL) and sets it to NULL. Overwrites the string with zeros first: use it
 * for secrets. */
void k2p_free_secret(char **p);

/* Monotonic clock in nanoseconds. */
int64_t k2p_now_ns(void);

/* Wall clock in microseconds since the Unix epoch. */
int64_t k2p_wall_us(void);

/* Parses a base-10 signed integer that must fill the whole string; 0 or K2P_EINVAL. */
int k2p_parse_i64(const char *s, int64_t *out);

#define K2P_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define K2P_MIN(a, b) ((a) < (b) ? (a) : (b))
#define K2P_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif

/* common.c - error detail, string helpers and clocks shared by every module.
 *
 * Threading: reentrant.
 */
#define _POSIX_C_SOURCE 200809L
#include "kinesis2pg/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int k2p_err_set(k2p_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void k2p_err_clear(k2p_err *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

const char *k2p_strerror(int code)
{
    switch (code) {
    case K2P_OK: return "ok";
    case K2P_EINVAL: return "invalid argument";
    case K2P_ENOMEM: return "out of memory";
    case K2P_EIO: return "I/O error";
    case K2P_ETHROTTLED: return "throttled";
    case K2P_EEXPIRED: return "expired iterator";
    case K2P_ERETRY: return "transient error";
    case K2P_EFATAL: return "fatal error";
    case K2P_EPARSE: return "parse error";
    case K2P_ENOTFOUND: return "not found";
    case K2P_EAGAIN: return "would block";
    case K2P_ECONFIG: return "configuration error";
    case K2P_EAUTH: return "credentials error";
    case K2P_EINUSE: return "resource in use";
    default: return "unknown error";
    }
}

char *k2p_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *k2p_strdup(const char *s)
{
    return s ? k2p_strndup(s, strlen(s)) : NULL;
}

void k2p_free_secret(char **p)
{
    if (!p || !*p)
        return;
    volatile char *v = *p;
    while (*v)
        *v++ = 0;
    free(*p);
    *p = NULL;
}

int64_t k2p_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t k2p_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int k2p_parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !*s)
        return K2P_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return K2P_EINVAL;
    *out = v;
    return 0;
}

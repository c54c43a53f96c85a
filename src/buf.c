/* buf.c - bounded growable byte buffer.
 *
 * Threading: one owner at a time.
 */
#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K2P_BUF_DEFAULT_MAX ((size_t)1 << 30)

void k2p_buf_init(k2p_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : K2P_BUF_DEFAULT_MAX;
}

void k2p_buf_deinit(k2p_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void k2p_buf_reset(k2p_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int k2p_buf_reserve(k2p_buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;
    if (extra > b->max || b->len > b->max - extra)
        return K2P_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    p = realloc(b->data, ncap);
    if (!p)
        return K2P_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int k2p_buf_append(k2p_buf *b, const void *p, size_t n)
{
    if (k2p_buf_reserve(b, n))
        return K2P_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int k2p_buf_puts(k2p_buf *b, const char *s)
{
    return k2p_buf_append(b, s, strlen(s));
}

int k2p_buf_putc(k2p_buf *b, char c)
{
    return k2p_buf_append(b, &c, 1);
}

int k2p_buf_printf(k2p_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || k2p_buf_reserve(b, (size_t)n))
        return K2P_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int k2p_buf_put_json_str(k2p_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (k2p_buf_reserve(b, n + 2))
        return K2P_ENOMEM;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t el = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        } else {
            esc[0] = (char)c;
            el = 1;
        }
        if (k2p_buf_append(b, esc, el))
            return K2P_ENOMEM;
    }
    return k2p_buf_putc(b, '"');
}

void k2p_buf_shrink(k2p_buf *b)
{
    char *p;
    if (!b->data || b->cap <= b->len + 1)
        return;
    p = realloc(b->data, b->len + 1);
    if (p) {
        b->data = p;
        b->cap = b->len + 1;
    }
}

char *k2p_buf_steal(k2p_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

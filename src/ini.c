/* ini.c - AWS shared-file (INI) and dlt TOML parsers into a flat key/value list, and RFC 3339
 * timestamps.
 *
 * Both parsers work on a memory buffer and never trust it: every read is bounded by the end
 * pointer, nesting is capped, NUL bytes are rejected, and error messages carry a line number
 * and what was expected but never the input itself (it may be a secret). File reading lives in
 * the two *_load_file wrappers at the end.
 *
 * Threading: reentrant; no global state.
 */
#include "kinesis2pg/ini.h"
#include "kinesis2pg/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define K2P_CONFIG_FILE_MAX ((size_t)4 << 20)
#define TOML_MAX_DEPTH 64
#define TOML_MAX_KEYS 10000 /* the conflict check is quadratic; real files hold dozens */

/* ------------------------------------------------------------------------------------------ */
/* Key/value list                                                                              */
/* ------------------------------------------------------------------------------------------ */

void k2p_kv_list_init(k2p_kv_list *l)
{
    l->items = NULL;
    l->n = 0;
    l->cap = 0;
}

void k2p_kv_list_deinit(k2p_kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].section);
        free(l->items[i].key);
        k2p_free_secret(&l->items[i].value);
    }
    free(l->items);
    k2p_kv_list_init(l);
}

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca = (unsigned char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (unsigned char)(cb - 'A' + 'a');
        if (ca != cb || !ca)
            return ca - cb;
    }
}

const k2p_kv *k2p_kv_find(const k2p_kv_list *l, const char *section, const char *key)
{
    for (size_t i = l->n; i-- > 0;) {
        const k2p_kv *kv = &l->items[i];
        if (strcmp(kv->section, section) == 0 && ascii_casecmp(kv->key, key) == 0)
            return kv;
    }
    return NULL;
}

int k2p_kv_has_prefix(const k2p_kv_list *l, const char *section, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].section, section) == 0 && strncmp(l->items[i].key, prefix, pl) == 0)
            return 1;
    }
    return 0;
}

/* Appends a copy of the strings. Returns the new index, or -1 on OOM. */
static long kv_add(k2p_kv_list *l, const char *section, size_t slen, const char *key, size_t klen,
                   const char *value, size_t vlen, k2p_kv_type type, int line)
{
    k2p_kv *kv;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        k2p_kv *p = realloc(l->items, ncap * sizeof *p);
        if (!p)
            return -1;
        l->items = p;
        l->cap = ncap;
    }
    kv = &l->items[l->n];
    kv->section = k2p_strndup(section, slen);
    kv->key = k2p_strndup(key, klen);
    kv->value = k2p_strndup(value, vlen);
    kv->type = type;
    kv->line = line;
    if (!kv->section || !kv->key || !kv->value) {
        free(kv->section);
        free(kv->key);
        k2p_free_secret(&kv->value);
        return -1;
    }
    return (long)l->n++;
}

/* Zeroes a buffer that may have held a secret, then frees it. */
static void buf_wipe(k2p_buf *b)
{
    if (b->data)
        memset(b->data, 0, b->cap);
    k2p_buf_deinit(b);
}

static int parse_error(k2p_err *err, const char *origin, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int parse_error(k2p_err *err, const char *origin, int line, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return k2p_err_set(err, K2P_EPARSE, "%s:%d: %s", origin ? origin : "input", line, what);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ------------------------------------------------------------------------------------------ */
/* AWS shared files (INI)                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Trims blanks on both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && is_blank(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_blank((*s)[*n - 1]))
        (*n)--;
}

/* Cuts a trailing comment. In a section header any '#'/';' starts one; in a property it must
 * follow a blank, so values such as "a#b" survive (the AWS SDKs' rule). */
static void cut_comment(const char *s, size_t *n, int need_blank)
{
    for (size_t i = 0; i < *n; i++) {
        if ((s[i] == '#' || s[i] == ';') && (!need_blank || (i > 0 && is_blank(s[i - 1])))) {
            *n = i;
            return;
        }
    }
}

/* Copies a section name with blank runs folded into one space. */
static char *fold_blanks(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (is_blank(s[i])) {
            if (o > out && o[-1] != ' ')
                *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Appends "\n" + [s, s+n) to the value of entry `idx`. */
static int ini_continue(k2p_kv_list *l, long idx, const char *s, size_t n)
{
    k2p_kv *kv = &l->items[idx];
    size_t old = strlen(kv->value);
    char *v = malloc(old + n + 2);
    if (!v)
        return K2P_ENOMEM;
    memcpy(v, kv->value, old);
    v[old] = '\n';
    memcpy(v + old + 1, s, n);
    v[old + 1 + n] = '\0';
    k2p_free_secret(&kv->value);
    kv->value = v;
    return 0;
}

int k2p_ini_parse(const char *origin, const char *data, size_t len, k2p_kv_list *out, k2p_err *err)
{
    size_t pos = 0;
    int line = 0, rc = 0;
    char *section = NULL; /* current section, folded; NULL before the first header */
    long last = -1;       /* entry that a continuation line extends */

    if (!data)
        len = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < len) {
        const char *ls = data + pos, *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        pos += ll + (nl ? 1 : 0);
        line++;
        if (ll && ls[ll - 1] == '\r')
            ll--;
        if (memchr(ls, '\0', ll)) {
            rc = parse_error(err, origin, line, "NUL byte in file");
            goto out;
        }
        const char *t = ls;
        size_t tl = ll;
        trim(&t, &tl);
        if (tl == 0 || t[0] == '#' || t[0] == ';')
            continue; /* indented comments too, as botocore reads them */

        if (ls[0] == '[') {
            cut_comment(t, &tl, 0);
            trim(&t, &tl);
            if (tl < 2 || t[tl - 1] != ']') {
                rc = parse_error(err, origin, line, "section header must end with ']'");
                goto out;
            }
            t++;
            tl -= 2;
            trim(&t, &tl);
            if (tl == 0) {
                rc = parse_error(err, origin, line, "empty section name");
                goto out;
            }
            free(section);
            section = fold_blanks(t, tl);
            if (!section) {
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory parsing %s",
                                 origin ? origin : "input");
                goto out;
            }
            last = -1;
        } else if (is_blank(ls[0])) {
            /* An indented line continues the previous property (e.g. s3 sub-properties). */
            if (!section) {
                rc = parse_error(err, origin, line, "expected a [section] header first");
                goto out;
            }
            if (last < 0) {
                rc = parse_error(err, origin, line, "continuation line without a property");
                goto out;
            }
            if ((rc = ini_continue(out, last, t, tl)) < 0) {
                k2p_err_set(err, rc, "out of memory parsing %s", origin ? origin : "input");
                goto out;
            }
        } else {
            const char *eq;
            cut_comment(t, &tl, 1);
            trim(&t, &tl);
            if (!section) {
                rc = parse_error(err, origin, line, "property before any [section] header");
                goto out;
            }
            eq = memchr(t, '=', tl);
            if (!eq) {
                rc = parse_error(err, origin, line, "expected 'key = value'");
                goto out;
            }
            const char *k = t, *v = eq + 1;
            size_t kl = (size_t)(eq - t), vl = tl - kl - 1;
            trim(&k, &kl);
            trim(&v, &vl);
            if (kl == 0) {
                rc = parse_error(err, origin, line, "property has no name before '='");
                goto out;
            }
            last = kv_add(out, section, strlen(section), k, kl, v, vl, K2P_KV_STRING, line);
            if (last < 0) {
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory parsing %s",
                                 origin ? origin : "input");
                goto out;
            }
            for (char *c = out->items[last].key; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
        }
    }
out:
    free(section);
    if (rc < 0)
        k2p_kv_list_deinit(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* TOML subset                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct toml {
    const char *p, *end;
    int line;
    const char *origin;
    k2p_err *err;
    k2p_kv_list *out;
    int skip; /* inside an [[array of tables]]: check entries, do not store them */
} toml;

static int toml_oom(toml *t)
{
    return k2p_err_set(t->err, K2P_ENOMEM, "out of memory parsing %s",
                       t->origin ? t->origin : "input");
}

static void toml_ws(toml *t)
{
    while (t->p < t->end && is_blank(*t->p))
        t->p++;
}

/* Skips a comment up to (not including) the newline. */
static int toml_comment(toml *t)
{
    if (t->p < t->end && *t->p == '#') {
        while (t->p < t->end && *t->p != '\n') {
            if (*t->p == '\0')
                return parse_error(t->err, t->origin, t->line, "NUL byte in comment");
            t->p++;
        }
    }
    return 0;
}

/* Consumes one newline ("\n" or "\r\n") if present; returns 1 if it did. */
static int toml_newline(toml *t)
{
    if (t->p < t->end && *t->p == '\n') {
        t->p++;
        t->line++;
        return 1;
    }
    if (t->end - t->p >= 2 && t->p[0] == '\r' && t->p[1] == '\n') {
        t->p += 2;
        t->line++;
        return 1;
    }
    return 0;
}

/* Blanks, comments and newlines, as allowed between array elements. */
static int toml_ws_nl(toml *t)
{
    int rc;
    for (;;) {
        toml_ws(t);
        if ((rc = toml_comment(t)) < 0)
            return rc;
        if (!toml_newline(t))
            return 0;
    }
}

static int toml_eol(toml *t, const char *after)
{
    int rc;
    toml_ws(t);
    if ((rc = toml_comment(t)) < 0)
        return rc;
    if (t->p == t->end || toml_newline(t))
        return 0;
    return parse_error(t->err, t->origin, t->line, "expected end of line after %s", after);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int put_utf8(k2p_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return k2p_buf_append(b, u, n);
}

/* Parses the escape after a backslash (t->p points past the '\\') in a basic string. */
static int toml_escape(toml *t, k2p_buf *b)
{
    char c;
    int nhex;
    uint32_t cp = 0;
    if (t->p == t->end)
        return parse_error(t->err, t->origin, t->line, "unterminated string");
    c = *t->p++;
    switch (c) {
    case 'b':
        return k2p_buf_putc(b, '\b');
    case 't':
        return k2p_buf_putc(b, '\t');
    case 'n':
        return k2p_buf_putc(b, '\n');
    case 'f':
        return k2p_buf_putc(b, '\f');
    case 'r':
        return k2p_buf_putc(b, '\r');
    case 'e':
        return k2p_buf_putc(b, '\x1b');
    case '"':
        return k2p_buf_putc(b, '"');
    case '\\':
        return k2p_buf_putc(b, '\\');
    case 'u':
        nhex = 4;
        break;
    case 'U':
        nhex = 8;
        break;
    default:
        return parse_error(t->err, t->origin, t->line, "invalid escape sequence in string");
    }
    if (t->end - t->p < nhex)
        return parse_error(t->err, t->origin, t->line, "truncated \\u escape in string");
    for (int i = 0; i < nhex; i++) {
        int h = hexval(t->p[i]);
        if (h < 0)
            return parse_error(t->err, t->origin, t->line, "invalid \\u escape in string");
        cp = (cp << 4) | (uint32_t)h;
    }
    t->p += nhex;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return parse_error(t->err, t->origin, t->line,
                           "\\u escape is not a usable Unicode scalar value");
    return put_utf8(b, cp);
}

static int bad_control(char c)
{
    unsigned char u = (unsigned char)c;
    return (u < 0x20 && c != '\t') || u == 0x7F;
}

/* A string of any of the four kinds; t->p is at the opening quote. `multi_ok` is 0 for keys. */
static int toml_string(toml *t, k2p_buf *b, int multi_ok)
{
    char q = *t->p;
    int multi = multi_ok && t->end - t->p >= 3 && t->p[1] == q && t->p[2] == q;
    int start_line = t->line, rc;

    if (!multi) {
        t->p++;
        for (;;) {
            char c;
            if (t->p == t->end || *t->p == '\n' || *t->p == '\r')
                return parse_error(t->err, t->origin, start_line, "unterminated string");
            c = *t->p++;
            if (c == q)
                return 0;
            if (q == '"' && c == '\\') {
                if ((rc = toml_escape(t, b)) < 0)
                    return rc == K2P_ENOMEM ? toml_oom(t) : rc;
                continue;
            }
            if (bad_control(c))
                return parse_error(t->err, t->origin, t->line, "control character in string");
            if (k2p_buf_putc(b, c) < 0)
                return toml_oom(t);
        }
    }

    t->p += 3;
    toml_newline(t); /* a newline right after the opening delimiter is trimmed */
    for (;;) {
        char c;
        if (t->p == t->end)
            return parse_error(t->err, t->origin, start_line, "unterminated multi-line string");
        c = *t->p;
        if (c == q) {
            int n = 0;
            while (t->p + n < t->end && t->p[n] == q)
                n++;
            if (n >= 3) {
                if (n > 5)
                    return parse_error(t->err, t->origin, t->line,
                                       "too many quotes closing a multi-line string");
                for (int i = 0; i < n - 3; i++)
                    if (k2p_buf_putc(b, q) < 0)
                        return toml_oom(t);
                t->p += n;
                return 0;
            }
            for (int i = 0; i < n; i++)
                if (k2p_buf_putc(b, q) < 0)
                    return toml_oom(t);
            t->p += n;
            continue;
        }
        if (toml_newline(t)) {
            if (k2p_buf_putc(b, '\n') < 0)
                return toml_oom(t);
            continue;
        }
        if (q == '"' && c == '\\') {
            const char *s = t->p + 1;
            while (s < t->end && is_blank(*s))
                s++;
            if (s < t->end && (*s == '\n' || *s == '\r')) {
                /* Line-ending backslash: drop the newline and the blanks that follow. */
                t->p = s;
                if (!toml_newline(t))
                    return parse_error(t->err, t->origin, t->line, "control character in string");
                for (;;) {
                    if (t->p < t->end && is_blank(*t->p))
                        t->p++;
                    else if (!toml_newline(t))
                        break;
                }
                continue;
            }
            t->p++;
            if ((rc = toml_escape(t, b)) < 0)
                return rc == K2P_ENOMEM ? toml_oom(t) : rc;
            continue;
        }
        if (bad_control(c))
            return parse_error(t->err, t->origin, t->line, "control character in string");
        if (k2p_buf_putc(b, c) < 0)
            return toml_oom(t);
        t->p++;
    }
}

static int is_bare_key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

/* Parses `key(.key)*` and appends it to `path` ('.'-joined, after a '.' if path is not empty). */
static int toml_key(toml *t, k2p_buf *path)
{
    for (;;) {
        toml_ws(t);
        if (path->len && k2p_buf_putc(path, '.') < 0)
            return toml_oom(t);
        if (t->p < t->end && (*t->p == '"' || *t->p == '\'')) {
            int rc = toml_string(t, path, 0);
            if (rc < 0)
                return rc;
        } else {
            const char *s = t->p;
            while (t->p < t->end && is_bare_key_char(*t->p))
                t->p++;
            if (t->p == s)
                return parse_error(t->err, t->origin, t->line, "expected a key");
            if (k2p_buf_append(path, s, (size_t)(t->p - s)) < 0)
                return toml_oom(t);
        }
        toml_ws(t);
        if (t->p < t->end && *t->p == '.') {
            t->p++;
            continue;
        }
        return 0;
    }
}

/* True when [s, s+n) is digits of `base` with single '_' between digits. */
static int digits_ok(const char *s, size_t n, int base)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            if (i == 0 || i + 1 == n || s[i - 1] == '_')
                return 0;
            continue;
        }
        int h = hexval(s[i]);
        if (h < 0 || h >= base)
            return 0;
    }
    return s[n - 1] != '_';
}

/* Integer literal to decimal text. 0, or -1 when not an integer, -2 when out of range. */
static int toml_integer(const char *s, size_t n, char *dec, size_t decsz)
{
    int base = 10, neg = 0;
    uint64_t v = 0, lim;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
        base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        s += 2;
        n -= 2;
    } else if (n && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    if (!digits_ok(s, n, base))
        return -1;
    if (base == 10 && n > 1 && s[0] == '0')
        return -1; /* leading zeros are not allowed */
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_')
            continue;
        uint64_t d = (uint64_t)hexval(s[i]);
        if (v > (lim - d) / (uint64_t)base)
            return -2;
        v = v * (uint64_t)base + d;
    }
    if (neg)
        snprintf(dec, decsz, "%s%llu", v ? "-" : "", (unsigned long long)v);
    else
        snprintf(dec, decsz, "%llu", (unsigned long long)v);
    return 0;
}

/* True when s is a TOML float: [sign] int [.frac] [e[sign]exp], or [sign] inf|nan. */
static int toml_float_ok(const char *s, size_t n)
{
    size_t i = 0, j;
    if (n && (s[0] == '+' || s[0] == '-'))
        i = 1;
    if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0))
        return 1;
    for (j = i; j < n && (is_digit(s[j]) || s[j] == '_'); j++)
        ;
    if (!digits_ok(s + i, j - i, 10) || (j - i > 1 && s[i] == '0'))
        return 0;
    int has_frac = 0, has_exp = 0;
    if (j < n && s[j] == '.') {
        size_t k = ++j;
        for (; j < n && (is_digit(s[j]) || s[j] == '_'); j++)
            ;
        if (!digits_ok(s + k, j - k, 10))
            return 0;
        has_frac = 1;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t k = j;
        for (; j < n && (is_digit(s[j]) || s[j] == '_'); j++)
            ;
        if (!digits_ok(s + k, j - k, 10))
            return 0;
        has_exp = 1;
    }
    return j == n && (has_frac || has_exp);
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return 0;
    return 1;
}

/* HH:MM[:SS[.frac]] exactly filling [s, s+n). */
static int local_time_ok(const char *s, size_t n)
{
    if (n < 5 || !all_digits(s, 2) || s[2] != ':' || !all_digits(s + 3, 2))
        return 0;
    if ((s[0] - '0') * 10 + (s[1] - '0') > 23 || (s[3] - '0') * 10 + (s[4] - '0') > 59)
        return 0;
    if (n == 5)
        return 1;
    if (n < 8 || s[5] != ':' || !all_digits(s + 6, 2) || (s[6] - '0') * 10 + (s[7] - '0') > 60)
        return 0;
    if (n == 8)
        return 1;
    return s[8] == '.' && n > 9 && all_digits(s + 9, n - 9);
}

/* Offset date-time (RFC 3339), local date-time, local date or local time. */
static int toml_datetime_ok(const char *s, size_t n)
{
    char tmp[64];
    int64_t us;
    if (n >= sizeof tmp)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (k2p_parse_rfc3339(tmp, &us) == 0)
        return 1;
    if (n >= 10 && all_digits(s, 4) && s[4] == '-' && all_digits(s + 5, 2) && s[7] == '-' &&
        all_digits(s + 8, 2)) {
        int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
        if (m < 1 || m > 12 || d < 1 || d > 31)
            return 0;
        if (n == 10)
            return 1;
        return (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && local_time_ok(s + 11, n - 11);
    }
    return local_time_ok(s, n);
}

static int is_bare_value_char(char c)
{
    return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

static int toml_value(toml *t, k2p_buf *key, int emit, int depth);

static int toml_emit(toml *t, int emit, const k2p_buf *key, const char *v, size_t vn,
                     k2p_kv_type type, int line)
{
    const k2p_kv_list *l = t->out;
    const char *k = key->data ? key->data : "";
    size_t kn = key->len;
    if (!emit)
        return 0;
    if (l->n >= TOML_MAX_KEYS)
        return parse_error(t->err, t->origin, line, "more than %d keys", TOML_MAX_KEYS);
    /* A key may be defined once, and may not be both a value and a table. */
    for (size_t i = 0; i < l->n; i++) {
        const char *o = l->items[i].key;
        size_t on = strlen(o);
        if ((on == kn && memcmp(o, k, kn) == 0) ||
            (on < kn && memcmp(o, k, on) == 0 && k[on] == '.') ||
            (kn < on && memcmp(o, k, kn) == 0 && o[kn] == '.'))
            return parse_error(t->err, t->origin, line,
                               "key conflicts with the one defined at line %d", l->items[i].line);
    }
    if (kv_add(t->out, "", 0, k, kn, v, vn, type, line) < 0)
        return toml_oom(t);
    return 0;
}

static int toml_array(toml *t, k2p_buf *key, int emit, int depth)
{
    int start = t->line, rc;
    t->p++; /* '[' */
    for (;;) {
        if ((rc = toml_ws_nl(t)) < 0)
            return rc;
        if (t->p == t->end)
            return parse_error(t->err, t->origin, start, "unterminated array");
        if (*t->p == ']')
            break;
        if ((rc = toml_value(t, key, 0, depth + 1)) < 0)
            return rc;
        if ((rc = toml_ws_nl(t)) < 0)
            return rc;
        if (t->p < t->end && *t->p == ',') {
            t->p++;
            continue;
        }
        if (t->p < t->end && *t->p == ']')
            break;
        if (t->p == t->end)
            return parse_error(t->err, t->origin, start, "unterminated array");
        return parse_error(t->err, t->origin, t->line, "expected ',' or ']' in array");
    }
    t->p++;
    return toml_emit(t, emit, key, "", 0, K2P_KV_ARRAY, start);
}

/* `{ k = v, ... }`: each member becomes key.k. Newlines and a trailing comma are tolerated
 * (TOML 1.1). */
static int toml_inline_table(toml *t, k2p_buf *key, int emit, int depth)
{
    int start = t->line, rc;
    size_t base = key->len;
    t->p++; /* '{' */
    for (;;) {
        if ((rc = toml_ws_nl(t)) < 0)
            return rc;
        if (t->p == t->end)
            return parse_error(t->err, t->origin, start, "unterminated inline table");
        if (*t->p == '}')
            break;
        if ((rc = toml_key(t, key)) < 0)
            return rc;
        if (t->p == t->end || *t->p != '=')
            return parse_error(t->err, t->origin, t->line, "expected '=' after a key");
        t->p++;
        toml_ws(t);
        if ((rc = toml_value(t, key, emit, depth + 1)) < 0)
            return rc;
        key->len = base;
        if (key->data)
            key->data[base] = '\0';
        if ((rc = toml_ws_nl(t)) < 0)
            return rc;
        if (t->p < t->end && *t->p == ',') {
            t->p++;
            continue;
        }
        if (t->p < t->end && *t->p == '}')
            break;
        if (t->p == t->end)
            return parse_error(t->err, t->origin, start, "unterminated inline table");
        return parse_error(t->err, t->origin, t->line, "expected ',' or '}' in inline table");
    }
    t->p++;
    return 0;
}

/* Parses one value at t->p and stores it under `key` when `emit`. */
static int toml_value(toml *t, k2p_buf *key, int emit, int depth)
{
    int line = t->line, rc;
    if (depth > TOML_MAX_DEPTH)
        return parse_error(t->err, t->origin, t->line, "arrays or tables nested too deeply");
    if (t->p == t->end || *t->p == '\n' || *t->p == '\r' || *t->p == '#')
        return parse_error(t->err, t->origin, t->line, "expected a value");
    if (*t->p == '"' || *t->p == '\'') {
        k2p_buf v;
        k2p_buf_init(&v, K2P_CONFIG_FILE_MAX);
        rc = toml_string(t, &v, 1);
        if (rc == 0)
            rc = toml_emit(t, emit, key, v.data ? v.data : "", v.len, K2P_KV_STRING, line);
        buf_wipe(&v);
        return rc;
    }
    if (*t->p == '[')
        return toml_array(t, key, emit, depth);
    if (*t->p == '{')
        return toml_inline_table(t, key, emit, depth);

    /* A bare token: boolean, number or date-time ("1979-05-27 07:32:00Z" holds one space). */
    const char *s = t->p;
    while (t->p < t->end) {
        if (is_bare_value_char(*t->p)) {
            t->p++;
        } else if (*t->p == ' ' && t->p - s == 10 && s[4] == '-' && s[7] == '-' &&
                   t->end - t->p > 1 && is_digit(t->p[1])) {
            t->p++;
        } else {
            break;
        }
    }
    size_t n = (size_t)(t->p - s);
    char num[32];
    if (n == 0)
        return parse_error(t->err, t->origin, line, "expected a value");
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0))
        return toml_emit(t, emit, key, s, n, K2P_KV_BOOL, line);
    rc = toml_integer(s, n, num, sizeof num);
    if (rc == 0)
        return toml_emit(t, emit, key, num, strlen(num), K2P_KV_INTEGER, line);
    if (rc == -2)
        return parse_error(t->err, t->origin, line, "integer out of 64-bit range");
    if (toml_float_ok(s, n)) {
        char f[128];
        size_t fn = 0;
        if (n >= sizeof f)
            return parse_error(t->err, t->origin, line, "float literal too long");
        for (size_t i = 0; i < n; i++)
            if (s[i] != '_')
                f[fn++] = s[i];
        return toml_emit(t, emit, key, f, fn, K2P_KV_FLOAT, line);
    }
    if (toml_datetime_ok(s, n))
        return toml_emit(t, emit, key, s, n, K2P_KV_DATETIME, line);
    return parse_error(t->err, t->origin, line,
                       "invalid value (strings need quotes; numbers, true/false and dates do not)");
}

static int toml_header(toml *t, k2p_buf *table)
{
    int arr = t->end - t->p >= 2 && t->p[1] == '[', rc;
    t->p += arr ? 2 : 1;
    k2p_buf_reset(table);
    if ((rc = toml_key(t, table)) < 0)
        return rc;
    if (t->p == t->end || *t->p != ']' || (arr && (t->end - t->p < 2 || t->p[1] != ']')))
        return parse_error(t->err, t->origin, t->line, "table header must end with '%s'",
                           arr ? "]]" : "]");
    t->p += arr ? 2 : 1;
    t->skip = arr;
    return toml_eol(t, "a table header");
}

int k2p_toml_parse(const char *origin, const char *data, size_t len, k2p_kv_list *out, k2p_err *err)
{
    k2p_buf table, key;
    int rc = 0;
    if (!data) {
        data = "";
        len = 0;
    }
    toml t = {data, data + len, 1, origin, err, out, 0};

    k2p_buf_init(&table, 64 * 1024);
    k2p_buf_init(&key, 64 * 1024);
    if (t.end - t.p >= 3 && memcmp(t.p, "\xEF\xBB\xBF", 3) == 0)
        t.p += 3;
    while (t.p < t.end) {
        toml_ws(&t);
        if ((rc = toml_comment(&t)) < 0)
            break;
        if (t.p == t.end)
            break;
        if (toml_newline(&t))
            continue;
        if (*t.p == '[') {
            if ((rc = toml_header(&t, &table)) < 0)
                break;
            continue;
        }
        k2p_buf_reset(&key);
        if (table.len && k2p_buf_append(&key, table.data, table.len) < 0) {
            rc = toml_oom(&t);
            break;
        }
        if ((rc = toml_key(&t, &key)) < 0)
            break;
        if (t.p == t.end || *t.p != '=') {
            rc = parse_error(err, origin, t.line, "expected '=' after a key");
            break;
        }
        t.p++;
        toml_ws(&t);
        if ((rc = toml_value(&t, &key, !t.skip, 0)) < 0)
            break;
        if ((rc = toml_eol(&t, "a value")) < 0)
            break;
    }
    k2p_buf_deinit(&table);
    k2p_buf_deinit(&key);
    if (rc < 0)
        k2p_kv_list_deinit(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Reads a whole regular file. 0, K2P_ENOTFOUND, K2P_EIO or K2P_ENOMEM; *data is heap (caller
 * zeroes and frees). */
static int read_file(const char *path, char **data, size_t *len, k2p_err *err)
{
    int fd, rc = 0;
    struct stat st;
    k2p_buf b;

    k2p_buf_init(&b, K2P_CONFIG_FILE_MAX);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return k2p_err_set(err, K2P_ENOTFOUND, "%s: no such file", path);
        return k2p_err_set(err, K2P_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = k2p_err_set(err, K2P_EIO, "%s: not a regular file", path);
        goto out;
    }
    for (;;) {
        if ((rc = k2p_buf_reserve(&b, 8192)) < 0) {
            rc = k2p_err_set(err, K2P_EIO, "%s: larger than %zu bytes", path, K2P_CONFIG_FILE_MAX);
            goto out;
        }
        ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = k2p_err_set(err, K2P_EIO, "%s: read failed: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        b.len += (size_t)r;
    }
out:
    close(fd);
    if (rc < 0) {
        buf_wipe(&b);
        return rc;
    }
    *len = b.len;
    *data = b.data ? k2p_buf_steal(&b, len) : k2p_strdup("");
    if (!*data)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory reading %s", path);
    return 0;
}

typedef int (*parse_fn)(const char *, const char *, size_t, k2p_kv_list *, k2p_err *);

static int load_file(const char *path, k2p_kv_list *out, k2p_err *err, parse_fn parse)
{
    char *data = NULL;
    size_t len = 0;
    int rc = read_file(path, &data, &len, err);
    if (rc < 0)
        return rc;
    rc = parse(path, data, len, out, err);
    memset(data, 0, len);
    free(data);
    return rc;
}

int k2p_ini_load_file(const char *path, k2p_kv_list *out, k2p_err *err)
{
    return load_file(path, out, err, k2p_ini_parse);
}

int k2p_toml_load_file(const char *path, k2p_kv_list *out, k2p_err *err)
{
    return load_file(path, out, err, k2p_toml_parse);
}

/* ------------------------------------------------------------------------------------------ */
/* RFC 3339                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int num2(const char *s, int *out)
{
    if (!is_digit(s[0]) || !is_digit(s[1]))
        return -1;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

int k2p_parse_rfc3339(const char *s, int64_t *epoch_us)
{
    int y1, y2, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac = 0;
    size_t i;
    static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (!s || strnlen(s, 20) < 20)
        return K2P_EINVAL;
    if (num2(s, &y1) || num2(s + 2, &y2) || s[4] != '-' || num2(s + 5, &mo) || s[7] != '-' ||
        num2(s + 8, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || num2(s + 11, &h) ||
        s[13] != ':' || num2(s + 14, &mi) || s[16] != ':' || num2(s + 17, &sec))
        return K2P_EINVAL;
    int year = y1 * 100 + y2;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 60)
        return K2P_EINVAL;
    i = 19;
    if (s[i] == '.') {
        int nd = 0;
        i++;
        if (!is_digit(s[i]))
            return K2P_EINVAL;
        for (; is_digit(s[i]); i++, nd++)
            if (nd < 6)
                frac = frac * 10 + (s[i] - '0');
        for (; nd < 6; nd++)
            frac *= 10;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '-' ? -1 : 1;
        if (num2(s + i + 1, &oh) || s[i + 3] != ':' || num2(s + i + 4, &om) || oh > 23 || om > 59)
            return K2P_EINVAL;
        i += 6;
    } else {
        return K2P_EINVAL;
    }
    if (s[i] != '\0')
        return K2P_EINVAL;
    int64_t secs = days_from_civil(year, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
                   sec - sign * (oh * 3600 + om * 60);
    *epoch_us = secs * 1000000 + frac;
    return 0;
}

char *k2p_format_rfc3339(int64_t epoch_us, char *buf, size_t size)
{
    int64_t secs = epoch_us / 1000000, us = epoch_us % 1000000, days, rem, y;
    unsigned m, d;
    if (us < 0) {
        us += 1000000;
        secs--;
    }
    days = secs / 86400;
    rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    if (us)
        snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%06dZ", (long long)y, m, d,
                 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)us);
    else
        snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d,
                 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    return buf;
}

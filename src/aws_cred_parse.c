/* aws_cred_parse.c - bounded extractors for STS XML and container/IMDS JSON credential answers
 * (see aws_cred_parse.h for the contract).
 *
 * The XML side is a single forward scan with an explicit, fixed-size stack of open elements:
 * it checks the nesting, and when an element holding only text closes, it hands the raw text
 * range to a field matcher keyed on (parent, name). Only wanted fields are decoded and copied.
 * The JSON side leans on k2p_json_validate for well-formedness, then walks the top-level
 * object's members, decoding only the wanted strings.
 *
 * Threading: pure, reentrant.
 */
#include "kinesis2pg/aws_cred_parse.h"
#include "kinesis2pg/ini.h"
#include "kinesis2pg/json_validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XML_MAX_DEPTH 32
#define XML_NAME_MAX 128
#define NPOS ((size_t)-1)

void k2p_cred_doc_deinit(k2p_cred_doc *d)
{
    if (!d)
        return;
    k2p_free_secret(&d->access_key_id);
    k2p_free_secret(&d->secret_access_key);
    k2p_free_secret(&d->session_token);
    k2p_free_secret(&d->expiration);
    k2p_free_secret(&d->code);
    k2p_free_secret(&d->message);
    memset(d, 0, sizeof *d);
}

/* Appends code point cp as UTF-8 at out[*n] (room for 4 bytes is the caller's). */
static void put_utf8(char *out, size_t *n, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* XML                                                                                         */
/* ------------------------------------------------------------------------------------------ */

static int xml_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int xml_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':' || c == '.' || c == '-' || c >= 0x80;
}

/* Length of the name at s[i..len), 0 if there is none or it is longer than XML_NAME_MAX. */
static size_t xml_name(const char *s, size_t i, size_t len)
{
    size_t n = 0;
    unsigned char c0 = i < len ? (unsigned char)s[i] : 0;
    if (!(xml_name_char(c0) && !(c0 >= '0' && c0 <= '9') && c0 != '.' && c0 != '-'))
        return 0;
    while (i + n < len && xml_name_char((unsigned char)s[i + n]))
        n++;
    return n <= XML_NAME_MAX ? n : 0;
}

/* Index of `pat` in s[from..len), or NPOS. */
static size_t find(const char *s, size_t from, size_t len, const char *pat)
{
    size_t m = strlen(pat);
    for (size_t i = from; i + m <= len; i++)
        if (s[i] == pat[0] && memcmp(s + i, pat, m) == 0)
            return i;
    return NPOS;
}

static int starts(const char *s, size_t i, size_t len, const char *pat)
{
    size_t m = strlen(pat);
    return i + m <= len && memcmp(s + i, pat, m) == 0;
}

static int xml_char_ok(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* Length of the entity reference at s[i] == '&' (through ';') with its code point in *cp, or
 * 0 when it is not one of the predefined entities or a valid character reference. */
static size_t xml_entity(const char *s, size_t i, size_t len, uint32_t *cp)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t j;
    uint32_t v = 0;
    int base = 10, digits = 0;

    for (size_t k = 0; k < K2P_ARRAY_LEN(named); k++) {
        if (starts(s, i, len, named[k].name)) {
            *cp = (unsigned char)named[k].c;
            return strlen(named[k].name);
        }
    }
    if (!starts(s, i, len, "&#"))
        return 0;
    j = i + 2;
    if (j < len && s[j] == 'x') {
        base = 16;
        j++;
    }
    for (; j < len && s[j] != ';'; j++) {
        int d = hex_val((unsigned char)s[j]);
        if (d < 0 || d >= base || ++digits > 8)
            return 0;
        v = v * (uint32_t)base + (uint32_t)d;
    }
    if (j >= len || digits == 0 || !xml_char_ok(v))
        return 0;
    *cp = v;
    return j + 1 - i;
}

/* The part of a qualified name after its prefix ("sts:Credentials" -> "Credentials"). */
static void local_name(const char **n, size_t *len)
{
    for (size_t i = *len; i > 0; i--) {
        if ((*n)[i - 1] == ':') {
            *n += i;
            *len -= i;
            return;
        }
    }
}

static int name_is(const char *n, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(n, want, len) == 0;
}

/* Decodes the raw text s[from..to) (validated by the scanner: entities, comments, CDATA,
 * processing instructions) into a heap string trimmed of XML white space. */
static int xml_decode(const char *s, size_t from, size_t to, char **out, k2p_err *err)
{
    char *buf = malloc(to - from + 1);
    size_t n = 0, i = from, b = 0;
    if (!buf)
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    while (i < to) {
        if (s[i] == '&') {
            uint32_t cp = 0;
            size_t m = xml_entity(s, i, to, &cp);
            if (!m)
                break; /* cannot happen: the scanner checked it */
            put_utf8(buf, &n, cp);
            i += m;
        } else if (starts(s, i, to, "<![CDATA[")) {
            size_t e = find(s, i + 9, to, "]]>");
            if (e == NPOS)
                break;
            memcpy(buf + n, s + i + 9, e - (i + 9));
            n += e - (i + 9);
            i = e + 3;
        } else if (starts(s, i, to, "<!--")) {
            size_t e = find(s, i + 4, to, "-->");
            i = e == NPOS ? to : e + 3;
        } else if (starts(s, i, to, "<?")) {
            size_t e = find(s, i + 2, to, "?>");
            i = e == NPOS ? to : e + 2;
        } else {
            buf[n++] = s[i++];
        }
    }
    while (b < n && xml_space((unsigned char)buf[b]))
        b++;
    while (n > b && xml_space((unsigned char)buf[n - 1]))
        n--;
    if (n - b > K2P_CRED_FIELD_MAX) {
        memset(buf, 0, to - from + 1);
        free(buf);
        return k2p_err_set(err, K2P_EPARSE, "a value is longer than %zu bytes", K2P_CRED_FIELD_MAX);
    }
    memmove(buf, buf + b, n - b);
    memset(buf + (n - b), 0, to - from + 1 - (n - b));
    *out = buf;
    return 0;
}

/* Where a (parent, name) element of an STS answer goes, or NULL when it is not wanted. */
static char **sts_slot(k2p_cred_doc *d, const char *p, size_t plen, const char *n, size_t nlen,
                       const char **field)
{
    local_name(&p, &plen);
    local_name(&n, &nlen);
    if (name_is(p, plen, "Credentials")) {
        static const char *const names[] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                            "Expiration"};
        char **slots[] = {&d->access_key_id, &d->secret_access_key, &d->session_token,
                          &d->expiration};
        for (size_t i = 0; i < K2P_ARRAY_LEN(names); i++) {
            if (name_is(n, nlen, names[i])) {
                *field = names[i];
                return slots[i];
            }
        }
    } else if (name_is(p, plen, "Error")) {
        if (name_is(n, nlen, "Code")) {
            *field = "Code";
            return &d->code;
        }
        if (name_is(n, nlen, "Message")) {
            *field = "Message";
            return &d->message;
        }
    }
    return NULL;
}

typedef struct xml_frame {
    size_t name, name_len; /* offset and length of the qualified name in the input */
    size_t content;        /* offset just past the start tag */
    int has_child;
} xml_frame;

/* An element holding only text closed: store it if wanted. */
static int xml_text(const char *s, const xml_frame *stack, int depth, size_t name, size_t nlen,
                    size_t from, size_t to, k2p_cred_doc *d, k2p_err *err)
{
    const char *field = NULL;
    const char *p = depth > 0 ? s + stack[depth - 1].name : "";
    size_t plen = depth > 0 ? stack[depth - 1].name_len : 0;
    char **slot = sts_slot(d, p, plen, s + name, nlen, &field);
    if (!slot)
        return 0;
    if (*slot)
        return k2p_err_set(err, K2P_EPARSE, "element %s appears twice", field);
    return xml_decode(s, from, to, slot, err);
}

/* Scans the attributes of a start tag from s[j] to its '>' or "/>". Returns the index of '>'
 * (with *self_close set when it was "/>"), or NPOS when the tag is malformed. */
static size_t xml_attrs(const char *s, size_t j, size_t len, int *self_close)
{
    *self_close = 0;
    for (;;) {
        size_t sp = j, n, q;
        while (j < len && xml_space((unsigned char)s[j]))
            j++;
        if (j >= len)
            return NPOS;
        if (s[j] == '>')
            return j;
        if (s[j] == '/') {
            *self_close = 1;
            return j + 1 < len && s[j + 1] == '>' ? j + 1 : NPOS;
        }
        if (j == sp || !(n = xml_name(s, j, len)))
            return NPOS;
        j += n;
        while (j < len && xml_space((unsigned char)s[j]))
            j++;
        if (j >= len || s[j] != '=')
            return NPOS;
        j++;
        while (j < len && xml_space((unsigned char)s[j]))
            j++;
        if (j >= len || (s[j] != '"' && s[j] != '\''))
            return NPOS;
        q = j + 1;
        while (q < len && s[q] != s[j] && s[q] != '<')
            q++;
        if (q >= len || s[q] != s[j])
            return NPOS;
        j = q + 1;
    }
}

int k2p_sts_xml_extract(const char *xml, size_t len, k2p_cred_doc *out, k2p_err *err)
{
    xml_frame stack[XML_MAX_DEPTH];
    int depth = 0, seen_root = 0, rc = 0;
    size_t i = 0;
    const char *s = xml;

    memset(out, 0, sizeof *out);
    if (len > K2P_CRED_RESPONSE_MAX)
        return k2p_err_set(err, K2P_EPARSE, "answer larger than %zu bytes", K2P_CRED_RESPONSE_MAX);
    if (!s)
        len = 0;
    while (i < len && rc == 0) {
        unsigned char c = (unsigned char)s[i];
        size_t e, n;
        if (c != '<') {
            if (c == 0) {
                rc = k2p_err_set(err, K2P_EPARSE, "NUL byte at byte %zu", i);
            } else if (depth == 0 && !xml_space(c)) {
                rc = k2p_err_set(err, K2P_EPARSE, "text outside the root element at byte %zu", i);
            } else if (c == '&') {
                uint32_t cp;
                if (!(n = xml_entity(s, i, len, &cp)))
                    rc = k2p_err_set(err, K2P_EPARSE, "bad entity reference at byte %zu", i);
                i += n;
            } else {
                i++;
            }
            continue;
        }
        if (starts(s, i, len, "<?") || starts(s, i, len, "<!--") ||
            starts(s, i, len, "<![CDATA[")) {
            int pi = s[i + 1] == '?', cdata = !pi && s[i + 2] == '[';
            const char *end = pi ? "?>" : cdata ? "]]>" : "-->";
            size_t skip = pi ? 2 : cdata ? 9 : 4;
            if (cdata && depth == 0)
                rc = k2p_err_set(err, K2P_EPARSE, "CDATA outside the root element at byte %zu", i);
            else if ((e = find(s, i + skip, len, end)) == NPOS)
                rc = k2p_err_set(err, K2P_EPARSE, "unterminated %s at byte %zu",
                                 pi      ? "processing instruction"
                                 : cdata ? "CDATA section"
                                         : "comment",
                                 i);
            else
                i = e + strlen(end);
            continue;
        }
        if (starts(s, i, len, "<!")) {
            rc = k2p_err_set(err, K2P_EPARSE, "declarations (DOCTYPE) are not accepted");
            continue;
        }
        if (starts(s, i, len, "</")) {
            xml_frame f;
            n = xml_name(s, i + 2, len);
            e = i + 2 + n;
            while (e < len && xml_space((unsigned char)s[e]))
                e++;
            if (!n || e >= len || s[e] != '>') {
                rc = k2p_err_set(err, K2P_EPARSE, "malformed end tag at byte %zu", i);
                continue;
            }
            if (depth == 0 || stack[depth - 1].name_len != n ||
                memcmp(s + stack[depth - 1].name, s + i + 2, n) != 0) {
                rc = k2p_err_set(err, K2P_EPARSE, "mismatched end tag at byte %zu", i);
                continue;
            }
            f = stack[--depth];
            if (!f.has_child)
                rc = xml_text(s, stack, depth, f.name, f.name_len, f.content, i, out, err);
            i = e + 1;
            continue;
        }
        /* A start tag. */
        {
            int self_close;
            if (depth == 0 && seen_root) {
                rc = k2p_err_set(err, K2P_EPARSE, "more than one root element (byte %zu)", i);
                continue;
            }
            n = xml_name(s, i + 1, len);
            e = n ? xml_attrs(s, i + 1 + n, len, &self_close) : NPOS;
            if (e == NPOS) {
                rc = k2p_err_set(err, K2P_EPARSE, "malformed start tag at byte %zu", i);
                continue;
            }
            if (depth > 0)
                stack[depth - 1].has_child = 1;
            seen_root = 1;
            if (self_close) {
                rc = xml_text(s, stack, depth, i + 1, n, e, e, out, err);
            } else if (depth == XML_MAX_DEPTH) {
                rc = k2p_err_set(err, K2P_EPARSE, "elements nested deeper than %d", XML_MAX_DEPTH);
            } else {
                stack[depth].name = i + 1;
                stack[depth].name_len = n;
                stack[depth].content = e + 1;
                stack[depth].has_child = 0;
                depth++;
            }
            i = e + 1;
        }
    }
    if (rc == 0 && depth != 0)
        rc = k2p_err_set(err, K2P_EPARSE, "truncated: %d element(s) not closed", depth);
    if (rc == 0 && !seen_root)
        rc = k2p_err_set(err, K2P_EPARSE, "no XML element");
    if (rc < 0)
        k2p_cred_doc_deinit(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static int json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t json_skip_space(const char *s, size_t i, size_t len)
{
    while (i < len && json_space((unsigned char)s[i]))
        i++;
    return i;
}

/* s[i] is '"': returns the index of the closing quote, or NPOS. */
static size_t json_string_end(const char *s, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i;
    }
    return NPOS;
}

/* Reads 4 hex digits at s[i..]; -1 if they are not. */
static long json_hex4(const char *s, size_t i, size_t to)
{
    long v = 0;
    if (i + 4 > to)
        return -1;
    for (size_t k = 0; k < 4; k++) {
        int d = hex_val((unsigned char)s[i + k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decodes the body of a JSON string s[from..to) (between the quotes) into out, which has room
 * for to - from + 1 bytes (no escape grows). Returns the length, or NPOS on a bad escape. */
static size_t json_unescape(const char *s, size_t from, size_t to, char *out)
{
    size_t n = 0, i = from;
    while (i < to) {
        char c = s[i++];
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        if (i >= to)
            return NPOS;
        c = s[i++];
        switch (c) {
        case '"':
        case '\\':
        case '/':
            out[n++] = c;
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'u': {
            long hi = json_hex4(s, i, to), lo;
            uint32_t cp;
            if (hi < 0)
                return NPOS;
            i += 4;
            cp = (uint32_t)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                if (i + 2 > to || s[i] != '\\' || s[i + 1] != 'u' ||
                    (lo = json_hex4(s, i + 2, to)) < 0xDC00 || lo > 0xDFFF)
                    return NPOS;
                i += 6;
                cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                return NPOS;
            }
            if (cp == 0)
                return NPOS;
            put_utf8(out, &n, cp);
            break;
        }
        default:
            return NPOS;
        }
    }
    out[n] = '\0';
    return n;
}

/* Skips the value at s[i] (not a string: the caller handles those). Returns the index after
 * it, or NPOS. */
static size_t json_skip_value(const char *s, size_t i, size_t len)
{
    size_t depth = 0;
    if (i < len && s[i] != '{' && s[i] != '[') {
        while (i < len && !json_space((unsigned char)s[i]) && s[i] != ',' && s[i] != '}' &&
               s[i] != ']')
            i++;
        return i;
    }
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            size_t e = json_string_end(s, i, len);
            if (e == NPOS)
                return NPOS;
            i = e + 1;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return NPOS;
}

static char **json_slot(k2p_cred_doc *d, const char *key)
{
    static const char *const names[] = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration",
                                        "Code",        "Message"};
    char **slots[] = {&d->access_key_id, &d->secret_access_key,
                      &d->session_token, &d->expiration,
                      &d->code,          &d->message};
    for (size_t i = 0; i < K2P_ARRAY_LEN(names); i++)
        if (strcmp(key, names[i]) == 0)
            return slots[i];
    return NULL;
}

int k2p_cred_json_extract(const char *json, size_t len, k2p_cred_doc *out, k2p_err *err)
{
    const char *s = json ? json : "";
    k2p_json_error je;
    size_t i;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (!json)
        len = 0;
    if (len > K2P_CRED_RESPONSE_MAX)
        return k2p_err_set(err, K2P_EPARSE, "answer larger than %zu bytes", K2P_CRED_RESPONSE_MAX);
    if (k2p_json_validate(s, len, &je) != K2P_JSON_OK) {
        char why[160];
        k2p_json_error_format(&je, why, sizeof why);
        return k2p_err_set(err, K2P_EPARSE, "%s", why);
    }
    i = json_skip_space(s, 0, len);
    if (i >= len || s[i] != '{')
        return k2p_err_set(err, K2P_EPARSE, "not a JSON object");
    i = json_skip_space(s, i + 1, len);
    if (i < len && s[i] == '}')
        return 0;
    while (rc == 0) {
        char key[32];
        char **slot = NULL;
        size_t ke, ve;
        if (i >= len || s[i] != '"' || (ke = json_string_end(s, i, len)) == NPOS)
            goto malformed;
        if (ke - i - 1 < sizeof key && json_unescape(s, i + 1, ke, key) != NPOS)
            slot = json_slot(out, key);
        i = json_skip_space(s, ke + 1, len);
        if (i >= len || s[i] != ':')
            goto malformed;
        i = json_skip_space(s, i + 1, len);
        if (i >= len)
            goto malformed;
        if (s[i] == '"') {
            if ((ve = json_string_end(s, i, len)) == NPOS)
                goto malformed;
            if (slot) {
                char *v;
                size_t n;
                if (*slot) {
                    rc = k2p_err_set(err, K2P_EPARSE, "member %s appears twice", key);
                    break;
                }
                /* calloc: a value that fails to decode is still NUL-terminated for zeroing. */
                if (!(v = calloc(1, ve - i))) {
                    rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
                    break;
                }
                n = json_unescape(s, i + 1, ve, v);
                *slot = v; /* owned by the doc from here on, so it is zeroed on any error */
                if (n == NPOS)
                    goto malformed;
                if (n > K2P_CRED_FIELD_MAX || strlen(v) != n) {
                    rc = k2p_err_set(err, K2P_EPARSE, "member %s is too long or holds NUL", key);
                    break;
                }
            }
            i = ve + 1;
        } else {
            if (slot) {
                rc = k2p_err_set(err, K2P_EPARSE, "member %s is not a string", key);
                break;
            }
            if ((i = json_skip_value(s, i, len)) == NPOS)
                goto malformed;
        }
        i = json_skip_space(s, i, len);
        if (i < len && s[i] == ',') {
            i = json_skip_space(s, i + 1, len);
            continue;
        }
        if (i < len && s[i] == '}')
            return 0;
        goto malformed;
    }
    k2p_cred_doc_deinit(out);
    return rc;
malformed:
    k2p_cred_doc_deinit(out);
    return k2p_err_set(err, K2P_EPARSE, "malformed JSON object at byte %zu", i);
}

/* ------------------------------------------------------------------------------------------ */
/* Credentials                                                                                 */
/* ------------------------------------------------------------------------------------------ */

int k2p_cred_doc_to_creds(const k2p_cred_doc *d, const char *what, const char *source,
                          k2p_aws_creds *out, k2p_err *err)
{
    const char *missing = NULL;
    int64_t us;

    memset(out, 0, sizeof *out);
    if (!d->access_key_id || !*d->access_key_id)
        missing = "AccessKeyId";
    else if (!d->secret_access_key || !*d->secret_access_key)
        missing = "SecretAccessKey";
    else if (!d->session_token || !*d->session_token)
        missing = "session token (SessionToken / Token)";
    else if (!d->expiration || !*d->expiration)
        missing = "Expiration";
    if (missing)
        return k2p_err_set(err, K2P_EPARSE, "%s has no %s", what, missing);
    if (k2p_parse_rfc3339(d->expiration, &us) < 0)
        return k2p_err_set(err, K2P_EPARSE, "%s: Expiration is not an RFC 3339 time", what);
    out->access_key_id = k2p_strdup(d->access_key_id);
    out->secret_access_key = k2p_strdup(d->secret_access_key);
    out->session_token = k2p_strdup(d->session_token);
    out->expires_at = us / 1000000;
    out->source = source;
    if (!out->access_key_id || !out->secret_access_key || !out->session_token) {
        k2p_aws_creds_deinit(out);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory copying credentials");
    }
    return 0;
}

/* seqnum.c - Kinesis sequence numbers: validation and numeric comparison of decimal strings.
 *
 * A valid number has no leading zero (except "0" itself), so comparing lengths first and then
 * bytes is a numeric comparison; comparing strings of different lengths byte by byte is not
 * ("9" > "10" as strings).
 * Threading: reentrant, no allocation, no global state.
 */
#include "kinesis2pg/seqnum.h"

#include <string.h>

bool k2p_seq_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n > K2P_SEQ_MAX_DIGITS)
        return false;
    if (s[0] == '0')
        return n == 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

int k2p_seq_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c;
    if (an != bn)
        return an < bn ? -1 : 1;
    c = an ? memcmp(a, b, an) : 0;
    return (c > 0) - (c < 0);
}

int k2p_seq_cmps(const char *a, const char *b)
{
    return k2p_seq_cmp(a, strlen(a), b, strlen(b));
}

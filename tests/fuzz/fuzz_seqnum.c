/* fuzz_seqnum.c - libFuzzer target for sequence-number validation and comparison: splits the
 * input at the first newline into two candidates and checks the comparison's laws (antisymmetry,
 * equality with itself, agreement with numeric order for short values).
 * Threading: single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/seqnum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t an = nl ? (size_t)(nl - s) : size;
    const char *b = nl ? nl + 1 : s;
    size_t bn = nl ? size - an - 1 : size;
    int va = k2p_seq_valid(s, an), vb = k2p_seq_valid(b, bn);
    if (va && vb) {
        int ab = k2p_seq_cmp(s, an, b, bn), ba = k2p_seq_cmp(b, bn, s, an);
        if ((ab < 0) != (ba > 0) || (ab == 0) != (ba == 0) || k2p_seq_cmp(s, an, s, an) != 0)
            abort();
        if (an < 19 && bn < 19) { /* fits in 64 bits: must agree with integer order */
            char x[20], y[20];
            memcpy(x, s, an);
            x[an] = '\0';
            memcpy(y, b, bn);
            y[bn] = '\0';
            unsigned long long p = strtoull(x, NULL, 10), q = strtoull(y, NULL, 10);
            if ((p < q) != (ab < 0) || (p == q) != (ab == 0))
                abort();
        }
    }
    return 0;
}

/* seqnum.h - Kinesis sequence numbers: decimal strings `0|[1-9][0-9]{0,128}`, compared as
 * numbers (length first, then bytes), never as strings of different lengths.
 *
 * Threading: reentrant, no allocation.
 */
#ifndef K2P_SEQNUM_H
#define K2P_SEQNUM_H

#include <stdbool.h>
#include <stddef.h>

#define K2P_SEQ_MAX_DIGITS 129

/* True when s[0..n) is a valid sequence number. */
bool k2p_seq_valid(const char *s, size_t n);

/* <0, 0, >0 as a < b, a == b, a > b numerically. Both must be valid. */
int k2p_seq_cmp(const char *a, size_t an, const char *b, size_t bn);

/* NUL-terminated convenience form of k2p_seq_cmp. */
int k2p_seq_cmps(const char *a, const char *b);

#endif

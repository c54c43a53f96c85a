/* base64.h - standard base64 (RFC 4648 §4, with padding), as Kinesis uses for record Data.
 *
 * Threading: reentrant, no allocation.
 */
#ifndef K2P_BASE64_H
#define K2P_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode n bytes (without NUL). */
size_t k2p_base64_encoded_len(size_t n);

/* Upper bound of the bytes decoding n characters can produce. */
size_t k2p_base64_decoded_max(size_t n);

/* Encodes n bytes into out (room for k2p_base64_encoded_len(n) + 1; NUL-terminated).
 * Returns the length written (without NUL). */
size_t k2p_base64_encode(const uint8_t *in, size_t n, char *out);

/* Decodes n characters into out (room for k2p_base64_decoded_max(n)). Strict: padding must be
 * right, no whitespace, no characters outside the alphabet. Returns the number of bytes, or
 * -1 for invalid input. */
long k2p_base64_decode(const char *in, size_t n, uint8_t *out);

#endif

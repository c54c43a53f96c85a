/* event_stream.h - the AWS event-stream binary framing (application/vnd.amazon.eventstream),
 * as SubscribeToShard streams it: an incremental decoder fed arbitrary chunks, and an encoder
 * for tests and the mock server.
 *
 * A message on the wire (all integers big-endian):
 *
 *   total length u32 | headers length u32 | prelude CRC32 u32      (the 12-byte prelude)
 *   headers (headers length bytes) | payload | message CRC32 u32
 *
 * The prelude CRC covers the first 8 bytes, the message CRC every byte before it (zlib's
 * CRC-32). A header is: name length u8 (1..255), name, value type u8, value, where the value
 * is nothing (0 true, 1 false), 1 byte (2), 2 (3 short), 4 (4 int), 8 (5 long), u16 length +
 * bytes (6 byte array, 7 UTF-8 string), 8 (8 timestamp, ms since the epoch) or 16 (9 UUID).
 *
 * The decoder checks the prelude as soon as its 12 bytes arrive (so a corrupt length is
 * refused before anything is buffered for it), bounds every message by max_message, checks
 * both CRCs, walks every header and reads the headers AWS uses (:message-type, :event-type,
 * :exception-type, :error-code, :error-message, :content-type). Any malformation fails the
 * decoder for good with K2P_EPARSE and an "event-stream: ..." message: after a framing error
 * there is no way to find the next message boundary, so the caller drops the connection.
 *
 * Threading: a decoder belongs to one thread; the encoder and k2p_es_decode_message are
 * reentrant.
 */
#ifndef K2P_EVENT_STREAM_H
#define K2P_EVENT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kinesis2pg/buf.h"
#include "kinesis2pg/common.h"

#define K2P_ES_PRELUDE_LEN 12
#define K2P_ES_MIN_MESSAGE 16               /* prelude + message CRC, no headers, no payload */
#define K2P_ES_DEFAULT_MAX_MESSAGE (16u << 20) /* what the AWS SDKs accept */
#define K2P_ES_MAX_HEADERS_LEN (128u << 10)   /* what the AWS SDKs accept */
#define K2P_ES_MAX_HEADERS 64                 /* headers per message we keep (AWS sends 3-4) */

typedef enum k2p_es_type {
    K2P_ES_BOOL_TRUE = 0,
    K2P_ES_BOOL_FALSE = 1,
    K2P_ES_BYTE = 2,
    K2P_ES_SHORT = 3,
    K2P_ES_INT = 4,
    K2P_ES_LONG = 5,
    K2P_ES_BYTES = 6,
    K2P_ES_STRING = 7,
    K2P_ES_TIMESTAMP = 8,
    K2P_ES_UUID = 9,
} k2p_es_type;

/* One header. Pointers are into the message (valid as long as the message is). */
typedef struct k2p_es_header {
    const char *name; /* not NUL-terminated */
    uint8_t name_len;
    uint8_t type;     /* k2p_es_type */
    union {
        bool b;          /* BOOL_TRUE / BOOL_FALSE */
        int64_t i;       /* BYTE, SHORT, INT, LONG (sign-extended), TIMESTAMP (ms) */
        struct {
            const uint8_t *p; /* BYTES, STRING (not NUL-terminated), UUID (16 bytes) */
            uint16_t len;
        } bytes;
    } v;
} k2p_es_header;

typedef enum k2p_es_kind {
    K2P_ES_MSG_NONE = 0,  /* no :message-type header */
    K2P_ES_MSG_EVENT,     /* :message-type "event": :event-type names it */
    K2P_ES_MSG_EXCEPTION, /* "exception": a modelled error, :exception-type, JSON payload */
    K2P_ES_MSG_ERROR,     /* "error": :error-code and :error-message */
    K2P_ES_MSG_OTHER,     /* another :message-type value (message_type holds it) */
} k2p_es_kind;

/* One decoded message. headers, payload and the spans point into the bytes it was decoded
 * from; the well-known header values are copied, NUL-terminated (cut to fit). */
typedef struct k2p_es_message {
    k2p_es_header headers[K2P_ES_MAX_HEADERS];
    size_t n_headers;
    const uint8_t *payload;
    size_t payload_len;
    uint32_t total_len;
    k2p_es_kind kind;
    char message_type[32];
    char event_type[128];     /* "" when absent */
    char exception_type[128]; /* "" when absent */
    char error_code[128];     /* "" when absent */
    char error_message[256];  /* "" when absent */
    char content_type[64];    /* "" when absent */
} k2p_es_message;

/* Decodes exactly one complete message of len bytes (len must equal its total length).
 * Returns 0 or K2P_EPARSE with an "event-stream: ..." message in err. Pure, no allocation;
 * exposed for tests and fuzzing. */
int k2p_es_decode_message(const uint8_t *buf, size_t len, k2p_es_message *out, k2p_err *err);

/* The first header named `name`, or NULL. */
const k2p_es_header *k2p_es_message_header(const k2p_es_message *m, const char *name);

/* Called for each complete message. `m` and everything it points to are valid only during the
 * call. Return 0 to go on; any other value stops k2p_es_decoder_feed, which returns it. */
typedef int (*k2p_es_on_message)(void *ud, const k2p_es_message *m);

typedef struct k2p_es_decoder {
    k2p_buf partial;      /* the bytes of an incomplete message */
    uint32_t want;        /* its total length once the prelude is in, else 0 */
    size_t max_message;
    int failed;           /* 0, or the code every later feed returns */
    char failed_msg[256];
    uint64_t messages;    /* complete messages decoded */
    uint64_t bytes;       /* bytes fed */
} k2p_es_decoder;

/* max_message: the largest total length accepted (0: K2P_ES_DEFAULT_MAX_MESSAGE; at least
 * K2P_ES_MIN_MESSAGE). No allocation until a message spans two chunks. */
void k2p_es_decoder_init(k2p_es_decoder *d, size_t max_message);
void k2p_es_decoder_deinit(k2p_es_decoder *d);

/* Forgets any partial message and a failure (a new connection). Keeps the allocation. */
void k2p_es_decoder_reset(k2p_es_decoder *d);

/* Feeds len bytes (any split of the stream: a byte at a time, or many messages at once).
 * Calls cb for every message completed by them, in order; a message wholly inside `data`
 * is decoded in place, without a copy. Returns 0; K2P_EPARSE (malformed) or K2P_ENOMEM with
 * err set; or the first non-zero value cb returned (err untouched: the callback reports its
 * own detail). Bytes after the stopping message are dropped. After any non-zero return the
 * decoder is
 * failed: later feeds return K2P_EPARSE ("decoder already failed") until a reset. */
int k2p_es_decoder_feed(k2p_es_decoder *d, const void *data, size_t len, k2p_es_on_message cb,
                        void *ud, k2p_err *err);

/* True when no partial message is buffered: the stream may end here without truncation. */
bool k2p_es_decoder_at_boundary(const k2p_es_decoder *d);

/* Bytes of an incomplete message held (0 at a boundary). */
size_t k2p_es_decoder_pending(const k2p_es_decoder *d);

/* ---- encoding (tests, the mock server) ----------------------------------------------------- */

/* Appends one message with these headers and payload to out. Returns 0, K2P_EINVAL (a name of
 * 0 or > 255 bytes, a value over 65535 bytes, an unknown type, headers over
 * K2P_ES_MAX_HEADERS_LEN) or K2P_ENOMEM (out's bound). */
int k2p_es_encode_message(k2p_buf *out, const k2p_es_header *headers, size_t n_headers,
                          const void *payload, size_t payload_len);

/* Header constructors for k2p_es_encode_message (borrow name and value). */
k2p_es_header k2p_es_header_string(const char *name, const char *value);
k2p_es_header k2p_es_header_int(const char *name, k2p_es_type type, int64_t value);

#endif

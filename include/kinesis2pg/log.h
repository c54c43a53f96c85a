/* log.h - one line per event on stderr: `kinesis2pg: message` (text) or a JSON object
 * {"ts","level","event","msg"} (--log-format json). Never pass a secret.
 *
 * The level is checked before the arguments are formatted (K2P_LOG). Hot paths count in
 * metrics instead of logging.
 *
 * Threading: any thread; each line is written with one fwrite on an unbuffered stream.
 */
#ifndef K2P_LOG_H
#define K2P_LOG_H

#include <stdbool.h>

#include "kinesis2pg/config.h"

/* Sets the format and the most verbose level written. Call once, before threads start. */
void k2p_log_init(k2p_log_format format, k2p_log_level level);

bool k2p_log_enabled(k2p_log_level level);
bool k2p_log_json(void);

/* `event` is a short snake_case name ("pg_retry", "run_summary"); the message is one line. */
void k2p_log(k2p_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define K2P_LOG(level, event, ...)                                                                 \
    do {                                                                                           \
        if (k2p_log_enabled(level))                                                                \
            k2p_log((level), (event), __VA_ARGS__);                                                \
    } while (0)

#endif

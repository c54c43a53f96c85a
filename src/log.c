/* log.c - stderr logging, text or JSON lines (see log.h).
 *
 * Threading: the format and level are set once before other threads start and only read
 * afterwards; every line is built in a local buffer and written with one fwrite.
 */
#include "kinesis2pg/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kinesis2pg/buf.h"

static k2p_log_format log_format = K2P_LOG_FORMAT_TEXT;
static k2p_log_level log_level = K2P_LOG_LEVEL_INFO;

void k2p_log_init(k2p_log_format format, k2p_log_level level)
{
    log_format = format;
    log_level = level;
}

bool k2p_log_enabled(k2p_log_level level)
{
    return level <= log_level;
}

bool k2p_log_json(void)
{
    return log_format == K2P_LOG_FORMAT_JSON;
}

static const char *level_name(k2p_log_level l)
{
    switch (l) {
    case K2P_LOG_LEVEL_ERROR: return "error";
    case K2P_LOG_LEVEL_WARN: return "warn";
    case K2P_LOG_LEVEL_INFO: return "info";
    case K2P_LOG_LEVEL_DEBUG: return "debug";
    }
    return "info";
}

void k2p_log(k2p_log_level level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    k2p_buf line;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    k2p_buf_init(&line, 0);
    if (log_format == K2P_LOG_FORMAT_JSON) {
        struct timespec ts;
        struct tm tm;
        char when[40];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        k2p_buf_printf(&line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":", when,
                       ts.tv_nsec / 1000000, level_name(level));
        k2p_buf_put_json_str(&line, event, strlen(event));
        k2p_buf_puts(&line, ",\"msg\":");
        k2p_buf_put_json_str(&line, msg, strlen(msg));
        k2p_buf_puts(&line, "}\n");
    } else {
        k2p_buf_printf(&line, "kinesis2pg: %s%s\n", level == K2P_LOG_LEVEL_ERROR ? "error: " : "",
                       msg);
    }
    if (line.data)
        fwrite(line.data, 1, line.len, stderr);
    k2p_buf_deinit(&line);
}

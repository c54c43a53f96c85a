/* metrics.c - the --metrics-addr endpoint over libmicrohttpd (/metrics, /healthz, /readyz).
 *
 * Threading: libmicrohttpd's internal polling thread calls answer(); everything it reads comes
 * through the owner's callbacks, which read atomics only.
 */
#include "kinesis2pg/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct k2p_metrics {
    struct MHD_Daemon *d;
    k2p_metrics_source src;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls)
{
    k2p_metrics *m = cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, "text/plain", "method not allowed\n", 19);
    if (strcmp(url, "/metrics") == 0) {
        k2p_buf b;
        enum MHD_Result ret;
        k2p_buf_init(&b, 64u << 20);
        if (m->src.render(m->src.ud, &b) != 0) {
            k2p_buf_deinit(&b);
            return reply(c, 500, "text/plain", "out of memory\n", 14);
        }
        ret = reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                    b.len);
        k2p_buf_deinit(&b);
        return ret;
    }
    if (strcmp(url, "/healthz") == 0)
        return reply(c, 200, "text/plain", "ok\n", 3);
    if (strcmp(url, "/readyz") == 0) {
        char why[256] = "not ready";
        char body[300];
        int n;
        if (m->src.ready(m->src.ud, why, sizeof why))
            return reply(c, 200, "text/plain", "ready\n", 6);
        n = snprintf(body, sizeof body, "%s\n", why);
        return reply(c, 503, "text/plain", body, (size_t)(n < 0 ? 0 : K2P_MIN(n, 299)));
    }
    return reply(c, 404, "text/plain", "not found: try /metrics, /healthz or /readyz\n", 45);
}

k2p_metrics *k2p_metrics_start(const char *host, int port, const k2p_metrics_source *src,
                               k2p_err *err)
{
    k2p_metrics *m = calloc(1, sizeof *m);
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;

    if (!m) {
        k2p_err_set(err, K2P_ENOMEM, "out of memory");
        return NULL;
    }
    m->src = *src;
    memset(&ss, 0, sizeof ss);
    if (host && strchr(host, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            goto bad_host;
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host && *host ? host : "0.0.0.0", &a4->sin_addr) != 1)
            goto bad_host;
    }
    m->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 64U,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
    if (!m->d) {
        k2p_err_set(err, K2P_ECONFIG,
                    "cannot listen on --metrics-addr %s:%d (in use, or not an address of this "
                    "host)",
                    host ? host : "0.0.0.0", port);
        free(m);
        return NULL;
    }
    info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : port;
    return m;
bad_host:
    k2p_err_set(err, K2P_ECONFIG, "--metrics-addr: '%s' is not an IP address", host);
    free(m);
    return NULL;
}

int k2p_metrics_port(const k2p_metrics *m)
{
    return m->port;
}

void k2p_metrics_stop(k2p_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m);
}

int k2p_prom_help(k2p_buf *out, const char *name, const char *type, const char *help)
{
    return k2p_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int k2p_prom_sample(k2p_buf *out, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        return k2p_buf_printf(out, "%s{%s} %.17g\n", name, labels, value);
    return k2p_buf_printf(out, "%s %.17g\n", name, value);
}

int k2p_prom_label(k2p_buf *labels, const char *key, const char *value)
{
    if (labels->len && k2p_buf_putc(labels, ','))
        return K2P_ENOMEM;
    if (k2p_buf_printf(labels, "%s=\"", key))
        return K2P_ENOMEM;
    for (const char *p = value; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (esc ? k2p_buf_puts(labels, esc) : k2p_buf_putc(labels, *p))
            return K2P_ENOMEM;
    }
    return k2p_buf_putc(labels, '"');
}

/* mock_main.c - mock_kinesis: the project's own Kinesis-compatible server, for fault
 * injection and for serving records faster than any emulator (DESIGN §8).
 *
 * Parses flags, preloads, listens on 127.0.0.1, prints the port as one line on stdout, and
 * serves until SIGTERM/SIGINT or (with --stdin-watch) until its stdin closes. See
 * tests/mock_kinesis/README.md for the flags and the /control and /stats endpoints.
 *
 * Threading: the main thread parses, preloads, starts the HTTP workers (mock_http.c), then
 * only waits for a signal or stdin EOF and shuts them down. Signals are blocked in every
 * thread and read from a signalfd.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "mock_api.h"
#include "mock_http.h"
#include "mock_preload.h"

static void usage(FILE *f)
{
    fputs(
        "Usage: mock_kinesis [options]\n"
        "A Kinesis Data Streams server (JSON 1.1) on 127.0.0.1 for tests and benchmarks.\n"
        "Prints the port it listens on as one line on stdout.\n\n"
        "Server:\n"
        "  --port N                 port (default 0: a free port)\n"
        "  --threads N              HTTP worker threads (default 2)\n"
        "  --stdin-watch            exit when stdin closes (the parent died)\n"
        "  --seed N                 seed of the fault RNG and of preloaded data (default 1)\n"
        "  --log-requests           one line per request on stderr\n"
        "Preloading:\n"
        "  --preload-stream NAME    create NAME with generated records before serving\n"
        "  --preload-shards N       shards (default 4)\n"
        "  --preload-records R      records in total, spread evenly (default 0)\n"
        "  --preload-size BYTES     about this many bytes per record (default 400)\n"
        "  --preload-kind K         json (default) or binary\n"
        "  --preload-span-ms MS     arrival times spread over the last MS (default 3600000)\n"
        "  --dump-jsonl FILE        write shard_id<TAB>seq<TAB>partition_key<TAB>data per record\n"
        "Realism (off by default):\n"
        "  --limits                 5 GetRecords/s and 2 MB/s per shard\n"
        "  --iterator-ttl MS        iterators expire after MS (default 300000)\n"
        "Faults (ratios in [0,1]; also settable at run time with /control):\n"
        "  --throttle P             ProvisionedThroughputExceededException (HTTP 400)\n"
        "  --error500 P             InternalFailure (HTTP 500)\n"
        "  --reset P                close the connection without answering (RST)\n"
        "  --truncate P             send fewer body bytes than Content-Length, then close\n"
        "  --expire P               GetRecords: ExpiredIteratorException\n"
        "  --put-fail P             PutRecords: fail this share of entries (partial failure)\n"
        "  --latency-ms MS          delay every answer by MS\n"
        "  --fault-ops LIST         operations faults apply to (default all), e.g.\n"
        "                           GetRecords,GetShardIterator\n"
        "  --reshard-at K           once K records have been served by GetRecords ...\n"
        "  --reshard-split SHARD[:HASHKEY]   ... split SHARD (default: in the middle), or\n"
        "  --reshard-merge A,B      ... merge shards A and B\n"
        "  --reshard-stream NAME    stream to reshard (default: the first one)\n"
        "Enhanced fan-out (SubscribeToShard over HTTP/2 cleartext, prior knowledge):\n"
        "  --subscription-ms MS     a subscription ends after MS (default 300000, as AWS)\n"
        "  --consumer-delay-ms MS   consumers stay CREATING/DELETING for MS (default 0)\n"
        "  --takeover-ms MS         a second subscription of a consumer to a shard gets\n"
        "                           ResourceInUseException for MS, then takes over (5000)\n"
        "  --sub-reset P            reset the connection instead of this share of events\n"
        "  --sub-error P            end the stream with an error message instead\n"
        "  --efo-poll-ms MS         how often a subscription looks for new records (5)\n"
        "  --help\n",
        f);
}

typedef struct main_opts {
    int port, threads, poll_ms;
    bool stdin_watch, log_requests;
    uint64_t seed;
    mock_preload_opts pre;
} main_opts;

enum {
    O_PORT = 256,
    O_THREADS,
    O_STDIN_WATCH,
    O_SEED,
    O_LOG,
    O_P_STREAM,
    O_P_SHARDS,
    O_P_RECORDS,
    O_P_SIZE,
    O_P_KIND,
    O_P_SPAN,
    O_DUMP,
    O_POLL,
    O_CTL, /* every option from here maps to a mock_ctl_set key */
};

/* Option name -> control key, for the options that are run-time knobs. */
static const struct {
    const char *opt, *key;
    int has_arg;
} ctl_opts[] = {
    {"limits", "limits", no_argument},
    {"iterator-ttl", "iterator_ttl_ms", required_argument},
    {"throttle", "throttle", required_argument},
    {"error500", "error500", required_argument},
    {"reset", "reset", required_argument},
    {"truncate", "truncate", required_argument},
    {"expire", "expire", required_argument},
    {"put-fail", "put_fail", required_argument},
    {"latency-ms", "latency_ms", required_argument},
    {"fault-ops", "fault_ops", required_argument},
    {"reshard-at", "reshard_at", required_argument},
    {"reshard-split", "split", required_argument},
    {"reshard-merge", "merge", required_argument},
    {"reshard-stream", "reshard_stream", required_argument},
    {"subscription-ms", "subscription_ms", required_argument},
    {"consumer-delay-ms", "consumer_delay_ms", required_argument},
    {"takeover-ms", "takeover_ms", required_argument},
    {"sub-reset", "sub_reset", required_argument},
    {"sub-error", "sub_error", required_argument},
};

static int num_opt(const char *flag, const char *v, int64_t min, int64_t max, int64_t *out)
{
    if (k2p_parse_i64(v, out) || *out < min || *out > max) {
        fprintf(stderr, "mock_kinesis: --%s needs a whole number in [%lld, %lld], not '%s'\n", flag,
                (long long)min, (long long)max, v);
        return -1;
    }
    return 0;
}

/* Parses argv into o and applies run-time knobs to ctl. 0, 1 (--help) or -1 (usage error).
 * Control options are collected first and applied after --seed so their order is free. */
static int parse_args(int argc, char **argv, main_opts *o, mock_ctl *ctl)
{
    struct option lo[32 + K2P_ARRAY_LEN(ctl_opts)];
    const char *ctl_vals[K2P_ARRAY_LEN(ctl_opts)] = {0};
    size_t n = 0;
    int c;
    int64_t v;

    static const struct option base[] = {
        {"port", required_argument, NULL, O_PORT},
        {"threads", required_argument, NULL, O_THREADS},
        {"stdin-watch", no_argument, NULL, O_STDIN_WATCH},
        {"seed", required_argument, NULL, O_SEED},
        {"log-requests", no_argument, NULL, O_LOG},
        {"preload-stream", required_argument, NULL, O_P_STREAM},
        {"preload-shards", required_argument, NULL, O_P_SHARDS},
        {"preload-records", required_argument, NULL, O_P_RECORDS},
        {"preload-size", required_argument, NULL, O_P_SIZE},
        {"preload-kind", required_argument, NULL, O_P_KIND},
        {"preload-span-ms", required_argument, NULL, O_P_SPAN},
        {"dump-jsonl", required_argument, NULL, O_DUMP},
        {"efo-poll-ms", required_argument, NULL, O_POLL},
        {"help", no_argument, NULL, 'h'},
    };
    for (size_t i = 0; i < K2P_ARRAY_LEN(base); i++)
        lo[n++] = base[i];
    for (size_t i = 0; i < K2P_ARRAY_LEN(ctl_opts); i++)
        lo[n++] = (struct option){ctl_opts[i].opt, ctl_opts[i].has_arg, NULL, O_CTL + (int)i};
    lo[n] = (struct option){NULL, 0, NULL, 0};

    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 1;
        case O_PORT:
            if (num_opt("port", optarg, 0, 65535, &v))
                return -1;
            o->port = (int)v;
            break;
        case O_THREADS:
            if (num_opt("threads", optarg, 1, 64, &v))
                return -1;
            o->threads = (int)v;
            break;
        case O_STDIN_WATCH:
            o->stdin_watch = true;
            break;
        case O_LOG:
            o->log_requests = true;
            break;
        case O_SEED:
            if (num_opt("seed", optarg, 0, INT64_MAX, &v))
                return -1;
            o->seed = (uint64_t)v;
            break;
        case O_P_STREAM:
            if (!mock_stream_name_valid(optarg)) {
                fprintf(stderr, "mock_kinesis: '%s' is not a valid stream name\n", optarg);
                return -1;
            }
            o->pre.stream = optarg;
            break;
        case O_P_SHARDS:
            if (num_opt("preload-shards", optarg, 1, 100000, &v))
                return -1;
            o->pre.shards = (int)v;
            break;
        case O_P_RECORDS:
            if (num_opt("preload-records", optarg, 0, INT64_MAX / 2, &o->pre.records))
                return -1;
            break;
        case O_P_SIZE:
            if (num_opt("preload-size", optarg, 1, 1 << 20, &o->pre.size))
                return -1;
            break;
        case O_P_SPAN:
            if (num_opt("preload-span-ms", optarg, 0, INT64_MAX / 4, &o->pre.span_ms))
                return -1;
            break;
        case O_P_KIND:
            if (strcmp(optarg, "json") && strcmp(optarg, "binary")) {
                fprintf(stderr, "mock_kinesis: --preload-kind is json or binary\n");
                return -1;
            }
            o->pre.binary = !strcmp(optarg, "binary");
            break;
        case O_DUMP:
            o->pre.dump_path = optarg;
            break;
        case O_POLL:
            if (num_opt("efo-poll-ms", optarg, 1, 10000, &v))
                return -1;
            o->poll_ms = (int)v;
            break;
        default:
            if (c >= O_CTL && c < O_CTL + (int)K2P_ARRAY_LEN(ctl_opts)) {
                ctl_vals[c - O_CTL] = optarg ? optarg : "1";
                break;
            }
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mock_kinesis: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->pre.dump_path && !o->pre.stream) {
        fprintf(stderr, "mock_kinesis: --dump-jsonl needs --preload-stream\n");
        return -1;
    }
    {
        k2p_err err = {0};
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
        if (mock_ctl_set(ctl, "seed", seed, &err))
            return -1;
        for (size_t i = 0; i < K2P_ARRAY_LEN(ctl_opts); i++) {
            if (ctl_vals[i] && mock_ctl_set(ctl, ctl_opts[i].key, ctl_vals[i], &err)) {
                fprintf(stderr, "mock_kinesis: --%s: %s\n", ctl_opts[i].opt, err.msg);
                return -1;
            }
        }
    }
    return 0;
}

/* Lets one process hold well over 1024 connections (one per shard of a big loader). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Blocks until SIGTERM/SIGINT, or stdin EOF when watching it. */
static void wait_for_stop(int sfd, bool watch_stdin)
{
    for (;;) {
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {0, POLLIN, 0}};
        int n = poll(p, watch_stdin ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                fprintf(stderr, "mock_kinesis: event=stop signal=%u\n", si.ssi_signo);
            return;
        }
        if (watch_stdin && p[1].revents) {
            char buf[256];
            ssize_t r = read(0, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                fprintf(stderr, "mock_kinesis: event=stop reason=stdin_closed\n");
                return;
            }
        }
    }
}

int main(int argc, char **argv)
{
    static mock_server srv; /* large: keep it off the stack */
    main_opts o = {0};
    mock_http *http = NULL;
    mock_http_opts ho = {0};
    k2p_err err = {0};
    sigset_t ss;
    int sfd = -1, rc, status = 1;

    o.seed = 1;
    o.pre.shards = 4;
    o.pre.size = 400;
    o.pre.span_ms = 3600000;
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals in every thread (the workers inherit the mask). */
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("mock_kinesis: signalfd");
        return 1;
    }
    if (mock_ctl_init(&srv.ctl, 1) || mock_store_init(&srv.store, 1) || mock_efo_init(&srv)) {
        fprintf(stderr, "mock_kinesis: out of memory\n");
        return 1;
    }
    rc = parse_args(argc, argv, &o, &srv.ctl);
    if (rc) {
        status = rc > 0 ? 0 : 2;
        goto out;
    }
    srv.log_requests = o.log_requests;
    raise_fd_limit();
    if (o.pre.stream) {
        int64_t t0 = k2p_now_ns();
        o.pre.seed = o.seed;
        if (mock_preload(&srv.store, &o.pre, &err)) {
            fprintf(stderr, "mock_kinesis: %s\n", err.msg);
            goto out;
        }
        fprintf(stderr,
                "mock_kinesis: event=preloaded stream=%s shards=%d records=%lld size=%lld "
                "ms=%lld\n",
                o.pre.stream, o.pre.shards, (long long)o.pre.records, (long long)o.pre.size,
                (long long)((k2p_now_ns() - t0) / 1000000));
    }
    ho.port = o.port;
    ho.threads = o.threads;
    ho.handler = mock_api_handle;
    ho.ud = &srv;
    ho.stats = &srv.ctl.stats;
    ho.tick_ms = o.poll_ms;
    http = mock_http_new(&ho, &err);
    if (!http || mock_http_start(http, &err)) {
        fprintf(stderr, "mock_kinesis: %s\n", err.msg);
        goto out;
    }
    printf("%d\n", mock_http_port(http));
    fflush(stdout);
    fprintf(stderr, "mock_kinesis: event=listening address=127.0.0.1:%d threads=%d\n",
            mock_http_port(http), o.threads ? o.threads : 2);
    wait_for_stop(sfd, o.stdin_watch);
    status = 0;
out:
    mock_http_free(http);
    if (status == 0 && o.pre.stream)
        fprintf(stderr, "mock_kinesis: event=exit records_served=%llu\n",
                (unsigned long long)atomic_load(&srv.ctl.stats.records_served));
    mock_store_deinit(&srv.store);
    mock_efo_deinit(&srv);
    mock_ctl_deinit(&srv.ctl);
    close(sfd);
    return status;
}

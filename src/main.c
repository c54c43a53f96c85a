/* main.c - the kinesis2pg command: parses the configuration, dispatches to the command, maps
 * results to exit codes (0 done, 1 runtime failure, 2 usage/config error) and handles
 * SIGTERM/SIGINT (first: stop reading, flush, checkpoint, exit 0; second: exit at once).
 *
 * Threading: main thread; the loader starts the others.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kinesis2pg/config.h"
#include "kinesis2pg/env.h"
#include "kinesis2pg/loader.h"
#include "kinesis2pg/log.h"
#include "admin.h"
#include "tail.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    if (stop_requested) {
        /* Second signal: leave now. Committed data and checkpoints are consistent at every
         * instant (DESIGN §4), so nothing is corrupted. */
        static const char msg[] = "kinesis2pg: second signal, exiting immediately\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    stop_requested = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int exit_code(int rc)
{
    if (rc == 0)
        return 0;
    return rc == K2P_ECONFIG ? 2 : 1;
}

static int cmd_load(const k2p_config *cfg, const k2p_env *env)
{
    k2p_cred_chain *creds = k2p_config_cred_chain_new(cfg, env);
    k2p_load_opts o;
    k2p_load_result res;
    k2p_err err = {0};
    int rc;

    if (!creds) {
        fprintf(stderr, "kinesis2pg: out of memory\n");
        return 1;
    }
    k2p_load_opts_from_config(&o, cfg, creds);
    o.stop = &stop_requested;
    install_signals();
    rc = k2p_load_run(&o, &res, &err);
    if (rc)
        k2p_log(K2P_LOG_LEVEL_ERROR, "run_failed", "%s", err.msg);
    else if (stop_requested)
        K2P_LOG(K2P_LOG_LEVEL_INFO, "stopped", "stopped by signal; everything read was committed");
    k2p_cred_chain_free(creds);
    return exit_code(rc);
}

static int cmd_tail(const k2p_config *cfg, const k2p_env *env)
{
    k2p_cred_chain *creds = k2p_config_cred_chain_new(cfg, env);
    k2p_err err = {0};
    int rc;
    if (!creds) {
        fprintf(stderr, "kinesis2pg: out of memory\n");
        return 1;
    }
    install_signals();
    rc = k2p_tail_run(cfg, creds, &stop_requested, &err);
    if (rc && !(rc == K2P_EIO && strstr(err.msg, "stdout"))) /* a closed pipe is no error */
        k2p_log(K2P_LOG_LEVEL_ERROR, "tail_failed", "%s", err.msg);
    k2p_cred_chain_free(creds);
    return rc == K2P_EIO && strstr(err.msg, "stdout") ? 0 : exit_code(rc);
}

int main(int argc, char **argv)
{
    const k2p_env *env = k2p_env_process();
    /* Memory follows the in-flight budget only if freed buffers go back to the system: pin
     * glibc's mmap threshold (its dynamic one grows after the first large free, and later
     * multi-MB answers then stay on the heap), and keep a few arenas rather than one per
     * reader thread. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 4);
    k2p_config cfg;
    k2p_err err = {0};
    int rc;

    rc = k2p_config_parse(&cfg, argc, argv, env, &err);
    if (rc) {
        fprintf(stderr, "kinesis2pg: %s\n", err.msg);
        fprintf(stderr, "Try 'kinesis2pg --help'.\n");
        k2p_config_deinit(&cfg);
        return 2;
    }
    if (cfg.version) {
        printf("kinesis2pg %s\n", K2P_VERSION);
        k2p_config_deinit(&cfg);
        return 0;
    }
    if (cfg.help || cfg.command == K2P_CMD_NONE) {
        rc = cfg.help ? 0 : 2;
        k2p_config_print_help(cfg.help ? stdout : stderr, k2p_command_name(cfg.command));
        k2p_config_deinit(&cfg);
        return rc;
    }
    k2p_log_init(cfg.log_format, cfg.log_level);
    if (cfg.log_level >= K2P_LOG_LEVEL_DEBUG)
        k2p_config_dump(&cfg, stderr);
    switch (cfg.command) {
    case K2P_CMD_LOAD: rc = cmd_load(&cfg, env); break;
    case K2P_CMD_STATUS: rc = k2p_cmd_status(&cfg); break;
    case K2P_CMD_RESET: rc = k2p_cmd_reset(&cfg); break;
    case K2P_CMD_TAIL: rc = cmd_tail(&cfg, env); break;
    default: rc = 2; break;
    }
    k2p_config_deinit(&cfg);
    return rc;
}

/* pg_harness.c - a throw-away PostgreSQL cluster on loopback for tests (see pg_harness.h).
 *
 * Commands (initdb, pg_ctl) run through fork + execve, as the `postgres` system user when we are
 * root (PostgreSQL refuses to run as root), with stdio sent to <dir>/cmd.log and no inherited
 * descriptors. Cleanup has two layers:
 *   - an atexit handler stops every cluster still registered when the process exits normally;
 *   - a guardian `sh` in its own session holds the read end of a pipe whose write end only this
 *     process has: when it reads EOF without "done" (the test died: abort, SIGKILL, ctest
 *     timeout), it sends the postmaster SIGQUIT (immediate shutdown) and removes the temp dir.
 *
 * Threading: the cluster registry is guarded by a mutex; everything else belongs to the thread
 * that started the cluster.
 */
#include "pg_harness.h"

#include "kinesis2pg/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PG_PATH_MAX 320
#define PG_MAX_GROUPS 64
#define PG_PORT_ATTEMPTS 12
#define PG_DBNAME "k2p_test"
#define PG_SUPERUSER "postgres"

struct k2p_test_pg_priv {
    struct k2p_test_pg_priv *next; /* registry link, guarded by g_lock */
    char dir[256];
    char datadir[PG_PATH_MAX];
    char logfile[PG_PATH_MAX]; /* server.log (pg_ctl -l) */
    char cmdlog[PG_PATH_MAX];  /* output of initdb / pg_ctl */
    char bindir[256];
    int port;
    int drop_privs; /* run commands as uid/gid (we are root) */
    uid_t uid;
    gid_t gid;
    gid_t groups[PG_MAX_GROUPS];
    int ngroups;
    char **env;  /* environment for commands: ours minus PG*, plus LC_ALL=C (owned copies) */
    pid_t owner; /* the process that started it: a forked child must not stop it */
    int running;
    int guard_fd; /* write end of the guardian's pipe, or -1 */
    pid_t guard_pid;
    PGconn *conn; /* cached connection of the exec/query helpers */
    int keep;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct k2p_test_pg_priv *g_clusters;
static int g_atexit_done;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static int str_printf(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf that reports truncation: 0 or -1. */
static int str_printf(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int is_exec(const char *dir, const char *name)
{
    char p[PG_PATH_MAX];
    if (str_printf(p, sizeof p, "%s/%s", dir, name))
        return 0;
    return access(p, X_OK) == 0;
}

static int bindir_ok(const char *dir)
{
    return is_exec(dir, "initdb") && is_exec(dir, "pg_ctl") && is_exec(dir, "postgres");
}

/* Finds the server binaries: $K2P_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/N/bin,
 * then initdb on PATH. 0 or K2P_ENOTFOUND. */
static int find_bindir(char *out, size_t cap)
{
    const char *env = getenv("K2P_PG_BINDIR");
    const char *path;
    FILE *f;

    if (env && *env) {
        if (str_printf(out, cap, "%s", env) == 0 && bindir_ok(out))
            return 0;
        fprintf(stderr, "pg_harness: K2P_PG_BINDIR=%s has no initdb/pg_ctl/postgres\n", env);
        return K2P_ENOTFOUND;
    }
    f = popen("pg_config --bindir 2>/dev/null", "r");
    if (f) {
        char line[256];
        if (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (str_printf(out, cap, "%s", line) == 0 && bindir_ok(out)) {
                pclose(f);
                return 0;
            }
        }
        pclose(f);
    }
    for (int v = 18; v >= 10; v--) {
        if (str_printf(out, cap, "/usr/lib/postgresql/%d/bin", v) == 0 && bindir_ok(out))
            return 0;
    }
    path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < cap) {
            memcpy(out, path, n);
            out[n] = '\0';
            if (bindir_ok(out))
                return 0;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return K2P_ENOTFOUND;
}

static void free_env(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* Builds the commands' environment: a copy of ours without PG* variables (they would redirect
 * initdb or pg_ctl), plus LC_ALL=C for stable messages. NULL on OOM. */
static char **make_env(void)
{
    size_t n = 0, j = 0;
    char **env;
    for (char **e = environ; *e; e++)
        n++;
    env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "PG", 2) == 0 || strncmp(*e, "LC_ALL=", 7) == 0)
            continue;
        if (!(env[j++] = k2p_strdup(*e)))
            goto oom;
    }
    if (!(env[j] = k2p_strdup("LC_ALL=C")))
        goto oom;
    return env;
oom:
    free_env(env);
    return NULL;
}

/* Closes every descriptor >= lo in a freshly forked child. Async-signal-safe. */
static void close_from(int lo)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lo, ~0U, 0) == 0)
        return;
#endif
    for (int fd = lo; fd < 4096; fd++)
        close(fd);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Prints the last `tail` bytes of a file to stderr under a heading. */
static void dump_file(const char *title, const char *path, long tail)
{
    FILE *f = fopen(path, "r");
    char chunk[1024];
    size_t n;
    if (!f)
        return;
    fprintf(stderr, "---- %s (%s) ----\n", title, path);
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > tail)
            fseek(f, size - tail, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, stderr);
    fprintf(stderr, "---- end of %s ----\n", title);
    fclose(f);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Does the file, from byte `from` on, contain `needle`? */
static int file_contains_from(const char *path, long from, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int found = 0;
    if (!f)
        return 0;
    if (fseek(f, from, SEEK_SET) == 0) {
        while (!found && fgets(line, sizeof line, f))
            found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* Writes (or appends) `text` to path; a file it creates is given to the server's user. */
static int write_file(const struct k2p_test_pg_priv *p, const char *path, const char *text,
                      int append)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0600);
    size_t len = strlen(text), off = 0;
    int rc = 0;
    if (fd < 0) {
        fprintf(stderr, "pg_harness: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (p->drop_privs && fchown(fd, p->uid, p->gid) != 0)
        rc = -1;
    while (rc == 0 && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (close(fd) != 0)
        rc = -1;
    if (rc)
        fprintf(stderr, "pg_harness: write %s: %s\n", path, strerror(errno));
    return rc;
}

/* Quotes s as a postgresql.conf string value ('...' with ' doubled). 0 or -1 (too long). */
static int conf_quote(char *dst, size_t cap, const char *s)
{
    size_t j = 0;
    if (cap < 3)
        return -1;
    dst[j++] = '\'';
    for (; *s; s++) {
        if (j + 3 >= cap)
            return -1;
        if (*s == '\'')
            dst[j++] = '\'';
        dst[j++] = *s;
    }
    dst[j++] = '\'';
    dst[j] = '\0';
    return 0;
}

int k2p_test_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int port = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ---------------------------------------------------------------------------------------------
 * Running commands
 */

/* Runs bindir/argv[0] with argv as the server's user, output appended to cmd.log. Returns the
 * exit status, or -1 if it could not run or was killed. */
static int run_cmd(const struct k2p_test_pg_priv *p, char *const argv[])
{
    char exe[PG_PATH_MAX];
    int logfd, status;
    pid_t pid;

    if (str_printf(exe, sizeof exe, "%s/%s", p->bindir, argv[0]))
        return -1;
    logfd = open(p->cmdlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return -1;
    {
        FILE *f = fdopen(dup(logfd), "a");
        if (f) {
            fputs("$", f);
            for (int i = 0; argv[i]; i++)
                fprintf(f, " %s", argv[i]);
            fputc('\n', f);
            fclose(f);
        }
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        close_from(3);
        if (p->drop_privs) {
            if (setgroups((size_t)p->ngroups, p->groups) != 0 || setgid(p->gid) != 0 ||
                setuid(p->uid) != 0)
                _exit(126);
        }
        if (chdir(p->dir) != 0)
            _exit(126);
        execve(exe, argv, p->env);
        _exit(127);
    }
    close(logfd);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Starts the guardian (see the top of the file). 0 or -1. */
static int start_guardian(struct k2p_test_pg_priv *p)
{
    static const char script[] =
        "read -r line\n"
        "[ \"$line\" = done ] && exit 0\n"
        "pid=$(head -n 1 \"$1/postmaster.pid\" 2>/dev/null)\n"
        "if [ -n \"$pid\" ]; then\n"
        "  kill -QUIT \"$pid\" 2>/dev/null\n"
        "  i=0\n"
        "  while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
        "  kill -KILL \"$pid\" 2>/dev/null\n"
        "fi\n"
        "rm -rf \"$2\"\n";
    int fds[2];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        char *argv[] = {"sh", "-c", (char *)script, "k2p-pg-guard", p->datadir, p->dir, NULL};
        int nul = open("/dev/null", O_RDWR);
        setsid(); /* survive a kill of our process group */
        dup2(fds[0], 0);
        if (nul >= 0) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        close_from(3);
        execve("/bin/sh", argv, p->env);
        _exit(127);
    }
    close(fds[0]);
    p->guard_fd = fds[1];
    p->guard_pid = pid;
    return 0;
}

/* Tells the guardian the cluster is gone and reaps it. */
static void dismiss_guardian(struct k2p_test_pg_priv *p)
{
    if (p->guard_fd >= 0) {
        ssize_t w = write(p->guard_fd, "done\n", 5);
        (void)w;
        close(p->guard_fd);
        p->guard_fd = -1;
    }
    if (p->guard_pid > 0) {
        while (waitpid(p->guard_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->guard_pid = 0;
    }
}

static int pg_ctl_stop(struct k2p_test_pg_priv *p, const char *mode)
{
    char *argv[] = {"pg_ctl", "-D", p->datadir, "-m", (char *)mode, "-w", "-t", "60", "stop", NULL};
    return run_cmd(p, argv);
}

/* Last resort: SIGKILL the postmaster named in postmaster.pid. */
static void kill_postmaster(struct k2p_test_pg_priv *p)
{
    char path[PG_PATH_MAX], line[32];
    FILE *f;
    int64_t pid = 0;
    if (str_printf(path, sizeof path, "%s/postmaster.pid", p->datadir))
        return;
    f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (k2p_parse_i64(line, &pid) == 0 && pid > 1)
            kill((pid_t)pid, SIGKILL);
    }
    fclose(f);
}

static void stop_server(struct k2p_test_pg_priv *p, const char *mode)
{
    if (p->conn) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
    if (!p->running)
        return;
    if (pg_ctl_stop(p, mode) != 0 && pg_ctl_stop(p, "immediate") != 0) {
        fprintf(stderr, "pg_harness: pg_ctl stop failed, killing the postmaster\n");
        kill_postmaster(p);
    }
    p->running = 0;
}

/* Starts the server, picking a new free port when the current one turns out to be taken. */
static int start_server(struct k2p_test_pg_priv *p, int keep_port)
{
    char portfile[PG_PATH_MAX], line[64];
    char *argv[] = {"pg_ctl", "-D", p->datadir, "-l", p->logfile, "-w", "-t", "60", "start", NULL};

    if (str_printf(portfile, sizeof portfile, "%s/k2p_port.conf", p->datadir))
        return -1;
    for (int attempt = 0; attempt < PG_PORT_ATTEMPTS; attempt++) {
        long log_from = file_size(p->logfile);
        if (!keep_port || p->port == 0)
            p->port = k2p_test_free_port();
        if (p->port == 0)
            return -1;
        str_printf(line, sizeof line, "port = %d\n", p->port);
        if (write_file(p, portfile, line, 0))
            return -1;
        if (run_cmd(p, argv) == 0) {
            p->running = 1;
            return 0;
        }
        /* pg_ctl may give up while a slow postmaster still runs: make sure it is gone. */
        pg_ctl_stop(p, "immediate");
        if (!file_contains_from(p->logfile, log_from, "could not bind") &&
            !file_contains_from(p->logfile, log_from, "already in use") &&
            !file_contains_from(p->logfile, log_from, "could not create any TCP/IP sockets"))
            return -1;
        if (keep_port) {
            /* Our old port was taken while we were down: wait a little, it may come back. */
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Registry and teardown
 */

static void unregister(struct k2p_test_pg_priv *p)
{
    pthread_mutex_lock(&g_lock);
    for (struct k2p_test_pg_priv **pp = &g_clusters; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
}

/* Stops the server, removes the dir (unless K2P_TEST_PG_KEEP), dismisses the guardian, frees. */
static void destroy(struct k2p_test_pg_priv *p, const char *mode)
{
    unregister(p);
    stop_server(p, mode);
    if (p->keep)
        fprintf(stderr, "pg_harness: keeping %s (K2P_TEST_PG_KEEP)\n", p->dir);
    else
        rm_rf(p->dir);
    dismiss_guardian(p);
    free_env(p->env);
    free(p);
}

static void atexit_cleanup(void)
{
    for (;;) {
        struct k2p_test_pg_priv *p;
        pthread_mutex_lock(&g_lock);
        p = g_clusters;
        pthread_mutex_unlock(&g_lock);
        if (!p)
            break;
        if (p->owner == getpid()) {
            destroy(p, "immediate");
        } else {
            /* A forked child exiting: the cluster (and the cached connection, whose socket we
             * share) is its parent's. Forget our copy without touching either: point our copy
             * of the socket at /dev/null so PQfinish()'s goodbye goes nowhere. */
            unregister(p);
            if (p->conn) {
                int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
                int sock = PQsocket(p->conn);
                if (nul >= 0 && (sock < 0 || dup2(nul, sock) == sock))
                    PQfinish(p->conn); /* else leak it: better than closing the parent's */
                if (nul >= 0)
                    close(nul);
            }
            free_env(p->env);
            free(p);
        }
    }
}

static void register_cluster(struct k2p_test_pg_priv *p)
{
    pthread_mutex_lock(&g_lock);
    if (!g_atexit_done) {
        atexit(atexit_cleanup);
        g_atexit_done = 1;
    }
    p->next = g_clusters;
    g_clusters = p;
    pthread_mutex_unlock(&g_lock);
}

/* ---------------------------------------------------------------------------------------------
 * Setup steps
 */

static int resolve_user(struct k2p_test_pg_priv *p)
{
    const char *name;
    struct passwd *pw;
    int n = PG_MAX_GROUPS;

    if (geteuid() != 0)
        return 0;
    name = getenv("K2P_TEST_PG_USER");
    if (!name || !*name)
        name = "postgres";
    pw = getpwnam(name);
    if (!pw) {
        fprintf(stderr,
                "pg_harness: running as root and there is no '%s' user to run "
                "PostgreSQL as (set K2P_TEST_PG_USER)\n",
                name);
        return K2P_ENOTFOUND;
    }
    p->drop_privs = 1;
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (getgrouplist(name, pw->pw_gid, p->groups, &n) < 0)
        n = 1, p->groups[0] = pw->pw_gid;
    p->ngroups = n;
    return 0;
}

static int make_dir(struct k2p_test_pg_priv *p)
{
    const char *parent = getenv("K2P_TEST_PG_TMPDIR");
    if (!parent || !*parent)
        parent = p->drop_privs ? NULL : getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    if (str_printf(p->dir, sizeof p->dir, "%s/k2p-pg-XXXXXX", parent) || !mkdtemp(p->dir)) {
        fprintf(stderr, "pg_harness: cannot create a temp dir in %s: %s\n", parent,
                strerror(errno));
        p->dir[0] = '\0';
        return -1;
    }
    if (p->drop_privs && chown(p->dir, p->uid, p->gid) != 0) {
        fprintf(stderr, "pg_harness: chown %s: %s\n", p->dir, strerror(errno));
        return -1;
    }
    if (chmod(p->dir, 0700) != 0)
        return -1;
    if (str_printf(p->datadir, sizeof p->datadir, "%s/data", p->dir) ||
        str_printf(p->logfile, sizeof p->logfile, "%s/server.log", p->dir) ||
        str_printf(p->cmdlog, sizeof p->cmdlog, "%s/cmd.log", p->dir))
        return -1;
    return 0;
}

static int init_cluster(struct k2p_test_pg_priv *p, const k2p_test_pg *opt)
{
    char path[PG_PATH_MAX], qdir[PG_PATH_MAX + 8], conf[2048];
    char *argv[] = {"initdb",
                    "-D",
                    p->datadir,
                    "-U",
                    PG_SUPERUSER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    opt->fsync ? NULL : "--no-sync",
                    NULL};
    /* The socket path (dir + "/.s.PGSQL.NNNNN") must fit sockaddr_un; else TCP only. */
    int sock_ok = strlen(p->dir) + 16 < 100;

    if (run_cmd(p, argv) != 0) {
        fprintf(stderr, "pg_harness: initdb failed\n");
        return -1;
    }
    if (str_printf(path, sizeof path, "%s/pg_hba.conf", p->datadir) ||
        write_file(p, path,
                   "# kinesis2pg test cluster: trust, loopback and the private socket only\n"
                   "local all all trust\n"
                   "host  all all 127.0.0.1/32 trust\n",
                   0))
        return -1;
    if (conf_quote(qdir, sizeof qdir, sock_ok ? p->dir : ""))
        return -1;
    if (str_printf(conf, sizeof conf,
                   "\n# kinesis2pg test harness\n"
                   "include 'k2p_port.conf'\n"
                   "listen_addresses = '127.0.0.1'\n"
                   "unix_socket_directories = %s\n"
                   "fsync = %s\n"
                   "full_page_writes = %s\n"
                   "max_connections = 60\n"
                   "max_wal_size = '2GB'\n"
                   "timezone = 'UTC'\n"
                   "log_timezone = 'UTC'\n"
                   "logging_collector = off\n"
                   "%s\n",
                   qdir, opt->fsync ? "on" : "off", opt->fsync ? "on" : "off",
                   opt->extra_conf ? opt->extra_conf : ""))
        return -1;
    if (str_printf(path, sizeof path, "%s/postgresql.conf", p->datadir) ||
        write_file(p, path, conf, 1))
        return -1;
    return 0;
}

static int create_database(k2p_test_pg *pg)
{
    char ci[256];
    PGconn *c;
    PGresult *r;
    int rc = -1;

    str_printf(ci, sizeof ci, "host=127.0.0.1 port=%d dbname=postgres user=%s connect_timeout=10",
               pg->port, pg->user);
    c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg_harness: connect %s: %s", ci, PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    r = PQexec(c, "CREATE DATABASE \"" PG_DBNAME "\"");
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        rc = 0;
    else
        fprintf(stderr, "pg_harness: CREATE DATABASE: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Public API
 */

int k2p_test_pg_available(void)
{
    struct k2p_test_pg_priv *p = calloc(1, sizeof *p);
    int ok;
    if (!p)
        return 0;
    ok = find_bindir(p->bindir, sizeof p->bindir) == 0 && resolve_user(p) == 0;
    free(p);
    return ok;
}

int k2p_test_pg_start(k2p_test_pg *pg)
{
    struct k2p_test_pg_priv *p;
    const char *keep = getenv("K2P_TEST_PG_KEEP");
    int rc = K2P_EIO;

    memset(pg->dir, 0, sizeof pg->dir);
    pg->conninfo[0] = pg->dbname[0] = pg->user[0] = '\0';
    pg->port = 0;
    pg->priv = NULL;

    p = calloc(1, sizeof *p);
    if (!p)
        return K2P_ENOMEM;
    p->guard_fd = -1;
    p->owner = getpid();
    p->keep = keep && *keep && strcmp(keep, "0") != 0;
    if (find_bindir(p->bindir, sizeof p->bindir)) {
        fprintf(stderr, "pg_harness: PostgreSQL server binaries not found "
                        "(install postgresql or set K2P_PG_BINDIR)\n");
        free(p);
        return K2P_ENOTFOUND;
    }
    rc = resolve_user(p);
    if (rc) {
        free(p);
        return rc;
    }
    rc = K2P_EIO;
    p->env = make_env();
    if (!p->env) {
        free(p);
        return K2P_ENOMEM;
    }
    /* Writing "done" to a guardian that died must not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    if (make_dir(p) != 0) {
        rm_rf(p->dir);
        free_env(p->env);
        free(p);
        return K2P_EIO;
    }
    if (start_guardian(p) != 0) {
        fprintf(stderr, "pg_harness: cannot start the cleanup guardian\n");
        rm_rf(p->dir);
        free_env(p->env);
        free(p);
        return K2P_EIO;
    }
    register_cluster(p);

    if (init_cluster(p, pg) != 0)
        goto fail;
    if (start_server(p, 0) != 0) {
        fprintf(stderr, "pg_harness: the server did not start\n");
        goto fail;
    }
    str_printf(pg->dir, sizeof pg->dir, "%s", p->dir);
    str_printf(pg->dbname, sizeof pg->dbname, "%s", PG_DBNAME);
    str_printf(pg->user, sizeof pg->user, "%s", PG_SUPERUSER);
    pg->port = p->port;
    str_printf(pg->conninfo, sizeof pg->conninfo,
               "host=127.0.0.1 port=%d dbname=%s user=%s connect_timeout=10", pg->port, pg->dbname,
               pg->user);
    if (create_database(pg) != 0)
        goto fail;
    pg->priv = p;
    return 0;

fail:
    dump_file("harness commands", p->cmdlog, 8192);
    dump_file("server log", p->logfile, 8192);
    pg->conninfo[0] = '\0';
    pg->port = 0;
    destroy(p, "immediate");
    return rc;
}

void k2p_test_pg_stop(k2p_test_pg *pg)
{
    if (!pg || !pg->priv)
        return;
    destroy(pg->priv, "fast");
    pg->priv = NULL;
}

int k2p_test_pg_restart_immediate(k2p_test_pg *pg)
{
    struct k2p_test_pg_priv *p = pg ? pg->priv : NULL;
    if (!p)
        return K2P_EINVAL;
    stop_server(p, "immediate");
    if (start_server(p, 1) != 0) {
        fprintf(stderr, "pg_harness: restart after immediate stop failed\n");
        dump_file("harness commands", p->cmdlog, 8192);
        dump_file("server log", p->logfile, 8192);
        return K2P_EIO;
    }
    return 0;
}

PGconn *k2p_test_pg_connect(const k2p_test_pg *pg)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg_harness: connect %s: %s", pg->conninfo, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *k2p_test_pg_conn(k2p_test_pg *pg)
{
    struct k2p_test_pg_priv *p = pg->priv;
    if (!p)
        return NULL;
    if (p->conn && PQstatus(p->conn) != CONNECTION_OK) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
    if (!p->conn)
        p->conn = k2p_test_pg_connect(pg);
    return p->conn;
}

int k2p_test_pg_exec(k2p_test_pg *pg, const char *sql)
{
    PGconn *c = k2p_test_pg_conn(pg);
    PGresult *r;
    int rc = -1;
    if (!c)
        return -1;
    r = PQexec(c, sql);
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        rc = 0;
        break;
    default:
        fprintf(stderr, "pg_harness: %s\n  in: %.400s\n", PQerrorMessage(c), sql);
    }
    PQclear(r);
    return rc;
}

char *k2p_test_pg_query_str(k2p_test_pg *pg, const char *sql)
{
    PGconn *c = k2p_test_pg_conn(pg);
    PGresult *r;
    char *out = NULL;
    if (!c)
        return NULL;
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "pg_harness: %s\n  in: %.400s\n", PQerrorMessage(c), sql);
    else if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        out = k2p_strndup(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return out;
}

int k2p_test_pg_query_i64(k2p_test_pg *pg, const char *sql, int64_t *out)
{
    char *s = k2p_test_pg_query_str(pg, sql);
    int rc = (s && k2p_parse_i64(s, out) == 0) ? 0 : -1;
    free(s);
    return rc;
}

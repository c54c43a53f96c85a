/* fault_testlib.h - helpers of the fault tests (tests/integration/test_faults_*.c), on top of
 * loader_testlib: run the loader against tests/mock_kinesis (preloaded, or created and filled
 * through it), read the mock's --dump-jsonl file as a produced set, take PostgreSQL down and
 * bring it back, watch a running loader (table rows, its log, its peak memory), and the extra
 * exact checks a fault test needs (a per-shard prefix after a graceful stop; per partition key
 * order across resharding).
 *
 * Sizes: K2P_TEST_LONG=1 asks the tests for their big versions (k2p_ft_long()).
 * Random choices come from K2P_TEST_SEED when set, else the clock; the seed is printed.
 *
 * Every helper that can fail ends the current cmocka test (fail_msg) after saying why.
 * Threading: the test's main thread only.
 */
#ifndef K2P_FAULT_TESTLIB_H
#define K2P_FAULT_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loader_testlib.h"
#include "mock_kinesis_harness.h"

/* 1 when K2P_TEST_LONG=1 (big versions of the tests). */
int k2p_ft_long(void);

/* 1 when this test binary (and so the loader) is built with AddressSanitizer or
 * ThreadSanitizer: memory figures are then the sanitizer's, not the loader's. */
int k2p_ft_sanitized(void);

/* Seeds the test's RNG from K2P_TEST_SEED or the clock and prints the seed under `name`. */
void k2p_ft_seed(const char *name);

/* A uniform random integer in [lo, hi]. */
int64_t k2p_ft_rand(int64_t lo, int64_t hi);

/* Milliseconds since an arbitrary origin (monotonic). */
int64_t k2p_ft_ms(void);

/* ---- the state a test file shares between its tests ------------------------------------------ */

/* Group setup (cmocka): seeds the RNG under seed_name (unless NULL), then starts t's PostgreSQL
 * cluster. 0, or -1 when it did not start. */
int k2p_ft_group_start(k2p_lt *t, const char *seed_name);

/* Before each test: stops a mock that a failed test left running (its exit status is not
 * judged), clears m, and frees the produced set a failed test left behind. */
void k2p_ft_test_reset(k2p_test_mock *m, k2p_lt_set *set);

/* Group teardown: k2p_ft_test_reset, then stops t's cluster. */
void k2p_ft_group_stop(k2p_lt *t, k2p_test_mock *m, k2p_lt_set *set);

/* ---- mock_kinesis -------------------------------------------------------------------------- */

/* Starts mock_kinesis with `args` (NULL-terminated, may be NULL) and points t's helpers (loader
 * runs, produce, t->client) at it. Fails the test when it does not start. */
void k2p_ft_mock_start(k2p_lt *t, k2p_test_mock *m, const char *const *args);

/* Starts mock_kinesis with a preloaded stream: `records` JSON records of about `size` bytes on
 * `shards` shards, plus the extra flags `extra` (NULL-terminated, may be NULL), and appends every
 * record to `set` (from its --dump-jsonl file). Points t's helpers at it. */
void k2p_ft_mock_preload(k2p_lt *t, k2p_test_mock *m, const char *stream, int shards, long records,
                         int size, const char *const *extra, k2p_lt_set *set);

/* Stops the mock (no-op when not running); fails the test unless it exited cleanly. */
void k2p_ft_mock_stop(k2p_test_mock *m);

/* POST /control; fails the test unless the mock accepted it. */
void k2p_ft_mock_control(const k2p_test_mock *m, const char *json);

/* A /stats counter ("faults.throttle"); fails the test when absent. */
int64_t k2p_ft_mock_stat(const k2p_test_mock *m, const char *path);

/* Appends the records of a --dump-jsonl file (shard, seq, key, JSON text or \\x hex) to set. */
void k2p_ft_read_dump(const char *path, k2p_lt_set *set);

/* ---- a loader running in the background ---------------------------------------------------- */

/* The default loader arguments of the fault tests, for `stream` from trim_horizon, followed by
 * `extra` (NULL-terminated, may be NULL). Returns a heap array (free it) of borrowed strings. */
const char **k2p_ft_args(const char *stream, const char *const *extra);

/* Starts `kinesis2pg ARGV...` (argv: NULL-terminated, without the program name; any command)
 * in the background with t's environment, stdin from /dev/null, stdout to out_path and stderr
 * to err_path (both truncated). Returns its pid; fails the test on fork failure. */
pid_t k2p_ft_spawn(k2p_lt *t, const char *const *argv, const char *out_path, const char *err_path);

/* Waits until "schema"."table" holds at least `rows` rows, or the loader `pid` exits (when
 * pid > 0), or timeout_ms pass. Returns the row count seen last (-1 when pid exited first; its
 * status then goes to *status when not NULL). */
int64_t k2p_ft_wait_rows(k2p_lt *t, const char *schema, const char *table, int64_t rows, pid_t pid,
                         int *status, int timeout_ms);

/* Waits up to timeout_ms for `needle` to appear in the file at `path` (a loader log). 1 or 0. */
int k2p_ft_wait_log(const char *path, const char *needle, int timeout_ms);

/* Waits for pid to exit within timeout_ms; on timeout SIGKILLs it, prints the log and fails the
 * test. Returns the waitpid status. */
int k2p_ft_reap(pid_t pid, int timeout_ms, const char *log_path, const char *what);

/* Fails the test (printing the log) unless the status is a normal exit with `code`. */
void k2p_ft_expect_status(int status, int code, const char *log_path, const char *what);

/* The peak resident set (VmHWM, kB) of a running process whose program name (/proc/PID/comm)
 * starts with `comm`; -1 when it is gone or does not run that program (yet: a child between
 * fork and exec is a copy of the test, with the test's memory). */
int64_t k2p_ft_vm_hwm_kb(pid_t pid, const char *comm);

/* The whole file as a heap string ("" when missing). */
char *k2p_ft_slurp(const char *path);

/* Prints the last `tail` bytes of a file to stderr. */
void k2p_ft_print_tail(const char *path, long tail);

/* Lines of `text` that contain `needle`. */
int k2p_ft_count_lines(const char *text, const char *needle);

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

/* Stops the test server with signal `sig` (SIGINT: fast shutdown, SIGQUIT: immediate) and waits
 * until its postmaster is gone. The server stays down until k2p_ft_pg_start_again: no SQL helper
 * may be used in between (their cached connection is broken until the restart closes it). */
void k2p_ft_pg_down(k2p_lt *t, int sig);

/* Starts the server stopped by k2p_ft_pg_down again, on the same port. */
void k2p_ft_pg_start_again(k2p_lt *t);

/* Appends the complete lines of the file at `path` (a last line without '\n' is torn: left
 * out) to the temp table pg_temp.`table`(line text), created if missing, on the helpers'
 * connection. Returns the number of lines added. */
int64_t k2p_ft_load_lines(k2p_lt *t, const char *table, const char *path);

/* ---- exact checks beyond loader_testlib ---------------------------------------------------- */

/* After a graceful stop: for every shard, "schema"."table" holds exactly the first k records of
 * `set` in that shard (some k, 0 included), each once, and the checkpoint of every shard with
 * rows is its last row. Returns the table's row count. */
int64_t k2p_ft_assert_prefix(k2p_lt *t, const char *schema, const char *table, const char *stream,
                             const k2p_lt_set *set);

/* For every partition key, the rows of "schema"."table" were committed in sequence order:
 * a row's inserting transaction (xmin) is never newer than that of a later record of the same
 * key. Holds across resharding only if a child's rows are committed after its parents'. */
void k2p_ft_assert_key_order(k2p_lt *t, const char *schema, const char *table);

#endif

/* tail.h - `kinesis2pg tail`: records as JSON lines on stdout, position in a state file.
 *
 * Threading: main thread.
 */
#ifndef K2P_TAIL_H
#define K2P_TAIL_H

#include <signal.h>

#include "kinesis2pg/aws_credentials.h"
#include "kinesis2pg/config.h"

/* Runs until every shard is caught up (or forever with --follow, until *stop). Returns 0,
 * K2P_ECONFIG (exit 2) or another error (exit 1) with err set. */
int k2p_tail_run(const k2p_config *cfg, k2p_cred_chain *creds,
                 const volatile sig_atomic_t *stop, k2p_err *err);

#endif

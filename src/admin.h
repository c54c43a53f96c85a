/* admin.h - the `status` and `reset` commands: read or clear the loader's state in PostgreSQL.
 *
 * Threading: main thread.
 */
#ifndef K2P_ADMIN_H
#define K2P_ADMIN_H

#include "kinesis2pg/config.h"

/* Each returns the process exit code (0, 1 or 2) after printing. */
int k2p_cmd_status(const k2p_config *cfg);
int k2p_cmd_reset(const k2p_config *cfg);

#endif

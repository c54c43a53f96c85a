/* env.c - environment look-up as a value (process env or a test list).
 *
 * Threading: read-only after construction.
 */
#include "kinesis2pg/env.h"

#include <stdlib.h>
#include <string.h>

static const char *process_get(const k2p_env *env, const char *name)
{
    (void)env;
    return getenv(name);
}

static const char *list_get(const k2p_env *env, const char *name)
{
    size_t nl = strlen(name);
    /* Last definition wins, as with a shell's environment built up in order. */
    for (size_t i = env->n_vars; i-- > 0;) {
        const char *v = env->vars[i];
        if (strncmp(v, name, nl) == 0 && v[nl] == '=')
            return v + nl + 1;
    }
    return NULL;
}

static const k2p_env process_env = {process_get, NULL, 0};

const k2p_env *k2p_env_process(void)
{
    return &process_env;
}

k2p_env k2p_env_from_list(const char *const *vars, size_t n)
{
    k2p_env e = {list_get, vars, n};
    return e;
}

const char *k2p_env_get(const k2p_env *env, const char *name)
{
    const char *v = env->get(env, name);
    return (v && *v) ? v : NULL;
}

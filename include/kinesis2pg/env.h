/* env.h - environment look-up as a value, so config and credential code is pure and testable.
 *
 * Production code uses k2p_env_process() (getenv); tests build a k2p_env from a list of
 * "NAME=value" strings and never touch the process environment.
 * Threading: a k2p_env is read-only after construction.
 */
#ifndef K2P_ENV_H
#define K2P_ENV_H

#include <stddef.h>

typedef struct k2p_env {
    /* Returns the value or NULL. Pointer valid while the env lives. */
    const char *(*get)(const struct k2p_env *env, const char *name);
    const char *const *vars; /* for the list-backed env: "NAME=value" entries */
    size_t n_vars;
} k2p_env;

/* The process environment. */
const k2p_env *k2p_env_process(void);

/* An env backed by `vars` (borrowed, "NAME=value" strings). */
k2p_env k2p_env_from_list(const char *const *vars, size_t n);

/* Shorthand: env->get(env, name), and NULL for an empty value. */
const char *k2p_env_get(const k2p_env *env, const char *name);

#endif

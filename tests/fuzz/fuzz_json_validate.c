/* fuzz_json_validate.c - libFuzzer target for the jsonb pre-check (k2p_json_validate).
 *
 * Besides "no crash, no out-of-bounds read" it checks properties that must hold for every
 * input: the error offset lies inside the input; an accepted payload is valid UTF-8 without NUL
 * bytes, stays accepted with whitespace around it, and stays accepted wrapped in [ ] or as an
 * object member (unless that crosses the depth limit); a rejected one stays rejected with
 * whitespace after it (unless it was only whitespace-empty). Seeds: corpus/json_validate/.
 *
 * Threading: single-threaded.
 */
#include "kinesis2pg/json_validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_wrapped(const uint8_t *data, size_t size, const char *pre, const char *post)
{
    size_t lp = strlen(pre), lq = strlen(post);
    uint8_t *w = malloc(size + lp + lq + 1);
    int r;
    if (!w)
        return -1;
    memcpy(w, pre, lp);
    if (size)
        memcpy(w + lp, data, size);
    memcpy(w + lp + size, post, lq);
    r = k2p_json_validate(w, size + lp + lq, NULL);
    free(w);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    k2p_json_error e;
    char msg[256];
    int r;

    if (size > ((size_t)1 << 20))
        return 0;
    r = k2p_json_validate(data, size, &e);
    if (r != K2P_JSON_OK) {
        if (e.reason != r || e.offset > size || r < K2P_JSON_EMPTY || r > K2P_JSON_TOO_LARGE)
            abort();
        k2p_json_error_format(&e, msg, sizeof msg);
        if (r != K2P_JSON_EMPTY && check_wrapped(data, size, "", " \n") == K2P_JSON_OK)
            abort();
        return 0;
    }
    if (!k2p_utf8_valid(data, size, NULL))
        abort();
    if (check_wrapped(data, size, " \t", "\r\n ") != K2P_JSON_OK)
        abort();
    r = check_wrapped(data, size, "[", "]");
    if (r != K2P_JSON_OK && r != K2P_JSON_DEPTH)
        abort();
    r = check_wrapped(data, size, "{\"k\":", "}");
    if (r != K2P_JSON_OK && r != K2P_JSON_DEPTH)
        abort();
    return 0;
}

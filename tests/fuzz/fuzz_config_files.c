/* fuzz_config_files.c - libFuzzer target for the configuration file parsers: AWS shared files
 * (INI), dlt TOML, RFC 3339 times and --from values must never crash, leak or overrun, and a
 * failed parse must leave no entries behind.
 * Threading: single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/config.h"
#include "kinesis2pg/ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every byte of every entry; aborts when the list breaks its contract. */
static void check_list(const k2p_kv_list *l, int rc)
{
    volatile size_t sink = 0;
    if (rc != 0 && l->n != 0)
        abort();
    for (size_t i = 0; i < l->n; i++) {
        const k2p_kv *kv = &l->items[i];
        if (!kv->section || !kv->key || !kv->value || kv->line < 1)
            abort();
        sink += strlen(kv->section) + strlen(kv->key) + strlen(kv->value);
        if (k2p_kv_find(l, kv->section, kv->key) == NULL)
            abort();
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    k2p_kv_list l;
    k2p_err err;
    int rc;

    k2p_kv_list_init(&l);
    rc = k2p_ini_parse("fuzz", s, size, &l, &err);
    check_list(&l, rc);
    k2p_kv_list_deinit(&l);

    rc = k2p_toml_parse("fuzz", s, size, &l, &err);
    check_list(&l, rc);
    k2p_kv_list_deinit(&l);

    /* Short inputs also as a time or a --from value. */
    if (size < 128) {
        char buf[128];
        int64_t us;
        k2p_from from;
        memcpy(buf, data, size);
        buf[size] = '\0';
        if (k2p_parse_rfc3339(buf, &us) == 0) {
            char out[40];
            int64_t back;
            /* Formatting and re-parsing is the identity, within years 0001..9999 (an offset
             * can move a time just outside them). */
            k2p_format_rfc3339(us, out, sizeof out);
            if (us >= -62135596800000000LL && us < 253402300800000000LL &&
                (k2p_parse_rfc3339(out, &back) != 0 || back != us))
                abort();
        }
        (void)k2p_config_parse_from(buf, 1714564800000000LL, &from);
    }
    return 0;
}

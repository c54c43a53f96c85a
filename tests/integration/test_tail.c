/* test_tail.c - `kinesis2pg tail` against a real kinesalite: every record printed once as a
 * JSON line (JSON payloads inline, others base64), the state file continues a rerun, a
 * --max-messages cut resumes where it stopped, and a resharded stream is read whole.
 * Threading: single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/base64.h"
#include "kinesis2pg/json_validate.h"
#include "loader_testlib.h"

static k2p_lt g;

static int setup(void **state)
{
    (void)state;
    return k2p_lt_start(&g);
}

static int teardown(void **state)
{
    (void)state;
    k2p_lt_stop(&g);
    return 0;
}

/* Runs tail with args; returns its stdout lines parsed, and checks exit 0. */
static cJSON *run_tail(const char *const *args, size_t *n)
{
    const char *argv[24] = {"tail", "--endpoint", g.kl.endpoint, "--region", "us-east-1"};
    size_t a = 5;
    k2p_lt_run r;
    cJSON *arr = cJSON_CreateArray();
    char *line, *nl;
    for (size_t i = 0; args[i] && a + 1 < sizeof argv / sizeof argv[0]; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    k2p_lt_exec(&g, argv, 120, &r);
    k2p_lt_expect_exit(&r, 0, "tail");
    *n = 0;
    for (line = r.out; line && *line; line = nl) {
        cJSON *o;
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = '\0';
        o = cJSON_Parse(line);
        if (!o)
            fail_msg("tail printed a line that is not JSON: %.200s", line);
        cJSON_AddItemToArray(arr, o);
        (*n)++;
    }
    k2p_lt_run_free(&r);
    return arr;
}

/* Every printed record matches one produced record (by shard and seq), each exactly once. */
static void match_all(cJSON *lines, const k2p_lt_set *set, size_t from, size_t count)
{
    char *seen = calloc(set->n + 1, 1);
    size_t matched = 0;
    cJSON *o;
    cJSON_ArrayForEach(o, lines)
    {
        const char *shard = cJSON_GetStringValue(cJSON_GetObjectItem(o, "_kinesis__shard_id"));
        const char *seq = cJSON_GetStringValue(cJSON_GetObjectItem(o, "_kinesis__seq_no"));
        const cJSON *data = cJSON_GetObjectItem(o, "data");
        const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(o, "data_base64"));
        size_t i;
        assert_non_null(shard);
        assert_non_null(seq);
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItem(o, "_kinesis_msg_id")));
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItem(o, "_kinesis__ts")));
        for (i = from; i < from + count; i++)
            if (!strcmp(set->v[i].shard, shard) && !strcmp(set->v[i].seq, seq))
                break;
        if (i == from + count)
            fail_msg("tail printed %s/%s, which was not put in this round", shard, seq);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "_kinesis__partition")),
                            set->v[i].pkey);
        if (b64) {
            uint8_t *buf = malloc(k2p_base64_decoded_max(strlen(b64)) + 1);
            long dl = k2p_base64_decode(b64, strlen(b64), buf);
            assert_int_equal(dl, (long)set->v[i].len);
            assert_memory_equal(buf, set->v[i].data, set->v[i].len);
            assert_true(k2p_json_validate(set->v[i].data, set->v[i].len, NULL) != K2P_JSON_OK);
            free(buf);
        } else {
            /* Inline JSON: equal to the payload as parsed JSON. */
            char *put = calloc(set->v[i].len + 1, 1);
            cJSON *want;
            memcpy(put, set->v[i].data, set->v[i].len);
            want = cJSON_Parse(put);
            assert_non_null(data);
            assert_non_null(want);
            assert_true(cJSON_Compare(want, data, 1));
            cJSON_Delete(want);
            free(put);
        }
        matched++;
    }
    assert_int_equal(matched, count);
    free(seen);
}

static void test_tail_prints_every_record_once_and_continues(void **state)
{
    k2p_lt_set set = {0};
    char path[300];
    size_t n, n1;
    cJSON *l;
    (void)state;
    K2P_LT_REQUIRE(&g);
    snprintf(path, sizeof path, "%s/tail.state", g.tmpdir);
    k2p_lt_create_stream(&g, "tl", 3);
    k2p_lt_produce(&g, "tl", &set, "--count 300 --kind mixed --size 120 --invalid 6");

    /* --max-messages cuts the first run; the state file carries on from there. */
    l = run_tail(K2P_LT_ARGS("--stream", "tl", "--state", path, "--from", "trim_horizon",
                             "--max-messages", "40"),
                 &n1);
    assert_int_equal(n1, 40);
    cJSON_Delete(l);
    l = run_tail(K2P_LT_ARGS("--stream", "tl", "--state", path), &n);
    assert_int_equal(n1 + n, 300);
    cJSON_Delete(l);

    /* Whole stream again without state: every record once, payloads exact. */
    l = run_tail(K2P_LT_ARGS("--stream", "tl", "--from", "trim_horizon"), &n);
    assert_int_equal(n, 300);
    match_all(l, &set, 0, 300);
    cJSON_Delete(l);

    /* Nothing new: nothing printed. Then only the new records. */
    l = run_tail(K2P_LT_ARGS("--stream", "tl", "--state", path), &n);
    assert_int_equal(n, 0);
    cJSON_Delete(l);
    k2p_lt_produce(&g, "tl", &set, "--count 25 --seed 9");
    l = run_tail(K2P_LT_ARGS("--stream", "tl", "--state", path), &n);
    assert_int_equal(n, 25);
    match_all(l, &set, 300, 25);
    cJSON_Delete(l);
    k2p_lt_set_free(&set);
}

static void test_tail_reads_resharded_stream_whole(void **state)
{
    k2p_lt_set set = {0};
    k2p_err err = {0};
    k2p_shard_list sl = {0};
    size_t n;
    cJSON *l;
    (void)state;
    K2P_LT_REQUIRE(&g);
    k2p_lt_create_stream(&g, "tl_rs", 2);
    k2p_lt_produce(&g, "tl_rs", &set, "--count 200 --keys 10");
    assert_int_equal(k2p_kinesis_list_shards(g.client, "tl_rs", 0, &sl, &err), 0);
    assert_int_equal(k2p_kinesis_split_shard(g.client, "tl_rs", sl.shards[0].shard_id,
                                             "85070591730234615865843651857942052864", &err),
                     0);
    assert_int_equal(k2p_kinesis_wait_active(g.client, "tl_rs", 10000, &err), 0);
    k2p_lt_produce(&g, "tl_rs", &set, "--count 200 --keys 10 --seed 3");
    l = run_tail(K2P_LT_ARGS("--stream", "tl_rs", "--from", "trim_horizon"), &n);
    assert_int_equal(n, 400);
    match_all(l, &set, 0, 400);
    cJSON_Delete(l);
    k2p_shard_list_deinit(&sl);
    k2p_lt_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail_prints_every_record_once_and_continues),
        cmocka_unit_test(test_tail_reads_resharded_stream_whole),
    };
    k2p_lt_filter_from_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}

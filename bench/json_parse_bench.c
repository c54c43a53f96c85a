/* json_parse_bench.c - measures parsing a ~10 MB GetRecords response with jansson and cJSON,
 * the two JSON libraries considered for the Kinesis client (docs/json-library.md).
 *
 * Builds a response of 10,000 records (~750 bytes of base64 Data each), then for each library
 * parses it N times and walks every record's SequenceNumber, PartitionKey, Data and
 * ApproximateArrivalTimestamp, as the client does. Prints ms per parse and MB/s.
 * Single-threaded.
 */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_response(size_t *len)
{
    size_t cap = 16u << 20, n = 0;
    char *s = malloc(cap);
    char data[1001];
    for (int i = 0; i < 1000; i++)
        data[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7) % 64];
    data[1000] = 0;
    n += (size_t)snprintf(s + n, cap - n, "{\"Records\":[");
    for (int i = 0; i < 10000; i++) {
        n += (size_t)snprintf(s + n, cap - n,
                              "%s{\"SequenceNumber\":\"4959009089238484484893232382787878727%019d\","
                              "\"ApproximateArrivalTimestamp\":1.7321234567E9,"
                              "\"Data\":\"%.*s\",\"PartitionKey\":\"key-%d\"}",
                              i ? "," : "", i, 750 + (i % 200), data, i);
    }
    n += (size_t)snprintf(s + n, cap - n,
                          "],\"NextShardIterator\":\"AAAAAAAAAAH+abcdef\",\"MillisBehindLatest\":0}");
    *len = n;
    return s;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    size_t len;
    char *resp = make_response(&len);
    size_t sink = 0;
    double t0, jansson_s, cjson_s;

    t0 = now_s();
    for (int it = 0; it < iters; it++) {
        json_error_t e;
        json_t *root = json_loadb(resp, len, 0, &e);
        json_t *recs = json_object_get(root, "Records");
        size_t i;
        json_t *r;
        json_array_foreach(recs, i, r)
        {
            sink += json_string_length(json_object_get(r, "Data"));
            sink += json_string_length(json_object_get(r, "SequenceNumber"));
            sink += json_string_length(json_object_get(r, "PartitionKey"));
            sink += (size_t)json_real_value(json_object_get(r, "ApproximateArrivalTimestamp"));
        }
        json_decref(root);
    }
    jansson_s = (now_s() - t0) / iters;

    t0 = now_s();
    for (int it = 0; it < iters; it++) {
        cJSON *root = cJSON_ParseWithLength(resp, len);
        cJSON *recs = cJSON_GetObjectItemCaseSensitive(root, "Records");
        cJSON *r;
        cJSON_ArrayForEach(r, recs)
        {
            sink += strlen(cJSON_GetObjectItemCaseSensitive(r, "Data")->valuestring);
            sink += strlen(cJSON_GetObjectItemCaseSensitive(r, "SequenceNumber")->valuestring);
            sink += strlen(cJSON_GetObjectItemCaseSensitive(r, "PartitionKey")->valuestring);
            sink += (size_t)cJSON_GetObjectItemCaseSensitive(r, "ApproximateArrivalTimestamp")->valuedouble;
        }
        cJSON_Delete(root);
    }
    cjson_s = (now_s() - t0) / iters;

    printf("response_bytes=%zu iters=%d\n", len, iters);
    printf("jansson %.2f ms/parse %.0f MB/s\n", jansson_s * 1e3, len / jansson_s / 1e6);
    printf("cJSON   %.2f ms/parse %.0f MB/s\n", cjson_s * 1e3, len / cjson_s / 1e6);
    return sink == 0;
}

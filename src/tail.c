/* tail.c - `kinesis2pg tail`: print a stream's records as JSON lines on stdout, with the
 * position kept in a state file so a rerun continues (dlt's "read messages and send them
 * somewhere without a pipeline").
 *
 * Same incremental rules as `load` (shard_plan.c), same lineage order (a child after its
 * parents are read to SHARD_END), same iterator handling (shard_iter.c). One thread reads the
 * shards round-robin. After each GetRecords answer the records are written and flushed, then
 * the state file is replaced atomically (write, fsync, rename): a crash between the two prints
 * those records again on the next run (at-least-once; `load` is the exactly-once path).
 *
 * Each line: {"_kinesis_msg_id", "_kinesis__shard_id", "_kinesis__seq_no" (string),
 * "_kinesis__sub_seq" (user records of KPL aggregates only), "_kinesis__ts" (RFC 3339),
 * "_kinesis__partition", "_kinesis__stream_name", and "data" (the payload itself when it is
 * valid JSON and --raw is off) or "data_base64" (with "error" when the load would make it a
 * dead letter for a reason other than JSON). Payloads are de-aggregated and decompressed as
 * `load` does (unpack.h).
 *
 * Threading: main thread only.
 */
#include "tail.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kinesis2pg/base64.h"
#include "kinesis2pg/buf.h"
#include "kinesis2pg/copy_encode.h"
#include "kinesis2pg/json_validate.h"
#include "kinesis2pg/kinesis_client.h"
#include "kinesis2pg/unpack.h"
#include "pg_state.h"
#include "shard_iter.h"
#include "shard_plan.h"

#define K2P_TAIL_POLL_MS 200
#define K2P_TAIL_IDLE_MS 1000

/* Runtime of shard i; its position (seq, start, closed, parents) is st.shards[i]. The state
 * array only grows by appending, so indexes stay valid. */
typedef struct tail_shard {
    char *it;
    char last_seq[132];
    int64_t filter_before_us;
    int64_t last_call_ns;
    bool caught_up;
    bool closed_at_listing; /* ListShards gave an EndingSequenceNumber: read to SHARD_END */
} tail_shard;

typedef struct tail_ctx {
    const k2p_config *cfg;
    k2p_kinesis *k;
    k2p_stream_state st;
    int64_t run_started_us;
    tail_shard *sh;
    size_t n_sh;
    k2p_buf out;
    k2p_unpacker unpack; /* KPL aggregates and --decompress */
    int64_t printed;
    const volatile sig_atomic_t *stop;
} tail_ctx;

/* ---- state file ---------------------------------------------------------------------------- */

static int state_load(tail_ctx *t, k2p_err *err)
{
    const char *path = t->cfg->state_file;
    FILE *f;
    k2p_buf b;
    char chunk[8192];
    size_t n;
    cJSON *root, *shards, *s;

    t->st.prev_run_started_us = -1;
    if (!path)
        return 0;
    f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0
                               : k2p_err_set(err, K2P_ECONFIG, "cannot read state file %s: %s",
                                             path, strerror(errno));
    k2p_buf_init(&b, 64u << 20);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (k2p_buf_append(&b, chunk, n)) {
            fclose(f);
            k2p_buf_deinit(&b);
            return k2p_err_set(err, K2P_ECONFIG, "state file %s is too large", path);
        }
    fclose(f);
    root = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
    k2p_buf_deinit(&b);
    shards = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(shards) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "stream")) ||
        strcmp(cJSON_GetObjectItemCaseSensitive(root, "stream")->valuestring, t->cfg->stream)) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_ECONFIG,
                           "state file %s is not a kinesis2pg tail state for stream '%s'", path,
                           t->cfg->stream);
    }
    {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "run_started_us");
        if (cJSON_IsNumber(r))
            t->st.prev_run_started_us = (int64_t)r->valuedouble;
    }
    t->st.shards = calloc((size_t)cJSON_GetArraySize(shards) + 1, sizeof *t->st.shards);
    if (!t->st.shards) {
        cJSON_Delete(root);
        return k2p_err_set(err, K2P_ENOMEM, "out of memory");
    }
    cJSON_ArrayForEach(s, shards)
    {
        k2p_shard_ckpt *c = &t->st.shards[t->st.n];
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "shard_id"));
        const char *seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "seq"));
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(s, "start_at_us");
        const cJSON *parents = cJSON_GetObjectItemCaseSensitive(s, "parents"), *p;
        if (!id)
            continue;
        c->shard_id = k2p_strdup(id);
        c->seq = k2p_strdup(seq);
        c->start_at_us = cJSON_IsNumber(at) ? (int64_t)at->valuedouble : -1;
        c->closed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "closed"));
        cJSON_ArrayForEach(p, parents)
        {
            if (cJSON_IsString(p) && c->n_parents < 2)
                c->parents[c->n_parents++] = k2p_strdup(p->valuestring);
        }
        t->st.n++;
    }
    cJSON_Delete(root);
    return 0;
}

static int state_save(tail_ctx *t, k2p_err *err)
{
    const char *path = t->cfg->state_file;
    k2p_buf b, tmp;
    int fd, rc = 0;

    if (!path)
        return 0;
    k2p_buf_init(&b, 0);
    k2p_buf_init(&tmp, 0);
    k2p_buf_puts(&b, "{\"version\":1,\"stream\":");
    k2p_buf_put_json_str(&b, t->cfg->stream, strlen(t->cfg->stream));
    k2p_buf_printf(&b, ",\"run_started_us\":%lld,\"shards\":[", (long long)t->run_started_us);
    for (size_t i = 0; i < t->st.n; i++) {
        const k2p_shard_ckpt *c = &t->st.shards[i];
        k2p_buf_puts(&b, i ? ",\n{\"shard_id\":" : "\n{\"shard_id\":");
        k2p_buf_put_json_str(&b, c->shard_id, strlen(c->shard_id));
        k2p_buf_puts(&b, ",\"seq\":");
        if (c->seq)
            k2p_buf_put_json_str(&b, c->seq, strlen(c->seq));
        else
            k2p_buf_puts(&b, "null");
        k2p_buf_printf(&b, ",\"start_at_us\":%lld,\"closed\":%s,\"parents\":[",
                       (long long)c->start_at_us, c->closed ? "true" : "false");
        for (size_t j = 0; j < c->n_parents; j++) {
            if (j)
                k2p_buf_putc(&b, ',');
            k2p_buf_put_json_str(&b, c->parents[j], strlen(c->parents[j]));
        }
        k2p_buf_puts(&b, "]}");
    }
    if (k2p_buf_puts(&b, "]}\n") || k2p_buf_printf(&tmp, "%s.tmp", path)) {
        rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) != 0) {
        rc = k2p_err_set(err, K2P_EIO, "cannot write state file %s: %s", tmp.data,
                         strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    close(fd);
    if (rename(tmp.data, path) != 0)
        rc = k2p_err_set(err, K2P_EIO, "cannot replace state file %s: %s", path,
                         strerror(errno));
out:
    k2p_buf_deinit(&b);
    k2p_buf_deinit(&tmp);
    return rc;
}

/* ---- shards -------------------------------------------------------------------------------- */

static int add_shards(tail_ctx *t, k2p_err *err)
{
    k2p_shard_list list = {0};
    k2p_plan_ctx pc = {t->cfg->from, t->run_started_us, t->st.prev_run_started_us};
    int rc = k2p_kinesis_list_shards(t->k, t->cfg->stream, 0, &list, err);
    for (size_t i = 0; !rc && i < list.n; i++) {
        const k2p_shard *ls = &list.shards[i];
        const char *parents[2];
        size_t np = 0;
        k2p_plan p;
        if (ls->parent_shard_id)
            parents[np++] = ls->parent_shard_id;
        if (ls->adjacent_parent_shard_id)
            parents[np++] = ls->adjacent_parent_shard_id;
        p = k2p_plan_shard(&t->st, ls->shard_id, parents, np, &pc);
        if (p.is_new) {
            k2p_shard_ckpt *ns = realloc(t->st.shards, (t->st.n + 1) * sizeof *ns), *c;
            if (!ns) {
                rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
                break;
            }
            t->st.shards = ns;
            c = &ns[t->st.n++];
            memset(c, 0, sizeof *c);
            c->shard_id = k2p_strdup(ls->shard_id);
            c->start_at_us = p.start_at_us;
            for (size_t j = 0; j < np; j++)
                c->parents[c->n_parents++] = k2p_strdup(parents[j]);
        }
    }
    if (!rc && t->st.n > t->n_sh) {
        tail_shard *nsh = realloc(t->sh, t->st.n * sizeof *nsh);
        if (!nsh)
            rc = k2p_err_set(err, K2P_ENOMEM, "out of memory");
        else {
            memset(nsh + t->n_sh, 0, (t->st.n - t->n_sh) * sizeof *nsh);
            t->sh = nsh;
            t->n_sh = t->st.n;
        }
    }
    for (size_t i = 0; !rc && i < list.n; i++) {
        const k2p_shard_ckpt *c = k2p_stream_state_find(&t->st, list.shards[i].shard_id);
        if (c && list.shards[i].ending_seq)
            t->sh[c - t->st.shards].closed_at_listing = true;
    }
    k2p_shard_list_deinit(&list);
    return rc;
}

/* A parent is finished when closed, or unknown (expired). */
static bool ready(const tail_ctx *t, size_t i)
{
    const k2p_shard_ckpt *c = &t->st.shards[i];
    if (c->closed || t->sh[i].caught_up)
        return false;
    for (size_t j = 0; j < c->n_parents; j++) {
        const k2p_shard_ckpt *p = k2p_stream_state_find(&t->st, c->parents[j]);
        if (p && !p->closed)
            return false;
    }
    return true;
}

/* ---- output -------------------------------------------------------------------------------- */

static void put_line(tail_ctx *t, const char *shard_id, const k2p_record *r,
                     const k2p_user_record *ur)
{
    k2p_buf *b = &t->out;
    char id[K2P_MSG_ID_LEN + 1], ts[K2P_TS_BUF];
    const char *stream = t->cfg->stream;
    if (ur->has_sub_seq)
        k2p_copy_msg_id_sub(shard_id, strlen(shard_id), r->seq, r->seq_len, ur->sub_seq, id);
    else
        k2p_copy_msg_id(shard_id, strlen(shard_id), r->seq, r->seq_len, id);
    k2p_pg_format_ts(r->arrival_us, ts);
    k2p_buf_puts(b, "{\"_kinesis_msg_id\":\"");
    k2p_buf_puts(b, id);
    k2p_buf_puts(b, "\",\"_kinesis__shard_id\":");
    k2p_buf_put_json_str(b, shard_id, strlen(shard_id));
    k2p_buf_printf(b, ",\"_kinesis__seq_no\":\"%s\"", r->seq);
    if (ur->has_sub_seq)
        k2p_buf_printf(b, ",\"_kinesis__sub_seq\":%u", (unsigned)ur->sub_seq);
    k2p_buf_printf(b, ",\"_kinesis__ts\":\"%s\"", ts);
    k2p_buf_puts(b, ",\"_kinesis__partition\":");
    k2p_buf_put_json_str(b, ur->pkey, ur->pkey_len);
    k2p_buf_puts(b, ",\"_kinesis__stream_name\":");
    k2p_buf_put_json_str(b, stream, strlen(stream));
    if (!ur->reason && !t->cfg->raw &&
        k2p_json_validate(ur->data, ur->data_len, NULL) == K2P_JSON_OK) {
        /* Valid JSON goes in as it is, minus surrounding whitespace (newlines would break
         * the one-record-per-line format; inside strings they are escaped already). */
        size_t a = 0, z = ur->data_len;
        while (a < z && strchr(" \t\r\n", ur->data[a]))
            a++;
        while (z > a && strchr(" \t\r\n", ur->data[z - 1]))
            z--;
        k2p_buf_puts(b, ",\"data\":");
        for (size_t i = a; i < z; i++) /* JSON whitespace between tokens: keep it one line */
            k2p_buf_putc(b, (ur->data[i] == '\n' || ur->data[i] == '\r') ? ' ' : (char)ur->data[i]);
    } else {
        if (ur->reason) { /* the load would dead-letter it: say why */
            k2p_buf_puts(b, ",\"error\":");
            k2p_buf_put_json_str(b, ur->reason, strlen(ur->reason));
        }
        k2p_buf_puts(b, ",\"data_base64\":\"");
        if (k2p_buf_reserve(b, k2p_base64_encoded_len(ur->data_len) + 1) == 0)
            b->len += k2p_base64_encode(ur->data, ur->data_len, b->data + b->len);
        k2p_buf_putc(b, '"');
    }
    k2p_buf_puts(b, "}\n");
}

/* Prints the user records of r (one, unless it is a KPL aggregate). */
static int put_record(tail_ctx *t, const char *shard_id, const k2p_record *r, k2p_err *err)
{
    k2p_user_record ur = {0};
    int rc = k2p_unpack_begin(&t->unpack, r);
    while (rc == 0 && (rc = k2p_unpack_next(&t->unpack, &ur)) == 1) {
        put_line(t, shard_id, r, &ur);
        rc = 0;
    }
    if (rc)
        return k2p_err_set(err, rc, "shard %s: %s", shard_id,
                           ur.reason && rc != K2P_ENOMEM ? ur.reason : "out of memory");
    return 0;
}

static int flush_out(tail_ctx *t, k2p_err *err)
{
    if (t->out.len && (fwrite(t->out.data, 1, t->out.len, stdout) != t->out.len ||
                       fflush(stdout) != 0))
        return k2p_err_set(err, K2P_EIO, "writing to stdout: %s", strerror(errno));
    k2p_buf_reset(&t->out);
    return 0;
}

static void sleep_ms(const tail_ctx *t, int64_t ms)
{
    while (ms > 0 && !(t->stop && *t->stop)) {
        int64_t step = ms > 50 ? 50 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* One GetRecords on shard i; prints, then saves the state. *progress: records or a state
 * change happened. */
static int poll_shard(tail_ctx *t, size_t i, k2p_records *recs, bool *progress, k2p_err *err)
{
    tail_shard *ts = &t->sh[i];
    k2p_shard_ckpt *c = &t->st.shards[i];
    const k2p_config *cfg = t->cfg;
    int64_t wait = (ts->last_call_ns + (int64_t)K2P_TAIL_POLL_MS * 1000000 - k2p_now_ns()) / 1000000;
    int limit = (int)cfg->chunk_size, rc;

    if (cfg->max_messages && cfg->max_messages - t->printed < limit)
        limit = (int)(cfg->max_messages - t->printed);
    if (!ts->it) {
        k2p_iter_pos pos = {ts->last_seq, c->seq, c->start_at_us, &ts->filter_before_us};
        if ((rc = k2p_shard_iter_open(t->k, cfg->stream, c->shard_id, &pos, &ts->it, err)))
            return rc;
    }
    if (ts->last_call_ns && wait > 0)
        sleep_ms(t, wait);
    ts->last_call_ns = k2p_now_ns();
    rc = k2p_kinesis_get_records(t->k, ts->it, limit, recs, err);
    if (rc == K2P_EEXPIRED) {
        free(ts->it);
        ts->it = NULL;
        return 0;
    }
    if (rc)
        return rc;
    for (size_t j = 0; j < recs->n; j++) {
        const k2p_record *r = &recs->recs[j];
        if (ts->filter_before_us) {
            if (r->arrival_us < ts->filter_before_us)
                continue;
            ts->filter_before_us = 0;
        }
        if ((rc = put_record(t, c->shard_id, r, err)))
            return rc;
        t->printed++;
    }
    if (recs->n) {
        const k2p_record *r = &recs->recs[recs->n - 1];
        snprintf(ts->last_seq, sizeof ts->last_seq, "%s", r->seq);
        free(c->seq);
        c->seq = k2p_strdup(r->seq);
        *progress = true;
    }
    free(ts->it);
    ts->it = recs->next_iterator ? k2p_strdup(recs->next_iterator) : NULL;
    if (!recs->next_iterator) {
        c->closed = true;
        *progress = true;
    } else if (!cfg->follow && !ts->closed_at_listing && recs->n < (size_t)limit &&
               recs->millis_behind < cfg->ms_behind_latest) {
        ts->caught_up = true;
    }
    /* Records first, then the position: a crash in between prints them again. */
    if ((rc = flush_out(t, err)))
        return rc;
    return *progress ? state_save(t, err) : 0;
}

int k2p_tail_run(const k2p_config *cfg, k2p_cred_chain *creds,
                 const volatile sig_atomic_t *stop, k2p_err *err)
{
    tail_ctx t;
    k2p_kinesis_opts ko = {0};
    k2p_records recs;
    int rc;

    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.stop = stop;
    t.run_started_us = k2p_wall_us();
    k2p_buf_init(&t.out, 0);
    k2p_unpacker_init(&t.unpack, cfg->decompress, 0);
    k2p_records_init(&recs);
    ko.endpoint = cfg->endpoint;
    ko.region = cfg->region;
    ko.ca_file = cfg->ca_file;
    ko.max_attempts = (int)cfg->max_attempts;
    ko.creds = creds;
    if ((rc = state_load(&t, err)))
        goto out;
    if (!(t.k = k2p_kinesis_new(&ko, err))) {
        rc = err->code;
        goto out;
    }
    if ((rc = add_shards(&t, err)) || (rc = state_save(&t, err)))
        goto out;
    while (!(stop && *stop) && !(cfg->max_messages && t.printed >= cfg->max_messages)) {
        bool any = false, progress = false, closed_one = false;
        for (size_t i = 0; i < t.n_sh && !(stop && *stop); i++) {
            bool was_closed = t.st.shards[i].closed;
            if (!ready(&t, i))
                continue;
            any = true;
            if ((rc = poll_shard(&t, i, &recs, &progress, err)))
                goto out;
            closed_one |= !was_closed && t.st.shards[i].closed;
            if (cfg->max_messages && t.printed >= cfg->max_messages)
                break;
        }
        if (closed_one && (rc = add_shards(&t, err))) /* children may exist now */
            goto out;
        if (!any && !closed_one) {
            if (!cfg->follow)
                break;
            sleep_ms(&t, K2P_TAIL_IDLE_MS);
        } else if (!progress && cfg->follow) {
            sleep_ms(&t, K2P_TAIL_IDLE_MS);
        }
    }
    rc = state_save(&t, err);
out:
    for (size_t i = 0; i < t.n_sh; i++)
        free(t.sh[i].it);
    free(t.sh);
    k2p_stream_state_deinit(&t.st);
    k2p_records_deinit(&recs);
    k2p_unpacker_deinit(&t.unpack);
    k2p_kinesis_free(t.k);
    k2p_buf_deinit(&t.out);
    return rc;
}

/* admin.c - `kinesis2pg status` (per-shard checkpoints, recent runs, dead letters: like
 * `dlt pipeline NAME show`) and `kinesis2pg reset` (forget a stream's checkpoints).
 *
 * Neither prints the connection string or any secret: errors name host, port and database.
 * Threading: main thread.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kinesis2pg/buf.h"
#include "lease.h"
#include "pg_state.h"

static PGconn *connect_or_report(const k2p_config *cfg)
{
    k2p_err err = {0};
    PGconn *c = k2p_pg_connect(cfg->pg_conninfo, &err);
    if (!c) {
        fprintf(stderr, "kinesis2pg: %s\n", err.msg);
    } else if (k2p_pg_check_schema_version(c, &err)) {
        fprintf(stderr, "kinesis2pg: %s\n", err.msg);
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* Runs a query with $1 = stream, $2 = target; prints the error and returns NULL on failure. */
static PGresult *q(PGconn *c, const char *sql, const char *stream, const char *target)
{
    const char *params[] = {stream, target};
    PGresult *r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42P01") == 0)
            fprintf(stderr, "kinesis2pg: no loader state in this database yet (schema "
                            "kinesis2pg is created by the first 'kinesis2pg load')\n");
        else
            fprintf(stderr, "kinesis2pg: PostgreSQL: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

static const char sql_shards[] =
    "SELECT c.shard_id, COALESCE(c.sequence_number::text, ''), "
    "CASE WHEN c.closed THEN 'closed' WHEN c.sequence_number IS NOT NULL THEN 'open' "
    "     ELSE 'not started' END, "
    "COALESCE(to_char(c.start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "         CASE WHEN c.sequence_number IS NULL THEN 'TRIM_HORIZON' ELSE '' END), "
    "to_char(c.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "(SELECT count(*) FROM kinesis2pg.dead_letters d "
    "  WHERE d.stream = c.stream AND d.target = c.target AND d.shard_id = c.shard_id), "
    "array_to_string(c.parent_shard_ids, ','), "
    "COALESCE(l.owner, ''), COALESCE(l.epoch::text, ''), "
    "CASE WHEN l.owner IS NULL THEN '' WHEN l.expires_at IS NULL THEN 'no expiry' "
    "     WHEN l.expires_at < clock_timestamp() THEN 'expired' "
    "     ELSE round(extract(epoch FROM l.expires_at - clock_timestamp())::numeric, 1)::text "
    "          || ' s' END "
    "FROM kinesis2pg.checkpoints c LEFT JOIN kinesis2pg.leases l ON l.stream = c.stream "
    "  AND l.target = c.target AND l.shard_id = c.shard_id "
    "WHERE c.stream = $1 AND c.target = $2 ORDER BY c.shard_id";

static const char sql_workers[] =
    "SELECT owner, mode, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "CASE WHEN expires_at IS NULL THEN 'no expiry' WHEN expires_at < clock_timestamp() "
    "     THEN 'expired' ELSE 'live' END, "
    "(SELECT count(*) FROM kinesis2pg.leases l WHERE l.stream = w.stream AND l.target = w.target "
    "  AND l.owner = w.owner) "
    "FROM kinesis2pg.workers w WHERE stream = $1 AND target = $2 ORDER BY started_at, owner";

static const char sql_runs[] =
    "SELECT id, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "COALESCE(round(extract(epoch FROM finished_at - started_at)::numeric, 1)::text, ''), "
    "rows, dead_letters, bytes, status, COALESCE(message, '') "
    "FROM kinesis2pg.runs WHERE stream = $1 AND target = $2 "
    "ORDER BY started_at DESC, id DESC LIMIT 10";

static void json_field(k2p_buf *b, const char *key, const char *val, int first)
{
    if (!first)
        k2p_buf_putc(b, ',');
    k2p_buf_put_json_str(b, key, strlen(key));
    k2p_buf_putc(b, ':');
    k2p_buf_put_json_str(b, val, strlen(val));
}

static void json_num(k2p_buf *b, const char *key, const char *val)
{
    k2p_buf_putc(b, ',');
    k2p_buf_put_json_str(b, key, strlen(key));
    k2p_buf_putc(b, ':');
    k2p_buf_puts(b, *val ? val : "null");
}

static char *target_or_report(const k2p_config *cfg)
{
    char *t = k2p_pg_target_name(cfg->schema, cfg->table);
    if (!t)
        fprintf(stderr, "kinesis2pg: --schema and --table must be 1 to 63 bytes\n");
    return t;
}

int k2p_cmd_status(const k2p_config *cfg)
{
    char *target = target_or_report(cfg);
    PGconn *c = target ? connect_or_report(cfg) : NULL;
    PGresult *shards = NULL, *runs = NULL, *workers = NULL;
    int rc = 1;

    if (!c) {
        free(target);
        return target ? 1 : 2;
    }
    if (!(shards = q(c, sql_shards, cfg->stream, target)) ||
        !(runs = q(c, sql_runs, cfg->stream, target)) ||
        !(workers = q(c, sql_workers, cfg->stream, target)))
        goto out;
    if (cfg->json) {
        k2p_buf b;
        k2p_buf_init(&b, 0);
        k2p_buf_puts(&b, "{\"stream\":");
        k2p_buf_put_json_str(&b, cfg->stream, strlen(cfg->stream));
        k2p_buf_puts(&b, ",\"target\":");
        k2p_buf_put_json_str(&b, target, strlen(target));
        k2p_buf_puts(&b, ",\"shards\":[");
        for (int i = 0; i < PQntuples(shards); i++) {
            k2p_buf_puts(&b, i ? ",{" : "{");
            json_field(&b, "shard_id", PQgetvalue(shards, i, 0), 1);
            json_field(&b, "sequence_number", PQgetvalue(shards, i, 1), 0);
            json_field(&b, "state", PQgetvalue(shards, i, 2), 0);
            json_field(&b, "start", PQgetvalue(shards, i, 3), 0);
            json_field(&b, "updated_at", PQgetvalue(shards, i, 4), 0);
            json_num(&b, "dead_letters", PQgetvalue(shards, i, 5));
            json_field(&b, "parents", PQgetvalue(shards, i, 6), 0);
            json_field(&b, "lease_owner", PQgetvalue(shards, i, 7), 0);
            json_num(&b, "lease_epoch", PQgetvalue(shards, i, 8));
            json_field(&b, "lease_expires_in", PQgetvalue(shards, i, 9), 0);
            k2p_buf_putc(&b, '}');
        }
        k2p_buf_puts(&b, "],\"workers\":[");
        for (int i = 0; i < PQntuples(workers); i++) {
            k2p_buf_puts(&b, i ? ",{" : "{");
            json_field(&b, "owner", PQgetvalue(workers, i, 0), 1);
            json_field(&b, "mode", PQgetvalue(workers, i, 1), 0);
            json_field(&b, "started_at", PQgetvalue(workers, i, 2), 0);
            json_field(&b, "state", PQgetvalue(workers, i, 3), 0);
            json_num(&b, "leases", PQgetvalue(workers, i, 4));
            k2p_buf_putc(&b, '}');
        }
        k2p_buf_puts(&b, "],\"runs\":[");
        for (int i = 0; i < PQntuples(runs); i++) {
            k2p_buf_puts(&b, i ? ",{" : "{");
            k2p_buf_puts(&b, "\"id\":");
            k2p_buf_puts(&b, PQgetvalue(runs, i, 0));
            json_field(&b, "started_at", PQgetvalue(runs, i, 1), 0);
            json_num(&b, "seconds", PQgetvalue(runs, i, 2));
            json_num(&b, "rows", PQgetvalue(runs, i, 3));
            json_num(&b, "dead_letters", PQgetvalue(runs, i, 4));
            json_num(&b, "bytes", PQgetvalue(runs, i, 5));
            json_field(&b, "status", PQgetvalue(runs, i, 6), 0);
            json_field(&b, "message", PQgetvalue(runs, i, 7), 0);
            k2p_buf_putc(&b, '}');
        }
        k2p_buf_puts(&b, "]}\n");
        fwrite(b.data, 1, b.len, stdout);
        k2p_buf_deinit(&b);
    } else {
        printf("stream %s -> %s: %d shard(s)\n", cfg->stream, target, PQntuples(shards));
        printf("  %-24s %-12s %-8s %-58s %s\n", "shard", "state", "dead", "checkpoint / start",
               "updated");
        for (int i = 0; i < PQntuples(shards); i++) {
            const char *seq = PQgetvalue(shards, i, 1);
            printf("  %-24s %-12s %-8s %-58s %s", PQgetvalue(shards, i, 0),
                   PQgetvalue(shards, i, 2), PQgetvalue(shards, i, 5),
                   *seq ? seq : PQgetvalue(shards, i, 3), PQgetvalue(shards, i, 4));
            if (*PQgetvalue(shards, i, 7))
                printf("  lease: %s epoch %s (%s)", PQgetvalue(shards, i, 7),
                       PQgetvalue(shards, i, 8), PQgetvalue(shards, i, 9));
            putchar('\n');
        }
        if (PQntuples(workers)) {
            printf("processes sharing the stream (--leases, --worker-count):\n");
            for (int i = 0; i < PQntuples(workers); i++)
                printf("  %-40s %-7s started %s, %s, %s lease(s)\n", PQgetvalue(workers, i, 0),
                       PQgetvalue(workers, i, 1), PQgetvalue(workers, i, 2),
                       PQgetvalue(workers, i, 3), PQgetvalue(workers, i, 4));
        }
        printf("last runs:\n  %-6s %-21s %8s %10s %8s %12s  %s\n", "id", "started", "seconds",
               "rows", "dead", "bytes", "status");
        for (int i = 0; i < PQntuples(runs); i++)
            printf("  %-6s %-21s %8s %10s %8s %12s  %s%s%s\n", PQgetvalue(runs, i, 0),
                   PQgetvalue(runs, i, 1), PQgetvalue(runs, i, 2), PQgetvalue(runs, i, 3),
                   PQgetvalue(runs, i, 4), PQgetvalue(runs, i, 5), PQgetvalue(runs, i, 6),
                   *PQgetvalue(runs, i, 7) ? ": " : "", PQgetvalue(runs, i, 7));
    }
    rc = 0;
out:
    PQclear(shards);
    PQclear(runs);
    PQclear(workers);
    PQfinish(c);
    free(target);
    return rc;
}

int k2p_cmd_reset(const k2p_config *cfg)
{
    PGconn *c;
    k2p_err err = {0};
    char *target = target_or_report(cfg);
    int rc;

    if (!target)
        return 2;
    if (!cfg->yes) {
        char line[16];
        if (!isatty(0)) {
            fprintf(stderr, "kinesis2pg: reset needs --yes when not run from a terminal\n");
            free(target);
            return 2;
        }
        fprintf(stderr,
                "Forget every checkpoint of stream '%s' into %s? The next load starts again "
                "from --from. [y/N] ",
                cfg->stream, target);
        if (!fgets(line, sizeof line, stdin) || (line[0] != 'y' && line[0] != 'Y')) {
            fprintf(stderr, "kinesis2pg: nothing changed\n");
            free(target);
            return 1;
        }
    }
    if (!(c = connect_or_report(cfg))) {
        free(target);
        return 1;
    }
    {
        const char *params[] = {cfg->stream, target};
        /* The loader's lock: never reset under a running load. */
        rc = k2p_pg_lock_stream(c, cfg->stream, target, &err);
        if (!rc)
            rc = k2p_pg_exec(c, "BEGIN", 0, NULL, &err);
        if (!rc)
            rc = k2p_pg_exec(c, "DELETE FROM kinesis2pg.ledger WHERE stream = $1 AND target = $2",
                             2, params, &err);
        if (!rc)
            rc = k2p_pg_exec(c,
                             "DELETE FROM kinesis2pg.checkpoints WHERE stream = $1 AND target = $2",
                             2, params, &err);
        if (!rc)
            rc = k2p_pg_exec(c, "DELETE FROM kinesis2pg.runs WHERE stream = $1 AND target = $2", 2,
                             params, &err);
        if (!rc) /* a loader that lost its lock must not write over the reset state */
            rc = k2p_pg_exec(c,
                             "UPDATE kinesis2pg.owners SET epoch = epoch + 1 "
                             "WHERE stream = $1 AND target = $2",
                             2, params, &err);
        if (!rc) /* nor a lease holder (--leases, --worker-count) */
            rc = k2p_lease_revoke_all(c, cfg->stream, target, &err);
        if (!rc)
            rc = k2p_pg_exec(c, "COMMIT", 0, NULL, &err);
    }
    if (rc)
        fprintf(stderr, "kinesis2pg: reset of stream '%s' into %s failed: %s\n", cfg->stream,
                target, err.msg);
    else
        fprintf(stderr,
                "kinesis2pg: checkpoints of stream '%s' into %s forgotten. Rows already in the "
                "table are kept: to load them again, truncate the table first\n",
                cfg->stream, target);
    PQfinish(c);
    free(target);
    return rc ? 1 : 0;
}

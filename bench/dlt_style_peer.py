#!/usr/bin/python3
"""dlt_style_peer.py - the dlt `kinesis_stream` resource's read loop, feeding PostgreSQL COPY.

The peer that bench/run.sh compares kinesis2pg with. It reproduces the loop of dlt's verified
source (dlt-hub/verified-sources, sources/kinesis/__init__.py) with what Debian ships
(python3-boto3, python3-psycopg2), without dlt's extract/normalize/load stages:

  ListShards (NextToken pages) -> for each shard, ONE AFTER ANOTHER:
      GetShardIterator TRIM_HORIZON -> GetRecords(Limit=chunk) until caught up
      per record: dlt's envelope, digest128(shard_id + seq) as _kinesis_msg_id
      (base64 of shake_128(...).digest(15), the same id kinesis2pg computes), json.loads of
      the payload when parsing JSON (dlt: json.loadb)
  every --batch-rows rows: COPY ... FROM STDIN (text) + COMMIT, like a dlt load package.

Where it is kinder to itself than dlt (so its numbers are an upper bound for dlt):
  - no extract/normalize files: rows go straight into COPY, and the payload is stored as the
    original text (validated by json.loads, not re-serialised);
  - a shard counts as caught up when the answer was not full and MillisBehindLatest <
    --ms-behind-latest (kinesis2pg's rule). dlt stops at MillisBehindLatest < 1000 alone,
    which can leave the last records of a shard for the next run; this rule loads exactly the
    rows kinesis2pg loads;
  - when botocore's own retries give up on ProvisionedThroughputExceeded (dlt would fail the
    run) the call is repeated after 1 s; the count is reported.

Prints one JSON line on stdout: rows, seconds (setup, per shard, total), calls, throttles.
Usage: dlt_style_peer.py --endpoint URL --stream S --pg CONNINFO --table SCHEMA.TABLE
                         [--chunk-size 1000] [--batch-rows 50000] [--max-shards K] [--raw]
"""
import argparse
import base64
import hashlib
import io
import json
import sys
import time

T_START = time.monotonic()

try:
    import boto3
    import botocore.exceptions
except ImportError:  # pragma: no cover - environment problem, say what to install
    sys.exit("dlt_style_peer: boto3 missing: apt-get install python3-boto3")
try:
    import psycopg2
except ImportError:  # pragma: no cover
    sys.exit("dlt_style_peer: psycopg2 missing: apt-get install python3-psycopg2")

COLUMNS = ('_kinesis_msg_id, _kinesis__shard_id, _kinesis__seq_no, _kinesis__ts, '
           '_kinesis__partition, _kinesis__stream_name, data')
ESCAPE = str.maketrans({'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'})


def digest128(v):
    """dlt.common.utils.digest128: base64 of shake_128(v).digest(15)."""
    return base64.b64encode(hashlib.shake_128(v.encode('utf-8')).digest(15)).decode('ascii')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--endpoint', required=True)
    ap.add_argument('--stream', required=True)
    ap.add_argument('--pg', required=True, help='libpq conninfo')
    ap.add_argument('--table', required=True, help='schema.table (already created)')
    ap.add_argument('--region', default='us-east-1')
    ap.add_argument('--chunk-size', type=int, default=1000, help="dlt's chunk_size")
    ap.add_argument('--batch-rows', type=int, default=50000)
    ap.add_argument('--ms-behind-latest', type=int, default=1000)
    ap.add_argument('--max-shards', type=int, default=0, help='read only the first K shards')
    ap.add_argument('--raw', action='store_true', help='parse_json=False: no json.loads')
    a = ap.parse_args()

    kinesis = boto3.session.Session().client(
        'kinesis', endpoint_url=a.endpoint, region_name=a.region)
    conn = psycopg2.connect(a.pg, application_name='dlt_style_peer')
    cur = conn.cursor()
    copy_sql = 'COPY %s (%s) FROM STDIN' % (a.table, COLUMNS)
    stats = {'rows': 0, 'get_records': 0, 'botocore_retries': 0, 'throttled_after_retries': 0,
             'commits': 0}
    buf = io.StringIO()
    pending = 0

    def flush():
        nonlocal buf, pending
        if not pending:
            return
        buf.seek(0)
        cur.copy_expert(copy_sql, buf)
        conn.commit()
        stats['commits'] += 1
        stats['rows'] += pending
        buf = io.StringIO()
        pending = 0

    # ListShards with NextToken pages (dlt's loop, with the page's Shards extended).
    resp = kinesis.list_shards(StreamName=a.stream)
    shards = resp['Shards']
    while resp.get('NextToken'):
        resp = kinesis.list_shards(NextToken=resp['NextToken'])
        shards.extend(resp['Shards'])
    shard_ids = [s['ShardId'] for s in shards]
    if a.max_shards:
        shard_ids = shard_ids[:a.max_shards]
    t_setup = time.monotonic() - T_START
    per_shard = []

    for shard_id in shard_ids:
        t0 = time.monotonic()
        it = kinesis.get_shard_iterator(StreamName=a.stream, ShardId=shard_id,
                                        ShardIteratorType='TRIM_HORIZON')['ShardIterator']
        n_shard = 0
        while it:
            try:
                r = kinesis.get_records(ShardIterator=it, Limit=a.chunk_size)
            except botocore.exceptions.ClientError as e:
                if e.response.get('Error', {}).get('Code') != \
                        'ProvisionedThroughputExceededException':
                    raise
                stats['throttled_after_retries'] += 1
                time.sleep(1.0)
                continue
            stats['get_records'] += 1
            stats['botocore_retries'] += r.get('ResponseMetadata', {}).get('RetryAttempts', 0)
            recs = r['Records']
            w = buf.write
            for rec in recs:
                seq = rec['SequenceNumber']
                content = rec['Data']
                ts = rec['ApproximateArrivalTimestamp']  # datetime (botocore parses it)
                text = content.decode('utf-8')
                if not a.raw:
                    json.loads(text)  # dlt: message.update(json.loadb(content))
                w('\t'.join((digest128(shard_id + seq), shard_id, seq, ts.isoformat(),
                             rec['PartitionKey'].translate(ESCAPE), a.stream,
                             text.translate(ESCAPE))))
                w('\n')
            pending += len(recs)
            n_shard += len(recs)
            if pending >= a.batch_rows:
                flush()
            nxt = r.get('NextShardIterator')
            caught_up = (len(recs) < a.chunk_size and
                         r.get('MillisBehindLatest', 0) < a.ms_behind_latest)
            it = None if caught_up else nxt
        per_shard.append({'shard': shard_id, 'rows': n_shard,
                          'seconds': round(time.monotonic() - t0, 3)})
    flush()
    conn.close()
    total = time.monotonic() - T_START
    out = dict(stats, shards_read=len(shard_ids), shards_total=len(shards),
               setup_seconds=round(t_setup, 3),
               shard_seconds=round(sum(p['seconds'] for p in per_shard), 3),
               seconds=round(total, 3), per_shard=per_shard)
    print(json.dumps(out))


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""bench.py - the measurements behind `make bench`: kinesis2pg against the sink limit (parallel
psql \\copy of the same rows) and a dlt-style Python peer, a shard sweep, and a throttled run.

bench/run.sh builds the programs, starts the PostgreSQL server (and stops it, whatever
happens) and then runs this script; see docs/benchmarks.md for what is measured and how.
This script starts and stops mock_kinesis itself: each mock runs with --stdin-watch on a pipe
of ours, so it also exits if we die, and its pid goes to WORK/pids for run.sh's trap.

Threading: none; child processes run one phase at a time (the two psql \\copy streams of the
sink run together).

CPU accounting (Linux /proc, clock ticks):
  - loader: wait4() rusage of the kinesis2pg process (utime + stime of all its threads) and
    its ru_maxrss (peak RSS);
  - PostgreSQL backends: every backend that served the phase has exited and been reaped by
    the postmaster when the phase ends, so its CPU is in the postmaster's cutime + cstime.
    A snapshot is taken before and after the phase, each while no client connection exists
    (we wait for that), so the difference is exactly the CPU of the phase's backends —
    robust against short-lived connections and other clusters on the machine. Autovacuum is
    off in the bench cluster, so no other child of the postmaster exits in between;
  - PostgreSQL background (checkpointer, background writer, WAL writer, postmaster):
    their own utime + stime, reported apart;
  - the machine: /proc/stat busy time, minus ours, shows how much CPU other programs took
    during the phase (the benchmark is only as quiet as the machine).
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

TICK = os.sysconf('SC_CLK_TCK')
NCPU = os.cpu_count() or 1
BACKGROUND = ('checkpointer', 'background writer', 'walwriter', 'autovacuum launcher',
              'logical replication launcher', 'archiver', 'stats collector', 'startup',
              'walsender', 'walreceiver')

TABLE_DDL = ('CREATE TABLE {t} ("_kinesis_msg_id" text NOT NULL, "_kinesis__shard_id" text NOT '
             'NULL, "_kinesis__seq_no" numeric NOT NULL, "_kinesis__sub_seq" bigint, '
             '"_kinesis__ts" timestamptz NOT NULL, '
             '"_kinesis__partition" text NOT NULL, "_kinesis__stream_name" text NOT NULL, '
             '"data" jsonb, PRIMARY KEY ("_kinesis_msg_id"))')
COLS = ('_kinesis__shard_id', '_kinesis__seq_no', '_kinesis__sub_seq', '_kinesis__ts',
        '_kinesis__partition', '_kinesis__stream_name', 'data')


def log(msg):
    print('bench: ' + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---- /proc --------------------------------------------------------------------------------

def proc_stat(pid):
    """(ppid, utime, stime, cutime, cstime) in ticks, or None if the process is gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(')') + 2:].split()
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def proc_title(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
    except OSError:
        return ''


def machine_ticks():
    """(busy, total) ticks of all CPUs from /proc/stat."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], total


class Postgres:
    """The server run.sh started: SQL through psql, CPU snapshots through /proc."""

    def __init__(self, psql, port, pgdata):
        self.psql = psql
        self.conninfo = 'host=127.0.0.1 port=%d dbname=postgres user=postgres' % port
        with open(os.path.join(pgdata, 'postmaster.pid')) as f:
            self.postmaster = int(f.readline())

    def sql(self, sql, timeout=900):
        r = subprocess.run([self.psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                            '-d', self.conninfo, '-c', sql],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError('psql failed on %r: %s' % (sql[:120], r.stderr.strip()))
        return r.stdout.strip()

    def children(self):
        out = []
        for d in os.listdir('/proc'):
            if d.isdigit():
                st = proc_stat(int(d))
                if st and st[0] == self.postmaster:
                    out.append((int(d), st))
        return out

    @staticmethod
    def is_background(pid):
        t = proc_title(pid)
        return t.startswith('postgres: ') and t[10:].startswith(BACKGROUND)

    def wait_idle(self, timeout=30.0):
        """Waits until no client backend (live or zombie) is left."""
        deadline = time.monotonic() + timeout
        while True:
            clients = [p for p, _ in self.children() if not self.is_background(p)]
            if not clients:
                return
            if time.monotonic() > deadline:
                raise BenchError('PostgreSQL backends %s did not exit within %.0f s'
                                 % (clients, timeout))
            time.sleep(0.02)

    def snapshot(self):
        """CPU ticks: {'backends': reaped children + live clients, 'background': ...}."""
        self.wait_idle()
        pm = proc_stat(self.postmaster)
        if not pm:
            raise BenchError('the PostgreSQL postmaster (pid %d) is gone' % self.postmaster)
        back = pm[3] + pm[4]
        bg = pm[1] + pm[2]
        for pid, st in self.children():
            if self.is_background(pid):
                bg += st[1] + st[2]
            else:
                back += st[1] + st[2]
        return {'backends': back, 'background': bg}

    def checkpoint(self):
        self.sql('CHECKPOINT')


# ---- mock_kinesis -------------------------------------------------------------------------

class Mock:
    def __init__(self, exe, work, name, stream, shards, records, size, limits=False,
                 dump=None):
        self.log_path = os.path.join(work, 'logs', 'mock-%s.log' % name)
        args = [exe, '--port', '0', '--stdin-watch', '--preload-stream', stream,
                '--preload-shards', str(shards), '--preload-records', str(records),
                '--preload-size', str(size)]
        if limits:
            args.append('--limits')
        if dump:
            args += ['--dump-jsonl', dump]
        self.stream, self.shards, self.records = stream, shards, records
        self.logf = open(self.log_path, 'w')
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.logf)
        with open(os.path.join(work, 'pids'), 'a') as f:
            f.write('%d\n' % self.p.pid)
        line = b''
        deadline = time.monotonic() + 300
        while not line.endswith(b'\n'):
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                self.stop()
                raise BenchError('mock_kinesis did not start (log: %s): %s'
                                 % (self.log_path, tail(self.log_path)))
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 1.0))
            if r:
                c = os.read(self.p.stdout.fileno(), 64)
                if not c:
                    continue
                line += c
        self.port = int(line.strip())
        self.endpoint = 'http://127.0.0.1:%d' % self.port

    def _get(self, path):
        with urllib.request.urlopen(self.endpoint + path, timeout=10) as r:
            return json.loads(r.read())

    def reset_stats(self):
        self._get('/control?reset_stats=true')

    def stats(self):
        """GetRecords calls, those refused (throttled), records served since reset_stats."""
        st = self._get('/stats')
        f = st.get('faults', {})
        return {'get_records_calls': st['requests'].get('GetRecords', 0),
                'throttled': f.get('limit_calls', 0) + f.get('limit_bytes', 0) +
                f.get('throttle', 0),
                'records_served': st.get('records_served', 0)}

    def cpu(self):
        st = proc_stat(self.p.pid)
        return (st[1] + st[2]) if st else 0

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()  # --stdin-watch: exit when stdin closes
            except OSError:
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.terminate()
                try:
                    self.p.wait(5)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait()
        self.logf.close()


def tail(path, n=15):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return '(no log)'


# ---- running a measured child ------------------------------------------------------------

def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('AWS_', 'SOURCES__', 'DESTINATION__', 'PG')) and
           k != 'DATABASE_URL'}
    env.update(AWS_ACCESS_KEY_ID='bench', AWS_SECRET_ACCESS_KEY='bench',
               AWS_REGION='us-east-1', AWS_EC2_METADATA_DISABLED='true')
    return env


def run_measured(args, work, name, pg, mock=None, timeout=1800):
    """Runs args to completion; returns wall time, rusage, PostgreSQL and machine CPU."""
    out_path = os.path.join(work, 'logs', name + '.out')
    err_path = os.path.join(work, 'logs', name + '.err')
    pg.checkpoint()
    if mock:
        mock.reset_stats()
    pg0 = pg.snapshot()
    m0 = mock.cpu() if mock else 0
    busy0, tot0 = machine_ticks()
    with open(out_path, 'w') as fo, open(err_path, 'w') as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(args, stdout=fo, stderr=fe, env=clean_env(), cwd=work)
        deadline = t0 + timeout
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise BenchError('%s did not finish in %d s' % (name, timeout))
                time.sleep(0.005)
        except BaseException:  # timeout, SIGTERM, ^C: never leave it running
            p.kill()
            os.wait4(p.pid, 0)
            raise
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    busy1, tot1 = machine_ticks()
    m1 = mock.cpu() if mock else 0
    pg1 = pg.snapshot()
    if p.returncode != 0:
        raise BenchError('%s exited %d:\n%s' % (name, p.returncode, tail(err_path)))
    res = {
        'seconds': wall,
        'cpu_user': ru.ru_utime, 'cpu_sys': ru.ru_stime, 'cpu': ru.ru_utime + ru.ru_stime,
        'max_rss_kib': ru.ru_maxrss,
        'pg_backend_cpu': (pg1['backends'] - pg0['backends']) / TICK,
        'pg_background_cpu': (pg1['background'] - pg0['background']) / TICK,
        'mock_cpu': (m1 - m0) / TICK,
    }
    machine = (busy1 - busy0) / TICK
    ours = res['cpu'] + res['pg_backend_cpu'] + res['pg_background_cpu'] + res['mock_cpu']
    res['other_cpu_cores'] = max(0.0, (machine - ours) / wall) if wall > 0 else 0.0
    res['stdout'], res['stderr'] = out_path, err_path
    if mock:
        res['mock'] = mock.stats()
    return res


def last_json_line(path):
    """The JSON object on the last line of a file (the peer's result)."""
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if not lines:
        raise BenchError('%s is empty' % path)
    return json.loads(lines[-1])


def loader_cmd(a, mock, table=None, extra=()):
    cmd = [a.loader, 'load', '--stream', mock.stream, '--endpoint', mock.endpoint,
           '--region', 'us-east-1', '--pg', a.pgc.conninfo, '--from', 'trim_horizon',
           '--chunk-size', '10000']
    if table:
        cmd += ['--table', table]
    return cmd + list(a.loader_args) + list(extra)


def read_cap(a, shards):
    """Rows/s the loader can read from `shards` shards at most: its readers make at most 5
    GetRecords per second per shard (the service's limit) of --chunk-size records each."""
    chunk = 10000
    args = ['--chunk-size', str(chunk)] + list(a.loader_args)
    for i, x in enumerate(args):
        if x == '--chunk-size' and i + 1 < len(args):
            chunk = int(args[i + 1])
        elif x.startswith('--chunk-size='):
            chunk = int(x.split('=', 1)[1])
    return shards * 5 * chunk


def loader_summary(err_path):
    """(rows, seconds, rows/s) from the loader's 'total:' line, or None."""
    with open(err_path, errors='replace') as f:
        for line in f:
            m = re.search(r'total: (\d+) rows.* in ([\d.]+) s \((\d+) rows/s\)', line)
            if m:
                return int(m.group(1)), float(m.group(2)), int(m.group(3))
    return None


# ---- the phases ---------------------------------------------------------------------------

def dump_to_copy(dump, stream, outs):
    """Converts mock_kinesis --dump-jsonl lines into COPY text rows of the target table, split
    over len(outs) files by shard (as writers own shards). Returns the number of rows."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    td = datetime.timedelta
    files = [open(p, 'w') for p in outs]
    n = 0
    with open(dump) as f:
        for line in f:
            sid, seq, pkey, data = line.rstrip('\n').split('\t', 3)
            mid = base64.b64encode(hashlib.shake_128((sid + seq).encode()).digest(15)).decode()
            # mock sequence numbers end with the arrival time in ms (13 digits)
            ts = (epoch + td(milliseconds=int(seq[-13:]))).isoformat()
            files[int(sid[8:]) % len(files)].write(
                '\t'.join((mid, sid, seq, '\\N', ts, pkey, stream, data)) + '\n')
            n += 1
    for f in files:
        f.close()
    return n


def table_shape(pg, table):
    return pg.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || "
        "CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) || ' | ' || "
        "(SELECT string_agg(pg_get_indexdef(indexrelid, 0, false) ~ '\\(_kinesis_msg_id\\)'"
        "::text || '/' || indisprimary::text, ',') FROM pg_index WHERE indrelid = '%s'::regclass)"
        " FROM pg_attribute WHERE attrelid = '%s'::regclass AND attnum > 0 AND NOT attisdropped"
        % (table, table))


def mismatches(pg, a, b, subset_of_b=False):
    """Rows of a and b that differ (by message id, every column compared)."""
    cond = ' OR '.join('x.%s IS DISTINCT FROM y.%s' % (c, c) for c in COLS)
    join = 'LEFT JOIN' if subset_of_b else 'FULL JOIN'
    return int(pg.sql('SELECT count(*) FROM %s x %s %s y USING (_kinesis_msg_id) WHERE %s'
                      % (a, join, b, cond)))


def rate(rows, seconds):
    return rows / seconds if seconds > 0 else 0.0


def run_sink(a, pg, parts, table):
    """The sink limit: the same rows, len(parts) psql \\copy streams at once, one empty table
    with the loader's shape. Only the \\copy processes are timed."""
    pg.sql(TABLE_DDL.format(t=table))
    pg.checkpoint()
    s0 = pg.snapshot()
    busy0, _ = machine_ticks()
    t0 = time.monotonic()
    procs = [subprocess.Popen([a.psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', pg.conninfo,
                               '-c', "\\copy %s FROM '%s'" % (table, p)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for p in parts]
    try:
        errs = [p.communicate()[1] for p in procs]
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    wall = time.monotonic() - t0
    busy1, _ = machine_ticks()
    s1 = pg.snapshot()
    if any(p.returncode for p in procs):
        raise BenchError('psql \\copy failed: %s' % ' '.join(errs))
    rows = int(pg.sql('SELECT count(*) FROM ' + table))
    back = (s1['backends'] - s0['backends']) / TICK
    bg = (s1['background'] - s0['background']) / TICK
    return {'rows': rows, 'seconds': wall, 'rows_per_s': rate(rows, wall),
            'pg_backend_cpu': back, 'pg_background_cpu': bg, 'streams': len(parts),
            'other_cpu_cores': max(0.0, ((busy1 - busy0) / TICK - back - bg) / wall)}


def run_loader(a, pg, mock, table, name, extra=()):
    res = run_measured(loader_cmd(a, mock, table=table, extra=extra), a.work, name, pg, mock)
    res['rows'] = int(pg.sql('SELECT count(*) FROM kinesis.%s' % table))
    res['rows_per_s'] = rate(res['rows'], res['seconds'])
    res['summary'] = loader_summary(res['stderr'])
    res['args'] = ' '.join(list(a.loader_args) + list(extra)) or '(defaults)'
    return res


def median_run(runs):
    """The run with the median rows/s (a real run, so its CPU and RSS figures belong to it)."""
    runs = sorted(runs, key=lambda r: r['rows_per_s'])
    return dict(runs[(len(runs) - 1) // 2], rounds=len(runs),
                rows_per_s_min=runs[0]['rows_per_s'], rows_per_s_max=runs[-1]['rows_per_s'],
                other_cpu_cores_max=max(r['other_cpu_cores'] for r in runs))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def phase_main(a, pg, R):
    """Rounds of sink, kinesis2pg, kinesis2pg variant, peer on the same rows (one mock);
    medians over rounds, ratios paired within each round."""
    log('main: %d records of ~%d B in %d shards, %d round(s)'
        % (a.records, a.size, a.shards, a.repeat))
    stream = 'bench'
    dump = os.path.join(a.work, 'dump.tsv')
    mock = Mock(a.mock, a.work, 'main', stream, a.shards, a.records, a.size, dump=dump)
    parts = [os.path.join(a.work, 'sink-%d.tsv' % i) for i in range(2)]
    rounds = []
    k = a.peer_shards if 0 < a.peer_shards < a.shards else a.shards
    try:
        n = dump_to_copy(dump, stream, parts)
        os.unlink(dump)
        if n != a.records:
            raise BenchError('the mock dumped %d records, expected %d' % (n, a.records))
        for i in range(a.repeat):
            rd = {}
            log('main %d/%d: sink (2 x psql \\copy)' % (i + 1, a.repeat))
            rd['sink'] = run_sink(a, pg, parts, 'bench.sink')
            log('main %d/%d: kinesis2pg' % (i + 1, a.repeat))
            t_loader = 'bench_r%d' % i
            rd['loader'] = run_loader(a, pg, mock, t_loader, 'loader-main-%d' % i)
            if a.variant_args:
                log('main %d/%d: kinesis2pg %s' % (i + 1, a.repeat, ' '.join(a.variant_args)))
                t_variant = 'bench_variant_r%d' % i
                rd['loader_variant'] = run_loader(a, pg, mock, t_variant,
                                                  'loader-variant-%d' % i, a.variant_args)
            log('main %d/%d: dlt-style peer (%d of %d shards)' % (i + 1, a.repeat, k, a.shards))
            pg.sql(TABLE_DDL.format(t='bench.peer'))
            pe = run_measured([a.python, a.peer, '--endpoint', mock.endpoint, '--stream',
                               stream, '--pg', pg.conninfo, '--table', 'bench.peer',
                               '--max-shards', str(k)], a.work, 'peer-main-%d' % i, pg, mock)
            pe['rows'] = int(pg.sql('SELECT count(*) FROM bench.peer'))
            pe['rows_per_s'] = rate(pe['rows'], pe['seconds'])
            pe['shards_read'] = k
            pe['detail'] = last_json_line(pe['stdout'])
            pe['detail'].pop('per_shard', None)
            rd['peer'] = pe
            if i == 0:
                # Same rows, same values: every column compared with the sink's rows.
                rd['loader']['mismatched_rows_vs_sink'] = mismatches(
                    pg, 'kinesis.' + t_loader, 'bench.sink')
                rd['loader']['same_table_shape'] = (table_shape(pg, 'kinesis.' + t_loader) ==
                                                    table_shape(pg, 'bench.sink'))
                if a.variant_args:
                    rd['loader_variant']['mismatched_rows_vs_sink'] = mismatches(
                        pg, 'kinesis.' + t_variant, 'bench.sink')
                pe['mismatched_rows_vs_sink'] = mismatches(pg, 'bench.peer', 'bench.sink',
                                                           subset_of_b=True)
                pe['same_table_shape'] = (table_shape(pg, 'bench.peer') ==
                                          table_shape(pg, 'bench.sink'))
            pg.sql('DROP TABLE kinesis.%s; DROP TABLE bench.peer; DROP TABLE bench.sink'
                   % t_loader + ('; DROP TABLE kinesis.%s' % t_variant if a.variant_args
                                 else ''))
            rounds.append(rd)
    finally:
        mock.stop()
        for p in parts:
            if os.path.exists(p):
                os.unlink(p)
    for kind in rounds[0]:
        R[kind] = median_run([rd[kind] for rd in rounds])
        for key in ('mismatched_rows_vs_sink', 'same_table_shape'):
            if key in rounds[0][kind]:
                R[kind][key] = rounds[0][kind][key]
    lo = 'loader'
    R['ratios'] = {
        'loader_vs_sink': median([rd[lo]['rows_per_s'] / rd['sink']['rows_per_s']
                                  for rd in rounds]),
        'loader_vs_peer': median([rd[lo]['rows_per_s'] / rd['peer']['rows_per_s']
                                  for rd in rounds]),
        'loader_cpu_vs_pg_backend_cpu': median([rd[lo]['cpu'] / rd[lo]['pg_backend_cpu']
                                                for rd in rounds]),
    }
    if a.variant_args:
        R['ratios']['variant_vs_sink'] = median(
            [rd['loader_variant']['rows_per_s'] / rd['sink']['rows_per_s'] for rd in rounds])
    R['rounds'] = [{kind: {x: r[x] for x in ('rows_per_s', 'cpu', 'pg_backend_cpu',
                                              'other_cpu_cores', 'max_rss_kib') if x in r}
                    for kind, r in rd.items()} for rd in rounds]


def phase_sweep(a, pg, R):
    """Each shard count's runs, in rounds that go up the counts and then down (4, 16, 64, 256,
    256, 64, 16, 4 for two runs each): whatever drifts during the phase (the server's WAL and
    page cache, the machine) weighs on every point alike instead of on the last ones. One mock
    per shard count, all started first (each holds its records: ~0.7 GB per million)."""
    R['sweep'] = []
    mocks, runs = {}, {n: [] for n in a.sweep_shards}
    try:
        for n in a.sweep_shards:
            stream = 'sweep%d' % n
            mocks[n] = Mock(a.mock, a.work, stream, stream, n, a.sweep_records, a.size)
        for i in range(a.sweep_repeat):
            for n in (a.sweep_shards if i % 2 == 0 else list(reversed(a.sweep_shards))):
                stream = 'sweep%d' % n
                log('sweep: %d records in %d shards, run %d of %d'
                    % (a.sweep_records, n, i + 1, a.sweep_repeat))
                table = '%s_r%d' % (stream, i)
                runs[n].append(run_loader(a, pg, mocks[n], table, 'loader-%s-%d' % (stream, i)))
                pg.sql('DROP TABLE kinesis.%s' % table)
    finally:
        for m in mocks.values():
            m.stop()
    for n in a.sweep_shards:
        rs = runs[n]
        m = median_run(rs)
        R['sweep'].append({'shards': n, 'rows': m['rows'], 'seconds': m['seconds'],
                           'rows_per_s': median([r['rows_per_s'] for r in rs]),
                           'runs_rows_per_s': [r['rows_per_s'] for r in rs],
                           'max_rss_kib': max(r['max_rss_kib'] for r in rs),
                           'read_cap_rows_per_s': read_cap(a, n),
                           'cpu': m['cpu'], 'pg_backend_cpu': m['pg_backend_cpu'],
                           'other_cpu_cores': m['other_cpu_cores_max']})


def phase_limits(a, pg, R):
    n, rec = a.limits_shards, a.limits_records
    k = min(a.limits_peer_shards, n) if a.limits_peer_shards > 0 else n
    stream = 'limits%d' % n
    log('limits: %d records in %d shards, --limits' % (rec, n))
    mock = Mock(a.mock, a.work, stream, stream, n, rec, a.size, limits=True)
    try:
        lo = run_loader(a, pg, mock, stream, 'loader-' + stream)
        pg.sql('DROP TABLE kinesis.%s' % stream)
        time.sleep(3)  # let the shards' read allowance (2 MB/s) refill after the loader
        log('limits: dlt-style peer on %d of %d shards' % (k, n))
        pg.sql(TABLE_DDL.format(t='bench.peer_limits'))
        pe = run_measured([a.python, a.peer, '--endpoint', mock.endpoint, '--stream', stream,
                           '--pg', pg.conninfo, '--table', 'bench.peer_limits',
                           '--max-shards', str(k)], a.work, 'peer-' + stream, pg, mock,
                          timeout=3600)
    finally:
        mock.stop()
    pe['rows'] = int(pg.sql('SELECT count(*) FROM bench.peer_limits'))
    d = last_json_line(pe['stdout'])
    d.pop('per_shard', None)
    pe['detail'] = d
    pe['shards_read'] = k
    # The peer reads shards one after another: the whole backlog takes its start-up plus the
    # measured time per shard times the number of shards (plus the process start, measured).
    startup = pe['seconds'] - d['shard_seconds']
    pe['estimated_seconds_all_shards'] = startup + d['shard_seconds'] * n / k
    pe['rows_per_s_measured'] = rate(pe['rows'], pe['seconds'])
    pe['rows_per_s'] = rate(rec, pe['estimated_seconds_all_shards'])
    pg.sql('DROP TABLE bench.peer_limits')
    R['limits'] = {'shards': n, 'records': rec, 'loader': lo, 'peer': pe}


def phase_perf(a, pg, R):
    """BENCH_PERF=1: the main run again under perf record (DWARF call graphs: the build has no
    frame pointers); the top symbols go to the report."""
    perf = shutil.which('perf')
    if not perf:
        R['perf'] = 'perf not installed'
        return
    stream = 'bench'
    mock = Mock(a.mock, a.work, 'perf', stream, a.shards, a.records, a.size)
    data = os.path.join(a.work, 'perf.data')
    try:
        run_measured([perf, 'record', '-F', '499', '--call-graph', 'dwarf,16384', '-o', data,
                      '--'] +
                     loader_cmd(a, mock, table='bench_perf'), a.work, 'loader-perf', pg, mock)
    finally:
        mock.stop()
    pg.sql('DROP TABLE kinesis.bench_perf')
    def rep(*extra, keep_hex=False):
        r = subprocess.run([perf, 'report', '-i', data, '--stdio', '-g', 'none'] + list(extra),
                           capture_output=True, text=True)
        seen, out = set(), []
        for l in r.stdout.splitlines():
            l = re.sub(r'(\s+-)+\s*$', '', l.rstrip())  # empty srcline columns
            sym = l.split('[.]')[-1].strip()
            if (not l.strip() or l.startswith('#') or '[k]' in l or sym in seen or
                    (not keep_hex and re.fullmatch(r'0x[0-9a-f]+', sym))):
                continue
            seen.add(sym)
            out.append(l)
        return out
    R['perf'] = ('self time by library:\n' +
                 '\n'.join(rep('--no-children', '--sort', 'dso', '--percent-limit', '0.5',
                                keep_hex=True)) +
                 '\nself time (user space):\n' +
                 '\n'.join(rep('--no-children', '--sort', 'dso,symbol',
                                '--percent-limit', '1', keep_hex=True)[:25]) +
                 '\n(unnamed libcjson.so addresses are cJSON internals: Debian strips it)' +
                 '\ninclusive time (user space, >= 3 %):\n' +
                 '\n'.join(rep('--children', '--sort', 'symbol', '--percent-limit', '3')[:40]))


# ---- the report ---------------------------------------------------------------------------

def machine_busy_cores(seconds=3.0):
    """Cores busy over the next `seconds` (before we start anything: other programs)."""
    b0, _ = machine_ticks()
    time.sleep(seconds)
    b1, _ = machine_ticks()
    return (b1 - b0) / TICK / seconds


def source_version():
    """`git describe --always --dirty` of the tree that was built, or '?'."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(['git', '-C', here, 'describe', '--always', '--dirty'],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or '?'
    except (OSError, subprocess.SubprocessError):
        return '?'


def machine_info(pg):
    cpu = '?'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    with open('/proc/meminfo') as f:
        mem_kib = int(f.readline().split()[1])
    return {'nproc': NCPU, 'cpu': cpu, 'mem_gib': round(mem_kib / 1048576, 1),
            'kernel': platform.release(),
            'postgres': pg.sql('SHOW server_version'),
            'shared_buffers': pg.sql('SHOW shared_buffers'),
            'huge_pages': pg.sql('SHOW huge_pages'),
            'loadavg_at_start': open('/proc/loadavg').read().split()[:3],
            'busy_cores_before_start': round(machine_busy_cores(), 2)}


def fmt_int(v):
    return '{:,.0f}'.format(v)


def targets(R, a):
    t = []
    m = R.get('loader')
    if m and 'ratios' in R:
        r = R['ratios']['loader_vs_sink']
        t.append(('unthrottled kinesis2pg >= 0.85 x sink', r >= 0.85, '%.2f x' % r))
        r = R['ratios']['loader_cpu_vs_pg_backend_cpu']
        t.append(('loader CPU per row <= 0.15 x PostgreSQL backends', r <= 0.15, '%.3f x' % r))
    if 'limits' in R:
        L = R['limits']
        r = L['loader']['rows_per_s'] / L['peer']['rows_per_s']
        t.append(('--limits, %d shards: kinesis2pg >= 25 x peer' % L['shards'], r >= 25,
                  '%.1f x' % r))
    sw = R.get('sweep') or []
    if len(sw) >= 2:
        # Throughput must not fall as shards are added: no point more than 10 % below the
        # first (fewest shards). A point above it is not a failure: with 4 shards the readers'
        # pacing (5 GetRecords/s per shard, as AWS allows) caps reading at 4 x 5 x
        # --chunk-size = 200,000 rows/s, about the sink limit, so more shards can be faster.
        base = sw[0]['rows_per_s']
        rs = [s['rows_per_s'] / base for s in sw]
        t.append(('%d -> %d shards: none more than 10 %% below %d'
                  % (sw[0]['shards'], sw[-1]['shards'], sw[0]['shards']),
                  all(r >= 0.90 for r in rs),
                  ', '.join('%d: %.2f' % (s['shards'], r) for s, r in zip(sw, rs)) + ' x'))
    rss = [(m['max_rss_kib'], a.shards)] if m else []
    rss += [(s['max_rss_kib'], s['shards']) for s in sw]
    if 'limits' in R:
        rss.append((R['limits']['loader']['max_rss_kib'], R['limits']['shards']))
    if rss:
        worst = max(rss, key=lambda x: x[0] / (65536 + 256 * x[1]))
        ok = all(kib <= 65536 + 256 * n for kib, n in rss)
        t.append(('peak RSS <= 64 MiB + 256 KiB/shard', ok,
                  'worst %.0f MiB at %d shards (limit %.0f MiB)'
                  % (worst[0] / 1024, worst[1], (65536 + 256 * worst[1]) / 1024)))
    return t


def report_markdown(R, a):
    """The result tables as Markdown (BENCH_MD=FILE), for docs/benchmarks.md."""
    out = []
    p = out.append
    mi = R['machine']
    p('Run of %s, source `%s`; %d x %s, %.1f GiB, Linux %s, PostgreSQL %s (shared_buffers %s, '
      'huge_pages %s). Other programs kept %.2f cores busy just before the start.'
      % (R['date'], R['source'], mi['nproc'], mi['cpu'], mi['mem_gib'], mi['kernel'],
         mi['postgres'].split()[0], mi['shared_buffers'], mi['huge_pages'],
         mi['busy_cores_before_start']))
    if 'sink' in R:
        s = R['sink']
        p('')
        p('Unthrottled, %s rows in %d shards, median of %d rounds (min–max in brackets):'
          % (fmt_int(a.records), a.shards, s['rounds']))
        p('')
        p('| | rows/s | vs sink | client CPU s / M rows | PostgreSQL backend CPU s / M rows '
          '| peak RSS MiB |')
        p('|---|---|---|---|---|---|')
        p('| sink: 2 × `psql \\copy` | %s (%s–%s) | 1.00 | – | %.1f | – |'
          % (fmt_int(s['rows_per_s']), fmt_int(s['rows_per_s_min']),
             fmt_int(s['rows_per_s_max']), s['pg_backend_cpu'] / s['rows'] * 1e6))
        rows = [('kinesis2pg ' + R['loader']['args'], R['loader'])]
        if 'loader_variant' in R:
            rows.append(('kinesis2pg ' + R['loader_variant']['args'], R['loader_variant']))
        pe = R['peer']
        rows.append(('dlt-style peer%s' % ('' if pe['shards_read'] == a.shards else
                                           ' (%d of %d shards)' % (pe['shards_read'], a.shards)),
                     pe))
        for name, r in rows:
            p('| %s | %s (%s–%s) | %.2f | %.1f | %.1f | %.0f |'
              % (name, fmt_int(r['rows_per_s']), fmt_int(r['rows_per_s_min']),
                 fmt_int(r['rows_per_s_max']), r['rows_per_s'] / s['rows_per_s'],
                 r['cpu'] / r['rows'] * 1e6, r['pg_backend_cpu'] / r['rows'] * 1e6,
                 r['max_rss_kib'] / 1024))
        ra = R['ratios']
        p('')
        p('Paired per round (median): kinesis2pg / sink = %.2f, kinesis2pg / peer = %.1f, '
          'loader CPU / PostgreSQL backend CPU = %.3f. Other programs used up to %.2f cores '
          'during these runs.' % (ra['loader_vs_sink'], ra['loader_vs_peer'],
                                  ra['loader_cpu_vs_pg_backend_cpu'],
                                  max(r.get('other_cpu_cores_max', 0)
                                      for r in [s] + [x for _, x in rows])))
    if R.get('sweep'):
        p('')
        p('Shard sweep, %s rows each (median of %d runs):' % (fmt_int(a.sweep_records),
                                                             a.sweep_repeat))
        p('')
        p('| shards | rows/s | vs %d shards | read cap rows/s | peak RSS MiB | RSS target MiB '
          '| loader CPU s |' % R['sweep'][0]['shards'])
        p('|---|---|---|---|---|---|---|')
        base = R['sweep'][0]['rows_per_s']
        for w in R['sweep']:
            p('| %d | %s | %.2f | %s | %.0f | %.0f | %.1f |'
              % (w['shards'], fmt_int(w['rows_per_s']), w['rows_per_s'] / base,
                 fmt_int(w['read_cap_rows_per_s']), w['max_rss_kib'] / 1024,
                 (65536 + 256 * w['shards']) / 1024, w['cpu']))
        p('')
        p('Read cap: shards × 5 GetRecords/s × --chunk-size, the most the readers ask for.')
    if 'limits' in R:
        L = R['limits']
        lo, pe = L['loader'], L['peer']
        p('')
        p('Throttled (`--limits`), %d shards, %s rows of backlog:' % (L['shards'],
                                                                    fmt_int(L['records'])))
        p('')
        p('| | time to drain | rows/s | notes |')
        p('|---|---|---|---|')
        p('| kinesis2pg | %.1f s | %s | %s GetRecords calls, %s refused; peak RSS %.0f MiB |'
          % (lo['seconds'], fmt_int(lo['rows_per_s']),
             fmt_int(lo.get('mock', {}).get('get_records_calls', 0)),
             fmt_int(lo.get('mock', {}).get('throttled', 0)), lo['max_rss_kib'] / 1024))
        p('| dlt-style peer | %.0f s (extrapolated) | %s | measured on %d of %d shards: %s '
          'rows in %.1f s |' % (pe['estimated_seconds_all_shards'], fmt_int(pe['rows_per_s']),
                                pe['shards_read'], L['shards'], fmt_int(pe['rows']),
                                pe['seconds']))
    t = targets(R, a)
    if t:
        p('')
        p('| target | result | measured |')
        p('|---|---|---|')
        for name, ok, val in t:
            p('| %s | %s | %s |' % (name.replace('>=', '≥').replace('<=', '≤'),
                                    'pass' if ok else '**fail**', val))
    return '\n'.join(out) + '\n'


def report(R, a):
    out = []
    p = out.append
    mi = R['machine']
    p('')
    p('kinesis2pg benchmark, %s, source %s' % (R['date'], R['source']))
    p('machine: %d x %s, %.1f GiB, Linux %s, PostgreSQL %s (fsync on, synchronous_commit on, '
      'shared_buffers %s, huge_pages %s)'
      % (mi['nproc'], mi['cpu'], mi['mem_gib'], mi['kernel'], mi['postgres'],
         mi['shared_buffers'], mi['huge_pages']))
    if mi['busy_cores_before_start'] > 0.25:
        p('WARNING: the machine was not quiet: other programs kept %.2f of %d cores busy just '
          'before the start (load average %s); expect noisy numbers'
          % (mi['busy_cores_before_start'], mi['nproc'], ' '.join(mi['loadavg_at_start'])))
    if R['config']['quick']:
        p('BENCH_QUICK=1: a smoke test on few rows; start-up dominates, the targets below '
          'mean little')
    p('rows: ~%d-byte JSON events; loader: --chunk-size 10000 %s'
      % (a.size, ' '.join(a.loader_args) or '(other flags default)'))
    if 'sink' in R:
        s = R['sink']
        p('')
        p('1. Unthrottled, %s rows in %d shards, the same rows for all; median of %d round(s)'
          % (fmt_int(a.records), a.shards, s['rounds']))
        p('  %-40s %10s %8s %10s %19s %8s %8s %7s %6s'
          % ('', 'rows', 'seconds', 'rows/s', '(min-max)', 'vs sink', 'CPU s/M', 'PG s/M',
             'RSS MiB'))

        def row(name, r, cpu, rss):
            p('  %-40s %10s %8.2f %10s %19s %8.2f %8s %7.1f %6s'
              % (name[:40], fmt_int(r['rows']), r['seconds'], fmt_int(r['rows_per_s']),
                 '(%s-%s)' % (fmt_int(r['rows_per_s_min']), fmt_int(r['rows_per_s_max'])),
                 r['rows_per_s'] / s['rows_per_s'], cpu,
                 r['pg_backend_cpu'] / r['rows'] * 1e6, rss))
        row('sink: 2 x psql \\copy (text)', s, '-', '-')
        rows = [('kinesis2pg ' + R['loader']['args'], R['loader'])]
        if 'loader_variant' in R:
            rows.append(('kinesis2pg ' + R['loader_variant']['args'], R['loader_variant']))
        pe = R['peer']
        rows.append(('dlt-style peer (boto3, Limit 1000)%s'
                     % ('' if pe['shards_read'] == a.shards
                        else ', %d/%d shards' % (pe['shards_read'], a.shards)), pe))
        for name, r in rows:
            row(name, r, '%.1f' % (r['cpu'] / r['rows'] * 1e6), '%.0f' % (r['max_rss_kib'] / 1024))
        ra = R['ratios']
        p('  kinesis2pg / sink = %.2f%s; kinesis2pg / peer = %.1f; loader CPU / PostgreSQL '
          'backend CPU = %.3f (medians of per-round ratios)'
          % (ra['loader_vs_sink'],
             ' (variant: %.2f)' % ra['variant_vs_sink'] if 'variant_vs_sink' in ra else '',
             ra['loader_vs_peer'], ra['loader_cpu_vs_pg_backend_cpu']))
        p('  CPU s/M: the client CPU seconds per million rows (wait4 rusage); PG s/M: CPU of '
          'the PostgreSQL backends serving it.')
        p('  Other programs on the machine used up to %.2f cores during these runs.'
          % max(r.get('other_cpu_cores_max', 0) for r in [s] + [x for _, x in rows]))
        lo = R['loader']
        bad = [n for n, r in [('kinesis2pg', lo), ('variant', R.get('loader_variant')),
                              ('peer', pe)] if r and r.get('mismatched_rows_vs_sink')]
        if bad or not lo.get('same_table_shape') or not pe.get('same_table_shape'):
            p('  WARNING: rows differ from the sink for %s; same table shape: %s'
              % (', '.join(bad) or 'none', lo.get('same_table_shape')))
        else:
            p('  Checked: same table shape, and every row identical to the sink\'s (all columns).')
    if R.get('sweep'):
        p('')
        p('2. Shard sweep, kinesis2pg, %s rows each; median of %d run(s)'
          % (fmt_int(a.sweep_records), a.sweep_repeat))
        p('  %8s %10s %10s %21s %8s %10s %9s %10s %7s %7s'
          % ('shards', 'rows', 'rows/s', '(runs)', 'vs 1st', 'read cap', 'RSS MiB', 'RSS limit',
             'CPU s', 'other'))
        base = R['sweep'][0]['rows_per_s']
        for s in R['sweep']:
            p('  %8d %10s %10s %21s %8.2f %10s %9.0f %10.0f %7.1f %7.2f'
              % (s['shards'], fmt_int(s['rows']), fmt_int(s['rows_per_s']),
                 '(' + ', '.join(fmt_int(x) for x in s['runs_rows_per_s']) + ')',
                 s['rows_per_s'] / base, fmt_int(s['read_cap_rows_per_s']),
                 s['max_rss_kib'] / 1024, (65536 + 256 * s['shards']) / 1024, s['cpu'],
                 s['other_cpu_cores']))
        p('  read cap: shards x 5 GetRecords/s x --chunk-size rows/s; RSS: peak of the runs '
          '(ru_maxrss); limit: 64 MiB + 256 KiB per shard; other: cores used by other programs')
    if 'limits' in R:
        L = R['limits']
        lo, pe = L['loader'], L['peer']
        p('')
        p('3. Throttled (mock --limits: 5 GetRecords/s and 2 MB/s per shard), %d shards, '
          '%s rows backlog' % (L['shards'], fmt_int(L['records'])))
        p('  kinesis2pg:      drained %s rows in %.2f s = %s rows/s (peak RSS %.0f MiB, other '
          'programs %.2f cores)' % (fmt_int(lo['rows']), lo['seconds'], fmt_int(lo['rows_per_s']),
                                   lo['max_rss_kib'] / 1024, lo['other_cpu_cores']))
        if lo.get('mock'):
            p('                   %d GetRecords calls, %d refused by the limits (%.1f calls/s '
              'per shard)' % (lo['mock']['get_records_calls'], lo['mock']['throttled'],
                              lo['mock']['get_records_calls'] / lo['seconds'] / L['shards']))
        p('  dlt-style peer:  measured %s rows (%d of %d shards, one after another) in %.2f s '
          '= %s rows/s' % (fmt_int(pe['rows']), pe['shards_read'], L['shards'], pe['seconds'],
                            fmt_int(pe['rows_per_s_measured'])))
        p('                   %d GetRecords answered, %d throttled calls retried by botocore, '
          '%d more after its retries gave up' % (pe['detail']['get_records'],
                                                 pe['detail'].get('botocore_retries', 0),
                                                 pe['detail']['throttled_after_retries']))
        p('                   all %d shards, extrapolated: %.0f s = %s rows/s'
          % (L['shards'], pe['estimated_seconds_all_shards'], fmt_int(pe['rows_per_s'])))
        p('  kinesis2pg / peer = %.1f' % (lo['rows_per_s'] / pe['rows_per_s']))
    t = targets(R, a)
    if t:
        p('')
        p('Targets')
        for name, ok, val in t:
            p('  %-4s %-52s %s' % ('PASS' if ok else 'FAIL', name, val))
    if R.get('perf'):
        p('')
        p('perf record --call-graph dwarf of one kinesis2pg run (main phase configuration)')
        p(R['perf'])
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--work', required=True)
    ap.add_argument('--pgdata', required=True)
    ap.add_argument('--pgport', type=int, required=True)
    ap.add_argument('--loader', required=True)
    ap.add_argument('--mock', required=True)
    ap.add_argument('--psql', default='psql')
    a = ap.parse_args()
    e = os.environ.get
    quick = e('BENCH_QUICK', '0') not in ('', '0')
    a.records = int(e('BENCH_RECORDS') or (100000 if quick else 1000000))
    a.shards = int(e('BENCH_SHARDS') or 4)
    a.size = int(e('BENCH_SIZE') or 400)
    a.sweep_records = int(e('BENCH_SWEEP_RECORDS') or a.records)
    a.sweep_shards = [int(x) for x in (e('BENCH_SWEEP_SHARDS') or '4 16 64 256').split()]
    a.limits_shards = int(e('BENCH_LIMITS_SHARDS') or 64)
    a.limits_records = int(e('BENCH_LIMITS_RECORDS') or a.records)
    a.limits_peer_shards = int(e('BENCH_LIMITS_PEER_SHARDS') or (2 if quick else 4))
    a.peer_shards = int(e('BENCH_PEER_SHARDS') or 0)
    a.repeat = max(1, int(e('BENCH_REPEAT') or (1 if quick else 3)))
    a.sweep_repeat = max(1, int(e('BENCH_SWEEP_REPEAT') or (1 if quick else 4)))
    a.loader_args = (e('BENCH_LOADER_ARGS') or '').split()
    a.variant_args = (e('BENCH_VARIANT_ARGS', '--batch-rows 50000')).split()
    a.phases = (e('BENCH_PHASES') or 'main sweep limits').split()
    if e('BENCH_PERF', '0') not in ('', '0'):
        a.phases.append('perf')
    a.python = sys.executable
    a.peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dlt_style_peer.py')
    os.makedirs(os.path.join(a.work, 'logs'), exist_ok=True)
    a.pgc = pg = Postgres(a.psql, a.pgport, a.pgdata)

    R = {'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
         'source': source_version(),
         'machine': machine_info(pg),
         'config': {'records': a.records, 'shards': a.shards, 'size': a.size,
                    'sweep_records': a.sweep_records, 'sweep_shards': a.sweep_shards,
                    'limits_shards': a.limits_shards, 'limits_records': a.limits_records,
                    'limits_peer_shards': a.limits_peer_shards, 'quick': quick,
                    'repeat': a.repeat, 'sweep_repeat': a.sweep_repeat,
                    'loader_args': a.loader_args, 'variant_args': a.variant_args}}
    pg.sql('CREATE SCHEMA IF NOT EXISTS bench')
    t0 = time.monotonic()
    phases = {'main': phase_main, 'sweep': phase_sweep, 'limits': phase_limits,
              'perf': phase_perf}
    for ph in a.phases:
        if ph not in phases:
            raise BenchError('unknown phase %r in BENCH_PHASES' % ph)
        phases[ph](a, pg, R)
    R['bench_seconds'] = round(time.monotonic() - t0, 1)
    R['targets'] = [{'target': n, 'pass': ok, 'value': v} for n, ok, v in targets(R, a)]

    def strip(o):  # the machine-readable line: no log paths, rounded numbers
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ('stdout', 'stderr')}
        if isinstance(o, list):
            return [strip(v) for v in o]
        if isinstance(o, float):
            return round(o, 3)
        return o
    line = json.dumps(strip(R), separators=(',', ':'))
    out = e('BENCH_OUT')
    if out:
        with open(out, 'w') as f:
            f.write(json.dumps(strip(R), indent=1) + '\n')
    if e('BENCH_MD'):
        with open(e('BENCH_MD'), 'w') as f:
            f.write(report_markdown(R, a))
    print(report(R, a))
    print('')
    print('BENCH ' + line, flush=True)
    return 0


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except BenchError as err:
        log('error: %s' % err)
        sys.exit(1)

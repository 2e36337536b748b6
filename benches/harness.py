#!/usr/bin/env python3
"""harness.py - krbouncer against PgBouncer against PostgreSQL directly, side by side.

Usage (from the repository root; root or an ordinary user; Python 3.9+ standard library only):

    python3 benches/harness.py                        # 3 rounds x 15 s, 10,000 idle clients
    ROUNDS=1 DURATION=5 IDLE_CLIENTS=2000 python3 benches/harness.py      # quick check
    PGBOUNCER_BIN=/path/to/pgbouncer python3 benches/harness.py --workloads select-32,idle
    python3 benches/harness.py --help                 # every option; each has an env variable
    python3 benches/harness.py --hold                 # set up, print ports and pids, wait (profiling)
    python3 benches/harness.py --variant before=/tmp/krbouncer-old   # two builds side by side

What it does:
  * starts a throwaway PostgreSQL 15 (initdb in a temp dir, free loopback port, md5 passwords,
    synchronous_commit = off so that -N measures CPU rather than the disk), `pgbench -i -s 10`;
  * builds and starts krbouncer's release build (`cargo build --release`, or KRBOUNCER_BIN) and
    PgBouncer (PGBOUNCER_BIN, else `pgbouncer` on PATH / Debian's /usr/sbin/pgbouncer; without one
    the PgBouncer columns read "-"), each with the same pgbouncer.ini: transaction pooling,
    default_pool_size 20, auth_type md5 with a users.txt, max_prepared_statements 200;
  * for each workload runs `pgbench -j 2 -T DURATION` against each target and against PostgreSQL
    directly, ROUNDS times, the order of targets rotating every round so that drift on a shared
    machine falls on all targets alike;
  * prints one markdown table. Per transaction figures are sums over all rounds divided by the
    transactions of all rounds; ratios compare those figures between targets (xPgB = divided by
    PgBouncer's, xdirect = divided by direct PostgreSQL's).

Columns:
  TPS, latency  pgbench's "tps" and "latency average" (mean of the rounds); spread = (max - min) /
                mean of TPS over the rounds, a noise gauge.
  pooler us     the pooler's utime + stime from /proc/<pid>/stat (all threads, including exited
                ones), delta over the run, per transaction.
  PG us         PostgreSQL's CPU per transaction: the postmaster's utime + stime + cutime + cstime
                plus utime + stime of its live children, delta over the run. cutime/cstime hold
                the CPU of children the postmaster has reaped, so backends that exit during the run
                (-C, direct connections) are counted too; a backend that exits between the two reads
                can be counted twice or missed (bounded by one backend's life, ~1 ms).
  RSS           the pooler's VmRSS from /proc/<pid>/status at the end of the run.
  idle row      N clients log in (real md5 login, asyncio) to a freshly started pooler and stay;
                "TPS" = logins per second, "pooler us" = CPU per login, RSS = (RSS with N idle
                clients - RSS before) / N, in KB per client. Not run against PostgreSQL directly.

CPU times come from clock ticks (usually 10 ms): 15 s runs make that resolution negligible.
Nothing here is pass/fail: the numbers are for docs/PERFORMANCE.md and for regressions. On a
shared machine single figures vary by 20-30 %; compare ratios from the same run.
"""

import argparse
import asyncio
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD, DBNAME = "bench", "bench", "bench"
POOL_SIZE = 20

# name -> (description, pgbench arguments); "{rows8k}" is replaced by the custom script's path.
WORKLOADS = {
    "select-32": ("`-S`, 32 clients, simple", ["-S", "-c", "32"]),
    "select-128": ("`-S`, 128 clients", ["-S", "-c", "128"]),
    "extended-32": ("`-S -M extended`, 32 clients", ["-S", "-M", "extended", "-c", "32"]),
    "prepared-32": ("`-S -M prepared`, 32 clients", ["-S", "-M", "prepared", "-c", "32"]),
    "write-32": ("`-N`, 32 clients", ["-N", "-c", "32"]),
    "connect-8": ("`-S -C`, 8 clients", ["-S", "-C", "-c", "8"]),
    "rows8k-4": ("8 KB x 1000 rows per txn, 4 clients", ["-f", "{rows8k}", "-c", "4"]),
    "idle": ("idle logged-in clients", None),
}
ROWS8K_SQL = "SELECT repeat('x', 8192) FROM generate_series(1, 1000);\n"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc readings


def proc_stat(pid):
    """(ppid, own ticks, reaped children's ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    ppid = int(rest[1])
    own = int(rest[11]) + int(rest[12])  # utime + stime
    reaped = int(rest[13]) + int(rest[14])  # cutime + cstime
    return ppid, own, reaped


def cpu_ticks(pid):
    st = proc_stat(pid)
    return st[1] if st else 0


def cluster_ticks(postmaster):
    """CPU ticks of a PostgreSQL cluster: the postmaster, its reaped and its live children."""
    st = proc_stat(postmaster)
    if st is None:
        return 0
    total = st[1] + st[2]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            child = proc_stat(int(entry))
            if child and child[0] == postmaster:
                total += child[1]
    return total


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} not listening on {port} after {timeout} s")


class Env:
    """The temp dir, who owns it, and every process started, so all of it can be cleaned up."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="krbouncer-harness.")
        self.as_root = os.geteuid() == 0
        # PostgreSQL and PgBouncer refuse to run as root: run them as postgres
        self.run_user = "postgres" if self.as_root else None
        if self.as_root:
            shutil.chown(self.dir, user="postgres")
        self.procs = []

    def spawn(self, argv, logname, **kw):
        logf = open(os.path.join(self.dir, logname), "ab")
        extra = {"user": self.run_user} if self.run_user else {}
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, **extra, **kw)
        self.procs.append(p)
        return p

    def run(self, argv, **kw):
        extra = {"user": self.run_user} if self.run_user else {}
        return subprocess.run(argv, check=True, capture_output=True, text=True, **extra, **kw)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        # owner-only, as an operator keeps users.txt (krbouncer warns about readable ones)
        os.chmod(p, 0o600)
        if self.as_root:
            shutil.chown(p, user="postgres")
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self, keep):
        # SIGINT: PgBouncer's and krbouncer's safe shutdown, PostgreSQL's fast shutdown
        for p in reversed(self.procs):
            self.stop(p, signal.SIGINT)
        if keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def pg_bin_dir():
    for d in ("/usr/lib/postgresql/15/bin",):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    found = sorted(
        (d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int, reverse=True
    ) if os.path.isdir("/usr/lib/postgresql") else []
    if found:
        return f"/usr/lib/postgresql/{found[0]}/bin"
    raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")


def start_postgres(env, extra_settings=None):
    bindir = pg_bin_dir()
    data = env.path("pg")
    env.run([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust"])
    # md5 for TCP (pgbench direct, the poolers' server logins), trust on the socket for setup
    env.write(
        "pg/pg_hba.conf",
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 md5\n",
    )
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": env.dir,
        "max_connections": "300",
        "password_encryption": "md5",
        "synchronous_commit": "off",
        "logging_collector": "off",
    }
    settings.update(extra_settings or {})
    argv = [f"{bindir}/postgres", "-D", data]
    for k, v in settings.items():
        argv += ["-c", f"{k}={v}"]
    proc = env.spawn(argv, "postgres.log")
    wait_port(port, proc, "postgres")
    deadline = time.monotonic() + 30
    psql = ["psql", "-h", env.dir, "-p", str(port), "-U", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    while True:
        try:
            env.run(psql + ["-c", "SELECT 1"])
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    env.run(psql + ["-c", f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'",
                    "-c", f"CREATE DATABASE {DBNAME} OWNER {USER}"])
    log(f"postgres pid {proc.pid} port {port}; pgbench -i -s 10")
    subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-i", "-q", "-s", "10", DBNAME],
        check=True, capture_output=True, env=dict(os.environ, PGPASSWORD=PASSWORD),
    )
    env.run(psql + ["-d", DBNAME, "-c", "VACUUM ANALYZE", "-c", "CHECKPOINT"])
    return proc, port


class Target:
    """One thing pgbench talks to: a pooler process, or PostgreSQL itself (pid None)."""

    def __init__(self, name, port, proc=None, argv=None):
        self.name, self.port, self.proc, self.argv = name, port, proc, argv

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


def pooler_ini(env, name, port, pg_port, max_clients, extra=""):
    """The ini every target gets; `extra` lines are appended (later keys win)."""
    return env.write(
        f"{name}.ini",
        f"""[databases]
{DBNAME} = host=127.0.0.1 port={pg_port} dbname={DBNAME}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {env.path("users.txt")}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = {max_clients}
max_db_connections = 0
max_prepared_statements = 200
log_connections = 0
log_disconnections = 0
logfile = {env.path(name + ".log")}
{extra}""",
    )


def start_pooler(env, name, binary, pg_port, max_clients):
    port = free_port()
    ini = pooler_ini(env, name, port, pg_port, max_clients)
    proc = env.spawn([binary, ini], f"{name}.stdout")
    wait_port(port, proc, name)
    return Target(name, port, proc, [binary, ini])


def restart_pooler(env, t, pg_port, max_clients):
    env.stop(t.proc, signal.SIGINT)
    fresh = start_pooler(env, t.name, t.argv[0], pg_port, max_clients)
    t.port, t.proc = fresh.port, fresh.proc


def find_pgbouncer():
    b = os.environ.get("PGBOUNCER_BIN")
    if b:
        if not os.access(b, os.X_OK):
            raise RuntimeError(f"PGBOUNCER_BIN={b} is not executable")
        return b
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )


def find_krbouncer(build):
    b = os.environ.get("KRBOUNCER_BIN")
    if b:
        return b
    if build:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "krbouncer")


def version_of(binary):
    try:
        out = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------------------------------------
# measuring


class Sample:
    def __init__(self):
        self.txns = 0
        self.tps = []
        self.lat = []
        self.pooler_ticks = 0
        self.pg_ticks = 0
        self.rss_kb = 0
        self.errors = []
        self.idle_kb_per_client = []


def pgbench(t, args, seconds):
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(t.port), "-U", USER, "-n", "-j", "2",
            "-T", str(seconds)] + args + [DBNAME]
    return subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=PASSWORD))


def measure_pgbench(t, pg_pid, args, seconds, sample):
    p0, g0 = (cpu_ticks(t.pid) if t.pid else 0), cluster_ticks(pg_pid)
    out = pgbench(t, args, seconds)
    p1, g1 = (cpu_ticks(t.pid) if t.pid else 0), cluster_ticks(pg_pid)
    text = out.stdout
    txns = re.search(r"number of transactions actually processed: (\d+)", text)
    tps = re.search(r"tps = ([\d.]+)", text)
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    if out.returncode != 0 or not (txns and tps and lat) or (failed and int(failed.group(1))):
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        sample.errors.append(f"rc={out.returncode} {tail}")
        return
    sample.txns += int(txns.group(1))
    sample.tps.append(float(tps.group(1)))
    sample.lat.append(float(lat.group(1)))
    sample.pooler_ticks += p1 - p0
    sample.pg_ticks += g1 - g0
    if t.pid:
        sample.rss_kb = rss_kb(t.pid)


async def md5_login(port, sem):
    """A real client login (startup, md5 password, wait for ReadyForQuery); returns the writer."""
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = f"user\0{USER}\0database\0{DBNAME}\0\0".encode()
        writer.write(struct.pack("!ii", 8 + len(body), 196608) + body)
        while True:
            head = await reader.readexactly(5)
            kind, length = head[:1], struct.unpack("!i", head[1:])[0]
            payload = await reader.readexactly(length - 4)
            if kind == b"R":
                code = struct.unpack("!i", payload[:4])[0]
                if code == 5:
                    inner = hashlib.md5((PASSWORD + USER).encode()).hexdigest().encode()
                    digest = "md5" + hashlib.md5(inner + payload[4:8]).hexdigest()
                    pw = digest.encode() + b"\0"
                    writer.write(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
                elif code == 3:
                    pw = PASSWORD.encode() + b"\0"
                    writer.write(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
                elif code != 0:
                    raise RuntimeError(f"unsupported authentication request {code}")
            elif kind == b"E":
                raise RuntimeError(payload.decode(errors="replace"))
            elif kind == b"Z":
                return writer


async def hold_idle(port, n):
    sem = asyncio.Semaphore(64)  # under listen_backlog (128): no SYN drops and 1 s retries
    t0 = time.monotonic()
    results = await asyncio.gather(*(md5_login(port, sem) for _ in range(n)), return_exceptions=True)
    elapsed = time.monotonic() - t0
    writers = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    return writers, errors, elapsed


async def close_all(writers):
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def settle_rss(pid, timeout=5.0):
    """RSS once it stops moving (the pooler may still be finishing logins or freeing)."""
    last, deadline = rss_kb(pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = rss_kb(pid)
        if now == last:
            return now
        last = now
    return last


def measure_idle(env, t, pg_port, n, max_clients, sample):
    # a fresh process, so earlier workloads' heap does not absorb the clients' memory; one short
    # run first so the pool has its server connections and parameters, as in production
    restart_pooler(env, t, pg_port, max_clients)
    pgbench(t, ["-S", "-c", "4"], 1)
    before = settle_rss(t.pid)
    c0 = cpu_ticks(t.pid)
    loop = asyncio.new_event_loop()  # one loop: the clients' transports belong to it
    try:
        writers, errors, elapsed = loop.run_until_complete(hold_idle(t.port, n))
        c1 = cpu_ticks(t.pid)
        after = settle_rss(t.pid)
        loop.run_until_complete(close_all(writers))
    finally:
        loop.close()
    if errors:
        sample.errors.append(f"{len(errors)} of {n} logins failed: {errors[0]!r}")
    if not writers:
        return
    sample.txns += len(writers)
    sample.tps.append(len(writers) / elapsed)
    sample.lat.append(elapsed * 1000 / len(writers))
    sample.pooler_ticks += c1 - c0
    sample.rss_kb = after
    sample.idle_kb_per_client.append((after - before) / len(writers))


# ---------------------------------------------------------------------------------------------
# the table


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def figures(s):
    """Aggregates of one workload x target: tps, latency, pooler us, pg us, rss, spread."""
    if not s.tps:
        return None
    mean = sum(s.tps) / len(s.tps)
    return {
        "tps": mean,
        "lat": sum(s.lat) / len(s.lat),
        "pooler": s.pooler_ticks * 1e6 / CLK_TCK / s.txns,
        "pg": s.pg_ticks * 1e6 / CLK_TCK / s.txns,
        "rss": (sum(s.idle_kb_per_client) / len(s.idle_kb_per_client)) if s.idle_kb_per_client
        else s.rss_kb,
        "spread": (max(s.tps) - min(s.tps)) / mean * 100 if mean else 0,
    }


def print_table(results, targets, workloads):
    cols = ["workload", "target", "TPS", "xPgB", "xdirect", "spread", "latency ms", "xPgB",
            "xdirect", "pooler us/txn", "xPgB", "PG us/txn", "xPgB", "xdirect", "pooler RSS",
            "xPgB", "errors"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for w in workloads:
        per = {t.name: figures(results[w][t.name]) for t in targets if t.name in results[w]}
        pgb, direct = per.get("pgbouncer"), per.get("direct")
        for t in targets:
            if t.name not in results[w]:
                continue
            s, f = results[w][t.name], per[t.name]
            errs = "; ".join(s.errors)[:120] or "0"
            if f is None:
                print(f"| {w} | {t.name} |" + " - |" * (len(cols) - 3) + f" {errs} |")
                continue
            pooler = f["pooler"] if t.pid else None
            idle = w == "idle"

            def r(key, base):
                return ratio(f[key], base[key]) if base else "-"

            rss = (f"{f['rss']:.2f} KB/client" if idle else f"{f['rss'] / 1024:.1f} MB") if t.pid else "-"
            row = [
                w, t.name, fmt(f["tps"], 0), r("tps", pgb), "-" if idle else r("tps", direct),
                f"{f['spread']:.0f}%", fmt(f["lat"], 3 if idle else 2), r("lat", pgb),
                "-" if idle else r("lat", direct), fmt(pooler),
                ratio(pooler, pgb["pooler"]) if pgb and pooler is not None else "-",
                "-" if idle else fmt(f["pg"]), "-" if idle else r("pg", pgb),
                "-" if idle else r("pg", direct), rss,
                ratio(f["rss"], pgb["rss"]) if pgb and t.pid else "-", errs,
            ]
            print("| " + " | ".join(row) + " |")


# ---------------------------------------------------------------------------------------------


def main():
    ev = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=int(ev("ROUNDS", "3")), help="env ROUNDS (3)")
    ap.add_argument("--duration", type=int, default=int(ev("DURATION", "15")),
                    help="seconds per pgbench run, env DURATION (15)")
    ap.add_argument("--idle-clients", type=int, default=int(ev("IDLE_CLIENTS", "10000")),
                    help="env IDLE_CLIENTS (10000)")
    ap.add_argument("--workloads", default=ev("WORKLOADS", ",".join(WORKLOADS)),
                    help="comma list, env WORKLOADS (all): " + ", ".join(WORKLOADS))
    ap.add_argument("--targets", default=ev("TARGETS", "krbouncer,pgbouncer,direct"),
                    help="comma list, env TARGETS (krbouncer,pgbouncer,direct)")
    ap.add_argument("--variant", action="append", default=[
        v for v in ev("VARIANTS", "").split(",") if v],
        metavar="NAME=BINARY", help="one more krbouncer build as its own target (before/after "
        "comparisons in one run); repeatable, env VARIANTS (comma list)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/krbouncer as is")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, inis)")
    ap.add_argument("--hold", action="store_true",
                    help="start everything, print each target's port and pid, then wait for "
                    "Ctrl-C instead of measuring (for perf / strace by hand)")
    a = ap.parse_args()
    workloads = [w for w in a.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    wanted = [t for t in a.targets.split(",") if t]
    variants = dict(v.split("=", 1) for v in a.variant)
    wanted += [v for v in variants if v not in wanted]

    # every idle client is one fd here and one in the pooler; children inherit the limit
    need = a.idle_clients + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log(f"fd limit {hard} < {need}: idle clients may fail")
    max_clients = a.idle_clients + 500

    env = Env()
    # stop cleanly on Ctrl-C / SIGTERM: the finally below kills what was started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        rows8k = env.write("rows8k.sql", ROWS8K_SQL)
        env.write("users.txt", f'"{USER}" "{PASSWORD}"\n')
        kr = find_krbouncer(not a.no_build) if "krbouncer" in wanted else None
        pgb = find_pgbouncer() if "pgbouncer" in wanted else None
        if "pgbouncer" in wanted and not pgb:
            log("no PgBouncer (set PGBOUNCER_BIN or apt-get install pgbouncer): no comparison")
        pg_proc, pg_port = start_postgres(env)
        targets = []
        for name in wanted:
            if name == "krbouncer":
                targets.append(start_pooler(env, "krbouncer", kr, pg_port, max_clients))
            elif name == "pgbouncer" and pgb:
                targets.append(start_pooler(env, "pgbouncer", pgb, pg_port, max_clients))
            elif name == "direct":
                targets.append(Target("direct", pg_port))
            elif name in variants:
                targets.append(start_pooler(env, name, variants[name], pg_port, max_clients))
        for t in targets:
            pgbench(t, ["-S", "-c", "32"], 2)  # warm-up: fill the pools, the caches
        if a.hold:
            for t in targets:
                print(f"{t.name} port={t.port} pid={t.pid or pg_proc.pid}", flush=True)
            print(f"PGPASSWORD={PASSWORD} pgbench -h 127.0.0.1 -p PORT -U {USER} -n {DBNAME}; "
                  f"temp dir {env.dir}; Ctrl-C ends", flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        print(f"krbouncer harness: {a.rounds} rounds x {a.duration} s, pgbench -j 2, "
              f"transaction pooling, default_pool_size {POOL_SIZE}, md5; idle N = {a.idle_clients}")
        print(f"machine: {os.cpu_count()} x {model}; load average at start "
              f"{os.getloadavg()[0]:.2f}")
        for t in targets:
            if t.pid:
                print(f"{t.name}: {version_of(t.argv[0])} ({t.argv[0]})")
        print()

        results = {w: {} for w in workloads}
        for w in workloads:
            args = WORKLOADS[w][1]
            for rnd in range(a.rounds):
                order = targets[rnd % len(targets):] + targets[: rnd % len(targets)]
                for t in order:
                    if w == "idle" and not t.pid:
                        continue
                    s = results[w].setdefault(t.name, Sample())
                    if w == "idle":
                        measure_idle(env, t, pg_port, a.idle_clients, max_clients, s)
                    else:
                        argv = [x.replace("{rows8k}", rows8k) for x in args]
                        measure_pgbench(t, pg_proc.pid, argv, a.duration, s)
                    last = f"{s.tps[-1]:.0f} tps" if s.tps else "failed"
                    log(f"{w} round {rnd + 1}/{a.rounds} {t.name}: {last}"
                        + (f" ({s.errors[-1]})" if s.errors else ""))
        print_table(results, targets, workloads)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    finally:
        env.cleanup(a.keep)


if __name__ == "__main__":
    main()

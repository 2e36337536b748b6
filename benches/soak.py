#!/usr/bin/env python3
"""soak.py - krbouncer under mixed load for a long time, then a report of what was lost.

Usage (from the repository root; Python 3.9+ standard library only, like harness.py):

    python3 benches/soak.py                    # 30 minutes, 40 clients
    python3 benches/soak.py --minutes 2        # a quick check
    python3 benches/soak.py --help             # every option

What runs, against a throwaway PostgreSQL (harness.py's setup) and krbouncer's release build in
transaction pooling with max_prepared_statements:
  * client tasks that log in (md5), run a random number of requests and leave, again and again.
    Each request carries a token its answer must echo: simple queries (`SELECT 'token'`),
    named prepared statements through Parse/Bind/Execute/Sync (`SELECT $1::text`), and
    long queries cancelled through a CancelRequest on a new connection (the answer must be
    query_canceled, on that client, not another's);
  * `RELOAD` on the admin console every --reload-every seconds;
  * a PostgreSQL restart (`pg_ctl restart -m fast`) every --restart-every seconds, and how long
    after its return the pool answered a new client again;
  * with --server-tls, PostgreSQL serves TLS (a throwaway self-signed certificate) and
    krbouncer logs in with server_tls_sslmode = require;
  * every 10 s a sample of the pooler's RSS and open file descriptors.

The report: requests issued, answered right, answered WRONG (a token that is not the one sent:
another client's answer, or one answered twice), failed with an error (by SQLSTATE and message),
and unaccounted (no answer and no error within --request-timeout: a hang). Then RSS and fds at the
start, lowest, highest and end. A run is clean when nothing is answered wrong, nothing is
unaccounted, and RSS and fds end where they started. Exit status 1 otherwise.
"""

import argparse
import asyncio
import collections
import hashlib
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (same directory: the throwaway PostgreSQL and process helpers)
from harness import DBNAME, PASSWORD, USER, Env, log  # noqa: E402


class Conn:
    """One raw protocol-3 connection: md5 login, then requests; BackendKeyData kept for cancel."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.key = None
        self.prepared = False
        self.closed = False

    @classmethod
    async def login(cls, port, db=DBNAME):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        c = cls(reader, writer)
        body = f"user\0{USER}\0database\0{db}\0\0".encode()
        writer.write(struct.pack("!ii", 8 + len(body), 196608) + body)
        while True:
            kind, payload = await c.read()
            if kind == b"R":
                code = struct.unpack("!i", payload[:4])[0]
                if code == 5:
                    inner = hashlib.md5((PASSWORD + USER).encode()).hexdigest().encode()
                    pw = ("md5" + hashlib.md5(inner + payload[4:8]).hexdigest()).encode() + b"\0"
                    writer.write(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
                elif code != 0:
                    raise RuntimeError(f"authentication request {code}")
            elif kind == b"K":
                c.key = payload
            elif kind == b"E":
                raise ServerError(payload)
            elif kind == b"Z":
                return c

    async def read(self):
        head = await self.r.readexactly(5)
        length = struct.unpack("!i", head[1:])[0]
        return head[:1], await self.r.readexactly(length - 4)

    def send(self, kind, body):
        self.w.write(kind + struct.pack("!i", 4 + len(body)) + body)

    async def result(self):
        """Reads to ReadyForQuery: (first column values, the error if any). A FATAL error
        followed by the pooler closing the connection is returned as the error."""
        values, error = [], None
        while True:
            try:
                kind, payload = await self.read()
            except asyncio.IncompleteReadError:
                if error is None:
                    raise
                self.closed = True
                return values, error
            if kind == b"D":
                n = struct.unpack("!h", payload[:2])[0]
                if n >= 1:
                    ln = struct.unpack("!i", payload[2:6])[0]
                    values.append(payload[6:6 + ln].decode() if ln >= 0 else None)
            elif kind == b"E":
                error = ServerError(payload)
            elif kind == b"Z":
                return values, error

    async def simple(self, sql):
        self.send(b"Q", sql.encode() + b"\0")
        return await self.result()

    async def prepared_echo(self, token):
        if not self.prepared:
            self.send(b"P", b"echo\0SELECT $1::text\0" + struct.pack("!h", 0))
            self.prepared = True
        t = token.encode()
        self.send(b"B", b"\0echo\0" + struct.pack("!hhi", 0, 1, len(t)) + t + struct.pack("!h", 0))
        self.send(b"E", b"\0" + struct.pack("!i", 0))
        self.send(b"S", b"")
        return await self.result()

    def close(self):
        try:
            self.send(b"X", b"")
            self.w.close()
        except Exception:
            pass


class ServerError(Exception):
    def __init__(self, payload):
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[part[:1]] = part[1:].decode(errors="replace")
        self.code, self.message = fields.get(b"C", "?"), fields.get(b"M", "?")
        super().__init__(f"{self.code} {self.message}")


async def send_cancel(port, key):
    _, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(struct.pack("!ii", 16, 80877102) + key)
    await w.drain()
    w.close()


class Tally:
    def __init__(self):
        self.issued = self.right = self.wrong = self.unaccounted = 0
        # cancels that reached a client still waiting for a server: dropped, as in PgBouncer
        self.cancel_missed = 0
        self.errors = collections.Counter()
        self.sessions = self.login_errors = self.reloads = self.restarts = 0
        # seconds from each PostgreSQL restart's return to the first new client served
        self.recoveries = []

    def error(self, e):
        if isinstance(e, ServerError):
            self.errors[f"{e.code} {e.message[:60]}"] += 1
        else:
            self.errors[f"connection: {type(e).__name__}"] += 1


async def one_request(conn, port, wid, seq, t, timeout):
    token = f"w{wid}-{seq}-{random.getrandbits(32):08x}"
    kind = random.choices(["simple", "prepared", "cancel"], [60, 35, 5])[0]
    t.issued += 1

    async def run():
        if kind == "simple":
            return await conn.simple(f"SELECT '{token}'"), token
        if kind == "prepared":
            return await conn.prepared_echo(token), token
        task = asyncio.ensure_future(conn.simple(f"SELECT '{token}', pg_sleep(5)"))
        await asyncio.sleep(random.uniform(0.05, 0.3))
        await send_cancel(port, conn.key)
        return await task, token

    try:
        (values, error), expect = await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        t.unaccounted += 1
        raise
    if error is not None:
        if kind == "cancel" and error.code == "57014":
            t.right += 1
        else:
            t.error(error)
        return
    if values == [expect]:
        t.right += 1
        if kind == "cancel":
            t.cancel_missed += 1
    else:
        t.wrong += 1
        log(f"WRONG answer: sent {token} ({kind}), got {values}")


async def client_loop(port, wid, t, stop, timeout):
    seq = 0
    while not stop.is_set():
        try:
            conn = await asyncio.wait_for(Conn.login(port), timeout)
        except Exception as e:
            t.login_errors += 1
            t.error(e)
            await asyncio.sleep(0.2)
            continue
        t.sessions += 1
        try:
            for _ in range(random.randint(20, 200)):
                if stop.is_set():
                    break
                seq += 1
                await one_request(conn, port, wid, seq, t, timeout)
                if conn.closed:
                    break
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            if not isinstance(e, asyncio.TimeoutError):
                t.error(e)
        finally:
            conn.close()


async def every(seconds, stop, action):
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            await action()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def soak(args, env, port, pid, restart_pg):
    t, stop, samples = Tally(), asyncio.Event(), []

    async def reload():
        try:
            c = await Conn.login(port, db="pgbouncer")
            _, err = await c.simple("RELOAD")
            c.close()
            if err is None:
                t.reloads += 1
            else:
                t.error(err)
        except Exception as e:
            t.error(e)

    async def restart():
        await asyncio.get_running_loop().run_in_executor(None, restart_pg)
        t.restarts += 1
        back = time.monotonic()
        while time.monotonic() - back < 60:
            try:
                c = await asyncio.wait_for(Conn.login(port), 5)
                _, err = await asyncio.wait_for(c.simple("SELECT 1"), 5)
                c.close()
                if err is None:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.05)
        t.recoveries.append(time.monotonic() - back)

    async def sample():
        samples.append((time.monotonic(), harness.rss_kb(pid), fd_count(pid), t.issued))

    await sample()
    tasks = [asyncio.ensure_future(client_loop(port, i, t, stop, args.request_timeout))
             for i in range(args.clients)]
    tasks.append(asyncio.ensure_future(every(args.reload_every, stop, reload)))
    if args.restart_every > 0:
        tasks.append(asyncio.ensure_future(every(args.restart_every, stop, restart)))
    tasks.append(asyncio.ensure_future(every(10, stop, sample)))
    await asyncio.sleep(args.minutes * 60)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # connections are closed: let the pooler settle, then the last sample
    await asyncio.sleep(2)
    await sample()
    return t, samples


def report(t, samples, minutes):
    rss = [s[1] for s in samples]
    fds = [s[2] for s in samples]
    errored = sum(t.errors.values())
    print(f"\n## soak: {minutes} min, {t.sessions} client sessions, {t.reloads} reloads, "
          f"{t.restarts} PostgreSQL restarts\n")
    print("| requests | issued | answered right | answered WRONG | unaccounted (hung) |")
    print("|---|---|---|---|---|")
    print(f"| | {t.issued} | {t.right} | {t.wrong} | {t.unaccounted} |\n")
    print(f"cancels that found their client still queued (dropped, as PgBouncer does): "
          f"{t.cancel_missed}")
    if t.recoveries:
        print("served again after each PostgreSQL restart (s): "
              + ", ".join(f"{r:.2f}" for r in t.recoveries))
    print(f"errors: {errored} ({t.login_errors} at login)")
    for k, v in t.errors.most_common():
        print(f"  {v:8d}  {k}")
    print("\n| | start | after 10 s | lowest | highest | end |\n|---|---|---|---|---|---|")
    w = 1 if len(samples) > 2 else 0
    print(f"| RSS KB | {rss[0]} | {rss[w]} | {min(rss)} | {max(rss)} | {rss[-1]} |")
    print(f"| open fds | {fds[0]} | {fds[w]} | {min(fds)} | {max(fds)} | {fds[-1]} |")
    print("\ntimeline (s, RSS KB, fds, requests so far):")
    t0 = samples[0][0]
    for ts, r, f, n in samples:
        print(f"  {ts - t0:7.0f} {r:8d} {f:6d} {n:10d}")
    # the baseline is the first sample after warm-up (pools filled, code paths touched); at the
    # end the clients are gone but the pool's servers stay: up to pool_size more fds
    warm = samples[1] if len(samples) > 2 else samples[0]
    flat = fds[-1] <= warm[2] and rss[-1] <= warm[1] * 1.2
    clean = t.wrong == 0 and t.unaccounted == 0 and flat
    print(f"\nverdict: {'clean' if clean else 'NOT CLEAN'}")
    return clean


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("MINUTES", 30)))
    p.add_argument("--clients", type=int, default=int(os.environ.get("CLIENTS", 40)))
    p.add_argument("--reload-every", type=float, default=5.0)
    p.add_argument("--restart-every", type=float, default=300.0, help="0: never")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--server-tls", action="store_true",
                   help="PostgreSQL serves TLS; krbouncer uses server_tls_sslmode = require")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()
    env = Env()
    try:
        pg_settings, tls_ini = {}, ""
        if args.server_tls:
            env.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                     "-subj", "/CN=localhost", "-keyout", env.path("server.key"),
                     "-out", env.path("server.crt")])
            os.chmod(env.path("server.key"), 0o600)
            pg_settings = {"ssl": "on", "ssl_cert_file": env.path("server.crt"),
                           "ssl_key_file": env.path("server.key")}
            tls_ini = "server_tls_sslmode = require\n"
        pg_proc, pg_port = harness.start_postgres(env, pg_settings)
        binary = harness.find_krbouncer(build=True)
        port = harness.free_port()
        env.write("users.txt", f'"{USER}" "{PASSWORD}"\n')
        ini = harness.pooler_ini(env, "krbouncer", port, pg_port, args.clients * 2 + 20, extra=(
            f"admin_users = {USER}\nserver_login_retry = 1\nquery_wait_timeout = 20\n{tls_ini}"))
        proc = env.spawn([binary, ini], "krbouncer.stdout")
        harness.wait_port(port, proc, "krbouncer")
        bindir = harness.pg_bin_dir()

        def restart_pg():
            env.run([f"{bindir}/pg_ctl", "-D", env.path("pg"), "-m", "fast", "-w",
                     "-l", env.path("postgres-restarted.log"), "restart"])

        log(f"soak: {args.minutes} min, {args.clients} clients, krbouncer pid {proc.pid}"
            f"{', server TLS' if args.server_tls else ''}")
        t, samples = asyncio.run(soak(args, env, port, proc.pid, restart_pg))
        clean = report(t, samples, args.minutes)
        if t.restarts:
            env.run([f"{bindir}/pg_ctl", "-D", env.path("pg"), "-m", "fast", "-w", "stop"])
    finally:
        env.cleanup(args.keep)
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""record_seeds.py - seed corpora for the fuzz targets, taken from real sessions.

Usage (from the repository root; Python 3 standard library; PostgreSQL 15, psql, pgbench):

    python3 fuzz/record_seeds.py          # rewrites fuzz/seeds/<target>/*

A throwaway PostgreSQL (benches/harness.py's) is put behind a recording TCP proxy; psql (md5 and
SCRAM logins, simple queries, COPY) and pgbench (-M simple / extended / prepared) run through it.
Each connection's bytes are split into what each target reads: the client's first packet
(startup_packet), its login messages (frontend_login_messages), the server's login answers
(server_login), the server's messages after login (message_framing), both directions
interleaved with a direction byte (link_watcher), the SCRAM exchange (scram_server). The
config targets get the repository's example configs. `cargo fuzz run <target> fuzz/seeds/<target>`
starts from them (fuzz/README.md).
"""

import asyncio
import os
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import harness  # noqa: E402

SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def messages(stream, tagged=True):
    """Splits a byte stream into whole protocol messages (tag + length + body)."""
    out, i = [], 0
    while i + (5 if tagged else 4) <= len(stream):
        if tagged:
            n = struct.unpack("!i", stream[i + 1:i + 5])[0] + 1
        else:
            n = struct.unpack("!i", stream[i:i + 4])[0]
        if n < 4 or i + n > len(stream):
            break
        out.append(stream[i:i + n])
        i += n
    return out


class Recorder:
    def __init__(self, target_port):
        self.target_port, self.sessions = target_port, []

    async def handle(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        chunks = []  # (direction, bytes): 0 client->server, 1 server->client
        self.sessions.append(chunks)

        async def pipe(r, w, d):
            while data := await r.read(65536):
                chunks.append((d, data))
                w.write(data)
                await w.drain()
            w.close()

        await asyncio.gather(pipe(creader, swriter, 0), pipe(sreader, cwriter, 1),
                             return_exceptions=True)


def split_session(chunks):
    client = b"".join(c for d, c in chunks if d == 0)
    server = b"".join(c for d, c in chunks if d == 1)
    if len(client) < 8:
        return None
    if client[:8] == struct.pack("!ii", 8, 80877103):
        # SSLRequest (sslmode=prefer) answered 'N': the real startup packet follows
        client, server = client[8:], server[1:]
    first_len = struct.unpack("!i", client[:4])[0]
    startup, client_rest = client[:first_len], client[first_len:]
    server_msgs = messages(server)
    login_end = next((i for i, m in enumerate(server_msgs) if m[:1] == b"Z"), len(server_msgs))
    client_msgs = messages(client_rest)
    login_msgs = [m for m in client_msgs if m[:1] == b"p"]
    after = [m for m in client_msgs if m[:1] != b"p"]
    return {
        "startup": startup,
        "login": login_msgs,
        "server_login": b"".join(server_msgs[:login_end + 1]),
        "server_after": b"".join(server_msgs[login_end + 1:]),
        # the watcher sees requests then answers; a coarse but real interleaving
        "linked": b"".join(b"\0" + m for m in after) + b"".join(b"\1" + m for m in server_msgs[login_end + 1:]),
    }


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


async def record(env, pg_port):
    rec = Recorder(pg_port)
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pw = dict(os.environ, PGPASSWORD=harness.PASSWORD)
    base = ["-h", "127.0.0.1", "-p", str(port), "-U", harness.USER]

    async def run(argv, env_=pw):
        p = await asyncio.create_subprocess_exec(*argv, env=env_, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)
        await p.wait()

    runs = [
        ("psql-simple", ["psql", *base, "-d", harness.DBNAME, "-c",
                         "SELECT 1; SET TimeZone = 'UTC'; SELECT now(); BEGIN; SELECT 2; COMMIT"]),
        ("psql-error", ["psql", *base, "-d", harness.DBNAME, "-c", "SELECT nosuchcolumn"]),
        ("psql-copy", ["psql", *base, "-d", harness.DBNAME, "-c",
                       "COPY (SELECT g FROM generate_series(1, 20) g) TO STDOUT"]),
        ("pgbench-extended", ["pgbench", *base, "-n", "-S", "-t", "3", "-M", "extended", harness.DBNAME]),
        ("pgbench-prepared", ["pgbench", *base, "-n", "-S", "-t", "3", "-M", "prepared", harness.DBNAME]),
        ("pgbench-tpcb", ["pgbench", *base, "-n", "-t", "2", harness.DBNAME]),
        ("psql-scram", ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "scram_seed", "-d",
                        harness.DBNAME, "-c", "SELECT 3"], dict(os.environ, PGPASSWORD="scram-pw")),
    ]
    names = []
    for name, argv, *e in runs:
        before = len(rec.sessions)
        await run(argv, *(e or [pw]))
        names += [name] * (len(rec.sessions) - before)
    server.close()
    await asyncio.sleep(0.2)
    return list(zip(names, rec.sessions))


def main():
    env = harness.Env()
    try:
        _, pg_port = harness.start_postgres(env)
        psql = ["psql", "-h", env.dir, "-p", str(pg_port), "-U", "postgres", "-X", "-q"]
        env.run(psql + ["-c", "SET password_encryption = 'scram-sha-256'",
                        "-c", "CREATE ROLE scram_seed LOGIN PASSWORD 'scram-pw'",
                        "-c", f"GRANT ALL ON DATABASE {harness.DBNAME} TO scram_seed"])
        env.run(["sh", "-c", f"sed -i 's/^host all all 127.0.0.1\\/32 md5/host all scram_seed 127.0.0.1\\/32 scram-sha-256\\nhost all all 127.0.0.1\\/32 md5/' {env.path('pg/pg_hba.conf')}"])
        env.run(psql + ["-c", "SELECT pg_reload_conf()"])
        sessions = asyncio.run(record(env, pg_port))
    finally:
        env.cleanup(keep=False)
    shutil.rmtree(SEEDS, ignore_errors=True)
    for i, (name, chunks) in enumerate(sessions):
        parts = split_session(chunks)
        if not parts:
            continue
        tag = f"{name}-{i}"
        write("startup_packet", tag, parts["startup"])
        for j, m in enumerate(parts["login"]):
            write("frontend_login_messages", f"{tag}-{j}", m)
        write("server_login", tag, parts["server_login"])
        write("message_framing", tag, parts["server_after"])
        write("link_watcher", tag, parts["linked"])
        if name == "psql-scram" and len(parts["login"]) >= 2:
            first = messages(parts["login"][0])[0][5:]
            # SASLInitialResponse body: mechanism\0, int32 length, client-first
            mech_end = first.index(b"\0")
            client_first = first[mech_end + 5:]
            client_final = parts["login"][1][5:]
            write("scram_server", tag, client_first + b"\xff" + client_final)
    for cmd in ["SHOW POOLS", "SHOW STATS_TOTALS", "PAUSE db", "KILL_CLIENT 7", "SET default_pool_size = 5",
                "SHUTDOWN WAIT_FOR_CLIENTS", "select * from pgbouncer.pools", "RELOAD;"]:
        write("admin_command", cmd.split()[0].lower() + str(len(cmd)), cmd.encode())
    examples = os.path.join(ROOT, "deploy", "examples")
    for f in sorted(os.listdir(examples)):
        data = open(os.path.join(examples, f), "rb").read()
        if f.endswith(".ini"):
            write("config_ini", f, data)
        elif f.endswith("users.txt"):
            write("users_txt", f, data)
    # GSSENC: a length word and a CFX wrap token header (sealed flag set), as a server sends
    write("gssenc_packets", "cfx-sealed", struct.pack("!I", 20) + bytes([0x05, 0x04, 0x02, 0xff]) + bytes(16))
    count = sum(len(fs) for _, _, fs in os.walk(SEEDS))
    print(f"wrote {count} seed files under {SEEDS}")


if __name__ == "__main__":
    main()

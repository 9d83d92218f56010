"""Where to keep presence (claim C18): write capacity of a database table vs TTL keys.

Measures, on this machine, the rate of one presence heartbeat write done the two ways:

* database: ``UPDATE presence SET last_seen = ? WHERE client = ?``, one transaction each, in
  SQLite (WAL, ``synchronous=FULL``, so every commit waits for the disk like a primary
  database with durable commits); also with ``synchronous=OFF`` to show the disk's share;
* TTL store: Redis ``SET presence:<client> 1 EX 60`` from one client, one round trip each,
  and pipelined 100 at a time.

The figures feed the defaults ``db_commits_per_s`` / ``ttl_ops_per_s`` of
:class:`rtsim.sim.presence.PresenceParams`. Results: ``benchmarks/results/presence_store.json``.

    .venv/bin/python benchmarks/bench_presence_store.py
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1000
N = 3000


def bench_sqlite(synchronous: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        con = sqlite3.connect(os.path.join(d, "presence.db"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute("CREATE TABLE presence (client TEXT PRIMARY KEY, doc TEXT, last_seen REAL)")
        con.executemany(
            "INSERT INTO presence VALUES (?, ?, ?)", [(f"u{i}", "doc", 0.0) for i in range(ROWS)]
        )
        t0 = time.perf_counter()
        for i in range(N):
            con.execute("BEGIN")
            con.execute(
                "UPDATE presence SET last_seen = ? WHERE client = ?", (float(i), f"u{i % ROWS}")
            )
            con.execute("COMMIT")
        rate = N / (time.perf_counter() - t0)
        con.close()
    return rate


def bench_redis(pipeline: int) -> float | None:
    try:
        import redis

        r = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
        r.ping()
    except Exception as exc:  # no server: report it, do not fail the suite
        print(f"redis: not available ({exc})")
        return None
    key = "rtsim:bench:presence:"
    t0 = time.perf_counter()
    if pipeline == 1:
        for i in range(N):
            r.set(f"{key}{i % ROWS}", "1", ex=60)
    else:
        for start in range(0, N * 10, pipeline):
            pipe = r.pipeline(transaction=False)
            for i in range(start, start + pipeline):
                pipe.set(f"{key}{i % ROWS}", "1", ex=60)
            pipe.execute()
    n = N if pipeline == 1 else N * 10
    rate = n / (time.perf_counter() - t0)
    r.delete(*[f"{key}{i}" for i in range(ROWS)])
    r.close()
    return rate


def main() -> None:
    results = {
        "sqlite_wal_full_commits_per_s": bench_sqlite("FULL"),
        "sqlite_wal_off_commits_per_s": bench_sqlite("OFF"),
        "redis_set_ex_per_s": bench_redis(1),
        "redis_set_ex_pipelined_per_s": bench_redis(100),
    }
    for k, v in results.items():
        print(f"{k:34s} {v:>12,.0f}" if v is not None else f"{k:34s} n/a")
    out = {
        "results": results,
        "machine": {
            "uname": " ".join(platform.uname()),
            "nproc": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "command": ".venv/bin/python benchmarks/bench_presence_store.py",
        "rows": ROWS,
        "writes": N,
    }
    path = Path(__file__).parent / "results" / "presence_store.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""What pgshift's per-migration statements cost, and what a leaner sequence would save.

    .venv/bin/python bench/runner/roundtrips.py [--count 500] [--repeat 3]

Replays, with plain psycopg on an embedded PostgreSQL, the statements pgshift 0.1 sends for
each small transactional migration (ledger INSERT, BEGIN, two SET LOCAL, the DDL, COMMIT,
ledger UPDATE, events INSERT: 8 round trips, 4 commits) against a proposed sequence that
writes the ledger inside the migration's own transaction (BEGIN, one set_config SELECT, the
DDL, one ledger+event statement, COMMIT: 5 round trips, 1 commit), and against the bare DDL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
from run import harness  # loads harness.py under its own module name

LEDGER = """
CREATE TABLE ledger (version text PRIMARY KEY, status text, started_at timestamptz, finished_at timestamptz);
CREATE TABLE events (id bigserial PRIMARY KEY, version text, event text, detail jsonb);
"""

Conn = psycopg.Connection[Any]


def ddl(i: int) -> sql.Composed:
    return sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(sql.Identifier(f"t_{i}"))


def current(conn: Conn, i: int) -> None:
    v = f"{i:05d}"
    conn.execute("INSERT INTO ledger VALUES (%s, 'running', clock_timestamp(), NULL)", (v,))
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '2s'")
        conn.execute("SET LOCAL statement_timeout = '0'")
        conn.execute(ddl(i))
    conn.execute("UPDATE ledger SET status = 'applied', finished_at = clock_timestamp() WHERE version = %s",
                 (v,))
    conn.execute("INSERT INTO events (version, event, detail) VALUES (%s, 'applied', '{}')", (v,))


def proposed(conn: Conn, i: int) -> None:
    v = f"{i:05d}"
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', '2s', true), "
                     "set_config('statement_timeout', '0', true)")
        conn.execute(ddl(i))
        conn.execute(
            "WITH l AS (INSERT INTO ledger VALUES (%s, 'applied', statement_timestamp(), clock_timestamp())) "
            "INSERT INTO events (version, event, detail) VALUES (%s, 'applied', '{}')", (v, v),
        )


def bare(conn: Conn, i: int) -> None:
    with conn.transaction():
        conn.execute(ddl(i))


SEQUENCES: dict[str, Callable[[Conn, int], None]] = {
    "pgshift 0.1 (8 round trips, 4 commits)": current,
    "proposed (5 round trips, 1 commit)": proposed,
    "DDL only (3 round trips, 1 commit)": bare,
}


def time_one(server: Any, step: Callable[[Conn, int], None], count: int) -> float:
    db = server.create()
    try:
        with psycopg.connect(server.dsn_for(db), autocommit=True) as conn:
            conn.execute(LEDGER)
            started = time.perf_counter()
            for i in range(1, count + 1):
                step(conn, i)
            return time.perf_counter() - started
    finally:
        server.drop(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from pgshift.embedded import EmbeddedCluster

    with tempfile.TemporaryDirectory(prefix="pgshift-roundtrips-") as tmp:
        cluster = EmbeddedCluster(Path(tmp) / "pg")
        cluster.start(tcp=False)
        try:
            server = harness.Server(cluster.socket_dsn("postgres"))
            times: dict[str, list[float]] = {name: [] for name in SEQUENCES}
            for _ in range(args.repeat):  # interleaved rounds
                for name, step in SEQUENCES.items():
                    times[name].append(time_one(server, step, args.count))
        finally:
            cluster.destroy()
    print(f"{'sequence per migration':<42} {'median s':>9} {'best s':>8} {'migr/s (median)':>16}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<42} {med:>9.3f} {min(values):>8.3f} {args.count / med:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

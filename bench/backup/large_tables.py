"""Benchmark: `backup verify --restore-test` with several large tables with primary keys (#17).

    .venv/bin/python bench/backup/large_tables.py --tables 4 --rows 200000 --repeat 4 [--json PATH]

Every table is over `backup.hash_max_mb` (1 MB), so the restore-test reads each one back byte for
byte beside the post-data restore, whose `ADD CONSTRAINT ... PRIMARY KEY` needs each table
exclusively. Compares, in interleaved rounds, a plain pg_restore into a new database with the
restore-test, and reports the seconds pg_restore (post-data) and pg_dump (the read) spent waiting
for a lock. CPU s is this process and its children (pg_dump, pg_restore), not the server; the load
average is printed. Against another revision: run it again with PYTHONPATH=<that checkout>/src.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from run import CPU, on_own_cluster, timed

from pgshift.config import BackupSettings, Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.safety import take_backup, verify_backup
from pgshift.safety.manifest import LARGE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures here, for machines")
    args = parser.parse_args()
    on_own_cluster("pgshift-bench-large-", lambda cluster, root: run(cluster, root, args))


def run(cluster: EmbeddedCluster, root: Path, args: argparse.Namespace) -> None:
    bindir = cluster.bindir
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    url = cluster.socket_dsn("bench")
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(args.tables):
            table = sql.Identifier(f"big_{i}")
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, owner text NOT NULL, amount numeric, "
                                 "at timestamptz)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, md5(g::text), g * 1.5, "
                                 "'2024-01-01'::timestamptz + g * interval '1 minute' "
                                 "FROM generate_series(1, %s) g").format(table), (args.rows,))
        size = int(conn.execute("SELECT pg_database_size('bench')").fetchone()[0])  # type: ignore[index]
    settings = Settings(database_url=url, base_dir=root, backup=BackupSettings(
        directory=str(root / "out"), pg_bindir=str(bindir), hash_max_mb=1))
    backup = take_backup(settings, url, fmt="custom").backup  # as users make it: verified, digests recorded
    assert sum(t.check in LARGE for t in backup.manifest.tables) == args.tables
    archive = backup.path / backup.manifest.dump

    def plain_restore() -> object:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE plain_restore")
            try:
                subprocess.run([str(bindir / "pg_restore"), f"--dbname={cluster.socket_dsn('plain_restore')}",
                                "--exit-on-error", "--no-owner", "--no-privileges", str(archive)], check=True)
            finally:
                admin.execute("DROP DATABASE plain_restore")
        return None

    waits: dict[str, list[float]] = {}

    def restore_test() -> object:
        done = threading.Event()
        waited = {"pg_restore": 0.0, "pg_dump": 0.0}

        def sample() -> None:
            # Seconds a session of pg_restore (post-data) or pg_dump (the read) spends waiting for a lock.
            with psycopg.connect(url, autocommit=True) as watcher:
                while not done.wait(0.02):
                    for (app,) in watcher.execute(
                            "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND application_name IN ('pg_restore', 'pg_dump')").fetchall():
                        waited[app] += 0.02

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            report = verify_backup(backup.path, full=True, url=url, record=False)
        finally:
            done.set()
            sampler.join()
        for app, seconds in waited.items():
            waits.setdefault(app, []).append(seconds)
        assert report.ok, report.problems
        return report

    variants: dict[str, Callable[[], object]] = {
        "pg_restore into a new database": plain_restore,
        "--restore-test": restore_test,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for name, fn in variants.items():
            times[name].append(timed(fn, name))
        loads.append(os.getloadavg()[0])
    print(f"\n{args.tables} tables x {args.rows} rows, {size / 1e6:.0f} MB; {args.repeat} interleaved rounds; "
          f"load average (1 min) per round: {', '.join(f'{x:.1f}' for x in loads)}\n")
    print("| variant | best s | median s | CPU s (median) | rounds s |\n|---|---:|---:|---:|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | "
              f"{statistics.median(CPU[name]):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    base = times["pg_restore into a new database"]
    ratios: dict[str, float] = {}
    for name, values in list(times.items())[1:]:
        ratios[name] = statistics.median(a / b for a, b in zip(values, base, strict=True))
        print(f"- {name} / pg_restore, paired median: {ratios[name]:.2f}x")
    for name, values in waits.items():
        print(f"- lock waits of {name}: median {statistics.median(values):.2f} s, rounds "
              + ", ".join(f"{v:.2f}" for v in values))
    if args.json:
        args.json.write_text(json.dumps({
            "tables": args.tables, "rows": args.rows, "bytes": size, "load": loads,
            "seconds": {name: values for name, values in times.items()},
            "cpu_s": {name: CPU[name] for name in times}, "paired_ratio": ratios, "lock_waits_s": waits}, indent=2))


if __name__ == "__main__":
    main()

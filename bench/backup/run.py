"""Benchmark: `pgshift backup` against plain pg_dump, custom vs directory -j2, full verify.

    .venv/bin/python bench/backup/run.py --scale 70      # ~1 GB pgbench database (the real figure)
    .venv/bin/python bench/backup/run.py --scale 5       # quick run

Starts its own throwaway cluster (pgshift.embedded), fills it with `pgbench -i -s SCALE`, then
times each variant --repeat times, interleaved so that background noise hits both sides, and
reports the best and the median time of each, and for each pair the median of the per-round
ratios. MB/s is the database size (pg_database_size) over the time. CPU s is the median CPU time
of this process and its children (pg_dump, pg_restore; not the server), the figure that a shared
machine's load disturbs least; the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgshift.config import BackupSettings, Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.safety import take_backup, verify_backup

CPU: dict[str, list[float]] = {}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object], name: str = "") -> float:
    cpu = _cpu()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    CPU.setdefault(name, []).append(_cpu() - cpu)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--indexes", action="store_true",
                        help="add two secondary indexes and a foreign key to pgbench_accounts (post-data work that "
                             "--restore-test's row checks can overlap; a primary key cannot be, it locks the table)")
    parser.add_argument("--only", default=None, help="run only the variants whose name matches this regex")
    parser.add_argument("--incompressible", type=int, default=0, metavar="MB",
                        help="instead of pgbench, a table of about MB megabytes of random bytea rows (the case "
                             "#17 measured: pg_dump's compression works hard, the archive is as large as the data)")
    parser.add_argument("--restore-jobs", type=int, default=1,
                        help="also run pg_restore and --restore-test with this many jobs (backup.jobs)")
    args = parser.parse_args()
    if args.incompressible and args.indexes:
        parser.error("--indexes adds indexes to pgbench_accounts, which --incompressible does not create")
    on_own_cluster("pgshift-bench-backup-", lambda cluster, root: run(cluster, root, args))


def on_own_cluster(prefix: str, body: Callable[[EmbeddedCluster, Path], None]) -> None:
    """Run ``body`` on a throwaway cluster in a temporary folder, both removed after it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = EmbeddedCluster(root / "cluster")
    cluster.start(tcp=True)
    try:
        body(cluster, root)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def fill_incompressible(url: str, megabytes: int) -> None:
    """Rows of 1,024 random-looking bytes (16 SHA-512 digests each), under the TOAST threshold, so
    neither pglz nor pg_dump's zlib can shrink them."""
    rows = megabytes * 1_000_000 // 1100
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE blobs (id bigint PRIMARY KEY, payload bytea NOT NULL)")
        conn.execute(sql.SQL("INSERT INTO blobs SELECT g, (SELECT string_agg(sha512(int8send(g * 16 + k)), ''::bytea) "
                             "FROM generate_series(0, 15) AS k) FROM generate_series(1, {}) AS g").format(
                                 sql.Literal(rows)))
        conn.execute("VACUUM ANALYZE blobs")


def run(cluster: EmbeddedCluster, root: Path, args: argparse.Namespace) -> None:
    bindir = cluster.bindir
    admin = cluster.socket_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    url = cluster.socket_dsn("bench")
    if args.incompressible:
        t_init = timed(lambda: fill_incompressible(url, args.incompressible))
        what = f"{args.incompressible} MB of random bytea"
    else:
        t_init = timed(lambda: subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale),
                                               url], check=True, capture_output=True))
        what = f"pgbench scale {args.scale}"
    with psycopg.connect(url, autocommit=True) as conn:
        if args.indexes:
            conn.execute("CREATE INDEX ON pgbench_accounts (bid, abalance)")
            conn.execute("CREATE INDEX ON pgbench_accounts (abalance)")
            conn.execute("ALTER TABLE pgbench_accounts ADD FOREIGN KEY (bid) REFERENCES pgbench_branches")
        size = int(conn.execute("SELECT pg_database_size('bench')").fetchone()[0])  # type: ignore[index]
    mb = size / 1e6
    print(f"{what}: {mb:.0f} MB in {t_init:.1f}s", file=sys.stderr)
    out = root / "out"
    settings = Settings(database_url=url, base_dir=root,
                        backup=BackupSettings(directory=str(out / "pgshift"), pg_bindir=str(bindir)))

    def plain(fmt: str, jobs: int) -> Callable[[], object]:
        def go() -> object:
            target = out / f"plain-{time.monotonic_ns()}"
            argv = [str(bindir / "pg_dump"), f"--dbname={url}", f"--file={target}", f"--format={fmt}"]
            argv += [f"--jobs={jobs}"] if jobs > 1 else []
            return subprocess.run(argv, check=True)
        return go

    backups: dict[str, Path] = {}

    def configured(**backup: Any) -> Settings:
        return Settings(database_url=url, base_dir=root,
                        backup=BackupSettings(directory=str(out / "pgshift"), pg_bindir=str(bindir), **backup))

    def ours(fmt: str, jobs: int, verify: bool, chosen: Settings = settings) -> Callable[[], object]:
        def go() -> object:
            result = take_backup(chosen, url, fmt=fmt, jobs=jobs, verify=verify)
            backups[fmt] = result.backup.path
            return result
        return go

    default_mb = BackupSettings().hash_max_mb
    variants = {
        "pg_dump -Fc": plain("custom", 1),
        f"pgshift backup (custom, default: hash up to {default_mb} MB, larger read once; no verify)": ours(
            "custom", 1, False),
        "pgshift backup (custom, default + quick verify)": ours("custom", 1, True),
        "pgshift backup (custom, large tables also counted on the server)": ours(
            "custom", 1, False, configured(large_tables="count")),
        "pgshift backup (custom, content hash of every table)": ours("custom", 1, False,
                                                                     configured(hash_max_mb=1 << 30)),
        "pg_dump -Fd -j2": plain("directory", 2),
        "pgshift backup (directory -j2, default, no verify)": ours("directory", 2, False),
    }
    def wanted(name: str) -> bool:
        return args.only is None or re.search(args.only, name) is not None

    print(f"load average at the start: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    times: dict[str, list[float]] = {name: [] for name in variants if wanted(name)}
    out.mkdir()
    for _ in range(args.repeat):
        for name, fn in variants.items():
            if not wanted(name):
                continue
            times[name].append(timed(fn, name))
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
    # As users make it: with the quick verification, whose read-back --restore-test builds on.
    backup = take_backup(settings, url, fmt="custom").backup
    archive = backup.path / backup.manifest.dump

    def plain_restore(jobs: int) -> Callable[[], object]:
        # What --restore-test is measured against: a new database, pg_restore into it, drop it.
        def go() -> object:
            name = f"plain_restore_{time.monotonic_ns()}"
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                try:
                    subprocess.run([str(bindir / "pg_restore"), f"--dbname={cluster.socket_dsn(name)}",
                                    "--exit-on-error", "--no-owner", "--no-privileges",
                                    *([f"--jobs={jobs}"] if jobs > 1 else []), str(archive)], check=True)
                finally:
                    admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            return None
        return go

    verifies = {"pg_restore into a new database": plain_restore(1),
                "backup verify (quick)": lambda: verify_backup(backup.path, full=False, record=False),
                "backup verify --restore-test (full)": lambda: verify_backup(backup.path, full=True, url=url,
                                                                              record=False)}
    if args.restore_jobs > 1:
        verifies[f"pg_restore -j{args.restore_jobs} into a new database"] = plain_restore(args.restore_jobs)
        verifies[f"backup verify --restore-test (full, backup.jobs = {args.restore_jobs})"] = \
            lambda: verify_backup(backup.path, full=True, url=url, record=False, jobs=args.restore_jobs)
    verifies = {name: fn for name, fn in verifies.items() if wanted(name)}
    for name in verifies:
        times[name] = []
    for _ in range(args.repeat):
        for name, fn in verifies.items():
            times[name].append(timed(fn, name))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"variant": k, "best": round(best[k], 2), "median": round(median[k], 2), "MB/s": round(mb / best[k], 1),
             "cpu": round(statistics.median(CPU[k]), 2)} for k in times]
    print(f"\ndatabase: {what}, {mb:.0f} MB; {args.repeat} interleaved rounds\n")
    print("| variant | best s | median s | MB/s (best) | CPU s (median) |\n|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['best']:.2f} | {row['median']:.2f} | {row['MB/s']:.1f} | {row['cpu']:.2f} |")
    names = list(variants)
    pairs = {"custom, default": (names[1], names[0]), "custom, default + quick verify": (names[2], names[0]),
             "custom, large tables counted on the server": (names[3], names[0]),
             "custom, every table hashed": (names[4], names[0]), "directory -j2, default": (names[6], names[5]),
             "verify --restore-test, against pg_restore": ("backup verify --restore-test (full)",
                                                           "pg_restore into a new database")}
    if args.restore_jobs > 1:
        pairs[f"verify --restore-test -j{args.restore_jobs}, against pg_restore -j{args.restore_jobs}"] = (
            f"backup verify --restore-test (full, backup.jobs = {args.restore_jobs})",
            f"pg_restore -j{args.restore_jobs} into a new database")
    pairs = {label: pair for label, pair in pairs.items() if all(side in times for side in pair)}
    # Paired: each round runs both sides back to back, so the ratio within a round cancels the
    # machine's slow drifts; its median is the steadiest figure on a noisy VM.
    overhead = {label: {"best": best[a] / best[b] - 1, "median": median[a] / median[b] - 1,
                        "paired_median": statistics.median(
                            x / y for x, y in zip(times[a], times[b], strict=True)) - 1}
                for label, (a, b) in pairs.items()}
    print("\noverhead of pgshift backup over pg_dump in the same format (best / median / median of paired rounds):")
    for label, figures in overhead.items():
        print(f"- {label}: {figures['best']:+.1%} / {figures['median']:+.1%} / {figures['paired_median']:+.1%}")
    if args.json:
        args.json.write_text(json.dumps({"database": what, "scale": args.scale, "database_mb": round(mb), "rows": rows,
                                         "overhead": overhead}, indent=2))


if __name__ == "__main__":
    main()

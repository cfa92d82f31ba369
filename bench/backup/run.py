"""Benchmark: `pgshift backup` against plain pg_dump, custom vs directory -j2, full verify.

    .venv/bin/python bench/backup/run.py --scale 70      # ~1 GB pgbench database (the real figure)
    .venv/bin/python bench/backup/run.py --scale 5       # quick run

Starts its own throwaway cluster (pgshift.embedded), fills it with `pgbench -i -s SCALE`, then
times each variant --repeat times, interleaved so that background noise hits both sides, and
reports the best time of each. MB/s is the database size (pg_database_size) over the time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pgshift.config import BackupSettings, Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.safety import take_backup, verify_backup


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pgshift-bench-backup-"))
    cluster = EmbeddedCluster(root / "cluster")
    cluster.start(tcp=True)
    try:
        run(cluster, root, args)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def run(cluster: EmbeddedCluster, root: Path, args: argparse.Namespace) -> None:
    bindir = cluster.bindir
    admin = cluster.socket_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    url = cluster.socket_dsn("bench")
    t_init = timed(lambda: subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale),
                                           url], check=True, capture_output=True))
    with psycopg.connect(url) as conn:
        size = int(conn.execute("SELECT pg_database_size('bench')").fetchone()[0])  # type: ignore[index]
    mb = size / 1e6
    print(f"pgbench -i -s {args.scale}: {mb:.0f} MB in {t_init:.1f}s", file=sys.stderr)
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

    counts_only = Settings(database_url=url, base_dir=root,
                           backup=BackupSettings(directory=str(out / "pgshift"), pg_bindir=str(bindir),
                                                 hash_max_mb=0))

    def ours(fmt: str, jobs: int, verify: bool, hashes: bool = True) -> Callable[[], object]:
        def go() -> object:
            result = take_backup(settings if hashes else counts_only, url, fmt=fmt, jobs=jobs, verify=verify)
            backups[fmt] = result.backup.path
            return result
        return go

    variants = {
        "pg_dump -Fc": plain("custom", 1),
        "pgshift backup (custom, no verify)": ours("custom", 1, False),
        "pgshift backup (custom, counts only: hash_max_mb = 0)": ours("custom", 1, False, hashes=False),
        "pgshift backup (custom, + quick verify)": ours("custom", 1, True),
        "pg_dump -Fd -j2": plain("directory", 2),
        "pgshift backup (directory -j2, no verify)": ours("directory", 2, False),
    }
    best: dict[str, float] = {}
    out.mkdir()
    for _ in range(args.repeat):
        for name, fn in variants.items():
            seconds = timed(fn)
            best[name] = min(best.get(name, seconds), seconds)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
    backup = take_backup(settings, url, fmt="custom", verify=False).backup
    best["backup verify (quick)"] = timed(lambda: verify_backup(backup.path, full=False))
    best["backup verify --restore-test (full)"] = timed(lambda: verify_backup(backup.path, full=True, url=url))
    rows = [{"variant": k, "seconds": round(v, 2), "MB/s": round(mb / v, 1)} for k, v in best.items()]
    overhead_c = best["pgshift backup (custom, no verify)"] / best["pg_dump -Fc"] - 1
    overhead_d = best["pgshift backup (directory -j2, no verify)"] / best["pg_dump -Fd -j2"] - 1
    print(f"\ndatabase: pgbench scale {args.scale}, {mb:.0f} MB; best of {args.repeat}\n")
    print("| variant | seconds | MB/s |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['seconds']:.2f} | {row['MB/s']:.1f} |")
    overhead_n = best["pgshift backup (custom, counts only: hash_max_mb = 0)"] / best["pg_dump -Fc"] - 1
    print(f"\noverhead of pgshift backup over pg_dump, same format: custom {overhead_c:+.1%} "
          f"(counts only {overhead_n:+.1%}), directory -j2 {overhead_d:+.1%}")
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "database_mb": round(mb), "rows": rows,
                                         "overhead_custom": overhead_c, "overhead_directory": overhead_d},
                                        indent=2))


if __name__ == "__main__":
    main()

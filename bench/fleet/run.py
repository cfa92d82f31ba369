"""The fleet bench: N databases x M migrations with `--targets`, sequential against parallel.

    .venv/bin/python bench/fleet/run.py [--databases 200] [--migrations 20] [--parallel 8]

Starts its own embedded PostgreSQL (or uses --admin-dsn), creates the databases from template0 and
migrates them through ``pgshift.api.migrate_targets`` (the library `pgshift migrate --targets`
calls): once with ``targets.parallel = 1``, once with ``--parallel`` threads, and once as
``--parallel`` separate `pgshift migrate --targets` processes, each on fresh databases; then a
rerun with nothing pending (what a resumed or repeated rollout costs per finished target). It
prints wall time, speed-up, per-target cost and the client's CPU side by side, and the fleet's own
overhead per target: a sequential fleet run's time per target minus one plain ``api.migrate`` of the
same migrations. Figures go to bench/results/fleet-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    mode: str
    targets: int
    wall_s: float
    cpu_s: float  # the client's user+system time (threads included; child processes for "processes")
    applied: int
    wal_bytes: int = 0  # WAL the server wrote during the run

    @property
    def per_target_ms(self) -> float:
        return 1000 * self.wall_s / self.targets

    def row(self, baseline: Run | None) -> str:
        speed_up = f"{baseline.wall_s / self.wall_s:.2f}x" if baseline else "-"
        wal_kb = self.wal_bytes / self.targets / 1024
        return (f"{self.mode:<22} {self.targets:>7} {self.applied:>8} {self.wall_s:>8.2f} {self.per_target_ms:>11.1f} "
                f"{1000 * self.cpu_s / self.targets:>13.1f} {wal_kb:>12.0f} {speed_up:>8}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--databases", type=int, default=200, help="targets per run (default 200)")
    parser.add_argument("--migrations", type=int, default=20, help="migrations per target (default 20)")
    parser.add_argument("--parallel", type=int, default=8, help="targets.parallel of the parallel runs (default 8)")
    parser.add_argument("--admin-dsn", default=None, help="use this server (a superuser DSN), not an embedded one")
    parser.add_argument("--no-processes", action="store_true", help="skip the run as separate processes")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args(argv)


def write_migrations(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{20240101000000 + i}_step_{i}.sql").write_text(
            "-- pgshift:up\n"
            f"CREATE TABLE item_{i} (id bigint PRIMARY KEY, tenant text NOT NULL, created timestamptz DEFAULT now());\n"
            f"CREATE INDEX item_{i}_tenant ON item_{i} (tenant);\n"
            f"INSERT INTO item_{i} (id, tenant) SELECT g, 't' || g FROM generate_series(1, 100) g;\n"
            "-- pgshift:down\n"
            f"DROP TABLE item_{i};\n")


def create_databases(admin: str, count: int) -> list[str]:
    names = [f"fleet_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return names


def drop_databases(admin: str, names: list[str]) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def url_for(admin: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(admin)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def wal_lsn(admin: str) -> int:
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fleet_run(api: Any, settings: Any, file: Path, mode: str, parallel: int) -> Run:
    settings = dataclasses.replace(settings, targets=dataclasses.replace(settings.targets, parallel=parallel))
    cpu, started = _cpu(), time.monotonic()
    report = api.migrate_targets(settings, file)
    wall, used = time.monotonic() - started, _cpu() - cpu
    assert report.ok, [r.as_json() for r in report.results if r.error][:3]
    return Run(mode, len(report.results), wall, used, sum(r.applied for r in report.results))


def process_run(admin: str, names: list[str], folder: Path, workdir: Path, parallel: int) -> Run:
    """``parallel`` `pgshift migrate --targets` processes, each with its share of the targets."""
    files = []
    for k in range(parallel):
        part = workdir / f"part-{k}.txt"
        part.write_text("".join(url_for(admin, n) + "\n" for n in names[k::parallel]))
        files.append(part)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    cpu, started = _children_cpu(), time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "pgshift", "migrate", "--dir", str(folder), "--targets",
                               str(part), "--json"], env=env, cwd=workdir, stdout=subprocess.PIPE, text=True)
             for part in files]
    applied = 0
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, out[-2000:]
        applied += sum(t["applied"] for t in json.loads(out)["targets"])
    return Run(f"processes x{parallel}", len(names), time.monotonic() - started, _children_cpu() - cpu, applied)


def orchestration_cost(parallel: int, count: int = 10_000) -> float:
    """Microseconds per target of the rollout's own scheduling: 10,000 targets, no database."""
    from pgshift import api
    from pgshift.config import Settings, TargetsSettings

    settings = Settings(migrations_dir=".", targets=TargetsSettings(parallel=parallel))
    targets = [api.Target(f"t{i}", f"postgresql:///t{i}", "bench") for i in range(count)]
    started = time.monotonic()
    report = api.fleet_rollout(settings, targets, lambda _s, _t, _n: api.FleetOutcome("up to date"), command="bench")
    assert report.ok
    return 1e6 * (time.monotonic() - started) / count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from pgshift import api
    from pgshift.config import load_settings

    with tempfile.TemporaryDirectory(prefix="pgshift-fleet-bench-") as tmp:
        workdir = Path(tmp)
        cluster = None
        admin = args.admin_dsn
        if admin is None:
            cluster = api.EmbeddedCluster(workdir / "cluster")
            cluster.start(tcp=False, settings={"max_connections": str(max(100, 4 * args.parallel + 20))})
            admin = cluster.socket_dsn()
        try:
            folder = workdir / "migrations"
            write_migrations(folder, args.migrations)
            settings = load_settings(overrides={"migrations_dir": str(folder)}, environ={}, cwd=workdir)
            runs: list[Run] = []
            all_names: list[str] = []

            def targets(label: str) -> tuple[Path, list[str]]:
                names = create_databases(admin, args.databases)
                all_names.extend(names)
                file = workdir / f"{label}.txt"
                file.write_text("".join(url_for(admin, n) + "\n" for n in names))
                return file, names

            # Plain migrates, one database after another: the work a target needs without the fleet around
            # it (after a first one that pays for the imports and the parsing both share).
            plain = create_databases(admin, 1 + min(20, args.databases))
            all_names.extend(plain)
            times = []
            for name in plain:
                one = load_settings(overrides={"migrations_dir": str(folder), "database_url": url_for(admin, name)},
                                    environ={}, cwd=workdir)
                started = time.monotonic()
                api.migrate(one, checks=api.MigrateChecks())
                times.append(1000 * (time.monotonic() - started))
            single_ms = sum(times[1:]) / len(times[1:])

            def measured(run: Callable[[], Run]) -> None:
                before = wal_lsn(admin)
                result = run()
                result.wal_bytes = wal_lsn(admin) - before
                runs.append(result)

            file, _ = targets("sequential")
            measured(lambda: fleet_run(api, settings, file, "sequential", 1))
            measured(lambda: fleet_run(api, settings, file, "rerun, nothing pending", 1))
            file, _ = targets("threads")
            measured(lambda: fleet_run(api, settings, file, f"threads, parallel={args.parallel}", args.parallel))
            measured(lambda: fleet_run(api, settings, file, f"rerun, parallel={args.parallel}", args.parallel))
            if not args.no_processes:
                _, names = targets("processes")
                measured(lambda: process_run(admin, names, folder, workdir, args.parallel))
            drop_databases(admin, all_names)
        finally:
            if cluster is not None:
                cluster.destroy()

    orchestration_us = orchestration_cost(args.parallel)
    sequential = runs[0]
    print(f"\nfleet: {args.databases} databases x {args.migrations} migrations, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<22} {'targets':>7} {'applied':>8} {'wall s':>8} {'ms/target':>11} {'client cpu ms':>13} "
          f"{'WAL KB/target':>12} {'speed-up':>8}")
    print("-" * 97)
    for run in runs:
        print(run.row(sequential if "rerun" not in run.mode else None))
    overhead = sequential.per_target_ms - single_ms
    print(f"\nper-target overhead: a plain api.migrate of the {args.migrations} migrations, one database after "
          f"another, takes {single_ms:.1f} ms; the sequential fleet {sequential.per_target_ms:.1f} ms per target "
          f"(difference {overhead:+.1f} ms, within this machine's noise when it is busy); visiting a target with "
          f"nothing pending costs {runs[1].per_target_ms:.1f} ms; the orchestration alone (10,000 targets whose "
          f"work returns at once, parallel={args.parallel}) {orchestration_us:.0f} us per target")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"databases": args.databases, "migrations": args.migrations, "parallel": args.parallel,
              "single_migrate_ms": single_ms, "fleet_overhead_ms": overhead,
              "orchestration_us_per_target": orchestration_us,
              "runs": [{**run.__dict__, "per_target_ms": run.per_target_ms} for run in runs],
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": [round(x, 2) for x in os.getloadavg()]}}
    out = args.out / f"fleet-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

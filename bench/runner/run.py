"""The runner bench: apply N small migrations to an empty database with pgshift and its peers.

    .venv/bin/python bench/runner/run.py [--count 500] [--repeat 3] [--tools pgshift-cli,alembic,...]

Starts its own embedded PostgreSQL (or uses --admin-dsn), creates bench/.venv-peers with Alembic
and yoyo-migrations from PyPI when a peer tool is asked for, runs every tool on its own fresh
database, repeats each measurement and reports the median wall time and migrations/second side
by side; the same figures go to bench/results/runner-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_harness() -> ModuleType:
    path = Path(__file__).with_name("harness.py")
    spec = importlib.util.spec_from_file_location("pgshift_bench_runner_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500, help="migrations per run (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported")
    parser.add_argument("--tools", default=",".join(harness.ALL_TOOLS),
                        help=f"comma-separated subset of {', '.join(harness.ALL_TOOLS)}")
    parser.add_argument("--admin-dsn", default=None,
                        help="use this server (a superuser DSN) instead of starting an embedded one")
    parser.add_argument("--peers-venv", type=Path, default=harness.REPO / "bench" / ".venv-peers")
    parser.add_argument("--out", type=Path, default=harness.REPO / "bench" / "results")
    parser.add_argument("--no-startup", action="store_true", help="skip timing each CLI's --help")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--scaling", default="500,5000",
                        help="history lengths for the status/validate case (default 500,5000; 'none' skips it)")
    args = parser.parse_args(argv)
    args.scaling = [] if args.scaling == "none" else [int(n) for n in args.scaling.split(",") if n.strip()]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(harness.ALL_TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    return args


def table(results: dict[str, Any], startup: dict[str, float | None]) -> str:
    best_peer = max((r.per_second for t, r in results.items() if t in harness.PEER_TOOLS), default=None)
    lines = [f"{'tool':<12} {'migrations':>10} {'median s':>9} {'migr/s':>8} {'best s':>7} {'best/s':>7} "
             f"{'client cpu s':>12} {'commits':>8} {'cli start s':>11} {'vs best peer':>12}",
             "-" * 104]
    for tool, r in results.items():
        start = startup.get(tool)
        ratio = f"{r.per_second / best_peer:.2f}x" if best_peer else "-"
        commits = int(sum(x.commits for x in r.runs) / len(r.runs))
        lines.append(f"{tool:<12} {r.count:>10} {r.median_s:>9.3f} {r.per_second:>8.1f} {r.min_s:>7.3f} "
                     f"{r.count / r.min_s:>7.1f} {r.client_cpu_s:>12.3f} {commits:>8} "
                     f"{(f'{start:.3f}' if start is not None else '-'):>11} {ratio:>12}")
    return "\n".join(lines)


def scaling_table(scaling: Any, counts: list[int]) -> str:
    """status/validate time per history length; the target is growth no worse than linear."""
    small, large = counts[0], counts[-1]
    head = " ".join(f"{f'{n} s':>9}" for n in counts)
    lines = [f"{'command':<10} {head} {f'ratio {large}/{small}':>16} {'linear would be':>16}",
             "-" * (46 + 10 * len(counts))]
    for command in harness.SCALING_COMMANDS:
        cells = " ".join(f"{scaling.median(command, n):>9.3f}" for n in counts)
        lines.append(f"{command:<10} {cells} {scaling.ratio(command, small, large):>15.2f}x "
                     f"{large / small:>15.1f}x")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from pgshift.embedded import EmbeddedCluster

    cluster = None
    admin_dsn = args.admin_dsn
    if admin_dsn is None:
        cluster = EmbeddedCluster(workdir / "pg")
        cluster.start(tcp=False)
        admin_dsn = cluster.socket_dsn("postgres")
    machine_at_start = machine()
    try:
        ctx = harness.Context(workdir=workdir, count=args.count)
        peers: dict[str, str] = {}
        if any(t in harness.PEER_TOOLS for t in args.tools):
            ctx.peers_bin = harness.ensure_peers_venv(args.peers_venv)
            peers = harness.peer_versions(ctx.peers_bin)
        server = harness.Server(admin_dsn)
        with __import__("psycopg").connect(admin_dsn) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
        results = harness.measure(ctx, server, args.tools, args.repeat,
                                  progress=lambda m: print(m, file=sys.stderr, flush=True))
        startup = {} if args.no_startup else {t: harness.startup_seconds(ctx, t) for t in args.tools}
        scaling = None
        if len(args.scaling) >= 2:
            scaling = harness.measure_scaling(ctx, server, args.scaling, args.repeat,
                                              progress=lambda m: print(m, file=sys.stderr, flush=True))
        print(table(results, startup))
        if scaling is not None:
            print()
            print(scaling_table(scaling, args.scaling))
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
        return {
            "bench": "runner", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "count": args.count, "repeat": args.repeat, "machine": machine_at_start,
            "postgresql": server_version, "embedded": cluster is not None, "peer_versions": peers,
            "results": [r.as_json() | {"cli_startup_s": startup.get(t)} for t, r in results.items()],
            "scaling": scaling.as_json() if scaling is not None else None,
        }
    finally:
        if cluster is not None:
            cluster.destroy()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pgshift-runner-bench-") as tmp:
        report = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = report["at"].replace(":", "").replace("-", "")
    path = args.out / f"runner-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

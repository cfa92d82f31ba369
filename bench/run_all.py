"""Run every bench (``make bench``): each at a quick size by default, at its full size with ``--full``.

    .venv/bin/python bench/run_all.py                      # every bench, quick (a few minutes, no network)
    .venv/bin/python bench/run_all.py --full               # every bench at the sizes docs/benchmarks.md reports
    .venv/bin/python bench/run_all.py --only lint,backfill # some of them

Each bench starts its own embedded PostgreSQL and prints its own figures; this script runs them one
after another (they would disturb each other's timings), then prints how long each took and whether
it succeeded. Exit status 1 when any bench failed. Every folder bench/<name>/ with a run.py must
have its quick arguments here (tests/unit/test_makefile.py checks it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# bench -> arguments of its quick run (the full run uses the bench's own defaults). Quick runs need
# no network: the peer tools (Alembic, yoyo, squawk) are left out.
QUICK: dict[str, list[str]] = {
    "backfill": ["--rows", "20000"],
    "backup": ["--scale", "1", "--repeat", "1"],
    "deploy": ["--rows", "20000", "--rate", "100", "--threads", "3", "--watch", "2", "--overhead", "10",
               "--baseline", "2"],
    "fleet": ["--databases", "20", "--migrations", "5"],
    "large_files": ["--sizes", "2", "--formats", "native"],
    "lint": ["--quick", "--no-squawk"],
    "maintenance_work_mem": ["--rows", "200000", "--repeat", "1"],
    "runner": ["--count", "50", "--repeat", "1", "--tools", "pgshift-cli,pgshift-api", "--no-startup",
               "--scaling", "50,500"],
    "zero_downtime": ["--rows", "20000", "--cases", "rename_column", "--hold", "2"],
}


def benches() -> list[str]:
    """Every bench folder with a run.py, by name."""
    return sorted(p.parent.name for p in BENCH.glob("*/run.py"))


def command(name: str, *, full: bool) -> list[str]:
    return [sys.executable, str(BENCH / name / "run.py"), *([] if full else QUICK[name])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the full sizes (each bench's defaults); can take hours")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(benches())}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or benches()
    unknown = [n for n in names if n not in benches()]
    if unknown:
        parser.error(f"no bench named {', '.join(unknown)} (have: {', '.join(benches())})")
    missing = [n for n in names if not args.full and n not in QUICK]
    if missing:
        parser.error(f"bench/{missing[0]}/run.py has no quick arguments in bench/run_all.py QUICK; add them")
    results: list[tuple[str, int, float]] = []
    for name in names:
        argv_ = command(name, full=args.full)
        print(f"\n=== {name}: {' '.join(Path(a).name if i < 2 else a for i, a in enumerate(argv_))}", flush=True)
        started = time.monotonic()
        code = subprocess.run(argv_, cwd=BENCH.parent, check=False).returncode
        results.append((name, code, time.monotonic() - started))
    print(f"\n=== {'full' if args.full else 'quick'} bench runs")
    for name, code, seconds in results:
        print(f"{name:16}{'ok' if code == 0 else f'FAILED (exit {code})':>18}{seconds:>9.1f} s")
    return 1 if any(code for _name, code, _seconds in results) else 0


if __name__ == "__main__":
    sys.exit(main())

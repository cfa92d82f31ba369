"""Where pgshift's time goes when it applies N small migrations: cProfile of ``api.migrate``.

    .venv/bin/python bench/runner/profile_pgshift.py [--count 500] [--top 25] [--cli]

With --cli the ``pgshift migrate`` command is profiled in a subprocess instead (start-up,
imports and console output included).

Prints the load (read + parse) time apart from the apply time, the transactions pgshift commits
per migration (the server's xact_commit) and the top functions by own and cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import harness  # loads harness.py under its own module name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cli", action="store_true", help="profile the pgshift CLI in a subprocess")
    args = parser.parse_args(argv)

    from pgshift import api
    from pgshift.config import load_settings
    from pgshift.embedded import EmbeddedCluster

    with tempfile.TemporaryDirectory(prefix="pgshift-runner-profile-") as tmp:
        cluster = EmbeddedCluster(Path(tmp) / "pg")
        cluster.start(tcp=False)
        try:
            server = harness.Server(cluster.socket_dsn("postgres"))
            folder = harness.write_pgshift(Path(tmp) / "migrations", args.count)
            db = server.create()
            overrides = {"database_url": server.dsn_for(db), "migrations_dir": str(folder)}
            settings = load_settings(overrides=overrides, environ={}, cwd=Path(tmp))
            started = time.perf_counter()
            api.load(settings)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            if args.cli:
                stats = _profile_cli(Path(tmp), server.dsn_for(db), folder)
                applied = server.tables(db)
            else:
                profiler = cProfile.Profile()
                profiler.enable()
                applied = len(api.migrate(settings).applied)
                profiler.disable()
                stats = pstats.Stats(profiler)
            total_s = time.perf_counter() - started
            commits = server.commits(db)
        finally:
            cluster.destroy()
    print(f"{applied} migrations ({'CLI' if args.cli else 'API'}): migrate {total_s:.3f}s under cProfile "
          f"(load alone, unprofiled: {load_s:.3f}s); {commits} commits = "
          f"{commits / args.count:.1f}/migration")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(args.top)
        print(f"\n== top {args.top} by {key} ==")
        print(out.getvalue().split("\n", 6)[-1])
    return 0


def _profile_cli(tmp: Path, dsn: str, folder: Path) -> pstats.Stats:
    out = tmp / "cli.prof"
    env = harness.clean_env(tmp / "pycache")
    common = ["--database-url", dsn, "--dir", str(folder)]
    # Warm the bytecode cache as an installed wheel would have it (status imports the same code).
    warm = [sys.executable, "-m", "pgshift", "status", *common]
    subprocess.run(warm, cwd=tmp, env=env, capture_output=True)
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "pgshift", "migrate", *common]
    subprocess.run(argv, cwd=tmp, env=env, check=True, capture_output=True)
    return pstats.Stats(str(out))


if __name__ == "__main__":
    sys.exit(main())

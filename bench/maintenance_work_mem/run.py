"""maintenance_work_mem bench: the same CREATE INDEX CONCURRENTLY migration applied by `pgshift migrate`
with the server's default maintenance_work_mem and with ``-- pgshift:set maintenance_work_mem=1GB``.

    .venv/bin/python bench/maintenance_work_mem/run.py [--rows 5000000] [--repeat 3] [--value 1GB]
                                                      [--admin-dsn URL]

Starts its own embedded PostgreSQL unless --admin-dsn is given. One table (``events``: bigint key, a
random 32-character text), built once; each round builds the index on the text column once with
each setting, alternating which goes first, through the real runner (its lock_timeout, ledger row
and the SET / RESET around the autocommit statement). Reports the median build time of each, their
ratio, the default maintenance_work_mem, the index size and the machine's load average.
Results also go to bench/results/maintenance_work_mem-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from pgshift import api
from pgshift.config import Settings

SETUP = """
DROP TABLE IF EXISTS events;
CREATE TABLE events (id bigint PRIMARY KEY, token text NOT NULL) WITH (autovacuum_enabled = false);
INSERT INTO events SELECT g, md5(g::text || random()::text) FROM generate_series(1, {rows}) g;
VACUUM ANALYZE events;
CHECKPOINT;
"""


def prepare(url: str, rows: int) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SETUP.format(rows=int(rows)).split(";"):
            if statement.strip():
                conn.execute(statement.encode())
        row = conn.execute("SHOW maintenance_work_mem").fetchone()
    return str(row[0]) if row else "?"


def build(url: str, root: Path, round_: int, value: str | None) -> dict[str, Any]:
    """One migration building the index, applied by `pgshift migrate` into a ledger of its own."""
    label = "default" if value is None else value
    project = root / f"r{round_}-{label}"
    folder = project / "migrations"
    folder.mkdir(parents=True)
    directive = f"-- pgshift:set maintenance_work_mem={value}\n" if value else ""
    (folder / "1_index.sql").write_text(f"{directive}-- pgshift:up\n"
                                        "CREATE INDEX CONCURRENTLY events_token ON events (token);\n")
    settings = Settings(database_url=url, base_dir=project, migrations_dir="migrations",
                        history_schema=f"bench_r{round_}_{'default' if value is None else 'set'}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS events_token")
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    report = api.migrate(settings)
    seconds = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_relation_size('events_token')").fetchone()
    return {"setting": label, "seconds": seconds, "step_ms": report.applied[0].duration_ms,
            "index_bytes": int(row[0]) if row else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--value", default="1GB", help="the maintenance_work_mem the directive sets")
    parser.add_argument("--admin-dsn", default=None)
    args = parser.parse_args()
    cluster = None
    url = args.admin_dsn
    root = Path(tempfile.mkdtemp(prefix="pgshift-bench-mwm-"))
    if url is None:
        from pgshift.embedded import EmbeddedCluster

        cluster = EmbeddedCluster(root / "cluster")
        cluster.start()
        url = cluster.socket_dsn()
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        default = prepare(url, args.rows)
        for round_ in range(args.repeat):
            order: list[str | None] = [None, args.value] if round_ % 2 == 0 else [args.value, None]
            runs += [build(url, root, round_, value) for value in order]
    finally:
        if cluster is not None:
            cluster.destroy()
    load_after = os.getloadavg()
    median = {label: statistics.median(r["seconds"] for r in runs if r["setting"] == label)
              for label in ("default", args.value)}
    print(f"CREATE INDEX CONCURRENTLY on {args.rows:,} rows (random 32-character text), {args.repeat} round(s), "
          f"through `pgshift migrate`; default maintenance_work_mem {default}")
    print(f"{'maintenance_work_mem':24}{'median s':>10}{'all runs (s)':>30}")
    for label in ("default", args.value):
        every = ", ".join(f"{r['seconds']:.2f}" for r in runs if r["setting"] == label)
        print(f"{(default + ' (default)') if label == 'default' else label:24}{median[label]:>10.2f}{every:>30}")
    ratio = median["default"] / median[args.value]
    print(f"the directive's build is {ratio:.2f}x as fast as the default's; index "
          f"{runs[-1]['index_bytes'] / 1e6:.0f} MB")
    print(f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}")
    out = Path(__file__).parents[1] / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (out / f"maintenance_work_mem-{stamp}.json").write_text(json.dumps(
        {"rows": args.rows, "repeat": args.repeat, "value": args.value, "default": default, "runs": runs,
         "median_s": median, "ratio": ratio, "load_before": load_before, "load_after": load_after}, indent=2))


if __name__ == "__main__":
    main()

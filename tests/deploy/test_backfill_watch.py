"""`pgshift backfill --watch`: a [watch] threshold crossed pauses the batches instead of failing them."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.helpers import start_pgshift


def test_a_breach_pauses_the_backfill_until_it_clears(tmp_path: Path, db_url: str) -> None:
    level = tmp_path / "load"
    level.write_text("5\n")
    (tmp_path / "pgshift.toml").write_text(
        f'migrations_dir = "migrations"\n[watch]\ninterval = "100ms"\n'
        f'metric_commands = {{ load = "cat {level}" }}\nmetric_limits = {{ load = "1" }}\n')
    (tmp_path / "migrations").mkdir()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO t SELECT g FROM generate_series(1, 3000) g")
        run = start_pgshift(["backfill", "--table", "t", "--set", "v = 1", "--batch-size", "500", "--min-batch", "500",
                             "--max-batch", "500", "--json", "--watch"], cwd=tmp_path, url=db_url)
        try:
            # Wait for the pause itself, not a fixed time: on a loaded machine start-up alone can take seconds.
            assert run.stderr is not None
            seen: list[str] = []
            deadline = time.monotonic() + 90
            while not any('"state": "paused-watch"' in line for line in seen):
                line = run.stderr.readline()
                assert line and time.monotonic() < deadline, (run.poll(), "".join(seen))
                seen.append(line)
            time.sleep(1)  # paused for a while: still nothing written, still running
            assert run.poll() is None  # paused, not failed
            assert conn.execute("SELECT count(v) FROM t").fetchone() == (0,)
            level.write_text("0\n")  # the breach clears
            _out, err = run.communicate(timeout=60)
        finally:
            run.kill()
        assert run.returncode == 0, "".join(seen) + err
        assert conn.execute("SELECT count(v) FROM t").fetchone() == (3000,)

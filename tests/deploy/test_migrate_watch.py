"""`pgshift migrate --watch`: a threshold crossed while migrating stops the run before its next migration."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_pgshift, write_migration

TOML = """
migrations_dir = "migrations"
[backup]
policy = "never"
[watch]
interval = "100ms"
metric_commands = { errors = "echo 7" }
metric_limits = { errors = "1" }
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pgshift.toml").write_text(TOML)
    folder = tmp_path / "migrations"
    write_migration(folder, "001", "slow", "CREATE TABLE a (id int); SELECT pg_sleep(1.5);", "DROP TABLE a;")
    write_migration(folder, "002", "next", "CREATE TABLE b (id int);", "DROP TABLE b;")
    return tmp_path


def test_migrate_watch_stops_before_the_next_migration_on_a_breach(tmp_path: Path, db_url: str) -> None:
    root = _project(tmp_path)
    done = run_pgshift(["migrate", "--watch"], cwd=root, url=db_url)
    assert done.returncode == 30, done.stderr  # WatchBreached
    # the breach is seen before 001 (the gate takes longer than a sample) or during its 1.5 s: never after 002
    assert "Migrating stopped before 00" in done.stderr and "metric errors is 7" in done.stderr
    status = run_pgshift(["status", "--json"], cwd=root, url=db_url)
    assert "002" in json.loads(status.stdout)["pending"]
    assert json.loads(status.stdout)["interrupted"] == []  # stopped on purpose, not a crash


def test_migrate_without_watch_ignores_the_thresholds(tmp_path: Path, db_url: str) -> None:
    root = _project(tmp_path)
    done = run_pgshift(["migrate"], cwd=root, url=db_url)
    assert done.returncode == 0, done.stderr

"""`pgshift migrate --watch`: a threshold crossed while migrating stops the run before its next migration."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgshift import api
from pgshift.config import load_settings
from tests.helpers import run_pgshift, start_pgshift, write_migration

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


STEPS_TOML = """
migrations_dir = "migrations"
lock_timeout = "30s"
[backup]
policy = "never"
[watch]
interval = "100ms"
max_blocked_ms = 300
"""
# Each statement its own step (CONCURRENTLY): the ALTER is the one a lock pile-up holds up.
STEPS_UP = """
CREATE TABLE first_step (id int);
ALTER TABLE jobs ADD COLUMN note text;
CREATE TABLE third_step (id int);
CREATE INDEX CONCURRENTLY jobs_id_idx ON jobs (id);
"""


def _steps_project(tmp_path: Path, toml: str = STEPS_TOML) -> Path:
    (tmp_path / "pgshift.toml").write_text(toml)
    folder = tmp_path / "migrations"
    write_migration(folder, "001", "jobs", "CREATE TABLE jobs (id int PRIMARY KEY);", "DROP TABLE jobs;")
    return tmp_path


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
        return {str(r[0]) for r in rows.fetchall()}


def _columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                            "AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()
    return [str(r[0]) for r in rows]


def test_a_lock_pile_up_mid_migration_cancels_the_waiting_step_and_the_hint_resumes_it(
        tmp_path: Path, db_url: str) -> None:
    root = _steps_project(tmp_path)
    assert run_pgshift(["migrate"], cwd=root, url=db_url).returncode == 0
    write_migration(root / "migrations", "002", "steps", STEPS_UP, "DROP TABLE third_step; DROP TABLE first_step;")
    with psycopg.connect(db_url) as holder:  # an application transaction the ALTER must wait for
        holder.execute("LOCK TABLE jobs IN ACCESS SHARE MODE")
        run = start_pgshift(["migrate", "--watch"], cwd=root, url=db_url)
        try:
            deadline = time.monotonic() + 60
            with psycopg.connect(db_url, autocommit=True) as look:
                while not look.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND query LIKE 'ALTER TABLE jobs%%'").fetchone():
                    assert time.monotonic() < deadline and run.poll() is None, run.communicate()
                    time.sleep(0.05)
            # the pile-up: application reads queue behind the waiting ALTER
            readers = [threading.Thread(target=_read_jobs, args=(db_url,)) for _ in range(2)]
            for reader in readers:
                reader.start()
            _out, err = run.communicate(timeout=60)
            for reader in readers:
                reader.join(10)
                assert not reader.is_alive()  # the cancelled ALTER no longer holds them up
        finally:
            run.kill()
        holder.rollback()
    assert run.returncode == 30, err  # WatchBreached
    text = " ".join(err.split())
    assert "Migrating stopped in 002 steps at" in text and "the statement was cancelled and rolled back" in text
    assert "watch.max_blocked_ms" in text
    tables = _tables(db_url)
    assert "first_step" in tables and "third_step" not in tables  # step 1 committed, steps 3-4 never ran
    assert "note" not in _columns(db_url, "jobs")  # step 2 rolled back
    status = json.loads(run_pgshift(["status", "--json"], cwd=root, url=db_url).stdout)
    stopped = next(i for i in status["interrupted"] if i["version"] == "002")
    assert stopped["state"] == "failed" and "stopped by the watcher" in stopped["detail"]
    assert "resumes at statement 2" in stopped["detail"]
    hint = text[text.index("then run `pgshift migrate` again"):]
    assert "it continues with 002 steps where it stopped" in hint
    again = run_pgshift(["migrate"], cwd=root, url=db_url)  # the hint, as printed
    assert again.returncode == 0, again.stderr
    assert "resuming 002 steps at statement 2" in again.stderr
    assert {"first_step", "third_step"} <= _tables(db_url) and "note" in _columns(db_url, "jobs")


def _read_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM jobs")


class _BreachAfterFirstStep:
    """Turns the metric past its limit once the first step has run, and waits for the watcher to see it."""

    def __init__(self, metric: Path) -> None:
        self.metric = metric

    def before(self, conn: object, migration: object, stmt: object) -> None:
        pass

    def after(self, conn: object, migration: object, stmt: object, error: BaseException | None) -> None:
        if "first_step" in getattr(stmt, "sql", ""):
            self.metric.write_text("9\n")
            time.sleep(1.5)  # 15 samples: the breach is seen while no statement runs


def test_a_breach_between_steps_stops_before_the_next_step(tmp_path: Path, db_url: str) -> None:
    metric = tmp_path / "errors"
    metric.write_text("0\n")
    root = _steps_project(tmp_path, STEPS_TOML + f'metric_commands = {{ errors = "cat {metric}" }}\n'
                          'metric_limits = { errors = "1" }\n')
    settings = load_settings(root / "pgshift.toml", overrides={"database_url": db_url}, environ={})
    api.migrate(settings)
    write_migration(root / "migrations", "002", "steps", STEPS_UP, "DROP TABLE third_step; DROP TABLE first_step;")
    with pytest.raises(api.WatchBreached) as stopped:
        api.migrate_watched(settings, observer=_BreachAfterFirstStep(metric))
    assert "Migrating stopped in 002 steps before" in stopped.value.message
    assert "nothing of that step ran" in stopped.value.message and "metric errors is 9" in stopped.value.message
    assert _tables(db_url) == {"jobs", "first_step"} and "note" not in _columns(db_url, "jobs")
    status = api.status(settings)
    (interrupted,) = status.interrupted
    assert interrupted.state == "failed" and "was stopped by the watcher before this statement" in interrupted.detail
    metric.write_text("0\n")
    api.migrate_watched(settings)  # the rerun continues at step 2
    assert {"first_step", "third_step"} <= _tables(db_url)

"""`pgshift adopt`: switch from another tool without re-running what it applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from tests.db.test_foreign_history import GOLANG_MIGRATE_DDL, GOOSE_DDL_IDENTITY
from tests.helpers import run_pgshift

SAMPLES = Path(__file__).parent.parent / "migrations" / "samples"
Conn = psycopg.Connection[tuple[object, ...]]


def _copy(sample: str, tmp_path: Path) -> Path:
    target = tmp_path / sample
    shutil.copytree(SAMPLES / sample, target)
    return target


def test_adopt_goose_history_then_migrate_runs_only_the_rest(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("goose", tmp_path)
    # goose applied 1 and 2 (and 3 was applied then rolled back: its latest row says not applied).
    conn.execute(GOOSE_DDL_IDENTITY)
    conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), "
                 "(3, true), (3, false)")
    # What goose's migrations 1 and 2 created:
    first = run_pgshift(["migrate", "--to", "2"], cwd=project, url=db_url, env={"PGSHIFT_HISTORY_SCHEMA": "scratch"})
    assert first.returncode == 0, first.stderr
    conn.execute("DROP SCHEMA scratch CASCADE")

    adopted = run_pgshift(["adopt", "--from", "goose", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    report = json.loads(adopted.stdout)
    assert report["adopted"] == ["1", "2"]
    assert report["pending"] == ["3", "10"]

    migrated = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert [a["version"] for a in json.loads(migrated.stdout)["applied"]] == ["3", "10"]
    again = run_pgshift(["adopt", "--from", "goose", "--json"], cwd=project, url=db_url)
    assert json.loads(again.stdout)["already"] == ["1", "2"]


def test_adopt_golang_migrate_current_version_covers_older_ones(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("golang_migrate", tmp_path)
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (2, false)")
    adopted = run_pgshift(["adopt", "--from", "golang-migrate", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["adopted"] == ["1", "2"]
    status = json.loads(run_pgshift(["status", "--json"], cwd=project, url=db_url).stdout)
    assert status["pending"] == ["10"]


def test_adopt_refuses_a_dirty_history(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("golang_migrate", tmp_path)
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (2, true)")
    result = run_pgshift(["adopt", "--from", "golang-migrate"], cwd=project, url=db_url)
    assert result.returncode == 17
    assert "failed or dirty" in result.stderr
    assert conn.execute("SELECT to_regclass('pgshift.migrations') IS NULL "
                        "OR NOT EXISTS (SELECT FROM pgshift.migrations)").fetchone() == (True,)


def test_adopt_without_the_tools_table_names_it(tmp_path: Path, db_url: str) -> None:
    project = _copy("goose", tmp_path)
    result = run_pgshift(["adopt", "--from", "goose"], cwd=project, url=db_url)
    assert result.returncode == 17
    assert "goose_db_version" in result.stderr

"""Smoke test of the runner bench harness: a tiny pgshift-only run on the test server.

Peers (Alembic, yoyo) need their own venv from PyPI, so they are left to the real bench run.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from tests.bench.loader import load_bench


def _harness() -> ModuleType:
    return load_bench("runner/harness.py", "pgshift_bench_runner_harness")


def test_pgshift_runs_produce_rates_and_all_tables(pg_server: Any, tmp_path: Path) -> None:
    h = _harness()
    ctx = h.Context(workdir=tmp_path, count=5)
    server = h.Server(pg_server.admin_url)
    results = h.measure(ctx, server, ["pgshift-cli", "pgshift-api"], repeat=1)
    for tool in ("pgshift-cli", "pgshift-api"):
        result = results[tool]
        assert result.per_second > 0
        assert [r.tables for r in result.runs] == [5]
        assert result.as_json()["migrations_per_s"] > 0
        assert result.runs[0].commits >= 5  # at least one commit per migration


def test_kept_database_holds_every_table(pg_server: Any, tmp_path: Path) -> None:
    h = _harness()
    ctx = h.Context(workdir=tmp_path, count=5)
    server = h.Server(pg_server.admin_url)
    run, db = h.measure_once(ctx, server, "pgshift-cli", keep=True)
    try:
        with psycopg.connect(pg_server.url_for(db), autocommit=True) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        names = {r[0] for r in rows}
        assert {f"t_{i}" for i in range(1, 6)} <= names
        assert run.seconds > 0
    finally:
        server.drop(db)


def test_peer_projects_are_equivalent(tmp_path: Path) -> None:
    """The generated Alembic and yoyo projects carry the same up/down SQL as pgshift's files."""
    h = _harness()
    h.write_alembic(tmp_path / "alembic", 3)
    h.write_yoyo(tmp_path / "yoyo", 3)
    h.write_pgshift(tmp_path / "pgshift", 3)
    revision = (tmp_path / "alembic" / "versions" / "r00002_create_t_2.py").read_text()
    assert 'down_revision = "r00001"' in revision and h.up_sql(2) in revision and h.down_sql(2) in revision
    assert (tmp_path / "yoyo" / "00003_create_t_3.rollback.sql").read_text().strip() == h.down_sql(3) + ";"
    assert h.up_sql(1) in (tmp_path / "pgshift" / "00001_create_t_1.sql").read_text()
    url = h.sqlalchemy_url("postgresql://postgres@/db%201?host=/tmp/s%20ock&port=5433")
    assert url == "postgresql+psycopg://postgres@/db%201?host=%2Ftmp%2Fs%20ock&port=5433"


def test_status_and_validate_scaling_is_timed_on_every_length(pg_server: Any, tmp_path: Path) -> None:
    h = _harness()
    ctx = h.Context(workdir=tmp_path, count=3)
    server = h.Server(pg_server.admin_url)
    result = h.measure_scaling(ctx, server, [3, 6], repeat=1)
    for command in ("status", "validate"):
        assert len(result.seconds[command][3]) == 1 and len(result.seconds[command][6]) == 1
        assert result.median(command, 6) > 0 and result.ratio(command, 3, 6) > 0
    assert set(result.as_json()["validate"]) == {"3", "6"}

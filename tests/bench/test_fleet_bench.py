"""Smoke test of the fleet bench: a tiny run on the test server, every mode and figure present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.loader import load_bench
from tests.conftest import PgServer


def test_fleet_bench_runs_every_mode_and_writes_its_figures(pg_server: PgServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench("fleet/run.py", "pgshift_bench_fleet")
    code = bench.main(["--databases", "3", "--migrations", "2", "--parallel", "2", "--admin-dsn",
                       pg_server.admin_url, "--out", str(tmp_path)])
    assert code == 0
    (written,) = tmp_path.glob("fleet-*.json")
    result = json.loads(written.read_text())
    modes = [run["mode"] for run in result["runs"]]
    assert modes == ["sequential", "rerun, nothing pending", "threads, parallel=2", "rerun, parallel=2",
                     "processes x2"]
    assert [run["applied"] for run in result["runs"]] == [6, 0, 6, 0, 6]
    assert all(run["wal_bytes"] > 0 for run in result["runs"] if run["applied"])
    out = capsys.readouterr().out
    assert "speed-up" in out and "per-target overhead" in out and "the orchestration alone" in out

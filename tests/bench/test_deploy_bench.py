"""Smoke test of the deploy bench: a tiny run on the test server, both sides and the watcher's cost measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.loader import load_bench
from tests.conftest import PgServer


def test_deploy_bench_measures_both_sides_and_the_watcher(pg_server: PgServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench("deploy/run.py", "pgshift_bench_deploy")
    code = bench.main(["--rows", "3000", "--rate", "60", "--threads", "2", "--watch", "1", "--overhead", "3",
                       "--baseline", "1", "--admin-dsn", pg_server.admin_url, "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().out
    (written,) = tmp_path.glob("deploy-*.json")
    result = json.loads(written.read_text())
    deploy, playbook = result["sides"]
    assert deploy["outcome"] == "deployed" and deploy["failed"] == 0, deploy["errors"]
    assert deploy["steps"]["contract"] == "done" and deploy["steps"]["app"] == "done"
    assert deploy["queries"] > 0 and deploy["worst_ms"] > 0 and deploy["downtime_ms"] == 0
    assert playbook["downtime_ms"] > 0 and playbook["queries"] > 0
    assert deploy["baseline_worst_ms"] > 0  # the workload's own worst query before the deploy, for comparison
    assert deploy["slowest"][0]["ms"] == pytest.approx(deploy["worst_ms"], abs=0.1)
    assert result["watcher"]["samples"] >= 3 and result["watcher"]["server_cpu_s"] >= 0
    out = capsys.readouterr().out
    assert "pgshift deploy" in out and "playbook: stop, migrate, restart" in out and "% of a core" in out

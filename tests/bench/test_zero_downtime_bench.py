"""Smoke test of the zero-downtime bench harness: a tiny table, two cases, on the test server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

RUN = Path(__file__).resolve().parents[2] / "bench" / "zero_downtime" / "run.py"


def _bench() -> ModuleType:
    name = "pgshift_bench_zero_downtime"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_harness_measures_naive_and_pgshift_runs(pg_server: Any) -> None:
    b = _bench()
    b.prepare_template(pg_server.admin_url, 2000)
    quick = {"rows": 2000, "rate": 150, "threads": 3, "warmup_s": 0.3, "cooldown_s": 0.2}
    runs = [
        b.run_case(pg_server.admin_url, b.SLUGS["create_index"], "naive", False, **quick),
        b.run_case(pg_server.admin_url, b.SLUGS["create_index"], "pgshift", False, **quick),
        b.run_case(pg_server.admin_url, b.SLUGS["rename_column"], "pgshift", True, hold_s=4.0, **quick),
    ]
    for run in runs:
        assert run.migration_error is None, run.migration_error
        assert run.queries > 0 and run.queries_during > 0 and run.max_ms > 0 and run.p99_ms <= run.max_ms
        assert run.total_s > 0
    blocked = runs[2]
    assert blocked.failed == 0, blocked.errors  # old names keep working through expand
    assert blocked.lock_retries > 0  # the open transaction made its ALTER time out and retry
    assert set(blocked.phases) == {"expand", "contract"}
    text = b.table(runs)
    assert "create index" in text and "rename column" in text and "blocked" in text

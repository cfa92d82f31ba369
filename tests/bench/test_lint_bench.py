"""Smoke test of the lint speed bench: pgshift alone (squawk comes from PyPI in the real run)."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from tests.bench.loader import load_bench


def _bench() -> ModuleType:
    return load_bench("lint/run.py", "pgshift_bench_lint")


def test_speed_rows_and_report_for_pgshift() -> None:
    b = _bench()
    rows = b.speed([200, 400], have_squawk=False, repeat=2)
    assert {(r["tool"], r["statements"]) for r in rows} == {
        (f"pgshift {fmt}", n) for fmt in ("json", "tty", "sarif", "github", "gitlab") for n in (200, 400)}
    assert all(r["runs"] == 2 and 0 < r["seconds"] <= r["median"] for r in rows)
    text = b.report(None, rows, [])
    assert "| pgshift json | 400 |" in text and "Linearity (400 vs 200 statements" in text
    assert "PYTHONDONTWRITEBYTECODE" not in b.pgshift_env()


def test_help_prints_the_usage_and_runs_nothing(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    b = _bench()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("--help ran the bench")

    monkeypatch.setattr(b, "speed", refuse)
    monkeypatch.setattr(b, "ensure_squawk", refuse)
    monkeypatch.setattr(sys, "argv", ["run.py", "--help"])
    assert b.main() == 0
    assert "bench/lint/run.py [--quick]" in capsys.readouterr().out

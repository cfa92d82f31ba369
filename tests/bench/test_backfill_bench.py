"""Smoke test of the backfill bench: both sides on a small table, with the figures it reports."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.bench.loader import load_bench


def test_backfill_bench_measures_both_sides_and_the_lock_hold(db_url: str) -> None:
    bench = load_bench("backfill/run.py", "pgshift_bench_backfill")
    single = bench.single_update(db_url, 20_000)
    assert single["rows"] == 20_000 and single["rows_per_s"] > 0
    ours: dict[str, Any] = bench.batched(db_url, 20_000, 20)
    assert ours["rows"] == 20_000 and ours["batches"] >= 1 and len(ours["batch_ms"]) == ours["batches"]
    assert 0 < ours["longest_lock_ms"] <= ours["longest_batch_ms"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM trades WHERE status = 'PENDING'").fetchone() == (20_000,)


def test_backfill_bench_measures_the_app_waiting_on_the_backfill(db_url: str) -> None:
    bench = load_bench("backfill/run.py", "pgshift_bench_backfill")
    contended: dict[str, Any] = bench.batched(db_url, 20_000, 20, 100, contend=True)
    assert contended["rows"] == 20_000 and contended["app_updates"] > 0 and contended["app_errors"] == []
    assert 0 < contended["app_p99_ms"] <= contended["app_worst_ms"]
    assert contended["waited_batches"] <= contended["batches"]

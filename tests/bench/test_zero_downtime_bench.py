"""Smoke test of the zero-downtime bench harness: a tiny table, two cases, on the test server."""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import psycopg

from tests.bench.loader import load_bench


def _bench() -> ModuleType:
    return load_bench("zero_downtime/run.py", "pgshift_bench_zero_downtime")


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


def test_harness_runs_the_partitioned_cases_and_the_backfill_rate(pg_server: Any) -> None:
    b = _bench()
    b.prepare_template(pg_server.admin_url, 2000, partitions=8)
    with psycopg.connect(pg_server.url_for(b.TEMPLATE_DB)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_partition_tree('trades') WHERE isleaf").fetchone() == (8,)
        assert conn.execute("SELECT count(*) FROM trades_p7").fetchone() == (250,)
    cases = b.slugs(b.cases_for(8))
    assert "detach_partition" in cases and "unique: true" in cases["add_unique_constraint"].ops
    quick = {"rows": 2000, "rate": 150, "threads": 3, "warmup_s": 0.3, "cooldown_s": 0.2}
    runs = [b.run_case(pg_server.admin_url, cases[name], "pgshift", False, **quick)
            for name in ("detach_partition", "add_unique_constraint", "add_foreign_key")]
    for run in runs:
        assert run.migration_error is None, run.migration_error
        assert run.failed == 0 and run.peak_rss_mb > 0
    rate = b.backfill_rate(pg_server.admin_url)
    assert rate["single UPDATE"]["rows"] == rate["pgshift"]["rows"] == 2000
    assert rate["pgshift"]["mode"].startswith("partition by partition (8 partitions)") and rate["ratio"] > 0


def test_template_is_reused_only_when_built_from_the_same_sql(pg_server: Any) -> None:
    b = _bench()
    assert b.prepare_template(pg_server.admin_url, 500, reuse=True) is True
    with psycopg.connect(pg_server.url_for(b.TEMPLATE_DB), autocommit=True) as conn:
        conn.execute("INSERT INTO users VALUES (-1, 'marker')")  # survives only if the template is kept
    assert b.prepare_template(pg_server.admin_url, 500, reuse=True) is False
    with psycopg.connect(pg_server.url_for(b.TEMPLATE_DB)) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE id = -1").fetchone() == (1,)
    assert b.prepare_template(pg_server.admin_url, 600, reuse=True) is True  # other --rows: rebuilt
    assert b.prepare_template(pg_server.admin_url, 600) is True  # reuse off: rebuilt
    with psycopg.connect(pg_server.url_for(b.TEMPLATE_DB)) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (600,)
        assert conn.execute("SELECT count(*) FROM users WHERE id = -1").fetchone() == (0,)


def test_pgshift_can_run_in_a_process_of_its_own_for_its_peak_rss(pg_server: Any) -> None:
    b = _bench()
    b.prepare_template(pg_server.admin_url, 2000)
    run = b.run_case(pg_server.admin_url, b.SLUGS["rename_column"], "pgshift", False, rows=2000, rate=150,
                     threads=3, warmup_s=0.3, cooldown_s=0.2, pgshift_in_child=True)
    assert run.migration_error is None, run.migration_error
    assert run.failed == 0, run.errors
    assert set(run.phases) == {"expand", "contract"}  # the new version deployed between the two children
    assert 10 < run.pgshift_rss_mb < 1000 and run.pgshift_rss_mb != run.peak_rss_mb  # the child's own peak (MB)
    with psycopg.connect(pg_server.url_for("postgres")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'zd_case'").fetchone() == (0,)


def test_the_garbage_collections_that_stall_the_workload_are_recorded(pg_server: Any) -> None:
    import gc

    b = _bench()
    b.prepare_template(pg_server.admin_url, 2000)
    garbage = [[i] for i in range(600_000)]  # a full collection walks these: well over 10 ms
    collector = threading.Timer(2.2, gc.collect)  # while the run's workload is going (it lasts over 3.5 s)
    collector.start()
    try:
        run = b.run_case(pg_server.admin_url, b.SLUGS["create_index"], "naive", True, rows=2000, rate=150,
                         threads=3, hold_s=3.0, warmup_s=0.3, cooldown_s=0.2)
    finally:
        collector.join()
        del garbage
    # Times are from the change's start, so a pause can be matched to the slowest queries' start_s.
    assert any(gen == 2 and ms >= 10 and -3 < start < run.total_s + 2 for start, ms, gen in run.gc_pauses), \
        run.gc_pauses
    assert not [c for c in gc.callbacks if type(c).__name__ == "GcPauses"]  # removed after the run


def test_gc_freeze_moves_the_samples_out_of_reach_of_full_collections_until_the_run_ends() -> None:
    import gc
    import time

    b = _bench()
    samples = [[i] for i in range(1000)]
    with b.GcPauses(b.Clock(), freeze=True):
        time.sleep(5.5)
        assert gc.get_freeze_count() >= len(samples)
    assert gc.get_freeze_count() == 0

"""Smoke test of the large-files bench: tiny files, two formats, one round, against psql."""

from __future__ import annotations

import argparse
from pathlib import Path

from pgshift.migrations.loader import load_migrations
from tests.bench.loader import load_bench
from tests.conftest import PgServer


def test_large_files_bench_measures_lint_migrate_check_and_psql(pg_server: PgServer) -> None:
    b = load_bench("large_files/run.py", "pgshift_bench_large_files")
    args = argparse.Namespace(sizes=[0.1, 0.2], formats=["native", "golang-migrate"], repeat=1, before=None,
                              limit=120, admin_dsn=pg_server.admin_url, also=["check"])
    rows = b.bench(args)
    assert {(r["size_mb"], r["tool"], r["what"]) for r in rows} == {
        (size, tool, what) for size in (0.1, 0.2) for tool in ("native", "golang-migrate")
        for what in ("lint", "migrate", "check")} | {(0.1, "psql -1 -f", "apply"), (0.2, "psql -1 -f", "apply")}
    assert all(r["ok"] and r["peak_mb"] > 0 and r["cpu_seconds"] >= 0 for r in rows), rows
    text = b.report(rows)
    assert "| 0.2 MB | golang-migrate | `pgshift check` |" in text
    assert "| 0.2 MB | golang-migrate |" in text and "Linearity (0.2 MB vs 0.1 MB" in text


def test_large_files_bench_writes_every_format_as_its_reader_reads_it(tmp_path: Path) -> None:
    gen = load_bench("large_files/gen.py", "pgshift_bench_large_files_gen")
    body = gen.body(200_000)
    statements = 1 + body.count("INSERT INTO") + body.count("CREATE OR REPLACE FUNCTION")
    for fmt in gen.FORMATS:
        folder = tmp_path / fmt
        gen.write(folder, fmt, 200_000)
        found, [migration] = load_migrations(folder)
        assert (found, len(migration.up), migration.error) == (fmt, statements, None)
        assert (migration.down is None) == (fmt == "prisma")
        assert gen.body(200_000, goose=fmt == "goose").count("INSERT INTO") == body.count("INSERT INTO")


def test_lint_fix_bench_measures_a_fix_of_a_large_file() -> None:
    b = load_bench("large_files/fix.py", "pgshift_bench_large_files_fix")
    measured, written = b.fix(0.1, None)
    assert measured.ok and measured.peak_mb > 0
    assert sorted(written) == ["20240101000000_seed.sql", "20240101000001_seed_no_transaction.sql"]
    assert b"moved by pgshift lint --fix" in written["20240101000000_seed.sql"]

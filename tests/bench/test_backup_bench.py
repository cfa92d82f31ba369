"""Smoke test of the backup bench: a tiny pgbench database, one round, every variant measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.loader import BENCH


def test_backup_bench_times_every_variant_and_reports_overheads(tmp_path: Path) -> None:
    out = tmp_path / "backup.json"
    run = subprocess.run([sys.executable, str(BENCH / "backup" / "run.py"), "--scale", "1", "--repeat", "1",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    variants = {row["variant"]: row for row in figures["rows"]}
    assert "pg_dump -Fc" in variants and "backup verify --restore-test (full)" in variants
    assert "pg_restore into a new database" in variants  # --restore-test's yardstick, side by side
    assert len(variants) == 10 and all(row["best"] > 0 and row["MB/s"] > 0 for row in variants.values())
    assert set(figures["overhead"]) == {"custom, default", "custom, default + quick verify",
                                        "custom, large tables counted on the server",
                                        "custom, every table hashed", "directory -j2, default",
                                        "verify --restore-test, against pg_restore"}
    assert all(set(o) == {"best", "median", "paired_median"} for o in figures["overhead"].values())
    assert "overhead of pgshift backup over pg_dump" in run.stdout


def test_backup_bench_builds_the_incompressible_case(tmp_path: Path) -> None:
    """#17's own case: random bytea rows that pg_dump's compression cannot shrink."""
    out = tmp_path / "backup.json"
    run = subprocess.run([sys.executable, str(BENCH / "backup" / "run.py"), "--incompressible", "3", "--repeat", "1",
                          "--only", r"^pg_dump -Fc$|default \+ quick verify|--restore-test \(full\)$",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["database"] == "3 MB of random bytea"
    assert {row["variant"] for row in figures["rows"]} == {
        "pg_dump -Fc", "pgshift backup (custom, default + quick verify)", "backup verify --restore-test (full)"}
    assert figures["database_mb"] >= 3  # the rows asked for, not an empty table

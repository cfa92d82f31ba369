"""Smoke test of the several-large-tables restore-test bench: two small tables, one round."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.loader import BENCH


def test_large_tables_bench_times_both_sides_and_samples_the_lock_waits(tmp_path: Path) -> None:
    out = tmp_path / "large.json"
    run = subprocess.run([sys.executable, str(BENCH / "backup" / "large_tables.py"), "--tables", "2",
                          "--rows", "30000", "--repeat", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    # Both tables are over hash_max_mb, so the restore-test read each back byte for byte (the script
    # asserts it) and took longer than the bare pg_restore it is compared with.
    assert set(figures["seconds"]) == {"pg_restore into a new database", "--restore-test"}
    assert all(len(v) == 1 and v[0] > 0 for v in figures["seconds"].values())
    assert figures["paired_ratio"]["--restore-test"] > 1.0
    assert set(figures["lock_waits_s"]) == {"pg_restore", "pg_dump"}
    assert "paired median" in run.stdout

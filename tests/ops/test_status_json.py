"""`pgshift status --json` says everything the text shows: each migration's shown state (an expanded,
interrupted-expand or failed-and-pending one included), when it was applied and how long it took."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from pgshift import api
from pgshift.errors import MigrationFailed
from tests.helpers import run_pgshift
from tests.ops.helpers import make_project

INIT = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text); CREATE TABLE gate (ok int);"
INTERRUPTED = """
operations:
  - add_column:
      table: accounts
      column: {name: note, type: text}
  - sql: {up: "SELECT 1 / (SELECT count(*) FROM gate)", down: "SELECT 1"}
"""


def _compare(tmp_path: Path, db_url: str, expected: dict[str, str], phases: dict[str, str]) -> None:
    text = run_pgshift(["status", "--dir", "migrations"], cwd=tmp_path, url=db_url, env={"COLUMNS": "200"})
    as_json = run_pgshift(["status", "--json", "--dir", "migrations"], cwd=tmp_path, url=db_url)
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    data = json.loads(as_json.stdout)
    lines = {line.split()[1]: " ".join(line.split()) for line in text.stdout.splitlines()
             if line.split()[1:2] and line.split()[1] in expected}
    assert {m["version"]: m["display_state"] for m in data["migrations"]} == expected
    for m in data["migrations"]:
        line = lines[m["version"]]
        assert m["display_state"] in line, line
        assert m["expand_phase"] == phases.get(m["version"])
        if m["version"] == "001":
            assert m["applied_at"] is not None and m["applied_at"][:19].replace("T", " ") in line, line
            assert m["duration_ms"] is not None and f" {m['duration_ms']} " in f"{line} ", line
        if expected[m["version"]] == "pending":
            assert m["applied_at"] is None and m["duration_ms"] is None
    summary = next(line for line in text.stdout.splitlines() if "problem(s)" in line)
    counts = data["counts"]
    assert summary.startswith(f"{counts['applied']} applied, {counts['pending']} pending, ")
    assert counts["problems"] == len(data["problems"]) == 0


def test_status_json_and_text_show_the_same_state_time_and_duration_of_every_migration(
        tmp_path: Path, db_url: str) -> None:
    settings = make_project(tmp_path, db_url, {"001_init.sql": INIT})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_gated.ops.yaml").write_text(INTERRUPTED)
    (tmp_path / "migrations" / "003_later.sql").write_text("CREATE TABLE later (id int);")
    with pytest.raises(MigrationFailed):
        api.migrate(settings)  # 002 stops half-way
    _compare(tmp_path, db_url, {"001": "applied", "002": "expanding (interrupted)", "003": "pending"},
             {"002": "expanding"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO gate VALUES (1)")
    api.migrate(settings, to="002")
    _compare(tmp_path, db_url, {"001": "applied", "002": "expanded (not contracted)", "003": "pending"},
             {"002": "expanded"})

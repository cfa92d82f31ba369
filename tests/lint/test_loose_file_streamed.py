"""`pgshift lint FILE` on a loose SQL file (no migrations folder around it) reads a file over 8 MB in
pieces (pgshift.lint.engine.lint_file) instead of holding its text: the findings, suppressions and
transaction mode must be exactly those of linting the whole text (the size threshold is made tiny here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgshift.lint import engine
from pgshift.lint.engine import lint_file, lint_sql
from pgshift.migrations import files
from tests.helpers import PGSHIFT, run_pgshift

PIECES = [
    "CREATE INDEX ix_{i} ON accounts (owner);\n",  # PS001
    "-- pgshift:ignore PS001 reason: a small table\nCREATE INDEX ix_quiet_{i} ON accounts (owner);\n",
    "ALTER TABLE accounts ADD CONSTRAINT fk_{i} FOREIGN KEY (owner) REFERENCES users (id);\n",
    "CREATE FUNCTION f{i}() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$;\n",
    "INSERT INTO t VALUES ('semi;\ncolon; CREATE INDEX ix ON accounts (owner);');\n",
    "ALTER TABLE accounts ADD COLUMN c{i} text NOT NULL DEFAULT 'x';\n",
    "-- \u00fcn\u00efc\u00f6de \U0001f600\n\n",
]


def _findings(report: object) -> list[tuple[object, ...]]:
    return [(f.rule, f.line, f.column, f.message, f.suppressed) for f in report.findings]  # type: ignore[attr-defined]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=30), no_tx=st.booleans())
def test_a_large_loose_file_is_linted_in_pieces_with_the_whole_texts_findings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: list[int], no_tx: bool) -> None:
    text = ("-- pgshift:no-transaction\n" if no_tx else "") + "".join(
        PIECES[p].format(i=i) for i, p in enumerate(order))
    path = tmp_path / "loose.sql"
    path.write_text(text, encoding="utf-8")
    whole = lint_sql(text, file=str(path))
    monkeypatch.setattr(files, "STREAM_BYTES", 16)
    monkeypatch.setattr(engine, "LOOSE_STREAM_BYTES", 16)
    monkeypatch.setattr(Path, "read_text", lambda *_a, **_k: pytest.fail("the file was read whole"))
    streamed = lint_file(path)
    monkeypatch.undo()
    assert _findings(streamed) == _findings(whole)
    assert (streamed.files, streamed.statements) == (whole.files, whole.statements)


def test_a_loose_file_that_does_not_parse_reports_where_as_before(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.sql"
    path.write_text("CREATE TABLE a (id int);\nSELECT FROM WHERE;\nCREATE INDEX i ON a (id);\n")
    whole = lint_sql(path.read_text(), file=str(path))
    monkeypatch.setattr(files, "STREAM_BYTES", 16)
    monkeypatch.setattr(engine, "LOOSE_STREAM_BYTES", 16)
    streamed = lint_file(path)
    assert [(e.line, e.column, e.message) for e in streamed.parse_errors] == \
        [(e.line, e.column, e.message) for e in whole.parse_errors] != []
    assert _findings(streamed) == _findings(whole)


def test_the_cli_lints_a_large_loose_file_as_its_text(tmp_path: Path) -> None:
    body = "".join(PIECES[i % len(PIECES)].format(i=i) for i in range(18000))
    body += "-- padding, so that the file is streamed\n" * (engine.LOOSE_STREAM_BYTES // 40)
    path = tmp_path / "big.sql"
    path.write_text(body)
    assert path.stat().st_size > engine.LOOSE_STREAM_BYTES
    by_file = run_pgshift(["lint", "-o", "json", str(path)], cwd=tmp_path)
    by_stdin = subprocess.run([*PGSHIFT, "lint", "-o", "json", "-"], cwd=tmp_path, input=body, capture_output=True,
                              text=True, timeout=120)
    assert by_file.returncode == by_stdin.returncode == 1, by_file.stderr
    assert by_file.stdout.replace(str(path), "<stdin>") == by_stdin.stdout

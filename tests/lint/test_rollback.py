"""Down parts are linted for the locks a rollback takes; they are judged, never replayed into
the schema model, and the rules about dropping what the up part added do not apply to them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.lint.test_cli import run, write

MIGRATIONS = {
    "001_users.sql": """-- pgshift:up
CREATE TABLE users (id bigint PRIMARY KEY, email text);
-- pgshift:down
DROP TABLE users;
""",
    "002_index.sql": """-- pgshift:no-transaction
-- pgshift:up
CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
-- pgshift:down
DROP INDEX users_email_idx;
""",
    "003_note.sql": """-- pgshift:up
ALTER TABLE users ADD COLUMN note text;
-- pgshift:down
ALTER TABLE users DROP COLUMN note;
""",
    "004_note_index.sql": """-- pgshift:no-transaction
-- pgshift:up
CREATE INDEX CONCURRENTLY users_note_idx ON users (note);
-- pgshift:down
-- pgshift:ignore PS002 -- users_note_idx is built on a column no query reads yet
DROP INDEX users_note_idx;
""",
}


def _findings(tmp_path: Path, *flags: str) -> list[dict[str, object]]:
    folder = write(tmp_path / "migrations", MIGRATIONS)
    result = run([str(folder), "-o", "json", "--pg-version", "16", *flags], tmp_path)
    assert result.returncode in (0, 1), result.stderr
    findings: list[dict[str, object]] = json.loads(result.stdout)["findings"]
    return findings


def test_a_rollback_that_locks_the_table_is_reported_as_such(tmp_path: Path) -> None:
    down = [f for f in _findings(tmp_path) if f["part"] == "down"]
    active = [f for f in down if not f["suppressed"]]
    assert [(f["rule"], Path(str(f["file"])).name, f["line"]) for f in active] == [("PS002", "002_index.sql", 5)]
    assert str(active[0]["message"]).startswith("On rollback (down part): ")
    assert active[0]["lock"] == "ACCESS EXCLUSIVE"
    # The suppression in 004's down part is used there, so it is not reported as unused.
    assert [f["rule"] for f in down if f["suppressed"]] == ["PS002"]
    assert not any(f["name"] == "unused-suppression" for f in _findings(tmp_path))


def test_dropping_what_the_up_part_added_is_not_a_finding_in_a_down_part(tmp_path: Path) -> None:
    rules = {str(f["rule"]) for f in _findings(tmp_path) if f["part"] == "down"}
    assert not rules & {"PS019", "PS020"}  # drop column / drop table: what a down part is for


def test_no_down_lints_the_way_up_only(tmp_path: Path) -> None:
    findings = _findings(tmp_path, "--no-down")
    assert all(f["part"] == "up" for f in findings)
    # Without the down part its suppression matches nothing, and says so.
    assert any(f["name"] == "unused-suppression" for f in findings)


def test_fix_leaves_down_parts_alone(tmp_path: Path) -> None:
    """--fix moves a blocking statement into a follow-up migration that runs on the way up; done to
    a down statement, that would drop the index while migrating forward."""
    folder = write(tmp_path / "migrations", {
        "001_users.sql": MIGRATIONS["001_users.sql"],
        "002_note.sql": "-- pgshift:up\nALTER TABLE users ADD COLUMN note text;\n"
                        "-- pgshift:down\nDROP INDEX IF EXISTS users_note_idx;\nALTER TABLE users DROP COLUMN note;\n",
    })
    before = {p.name: p.read_text() for p in folder.iterdir()}
    result = run([str(folder), "--fix", "-o", "json", "--pg-version", "16"], tmp_path)
    assert {p.name: p.read_text() for p in folder.iterdir()} == before, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert ("PS002", "down") in {(f["rule"], f["part"]) for f in findings}  # reported, not rewritten

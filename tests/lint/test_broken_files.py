"""`pgshift lint` on a folder with one file that does not parse (issue #11): that file is reported
(exit 2) and every other file is linted by its own format's rules, with exactly the findings it
has without the bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lint.test_cli import run

# (version, name, up, down) of the valid migrations: findings on both parts.
VALID = [
    (1, "users", "CREATE TABLE users (id bigint PRIMARY KEY, email text);", "DROP TABLE users;"),
    (2, "index", "CREATE INDEX users_email_idx ON users (email);", "DROP INDEX users_email_idx;"),
    (4, "email", "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
     "ALTER TABLE users ALTER COLUMN email TYPE varchar(10);"),
]
BROKEN = {
    # The down part has a stray line of notes; its up part is valid (and linted).
    "down": (3, "audit", "CREATE TABLE audit (id int);\nCREATE INDEX audit_id_idx ON users (id);",
             "- Drop indexes\nDROP TABLE audit;"),
    # The up part does not parse; the statement after the broken one is still checked.
    "up": (3, "audit", "CREATE TABLE audit (id int;\nCREATE INDEX users_id_idx ON users (id);",
           "DROP TABLE audit;"),
}


def _write(folder: Path, fmt: str, version: int, name: str, up: str, down: str) -> tuple[str, int]:
    """Write one migration; (the file holding the down part, the line its down part starts on)."""
    if fmt == "golang-migrate":
        (folder / f"{version:06d}_{name}.up.sql").write_text(up + "\n")
        (folder / f"{version:06d}_{name}.down.sql").write_text(down + "\n")
        return f"{version:06d}_{name}.down.sql", 1
    up_marker, down_marker = {"native": ("-- pgshift:up", "-- pgshift:down"),
                              "dbmate": ("-- migrate:up", "-- migrate:down"),
                              "goose": ("-- +goose Up", "-- +goose Down")}[fmt]
    stem = f"2024010100000{version}" if fmt == "dbmate" else f"{version:05d}"
    text = f"{up_marker}\n{up}\n{down_marker}\n{down}\n"
    (folder / f"{stem}_{name}.sql").write_text(text)
    return f"{stem}_{name}.sql", len(up.splitlines()) + 3


def _lint(folder: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    result = run(["-o", "json", str(folder)], tmp_path)
    return result.returncode, json.loads(result.stdout)


def _findings(data: dict[str, Any], *, without: str = "<none>") -> list[tuple[Any, ...]]:
    """Findings outside the files of migration ``without`` (by name: golang-migrate has two files)."""
    return sorted((Path(f["file"]).name, f["line"], f["column"], f["rule"], f["severity"], f["message"])
                  for f in data["findings"] if f"_{without}." not in Path(f["file"]).name)


@pytest.mark.parametrize("fmt", ["native", "dbmate", "golang-migrate", "goose"])
@pytest.mark.parametrize("broken", ["down", "up"])
def test_one_bad_file_is_reported_and_every_other_file_linted_by_its_format(
    tmp_path: Path, fmt: str, broken: str
) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    for folder in (clean, dirty):
        folder.mkdir()
        for migration in VALID:
            _write(folder, fmt, *migration)
    bad_file, down_line = _write(dirty, fmt, *BROKEN[broken])

    code, expected = _lint(clean, tmp_path)
    assert code == 1 and expected["parse_errors"] == []
    # The valid files' down parts are linted as rollbacks, not as ups.
    assert any(f["message"].startswith("On rollback (down part)") for f in expected["findings"])

    code, data = _lint(dirty, tmp_path)
    assert code == 2
    [problem] = data["parse_errors"]
    assert Path(problem["file"]).name == (bad_file if broken == "down" else bad_file.replace(".down.", ".up."))
    assert _findings(data, without="audit") == _findings(expected)
    own = {f["rule"] for f in data["findings"] if "_audit." in f["file"]}
    assert "PS001" in own  # the bad file's valid up statements are still linted
    if broken == "down":
        assert problem["line"] == down_line and "in the down part" in problem["message"]
    else:
        assert problem["line"] == (1 if fmt == "golang-migrate" else 2)
        assert "down part" not in problem["message"]


def test_a_dbmate_file_without_a_down_marker_is_reported_and_the_rest_linted(tmp_path: Path) -> None:
    """dbmate 2.36 takes an indented '   -- migrate:down' for a comment inside the up section, so
    the file has no down block; dbmate refuses that one migration, lint reports that one file."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in VALID:
        _write(folder, "dbmate", *migration)
    bad = folder / "20240101000003_audit.sql"
    bad.write_text("-- migrate:up\nCREATE TABLE audit (id int);\n   -- migrate:down\nDROP TABLE audit;\n")
    code, data = _lint(folder, tmp_path)
    assert code == 2
    [problem] = data["parse_errors"]
    assert problem["file"] == str(bad) and "has no '-- migrate:down' marker" in problem["message"]
    assert {Path(f["file"]).name for f in data["findings"]} == {"20240101000002_index.sql",
                                                                "20240101000004_email.sql"}


def test_a_parse_error_is_placed_where_the_parser_stopped_as_migrate_places_it(tmp_path: Path) -> None:
    """lint said 3:1 (the statement's start) where `migrate` said 3:52 for the same broken file."""
    from pgshift import api
    from pgshift.config import Settings

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_a.sql").write_text("-- pgshift:up\nCREATE TABLE users (id bigint PRIMARY KEY);\n"
                                      "ALTER TABLE users ADD COLUMN x int NOT NULL DEFAULT;\n"
                                      "SELECT 1,\n  FROM users;\n-- pgshift:down\nDROP TABLE users;\n")
    report = api.lint(Settings(base_dir=tmp_path, migrations_dir=str(folder)), [str(folder)],
                      api.LintOptions()).report
    assert sorted((p.line, p.column) for p in report.parse_errors) == [(3, 52), (5, 3)]

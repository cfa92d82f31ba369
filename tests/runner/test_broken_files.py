"""A file that does not parse blocks only its own migration (issue #11): a broken down part warns
in status, migrate and adopt and refuses only a rollback through it; a broken up part refuses
only a migrate that would run it. Through the real CLI on a real server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.db.test_foreign_history import DBMATE_DDL, GOLANG_MIGRATE_DDL
from tests.helpers import run_pgshift

Conn = psycopg.Connection[tuple[object, ...]]
BROKEN_DOWN = "- Drop indexes\nDROP TABLE b;\n"  # a stray line of notes in the rollback


@dataclass
class Folder:
    versions: list[str]
    broken_file: str  # file name holding the broken down part of the second migration
    broken_line: int


def _native(folder: Path) -> Folder:
    for version, table in (("1", "a"), ("3", "c")):
        (folder / f"{version}_{table}.sql").write_text(
            f"-- pgshift:up\nCREATE TABLE {table} (id int);\n-- pgshift:down\nDROP TABLE {table};\n")
    (folder / "2_b.sql").write_text("-- pgshift:up\nCREATE TABLE b (id int);\n-- pgshift:down\n" + BROKEN_DOWN)
    return Folder(["1", "2", "3"], "2_b.sql", 4)


def _dbmate(folder: Path) -> Folder:
    for version, table in (("20240101000001", "a"), ("20240101000003", "c")):
        (folder / f"{version}_{table}.sql").write_text(
            f"-- migrate:up\nCREATE TABLE {table} (id int);\n\n-- migrate:down\nDROP TABLE {table};\n")
    (folder / "20240101000002_b.sql").write_text(
        "-- migrate:up\nCREATE TABLE b (id int);\n\n-- migrate:down\n" + BROKEN_DOWN)
    return Folder(["20240101000001", "20240101000002", "20240101000003"], "20240101000002_b.sql", 5)


def _golang_migrate(folder: Path) -> Folder:
    for version, table in (("000001", "a"), ("000002", "b"), ("000003", "c")):
        (folder / f"{version}_{table}.up.sql").write_text(f"CREATE TABLE {table} (id int);\n")
        (folder / f"{version}_{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    (folder / "000002_b.down.sql").write_text(BROKEN_DOWN)
    return Folder(["1", "2", "3"], "000002_b.down.sql", 1)


def _goose(folder: Path) -> Folder:
    for version, table in (("00001", "a"), ("00003", "c")):
        (folder / f"{version}_{table}.sql").write_text(
            f"-- +goose Up\nCREATE TABLE {table} (id int);\n-- +goose Down\nDROP TABLE {table};\n")
    (folder / "00002_b.sql").write_text("-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\n" + BROKEN_DOWN)
    return Folder(["1", "2", "3"], "00002_b.sql", 4)


def _flyway(folder: Path) -> Folder:
    for version, table in (("1", "a"), ("2", "b"), ("3", "c")):
        (folder / f"V{version}__{table}.sql").write_text(f"CREATE TABLE {table} (id int);\n")
        (folder / f"U{version}__{table}.sql").write_text(f"DROP TABLE {table};\n")
    (folder / "U2__b.sql").write_text(BROKEN_DOWN)
    return Folder(["1", "2", "3"], "U2__b.sql", 1)


FORMATS = {"native": _native, "dbmate": _dbmate, "golang-migrate": _golang_migrate, "goose": _goose,
           "flyway": _flyway}


def _tables(conn: Conn) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows} - {"schema_migrations"}


def _ledger(conn: Conn) -> dict[str, str]:
    return {str(v): str(s) for v, s in conn.execute("SELECT version, status FROM pgshift.migrations").fetchall()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_broken_down_part_warns_and_refuses_only_the_rollback_through_it(
    tmp_path: Path, db_url: str, conn: Conn, fmt: str
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    case = FORMATS[fmt](folder)
    one, two, three = case.versions
    where = f"{folder / case.broken_file}:{case.broken_line}:"

    status = run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["format"] == fmt and data["pending"] == case.versions
    [warning] = data["warnings"]
    assert warning.startswith(where) and "the down part of" in warning and "rollback" in warning
    assert [m["reversible"] for m in data["migrations"]] == [True, False, True]
    assert data["migrations"][1]["down_error"].startswith(where)

    migrated = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"warning: {where}" in migrated.stderr
    assert _tables(conn) == {"a", "b", "c"}

    tty_status = run_pgshift(["status"], cwd=tmp_path, url=db_url)
    assert tty_status.returncode == 0 and f"warning: {where}" in tty_status.stderr

    # Rolling back two steps would pass through the broken part: refused before anything runs,
    # with a hint that works.
    refused = run_pgshift(["rollback", "--steps", "2"], cwd=tmp_path, url=db_url)
    assert refused.returncode == 7, refused.stderr
    assert where in refused.stderr and "Nothing was rolled back" in refused.stderr
    assert f"pgshift rollback --to {two}" in refused.stderr
    assert _tables(conn) == {"a", "b", "c"}

    newer = run_pgshift(["rollback", "--to", two], cwd=tmp_path, url=db_url)
    assert newer.returncode == 0, newer.stderr
    assert _tables(conn) == {"a", "b"} and _ledger(conn)[three] == "rolled_back"

    through = run_pgshift(["rollback"], cwd=tmp_path, url=db_url)
    assert through.returncode == 7 and where in through.stderr, through.stderr
    assert "--to" not in through.stderr  # nothing newer to roll back alone
    assert _tables(conn) == {"a", "b"} and _ledger(conn)[two] == "applied"
    assert one in _ledger(conn)


@pytest.mark.parametrize("tool", ["dbmate", "golang-migrate"])
def test_adopt_goes_on_with_a_broken_down_part(tmp_path: Path, db_url: str, conn: Conn, tool: str) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    case = FORMATS[tool](folder)
    if tool == "dbmate":
        conn.execute(DBMATE_DDL)
        conn.execute("INSERT INTO schema_migrations VALUES ('20240101000001'), ('20240101000002')")
    else:
        conn.execute(GOLANG_MIGRATE_DDL)
        conn.execute("INSERT INTO schema_migrations VALUES (2, false)")
    adopted = run_pgshift(["adopt", "--from", tool, "--json"], cwd=tmp_path, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    report = json.loads(adopted.stdout)
    assert report["adopted"] == case.versions[:2] and report["pending"] == case.versions[2:]
    assert report["warnings"][0].startswith(f"{folder / case.broken_file}:{case.broken_line}:")
    tty = run_pgshift(["adopt", "--from", tool], cwd=tmp_path, url=db_url)
    assert tty.returncode == 0 and "warning:" in tty.stderr, tty.stderr
    # The adopted checksum is the file's: the broken file is not reported as edited.
    status = run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url)
    assert json.loads(status.stdout)["problems"] == []


def test_a_broken_up_part_refuses_only_a_migrate_that_would_run_it(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    _dbmate(folder)
    bad = folder / "20240101000003_c.sql"
    bad.write_text("-- migrate:up\nCREATE TABLE c (id int;\n-- migrate:down\nDROP TABLE c;\n")

    status = run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["warnings"][-1].startswith(f"{bad}:2:")

    # Refused before anything runs (not half way through the deploy), naming file:line, with a
    # hint that works.
    refused = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert refused.returncode == 7 and f"{bad}:2:" in refused.stderr, refused.stderr
    assert "pgshift migrate --to 20240101000002" in refused.stderr
    assert _tables(conn) == set()
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert dry.returncode == 7 and f"{bad}:2:" in dry.stderr

    before = run_pgshift(["migrate", "--to", "20240101000002"], cwd=tmp_path, url=db_url)
    assert before.returncode == 0, before.stderr
    assert _tables(conn) == {"a", "b"}


def test_an_applied_migration_whose_up_part_no_longer_parses_does_not_block_status(
    tmp_path: Path, db_url: str, conn: Conn
) -> None:
    """dbmate applied 1 and 2 (it never parses SQL); pgshift's parser refuses 2's up part. Adopt,
    status and migrating 3 still work; only rolling back through 2 is refused."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    _dbmate(folder)
    (folder / "20240101000002_b.sql").write_text("-- migrate:up\nCREATE TABLE b (id int;\n-- migrate:down\n")
    conn.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    conn.execute(DBMATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES ('20240101000001'), ('20240101000002')")

    adopted = run_pgshift(["adopt", "--from", "dbmate", "--json"], cwd=tmp_path, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["adopted"] == ["20240101000001", "20240101000002"]
    status = run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["problems"] == [] and json.loads(status.stdout)["pending"] == ["20240101000003"]

    migrated = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert _tables(conn) == {"a", "b", "c"}
    assert run_pgshift(["rollback"], cwd=tmp_path, url=db_url).returncode == 0
    through = run_pgshift(["rollback"], cwd=tmp_path, url=db_url)
    assert through.returncode == 7 and "cannot roll back 20240101000002 b" in through.stderr, through.stderr
    assert _tables(conn) == {"a", "b"}

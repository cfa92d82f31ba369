"""The readers for other tools' migration folders, on real-looking sample folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift.errors import MigrationSourceError, SqlParseError
from pgshift.migrations.files import lines_containing
from pgshift.migrations.formats import dbmate, flyway, golang_migrate, goose, prisma
from pgshift.migrations.loader import detect_format, load_migrations
from pgshift.migrations.model import Migration

SAMPLES = Path(__file__).parent / "samples"
PRISMA = SAMPLES / "prisma" / "prisma" / "migrations"
FLYWAY = SAMPLES / "flyway" / "sql"
DBMATE = SAMPLES / "dbmate" / "db" / "migrations"
GOOSE = SAMPLES / "goose" / "migrations"
GOLANG = SAMPLES / "golang_migrate" / "migrations"


def by_version(migrations: list[Migration]) -> dict[str, Migration]:
    return {m.version: m for m in migrations}


def checked(migrations: list[Migration]) -> list[Migration]:
    """Raise the first file's own error: the readers keep it on that migration (one broken file
    blocks only its own migration), and these tests check what the error says."""
    for m in migrations:
        if m.error is not None:
            raise m.error
    return migrations


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        (PRISMA, "prisma"),
        (SAMPLES / "prisma", "prisma"),
        (FLYWAY, "flyway"),
        (DBMATE, "dbmate"),
        (GOOSE, "goose"),
        (GOLANG, "golang-migrate"),
    ],
)
def test_detect_format_picks_each_tool(folder: Path, expected: str) -> None:
    assert detect_format(folder) == expected
    fmt, migrations = load_migrations(folder)
    assert fmt == expected
    assert migrations and all(m.source_format == expected for m in migrations)


def test_native_folder_is_not_taken_for_dbmate_or_goose(tmp_path: Path) -> None:
    text = "-- pgshift:up\nCREATE TABLE t (id int);\n-- pgshift:down\nDROP TABLE t;\n"
    write(tmp_path, "20240101000000_init.sql", text)
    assert detect_format(tmp_path) == "native"


# ---------------------------------------------------------------- Prisma


def test_prisma_sample() -> None:
    migrations = prisma.load(SAMPLES / "prisma")
    assert [m.version for m in migrations] == ["20240101120000", "20240102090000", "20240103080000"]
    init, touch, placeholder = migrations
    assert init.name == "init"
    assert init.path.parent.name == "20240101120000_init"  # Prisma's migration_name
    assert all(m.down is None and not m.reversible for m in migrations)
    assert all(m.transactional for m in migrations)
    # The comment "-- CreateIndex; unique, ..." holds a semicolon and must not split anything.
    assert [s.sql.split()[0:2] for s in init.up] == [["CREATE", "TABLE"], ["CREATE", "UNIQUE"]]
    assert [(s.line, s.column, s.index) for s in init.up] == [(2, 1, 0), (11, 1, 1)]
    assert touch.up[0].sql.startswith("CREATE FUNCTION touch_updated_at()")
    assert touch.up[0].sql.endswith("$$ LANGUAGE plpgsql")
    assert "NEW.updated_at := now();" in touch.up[0].sql
    assert touch.up[1].line == 9
    # Prisma's "-- This is an empty migration." is valid and has nothing to run.
    assert placeholder.up == []


def test_prisma_checksum_changes_with_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "migration_lock.toml", 'provider = "postgresql"\n')
    file = write(folder, "20240101000000_a/migration.sql", "CREATE TABLE a (id int);\n")
    before = prisma.load(folder)[0].checksum
    file.write_text("CREATE TABLE a (id bigint);\n")
    assert prisma.load(folder)[0].checksum != before


def test_prisma_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "migration_lock.toml", 'provider = "postgresql"\n')
    empty = write(folder, "20240101000000_a/migration.sql", "  \n")
    with pytest.raises(MigrationSourceError, match=f"{empty}.*empty"):
        checked(prisma.load(folder))
    empty.write_text("CREATE TABLE a (id int);\n")
    (folder / "20240102000000_b").mkdir()
    with pytest.raises(MigrationSourceError, match=r"20240102000000_b has no migration\.sql"):
        checked(prisma.load(folder))
    bad = write(folder, "20240102000000_b/migration.sql", "CREATE TABLE b (id int;\n")
    with pytest.raises(SqlParseError) as info:
        checked(prisma.load(folder))
    assert info.value.file == str(bad) and info.value.line == 1
    bad.write_text("SELECT 1;\n")
    write(folder, "20240102000000_c/migration.sql", "SELECT 2;\n")
    with pytest.raises(MigrationSourceError, match="Two migrations have version 20240102000000"):
        checked(prisma.load(folder))


def test_prisma_refuses_other_providers(tmp_path: Path) -> None:
    write(tmp_path, "migration_lock.toml", 'provider = "mysql"\n')
    write(tmp_path, "20240101000000_a/migration.sql", "SELECT 1;\n")
    with pytest.raises(MigrationSourceError, match="'mysql', not PostgreSQL"):
        checked(prisma.load(tmp_path))


# ---------------------------------------------------------------- Flyway


def test_flyway_sample() -> None:
    migrations = flyway.load(FLYWAY)
    assert [m.version for m in migrations] == ["1", "1.1", "2", "10", "R__users_view"]
    found = by_version(migrations)
    assert found["1"].name == "Create users"
    assert found["1.1"].name == "Add email index"
    # V1_1__...sql.conf says executeInTransaction=false; V10 says it in a comment line.
    assert not found["1.1"].transactional
    assert not found["10"].transactional
    assert found["1"].transactional and found["2"].transactional
    assert found["10"].path.parent.name == "later"  # subfolders are scanned, like Flyway
    assert found["10"].up[0].line == 2
    touch = found["2"]
    assert touch.up[0].sql.endswith("$body$ LANGUAGE plpgsql")
    assert touch.up[1].line == 8
    assert touch.down is not None
    assert [s.sql for s in touch.down] == ["DROP TRIGGER users_touch ON users", "DROP FUNCTION touch_updated_at()"]
    assert touch.down[0].file.endswith("U2__touch_function.sql")
    assert found["1"].down is None
    view = found["R__users_view"]
    assert view.kind == "repeatable" and view.name == "users view" and view.down is None
    # The comment "-- Users; the first table" does not split the CREATE TABLE.
    assert len(found["1"].up) == 1 and found["1"].up[0].line == 2


def test_flyway_checksum_covers_undo_and_conf(tmp_path: Path) -> None:
    write(tmp_path, "V1__a.sql", "CREATE TABLE a (id int);\n")
    undo = write(tmp_path, "U1__a.sql", "DROP TABLE a;\n")
    before = flyway.load(tmp_path)[0].checksum
    undo.write_text("DROP TABLE IF EXISTS a;\n")
    after_undo = flyway.load(tmp_path)[0].checksum
    write(tmp_path, "V1__a.sql.conf", "executeInTransaction=false\n")
    after_conf = flyway.load(tmp_path)[0]
    assert len({before, after_undo, after_conf.checksum}) == 3
    assert not after_conf.transactional


def test_flyway_bad_input(tmp_path: Path) -> None:
    write(tmp_path, "V1__a.sql", "SELECT 1;\n")
    dup = write(tmp_path, "V1.0__b.sql", "SELECT 2;\n")
    with pytest.raises(MigrationSourceError, match=f"Two migrations have version 1.*{dup.name}"):
        checked(flyway.load(tmp_path))
    dup.unlink()
    empty = write(tmp_path, "V2__c.sql", "")
    with pytest.raises(MigrationSourceError, match=f"{empty}.*empty"):
        checked(flyway.load(tmp_path))
    empty.write_text("SELECT 3;\n")
    orphan = write(tmp_path, "U3__x.sql", "SELECT 1;\n")
    with pytest.raises(MigrationSourceError, match=f"undo script {orphan} has no versioned"):
        checked(flyway.load(tmp_path))
    orphan.unlink()
    callback = write(tmp_path, "afterMigrate.sql", "GRANT SELECT ON a TO reader;\n")
    with pytest.raises(MigrationSourceError, match=f"{callback} is a Flyway callback"):
        checked(flyway.load(tmp_path))
    callback.unlink()
    stray = write(tmp_path, "v3__lowercase.sql", "SELECT 1;\n")
    with pytest.raises(MigrationSourceError, match=f"{stray} is not named like a Flyway migration"):
        checked(flyway.load(tmp_path))
    stray.unlink()
    conf = write(tmp_path, "V2__c.sql.conf", "shouldExecute=false\n")
    with pytest.raises(MigrationSourceError, match=f"{conf}:1: unsupported Flyway script setting"):
        checked(flyway.load(tmp_path))
    conf.unlink()
    write(tmp_path, "V4__bad.sql", "SELECT 1;\nALTER TABLE;\n")
    with pytest.raises(SqlParseError, match=r"V4__bad.sql:2:"):
        checked(flyway.load(tmp_path))


# ---------------------------------------------------------------- dbmate


def test_dbmate_sample() -> None:
    migrations = dbmate.load(DBMATE)
    assert [m.version for m in migrations] == ["20240101120000", "20240102120000", "20240103120000"]
    users, touch, index = migrations
    assert users.name == "create_users"
    assert [(s.line, s.column) for s in users.up] == [(3, 1)]  # past "-- users; the first table"
    assert users.down is not None and users.down[0].sql == "drop table users"
    assert users.down[0].line == 10
    assert touch.up[0].sql.endswith("$$ language plpgsql") and touch.up[1].line == 9
    assert touch.down is not None and len(touch.down) == 2
    assert users.transactional and touch.transactional
    assert not index.transactional  # -- migrate:up transaction:false
    assert index.down == []  # empty down section: an explicit no-op, as in dbmate


def test_dbmate_bad_input(tmp_path: Path) -> None:
    no_up = write(tmp_path, "20240101000000_a.sql", "create table a (id int);\n-- migrate:down\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up} has no '-- migrate:up' marker"):
        checked(dbmate.load(tmp_path))
    no_up.write_text("-- migrate:up\ncreate table a (id int);\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up} has no '-- migrate:down' marker"):
        checked(dbmate.load(tmp_path))
    no_up.write_text("select 1;\n-- migrate:up\ncreate table a (id int);\n-- migrate:down\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:1: SQL before"):
        checked(dbmate.load(tmp_path))
    no_up.write_text("-- migrate:down\n-- migrate:up\nselect 1;\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:1: '-- migrate:down' comes before"):
        checked(dbmate.load(tmp_path))
    no_up.write_text("-- migrate:up transactions:false\nselect 1;\n-- migrate:down\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:1: unknown dbmate option"):
        checked(dbmate.load(tmp_path))
    no_up.write_text("-- migrate:up\nselect 1;\n-- migrate:down\n")
    dup = write(tmp_path, "20240101000000_b.sql", "-- migrate:up\nselect 2;\n-- migrate:down\n")
    with pytest.raises(MigrationSourceError, match="Two migrations have version 20240101000000"):
        checked(dbmate.load(tmp_path))
    dup = dup.rename(tmp_path / "20240101000001_b.sql")  # a duplicate version is checked even for a broken file
    dup.write_text("")
    with pytest.raises(MigrationSourceError, match=f"{dup}.*empty"):
        checked(dbmate.load(tmp_path))
    dup.unlink()
    write(tmp_path, "20240102000000_c.sql", "-- migrate:up\n\nselect from from;\n-- migrate:down\n")
    with pytest.raises(SqlParseError) as info:
        checked(dbmate.load(tmp_path))
    assert info.value.file.endswith("20240102000000_c.sql") and info.value.line == 3


# ---------------------------------------------------------------- goose


def test_goose_sample() -> None:
    migrations = goose.load(GOOSE)
    assert [m.version for m in migrations] == ["1", "2", "3", "10"]
    users, touch, index, status = migrations
    assert users.name == "create_users" and users.up[0].line == 3
    assert users.down is not None and users.down[0].sql == "DROP TABLE users"
    # The StatementBegin/End block is one statement, verbatim, starting at its first SQL line.
    function = touch.up[0]
    assert (function.line, function.column, function.index) == (3, 1, 0)
    assert function.sql == (
        "CREATE FUNCTION touch_updated_at() RETURNS trigger AS $$\nBEGIN\n"
        "  NEW.updated_at := now();\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql"
    )
    assert touch.up[1].sql.startswith("CREATE TRIGGER") and touch.up[1].line == 10
    assert touch.down is not None
    assert [(s.sql, s.line, s.index) for s in touch.down] == [
        ("DROP TRIGGER users_touch ON users", 14, 0),
        ("DROP FUNCTION touch_updated_at()", 16, 1),
    ]
    assert users.transactional and touch.transactional
    assert not index.transactional  # -- +goose NO TRANSACTION
    assert status.down is None  # lower-case "-- +goose up", no Down part


def test_goose_bad_input(tmp_path: Path) -> None:
    no_up = write(tmp_path, "00001_a.sql", "CREATE TABLE a (id int);\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:1: SQL before the '-- \\+goose Up'"):
        checked(goose.load(tmp_path))
    no_up.write_text("-- just a comment\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up} has no '-- \\+goose Up' annotation"):
        checked(goose.load(tmp_path))
    no_up.write_text("-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:2: StatementBegin without"):
        checked(goose.load(tmp_path))
    no_up.write_text("-- +goose Up\n-- +goose ENVSUB ON\nSELECT '${X}';\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:2: .*ENVSUB ON"):
        checked(goose.load(tmp_path))
    no_up.write_text("-- +goose Up\n-- +goose Sideways\nSELECT 1;\n")
    with pytest.raises(MigrationSourceError, match=f"{no_up}:2: unknown goose annotation"):
        checked(goose.load(tmp_path))
    no_up.write_text("-- +goose Up\nSELECT 1;\n")
    write(tmp_path, "1_b.sql", "-- +goose Up\nSELECT 2;\n")
    with pytest.raises(MigrationSourceError, match="Two migrations have version 1:"):
        checked(goose.load(tmp_path))
    (tmp_path / "1_b.sql").unlink()
    empty = write(tmp_path, "00002_c.sql", "\n")
    with pytest.raises(MigrationSourceError, match=f"{empty}.*empty"):
        checked(goose.load(tmp_path))
    empty.write_text("-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$\n"
                     "LANGUAGE sql oops;\n-- +goose StatementEnd\n")
    with pytest.raises(SqlParseError) as info:
        checked(goose.load(tmp_path))
    assert info.value.file == str(empty) and info.value.line == 4
    empty.unlink()
    go_file = write(tmp_path, "00003_backfill.go", "package migrations\n")
    with pytest.raises(MigrationSourceError, match=f"{go_file} is a goose Go migration"):
        checked(goose.load(tmp_path))


# ---------------------------------------------------------------- golang-migrate


def test_golang_migrate_sample() -> None:
    migrations = golang_migrate.load(GOLANG)
    assert [m.version for m in migrations] == ["1", "2", "10"]
    users, touch, status = migrations
    assert users.name == "create_users"
    # The file's own BEGIN; ... COMMIT; is dropped: pgshift runs it in its own transaction.
    assert [(s.sql.split()[0], s.line, s.index) for s in users.up] == [("CREATE", 3, 0)]
    assert users.transactional
    assert users.down is not None and users.down[0].file.endswith("000001_create_users.down.sql")
    assert touch.up[0].sql.endswith("$fn$ LANGUAGE plpgsql") and touch.up[1].line == 8
    assert status.down is None


def test_golang_migrate_checksum_covers_down_file(tmp_path: Path) -> None:
    write(tmp_path, "1_a.up.sql", "CREATE TABLE a (id int);\n")
    before = golang_migrate.load(tmp_path)[0].checksum
    write(tmp_path, "1_a.down.sql", "DROP TABLE a;\n")
    assert golang_migrate.load(tmp_path)[0].checksum != before


def test_golang_migrate_bad_input(tmp_path: Path) -> None:
    orphan = write(tmp_path, "000002_b.down.sql", "DROP TABLE b;\n")
    with pytest.raises(MigrationSourceError, match=f"{orphan} has no matching up file"):
        checked(golang_migrate.load(tmp_path))
    orphan.unlink()
    write(tmp_path, "000001_a.up.sql", "SELECT 1;\n")
    dup = write(tmp_path, "1_b.up.sql", "SELECT 2;\n")
    with pytest.raises(MigrationSourceError, match=f"Two migrations have version 1: .* and {dup}"):
        checked(golang_migrate.load(tmp_path))
    dup.write_text("")
    dup.rename(tmp_path / "2_b.up.sql")
    with pytest.raises(MigrationSourceError, match=r"2_b\.up\.sql is empty"):
        checked(golang_migrate.load(tmp_path))
    # A COMMIT inside the file divides it into the transactions golang-migrate ran (blocks): kept.
    (tmp_path / "2_b.up.sql").write_text("SELECT 1;\nCOMMIT;\nSELECT 2;\n")
    assert [s.sql for s in checked(golang_migrate.load(tmp_path))[1].up] == ["SELECT 1", "COMMIT", "SELECT 2"]
    (tmp_path / "2_b.up.sql").write_text("SELECT 1;\nSELEC 2;\n")
    with pytest.raises(SqlParseError, match=r"2_b.up.sql:2:"):
        checked(golang_migrate.load(tmp_path))
    (tmp_path / "2_b.up.sql").unlink()
    stray = write(tmp_path, "notes.sql", "SELECT 1;\n")
    with pytest.raises(MigrationSourceError, match=f"{stray} is not named like a golang-migrate"):
        checked(golang_migrate.load(tmp_path))


def test_dbmate_indented_marker_is_a_comment_in_the_up_section(tmp_path: Path) -> None:
    """Checked against dbmate 2.36.0 (npm package) on PostgreSQL 15: an indented '   -- migrate:down'
    is not a marker. With no other down marker, `dbmate up` applies the migrations before that file
    and stops at it ("dbmate requires each migration to define a down block"); with a real marker
    further down, the indented line and the SQL after it belong to the up section."""
    only = write(tmp_path, "20240101000001_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n   -- migrate:down\n"
                                                   "DROP TABLE a;\n")
    second = write(tmp_path, "20240101000002_b.sql", "-- migrate:up\nCREATE TABLE b (id int);\n  -- migrate:down\n"
                                                     "CREATE TABLE d (id int);\n-- migrate:down\nDROP TABLE b;\n")
    first, both = dbmate.load(tmp_path)  # one bad file does not stop the folder from loading
    assert first.path == only and first.up == [] and first.down is None
    assert first.error is not None and "has no '-- migrate:down' marker" in str(first.error)
    assert both.path == second and both.error is None
    assert [s.sql for s in both.up] == ["CREATE TABLE b (id int)", "CREATE TABLE d (id int)"]
    assert both.down is not None and [s.sql for s in both.down] == ["DROP TABLE b"]


def test_a_down_part_that_does_not_parse_is_kept_as_down_error(tmp_path: Path) -> None:
    write(tmp_path, "20240101000001_a.sql",
          "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\n- Drop indexes\n")
    [migration] = dbmate.load(tmp_path)
    assert migration.error is None and [s.sql for s in migration.up] == ["CREATE TABLE a (id int)"]
    assert migration.down is None and not migration.reversible  # unknown, not an empty no-op
    assert migration.down_error is not None and migration.down_error.line == 4


@pytest.mark.parametrize("fmt", ["native", "dbmate"])
def test_markers_and_statements_keep_their_line_numbers_with_any_line_break(tmp_path: Path, fmt: str) -> None:
    # Markers are numbered as str.splitlines numbers lines (a lone \r or a form feed ends a line),
    # statements as the splitter does (counting \n), as before the readers stopped splitting lines.
    up, down = ("-- pgshift:up", "-- pgshift:down") if fmt == "native" else ("-- migrate:up", "-- migrate:down")
    text = f"-- head\r\n{up}\r\fSELECT 1;\fSELECT 2;\n\r\nSELECT 3;\r{down}\r\nSELECT 4;\n"
    (tmp_path / "1_x.sql").write_bytes(text.encode())
    _, [migration] = load_migrations(tmp_path, fmt)
    assert migration.error is None, migration.error
    assert [(s.sql, s.line, s.column) for s in migration.up] == [
        ("SELECT 1", 3, 2), ("SELECT 2", 3, 12), ("SELECT 3", 5, 1)]
    assert [(s.sql, s.line, s.column) for s in migration.down or []] == [("SELECT 4", 9, 1)]
    # An error on a marker line names the line after lone \r and form feed breaks (line 8, or for a
    # second dbmate down marker the original one, now line 9).
    bad, line = ("-- pgshift:bogus", 8) if fmt == "native" else ("-- migrate:down", 9)
    (tmp_path / "1_x.sql").write_bytes(text.replace("SELECT 3;\r", f"SELECT 3;\r{bad}\r").encode())
    _, [broken] = load_migrations(tmp_path, fmt)
    assert broken.error is not None and str(broken.error).startswith(f"{tmp_path / '1_x.sql'}:{line}: "), broken.error


def test_lines_containing_finds_the_lines_str_splitlines_gives() -> None:
    breaks = ["\n", "\r\n", "\r", "\f", "\v", "\x1c", "\x85", "\u2028", "\u2029"]
    texts = ["", "k:", "k:\n", "a\nk:", "\nk:\n\n", "k: k:\r\nx\rk:"] + [
        f"a{b}k: 1{b}{b}b k:{c}k:" for b in breaks for c in ("\r\n", "\n", "\r", "")]
    for text in texts:
        expected, position = [], 0
        for number, line in enumerate(text.splitlines(keepends=True), start=1):
            if "k:" in line:
                expected.append((number, position, position + len(line)))
            position += len(line)
        assert list(lines_containing(text, "k:")) == expected, repr(text)

"""ledger.mirror: every migration pgshift applies or rolls back is also recorded in the other
tool's own history table, exactly as that tool leaves it (real server, the real CLI, and the real
dbmate binary for dbmate)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import conninfo

from pgshift.db.foreign_history import read_foreign_history
from pgshift.db.mirror import flyway_checksum, prisma_checksum
from tests.helpers import run_pgshift

Conn = psycopg.Connection[Any]
REPO = Path(__file__).resolve().parents[2]
DBMATE_VERSION = "2.36.0"  # .ci/run installs this one


# -- checksum test vectors -------------------------------------------------------------------
def test_prisma_checksum_vectors() -> None:
    # prisma-engines checksum.rs's own test: render_checksum("hello").
    assert prisma_checksum(b"hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    # sha256("abc") from FIPS 180-2: the script's bytes are hashed as they are.
    assert prisma_checksum(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # read_to_string keeps line endings and a BOM, so both change the stored checksum.
    assert prisma_checksum(b"SELECT 1;\r\n") != prisma_checksum(b"SELECT 1;\n")
    assert prisma_checksum(b"\xef\xbb\xbfhello") != prisma_checksum(b"hello")
    assert len(prisma_checksum(b"")) == 64  # zero-padded hex, never the old unpadded form


def test_flyway_checksum_vectors() -> None:
    # CRC-32's standard check value: crc32("123456789") = 0xCBF43926, stored as Java's (int).
    assert flyway_checksum(b"123456789") == 0xCBF43926 - (1 << 32) == -873187034
    # readLine drops every line break (\n, \r\n, lone \r), so the lines are hashed end to end.
    for text in (b"1234\n56789", b"1234\r\n56789\r\n", b"1234\r56789\n\n", b"\n1234\n\r\n56789"):
        assert flyway_checksum(text) == -873187034, text
    # The BOM is filtered from the first line only.
    assert flyway_checksum(b"\xef\xbb\xbf123456789") == -873187034
    assert flyway_checksum(b"1234\n\xef\xbb\xbf56789") != -873187034
    assert flyway_checksum(b"hello") == 0x3610A686  # positive CRCs stay as they are
    assert flyway_checksum(b"") == 0
    crlf = b"CREATE TABLE t (id int);\r\nINSERT INTO t VALUES (1);\r\n"
    assert flyway_checksum(crlf) == flyway_checksum(crlf.replace(b"\r\n", b"\n"))


# -- helpers ---------------------------------------------------------------------------------
def cli(args: list[str], folder: Path, url: str, tool: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = run_pgshift(args, cwd=folder.parent, url=url,
                         env={"PGSHIFT_LEDGER__MIRROR": tool, "PGSHIFT_MIGRATIONS_DIR": str(folder), **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def rows(conn: Conn, query: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(query).fetchall()]


def table_shape(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    return rows(conn, f"""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""")


def indexes(conn: Conn, table: str) -> list[str]:
    return [r[0] for r in rows(conn, f"SELECT indexdef FROM pg_indexes WHERE tablename = '{table}' ORDER BY 1")]


def adopt_round_trip(folder: Path, url: str, tool: str, conn: Conn) -> list[str]:
    """`pgshift adopt --from tool` into a fresh ledger reads the mirrored table back."""
    result = run_pgshift(["adopt", "--from", tool], cwd=folder.parent, url=url,
                         env={"PGSHIFT_HISTORY_SCHEMA": "fresh_ledger", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert result.returncode == 0, result.stdout + result.stderr
    return [r[0] for r in rows(conn, "SELECT version FROM fresh_ledger.migrations WHERE status = 'applied' "
                                     "ORDER BY version")]


# -- dbmate, with the real dbmate ------------------------------------------------------------
def dbmate_binary() -> str:
    pinned = REPO / ".tools/dbmate/node_modules/.bin/dbmate"  # what .ci/run installs
    found = str(pinned) if pinned.exists() else shutil.which("dbmate")
    if found is None:
        pytest.fail(f"the dbmate binary is needed to check the mirrored table with the real tool: run "
                    f"`npm install --prefix .tools/dbmate dbmate@{DBMATE_VERSION}` (.ci/run does).")
    return found


def dbmate_url(db_url: str) -> str:
    params = conninfo.conninfo_to_dict(db_url)
    user, db, host = str(params.get("user", "postgres")), str(params["dbname"]), str(params.get("host", ""))
    port = str(params.get("port", "5432"))
    if host.startswith("/"):
        return f"postgres://{quote(user)}@/{quote(db)}?socket={quote(host, safe='')}&port={port}&sslmode=disable"
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    return f"postgres://{quote(user)}{password}@{host}:{port}/{quote(db)}?sslmode=disable"


def dbmate_status(folder: Path, db_url: str) -> list[str]:
    done = subprocess.run([dbmate_binary(), "--url", dbmate_url(db_url), "--migrations-dir", str(folder),
                           "--no-dump-schema", "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr  # 1: pending migrations
    return [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("[")]


def write_dbmate(folder: Path) -> None:
    folder.mkdir(parents=True)
    for version, table in (("20240101120000", "a"), ("20240102120000", "b"), ("20240103120000", "c")):
        (folder / f"{version}_create_{table}.sql").write_text(
            f"-- migrate:up\nCREATE TABLE {table} (id int);\n\n-- migrate:down\nDROP TABLE {table};\n")


def test_dbmate_mirror_seen_by_the_real_dbmate(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    cli(["migrate"], folder, db_url, "dbmate")
    assert dbmate_status(folder, db_url) == [
        "[X] 20240101120000_create_a.sql", "[X] 20240102120000_create_b.sql", "[X] 20240103120000_create_c.sql"]
    cli(["rollback"], folder, db_url, "dbmate")
    assert rows(conn, "SELECT version FROM schema_migrations ORDER BY 1") == [("20240101120000",), ("20240102120000",)]
    assert dbmate_status(folder, db_url) == [
        "[X] 20240101120000_create_a.sql", "[X] 20240102120000_create_b.sql", "[ ] 20240103120000_create_c.sql"]
    cli(["migrate"], folder, db_url, "dbmate")
    assert rows(conn, "SELECT version FROM schema_migrations ORDER BY 1") == [
        ("20240101120000",), ("20240102120000",), ("20240103120000",)]
    assert dbmate_status(folder, db_url)[-1] == "[X] 20240103120000_create_c.sql"
    assert adopt_round_trip(folder, db_url, "dbmate", conn) == ["20240101120000", "20240102120000", "20240103120000"]


def test_dbmate_table_is_created_as_dbmate_creates_it(tmp_path: Path, pg_server: Any, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    cli(["migrate", "--to", "20240101120000"], folder, pg_server.url_for(conn.info.dbname), "dbmate")
    ours = table_shape(conn, "schema_migrations"), indexes(conn, "schema_migrations")
    # The real dbmate creates its table in another database; both must be the same.
    other = pg_server.create_database()
    try:
        other_url = pg_server.url_for(other)
        first = tmp_path / "first"
        first.mkdir()
        shutil.copy(folder / "20240101120000_create_a.sql", first)
        done = subprocess.run([dbmate_binary(), "--url", dbmate_url(other_url), "--migrations-dir", str(first),
                               "--no-dump-schema", "migrate"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(other_url, autocommit=True) as theirs:
            assert (table_shape(theirs, "schema_migrations"), indexes(theirs, "schema_migrations")) == ours
            assert rows(theirs, "SELECT version FROM schema_migrations") == rows(
                conn, "SELECT version FROM schema_migrations")
    finally:
        pg_server.drop_database(other)


def test_a_killed_run_is_repaired_by_the_next_one(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    cli(["migrate"], folder, db_url, "dbmate")
    # As if a run died between pgshift's ledger and the mirror: the mirror lost a row, kept a stale one.
    conn.execute("DELETE FROM schema_migrations WHERE version = '20240102120000'")
    conn.execute("UPDATE pgshift.migrations SET status = 'rolled_back', direction = 'down' "
                 "WHERE version = '20240103120000'")
    cli(["migrate", "--to", "20240102120000"], folder, db_url, "dbmate")  # nothing to apply
    assert rows(conn, "SELECT version FROM schema_migrations ORDER BY 1") == [("20240101120000",), ("20240102120000",)]
    assert dbmate_status(folder, db_url)[-1] == "[ ] 20240103120000_create_c.sql"


def test_the_mirror_row_commits_with_its_migration(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    conn.execute("create table schema_migrations (version varchar primary key)")
    conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.version = '20240102120000' THEN RAISE EXCEPTION 'mirror refused'; END IF; "
                 "RETURN NEW; END $$")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON schema_migrations FOR EACH ROW EXECUTE FUNCTION refuse()")
    result = run_pgshift(["migrate"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "dbmate", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert result.returncode == 29, result.stderr
    assert "mirror refused" in result.stderr and "public.schema_migrations" in result.stderr
    # The first migration committed with its mirror row; the second's DDL and ledger row rolled
    # back with the mirror row that could not be written.
    assert rows(conn, "SELECT version FROM schema_migrations") == [("20240101120000",)]
    assert rows(conn, "SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NOT NULL") == [(True, False)]
    assert rows(conn, "SELECT version, status FROM pgshift.migrations ORDER BY 1") == [("20240101120000", "applied")]


# -- goose -----------------------------------------------------------------------------------
def test_goose_mirror(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    folder.mkdir(parents=True)
    for version, table in ((1, "a"), (2, "b"), (3, "c")):
        (folder / f"0000{version}_create_{table}.sql").write_text(
            f"-- +goose Up\nCREATE TABLE {table} (id int);\n-- +goose Down\nDROP TABLE {table};\n")
    cli(["migrate"], folder, db_url, "goose")
    cli(["rollback"], folder, db_url, "goose")
    # goose v3's down deletes the version's rows.
    assert rows(conn, "SELECT id, version_id, is_applied FROM goose_db_version ORDER BY id") == [
        (1, 0, True), (2, 1, True), (3, 2, True)]
    cli(["migrate"], folder, db_url, "goose")
    assert rows(conn, "SELECT id, version_id, is_applied, tstamp IS NOT NULL FROM goose_db_version ORDER BY id") == [
        (1, 0, True, True), (2, 1, True, True), (3, 2, True, True), (5, 3, True, True)]
    assert table_shape(conn, "goose_db_version") == [
        ("id", "integer", True, None),
        ("version_id", "bigint", True, None),
        ("is_applied", "boolean", True, None),
        ("tstamp", "timestamp without time zone", True, "now()"),
    ]
    assert rows(conn, "SELECT attidentity FROM pg_attribute WHERE attrelid = 'goose_db_version'::regclass "
                      "AND attname = 'id'") == [("d",)]  # GENERATED BY DEFAULT AS IDENTITY
    assert indexes(conn, "goose_db_version") == [
        "CREATE UNIQUE INDEX goose_db_version_pkey ON public.goose_db_version USING btree (id)"]
    assert adopt_round_trip(folder, db_url, "goose", conn) == ["1", "2", "3"]


# -- golang-migrate --------------------------------------------------------------------------
def test_golang_migrate_mirror_and_dirty_flag(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "db" / "migrations"
    folder.mkdir(parents=True)
    for version, table in ((1, "a"), (2, "b"), (3, "c")):
        (folder / f"00000{version}_create_{table}.up.sql").write_text(f"CREATE TABLE {table} (id int);\n")
        (folder / f"00000{version}_create_{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    cli(["migrate"], folder, db_url, "golang-migrate")
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == [(3, False)]
    cli(["rollback"], folder, db_url, "golang-migrate")
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    cli(["migrate"], folder, db_url, "golang-migrate")
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == [(3, False)]
    assert table_shape(conn, "schema_migrations") == [
        ("version", "bigint", True, None), ("dirty", "boolean", True, None)]
    # A failing migration leaves the version dirty, as golang-migrate does; fixed and rerun, clean.
    broken = folder / "000004_broken.up.sql"
    broken.write_text("CREATE TABLE d (id int);\nSELECT no_such_column FROM d;\n")
    (folder / "000004_broken.down.sql").write_text("DROP TABLE d;\n")
    failed = run_pgshift(["migrate"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "golang-migrate", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert failed.returncode == 8, failed.stderr
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == [(4, True)]
    broken.write_text("CREATE TABLE d (id int);\n")
    cli(["migrate", "--repair"], folder, db_url, "golang-migrate")
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == [(4, False)]
    assert adopt_round_trip(folder, db_url, "golang-migrate", conn) == ["1", "2", "3", "4"]
    # Rolling everything back leaves golang-migrate's table empty (NilVersion).
    cli(["rollback", "--steps", "4"], folder, db_url, "golang-migrate")
    assert rows(conn, "SELECT version, dirty FROM schema_migrations") == []


# -- Prisma ----------------------------------------------------------------------------------
def write_prisma(root: Path) -> Path:
    folder = root / "prisma" / "migrations"
    folder.mkdir(parents=True)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, body in (("20240101120000_init", "CREATE TABLE a (id int);\n"),
                       ("20240102120000_add_b", "CREATE TABLE b (id int);\r\nCREATE TABLE b2 (id int);\r\n")):
        (folder / name).mkdir()
        (folder / name / "migration.sql").write_bytes(body.encode())
    return folder


def test_prisma_mirror_with_a_failed_attempt(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = write_prisma(tmp_path)
    cli(["migrate", "--to", "20240101120000"], folder, db_url, "prisma")
    broken = folder / "20240103120000_add_c" / "migration.sql"
    broken.parent.mkdir()
    broken.write_text("CREATE TABLE c (id int);\nSELECT nope FROM c;\n")
    failed = run_pgshift(["migrate"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "prisma", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert failed.returncode == 8, failed.stderr
    broken.write_text("\ufeffCREATE TABLE c (id int);\n")
    cli(["migrate", "--repair"], folder, db_url, "prisma")
    found = rows(conn, "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, "
                       "logs, applied_steps_count, length(id) FROM _prisma_migrations ORDER BY started_at")
    sha = {n: prisma_checksum((folder / n / "migration.sql").read_bytes()) for n in
           ("20240101120000_init", "20240102120000_add_b", "20240103120000_add_c")}
    failed_row = found[2]
    assert failed_row[:4] == ("20240103120000_add_c", failed_row[1], False, True)  # resolved --rolled-back
    assert "nope" in failed_row[4] and failed_row[5] == 0
    assert found[:2] + found[3:] == [
        ("20240101120000_init", sha["20240101120000_init"], True, False, None, 1, 36),
        ("20240102120000_add_b", sha["20240102120000_add_b"], True, False, None, 1, 36),
        ("20240103120000_add_c", sha["20240103120000_add_c"], True, False, None, 1, 36),
    ]
    # The CRLF file's checksum is of its bytes as written; the BOM is part of the third.
    assert sha["20240102120000_add_b"] == prisma_checksum(b"CREATE TABLE b (id int);\r\nCREATE TABLE b2 (id int);\r\n")
    assert sha["20240103120000_add_c"] == prisma_checksum(b"\xef\xbb\xbfCREATE TABLE c (id int);\n")
    assert [c[:3] for c in table_shape(conn, "_prisma_migrations")] == [
        ("id", "character varying(36)", True), ("checksum", "character varying(64)", True),
        ("finished_at", "timestamp with time zone", False), ("migration_name", "character varying(255)", True),
        ("logs", "text", False), ("rolled_back_at", "timestamp with time zone", False),
        ("started_at", "timestamp with time zone", True), ("applied_steps_count", "integer", True)]
    assert adopt_round_trip(folder, db_url, "prisma", conn) == ["20240101120000", "20240102120000", "20240103120000"]


def test_prisma_mirror_rollback_removes_the_row(tmp_path: Path, db_url: str, conn: Conn) -> None:
    # Prisma has no down migrations; a folder that has them (pgshift's own) mirrored into
    # _prisma_migrations loses the rolled-back row, so Prisma sees that migration pending.
    folder = tmp_path / "migrations"
    folder.mkdir()
    for version, table in (("1", "a"), ("2", "b")):
        (folder / f"{version}_create_{table}.sql").write_text(
            f"-- pgshift:up\nCREATE TABLE {table} (id int);\n-- pgshift:down\nDROP TABLE {table};\n")
    cli(["migrate"], folder, db_url, "prisma")
    cli(["rollback"], folder, db_url, "prisma")
    assert rows(conn, "SELECT migration_name FROM _prisma_migrations") == [("1_create_a",)]
    cli(["migrate"], folder, db_url, "prisma")
    assert rows(conn, "SELECT migration_name FROM _prisma_migrations ORDER BY 1") == [("1_create_a",), ("2_create_b",)]


# -- Flyway ----------------------------------------------------------------------------------
def test_flyway_mirror_with_undo_and_repeatable(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "sql"
    (folder / "views").mkdir(parents=True)
    (folder / "V1__Create_a.sql").write_bytes(b"\xef\xbb\xbfCREATE TABLE a (id int);\r\n")
    (folder / "V1_1__Create_b.sql").write_text("CREATE TABLE b (id int);\n")
    (folder / "U1_1__Create_b.sql").write_text("DROP TABLE b;\n")
    (folder / "views" / "R__a_view.sql").write_text("CREATE OR REPLACE VIEW av AS SELECT * FROM a;\n")
    cli(["migrate"], folder, db_url, "flyway")
    cli(["rollback"], folder, db_url, "flyway")
    cli(["migrate"], folder, db_url, "flyway")
    user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    v1 = flyway_checksum(b"CREATE TABLE a (id int);\n")  # BOM and CRLF do not count
    assert v1 == flyway_checksum((folder / "V1__Create_a.sql").read_bytes())
    v11 = flyway_checksum(b"CREATE TABLE b (id int);\n")
    u11 = flyway_checksum(b"DROP TABLE b;\n")
    view = flyway_checksum(b"CREATE OR REPLACE VIEW av AS SELECT * FROM a;\n")
    assert rows(conn, 'SELECT "installed_rank", "version", "description", "type", "script", "checksum", '
                      '"installed_by", "success", "execution_time" >= 0, "installed_on" IS NOT NULL '
                      "FROM flyway_schema_history ORDER BY 1") == [
        (1, "1", "Create a", "SQL", "V1__Create_a.sql", v1, user, True, True, True),
        (2, "1.1", "Create b", "SQL", "V1_1__Create_b.sql", v11, user, True, True, True),
        (3, None, "a view", "SQL", "views/R__a_view.sql", view, user, True, True, True),
        (4, "1.1", "Create b", "UNDO_SQL", "U1_1__Create_b.sql", u11, user, True, True, True),
        (5, "1.1", "Create b", "SQL", "V1_1__Create_b.sql", v11, user, True, True, True),
    ]
    assert table_shape(conn, "flyway_schema_history") == [
        ("installed_rank", "integer", True, None), ("version", "character varying(50)", False, None),
        ("description", "character varying(200)", True, None), ("type", "character varying(20)", True, None),
        ("script", "character varying(1000)", True, None), ("checksum", "integer", False, None),
        ("installed_by", "character varying(100)", True, None),
        ("installed_on", "timestamp without time zone", True, "now()"),
        ("execution_time", "integer", True, None), ("success", "boolean", True, None)]
    assert indexes(conn, "flyway_schema_history") == [
        "CREATE INDEX flyway_schema_history_s_idx ON public.flyway_schema_history USING btree (success)",
        "CREATE UNIQUE INDEX flyway_schema_history_pk ON public.flyway_schema_history USING btree (installed_rank)"]
    assert adopt_round_trip(folder, db_url, "flyway", conn) == ["1", "1.1", "R__a_view"]


def test_flyway_mirror_of_a_failed_non_transactional_migration(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "V1__Create_a.sql").write_text("CREATE TABLE a (id int);\n")
    broken = folder / "V2__Index_a.sql"
    broken.write_text("-- flyway:executeInTransaction=false\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"
                      "SELECT nope FROM a;\n")
    failed = run_pgshift(["migrate"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "flyway", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert failed.returncode == 8, failed.stderr
    query = 'SELECT "installed_rank", "version", "type", "checksum", "success" FROM flyway_schema_history ORDER BY 1'
    # Flyway records a failed migration that ran outside a transaction as success = false.
    assert rows(conn, query) == [(1, "1", "SQL", flyway_checksum(b"CREATE TABLE a (id int);"), True),
                                 (2, "2", "SQL", flyway_checksum(broken.read_bytes()), False)]
    broken.write_text("-- flyway:executeInTransaction=false\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n")
    cli(["migrate", "--repair"], folder, db_url, "flyway")
    # The retry first drops the failed row, as `flyway repair` does, then records the success.
    assert rows(conn, query) == [(1, "1", "SQL", flyway_checksum(b"CREATE TABLE a (id int);"), True),
                                 (2, "2", "SQL", flyway_checksum(broken.read_bytes()), True)]


def test_flyway_mirror_in_a_new_schema_writes_the_schema_marker(tmp_path: Path, db_url: str, conn: Conn) -> None:
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "V1__Create_a.sql").write_text("CREATE TABLE a (id int);\n")
    cli(["migrate"], folder, db_url, "flyway", PGSHIFT_LEDGER__MIRROR_SCHEMA="flyway_app")
    assert rows(conn, 'SELECT "installed_rank", "version", "description", "type", "script", "checksum" '
                      "FROM flyway_app.flyway_schema_history ORDER BY 1") == [
        (0, None, "<< Flyway Schema Creation >>", "SCHEMA", '"flyway_app"', None),
        (1, "1", "Create a", "SQL", "V1__Create_a.sql", flyway_checksum(b"CREATE TABLE a (id int);\n")),
    ]
    entries = read_foreign_history(conn, "flyway", "flyway_app")
    assert [e.version for e in entries] == ["1"]


def test_mirror_refuses_another_tools_table(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)")
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    result = run_pgshift(["migrate"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "dbmate", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert result.returncode == 29, result.stderr
    assert "public.schema_migrations is not dbmate's history" in result.stderr
    assert "ledger.mirror" in result.stderr
    assert rows(conn, "SELECT count(*) FROM pgshift.migrations") == [(0,)]  # refused before running anything


def test_unknown_mirror_tool_is_a_config_error(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "db" / "migrations"
    write_dbmate(folder)
    result = run_pgshift(["status"], cwd=tmp_path, url=db_url,
                         env={"PGSHIFT_LEDGER__MIRROR": "liquibase", "PGSHIFT_MIGRATIONS_DIR": str(folder)})
    assert result.returncode == 3
    assert "ledger.mirror in the environment variable PGSHIFT_LEDGER__MIRROR must be one of prisma, flyway, " \
        "dbmate, goose, golang-migrate, not 'liquibase'" in result.stderr



# -- the corpus: real-shaped histories -------------------------------------------------------
# (The Prisma, dbmate and golang-migrate corpora are left out here: files of theirs do not load
# yet, explicit BEGIN/COMMIT blocks amid statements and a down marker that is indented, which is
# the folder readers' matter, not the mirror's.)
@pytest.mark.parametrize("tool", ["goose", "flyway"])
def test_corpus_mirrored_and_read_back(tool: str, tmp_path: Path, db_url: str, conn: Conn) -> None:
    """Each corpus history applied with its own tool's mirror, rolled back where it can be and
    applied again: the tool's table reads back (pgshift adopt) to exactly the applied set."""
    project = tmp_path / tool
    shutil.copytree(REPO / "tests" / "corpus" / tool, project)
    env = {"PGSHIFT_LEDGER__MIRROR": tool, "PGSHIFT_BACKUP__POLICY": "never"}

    def run(*args: str, schema: str = "pgshift") -> subprocess.CompletedProcess[str]:
        result = run_pgshift(list(args), cwd=project, url=db_url, env={**env, "PGSHIFT_HISTORY_SCHEMA": schema})
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    # The corpus carries unsafe-but-real shapes the lint gate refuses. Flyway's V3 and V4 have no
    # undo script, so its rollback is of V2.1 (an UNDO_SQL row), applied again after.
    run("migrate", "--no-lint", *(["--to", "2.1"] if tool == "flyway" else []))
    run("rollback")
    run("migrate", "--no-lint")
    applied = [r[0] for r in rows(conn, "SELECT version FROM pgshift.migrations WHERE status = 'applied' ORDER BY 1")]
    run("adopt", "--from", tool, schema="fresh_ledger")
    adopted = [r[0] for r in rows(conn, "SELECT version FROM fresh_ledger.migrations WHERE status = 'applied' "
                                        "ORDER BY 1")]
    assert adopted == applied and len(applied) >= 5
    if tool == "flyway":
        assert rows(conn, "SELECT version, script FROM flyway_schema_history WHERE type = 'UNDO_SQL'") == [
            ("2.1", "U2_1__loan_rules.sql")]
        assert any(v.startswith("R__") for v in applied)

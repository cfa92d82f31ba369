"""The rewrite guard on a real server: a rewrite of a table over the limit is stopped before it touches
data (exit 8, naming table, size and limit); smaller tables, non-rewriting changes and other sessions
pass; a role that may not create event triggers gets a clear warning."""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from pgshift import api
from pgshift.config import Settings, load_settings
from pgshift.errors import ConfigError, MigrationFailed
from pgshift.ops import guard
from pgshift.units import Size
from tests.conftest import PgServer
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[Any]
BIG = """
CREATE TABLE big (id bigint PRIMARY KEY, n int NOT NULL, label varchar(20));
INSERT INTO big SELECT g, g, 'row' || g FROM generate_series(1, 20000) g;
"""


@pytest.fixture
def project(tmp_path: Path, conn: Conn) -> Path:
    conn.execute(BIG)
    (tmp_path / "migrations").mkdir()
    return tmp_path


def _type(conn: Conn, column: str) -> str:
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'big'::regclass "
                       "AND attname = %s", (column,)).fetchone()
    assert row is not None
    return str(row[0])


def _size(conn: Conn) -> int:
    row = conn.execute("SELECT pg_total_relation_size('big')").fetchone()
    assert row is not None
    return int(row[0])


def test_rewrite_over_the_limit_is_stopped_and_nothing_changes(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "widen", "ALTER TABLE big ADD COLUMN note text;\n"
                    "ALTER TABLE big ALTER COLUMN n TYPE bigint;")
    size = _size(conn)
    result = run_pgshift(["migrate"], cwd=project, url=db_url, env={"PGSHIFT_REWRITE_GUARD": "64kB"})
    assert result.returncode == 8, result.stderr
    message = " ".join(result.stderr.split())
    assert "rewrite guard" in message and "public.big" in message
    stated = re.search(r"public\.big of [\d.]+ [kM]B \((\d+) bytes, with indexes and TOAST\)", message)
    assert stated is not None and abs(int(stated.group(1)) - size) < size // 10, message
    assert "(65536 bytes)" in message and "rewrite_guard = 64 kB" in message
    assert "1_widen.sql" in message
    assert _type(conn, "n") == "integer"
    assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass "
                        "AND attname = 'note'").fetchone() == (0,)  # the whole migration rolled back
    assert conn.execute("SELECT status FROM pgshift.migrations WHERE version = '1'").fetchone() == ("failed",)
    # Other sessions are not guarded: the trigger only acts where pgshift set its setting.
    conn.execute("ALTER TABLE big ALTER COLUMN label TYPE text USING label || ''")


def test_rewrite_under_the_limit_passes(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "widen", "ALTER TABLE big ALTER COLUMN n TYPE bigint;")
    result = run_pgshift(["migrate"], cwd=project, url=db_url, env={"PGSHIFT_REWRITE_GUARD": "100MB"})
    assert result.returncode == 0, result.stderr
    assert _type(conn, "n") == "bigint"
    assert conn.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname = %s", (guard.TRIGGER,)).fetchone() == (1,)


def test_changes_without_a_rewrite_pass_a_tiny_limit(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "cheap", """
        ALTER TABLE big ADD COLUMN note text DEFAULT 'x';
        ALTER TABLE big ALTER COLUMN label TYPE varchar(40);
        ALTER TABLE big ADD CONSTRAINT n_positive CHECK (n > 0) NOT VALID;
        ALTER TABLE big VALIDATE CONSTRAINT n_positive;
        CREATE INDEX big_n ON big (n);
    """)
    result = run_pgshift(["migrate"], cwd=project, url=db_url, env={"PGSHIFT_REWRITE_GUARD": "1kB"})
    assert result.returncode == 0, result.stderr
    assert _type(conn, "label") == "character varying(40)"


def test_guard_covers_expand_and_contract(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """An ops change_column_type never rewrites, so it passes a guard that stops the plain ALTER."""
    conn.execute(BIG)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_widen.ops.yaml").write_text(
        "operations:\n  - change_column_type: {table: big, column: n, type: bigint}\n")
    settings = Settings(database_url=db_url, base_dir=tmp_path, rewrite_guard=Size.parse("64kB"))
    api.migrate(settings)
    from pgshift.ops import service

    service.contract(settings)
    assert _type(conn, "n") == "bigint"
    write_migration(folder, "2", "back", "ALTER TABLE big ALTER COLUMN n TYPE int;")
    with pytest.raises(MigrationFailed, match=r"public\.big"):
        api.migrate(settings)


def test_non_superuser_gets_a_warning(pg_server: PgServer, db_name: str, project: Path, conn: Conn) -> None:
    role = f"app_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db_name), sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER TABLE big OWNER TO {}").format(sql.Identifier(role)))
        params = conninfo.conninfo_to_dict(pg_server.url_for(db_name))
        params["user"] = role
        url = conninfo.make_conninfo(**params)  # type: ignore[arg-type]
        write_migration(project / "migrations", "1", "widen", "ALTER TABLE big ALTER COLUMN n TYPE bigint;")
        result = run_pgshift(["migrate"], cwd=project, url=url, env={"PGSHIFT_REWRITE_GUARD": "64kB"})
        assert result.returncode == 0, result.stderr  # unguarded, as the warning says
        message = " ".join(result.stderr.split())
        assert "guard is unavailable" in message and f"role '{role}' is not a superuser" in message
        assert _type(conn, "n") == "bigint"
        # Once a superuser has installed the trigger, the same role is guarded.
        guard.install(conn, "pgshift")
        write_migration(project / "migrations", "2", "narrow", "ALTER TABLE big ALTER COLUMN n TYPE int;")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(MigrationFailed, match="rewrite guard"):
                api.migrate(Settings(database_url=url, base_dir=project, rewrite_guard=Size.parse("64kB")))
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_sizes_and_bad_values() -> None:
    assert guard.parse_size("0") == 0 and guard.parse_size("off") == 0
    assert guard.parse_size("100MB") == 100 * 1024**2 and guard.parse_size("1.5GB") == int(1.5 * 1024**3)
    assert guard.parse_size("512kB") == 512 * 1024 and guard.parse_size("4096") == 4096
    with pytest.raises(ConfigError, match="environment variable PGSHIFT_REWRITE_GUARD must be a size"):
        load_settings(environ={"PGSHIFT_REWRITE_GUARD": "lots"}, cwd=Path("/"))

"""Settings a database or role carries for every session (ALTER DATABASE / ROLE ... SET), which managed
services and careful teams use to protect the application: pgshift's own settings still decide how long
a migration's statements may take."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.helpers import run_pgshift, start_pgshift

Conn = psycopg.Connection[Any]

# An index whose expression takes 20 ms a row: a build of 100 rows takes about 2 s.
SLOW_INDEX_TABLE = """
CREATE TABLE trades (id int PRIMARY KEY, status text);
INSERT INTO trades SELECT g, 'NEW' FROM generate_series(1, 100) g;
CREATE FUNCTION slow_key(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.02); RETURN $1; END $$;
"""


def test_an_operations_index_build_is_not_cancelled_by_a_database_s_statement_timeout(
        tmp_path: Path, db_url: str, db_name: str, conn: Conn) -> None:
    """An operations migration builds indexes CONCURRENTLY with no statement_timeout (the build blocks
    nobody): a database's own statement_timeout, meant for the application, must not cancel it half-way
    (which leaves an INVALID index and fails the migration)."""
    conn.execute(SLOW_INDEX_TABLE)
    conn.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '500ms'").format(sql.Identifier(db_name)))
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_index.ops.yaml").write_text(
        "operations:\n  - create_index: {table: trades, name: trades_slow, columns: [id], where: 'slow_key(id) > 0'}\n")
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert "SET statement_timeout = '0';" in dry.stdout, dry.stdout
    done = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'trades_slow'::regclass").fetchone() \
        == (True,)


def test_a_statement_the_server_cancels_is_named_as_such_not_as_a_lost_connection(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """A statement_timeout (here the session's startup option, as a role's default would be) ending one
    of pgshift's own queries, which waited for a lock: the server refused a statement, with how to find
    which timeout it was; the connection was not lost, and 'run the command again' would not help."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_a.sql").write_text("-- pgshift:up\nCREATE TABLE a (id int);\n")
    assert run_pgshift(["migrate"], cwd=tmp_path, url=db_url).returncode == 0
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE pgshift.migrations IN ACCESS EXCLUSIVE MODE")
        done = run_pgshift(["status"], cwd=tmp_path, url=db_url, env={"PGOPTIONS": "-c statement_timeout=300ms"})
        holder.rollback()
    assert done.returncode == 24, done.stderr
    assert "canceling statement due to statement timeout (SQLSTATE 57014)" in done.stderr, done.stderr
    assert "SELECT setting, source FROM pg_settings WHERE name = 'statement_timeout'" in done.stderr
    assert "connection to the server was lost" not in done.stderr


def test_a_backfill_batch_that_fails_to_serialize_is_retried(tmp_path: Path, db_url: str, db_name: str,
                                                             conn: Conn) -> None:
    """Under a database's default_transaction_isolation = serializable, a batch whose row an application
    transaction updated and committed meanwhile fails with 'could not serialize access' (40001), which,
    like a deadlock, leaves nothing behind: the batch is tried again, the backfill goes on."""
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b int)")
    conn.execute("INSERT INTO t (id, a) SELECT g, g FROM generate_series(1, 300) g")
    conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'serializable'").format(
        sql.Identifier(db_name)))
    (tmp_path / "migrations").mkdir()
    with psycopg.connect(db_url) as app:
        app.execute("UPDATE t SET a = a + 1000 WHERE id = 5")  # held until the backfill waits for it
        backfill = start_pgshift(["backfill", "--table", "t", "--set", "b = a * 2"], cwd=tmp_path, url=db_url)
        deadline = time.monotonic() + 20
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database() AND application_name LIKE 'pgshift%%'").fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline and backfill.poll() is None, backfill.communicate()
            time.sleep(0.02)
        app.commit()
    _, err = backfill.communicate(timeout=60)
    assert backfill.returncode == 0, err
    assert conn.execute("SELECT count(*) FROM t WHERE b = a * 2").fetchone() == (300,)


def test_a_database_s_client_encoding_does_not_stop_a_migration_with_non_latin_text(
        tmp_path: Path, db_url: str, db_name: str, conn: Conn) -> None:
    """pgshift reads files as UTF-8; a database's client_encoding = LATIN1 (kept for an old client) made
    it encode the migration's text as LATIN1, and a euro sign ended migrate with a traceback, the run then
    shown as 'interrupted'. Its sessions speak UTF-8; the server converts to the database's encoding."""
    conn.execute(sql.SQL("ALTER DATABASE {} SET client_encoding = 'LATIN1'").format(sql.Identifier(db_name)))
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_a.sql").write_text(
        "-- pgshift:up\nCREATE TABLE notes (id int PRIMARY KEY, body text);\n"
        "INSERT INTO notes VALUES (1, 'café €5 😀');\n", encoding="utf-8")
    done = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    conn.execute("SET client_encoding = 'UTF8'")
    assert conn.execute("SELECT body FROM notes").fetchone() == ("café €5 😀",)


def test_text_a_latin1_database_cannot_hold_is_the_server_s_error_naming_the_line(tmp_path: Path, db_url: str,
                                                                                 conn: Conn) -> None:
    name = f"latin1_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                 .format(sql.Identifier(name)))
    try:
        url = make_conninfo(db_url, dbname=name)
        (tmp_path / "migrations").mkdir()
        (tmp_path / "migrations" / "1_a.sql").write_text(
            "-- pgshift:up\nCREATE TABLE notes (id int PRIMARY KEY, body text);\n"
            "INSERT INTO notes VALUES (1, 'café'), (2, '€5');\n", encoding="utf-8")
        done = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        message = " ".join(done.stderr.split())
        assert done.returncode == 8, message
        assert "1_a.sql:3" in message and 'has no equivalent in encoding "LATIN1"' in message, message
        assert "Traceback" not in done.stderr
    finally:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_migration_that_keeps_failing_to_serialize_says_so_not_that_it_waited_for_a_lock(
        tmp_path: Path, db_url: str, db_name: str, conn: Conn) -> None:
    """Under a database's default_transaction_isolation = serializable, a migration's UPDATE of a row the
    application keeps updating fails with 40001 at every attempt. The retries are spent; the message says
    what happened (no lock was waited for) and the hint names the setting that causes it."""
    conn.execute("CREATE TABLE counters (id int PRIMARY KEY, n int)")
    conn.execute("INSERT INTO counters VALUES (1, 0)")
    conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'serializable'").format(
        sql.Identifier(db_name)))
    (tmp_path / "migrations").mkdir()
    # The first SELECT takes the snapshot; the application commits a change of the row during the sleep.
    (tmp_path / "migrations" / "1_reset.sql").write_text(
        "-- pgshift:up\nSELECT n FROM counters WHERE id = 1;\nSELECT pg_sleep(0.3);\n"
        "UPDATE counters SET n = 0 WHERE id = 1;\n")
    stop = threading.Event()

    def application() -> None:
        with psycopg.connect(db_url, autocommit=True) as app:
            while not stop.is_set():
                app.execute("UPDATE counters SET n = n + 1 WHERE id = 1")
                time.sleep(0.03)

    def migrate_beside_the_application() -> Any:
        stop.clear()
        writer = threading.Thread(target=application)
        writer.start()
        try:
            return run_pgshift(["migrate", "--no-lint"], cwd=tmp_path, url=db_url, env={"PGSHIFT_LOCK_RETRIES": "2"})
        finally:
            stop.set()
            writer.join()

    done = migrate_beside_the_application()
    message = " ".join(done.stderr.split())
    assert done.returncode == 50 and "error (serialization): 1 reset at " in message, message
    assert "1_reset.sql:2:1 failed to serialize against concurrent transactions in each of 3 attempts" in message, \
        message
    assert "could not take its lock" not in message
    assert conn.execute("SELECT count(*) FROM pgshift.migrations WHERE status = 'applied'").fetchone() == (0,)
    # The hint, as printed, works: the role's own setting wins over the database's.
    fix = re.search(r"(ALTER ROLE \S+ IN DATABASE \S+ SET default_transaction_isolation = 'read committed';)", message)
    assert fix is not None, message
    conn.execute(fix.group(1))  # this database only: the tests beside this one share the role
    done = migrate_beside_the_application()
    assert done.returncode == 0, done.stderr

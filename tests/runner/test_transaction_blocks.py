"""Files with their own BEGIN / COMMIT / END, from golang-migrate, Prisma and the other tools, run through
the CLI on a real server in the transactions their tool ran them in; a failed or killed run resumes at
the block that did not commit; lint follows the same boundaries and adopt parses nothing."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.db.test_foreign_history import GOLANG_MIGRATE_DDL
from tests.helpers import run_pgshift, start_pgshift
from tests.runner.test_crash_and_concurrency import SLEEP_IF_MARKED, _wait_for_backend_exit, _wait_for_query

Conn = psycopg.Connection[tuple[object, ...]]

# Before a BEGIN (joins its transaction), a BEGIN ... COMMIT block, an END, statements after.
BLOCKS = """\
CREATE TABLE before_begin (id bigint);
BEGIN;
CREATE TABLE inside (id bigint);
INSERT INTO inside VALUES (1);
COMMIT;
CREATE TABLE between_blocks (id bigint);
BEGIN;
CREATE TABLE second (id bigint);
END;
CREATE TABLE after_end (id bigint);
"""
TABLES = {"before_begin", "inside", "between_blocks", "second", "after_end"}


def _tables(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def _row(conn: Conn, version: str = "1") -> tuple[object, ...] | None:
    return conn.execute("SELECT status, statements_done, statements_total FROM pgshift.migrations WHERE version = %s",
                        (version,)).fetchone()


def _golang(tmp_path: Path, up: str, version: str = "000001") -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / f"{version}_blocks.up.sql").write_text(up)
    return tmp_path


def _prisma(tmp_path: Path, sql: str) -> Path:
    folder = tmp_path / "prisma" / "migrations"
    (folder / "20240101000000_blocks").mkdir(parents=True)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (folder / "20240101000000_blocks" / "migration.sql").write_text(sql)
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "prisma/migrations"\n')
    return tmp_path


FOLDERS: dict[str, Callable[[Path, str], Path]] = {
    "golang-migrate": lambda tmp, sql: _golang(tmp, sql),
    "prisma": _prisma,
    "dbmate": lambda tmp, sql: _write(tmp, "20240101000000_blocks.sql", f"-- migrate:up\n{sql}\n-- migrate:down\n"),
    "goose": lambda tmp, sql: _write(tmp, "00001_blocks.sql", f"-- +goose Up\n{sql}"),
    "flyway": lambda tmp, sql: _write(tmp, "V1__blocks.sql", sql),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "migrations").mkdir(exist_ok=True)
    (tmp_path / "migrations" / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("tool", list(FOLDERS))
def test_a_file_with_its_own_blocks_applies_through_the_cli(tool: str, tmp_path: Path, db_url: str,
                                                            conn: Conn) -> None:
    project = FOLDERS[tool](tmp_path, BLOCKS)
    result = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    applied = json.loads(result.stdout)["applied"]
    assert [a["mode"] for a in applied] == ["transaction blocks"]
    assert _tables(conn) == TABLES
    assert conn.execute("SELECT source_format, status FROM pgshift.migrations").fetchall() == [(tool, "applied")]


def test_dry_run_prints_the_blocks(tmp_path: Path, db_url: str) -> None:
    project = _golang(tmp_path, BLOCKS)
    result = run_pgshift(["migrate", "--dry-run", "--json"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    sql = json.loads(result.stdout)["dry_run"][0]["sql"]
    assert sql.count("BEGIN;") == 3 and sql.count("COMMIT;") == 3 and "END;" not in sql
    assert sql.index("CREATE TABLE before_begin") < sql.index("CREATE TABLE inside") < sql.index("COMMIT;")


def test_a_failed_block_leaves_earlier_blocks_committed_and_a_rerun_resumes_there(
    tmp_path: Path, db_url: str, conn: Conn
) -> None:
    project = _golang(tmp_path, """\
BEGIN;
CREATE TABLE first (id bigint);
INSERT INTO first VALUES (1);
COMMIT;
BEGIN;
INSERT INTO first VALUES (2);
INSERT INTO first SELECT id FROM needed;
COMMIT;
CREATE TABLE last (id bigint);
""")
    failed = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert failed.returncode == 8, failed.stderr
    message = " ".join(failed.stderr.split())
    assert "000001_blocks.up.sql:7: migration 1 blocks failed: relation \"needed\" does not exist" in message
    assert "block 2 of 3" in message and "a rerun resumes at this block" in message
    assert _tables(conn) == {"first"}  # the first block committed; the second rolled back whole
    assert conn.execute("SELECT array_agg(id) FROM first").fetchone() == ([1],)
    assert _row(conn) == ("failed", 4, 9)

    conn.execute("CREATE TABLE needed (id bigint)")
    conn.execute("INSERT INTO needed VALUES (3)")
    rerun = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming 1 blocks at block 2 of 3 (statement 5)" in rerun.stderr + rerun.stdout
    assert conn.execute("SELECT detail FROM pgshift.events WHERE event = 'resumed'").fetchall() == [
        ({"statement": 5, "block": 2},)]
    # The first block did not run again (its CREATE TABLE would have failed), the second ran whole.
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM first").fetchone() == ([1, 2, 3],)
    assert _tables(conn) == {"first", "needed", "last"}
    assert _row(conn) == ("applied", 9, 9)


def test_kill_inside_a_block_then_rerun_resumes_at_that_block(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    project = _golang(tmp_path, f"""\
BEGIN;
CREATE TABLE first (id bigint);
INSERT INTO first VALUES (1);
COMMIT;
BEGIN;
CREATE TABLE second (id bigint);
{SLEEP_IF_MARKED}
COMMIT;
CREATE TABLE last (id bigint);
""")
    proc = start_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url)
    pid = _wait_for_query(conn, "pg_sleep(60)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_for_backend_exit(conn, pid)

    assert _tables(conn) == {"sleep_marker", "first"}
    assert _row(conn) == ("running", 4, 9)
    conn.execute("DROP TABLE sleep_marker")
    rerun = run_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "at block 2 of 3" in rerun.stderr + rerun.stdout
    assert _tables(conn) == {"first", "second", "last"}
    assert conn.execute("SELECT count(*) FROM first").fetchone() == (1,)


def test_each_block_gets_the_timeouts_and_its_own_lock_retries(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE busy (id bigint)")
    conn.execute("CREATE TABLE seen (block int, lock_timeout text, statement_timeout text)")
    project = _golang(tmp_path, """\
BEGIN;
CREATE TABLE first (id bigint);
INSERT INTO seen VALUES (1, current_setting('lock_timeout'), current_setting('statement_timeout'));
COMMIT;
BEGIN;
INSERT INTO seen VALUES (2, current_setting('lock_timeout'), current_setting('statement_timeout'));
ALTER TABLE busy ADD COLUMN note text;
COMMIT;
""")
    (project / "pgshift.toml").write_text('lock_timeout = "150ms"\nstatement_timeout = "7s"\nlock_retries = 20\n'
                                          'retry_initial_delay = "50ms"\nretry_max_delay = "200ms"\n')
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        proc = start_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url)
        deadline = time.monotonic() + 30
        while not _retried(conn):
            assert time.monotonic() < deadline and proc.poll() is None, "no lock-timeout retry seen"
            time.sleep(0.05)
        threading.Timer(0.3, holder.rollback).start()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # Block 1 committed once; block 2 was retried whole, each attempt with the timeouts set locally.
    assert conn.execute("SELECT block, lock_timeout, statement_timeout FROM seen ORDER BY block").fetchall() == [
        (1, "150ms", "7s"), (2, "150ms", "7s")]
    # The holder's transaction is older than lock_timeout: block 2 waits for it without queuing.
    retries = conn.execute("SELECT detail->>'statement' FROM pgshift.events WHERE event IN "
                           "('lock-timeout-retry', 'lock-wait-without-queuing')")
    assert {r[0] for r in retries.fetchall()} == {f"{project / 'migrations' / '000001_blocks.up.sql'}:6:1"}


def _retried(conn: Conn) -> bool:
    if conn.execute("SELECT to_regclass('pgshift.events')").fetchone() == (None,):
        return False
    return conn.execute("SELECT count(*) FROM pgshift.events WHERE event IN "
                        "('lock-timeout-retry', 'lock-wait-without-queuing')").fetchone() != (0,)


def test_lint_follows_the_blocks_the_file_declares(tmp_path: Path) -> None:
    project = _golang(tmp_path, BLOCKS)
    clean = run_pgshift(["lint", "--json", "--fail-level", "error"], cwd=project)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    rules = {f["rule"] for f in json.loads(clean.stdout)["findings"]}
    assert not rules & {"PS055", "PS058", "PS004"}

    _golang(tmp_path, "CREATE TABLE t (id bigint);\nBEGIN;\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nCOMMIT;\n"
            "SELECT 1;\n", version="000002")
    _golang(tmp_path, "SELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\n", version="000003")
    found = run_pgshift(["lint", "--json"], cwd=project)
    assert found.returncode == 1
    errors = {(f["rule"], Path(f["file"]).name, f["line"]) for f in json.loads(found.stdout)["findings"]
              if f["severity"] == "error"}
    assert errors == {("PS004", "000002_blocks.up.sql", 3), ("PS058", "000003_blocks.up.sql", 3)}


def test_concurrently_inside_a_declared_block_is_refused_before_anything_runs(
    tmp_path: Path, db_url: str, conn: Conn
) -> None:
    _golang(tmp_path, "CREATE TABLE first (id bigint);\n", version="000001")
    project = _golang(tmp_path, "CREATE TABLE t (id bigint);\nBEGIN;\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                      "COMMIT;\nSELECT 1;\n", version="000002")
    result = run_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url)
    assert result.returncode == 6, result.stderr
    assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in " ".join(result.stderr.split())
    assert _tables(conn) == set()


def test_adopt_parses_no_statement(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _golang(tmp_path, BLOCKS)
    # SQL pglast cannot parse (a psql meta-command golang-migrate's server never saw in this form) and
    # an unterminated BEGIN: adopt records history and runs nothing, so neither may stop it.
    _golang(tmp_path, "\\set ON_ERROR_STOP on\nCREATE TABLE x (id bigint);\n", version="000002")
    _golang(tmp_path, "BEGIN;\nCREATE TABLE y (id bigint);\n", version="000003")
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (3, false)")
    adopted = run_pgshift(["adopt", "--from", "golang-migrate", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["adopted"] == ["1", "2", "3"]
    assert conn.execute("SELECT count(*) FROM pgshift.migrations WHERE status = 'applied'").fetchone() == (3,)


def test_a_block_keeps_the_modes_of_its_begin(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE seen (block int, isolation text, read_only text)")
    project = _golang(tmp_path, """\
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO seen VALUES (1, current_setting('transaction_isolation'), current_setting('transaction_read_only'));
COMMIT;
INSERT INTO seen VALUES (2, current_setting('transaction_isolation'), current_setting('transaction_read_only'));
""")
    result = run_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    assert conn.execute("SELECT * FROM seen ORDER BY block").fetchall() == [
        (1, "serializable", "off"), (2, "read committed", "off")]


def test_a_down_file_with_its_own_blocks_rolls_back_in_them(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _golang(tmp_path, BLOCKS)
    (project / "migrations" / "000001_blocks.down.sql").write_text(
        "DROP TABLE after_end;\nBEGIN;\nDROP TABLE second;\nDROP TABLE between_blocks;\nCOMMIT;\n"
        "DROP TABLE inside;\nDROP TABLE before_begin;\nDROP TABLE missing;\n")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    failed = run_pgshift(["rollback"], cwd=project, url=db_url)
    assert failed.returncode == 8, failed.stderr
    assert _tables(conn) == {"before_begin", "inside"}  # the first two blocks of the down file committed
    (project / "migrations" / "000001_blocks.down.sql").write_text(
        "DROP TABLE after_end;\nBEGIN;\nDROP TABLE second;\nDROP TABLE between_blocks;\nCOMMIT;\n"
        "DROP TABLE inside;\nDROP TABLE before_begin;\n")
    rerun = run_pgshift(["rollback"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert _tables(conn) == set()

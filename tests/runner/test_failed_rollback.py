"""A rollback whose down part fails in its one transaction changes nothing, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]


def test_a_failed_transactional_rollback_leaves_the_migration_applied(tmp_path: Path, db_url: str,
                                                                      conn: Conn) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "loans", "CREATE TABLE loans (id int PRIMARY KEY, due date);",
                    "DROP TABLE loans;")
    assert run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url).returncode == 0
    conn.execute("CREATE VIEW open_loans AS SELECT id FROM loans")  # the down part cannot drop loans now

    failed = run_pgshift(["rollback"], cwd=tmp_path, url=db_url)
    assert failed.returncode == 8, failed.stderr
    assert "the rollback of migration 1 loans failed" in failed.stderr
    assert "stays applied, exactly as before the rollback" in failed.stderr
    assert "history marks it failed" not in failed.stderr

    status = json.loads(run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url).stdout)
    assert status["problems"] == [] and status["pending"] == []
    row = conn.execute("SELECT status, direction FROM pgshift.migrations WHERE version = '1'").fetchone()
    assert row == ("applied", "up")
    event = conn.execute("SELECT detail->>'error' FROM pgshift.events WHERE event = 'rollback-failed'").fetchone()
    assert event is not None and "open_loans" in str(event[0])
    # Nothing to finish: migrate has nothing to do, and once the view is gone the rollback works.
    again = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    assert again.returncode == 0, again.stderr
    conn.execute("DROP VIEW open_loans")
    assert run_pgshift(["rollback"], cwd=tmp_path, url=db_url).returncode == 0
    assert conn.execute("SELECT to_regclass('loans')").fetchone() == (None,)


def test_a_failed_migration_whose_file_is_deleted_no_longer_blocks_migrate(tmp_path: Path, db_url: str,
                                                                           conn: Conn) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "t", "CREATE TABLE t (id int PRIMARY KEY, q int);\nINSERT INTO t VALUES (1, 9);")
    broken = write_migration(folder, "2", "check", "ALTER TABLE t ADD CONSTRAINT q_small CHECK (q < 5);")
    assert run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url).returncode == 8
    # Its transaction committed nothing: the team abandons it by deleting the file, and goes on.
    broken.unlink()
    write_migration(folder, "3", "z", "ALTER TABLE t ADD COLUMN z int;")
    after = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    assert after.returncode == 0, after.stderr
    assert json.loads(run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url).stdout)["problems"] == []
    assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'z'"
                        ).fetchone() == (1,)

"""Statistics after the change (issue #17): a migration that changes a column type, adds an expression index,
backfills or bulk-loads a table is followed by ANALYZE of exactly those tables, outside its transaction, under
the lock timeout, recorded in the event log; analyze_after = false turns it off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings
from pgshift.migrations.analysis import analyse
from pgshift.units import Duration
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[Any]

SETUP = """
CREATE TABLE t (id int PRIMARY KEY, a int, b text) WITH (autovacuum_enabled = false);
CREATE TABLE u (id int PRIMARY KEY, a int) WITH (autovacuum_enabled = false);
INSERT INTO u SELECT g, g % 7 FROM generate_series(1, 2000) g;
"""


@pytest.mark.parametrize(("statement", "bulk", "stale"), [
    ("INSERT INTO t SELECT * FROM u", {(None, "t")}, {(None, "t")}),
    ("INSERT INTO s.t TABLE u", {("s", "t")}, {("s", "t")}),
    ("COPY t FROM '/tmp/x.csv'", {(None, "t")}, {(None, "t")}),
    ("INSERT INTO t VALUES (1), (2)", set(), set()),
    ("COPY t TO '/tmp/x.csv'", set(), set()),
    ("UPDATE t SET a = 0 WHERE a IS NULL", set(), {(None, "t")}),
    ("ALTER TABLE t ALTER COLUMN a TYPE bigint", set(), {(None, "t")}),
    ("CREATE INDEX CONCURRENTLY i ON t ((lower(b)))", set(), {(None, "t")}),
    ("CLUSTER t USING i", set(), {(None, "t")}),
    ("CREATE INDEX i ON t (a)", set(), set()),  # built from the table; nothing for ANALYZE to learn
    ("ALTER TABLE t SET TABLESPACE pg_default", set(), set()),  # same rows, same order
    ("ALTER TABLE t ADD COLUMN c int", set(), set()),
])
def test_the_statement_analysis_knows_bulk_loads_and_stale_statistics(statement: str, bulk: set[Any],
                                                                      stale: set[Any]) -> None:
    facts = analyse(statement)
    assert (set(facts.bulk_loaded), set(facts.stale_statistics)) == (bulk, stale)


def _settings(tmp_path: Path, url: str, **extra: Any) -> Settings:
    return Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations", **extra)


def _has_stats(conn: Conn, table: str, column: str | None = None) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = %s "
                       "AND (%s::text IS NULL OR attname = %s)", (table, column, column)).fetchone()
    return bool(row and row[0])


def test_a_bulk_load_a_type_change_and_an_expression_index_are_analyzed(tmp_path: Path, db_url: str,
                                                                        conn: Conn) -> None:
    conn.execute(SETUP)
    conn.execute("ANALYZE u")
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "load", "INSERT INTO t SELECT id, a, 'x' || id FROM u;")
    write_migration(folder, "2", "retype", "ALTER TABLE u ALTER COLUMN a TYPE bigint;")
    write_migration(folder, "3", "expr", "CREATE INDEX CONCURRENTLY t_lower ON t (lower(b));")
    write_migration(folder, "4", "plain", "CREATE TABLE v (id int); INSERT INTO v VALUES (1);")
    notes: list[str] = []
    report = api.migrate(_settings(tmp_path, db_url), notify=notes.append)
    assert [r.analyzed for r in report.applied] == [["public.t"], ["public.u"], ["public.t"], []]
    assert _has_stats(conn, "t", "a")  # the loaded table
    assert _has_stats(conn, "u", "a")  # ALTER TYPE dropped the column's statistics; ANALYZE made them again
    assert _has_stats(conn, "t_lower")  # the expression index's own statistics
    assert not _has_stats(conn, "v")
    events = conn.execute("SELECT version, detail->>'table' FROM pgshift.events WHERE event = 'analyzed' "
                          "ORDER BY id").fetchall()
    assert events == [("1", "public.t"), ("2", "public.u"), ("3", "public.t")]
    assert any(n.startswith("analyzed public.t (") for n in notes), notes
    history = run_pgshift(["history"], cwd=tmp_path, url=db_url)
    assert history.returncode == 0 and "analyzed" in history.stdout, history.stdout + history.stderr


def test_analyze_after_false_turns_it_off(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute(SETUP)
    write_migration(tmp_path / "migrations", "1", "load", "INSERT INTO t SELECT id, a, 'x' FROM u;")
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\nanalyze_after = false\n')
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert dry.returncode == 0 and "ANALYZE" not in dry.stdout, dry.stdout
    result = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert not _has_stats(conn, "t")
    assert conn.execute("SELECT count(*) FROM pgshift.events WHERE event LIKE 'analyze%'").fetchone() == (0,)


def test_dry_run_shows_the_analyze(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute(SETUP)
    write_migration(tmp_path / "migrations", "1", "load", "INSERT INTO t SELECT id, a, 'x' FROM u;")
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[lines.index("COMMIT;") + 2:lines.index("COMMIT;") + 5] == [
        "SET lock_timeout = '2s';", "ANALYZE t;", "RESET lock_timeout;"], dry.stdout


def test_a_locked_analyze_is_a_warning_and_the_migration_stays_applied(tmp_path: Path, db_url: str,
                                                                      conn: Conn) -> None:
    conn.execute(SETUP)
    write_migration(tmp_path / "migrations", "1", "load", "INSERT INTO t SELECT id, a, 'x' FROM u;")
    notes: list[str] = []
    with psycopg.connect(db_url) as holder:
        # SHARE UPDATE EXCLUSIVE (what a running autovacuum or CREATE INDEX CONCURRENTLY holds): the INSERT
        # does not conflict with it, ANALYZE does.
        holder.execute("LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE")
        report = api.migrate(_settings(tmp_path, db_url, lock_timeout=Duration.parse("200ms")), notify=notes.append)
        holder.rollback()
    assert report.applied[0].analyzed == []
    assert any("ANALYZE public.t after 1 load did not run (canceling statement due to lock timeout)" in n
               for n in notes), notes
    assert conn.execute("SELECT status FROM pgshift.migrations WHERE version = '1'").fetchone() == ("applied",)
    assert conn.execute("SELECT detail->>'table' FROM pgshift.events WHERE event = 'analyze-skipped'").fetchone() \
        == ("public.t",)
    assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)


def test_an_ops_backfill_is_analyzed(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute(SETUP)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_fill.ops.yaml").write_text(
        "operations:\n  - add_column: {table: u, column: {name: c, type: int}, up: 'a * 2'}\n")
    api.migrate(_settings(tmp_path, db_url))
    assert _has_stats(conn, "u", "c")
    assert conn.execute("SELECT detail->>'table' FROM pgshift.events WHERE event = 'analyzed'").fetchall() \
        == [("public.u",)]

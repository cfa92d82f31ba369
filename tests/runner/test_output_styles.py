"""A database whose default DateStyle or IntervalStyle is not ISO / postgres (``ALTER DATABASE ... SET
DateStyle = 'SQL, DMY'``): pgshift reads its own timestamps as psycopg can (and reads no interval), and
the migrations' statements still compute under the database's styles, as psql would."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgshift.db.connect import connect
from pgshift.db.styles import database_styles, in_database_styles
from pgshift.safety.tools import find_tool
from tests.helpers import check_result, run_pgshift, write_migration

Conn = psycopg.Connection[Any]


def _styled(conn: Conn, db_name: str) -> None:
    for name, value in (("DateStyle", "SQL, DMY"), ("IntervalStyle", "iso_8601"), ("TimeZone", "Asia/Kolkata")):
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(db_name), sql.Identifier(name), sql.Literal(value)))


def test_every_command_reads_its_own_rows_and_the_migrations_compute_in_the_database_s_styles(
        tmp_path: Path, db_url: str, db_name: str, conn: Conn) -> None:
    _styled(conn, db_name)
    migrations = tmp_path / "migrations"
    write_migration(migrations, "1", "dates", """
CREATE TABLE d (day date, day_text text, span_text text);
INSERT INTO d (day) VALUES ('01/02/2026');
UPDATE d SET day_text = day::text, span_text = '1 day'::interval::text;
SELECT now() - statement_timestamp();
""", "DROP TABLE d;")
    write_migration(migrations, "2", "steps", """
CREATE TABLE e (span_text text);
INSERT INTO e SELECT '2 hours'::interval::text;
""", "DROP TABLE e;", directives=("no-transaction",))
    # After a statement-by-statement migration the same session reads the next one's ledger row.
    write_migration(migrations, "3", "more_steps", "CREATE INDEX CONCURRENTLY e_span ON e (span_text);",
                    "DROP INDEX CONCURRENTLY e_span;", directives=("no-transaction",))
    for command in (["backup"], ["check"], ["rehearse"], ["migrate"], ["status"], ["history"], ["validate"],
                    ["rollback", "--to", "1"], ["status"], ["migrate"], ["status", "--json"]):
        done = run_pgshift(command, cwd=tmp_path, url=db_url)
        assert done.returncode == 0, (command, done.stdout[:3000], done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
    assert [(m["version"], m["state"]) for m in json.loads(done.stdout)["migrations"]] == [
        ("1", "applied"), ("2", "applied"), ("3", "applied")], done.stdout
    with psycopg.connect(db_url) as fresh:  # a plain session: the database's own styles
        assert fresh.execute("SELECT day::date = '2026-02-01'::date, day_text, span_text FROM d").fetchone() == (
            True, "01/02/2026", "P1D")
        assert fresh.execute("SELECT span_text FROM e").fetchone() == ("PT2H",)


def test_pgshift_s_session_pins_only_the_output_half_and_only_when_needed(db_url: str, db_name: str,
                                                                         conn: Conn) -> None:
    with connect(db_url) as plain:
        assert database_styles(plain) == ()  # the test server's defaults: nothing to do
    _styled(conn, db_name)
    with connect(db_url, autocommit=False) as ours:
        # IntervalStyle is left alone: pgshift reads no interval (the test above runs every command under it).
        assert {s.name: (s.database, s.pinned) for s in database_styles(ours)} == {
            "DateStyle": ("SQL, DMY", "ISO, DMY")}
        ours.rollback()  # the pin survives the caller's rollback
        row = ours.execute("SELECT '01/02/2026'::date, current_setting('DateStyle'), now(), "
                           "current_setting('IntervalStyle')")
        day, style, _, intervals = row.fetchone()  # type: ignore[misc]
        assert (str(day), style, intervals) == ("2026-02-01", "ISO, DMY", "iso_8601")



def test_a_backfill_computes_in_the_database_s_styles_and_keeps_its_place_by_a_timestamp_key(
        tmp_path: Path, db_url: str, db_name: str, conn: Conn) -> None:
    """A backfill's expression is the migration's, so it prints dates as the database does; its
    batches find their place by the last key read as text, which under these styles is a timestamptz
    printed with a zone abbreviation (IST), and still covers every row once."""
    _styled(conn, db_name)
    conn.execute("CREATE TABLE readings (at timestamptz PRIMARY KEY, a int)")
    conn.execute("INSERT INTO readings SELECT '2026-01-01 00:00+05:30'::timestamptz + g * interval '1 minute', g "
                 "FROM generate_series(1, 5000) g")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_fill.ops.yaml").write_text(
        "operations:\n  - add_column: {table: readings, column: {name: day, type: text}, up: 'at::date::text'}\n")
    done = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert conn.execute("SELECT day, count(*) FROM readings GROUP BY 1 ORDER BY 1").fetchall() == [
        ("01/01/2026", 1439), ("02/01/2026", 1440), ("03/01/2026", 1440), ("04/01/2026", 681)]


def test_check_reports_a_running_pg_dump_under_another_interval_style(tmp_path: Path, db_url: str, db_name: str,
                                                                    conn: Conn) -> None:
    """How long a pg_dump has run is read as seconds: an interval would not load under IntervalStyle
    iso_8601, and the item said only that the check could not run."""
    _styled(conn, db_name)
    (tmp_path / "migrations").mkdir()
    conn.execute("CREATE TABLE held (id int)")
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")  # pg_dump waits here, still running
        pg_dump = find_tool("pg_dump", conn.info.server_version // 10000).path
        dump = subprocess.Popen([str(pg_dump), f"--dbname={db_url}", "--file=/dev/null"], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                               ).fetchone() != (1,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            item = check_result("no pg_dump running", cwd=tmp_path, url=db_url)
        finally:
            dump.terminate()
            dump.wait()
    assert item["status"] == "failed" and item["value"] == "1 running", item
    assert re.fullmatch(r"pid \d+ on \S+, running for 0:00:\d\d", item["detail"][0]), item


def test_pgshift_backfill_computes_in_the_database_s_styles_too(tmp_path: Path, db_url: str, db_name: str,
                                                                conn: Conn) -> None:
    """The standalone command runs its batches outside the step engine; its SET expression still prints
    dates as the database does, and pgshift reads its own rows in ISO again after."""
    _styled(conn, db_name)
    conn.execute("CREATE TABLE readings (at timestamptz PRIMARY KEY, day text)")
    conn.execute("INSERT INTO readings (at) SELECT '2026-01-01 00:00+05:30'::timestamptz + g * interval '1 hour' "
                 "FROM generate_series(1, 3000) g")
    (tmp_path / "migrations").mkdir()
    done = run_pgshift(["backfill", "--table", "readings", "--set", "day = at::date::text", "--no-backup"],
                       cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    assert conn.execute("SELECT day FROM readings ORDER BY at LIMIT 1").fetchone() == ("01/01/2026",)
    assert conn.execute("SELECT count(*) FROM readings WHERE day IS NULL").fetchone() == (0,)
    history = run_pgshift(["history"], cwd=tmp_path, url=db_url)
    assert history.returncode == 0 and "backfill" in history.stdout, history.stderr


def test_in_database_styles_switches_for_the_block_and_back(db_url: str, db_name: str, conn: Conn) -> None:
    _styled(conn, db_name)
    with connect(db_url) as ours:
        with in_database_styles(ours):
            assert ours.execute("SHOW DateStyle").fetchone() == ("SQL, DMY",)
        assert ours.execute("SHOW DateStyle").fetchone() == ("ISO, DMY",)
        assert ours.execute("SELECT now()").fetchone() is not None  # reads as psycopg can again

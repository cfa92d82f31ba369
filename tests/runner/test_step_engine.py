"""The one step engine under SQL migrations (#13): what .ops steps always did, plain SQL now does too."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings, load_settings
from pgshift.units import Duration
from tests.helpers import write_migration

Conn = psycopg.Connection[Any]


def _readers(url: str, stop: threading.Event, blocked: list[str], done: list[int]) -> None:
    """Read t every 20 ms, giving up on a lock wait after 100 ms: a queued ACCESS EXCLUSIVE request
    ahead of the read would make it wait (and fail) here."""
    with psycopg.connect(url, autocommit=True) as reader:
        reader.execute("SET lock_timeout = '100ms'")
        while not stop.is_set():
            try:
                reader.execute("SELECT count(*) FROM t").fetchone()
                done.append(1)
            except psycopg.errors.LockNotAvailable as exc:
                blocked.append(str(exc))
            time.sleep(0.02)


def test_a_sql_alter_waits_without_queuing_behind_an_old_transaction(tmp_path: Path, db_url: str,
                                                                      conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    path = write_migration(tmp_path / "migrations", "1", "alter", "ALTER TABLE t ADD COLUMN note text;")
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations",
                        lock_timeout=Duration.parse("300ms"), lock_retries=4,
                        retry_initial_delay=Duration.parse("200ms"), retry_max_delay=Duration.parse("400ms"))
    stop = threading.Event()
    blocked: list[str] = []
    reads: list[int] = []
    notes: list[str] = []
    with psycopg.connect(db_url) as old:
        old.execute("SELECT * FROM t")  # holds ACCESS SHARE on t until it ends
        time.sleep(0.4)  # now older than lock_timeout: the ALTER would queue behind it for nothing
        reader = threading.Thread(target=_readers, args=(db_url, stop, blocked, reads))
        reader.start()

        def notify(message: str) -> None:
            notes.append(message)
            if "waits without queuing" in message and "check 2/4" in message:
                old.rollback()

        try:
            report = api.migrate(settings, notify=notify)
        finally:
            stop.set()
            reader.join()
    assert blocked == [], blocked  # no read ever waited behind a queued ALTER
    assert reads, "the reader never ran"
    assert report.applied[0].retries == 2
    assert report.applied[0].resumed_at is None  # one transaction: nothing to resume from
    events = conn.execute("SELECT event, detail FROM pgshift.events WHERE event LIKE 'lock-%' ORDER BY id").fetchall()
    assert [(e, d["attempt"], d["statement"]) for e, d in events] == [
        ("lock-wait-without-queuing", 1, f"{path}:2:1"), ("lock-wait-without-queuing", 2, f"{path}:2:1")]
    assert any("needs a strong lock on t; it would wait behind pid" in n for n in notes), notes
    assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' "
                        "AND column_name = 'note'").fetchone() == (1,)


class _Seen:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def before(self, conn: Any, migration: Any, stmt: Any) -> None:
        self.statements.append(stmt.sql)

    def after(self, conn: Any, migration: Any, stmt: Any, error: BaseException | None) -> None:
        pass


def test_dry_run_prints_the_engines_steps_for_a_sql_migration(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """The dry run renders the step list the engine then runs, as it renders an operations migration's:
    each transaction with its timeouts, each autocommit statement with its SET and RESET."""
    write_migration(tmp_path / "migrations", "1", "mixed", "CREATE TABLE a (id int);\n"
                    "CREATE INDEX CONCURRENTLY a_id ON a (id);\nINSERT INTO a VALUES (1);")
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations",
                        lock_timeout=Duration.parse("2s"), statement_timeout=Duration.parse("30s"))
    dry = api.migrate(settings, dry_run=True).dry_run[0]
    assert dry.mode == "statement-by-statement"
    lines = dry.sql.splitlines()
    assert lines[1:] == [
        "-- runs statement by statement; progress is recorded after each",
        "BEGIN;", "SET LOCAL lock_timeout = '2s';", "SET LOCAL statement_timeout = '30s';",
        "CREATE TABLE a (id int);", "COMMIT;",
        "-- autocommit: CREATE INDEX CONCURRENTLY", "SET lock_timeout = '2s';", "SET statement_timeout = '30s';",
        "CREATE INDEX CONCURRENTLY a_id ON a (id);", "RESET lock_timeout;", "RESET statement_timeout;",
        "BEGIN;", "SET LOCAL lock_timeout = '2s';", "SET LOCAL statement_timeout = '30s';",
        "INSERT INTO a VALUES (1);", "COMMIT;"]
    assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)  # nothing ran
    seen = _Seen()
    api.migrate(settings, observer=seen)
    statements = [line.rstrip(";") for line in lines if not line.startswith(("--", "SET ", "RESET ", "BEGIN;",
                                                                             "COMMIT;"))]
    assert statements == seen.statements


def test_the_tables_a_sql_step_locks_are_named_as_to_regclass_reads_them(conn: Conn) -> None:
    from pgshift.migrations.model import Statement
    from pgshift.runner.steps import table_locks

    conn.execute('CREATE SCHEMA s; CREATE TABLE "My T" (a int); CREATE TABLE s."T" (a int)')
    strong, weak = table_locks([Statement(text, "f.sql", n, 1, n) for n, text in enumerate([
        'ALTER TABLE "My T" ADD COLUMN x int', "INSERT INTO x VALUES (1)", "LOCK TABLE busy",
        'CREATE INDEX CONCURRENTLY i ON s."T" (a)', "CREATE TABLE new (id int)"], 1)])
    assert strong == ['"My T"', "busy"] and weak == ['s."T"']
    found = conn.execute("SELECT to_regclass(t)::text FROM unnest(%s::text[]) t", ([*strong, *weak],)).fetchall()
    assert found == [('"My T"',), (None,), ('s."T"',)]


def test_timeouts_reach_the_server_in_units_it_knows(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """pgshift.toml may write minutes as "10m" (as deploy.watch does); PostgreSQL knows only "min", so
    the engine sets what the settings parsed, not their text. The dry run shows the same values."""
    (tmp_path / "pgshift.toml").write_text('lock_timeout = "10m"\nstatement_timeout = "2.5min"\n')
    write_migration(tmp_path / "migrations", "1", "seen", "CREATE TABLE seen AS SELECT "
                    "current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS stmt;")
    settings = load_settings(cwd=tmp_path, overrides={"database_url": db_url}, environ={})
    dry = api.migrate(settings, dry_run=True).dry_run[0].sql
    assert "SET LOCAL lock_timeout = '10min';" in dry and "SET LOCAL statement_timeout = '150s';" in dry
    api.migrate(settings)
    assert conn.execute("SELECT lock, stmt FROM seen").fetchone() == ("10min", "150s")


def test_a_statement_failing_after_a_concurrent_build_resumes_after_the_build(tmp_path: Path, db_url: str,
                                                                              conn: Conn) -> None:
    """The autocommit step's progress is recorded as its own: the rerun neither repeats the build nor
    skips the statement that failed, and it ANALYZEs what the statements before the failure left stale."""
    from pgshift.errors import MigrationFailed

    conn.execute("CREATE TABLE t (x int)")
    path = write_migration(tmp_path / "migrations", "1", "steps", "CREATE TABLE a (id int);\n"
                           "INSERT INTO t SELECT g FROM generate_series(1, 100) g;\n"
                           "CREATE INDEX CONCURRENTLY t_x ON t (x);\nINSERT INTO a VALUES ('not a number');")
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations")
    with pytest.raises(MigrationFailed, match="invalid input syntax"):
        api.migrate(settings)
    # Not transactional: its committed statements stay, so deleting the file would not abandon it harmlessly.
    assert conn.execute("SELECT status, statements_done, transactional FROM pgshift.migrations").fetchone() == (
        "failed", 3, False)
    path.write_text(path.read_text().replace("'not a number'", "3"))
    notes: list[str] = []
    report = api.migrate(settings, notify=notes.append)
    assert "resuming 1 steps at statement 4 of 4" in notes, notes
    assert conn.execute("SELECT id FROM a").fetchall() == [(3,)]
    assert report.applied[0].resumed_at == 3 and report.applied[0].analyzed == ["public.t"], report.applied[0]


def _locked_table_attempt(db_url: str, calls: list[int]) -> Any:
    """An attempt taking a lock on t under a 1 ms lock_timeout: a real lock timeout while another session holds t."""
    def attempt() -> str:
        calls.append(1)
        with psycopg.connect(db_url) as session:
            session.execute("SET lock_timeout = '1ms'")
            session.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        return "locked"
    return attempt


def test_the_retry_policy_tries_attempts_plus_one_times_backing_off_after_each_lock_timeout(
        db_url: str, conn: Conn) -> None:
    """RetryPolicy.run itself, with the server's lock timeouts: attempts + 1 tries, a sleep of the reported
    delay after each failed one but the last, and the last one's error handed to ``exhausted``."""
    from pgshift.runner.retry import RetryPolicy

    conn.execute("CREATE TABLE t (id int)")
    calls: list[int] = []
    retried: list[tuple[int, float]] = []
    slept: list[float] = []
    ended: list[tuple[int, str | None]] = []

    def exhausted(number: int, exc: psycopg.Error) -> BaseException:
        ended.append((number, exc.sqlstate))
        return RuntimeError("gave up")

    with conn.transaction():
        conn.execute("LOCK TABLE t IN ACCESS SHARE MODE")
        with pytest.raises(RuntimeError, match="gave up") as info:
            RetryPolicy(attempts=2, initial_ms=100).run(
                _locked_table_attempt(db_url, calls), on_retry=lambda n, d, _e: retried.append((n, d)),
                exhausted=exhausted, sleep=slept.append)
    assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
    assert len(calls) == 3 and [n for n, _d in retried] == [1, 2] and ended == [(3, "55P03")]
    assert slept == [d for _n, d in retried]  # slept what it reported, after each retried attempt
    assert 0.05 <= slept[0] <= 0.1 and 0.1 <= slept[1] <= 0.2
    # Released: the same policy's first attempt succeeds, with nothing retried and no sleep.
    calls.clear()
    slept.clear()
    assert RetryPolicy(attempts=2).run(_locked_table_attempt(db_url, calls), on_retry=lambda *_a: None,
                                       exhausted=exhausted, sleep=slept.append) == "locked"
    assert calls == [1] and slept == []


def test_an_attempt_held_off_is_spent_sleeping_and_the_next_is_tried(db_url: str, conn: Conn) -> None:
    """hold_off True spends that attempt sleeping its delay; False tries it at once; the final attempt is
    always tried, whatever hold_off says."""
    from pgshift.runner.retry import RetryPolicy

    conn.execute("CREATE TABLE t (id int)")
    calls: list[int] = []
    slept: list[float] = []
    asked: list[tuple[int, bool]] = []

    def hold_first(number: int, delay: float, final: bool) -> bool:
        asked.append((number, final))
        return number == 1

    policy = RetryPolicy(attempts=3, initial_ms=100)
    assert policy.run(_locked_table_attempt(db_url, calls), on_retry=lambda *_a: None,
                      exhausted=lambda *_a: RuntimeError("gave up"), hold_off=hold_first,
                      sleep=slept.append) == "locked"
    assert asked == [(1, False), (2, False)] and calls == [1] and len(slept) == 1 and 0.05 <= slept[0] <= 0.1
    # Held off at every check: the final attempt is still made, without a sleep before it.
    calls.clear()
    slept.clear()
    asked.clear()

    def hold_always(number: int, delay: float, final: bool) -> bool:
        asked.append((number, final))
        return True

    assert policy.run(_locked_table_attempt(db_url, calls), on_retry=lambda *_a: None,
                      exhausted=lambda *_a: RuntimeError("gave up"), hold_off=hold_always,
                      sleep=slept.append) == "locked"
    assert asked == [(1, False), (2, False), (3, False), (4, True)] and calls == [1] and len(slept) == 3


def test_a_step_naming_no_table_gives_up_naming_the_three_oldest_open_transactions(tmp_path: Path, db_url: str,
                                                                                   conn: Conn) -> None:
    """A DO block's tables are not known, so its LockTimeoutExhausted names the oldest open transactions of the
    database instead (runner/blockers.py's open_transactions): the three oldest, oldest first, each described."""
    import re

    from pgshift.errors import LockTimeoutExhausted

    conn.execute("CREATE TABLE t (id int)")
    write_migration(tmp_path / "migrations", "1", "do", "DO $$BEGIN ALTER TABLE t ADD COLUMN note text; END$$;")
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations",
                        lock_timeout=Duration.parse("50ms"), lock_retries=0)
    sessions = [psycopg.connect(db_url) for _ in range(4)]
    try:
        for n, session in enumerate(sessions, start=1):
            session.execute(f"SET application_name = 'open_{n}'")
            session.execute("SELECT * FROM t")  # each holds ACCESS SHARE on t in its open transaction
            time.sleep(0.05)  # started in this order
        with pytest.raises(LockTimeoutExhausted) as info:
            api.migrate(settings)
        pids = [s.info.backend_pid for s in sessions]
    finally:
        for session in sessions:
            session.close()
    message = str(info.value)
    found = re.findall(r"pid (\d+) \((open_\d), idle in transaction, transaction open (\d+\.\d)s: SELECT \* FROM t\)",
                       message)
    assert [(int(p), name) for p, name, _age in found] == [(pids[0], "open_1"), (pids[1], "open_2"),
                                                           (pids[2], "open_3")], message
    assert "Open transactions now: pid" in message and f"pid {pids[3]}" not in message, message
    ages = [float(age) for _p, _n, age in found]
    assert ages == sorted(ages, reverse=True) and ages[0] > 0, message

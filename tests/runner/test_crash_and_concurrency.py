"""Kill -9 of the runner, two runners at once, and lock_timeout retries, on a real server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgshift.db.lock import lock_key
from tests.helpers import run_pgshift, start_pgshift, write_migration

# Sleeps only while the marker table exists, so the rerun after a kill goes straight through.
SLEEP_IF_MARKED = (
    "DO $$ BEGIN IF to_regclass('public.sleep_marker') IS NOT NULL THEN PERFORM pg_sleep(60); END IF; END $$;"
)

Conn = psycopg.Connection[tuple[object, ...]]


def _wait_for_query(conn: Conn, fragment: str, timeout: float = 30, *, on_lock: bool = False) -> int:
    """The pid of the session running ``fragment`` (with ``on_lock``, once it waits on a lock)."""
    deadline = time.monotonic() + timeout
    condition = "wait_event_type = 'Lock'" if on_lock else "state = 'active'"
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s "
            f"AND pid <> pg_backend_pid() AND {condition}",
            (f"%{fragment}%",),
        ).fetchone()
        if row:
            return int(str(row[0]))
        time.sleep(0.05)
    waited = "waited on a lock in" if on_lock else "ran"
    raise AssertionError(f"no session {waited} {fragment!r} within {timeout}s")


def _wait_for_backend_exit(conn: Conn, pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,):
            return
        time.sleep(0.05)
    # Before PG 14 nothing notices a dead client mid-statement; end it as an operator would.
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _deploy_lock_free(conn: Conn) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key("pgshift"),)).fetchone()
    conn.execute("SELECT pg_advisory_unlock_all()")
    return row == (True,)


def _tables(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    return tmp_path


def test_kill_mid_transaction_then_rerun_finishes(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "slow",
                    f"CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n{SLEEP_IF_MARKED}\nCREATE TABLE b (id int);")
    proc = start_pgshift(["migrate"], cwd=project, url=db_url)
    pid = _wait_for_query(conn, "pg_sleep(60)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_for_backend_exit(conn, pid)

    assert _tables(conn) == {"sleep_marker"}  # the open transaction died with its session
    # ... and with it the ledger row, which commits in the migration's own transaction.
    assert conn.execute("SELECT count(*) FROM pgshift.migrations").fetchone() == (0,)
    assert _deploy_lock_free(conn)

    conn.execute("DROP TABLE sleep_marker")
    rerun = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert _tables(conn) == {"a", "b"}
    assert conn.execute("SELECT count(*) FROM a").fetchone() == (1,)  # ran once, not twice
    assert conn.execute("SELECT status FROM pgshift.migrations").fetchone() == ("applied",)


def test_kill_between_statements_of_a_non_transactional_migration(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "steps", "\n".join([
        "CREATE TABLE a (id int);",
        "INSERT INTO a VALUES (1);",
        "CREATE INDEX CONCURRENTLY a_id ON a (id);",
        SLEEP_IF_MARKED,
        "INSERT INTO a VALUES (2);",
    ]), directives=("no-transaction",))
    proc = start_pgshift(["migrate"], cwd=project, url=db_url)
    pid = _wait_for_query(conn, "pg_sleep(60)")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_for_backend_exit(conn, pid)
    row = conn.execute("SELECT status, statements_done FROM pgshift.migrations").fetchone()
    assert row == ("running", 3)
    assert _deploy_lock_free(conn)

    conn.execute("DROP TABLE sleep_marker")
    rerun = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming 1 steps at statement 4 of 5" in rerun.stderr
    values = [r[0] for r in conn.execute("SELECT id FROM a ORDER BY id").fetchall()]
    assert values == [1, 2]  # the insert before the kill did not run twice
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'a_id'::regclass").fetchone() == (True,)


def test_two_runners_at_once_one_applies_the_other_finds_nothing(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "slow", "CREATE TABLE a (id int);\nSELECT pg_sleep(2);")
    first = start_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    _wait_for_query(conn, "pg_sleep(2)")
    second = start_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert '"nothing_to_do": false' in out1 and '"nothing_to_do": true' in out2
    assert conn.execute("SELECT count(*) FROM pgshift.events WHERE event = 'applied'").fetchone() == (1,)


def test_second_runner_gives_up_naming_the_holder(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "slow", "SELECT pg_sleep(60);")
    first = start_pgshift(["migrate"], cwd=project, url=db_url, env={"PGSHIFT_APPLICATION_NAME": "deployer-one"})
    holder = _wait_for_query(conn, "pg_sleep(60)")
    second = run_pgshift(["migrate"], cwd=project, url=db_url, env={"PGSHIFT_LOCK_WAIT": "1s"})
    first.kill()
    first.communicate(timeout=60)
    conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
    assert second.returncode == 9
    assert f"pid {holder} (deployer-one" in second.stderr
    assert "Waited 1." in second.stderr


# A holder older than lock_timeout is waited out without queuing; a younger one is queued behind and retried.
RETRY_EVENTS = "('lock-timeout-retry', 'lock-wait-without-queuing')"


def _retries_logged(conn: Conn) -> int:
    if conn.execute("SELECT to_regclass('pgshift.events') IS NULL").fetchone() == (True,):
        return 0
    row = conn.execute(f"SELECT count(*) FROM pgshift.events WHERE event IN {RETRY_EVENTS}").fetchone()
    return int(str(row[0])) if row else 0


def _hold_lock(url: str, table: str, seconds: float, started: threading.Event, until_retries: int = 0,
               release: threading.Event | None = None) -> None:
    """Keep an open transaction that has read ``table`` (as a busy app does) for ``seconds``, or
    until pgshift has logged ``until_retries`` lock-timeout retries, or ``release`` is set."""
    with psycopg.connect(url) as other, psycopg.connect(url, autocommit=True) as watcher:
        other.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        started.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (release and release.is_set()):
            if until_retries and _retries_logged(watcher) >= until_retries:
                return
            time.sleep(0.05)


def test_lock_timeout_is_retried_with_backoff(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE busy (id int)")
    write_migration(project / "migrations", "1", "alter", "ALTER TABLE busy ADD COLUMN note text;")
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(db_url, "busy", 60, started, 2))
    holder.start()
    started.wait(10)
    env = {"PGSHIFT_LOCK_TIMEOUT": "100ms", "PGSHIFT_LOCK_RETRIES": "8", "PGSHIFT_RETRY_INITIAL_DELAY": "100ms",
           "PGSHIFT_RETRY_MAX_DELAY": "800ms"}
    result = run_pgshift(["migrate", "--json"], cwd=project, url=db_url, env=env)
    holder.join()
    assert result.returncode == 0, result.stderr
    import json

    applied = json.loads(result.stdout)["applied"][0]
    assert applied["retries"] >= 2
    retries = conn.execute(f"SELECT count(*) FROM pgshift.events WHERE event IN {RETRY_EVENTS}").fetchone()
    assert retries == (applied["retries"],)


def test_lock_timeout_exhausted_is_a_clear_error(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE busy (id int)")
    write_migration(project / "migrations", "1", "alter", "ALTER TABLE busy ADD COLUMN note text;")
    started = threading.Event()
    # Held until migrate has given up: a fixed hold ran out before a slow (loaded) machine started it.
    release = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(db_url, "busy", 120, started, 0, release))
    holder.start()
    started.wait(10)
    env = {"PGSHIFT_LOCK_TIMEOUT": "50ms", "PGSHIFT_LOCK_RETRIES": "2", "PGSHIFT_RETRY_INITIAL_DELAY": "50ms"}
    try:
        result = run_pgshift(["migrate"], cwd=project, url=db_url, env=env)
    finally:
        release.set()
        holder.join()
    assert result.returncode == 12
    assert "could not take its lock" in result.stderr and "after 3 attempts" in result.stderr
    assert "LOCK TABLE busy" in result.stderr  # names the open transaction that blocked it
    columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'").fetchone()
    assert columns == (1,)


def test_ctrl_c_rolls_back_the_running_statement_and_history_marks_it_failed(
        project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "slow", f"CREATE TABLE a (id int);\n{SLEEP_IF_MARKED}",
                    directives=("no-transaction",))
    proc = start_pgshift(["migrate"], cwd=project, url=db_url)
    _wait_for_query(conn, "pg_sleep(60)")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted during 1 slow" in " ".join(err.split()), err
    row = conn.execute("SELECT status, statements_done, error FROM pgshift.migrations").fetchone()
    assert row == ("failed", 1, "interrupted by the user"), row
    assert _tables(conn) == {"sleep_marker", "a"}  # the statement before it stays committed
    conn.execute("DROP TABLE sleep_marker")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0  # as the message says

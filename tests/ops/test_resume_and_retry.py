"""The ops phases' recovery paths on a real server: an interrupted CONCURRENTLY build's INVALID index is
rebuilt on rerun, a step that hits lock_timeout is retried (and the retry recorded), and a lock that is
never released ends in LockTimeoutExhausted naming the session that holds it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgshift import api
from pgshift.errors import LockTimeoutExhausted, MigrationFailed
from pgshift.ops import service
from tests.ops.helpers import make_project

Conn = psycopg.Connection[Any]


def _index_valid(conn: Conn, name: str) -> bool | None:
    row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = %s", (name,)).fetchone()
    return None if row is None else bool(row[0])


def _pending_ops(tmp_path: Path, db_url: str, init_sql: str, name: str, ops_yaml: str) -> Any:
    """A project whose first migration (``init_sql``) is applied and whose operations file ``name`` is pending."""
    settings = make_project(tmp_path, db_url, {"001_init.sql": init_sql})
    api.migrate(settings)
    (tmp_path / "migrations" / name).write_text(ops_yaml)
    return settings


DUPLICATED_CODES = "CREATE TABLE t (id int PRIMARY KEY, code text);\nINSERT INTO t VALUES (1, 'a'), (2, 'a');\n"
GATE = "CREATE TABLE gate (ok int);\n"  # empty: the gated step divides by zero until a row is added
GATED_STEP = "  - sql: {up: \"SELECT 1 / (SELECT count(*) FROM gate)\", down: \"SELECT 1\"}\n"


@pytest.mark.parametrize("name", ["t_code_key", "T code key"])  # the second needs quoting
def test_an_invalid_index_left_by_a_failed_build_is_rebuilt_when_the_expand_is_rerun(
        tmp_path: Path, db_url: str, conn: Conn, name: str) -> None:
    quoted = name.replace('"', '\\"')
    settings = _pending_ops(tmp_path, db_url, DUPLICATED_CODES, "002_idx.ops.yaml",
                            f'operations:\n  - create_index: {{table: t, name: "{quoted}", columns: [code], '
                            'unique: true}\n')
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        api.migrate(settings)
    assert _index_valid(conn, name) is None  # the failed build dropped its own INVALID index
    # A build killed part-way leaves its INVALID index behind, as this one does.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON t (code)").format(sql.Identifier(name)))
    assert _index_valid(conn, name) is False
    conn.execute("UPDATE t SET code = 'b' WHERE id = 2")
    notes: list[str] = []
    api.migrate(settings, notify=notes.append)
    # IF NOT EXISTS alone would have kept the INVALID index: the step must drop it and build it again.
    assert _index_valid(conn, name) is True
    assert any("dropping INVALID index" in n for n in notes), notes
    # Each drop is in the event log: the failed build's own, then the rerun's of the one left behind.
    assert conn.execute("SELECT detail FROM pgshift.events WHERE event = 'dropped-invalid-index' ORDER BY id"
                        ).fetchall() == [({"schema": "public", "index": name},)] * 2
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO t VALUES (3, 'a')")


CHECK = "lock_timeout: 300ms\nlock_retries: {retries}\noperations:\n" \
        "  - add_check: {{table: t, name: qty_positive, check: \"qty > 0\"}}\n"


def _project_with_check(tmp_path: Path, db_url: str, retries: int) -> Any:
    return _pending_ops(tmp_path, db_url, "CREATE TABLE t (id int PRIMARY KEY, qty int);\n", "002_check.ops.yaml",
                        CHECK.format(retries=retries))


def _constraint(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT conname FROM pg_constraint WHERE conname = 'qty_positive'").fetchall()


def test_a_step_blocked_past_lock_timeout_succeeds_on_retry_and_the_retry_is_recorded(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _project_with_check(tmp_path, db_url, retries=3)
    notes: list[str] = []
    released_at: list[float] = []
    with psycopg.connect(db_url) as blocker:
        def notify(message: str) -> None:
            notes.append(message)
            if message.startswith("expand 1/1"):  # a fresh transaction: too young to be waited out unqueued
                blocker.execute("SELECT * FROM t")  # holds ACCESS SHARE on t until rolled back
            elif message.startswith("lock_timeout on"):  # released only after the first attempt timed out
                blocker.rollback()
                released_at.append(time.monotonic())

        report = api.migrate(settings, notify=notify)
        finished = time.monotonic()
    assert report.applied[0].retries == 1, notes
    assert any(n.startswith("lock_timeout on '") and "retry 1/3 in" in n for n in notes), notes
    assert any("it would wait behind pid" in n for n in notes), notes  # the blocker was named
    assert _constraint(conn) == [("qty_positive",)]
    events = conn.execute(sql.SQL("SELECT detail FROM {} WHERE event = 'lock-timeout-retry'").format(
        sql.Identifier("pgshift", "events"))).fetchall()
    assert [(e[0]["attempt"], e[0]["step"].startswith("add check")) for e in events] == [(1, True)], events
    delay = events[0][0]["delay_s"]
    assert 0.1 <= delay <= 0.2  # the first retry of retry_initial_delay 200ms: 100 to 200 ms
    assert finished - released_at[0] >= delay  # it backed off before trying again


def test_a_lock_never_released_exhausts_the_retries_and_names_the_blocker(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _project_with_check(tmp_path, db_url, retries=1)
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SET application_name = 'the_blocker'")

        def notify(message: str) -> None:
            if message.startswith("expand 1/1"):
                blocker.execute("SELECT * FROM t")

        with pytest.raises(LockTimeoutExhausted) as info:
            api.migrate(settings, notify=notify)
        pid = blocker.info.backend_pid
        blocker.rollback()
    message = str(info.value)
    assert "after 2 attempts" in message and f"pid {pid} (the_blocker" in message, message
    # The blocking session's description ends the message (no autovacuum was in the way to explain).
    assert info.value.message.endswith(").") and f"Blocking sessions: pid {pid} (the_blocker" in message, message
    # Described whole: its name, state, transaction age and query (runner/blockers.py reads them by position).
    assert re.search(rf"Blocking sessions: pid {pid} \(the_blocker, idle in transaction, transaction open "
                     r"\d+\.\ds: SELECT \* FROM t\)\.", message), message
    assert _constraint(conn) == []  # nothing of the step was committed
    # One retry: a lock timeout, or on a slow machine a wait without queuing once the blocker was old.
    assert conn.execute("SELECT count(*) FROM pgshift.events WHERE event IN ('lock-timeout-retry', "
                        "'lock-wait-without-queuing')").fetchone() == (1,)


def test_an_expand_stopped_after_its_backfill_resumes_after_it(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """The carried unique index is built after the backfill; duplicate values make it fail there."""
    settings = make_project(tmp_path, db_url, {"001_init.sql": (
        "CREATE TABLE t (id int PRIMARY KEY, code text UNIQUE);\n"
        "INSERT INTO t SELECT g, repeat('x', g) FROM generate_series(1, 1500) g;\n"
        "INSERT INTO t VALUES (0, 'y');\n")})  # length 1 twice once retyped
    api.migrate(settings)
    (tmp_path / "migrations" / "002_retype.ops.yaml").write_text(
        "backfill_batch_size: 500\noperations:\n"
        "  - change_column_type: {table: t, column: code, type: int, up: \"length(code)\", "
        "down: \"repeat('x', code)\"}\n")
    first: list[str] = []
    with pytest.raises(MigrationFailed, match="could not create unique index") as caught:
        api.migrate(settings, notify=first.append)
    assert "The INVALID index the failed build left was dropped" in caught.value.message
    announced = [n for n in first if n.startswith("expand ")]
    failed_at = int(announced[-1].split()[1].split("/")[0])  # "expand 5/6: ..." -> 5
    assert "backfill" in announced[-2] and "index" in announced[-1], announced
    conn.execute("DELETE FROM t WHERE id = 0")
    again: list[str] = []
    report = api.migrate(settings, notify=again.append)
    # The backfill step recorded its progress: the rerun starts at the index build, not before it.
    assert report.applied[0].resumed_at == failed_at - 1
    assert next(n for n in again if n.startswith("expand ")) == announced[-1], again
    assert any(n.startswith("resuming expand of ") and f"at step {failed_at} of " in n for n in again), again
    assert conn.execute("SELECT detail->>'step' FROM pgshift.events WHERE event = 'expand-resumed'").fetchall() == [
        (str(failed_at),)]
    result = service.abort(settings)
    assert (result.resumed_at, result.steps_run, result.warnings) == (None, result.steps, [])
    assert 0 < result.duration_ms < 600_000


def test_an_expand_stopped_after_a_concurrent_index_build_does_not_build_it_again(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _pending_ops(tmp_path, db_url, "CREATE TABLE t (id int PRIMARY KEY, code text);\n" + GATE,
                            "002_gated.ops.yaml", "operations:\n  - create_index: {table: t, name: t_code_idx, "
                            "columns: [code]}\n" + GATED_STEP)
    with pytest.raises(MigrationFailed, match="division by zero"):
        api.migrate(settings)
    conn.execute("INSERT INTO gate VALUES (1)")
    again: list[str] = []
    assert api.migrate(settings, notify=again.append).applied[0].resumed_at == 1
    assert not any("t_code_idx" in n for n in again), again


def _old_reader_until_second_check(blocker: Conn, notes: list[str]) -> Any:
    """``blocker`` reads t in a transaction older than lock_timeout (300 ms), so the step waits it out
    without queuing; the notify returned records every message and ends that transaction at check 2/3."""
    blocker.execute("SELECT * FROM t")
    time.sleep(0.4)

    def notify(message: str) -> None:
        notes.append(message)
        if "waits without queuing" in message and "check 2/3" in message:
            blocker.rollback()

    return notify


def test_waiting_out_an_old_transaction_counts_and_logs_each_check(tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _project_with_check(tmp_path, db_url, retries=3)
    notes: list[str] = []
    with psycopg.connect(db_url) as blocker:
        notify = _old_reader_until_second_check(blocker, notes)
        report = api.migrate(settings, notify=notify)
    waits = [n for n in notes if "waits without queuing" in n]
    assert [n.rsplit("check ", 1)[1].split(" ")[0] for n in waits] == ["1/3", "2/3"], notes
    assert report.applied[0].retries == 2
    events = conn.execute("SELECT event, detail FROM pgshift.events WHERE event LIKE 'lock-%' ORDER BY id").fetchall()
    assert [(e, d["attempt"], d["step"].startswith("add check")) for e, d in events] == [
        ("lock-wait-without-queuing", 1, True), ("lock-wait-without-queuing", 2, True)]
    assert 0.1 <= events[0][1]["delay_s"] <= 0.2 and 0.2 <= events[1][1]["delay_s"] <= 0.4  # backing off
    assert any("it would wait behind pid" in n for n in notes), notes
    assert _constraint(conn) == [("qty_positive",)]


def test_a_blocker_seen_at_every_check_is_reported_once(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """The abort drops the check (a strong lock on t) behind an old transaction, seen again at each check
    while waited out: the phase's blockers_seen (abort --json's) names that session once, not once a check."""
    settings = _project_with_check(tmp_path, db_url, retries=3)
    api.migrate(settings)
    notes: list[str] = []
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SET application_name = 'the_blocker'")
        notify = _old_reader_until_second_check(blocker, notes)
        pid = blocker.info.backend_pid
        result = service.abort(settings, notify=notify)
    behind = [n for n in notes if f"it would wait behind pid {pid} (the_blocker" in n]
    assert len(behind) == 2, notes  # seen at both checks, its transaction older at the second
    assert len(result.blockers_seen) == 1 and result.blockers_seen[0] == behind[0].split("wait behind ", 1)[1], (
        result.blockers_seen)
    assert _constraint(conn) == []


def test_the_ops_files_backfill_lock_limit_reaches_the_backfill(tmp_path: Path, db_url: str) -> None:
    settings = _pending_ops(tmp_path, db_url, (
        "CREATE TABLE t (id int PRIMARY KEY, note text);\nINSERT INTO t SELECT g FROM generate_series(1, 300) g;\n"
        "CREATE FUNCTION slow_note(i int) RETURNS text LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.002); RETURN 'n' || i; END $$;\n"), "002_fill.ops.yaml",
        "backfill_batch_size: 100\nbackfill_max_lock_ms: 20\noperations:\n"
        "  - set_not_null: {table: t, column: note, up: \"slow_note(id)\"}\n")
    notes: list[str] = []
    # A batch of the minimum 100 rows takes 200 ms: over the 20 ms limit every time.
    with pytest.raises(MigrationFailed, match="longer than the 20 ms limit even at the minimum batch size"):
        api.migrate(settings, notify=notes.append)
    assert any("reached the 20 ms lock limit" in n for n in notes), notes


class _Where:
    """Where each statement of a phase is, as the engine's observers (rehearsal) see it."""

    def __init__(self) -> None:
        self.where: list[str] = []

    def before(self, conn: Any, migration: Any, stmt: Any) -> None:
        self.where.append(stmt.where)

    def after(self, conn: Any, migration: Any, stmt: Any, error: BaseException | None) -> None:
        pass


def test_observers_see_each_phase_step_by_number_and_a_steps_warning_is_reported(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _pending_ops(tmp_path, db_url, "CREATE TABLE t (id int PRIMARY KEY, qty int);\n", "002_two.ops.yaml",
                            "operations:\n  - sql: {up: \"INSERT INTO t VALUES (1, 1)\"}\n"
                            "  - add_check: {table: t, name: qty_positive, check: \"qty > 0\"}\n")
    path = tmp_path / "migrations" / "002_two.ops.yaml"
    seen = _Where()
    api.migrate(settings, observer=seen)
    assert seen.where == [f"{path} (expand step 1/2: sql #0 up)",
                          f"{path} (expand step 2/2: add check qty_positive (NOT VALID))"], seen.where
    notes: list[str] = []
    result = service.abort(settings, notify=notes.append)
    # The sql operation has no down part: abort runs, and says what it could not undo.
    [warning] = result.warnings
    assert warning.endswith(": no 'down' part; abort cannot undo it."), warning
    assert f"warning: {warning}" in notes, notes
    assert result.steps_run == result.steps


def test_an_invalid_index_the_failed_build_could_not_drop_is_named_and_the_rerun_drops_it(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = _pending_ops(tmp_path, db_url, DUPLICATED_CODES, "002_idx.ops.yaml",
        "lock_timeout: 200ms\noperations:\n"
        "  - create_index: {table: t, name: t_code_key, columns: [code], unique: true}\n")
    with psycopg.connect(db_url) as reader:
        def notify(message: str) -> None:
            if message.startswith("dropping INVALID index"):
                reader.execute("SELECT * FROM t")  # DROP INDEX CONCURRENTLY waits for this transaction

        with pytest.raises(MigrationFailed, match="could not create unique index") as caught:
            api.migrate(settings, notify=notify)
        reader.rollback()
    assert ("The failed build left the INVALID index t_code_key: rerunning drops it before building again"
            in caught.value.message), caught.value.message
    assert _index_valid(conn, "t_code_key") is False
    conn.execute("UPDATE t SET code = 'b' WHERE id = 2")
    api.migrate(settings)  # as the message says
    assert _index_valid(conn, "t_code_key") is True


def test_an_expand_stopped_after_a_pipelined_step_does_not_run_it_again(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """A transaction step sent in one pipeline records its progress in its own transaction: the rerun after
    the next step failed starts at that step, not at the column the first one added."""
    settings = _pending_ops(tmp_path, db_url, "CREATE TABLE t (id int PRIMARY KEY, qty int);\n" + GATE,
                            "002_gated.ops.yaml", "operations:\n  - add_column: {table: t, column: {name: note, "
                            "type: text}}\n" + GATED_STEP)
    first: list[str] = []
    with pytest.raises(MigrationFailed, match="division by zero"):
        api.migrate(settings, notify=first.append)
    assert any(n.startswith("expand 1/") and "note" in n for n in first), first
    conn.execute("INSERT INTO gate VALUES (1)")
    again: list[str] = []
    assert api.migrate(settings, notify=again.append).applied[0].resumed_at == 1
    assert not any(n.startswith("expand 1/") for n in again), again

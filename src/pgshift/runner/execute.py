"""Run one migration's up or down part, safely, and record it in the ledger.

The part becomes a list of steps (pgshift.runner.steps.sql_steps) that the one step engine runs
(pgshift.runner.engine.StepEngine) with its retries, blocker report and INVALID-index repair:

- a transactional migration is one step: one transaction with ``SET LOCAL`` timeouts, its ledger
  row written in it; a lock timeout (55P03) or deadlock rolls it back and it is retried;
- a migration that cannot run in a transaction (a directive, or statements such as CREATE INDEX
  CONCURRENTLY) is one step per statement: each that may run in a transaction runs in its own
  together with the progress update, so progress and effect commit atomically; the others run in
  autocommit and, on resume, are checked for an effect left by the interrupted run;
- a file of another tool with its own BEGIN / COMMIT / END runs in the transaction blocks that tool
  ran it in (pgshift.migrations.blocks), one step per block, so a rerun resumes at the first block
  that did not commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors

from pgshift.db.history import History
from pgshift.errors import (
    ConnectionFailed,
    DiskFull,
    Interrupted,
    MigrationFailed,
    MigrationSourceError,
    PgshiftError,
)
from pgshift.migrations.classify import transaction_control
from pgshift.migrations.model import Migration, Statement, checksum_of
from pgshift.runner.engine import StatementObserver, StepEngine
from pgshift.runner.retry import RETRYABLE, RetryPolicy, gave_up, gave_up_error, gave_up_hint
from pgshift.runner.steps import (
    SqlStep,
    Step,
    StepTimeouts,
    needs_steps,
    session_settings,
    sql_steps,
    transaction_blocks,
)
from pgshift.runner.violations import adds_not_null_column, find_violators
from pgshift.units import Duration

__all__ = ["RETRYABLE", "Executor", "StatementObserver", "StepResult", "Timeouts", "needs_steps",
           "prefix_checksum", "statement_failure", "transaction_blocks"]

Direction = Literal["up", "down"]
# The session is gone: shut down (57P01-57P04), or the link broke (class 08).
SESSION_ENDED = ("57P", "08")
Notify = Callable[[str], None]


@dataclass
class Timeouts:
    lock_timeout: Duration
    statement_timeout: Duration


@dataclass
class StepResult:
    version: str
    name: str
    direction: Direction
    mode: str  # "transaction", "statement-by-statement" or "transaction blocks"
    statements: int
    duration_ms: int
    retries: int = 0
    resumed_at: int | None = None
    skipped: list[str] = field(default_factory=list)
    analyzed: list[str] = field(default_factory=list)  # tables ANALYZEd after it committed


class LedgerProgress:
    """A SQL migration's progress: statements_done and the checksum of those statements in its ledger row."""

    def __init__(self, history: History, version: str, statements: Sequence[Statement],
                 steps: Sequence[SqlStep]) -> None:
        self.history = history
        self.version = version
        self.steps = steps
        self.checksums = PrefixChecksums(statements)

    def record(self, steps_done: int) -> None:
        end = self.steps[steps_done - 1].end
        self.history.progress(self.version, end, self.checksums.of(end))


class CompletedInTransaction:
    """A transactional migration's one step: its ledger row says applied in the step's own transaction."""

    def __init__(self, complete: Callable[[], None]) -> None:
        self.complete = complete

    def record(self, steps_done: int) -> None:
        self.complete()


class Executor:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        history: History,
        *,
        server_major: int,
        timeouts: Timeouts,
        retry: RetryPolicy,
        notify: Notify | None = None,
        observer: StatementObserver | None = None,
        after_record: Callable[[Migration], None] | None = None,
        analyze_after: bool = True,
    ) -> None:
        self.observer = observer
        self.analyze_after = analyze_after  # ANALYZE what a migration left with stale statistics
        # Called right after each ledger write for a migration, on the same transaction
        # (pgshift.db.mirror keeps another tool's history table in step with it).
        self.after_record = after_record or (lambda _migration: None)
        self.conn = conn
        self.history = history
        self.server_major = server_major
        self.timeouts = timeouts
        self.retry = retry
        self.notify = notify or (lambda _msg: None)
        self._steps = False
        self._started = 0.0
        self._interrupted = False  # an earlier run of this migration stopped part-way
        self._engine: StepEngine | None = None
        self._direction: Direction = "up"
        self.migration: Migration | None = None

    # -- public ----------------------------------------------------------------------------
    def run(self, migration: Migration, direction: Direction) -> StepResult:
        statements = migration.up if direction == "up" else (migration.down or [])
        if any(transaction_control(s.sql) == "rollback" for s in statements):
            bad = next(s for s in statements if transaction_control(s.sql) == "rollback")
            raise MigrationSourceError(
                f"{bad.where}: ROLLBACK inside a migration is not supported; pgshift manages the "
                "transaction itself."
            )
        blocks = transaction_blocks(migration, statements, self.server_major)
        steps = blocks is not None or needs_steps(migration, statements, self.server_major)
        self.migration = migration
        self._interrupted = False
        self._engine = None
        self._direction = direction
        if steps:
            # Statement-by-statement runs keep a visible 'running' row: it is what a rerun resumes from.
            self.history.start(
                version=migration.version, name=migration.name, kind=migration.kind,
                checksum=migration.checksum, transactional=False, total=len(statements),
                source_format=migration.source_format, direction=direction,
                resume_from=self._resume_point(migration, statements, direction),
            )
            self.after_record(migration)
        self._steps = steps
        self._started = time.monotonic()
        try:
            done = self.history.statements_done(migration.version) if steps else 0
            plan = sql_steps(migration, statements, self.server_major, done)
            result = StepResult(migration.version, migration.name, direction, plan.mode, len(statements), 0)
            if done and blocks is not None:
                number = next((n for n, b in enumerate(blocks, 1) if b.end > done), len(blocks))
                self.notify(f"resuming {migration.label} at block {number} of {len(blocks)} (statement {done + 1})")
                self.history.log(migration.version, "resumed", {"statement": done + 1, "block": number})
            elif done:
                self.notify(f"resuming {migration.label} at statement {done + 1} of {len(statements)}")
                self.history.log(migration.version, "resumed", {"statement": done + 1})
            result.resumed_at = done or None
            result.skipped = [s.where for step in plan.steps for s in step.skipped]

            def complete() -> None:
                result.retries = engine.result.retries
                self._complete(migration, statements, direction, result)

            progress = (LedgerProgress(self.history, migration.version, statements, plan.steps) if steps
                        else CompletedInTransaction(complete))
            engine = self._engine = StepEngine(
                self.conn, self.history, self, migration, retry=self.retry, progress=progress, notify=self.notify,
                observer=self.observer, timeouts=StepTimeouts(migration.lock_timeout or self.timeouts.lock_timeout,
                                                              migration.statement_timeout
                                                              or self.timeouts.statement_timeout,
                                                              settings=session_settings(migration)))
            engine.run(plan.steps, interrupted=self._interrupted)
            result.retries = engine.result.retries
            if steps:
                self._complete(migration, statements, direction, result)
            if self.analyze_after:
                # A resumed run's earlier steps count too: the run that made them stopped before its ANALYZE.
                every = plan.steps if not done else sql_steps(migration, statements, self.server_major).steps
                result.analyzed = engine.analyze(every)
        except KeyboardInterrupt:
            self._record_failure(migration, direction, "interrupted by the user")
            raise Interrupted(
                f"Interrupted during {migration.label}; its transaction was rolled back and history "
                "marks it failed. Run the command again to finish."
            ) from None
        except MigrationFailed as exc:
            self._name_violators(exc, direction, migration.up if direction == "up" else migration.down or [])
            self._record_failure(migration, direction, str(exc))
            raise
        except psycopg.OperationalError as exc:
            if not self._connection_lost(exc):
                raise
            raise self._lost(migration, exc) from exc
        return result

    def _name_violators(self, failure: MigrationFailed, direction: Direction, part: Sequence[Statement]) -> None:
        """Where rows already in the table break a constraint the statement adds or validates (CHECK, NOT NULL,
        unique, foreign key), count them, name a few and give the query listing them all: the server names
        one at most. Now, because the transaction is rolled back and the session can read again."""
        cause = failure.__cause__
        if not isinstance(cause, psycopg.Error) or cause.diag.message_hint:
            return
        found = find_violators(self.conn, cause, failure.statement or "", (s.sql for s in part), self.notify)
        if found is not None:
            failure.hint = f"{found.sentence()} {_rerun_after_fixing(direction)}"

    def _connection_lost(self, exc: psycopg.Error) -> bool:
        return self.conn.broken or self.conn.closed or (exc.sqlstate or "").startswith(SESSION_ENDED)

    def _lost(self, migration: Migration, exc: psycopg.Error) -> ConnectionFailed:
        """Nothing can be recorded on a dead session, so say only what is known."""
        current = self._engine.current if self._engine else None
        where = f" at {current.where}" if current else ""
        message = " ".join((exc.diag.message_primary or str(exc)).split())
        sqlstate = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        if self._steps:
            known = ("The statements recorded as done before it stay committed; whether the one running "
                     "then completed is unknown. A rerun of the same command checks the history, resumes "
                     "at the first statement not recorded as done, and first checks whether an interrupted "
                     "CONCURRENTLY index build completed.")
        else:
            known = ("If the server received the commit, the migration is applied and recorded; otherwise "
                     "its transaction was rolled back. A rerun of the same command checks the history and "
                     "applies it only if it is not recorded there.")
        return ConnectionFailed(
            f"The connection to the server was lost during {migration.label}{where}: {message}{sqlstate}. "
            f"The outcome of migration {migration.label} is unknown: no history row or event could be "
            f"written. {known}",
            hint="check that the server is back (`pgshift status`), then run the command again.",
        )

    def _complete(self, migration: Migration, statements: Sequence[Statement], direction: Direction,
                  result: StepResult) -> None:
        result.duration_ms = int((time.monotonic() - self._started) * 1000)
        self.history.complete(
            version=migration.version, name=migration.name, kind=migration.kind, checksum=migration.checksum,
            transactional=not self._steps, total=len(statements), source_format=migration.source_format,
            direction=direction, duration_ms=result.duration_ms,
            detail={"duration_ms": result.duration_ms, "mode": result.mode, "retries": result.retries,
                    "resumed_at": result.resumed_at},
        )
        self.after_record(migration)

    def _resume_point(self, migration: Migration, statements: Sequence[Statement], direction: Direction) -> int:
        """Where an interrupted statement-by-statement run stopped, if the statements it completed
        are unchanged (a fix to a later statement keeps the progress; an edit before it does not)."""
        row = self.history.row(migration.version)
        if row is None or row.status not in ("running", "failed") or row.direction != direction:
            return 0
        done = min(row.statements_done, len(statements))
        if done and row.progress_checksum != prefix_checksum(statements[:done]):
            which = "statement 1" if done == 1 else f"statements 1-{done}"
            self.notify(f"{which} of {migration.label} changed since an interrupted run completed "
                        f"{'it' if done == 1 else 'them'}; starting again at statement 1")
            return 0
        # The run stopped at this statement; a CONCURRENTLY build there may have left its index.
        self._interrupted = True
        return done

    # -- the engine's questions (pgshift.runner.engine.StepOwner) ---------------------------
    def failed(self, step: Step, position: int, exc: psycopg.Error, index_left: str | None) -> BaseException:
        if isinstance(exc, psycopg.OperationalError) and self._connection_lost(exc):
            return exc  # run() reports it: nothing can be recorded on a dead session
        assert self.migration is not None
        stmt = step.sources[position]
        if isinstance(exc, pgerrors.DiskFull):
            return DiskFull(
                f"The server ran out of disk space at {stmt.where} ({self.migration.label}): "
                f"{exc.diag.message_primary}. Its transaction was rolled back; nothing was committed.",
                hint="free disk space on the database server, then run the command again.",
            )
        block = step.block if isinstance(step, SqlStep) else None
        return statement_failure(self.migration, stmt, exc, steps=self._steps, block=block,
                                 direction=self._direction)

    def exhausted(self, step: Step, attempts: int, exc: psycopg.Error, blocking: str) -> BaseException:
        migration = self.migration
        assert migration is not None
        return gave_up_error(exc)(
            f"{migration.label} at {step.where or migration.label} "
            f"{gave_up(exc, attempts, migration.lock_timeout or self.timeouts.lock_timeout)} "
            f"({exc.diag.message_primary}). Nothing of the failing step was committed. {blocking}",
            hint=gave_up_hint(exc, self.conn.info),
        )

    def backfill_failed(self, step: Step, exc: Exception) -> BaseException:
        return exc  # a SQL migration has no backfill step

    def _record_failure(self, migration: Migration, direction: Direction, error: str) -> None:
        if self.conn.closed:
            return
        statements = migration.up if direction == "up" else (migration.down or [])
        if direction == "down" and not self._steps:
            # The down part's transaction rolled back whole: the migration is still applied, and its
            # row must keep saying so (marking it failed would ask for a rollback "to finish").
            with contextlib.suppress(psycopg.Error):
                self.history.log(migration.version, "rollback-failed", {"error": error})
            return
        # If the connection is broken, the row stays as it was and the next run retries.
        with contextlib.suppress(psycopg.Error):
            self.history.fail(
                version=migration.version, name=migration.name, kind=migration.kind, checksum=migration.checksum,
                transactional=not self._steps, total=len(statements), source_format=migration.source_format,
                direction=direction, error=error,
            )
        # A mirror that cannot be written now is repaired by the next run; the failure is what to report.
        with contextlib.suppress(psycopg.Error, PgshiftError):
            self.after_record(migration)


def prefix_checksum(statements: Sequence[Statement]) -> str:
    return checksum_of(*(s.sql for s in statements))


class PrefixChecksums:
    """prefix_checksum(statements[:n]) for growing n, hashing each statement once (from scratch
    each time is quadratic: 11k statements of 4 kB hash 250 GB)."""

    def __init__(self, statements: Sequence[Statement]) -> None:
        self.statements = statements
        self.digest = hashlib.sha256()
        self.count = 0
        self.rest: Iterator[Statement] | None = None  # read in order once (a streamed part has no cheap [i])

    def of(self, count: int) -> str:
        if count < self.count:
            return prefix_checksum(self.statements[:count])
        if self.rest is None:
            self.rest = iter(self.statements)
        while self.count < count:
            self.digest.update(next(self.rest).sql.encode())
            self.digest.update(b"\x00")
            self.count += 1
        return self.digest.copy().hexdigest()


def statement_failure(
    migration: Migration, stmt: Statement, exc: psycopg.Error, *, steps: bool = False, block: str | None = None,
    direction: Direction = "up",
) -> MigrationFailed:
    """A one-paragraph error naming file:line, the statement, and the server's message and hint."""
    diag = exc.diag
    line = stmt.line
    position = diag.statement_position
    if position and position.isdigit():
        offset = int(position) - 1
        line = stmt.line + stmt.sql[:offset].count("\n")
    message = diag.message_primary or str(exc).strip()
    what = "the rollback of migration" if direction == "down" else "migration"
    parts = [
        f"{stmt.file}:{line}: {what} {migration.label} failed: {message}"
        f" (SQLSTATE {exc.sqlstate}).",
        f"Statement: {stmt.summary}.",
    ]
    if diag.message_detail:
        parts.append(f"Detail: {diag.message_detail}")
    if block is not None:
        parts.append(
            f"Its transaction ({block}, as the file's own BEGIN / COMMIT divide it) was rolled back; "
            "the blocks before it stay committed, and a rerun resumes at this block."
        )
    elif steps:
        parts.append(
            "This statement was rolled back; the statements before it in this non-transactional "
            "migration stay committed, and a rerun resumes at this statement."
        )
    elif direction == "down":
        parts.append(f"The rollback ran in one transaction, which was rolled back: {migration.label} stays "
                     "applied, exactly as before the rollback.")
    else:
        parts.append("The migration's changes were rolled back and history marks it failed.")
    hint = diag.message_hint or _data_hint(exc, direction, stmt.sql)
    return MigrationFailed(" ".join(parts), hint=hint, sqlstate=exc.sqlstate, detail=diag.message_detail,
                           version=migration.version, file=stmt.file, line=line, statement=stmt.sql)


def _data_hint(exc: psycopg.Error, direction: Direction, statement: str) -> str | None:
    """A constraint that rows of the table violate (class 23) fails again on every rerun until the
    data or the migration changes: say so, where the server's own hint says nothing."""
    if not (exc.sqlstate or "").startswith("23"):
        return None
    diag = exc.diag
    if isinstance(exc, pgerrors.NotNullViolation) and diag.column_name and adds_not_null_column(
            statement, diag.column_name):
        table = diag.table_name or "the table"
        return (f"{table} already has rows, and a new NOT NULL column without a DEFAULT would be null in each: give "
                f"{diag.column_name} a DEFAULT (from PostgreSQL 11 a constant one is added without rewriting the "
                "table), or add it nullable, fill it in batches (`pgshift backfill`), then make it NOT NULL; then "
                f"run `{_command(direction)}` again.")
    where = f" of {diag.table_name}" if diag.table_name else ""
    which = f" {diag.constraint_name}" if diag.constraint_name else " the constraint"
    named = " (the Detail above names one)" if diag.message_detail else ""
    return f"rows{where} violate{which}{named}: {_rerun_after_fixing(direction)}"


def _command(direction: Direction) -> str:
    return "pgshift rollback" if direction == "down" else "pgshift migrate"


def _rerun_after_fixing(direction: Direction) -> str:
    return (f"a rerun fails the same way until those rows or the migration are corrected; then run "
            f"`{_command(direction)}` again.")


"""Run one migration's up or down part, safely, and record it in the ledger.

Transactional migrations run in one transaction with ``SET LOCAL lock_timeout``; a lock timeout
(55P03) rolls the whole transaction back and it is retried with backoff and jitter. Migrations
that cannot run in a transaction (a directive, or statements such as CREATE INDEX CONCURRENTLY)
run statement by statement: each statement that may run in a transaction runs in its own
together with the progress update, so progress and effect commit atomically; the others run in
autocommit and, on resume, are checked for an effect left by the interrupted run.

A file of another tool with its own BEGIN / COMMIT / END runs in the transaction blocks that tool
ran it in (pgshift.migrations.blocks): each block is one transaction with the timeouts set locally
and its lock-timeout retries, committing together with the progress update, so a rerun resumes
at the first block that did not commit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgshift.db.history import History
from pgshift.errors import (
    ConnectionFailed,
    DiskFull,
    Interrupted,
    LockTimeoutExhausted,
    MigrationFailed,
    MigrationSourceError,
    PgshiftError,
)
from pgshift.migrations.blocks import Block, plan_blocks
from pgshift.migrations.classify import (
    autocommit_reason,
    concurrent_index,
    transaction_control,
    transaction_modes,
)
from pgshift.migrations.model import Migration, Statement, checksum_of
from pgshift.runner.retry import RetryPolicy

Direction = Literal["up", "down"]
# Lock timeouts (55P03) and deadlocks (40P01) leave nothing behind and are worth another try.
RETRYABLE = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected)
# The session is gone: shut down (57P01-57P04), or the link broke (class 08).
SESSION_ENDED = ("57P", "08")
Notify = Callable[[str], None]


class StatementObserver(Protocol):
    """Watches every statement the executor runs (rehearsal records timings and locks with it).

    ``after`` runs on the migrating connection before the statement's transaction commits, so
    ``pg_locks`` still shows the locks the statement took.
    """

    def before(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement) -> None: ...

    def after(
        self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement, error: BaseException | None
    ) -> None: ...


@dataclass
class Timeouts:
    lock_timeout: str
    statement_timeout: str


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


def transaction_blocks(migration: Migration, statements: list[Statement], server_major: int) -> list[Block] | None:
    """The blocks of a part with its own BEGIN / COMMIT / END, or None when it runs as before."""
    return plan_blocks(migration, statements, transaction_control, lambda sql: autocommit_reason(sql, server_major))


def needs_steps(migration: Migration, statements: list[Statement], server_major: int) -> bool:
    return not migration.transactional or any(
        autocommit_reason(s.sql, server_major) for s in statements
    )


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
    ) -> None:
        self.observer = observer
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
        self._block: str | None = None  # the running block, for failure messages
        self._started = 0.0
        self._interrupted_at: int | None = None  # where an earlier run of this migration stopped
        self._current: Statement | None = None
        self._direction: Direction = "up"

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
        self._interrupted_at = None
        self._current = None
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
        mode = "transaction blocks" if blocks is not None else "statement-by-statement" if steps else "transaction"
        result = StepResult(migration.version, migration.name, direction, mode, len(statements), 0)
        try:
            if blocks is not None:
                self._run_blocks(migration, statements, blocks, result)
                self._complete(migration, statements, direction, result)
            elif steps:
                self._run_steps(migration, statements, result)
                self._complete(migration, statements, direction, result)
            else:
                self._run_transaction(migration, statements, direction, result)
        except KeyboardInterrupt:
            self._record_failure(migration, direction, "interrupted by the user")
            raise Interrupted(
                f"Interrupted during {migration.label}; its transaction was rolled back and history "
                "marks it failed. Run the command again to finish."
            ) from None
        except MigrationFailed as exc:
            self._record_failure(migration, direction, str(exc))
            raise
        except psycopg.OperationalError as exc:
            if not self._connection_lost(exc):
                raise
            raise self._lost(migration, exc) from None
        return result

    def _connection_lost(self, exc: psycopg.Error) -> bool:
        return self.conn.broken or self.conn.closed or (exc.sqlstate or "").startswith(SESSION_ENDED)

    def _lost(self, migration: Migration, exc: psycopg.Error) -> ConnectionFailed:
        """Nothing can be recorded on a dead session, so say only what is known."""
        where = f" at {self._current.where}" if self._current else ""
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

    def _complete(self, migration: Migration, statements: list[Statement], direction: Direction,
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

    def _resume_point(self, migration: Migration, statements: list[Statement], direction: Direction) -> int:
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
        self._interrupted_at = done
        return done

    # -- transactional mode ----------------------------------------------------------------
    def _run_transaction(self, migration: Migration, statements: list[Statement], direction: Direction,
                         result: StepResult) -> None:
        runnable = [s for s in statements if not transaction_control(s.sql)]
        result.skipped = [s.where for s in statements if transaction_control(s.sql)]

        def attempt() -> None:
            with self.conn.transaction():
                self._set_timeouts(migration, local=True)
                for stmt in runnable:
                    self._execute(migration, stmt)
                self._complete(migration, statements, direction, result)

        self._with_lock_retries(migration, runnable[0] if runnable else None, attempt, result)

    # -- statement-by-statement mode -------------------------------------------------------
    def _run_steps(self, migration: Migration, statements: list[Statement], result: StepResult) -> None:
        done = self.history.statements_done(migration.version)
        if done:
            result.resumed_at = done
            self.notify(f"resuming {migration.label} at statement {done + 1} of {len(statements)}")
            self.history.log(migration.version, "resumed", {"statement": done + 1})
        for index in range(done, len(statements)):
            stmt = statements[index]
            if transaction_control(stmt.sql):
                result.skipped.append(stmt.where)
                self.history.progress(migration.version, index + 1, prefix_checksum(statements[: index + 1]))
                continue
            if autocommit_reason(stmt.sql, self.server_major):
                if index == self._interrupted_at and self._effect_present(stmt):
                    self.notify(f"statement {index + 1} had completed before the interruption; not rerun")
                    self.history.progress(migration.version, index + 1, prefix_checksum(statements[: index + 1]))
                    continue
                def autocommit(s: Statement = stmt) -> None:
                    self._autocommit(migration, s)

                self._with_lock_retries(migration, stmt, autocommit, result)
                self.history.progress(migration.version, index + 1, prefix_checksum(statements[: index + 1]))
            else:
                def in_transaction(s: Statement = stmt, position: int = index + 1) -> None:
                    with self.conn.transaction():
                        self._set_timeouts(migration, local=True)
                        self._execute(migration, s)
                        self.history.progress(migration.version, position, prefix_checksum(statements[:position]))

                self._with_lock_retries(migration, stmt, in_transaction, result)

    # -- transaction blocks ----------------------------------------------------------------
    def _run_blocks(self, migration: Migration, statements: list[Statement], blocks: list[Block],
                    result: StepResult) -> None:
        done = self.history.statements_done(migration.version)
        if done:
            number = next((n for n, b in enumerate(blocks, 1) if b.end > done), len(blocks))
            result.resumed_at = done
            self.notify(f"resuming {migration.label} at block {number} of {len(blocks)} (statement {done + 1})")
            self.history.log(migration.version, "resumed", {"statement": done + 1, "block": number})
        try:
            for number, block in enumerate(blocks, 1):
                if block.end <= done:
                    continue  # committed before the interruption
                first = max(block.start, done)
                part = statements[first:block.end]
                result.skipped += [s.where for s in part if transaction_control(s.sql)]
                runnable = [s for s in part if not transaction_control(s.sql)]
                progress = (block.end, prefix_checksum(statements[: block.end]))
                if not runnable:
                    self.history.progress(migration.version, *progress)
                    continue
                span = f"{runnable[0].line}-{runnable[-1].line}" if len(runnable) > 1 else f"{runnable[0].line}"
                self._block = f"block {number} of {len(blocks)}, {runnable[0].file}:{span}"
                if not block.transactional:
                    stmt = runnable[0]
                    if first == self._interrupted_at and self._effect_present(stmt):
                        self.notify(f"statement {first + 1} had completed before the interruption; not rerun")
                    else:
                        def autocommit(one: Statement = stmt) -> None:
                            self._autocommit(migration, one)

                        self._with_lock_retries(migration, stmt, autocommit, result)
                    self.history.progress(migration.version, *progress)
                    continue

                # BEGIN ISOLATION LEVEL ... opening the block keeps its modes (they must come first).
                opener = statements[block.start] if first == block.start else None
                modes = transaction_modes(opener.sql) if opener and transaction_control(opener.sql) else None

                def in_transaction(todo: list[Statement] = runnable, mark: tuple[int, str] = progress,
                                   modes: str | None = modes) -> None:
                    with self.conn.transaction():
                        if modes:
                            self.conn.execute(f"SET TRANSACTION {modes}".encode())
                        self._set_timeouts(migration, local=True)
                        for stmt in todo:
                            self._execute(migration, stmt)
                        self.history.progress(migration.version, *mark)

                self._with_lock_retries(migration, runnable[0], in_transaction, result)
        finally:
            self._block = None

    def _autocommit(self, migration: Migration, stmt: Statement) -> None:
        self._set_timeouts(migration, local=False)
        invalid_before = self._invalid_indexes()
        try:
            self._execute(migration, stmt)
        except (MigrationFailed, *RETRYABLE):
            self._drop_new_invalid_indexes(invalid_before)
            raise
        finally:
            self.conn.execute("RESET lock_timeout; RESET statement_timeout")

    # -- helpers ---------------------------------------------------------------------------
    def _set_timeouts(self, migration: Migration, *, local: bool) -> None:
        lock = migration.lock_timeout or self.timeouts.lock_timeout
        stmt_timeout = migration.statement_timeout or self.timeouts.statement_timeout
        self.conn.execute(
            "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
            (lock, local, stmt_timeout, local),
        )

    def _execute(self, migration: Migration, stmt: Statement) -> None:
        if self.observer is None:
            self._execute_plain(migration, stmt)
            return
        self.observer.before(self.conn, migration, stmt)
        try:
            self._execute_plain(migration, stmt)
        except BaseException as exc:
            self.observer.after(self.conn, migration, stmt, exc)
            raise
        self.observer.after(self.conn, migration, stmt, None)

    def _execute_plain(self, migration: Migration, stmt: Statement) -> None:
        self._current = stmt
        try:
            self.conn.execute(stmt.sql.encode())
        except RETRYABLE:
            raise
        except pgerrors.DiskFull as exc:
            raise DiskFull(
                f"The server ran out of disk space at {stmt.where} ({migration.label}): "
                f"{exc.diag.message_primary}. Its transaction was rolled back; nothing was committed.",
                hint="free disk space on the database server, then run the command again.",
            ) from None
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and self._connection_lost(exc):
                raise  # run() reports it: nothing can be recorded on a dead session
            raise statement_failure(migration, stmt, exc, steps=self._steps, block=self._block,
                                    direction=self._direction) from None

    def _with_lock_retries(
        self, migration: Migration, stmt: Statement | None, attempt: Callable[[], None], result: StepResult
    ) -> None:
        for retry in range(self.retry.attempts + 1):
            try:
                attempt()
                return
            except RETRYABLE as exc:
                if retry >= self.retry.attempts:
                    raise self._exhausted(migration, stmt, exc) from None
                delay = self.retry.delay_seconds(retry + 1)
                result.retries += 1
                self.history.log(migration.version, "lock-timeout-retry", {
                    "attempt": retry + 1, "delay_s": round(delay, 3),
                    "statement": stmt.where if stmt else None,
                })
                self.notify(
                    f"lock_timeout at {stmt.where if stmt else migration.label}; retry {retry + 1}/"
                    f"{self.retry.attempts} in {delay:.2f}s"
                )
                time.sleep(delay)

    def _exhausted(self, migration: Migration, stmt: Statement | None, exc: psycopg.Error) -> LockTimeoutExhausted:
        blockers = self.conn.execute(
            """
            SELECT pid, coalesce(application_name, ''), state,
                   extract(epoch FROM now() - xact_start)::int, left(query, 80)
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
            ORDER BY xact_start LIMIT 3
            """
        ).fetchall()
        who = "; ".join(f"pid {p} ({a or 'no name'}, {s}, open {age}s: {q})" for p, a, s, age, q in blockers)
        where = stmt.where if stmt else migration.label
        return LockTimeoutExhausted(
            f"{migration.label} could not take its lock at {where} within lock_timeout "
            f"{migration.lock_timeout or self.timeouts.lock_timeout} after {self.retry.attempts + 1} "
            f"attempts ({exc.diag.message_primary}). Nothing of the failing step was committed. "
            f"Open transactions now: {who or 'none'}.",
            hint="retry when traffic is lower, end the blocking sessions, or raise lock_retries.",
        )

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

    def _effect_present(self, stmt: Statement) -> bool:
        """Did an interrupted run already complete this non-transactional statement?"""
        target = concurrent_index(stmt.sql)
        if target is None or target.name is None:
            return False
        row = self.conn.execute(
            """
            SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = %s AND (%s::text IS NULL AND n.nspname = ANY (current_schemas(false))
                                      OR n.nspname = %s)
            """,
            (target.name, target.schema, target.schema),
        ).fetchone()
        creating = stmt.sql.lstrip().upper().startswith("CREATE")
        if creating:
            if row is None:
                return False
            if not row[0]:
                self.notify(f"dropping INVALID index {target.name} left by the interrupted build; building it again")
                self._drop_index(target.schema, target.name)
                return False
            return True
        return row is None  # a DROP INDEX CONCURRENTLY whose index is already gone

    def _invalid_indexes(self) -> set[tuple[str, str]]:
        rows = self.conn.execute(
            """
            SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid
            """
        ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def _drop_new_invalid_indexes(self, before: set[tuple[str, str]]) -> None:
        for schema, name in sorted(self._invalid_indexes() - before):
            self.notify(f"dropping INVALID index {schema}.{name} left by a failed CONCURRENTLY build")
            self._drop_index(schema, name)

    def _drop_index(self, schema: str | None, name: str) -> None:
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(ident))
        self.history.log(None, "dropped-invalid-index", {"schema": schema, "index": name})


def prefix_checksum(statements: list[Statement]) -> str:
    return checksum_of(*(s.sql for s in statements))


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
    return MigrationFailed(" ".join(parts), hint=diag.message_hint)

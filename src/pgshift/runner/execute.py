"""Run one migration's up or down part, safely, and record it in the ledger.

Transactional migrations run in one transaction with ``SET LOCAL lock_timeout``; a lock timeout
(55P03) rolls the whole transaction back and it is retried with backoff and jitter. Migrations
that cannot run in a transaction (a directive, or statements such as CREATE INDEX CONCURRENTLY)
run statement by statement: each statement that may run in a transaction runs in its own
together with the progress update, so progress and effect commit atomically; the others run in
autocommit and, on resume, are checked for an effect left by the interrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgshift.db.history import History
from pgshift.errors import DiskFull, Interrupted, LockTimeoutExhausted, MigrationFailed, MigrationSourceError
from pgshift.migrations.classify import autocommit_reason, concurrent_index, transaction_control
from pgshift.migrations.model import Migration, Statement, checksum_of
from pgshift.runner.retry import RetryPolicy

Direction = Literal["up", "down"]
# Lock timeouts (55P03) and deadlocks (40P01) leave nothing behind and are worth another try.
RETRYABLE = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected)
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
    mode: str  # "transaction" or "statement-by-statement"
    statements: int
    duration_ms: int
    retries: int = 0
    resumed_at: int | None = None
    skipped: list[str] = field(default_factory=list)


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
    ) -> None:
        self.observer = observer
        self.conn = conn
        self.history = history
        self.server_major = server_major
        self.timeouts = timeouts
        self.retry = retry
        self.notify = notify or (lambda _msg: None)
        self._steps = False
        self._started = 0.0

    # -- public ----------------------------------------------------------------------------
    def run(self, migration: Migration, direction: Direction) -> StepResult:
        statements = migration.up if direction == "up" else (migration.down or [])
        if any(transaction_control(s.sql) == "rollback" for s in statements):
            bad = next(s for s in statements if transaction_control(s.sql) == "rollback")
            raise MigrationSourceError(
                f"{bad.where}: ROLLBACK inside a migration is not supported; pgshift manages the "
                "transaction itself."
            )
        steps = needs_steps(migration, statements, self.server_major)
        if steps:
            # Statement-by-statement runs keep a visible 'running' row: it is what a rerun resumes from.
            self.history.start(
                version=migration.version, name=migration.name, kind=migration.kind,
                checksum=migration.checksum, transactional=False, total=len(statements),
                source_format=migration.source_format, direction=direction,
                resume_from=self._resume_point(migration, statements, direction),
            )
        self._steps = steps
        self._started = time.monotonic()
        result = StepResult(migration.version, migration.name, direction,
                            "statement-by-statement" if steps else "transaction", len(statements), 0)
        try:
            if steps:
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
        return result

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

    def _resume_point(self, migration: Migration, statements: list[Statement], direction: Direction) -> int:
        """Where an interrupted statement-by-statement run stopped, if the statements it completed
        are unchanged (a fix to a later statement keeps the progress; an edit before it does not)."""
        row = self.history.row(migration.version)
        if row is None or row.status not in ("running", "failed") or row.direction != direction:
            return 0
        done = min(row.statements_done, len(statements))
        if done and row.progress_checksum == prefix_checksum(statements[:done]):
            return done
        return 0

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
        checksums = PrefixChecksums(statements)
        for index in range(done, len(statements)):
            stmt = statements[index]
            if transaction_control(stmt.sql):
                result.skipped.append(stmt.where)
                self.history.progress(migration.version, index + 1, checksums.of(index + 1))
                continue
            if autocommit_reason(stmt.sql, self.server_major):
                if index == done and result.resumed_at is not None and self._effect_present(stmt):
                    self.notify(f"statement {index + 1} had completed before the interruption; not rerun")
                    self.history.progress(migration.version, index + 1, checksums.of(index + 1))
                    continue
                def autocommit(s: Statement = stmt) -> None:
                    self._autocommit(migration, s)

                self._with_lock_retries(migration, stmt, autocommit, result)
                self.history.progress(migration.version, index + 1, checksums.of(index + 1))
            else:
                def in_transaction(s: Statement = stmt, position: int = index + 1) -> None:
                    with self.conn.transaction():
                        self._set_timeouts(migration, local=True)
                        self._execute(migration, s)
                        self.history.progress(migration.version, position, checksums.of(position))

                self._with_lock_retries(migration, stmt, in_transaction, result)

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
            raise statement_failure(migration, stmt, exc, steps=self._steps) from None

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
        # If the connection is broken, the row stays as it was and the next run retries.
        with contextlib.suppress(psycopg.Error):
            self.history.fail(
                version=migration.version, name=migration.name, kind=migration.kind, checksum=migration.checksum,
                transactional=not self._steps, total=len(statements), source_format=migration.source_format,
                direction=direction, error=error,
            )

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


class PrefixChecksums:
    """prefix_checksum(statements[:n]) for growing n, hashing each statement once (from scratch
    each time is quadratic: 11k statements of 4 kB hash 250 GB)."""

    def __init__(self, statements: list[Statement]) -> None:
        self.statements = statements
        self.digest = hashlib.sha256()
        self.count = 0

    def of(self, count: int) -> str:
        if count < self.count:
            return prefix_checksum(self.statements[:count])
        while self.count < count:
            self.digest.update(self.statements[self.count].sql.encode())
            self.digest.update(b"\x00")
            self.count += 1
        return self.digest.copy().hexdigest()


def statement_failure(
    migration: Migration, stmt: Statement, exc: psycopg.Error, *, steps: bool = False
) -> MigrationFailed:
    """A one-paragraph error naming file:line, the statement, and the server's message and hint."""
    diag = exc.diag
    line = stmt.line
    position = diag.statement_position
    if position and position.isdigit():
        offset = int(position) - 1
        line = stmt.line + stmt.sql[:offset].count("\n")
    message = diag.message_primary or str(exc).strip()
    parts = [
        f"{stmt.file}:{line}: migration {migration.label} failed: {message}"
        f" (SQLSTATE {exc.sqlstate}).",
        f"Statement: {stmt.summary}.",
    ]
    if diag.message_detail:
        parts.append(f"Detail: {diag.message_detail}")
    if steps:
        parts.append(
            "This statement was rolled back; the statements before it in this non-transactional "
            "migration stay committed, and a rerun resumes at this statement."
        )
    else:
        parts.append("The migration's changes were rolled back and history marks it failed.")
    return MigrationFailed(" ".join(parts), hint=diag.message_hint)

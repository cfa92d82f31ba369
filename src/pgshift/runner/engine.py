"""The one step engine: runs a migration's steps (SQL or operations alike), each one transaction,
one autocommit statement or a batched backfill, with

- one retry policy (:class:`pgshift.runner.retry.RetryPolicy`: lock timeouts and deadlocks, backoff
  with jitter), never queuing a strong lock behind a transaction already older than lock_timeout;
- one blocker report (:mod:`pgshift.runner.blockers`), autovacuums in the way cancelled;
- one repair of the INVALID index a failed or interrupted CONCURRENTLY build leaves, by the name
  the step knows;
- one observer interface (:class:`StatementObserver`) for every statement, backfills included;
- one progress store interface (:class:`ProgressStore`), written in the step's own transaction.

What a failure means differs between a SQL migration and an operations phase, so the messages come
from the step's owner (:class:`StepOwner`: pgshift.runner.execute.Executor, pgshift.ops.phases.PhaseRunner).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg import sql

from pgshift.db.history import History
from pgshift.db.styles import database_styles, use_pinned_styles
from pgshift.migrations.model import Migration, Statement
from pgshift.ops.names import qualified
from pgshift.runner.backfill import Backfiller, BackfillError, BackfillOptions
from pgshift.runner.blockers import Autovacuums, Blocker, blockers, open_transactions, step_blockers
from pgshift.runner.retry import RETRYABLE, RetryPolicy, retry_reason
from pgshift.runner.steps import SqlOf, Step, StepStatement, StepTimeouts, setting_name, stale_statistics

Notify = Callable[[str], None]


class StatementObserver(Protocol):
    """Watches every statement the engine runs (rehearsal records timings and locks with it).

    ``after`` runs on the migrating connection before the statement's transaction commits, so
    ``pg_locks`` still shows the locks the statement took.
    """

    def before(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement) -> None: ...

    def after(
        self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement, error: BaseException | None
    ) -> None: ...


class ProgressStore(Protocol):
    """Where a rerun resumes: how many steps are done. ``record`` runs on the engine's connection,
    inside the step's transaction for a transactional step (so progress and effect commit together).
    The owner reads its own store to choose ``start`` (it needs it before the engine runs: for its
    plan, its resume notice and its state row)."""

    def record(self, steps_done: int) -> None: ...


class StepOwner(Protocol):
    """The runner a step belongs to: it says what a failure means for its migration."""

    def failed(self, step: Step, position: int, exc: psycopg.Error, index_left: str | None) -> BaseException:
        """Statement ``position`` of ``step`` failed (not a lock timeout or deadlock)."""

    def exhausted(self, step: Step, attempts: int, exc: psycopg.Error, blocking: str) -> BaseException:
        """The step could not take its locks within the retry budget; ``blocking`` names who held them."""

    def backfill_failed(self, step: Step, exc: Exception) -> BaseException:
        """A backfill batch failed: a row the SET or a constraint rejects, or row-level security."""


@dataclass
class EngineResult:
    steps_run: int = 0
    retries: int = 0  # lock-timeout and deadlock retries, and attempts spent waiting without queuing
    backfilled_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    blockers_seen: list[str] = field(default_factory=list)
    autovacuums_cancelled: list[int] = field(default_factory=list)  # pids
    analyzed: list[str] = field(default_factory=list)  # tables ANALYZEd after the migration


class _Index(NamedTuple):
    schema: str
    name: str
    valid: bool


def _with_sources(step: Step) -> Iterator[tuple[sql.Composable, Statement | None]]:
    """Each statement of ``step`` with the file statement it is (a SQL migration's), in one pass: a
    streamed part's statements are read from the file as they run, and have no cheap ``[i]``."""
    if isinstance(step.statements, SqlOf) and step.statements.statements is step.sources:
        return ((sql.SQL(s.sql), s) for s in step.sources)
    sources = step.sources
    return ((s, sources[position] if sources else None) for position, s in enumerate(step.statements))


class StepEngine:
    def __init__(self, conn: psycopg.Connection[Any], history: History, owner: StepOwner, migration: Migration, *,
                 retry: RetryPolicy,
                 timeouts: StepTimeouts, progress: ProgressStore, notify: Notify | None = None,
                 observer: StatementObserver | None = None, phase: str | None = None,
                 backfill: BackfillOptions | None = None, backfill_schema: str | None = None) -> None:
        self.conn = conn
        self.history = history
        self.owner = owner
        self.migration = migration
        self.retry = retry
        self.timeouts = timeouts
        self.progress = progress
        self.notify = notify or (lambda _msg: None)
        self.observer = observer
        # Operations phases name their steps ("expand 2/5: ..."); a SQL migration's statements speak for themselves.
        self.phase = phase
        self.backfill_options = backfill or BackfillOptions()
        self.backfill_schema = backfill_schema or history.schema
        self.result = EngineResult()
        self._reported_blockers: dict[str, str] = {}  # transaction -> the description in result.blockers_seen
        self._first_seen: dict[str, float] = {}  # transaction -> when it was first seen holding a lock here
        self.autovacuums = Autovacuums(conn, self.notify)
        self.result.autovacuums_cancelled = self.autovacuums.cancelled
        self.index = 0  # the running step, for the owner's failure messages
        self.current: Statement | None = None  # the running statement
        self._where = ""

    # -- steps -----------------------------------------------------------------------------
    def run(self, steps: Sequence[Step], start: int = 0, *, interrupted: bool = False) -> EngineResult:
        """Run ``steps[start:]``. ``interrupted``: an earlier run stopped in ``steps[start]``, so an
        autocommit step there is first checked for the effect it may already have had."""
        for index in range(start, len(steps)):
            step = steps[index]
            self.index = index
            if self.phase is not None:
                self._where = f"{self.phase} step {index + 1}/{len(steps)}: {step.label}"
                self.notify(f"{self.phase} {index + 1}/{len(steps)}: {step.label}")
            if step.warning:
                self.result.warnings.append(step.warning)
                self.notify(f"warning: {step.warning}")
            if step.kind == "backfill":
                self._backfill(step)
                self.progress.record(index + 1)
            elif step.kind == "autocommit":
                if interrupted and index == start and self._effect_present(step):
                    self.notify(f"{step.label} had completed before the interruption; not rerun")
                else:
                    self._with_retries(step, lambda s=step: self._autocommit(s))  # type: ignore[misc]
                self.progress.record(index + 1)
            else:
                self._with_retries(step, lambda s=step, i=index: self._transaction(s, i + 1))  # type: ignore[misc]
            self.result.steps_run += 1
        return self.result

    def _transaction(self, step: Step, done: int) -> None:
        with self.conn.transaction():
            if step.modes:
                self.conn.execute(f"SET TRANSACTION {step.modes}".encode())
            self._set_timeouts(local=True)
            if self.observer is None and not step.sources:
                self._pipelined(step, done)
                return
            for position, (statement, source) in enumerate(_with_sources(step)):
                self._execute(step, position, statement, source)
            self.progress.record(done)

    def _pipelined(self, step: Step, done: int) -> None:
        """An operation's generated statements, sent without waiting for each reply: once the first of them
        takes its strong lock, every round trip until the commit holds the application's queries back (a
        rename's expand held ACCESS EXCLUSIVE for 150 ms at 10M rows under load, one reply per statement)."""
        sent: list[psycopg.Cursor[Any]] = []
        try:
            with self.conn.pipeline():
                for statement in step.statements:
                    sent.append(self.conn.execute(statement.as_bytes(self.conn)))
                self.progress.record(done)
        except RETRYABLE:
            raise
        except psycopg.Error as exc:
            # Replies are read in order: the first statement without one is the one that failed.
            position = next((i for i, cursor in enumerate(sent) if cursor.pgresult is None), None)
            if position is None:
                raise
            raise self.owner.failed(step, position, exc, None) from exc

    def _autocommit(self, step: Step) -> None:
        if step.skip_if is not None:
            row = self.conn.execute(step.skip_if.as_bytes(self.conn)).fetchone()
            if row and row[0]:
                self.notify(f"{step.label}: already done by an earlier run; not run again")
                return
        try:
            self._set_timeouts(local=False)
            for position, (statement, source) in enumerate(_with_sources(step)):
                self._drop_invalid_index(step, "an interrupted or failed build")
                try:
                    self._execute(step, position, statement, source)
                except RETRYABLE:
                    self._drop_left_over_index(step)  # a build that timed out waiting for old snapshots
                    raise
        finally:
            self.conn.execute(b"RESET lock_timeout; RESET statement_timeout")
            self._reset_settings()

    def _set_timeouts(self, *, local: bool) -> None:
        t = self.timeouts
        # Set even when unlimited ('0'): a database's or role's own statement_timeout, meant for the
        # application, would otherwise cancel a long CONCURRENTLY build half-way.
        statement_timeout = t.statement_timeout.postgres if local or t.autocommit_statement_timeout else "0"
        self.conn.execute("SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
                          (t.lock_timeout.postgres, local, statement_timeout, local))
        self._set_settings(local=local)

    def _set_settings(self, *, local: bool) -> None:
        """The migration's own settings: SET LOCAL ends with the transaction; a session-level SET is
        undone by :meth:`_reset_settings` (RESET: the session's default, not a value set by pgshift).
        The database's DateStyle too, which pgshift's session pins for its own queries
        (:mod:`pgshift.db.styles`): the migration's statements compute as psql's would. SET LOCAL ends
        with the transaction (pgshift reads no date in it); after a session-level SET,
        :meth:`_reset_settings` puts pgshift's styles back."""
        styles = [(s.name, s.database) for s in database_styles(self.conn)]
        for name, value in (*styles, *self.timeouts.settings):
            self.conn.execute("SELECT set_config(%s, %s, %s)", (name, value, local))

    def _reset_settings(self) -> None:
        if self.conn.broken or self.conn.closed:
            return
        if self.timeouts.settings:
            self.conn.execute(sql.SQL("; ").join(
                sql.SQL("RESET {}").format(setting_name(name)) for name, _ in self.timeouts.settings))
        use_pinned_styles(self.conn)

    # -- statistics ------------------------------------------------------------------------
    def analyze(self, steps: Iterable[Step]) -> list[str]:
        """ANALYZE the tables whose statistics ``steps`` left stale, once their migration has committed
        (outside its transaction, so it holds no lock of the migration's), each under lock_timeout; an
        ANALYZE that cannot get its lock is a warning, never a failure of the committed migration."""
        version = self.migration.version
        for table in stale_statistics(steps, self.conn):
            row = self.conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')", (table,)).fetchone()
            if row is None:
                continue  # dropped by a later statement, or not a table
            name = sql.Identifier(str(row[0]), str(row[1]))
            shown = qualified(str(row[0]), str(row[1]))
            started = time.monotonic()
            try:
                self.conn.execute("SELECT set_config('lock_timeout', %s, false)",
                                  (self.timeouts.lock_timeout.postgres,))
                self.conn.execute(sql.SQL("ANALYZE {}").format(name))
            except psycopg.Error as exc:
                if self.conn.broken or self.conn.closed:
                    raise
                reason = exc.diag.message_primary or str(exc)
                warning = (f"ANALYZE {shown} after {self.migration.label} did not run ({reason}); its statistics "
                           f"stay stale until autovacuum analyses it or `ANALYZE {shown}` is run")
                self.result.warnings.append(warning)
                self.notify(f"warning: {warning}")
                self.history.log(version, "analyze-skipped", {"table": shown, "error": reason})
                continue
            finally:
                if not (self.conn.broken or self.conn.closed):
                    self.conn.execute("RESET lock_timeout")
            elapsed = int((time.monotonic() - started) * 1000)
            self.result.analyzed.append(shown)
            self.notify(f"analyzed {shown} ({elapsed} ms): its statistics were stale after {self.migration.label}")
            self.history.log(version, "analyzed", {"table": shown, "duration_ms": elapsed})
        return self.result.analyzed

    # -- statements ------------------------------------------------------------------------
    def _observed(self, step: Step, position: int, statement: sql.Composable, rows: int | None = None,
                  text: str | None = None, source: Statement | None = None) -> Statement:
        if source is not None:
            return source
        if step.sources:
            return step.sources[position]
        return StepStatement(text if text is not None else statement.as_string(self.conn), str(self.migration.path),
                             self.index + 1, 1, position, self._where, rows)

    def _execute(self, step: Step, position: int, statement: sql.Composable, source: Statement | None) -> None:
        if self.observer is None:
            self.current = source
            self._execute_plain(step, position, statement)
            return
        observed = self.current = self._observed(step, position, statement, source=source)
        self.observer.before(self.conn, self.migration, observed)
        try:
            self._execute_plain(step, position, statement)
        except BaseException as exc:
            self.observer.after(self.conn, self.migration, observed, exc)
            raise
        self.observer.after(self.conn, self.migration, observed, None)

    def _execute_plain(self, step: Step, position: int, statement: sql.Composable) -> None:
        try:
            self.conn.execute(statement.as_bytes(self.conn))
        except RETRYABLE:
            raise
        except psycopg.Error as exc:
            left = None
            if step.kind == "autocommit" and not (self.conn.broken or self.conn.closed):
                left = self._drop_left_over_index(step)
            raise self.owner.failed(step, position, exc, left) from exc

    # -- backfill --------------------------------------------------------------------------
    def _backfill(self, step: Step) -> None:
        self._set_settings(local=False)  # the batches are transactions of their own
        try:
            self._backfill_batches(step)
        finally:
            self._reset_settings()

    def _backfill_batches(self, step: Step) -> None:
        """The backfill runs many short transactions; observers see it as one statement over all its batches."""
        spec = step.backfill
        assert spec is not None
        options = self.backfill_options
        run = Backfiller(self.conn, self.backfill_schema, spec, options, notify=self.notify).run
        table = qualified(spec.schema, spec.table) if spec.schema else spec.table
        text = (f"backfill {table} in batches (target {options.target_ms} ms each, its own transaction): "
                f"UPDATE {table} SET {spec.set_clause}" + (f" WHERE {spec.where}" if spec.where else ""))
        observed = self._observed(step, 0, sql.SQL(""), text=text)
        try:
            if self.observer is not None:
                self.observer.before(self.conn, self.migration, observed)
            try:
                done = run()
            except BaseException as exc:
                if self.observer is not None:
                    self.observer.after(self.conn, self.migration, observed, exc)
                raise
        except BackfillError as exc:
            if not exc.row_security:
                raise
            raise self.owner.backfill_failed(step, exc) from exc
        except psycopg.Error as exc:  # a row the fill expression or a constraint rejects
            raise self.owner.backfill_failed(step, exc) from exc
        if self.observer is not None:
            summary = (f"backfill {table}: {done.rows_this_run} rows in {done.batches} batches, longest "
                       f"{done.max_batch_ms:.0f} ms ({text.split(': ', 1)[1]})")
            self.observer.after(self.conn, self.migration,
                                self._observed(step, 0, sql.SQL(""), done.rows_this_run, summary), None)
        self.result.backfilled_rows += done.rows_this_run

    # -- retries ---------------------------------------------------------------------------
    def _ref(self, step: Step) -> dict[str, Any]:
        return {"statement": step.where} if step.sources else {"step": step.label}

    def _with_retries(self, step: Step, attempt: Callable[[], None]) -> None:
        attempts = self.retry.attempts

        def hold_off(number: int, delay: float, final: bool) -> bool:
            if step.lock_tables or step.weak_lock_tables:
                self.autovacuums.clear(step.lock_tables, step.weak_lock_tables, self.timeouts.lock_timeout,
                                       step.label, lambda pid, query: self.history.log(
                                           self.migration.version, "autovacuum-cancelled",
                                           {"step": step.label, "pid": pid, "query": query}))
            held = self._report_blockers(step) if step.lock_tables else []
            # A transaction already older than lock_timeout that holds a lock on the table will very
            # likely outlast this attempt; queued, the attempt would only hold back every query behind
            # it for lock_timeout. So wait for it to end without queuing (the same retry budget).
            if final or not any(b.age_s * 1000 > self.timeouts.lock_timeout.ms for b in held):
                return False
            self.result.retries += 1
            self.history.log(self.migration.version, "lock-wait-without-queuing",
                             {**self._ref(step), "attempt": number, "delay_s": round(delay, 3)})
            self.notify(f"'{step.label}' waits without queuing for the transaction(s) above; "
                        f"check {number}/{attempts} in {delay:.2f}s")
            return True

        def on_retry(number: int, delay: float, exc: psycopg.Error) -> None:
            self.result.retries += 1
            self.history.log(self.migration.version, "lock-timeout-retry",
                             {**self._ref(step), "attempt": number, "delay_s": round(delay, 3),
                              "reason": retry_reason(exc)})
            at = f"at {step.where}" if step.sources else f"on '{step.label}'"
            reason = retry_reason(exc)
            self.notify(f"{'lock_timeout' if reason == 'lock timeout' else reason} {at}; retry {number}/{attempts} "
                        f"in {delay:.2f}s")

        def exhausted(number: int, exc: psycopg.Error) -> BaseException:
            return self.owner.exhausted(step, number, exc, self.blocking(step))

        self.retry.run(attempt, hold_off=hold_off, on_retry=on_retry, exhausted=exhausted)

    def blocking(self, step: Step) -> str:
        """Who holds the step back now, for its LockTimeoutExhausted message: the sessions holding locks
        on its tables, or when it names none, the oldest open transactions."""
        if step.lock_tables or step.weak_lock_tables:
            found = self._aged(step_blockers(self.conn, step.lock_tables, step.weak_lock_tables))
            text = f"Blocking sessions: {'; '.join(b.describe() for b in found) or 'none now'}."
        else:
            found = open_transactions(self.conn)
            text = f"Open transactions now: {'; '.join(b.describe() for b in found) or 'none'}."
        why = " ".join(self.autovacuums.notes[b.pid] for b in found if b.pid in self.autovacuums.notes)
        return f"{text} {why}" if why else text

    def _aged(self, found: list[Blocker]) -> list[Blocker]:
        """``found``, each with how long this engine has seen its transaction hold a lock here: where its
        age is hidden, the transaction is at least that old."""
        now = time.monotonic()
        for b in found:
            b.seen_s = now - self._first_seen.setdefault(b.transaction, now)
        return found

    def _report_blockers(self, step: Step) -> list[Blocker]:
        found = self._aged(blockers(self.conn, step.lock_tables))
        for b in found:
            text = b.describe()
            # Once per transaction: its description changes at each check, with its age.
            if b.transaction not in self._reported_blockers:
                self._reported_blockers[b.transaction] = text
                self.result.blockers_seen.append(text)
            self.notify(f"'{step.label}' needs a strong lock on {', '.join(step.lock_tables)}; "
                        f"it would wait behind {text}")
        return found

    # -- INVALID indexes -------------------------------------------------------------------
    def _index(self, step: Step) -> _Index | None:
        if step.index is None:
            return None
        row = self.conn.execute(
            """
            SELECT n.nspname, c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = %s AND (%s::text IS NULL AND n.nspname = ANY (current_schemas(false))
                                      OR n.nspname = %s)
            ORDER BY array_position(current_schemas(false), n.nspname::text) LIMIT 1
            """, (step.index, step.index_schema, step.index_schema)).fetchone()
        return _Index(str(row[0]), str(row[1]), bool(row[2])) if row else None

    def _effect_present(self, step: Step) -> bool:
        """Did the interrupted run already complete this CONCURRENTLY statement?"""
        if step.index is None:
            return False
        found = self._index(step)
        if step.drops_index:
            return found is None  # a DROP INDEX CONCURRENTLY whose index is already gone
        if found is None:
            return False
        if not found.valid:
            shown = qualified(step.index_schema, step.index) if step.index_schema else step.index
            self.notify(f"dropping INVALID index {shown} left by the interrupted build; building it again")
            self._drop_index(found)
            return False
        return True

    def _drop_invalid_index(self, step: Step, left_by: str) -> None:
        """A failed or interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would
        keep, and that every write to the table still maintains."""
        if step.drops_index:
            return
        found = self._index(step)
        if found is not None and not found.valid:
            self.notify(f"dropping INVALID index {qualified(found.schema, found.name)} left by {left_by}")
            self._drop_index(found)

    def _drop_left_over_index(self, step: Step) -> str | None:
        """After a failed CONCURRENTLY build: drop the INVALID index it left. Returns its name when it
        could not be dropped (it is then left for the rerun, or `abort`, to remove)."""
        try:
            self._drop_invalid_index(step, "a failed CONCURRENTLY build")
            return None
        except psycopg.Error:
            if step.index is None:
                return None
            return qualified(step.index_schema, step.index) if step.index_schema else step.index

    def _drop_index(self, index: _Index) -> None:
        self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(index.schema, index.name)))
        self.history.log(None, "dropped-invalid-index", {"schema": index.schema, "index": index.name})

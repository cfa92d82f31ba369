"""Run the expand, contract and abort phases of an ``ops`` migration, resumably.

State lives in ``<history schema>.ops_state``: the phase, how many of its steps are done, and the
catalog facts captured before expand. A transactional step records its progress in its own
transaction; a CONCURRENTLY step is written to be harmless when rerun; a backfill resumes from its
own progress row. So a crash at any point is finished by rerunning the same command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgshift.config import Settings, duration_ms
from pgshift.db.history import History
from pgshift.errors import LockTimeoutExhausted, MigrationFailed, PgshiftError, ValidationFailed, server_error_text
from pgshift.migrations.model import Migration, Statement
from pgshift.ops.backfill import Backfiller, BackfillError, BackfillOptions, BackfillResult
from pgshift.ops.ledger import active_versions, state_table
from pgshift.ops.model import OpsFile
from pgshift.ops.names import qualified
from pgshift.ops.plan import Phases, Step, capture, plan_phases
from pgshift.runner.retry import RetryPolicy

if TYPE_CHECKING:
    from pgshift.runner.execute import StatementObserver

Notify = Callable[[str], None]


class OpsStateError(ValidationFailed):
    """The requested phase does not fit the migration's current expand/contract state."""

    code = "ops-state"
    exit_code = 22


@dataclass(frozen=True)
class StepStatement(Statement):
    """One statement of an ops step, as the executor's observers see statements: ``where`` names the
    file, phase and step; a backfill is one statement for all its batches, with the rows it updated."""

    step: str = ""
    rows: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file} ({self.step})"


@dataclass
class Blocker:
    pid: int
    application: str
    state: str
    xact_age_s: float
    query: str
    autovacuum: bool = False  # an autovacuum worker (pg_stat_activity.backend_type)
    wraparound: bool = False  # ... vacuuming to prevent transaction ID wraparound: never to be cancelled

    def describe(self) -> str:
        if self.autovacuum:
            return f"pid {self.pid} (autovacuum worker, running {self.xact_age_s:.1f}s: {self.query})"
        return (f"pid {self.pid} ({self.application or 'no name'}, {self.state}, transaction open "
                f"{self.xact_age_s:.1f}s: {self.query})")


@dataclass
class PhaseResult:
    version: str
    name: str
    phase: str
    steps: int
    steps_run: int
    resumed_at: int | None
    duration_ms: int
    lock_retries: int = 0
    backfilled_rows: int = 0
    version_schema: str | None = None
    warnings: list[str] = field(default_factory=list)
    blockers_seen: list[str] = field(default_factory=list)
    autovacuums_cancelled: list[int] = field(default_factory=list)  # pids


_state_table = state_table


def load_state(conn: psycopg.Connection[Any], schema: str, version: str) -> dict[str, Any] | None:
    row = conn.execute(sql.SQL("SELECT phase, steps_done, captured, version_schema FROM {} WHERE version = %s")
                       .format(_state_table(schema)), (version,)).fetchone()
    if row is None:
        return None
    return {"phase": row[0], "steps_done": row[1], "captured": row[2], "version_schema": row[3]}


# The lock modes that conflict with SHARE UPDATE EXCLUSIVE (VALIDATE, CREATE INDEX CONCURRENTLY).
WEAK_LOCK_CONFLICTS = ["ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock",
                       "AccessExclusiveLock"]


def blockers(conn: psycopg.Connection[Any], tables: list[str], modes: list[str] | None = None) -> list[Blocker]:
    """Sessions holding any lock (or one of ``modes``) on these tables: an ACCESS EXCLUSIVE request
    would queue behind them."""
    rows = conn.execute(
        """
        SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
               coalesce(extract(epoch FROM clock_timestamp() - a.xact_start), 0)::float8,
               left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100),
               -- a role without pg_read_all_stats sees no backend_type: a vacuum without a user is autovacuum
               coalesce(a.backend_type = 'autovacuum worker', a.usesysid IS NULL AND a.pid IN (
                   SELECT pid FROM pg_stat_progress_vacuum UNION SELECT pid FROM pg_stat_progress_analyze), false),
               coalesce(a.query LIKE '%%(to prevent wraparound)%%', false)
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.relation = ANY (SELECT to_regclass(t)::oid FROM unnest(%s::text[]) t)
          AND (%s::text[] IS NULL OR l.mode = ANY (%s::text[]))
        ORDER BY 4 DESC
        """, (tables, modes, modes)).fetchall()
    return [Blocker(int(r[0]), r[1], r[2], float(r[3]), r[4], bool(r[5]), bool(r[6])) for r in rows]


class PhaseRunner:
    def __init__(self, conn: psycopg.Connection[Any], history: History, settings: Settings, migration: Migration,
                 notify: Notify | None = None, observer: StatementObserver | None = None) -> None:
        if not isinstance(migration.ops, OpsFile):
            raise OpsStateError(f"{migration.label} is not an operations migration.")
        self.conn = conn
        self.history = history
        self.settings = settings
        self.migration = migration
        self.ops: OpsFile = migration.ops
        self.schema = settings.history_schema
        self.notify = notify or (lambda _m: None)
        # Sees every step statement, as the Executor's observer sees SQL statements (rehearsal records them).
        self.observer = observer
        self._step_where = ""
        self.retry = RetryPolicy(attempts=self.ops.lock_retries, initial_ms=duration_ms(settings.retry_initial_delay),
                                 max_ms=min(2_000, duration_ms(settings.retry_max_delay)))
        # Where the running phase stands, for the failure message: which command continues from here.
        self._phase = "expand"
        self._step_index = 0
        self._step_kind = "tx"
        self._contract_undoable = 0
        self._autovacuum_notes: dict[int, str] = {}  # pid -> why that autovacuum is still in the way

    # -- state -----------------------------------------------------------------------------
    def _set_state(self, phase: str, steps_done: int, captured: dict[str, Any] | None = None,
                   version_schema: str | None = None) -> None:
        self.conn.execute(sql.SQL(
            "INSERT INTO {t} (version, phase, steps_done, captured, version_schema) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (version) DO UPDATE SET phase = EXCLUDED.phase, steps_done = EXCLUDED.steps_done, "
            "captured = coalesce(%s, {t}.captured), version_schema = coalesce(EXCLUDED.version_schema, "
            "{t}.version_schema), updated_at = clock_timestamp()").format(t=_state_table(self.schema)),
            (self.migration.version, phase, steps_done, json.dumps(captured or {}), version_schema,
             json.dumps(captured) if captured is not None else None))

    def _progress_sql(self, done: int) -> sql.Composed:
        return sql.SQL("UPDATE {} SET steps_done = {}, updated_at = clock_timestamp() WHERE version = {}").format(
            _state_table(self.schema), sql.Literal(done), sql.Literal(self.migration.version))

    def phases(self, captured: dict[str, Any]) -> Phases:
        return plan_phases(self.ops, self.migration.version, captured)

    # -- phases ----------------------------------------------------------------------------
    def expand(self) -> PhaseResult:
        version = self.migration.version
        others = {v: p for v, p in active_versions(self.conn, self.schema).items() if v != version}
        if others:
            v, p = next(iter(others.items()))
            raise OpsStateError(
                f"Cannot expand {self.migration.label}: migration {v} is {p} and not contracted. One "
                "expand/contract migration is active at a time.",
                hint=f"run `pgshift contract` (after deploying the new app) or `pgshift abort` for {v} first.")
        state = load_state(self.conn, self.schema, version)
        if state and state["phase"] == "aborting":
            raise OpsStateError(f"The abort of {self.migration.label} stopped part-way.",
                                hint="run `pgshift abort` again to finish it.")
        if state and state["phase"] in ("expanded", "contracting", "contracted"):
            raise OpsStateError(f"{self.migration.label} is already {state['phase']}.")
        self.history.start(version=version, name=self.migration.name, kind=self.migration.kind,
                           checksum=self.migration.checksum, transactional=False,
                           total=len(self.ops.operations), source_format=self.migration.source_format)
        if state and state["phase"] == "expanding":
            captured, start = state["captured"], int(state["steps_done"])
        else:
            captured, start = capture(self.conn, self.ops).to_json(), 0
        phases = self.phases(captured)
        self._set_state("expanding", start, captured, phases.version_schema)
        try:
            result = self._run("expand", phases.expand, start, phases)
        except (MigrationFailed, LockTimeoutExhausted) as exc:
            self.history.finish(version, "failed", error=str(exc))
            raise
        self._set_state("expanded", len(phases.expand))
        self.history.finish(version, "applied")
        self.history.log(version, "expanded", {"steps": result.steps, "version_schema": phases.version_schema,
                                               "backfilled_rows": result.backfilled_rows})
        return result

    def contract(self) -> PhaseResult:
        state = self._require(("expanded", "contracting"), "contract")
        phases = self.phases(state["captured"])
        start = int(state["steps_done"]) if state["phase"] == "contracting" else 0
        self._set_state("contracting", start)
        self._contract_undoable = phases.contract_undoable
        try:
            result = self._run("contract", phases.contract, start, phases)
        except PgshiftError:
            if self._contract_undoable_yet():  # only validations committed: abort can still undo it all
                self._set_state("expanded", len(phases.expand))
            raise
        self._set_state("contracted", len(phases.contract))
        self.history.log(self.migration.version, "contracted", {"steps": result.steps})
        return result

    def abort(self) -> PhaseResult:
        state = self._require(("expanding", "expanded", "aborting", "contracting"), "abort")
        phases = self.phases(state["captured"])
        if state["phase"] == "contracting" and int(state["steps_done"]) > phases.contract_undoable:
            raise OpsStateError(
                f"Cannot abort {self.migration.label}: its contract stopped at step {int(state['steps_done']) + 1} "
                f"of {len(phases.contract)}, after steps that abort cannot undo (old columns, triggers or "
                "indexes are gone).", hint="fix the cause of the failure and run `pgshift contract` again; it "
                "continues where it stopped.")
        start = int(state["steps_done"]) if state["phase"] == "aborting" else 0
        self._set_state("aborting", start)
        result = self._run("abort", phases.abort, start, phases)
        self._set_state("aborted", len(phases.abort))
        self.conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(
            sql.Identifier(self.schema, "backfills")), (self.migration.version,))
        self.history.mark_rolled_back(self.migration.version)
        self.history.log(self.migration.version, "aborted", {"steps": result.steps})
        return result

    def _require(self, phases: tuple[str, ...], what: str) -> dict[str, Any]:
        state = load_state(self.conn, self.schema, self.migration.version)
        if state is None or state["phase"] not in phases:
            now = state["phase"] if state else "not expanded"
            raise OpsStateError(f"Cannot {what} {self.migration.label}: it is {now}.")
        return state

    # -- steps -----------------------------------------------------------------------------
    def _run(self, phase: str, steps: list[Step], start: int, phases: Phases) -> PhaseResult:
        started = time.monotonic()
        result = PhaseResult(self.migration.version, self.migration.name, phase, len(steps), 0,
                             start if start else None, 0, version_schema=phases.version_schema)
        if start:
            self.notify(f"resuming {phase} of {self.migration.label} at step {start + 1} of {len(steps)}")
            self.history.log(self.migration.version, f"{phase}-resumed", {"step": start + 1})
        self._phase = phase
        for index in range(start, len(steps)):
            step = steps[index]
            self._step_index, self._step_kind = index, step.kind
            self._step_where = f"{phase} step {index + 1}/{len(steps)}: {step.label}"
            self.notify(f"{phase} {index + 1}/{len(steps)}: {step.label}")
            if step.warning:
                result.warnings.append(step.warning)
                self.notify(f"warning: {step.warning}")
            if step.kind == "backfill":
                assert step.backfill is not None
                options = BackfillOptions(target_ms=self.ops.backfill_target_ms,
                                          initial_batch=self.ops.backfill_batch_size,
                                          max_lock_ms=self.ops.backfill_max_lock_ms or None)
                try:
                    done = self._observed_backfill(step, options)
                except BackfillError as exc:
                    if not exc.row_security:
                        raise
                    raise MigrationFailed(f"{self.migration.path}: step '{step.label}' of {self.migration.label}: "
                                          f"{exc.message}", hint=f"{exc.hint} Then {self._next_move()}") from None
                except psycopg.Error as exc:  # a row the fill expression or a constraint rejects
                    raise MigrationFailed(
                        f"{self.migration.path}: step '{step.label}' of {self.migration.label} failed: "
                        f"{server_error_text(exc)} The failing batch was rolled back; the batches before it are "
                        "kept and the backfill resumes after them.", hint=self._next_move()) from None
                result.backfilled_rows += done.rows_this_run
                self.conn.execute(self._progress_sql(index + 1))
            elif step.kind == "autocommit":
                self._with_retries(step, result, lambda s=step: self._autocommit(s))  # type: ignore[misc]
                self.conn.execute(self._progress_sql(index + 1))
            else:
                self._with_retries(step, result, lambda s=step, i=index: self._transaction(s, i + 1))  # type: ignore[misc]
            result.steps_run += 1
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def _transaction(self, step: Step, done: int) -> None:
        with self.conn.transaction():
            self.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(self.ops.lock_timeout)))
            self.conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(self.settings.statement_timeout)))
            for statement in step.statements:
                self._execute(step, statement)
            self.conn.execute(self._progress_sql(done))

    def _autocommit(self, step: Step) -> None:
        self.conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(self.ops.lock_timeout)))
        try:
            for statement in step.statements:
                self._drop_invalid_index(step)
                try:
                    self._execute(step, statement)
                except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected):
                    self._drop_left_over_index(step)  # a build that timed out waiting for old snapshots
                    raise
        finally:
            self.conn.execute("RESET lock_timeout")

    def _drop_left_over_index(self, step: Step) -> str | None:
        """After a failed CREATE INDEX CONCURRENTLY: drop the INVALID index it left. Returns its name
        when it could not be dropped (it is then left for the rerun or `abort` to remove)."""
        try:
            self._drop_invalid_index(step)
            return None
        except psycopg.Error:
            return qualified(self.ops.schema, step.index) if step.index else None

    def _drop_invalid_index(self, step: Step) -> None:
        """An interrupted or failed CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would
        keep, and that every write to the table still maintains. The name comes from the planner."""
        if step.index is None:
            return
        row = self.conn.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (self.ops.schema, step.index)).fetchone()
        if row and row[0]:
            self.notify(f"dropping INVALID index {qualified(self.ops.schema, step.index)} left by an interrupted "
                        "or failed build")
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(self.ops.schema, step.index)))

    def _statement(self, text: str, position: int, rows: int | None = None) -> StepStatement:
        return StepStatement(text, str(self.migration.path), self._step_index + 1, 1, position, self._step_where, rows)

    def _observed_backfill(self, step: Step, options: BackfillOptions) -> BackfillResult:
        """The backfill runs many short transactions; observers see it as one statement over all its batches."""
        spec = step.backfill
        assert spec is not None
        run = Backfiller(self.conn, self.schema, spec, options, notify=self.notify).run
        if self.observer is None:
            return run()
        table = qualified(spec.schema, spec.table) if spec.schema else spec.table
        text = (f"backfill {table} in batches (target {options.target_ms} ms each, its own transaction): "
                f"UPDATE {table} SET {spec.set_clause}" + (f" WHERE {spec.where}" if spec.where else ""))
        self.observer.before(self.conn, self.migration, self._statement(text, 0))
        try:
            done = run()
        except BaseException as exc:
            self.observer.after(self.conn, self.migration, self._statement(text, 0), exc)
            raise
        summary = (f"backfill {table}: {done.rows_this_run} rows in {done.batches} batches, longest "
                   f"{done.max_batch_ms:.0f} ms ({text.split(': ', 1)[1]})")
        self.observer.after(self.conn, self.migration, self._statement(summary, 0, done.rows_this_run), None)
        return done

    def _execute(self, step: Step, statement: sql.Composable) -> None:
        if self.observer is None:
            self._execute_plain(step, statement)
            return
        observed = self._statement(statement.as_string(self.conn), step.statements.index(statement)
                                   if statement in step.statements else 0)
        self.observer.before(self.conn, self.migration, observed)
        try:
            self._execute_plain(step, statement)
        except BaseException as exc:
            self.observer.after(self.conn, self.migration, observed, exc)
            raise
        self.observer.after(self.conn, self.migration, observed, None)

    def _execute_plain(self, step: Step, statement: sql.Composable) -> None:
        try:
            self.conn.execute(statement.as_bytes(self.conn))
        except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected):
            raise
        except psycopg.Error as exc:
            undone = "The step was rolled back."
            if step.kind == "autocommit" and step.index is not None:
                left = self._drop_left_over_index(step)
                undone = ("The INVALID index the failed build left was dropped, so nothing of the step remains."
                          if left is None else f"The failed build left the INVALID index {left}: rerunning drops "
                          "it before building again, and `pgshift abort` removes it.")
            raise MigrationFailed(
                f"{self.migration.path}: step '{step.label}' of {self.migration.label} failed: "
                f"{server_error_text(exc)} Statement: {statement.as_string(self.conn)[:300]}. {undone}",
                hint=self._next_move()) from None

    def _contract_undoable_yet(self) -> bool:
        """Has the failing contract committed nothing abort cannot undo? Steps before the current one are
        done; the current one, a transaction, was rolled back (a CONCURRENTLY step may have half-run)."""
        return self._step_index < self._contract_undoable or (
            self._step_index == self._contract_undoable and self._step_kind == "tx")

    def _next_move(self) -> str:
        """What to run after a failed step: always a command that works from the state left behind."""
        if self._phase == "abort":
            return "fix the cause and run `pgshift abort` again; it continues at this step."
        if self._phase == "contract" and not self._contract_undoable_yet():
            return ("fix the cause and run `pgshift contract` again; it continues at this step (abort is no longer "
                    "possible: earlier contract steps dropped what it would restore).")
        if self._phase == "contract":
            return ("nothing of the contract was kept and the migration is still expanded: fix the cause and run "
                    "`pgshift contract` again, or `pgshift abort` to undo the expand.")
        return "fix the cause and run `pgshift migrate` again to continue the expand, or `pgshift abort` to undo it."

    def _with_retries(self, step: Step, result: PhaseResult, attempt: Callable[[], None]) -> None:
        for retry in range(self.retry.attempts + 1):
            if step.lock_tables or step.weak_lock_tables:
                self._clear_autovacuum(step, result)
            held = self._report_blockers(step, result) if step.lock_tables else []
            # A transaction already older than lock_timeout that holds a lock on the table will very
            # likely outlast this attempt; queued, the attempt would only hold back every query behind
            # it for lock_timeout. So wait for it to end without queuing (the same retry budget).
            if retry < self.retry.attempts and any(b.xact_age_s * 1000 > self._lock_timeout_ms for b in held):
                delay = self.retry.delay_seconds(retry + 1)
                result.lock_retries += 1
                self.history.log(self.migration.version, "lock-wait-without-queuing", {
                    "step": step.label, "attempt": retry + 1, "delay_s": round(delay, 3)})
                self.notify(f"'{step.label}' waits without queuing for the transaction(s) above; "
                            f"check {retry + 1}/{self.retry.attempts} in {delay:.2f}s")
                time.sleep(delay)
                continue
            try:
                attempt()
                return
            except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected) as exc:
                if retry >= self.retry.attempts:
                    found = {b.pid: b for b in [*blockers(self.conn, step.lock_tables), *blockers(
                        self.conn, step.weak_lock_tables, WEAK_LOCK_CONFLICTS)]}
                    who = "; ".join(b.describe() for b in found.values()) or "none now"
                    why = " ".join(self._autovacuum_notes[pid] for pid in found if pid in self._autovacuum_notes)
                    raise LockTimeoutExhausted(
                        f"Step '{step.label}' of {self.migration.label} could not take its lock within "
                        f"lock_timeout {self.ops.lock_timeout} after {retry + 1} attempts "
                        f"({server_error_text(exc)}) Nothing of the step was committed. Blocking sessions: "
                        f"{who}.{' ' + why if why else ''}",
                        hint=f"end the blocking sessions or retry later. {self._next_move()}") from None
                delay = self.retry.delay_seconds(retry + 1)
                result.lock_retries += 1
                self.history.log(self.migration.version, "lock-timeout-retry", {
                    "step": step.label, "attempt": retry + 1, "delay_s": round(delay, 3)})
                self.notify(f"lock_timeout on '{step.label}'; retry {retry + 1}/{self.retry.attempts} in {delay:.2f}s")
                time.sleep(delay)

    @property
    def _lock_timeout_ms(self) -> int:
        return duration_ms(self.ops.lock_timeout, key="lock_timeout")

    def _clear_autovacuum(self, step: Step, result: PhaseResult) -> None:
        """Cancel an autovacuum holding a lock the step needs. PostgreSQL cancels one itself only for a
        lock request that has waited deadlock_timeout (1s by default), far longer than lock_timeout, so
        left alone it would hold the step back for the whole retry budget. It restarts later on its own.
        Not one vacuuming to prevent wraparound, and only where the role may (superuser; on PostgreSQL
        18 pg_signal_autovacuum_worker): otherwise the reason is kept for the failure message."""
        found = {b.pid: b for b in [*blockers(self.conn, step.lock_tables), *blockers(
            self.conn, step.weak_lock_tables, WEAK_LOCK_CONFLICTS)] if b.autovacuum}
        for b in found.values():
            if b.wraparound:
                self._autovacuum_notes[b.pid] = (
                    f"pid {b.pid} is an autovacuum to prevent transaction ID wraparound; PostgreSQL never cancels "
                    "one for a lock request, and pgshift does not either (the table must be frozen): run the "
                    "command again once it has finished.")
                continue
            try:
                row = self.conn.execute("SELECT pg_cancel_backend(%s)", (b.pid,)).fetchone()
            except psycopg.Error as exc:
                waited = self.conn.execute("SELECT current_setting('deadlock_timeout')").fetchone()
                self._autovacuum_notes[b.pid] = (
                    f"pid {b.pid} is an autovacuum worker; PostgreSQL cancels one only for a lock request that has "
                    f"waited deadlock_timeout ({waited[0] if waited else '1s'}), longer than this step's lock_timeout "
                    f"{self.ops.lock_timeout}, so it holds the step back until it ends. Role {self.conn.info.user!r} "
                    f"may not cancel it ({server_error_text(exc)}) A superuser (on PostgreSQL 18 also a member of "
                    f"pg_signal_autovacuum_worker) can run SELECT pg_cancel_backend({b.pid}); or run the command "
                    "again once it has finished.")
                self.notify(self._autovacuum_notes[b.pid])
                continue
            if not (row and row[0]):
                continue  # it ended meanwhile
            result.autovacuums_cancelled.append(b.pid)
            self.history.log(self.migration.version, "autovacuum-cancelled", {
                "step": step.label, "pid": b.pid, "query": b.query})
            self.notify(f"cancelled autovacuum pid {b.pid} ({b.query}) holding a lock '{step.label}' needs; "
                        "it will run again later")
            self._wait_until_gone(b.pid)

    def _wait_until_gone(self, pid: int, timeout_s: float = 2.0) -> None:
        """A cancelled autovacuum releases its locks a moment after the signal: do not spend an attempt on it."""
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            row = self.conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND granted AND "
                                    "locktype = 'relation'", (pid,)).fetchone()
            if not row or not row[0]:
                return
            time.sleep(0.01)

    def _report_blockers(self, step: Step, result: PhaseResult) -> list[Blocker]:
        found = [b for b in blockers(self.conn, step.lock_tables) if b.xact_age_s > 0]
        for b in found:
            text = b.describe()
            if text not in result.blockers_seen:
                result.blockers_seen.append(text)
            self.notify(f"'{step.label}' needs a strong lock on {', '.join(step.lock_tables)}; "
                        f"it would wait behind {text}")
        return found

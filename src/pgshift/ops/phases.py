"""Run the expand, contract and abort phases of an ``ops`` migration, resumably.

State lives in ``<history schema>.ops_state``: the phase, how many of its steps are done, and the
catalog facts captured before expand. A transactional step records its progress in its own
transaction; a CONCURRENTLY step is written to be harmless when rerun; a backfill resumes from its
own progress row. So a crash at any point is finished by rerunning the same command.

The steps run on the one step engine (pgshift.runner.engine.StepEngine) that runs SQL migrations too;
this module keeps the phase state and says what a failed step means for the phase.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgshift.config import Settings
from pgshift.db.history import History
from pgshift.errors import (
    ConnectionFailed,
    LockTimeoutExhausted,
    MigrationFailed,
    PgshiftError,
    ValidationFailed,
    server_error_text,
)
from pgshift.migrations.model import OpsMigration
from pgshift.ops.ledger import active_versions, state_table
from pgshift.ops.model import OpsFile
from pgshift.ops.plan import Phases, capture, plan_phases
from pgshift.runner.backfill import BackfillError, BackfillOptions
from pgshift.runner.blockers import WEAK_LOCK_CONFLICTS, Blocker, blockers
from pgshift.runner.engine import StepEngine
from pgshift.runner.execute import SESSION_ENDED
from pgshift.runner.retry import RetryPolicy, gave_up, gave_up_error, gave_up_hint
from pgshift.runner.steps import Step, StepStatement, StepTimeouts, session_settings
from pgshift.runner.violations import find_violators

if TYPE_CHECKING:
    from pgshift.runner.engine import StatementObserver

__all__ = ["WEAK_LOCK_CONFLICTS", "Blocker", "OpsStateError", "PhaseResult", "PhaseRunner", "StepStatement",
           "blockers", "load_state"]

Notify = Callable[[str], None]


class OpsStateError(ValidationFailed):
    """The requested phase does not fit the migration's current expand/contract state."""

    code = "ops-state"
    exit_code = 22


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


class OpsStateProgress:
    """An operations phase's progress: ``steps_done`` in its ``ops_state`` row."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, version: str) -> None:
        self.conn = conn
        self.schema = schema
        self.version = version

    def record(self, steps_done: int) -> None:
        self.conn.execute(sql.SQL("UPDATE {} SET steps_done = %s, updated_at = clock_timestamp() WHERE version = %s")
                          .format(_state_table(self.schema)), (steps_done, self.version))


class PhaseRunner:
    def __init__(self, conn: psycopg.Connection[Any], history: History, settings: Settings, migration: OpsMigration,
                 notify: Notify | None = None, observer: StatementObserver | None = None) -> None:
        if not isinstance(migration, OpsMigration):
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
        self.retry = RetryPolicy(attempts=self.ops.lock_retries, initial_ms=settings.retry_initial_delay.ms,
                                 max_ms=min(2_000, settings.retry_max_delay.ms))
        # Where the running phase stands, for the failure message: which command continues from here.
        self._phase = "expand"
        self._steps: list[Step] = []
        self._engine: StepEngine | None = None
        self._contract_undoable = 0

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
        except psycopg.OperationalError as exc:
            if not self._lost(exc):
                raise
            raise self._connection_failed(exc) from exc
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
        except psycopg.OperationalError as exc:
            if not self._lost(exc):
                raise
            raise self._connection_failed(exc) from exc
        except PgshiftError:
            if self._session_gone():
                raise  # nothing can be written; the rerun continues from ops_state as it stands
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
        try:
            result = self._run("abort", phases.abort, start, phases)
        except psycopg.OperationalError as exc:
            if not self._lost(exc):
                raise
            raise self._connection_failed(exc) from exc
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
        self._steps = steps
        engine = self._engine = StepEngine(
            self.conn, self.history, self, self.migration, retry=self.retry, notify=self.notify,
            observer=self.observer, phase=phase,
            progress=OpsStateProgress(self.conn, self.schema, self.migration.version),
            timeouts=self.timeouts,
            backfill=self.backfill_options, backfill_schema=self.schema)
        # The result is filled as the engine goes, so a failed phase still reports what it saw.
        result.warnings = engine.result.warnings
        result.blockers_seen = engine.result.blockers_seen
        result.autovacuums_cancelled = engine.result.autovacuums_cancelled
        try:
            engine.run(steps, start)
            if self.settings.analyze_after:
                engine.analyze(steps)
        except MigrationFailed as exc:
            # The step's transaction is rolled back now: rows that stop its validation can be looked for.
            found = find_violators(self.conn, exc.__cause__, exc.statement or "", notify=self.notify)
            if found is not None:
                exc.hint = f"{found.sentence()} Then {exc.hint}"
            raise
        finally:
            result.steps_run = engine.result.steps_run
            result.lock_retries = engine.result.retries
            result.backfilled_rows = engine.result.backfilled_rows
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    @property
    def timeouts(self) -> StepTimeouts:
        # No statement_timeout on a CONCURRENTLY build: it may take long, and blocks nobody meanwhile.
        return StepTimeouts(self.ops.lock_timeout, self.settings.statement_timeout,
                            autocommit_statement_timeout=False,
                            settings=session_settings(self.migration))

    @property
    def backfill_options(self) -> BackfillOptions:
        lag = self.settings.backfill
        return BackfillOptions(target_ms=self.ops.backfill_target_ms, initial_batch=self.ops.backfill_batch_size,
                               max_lock_ms=self.ops.backfill_max_lock_ms or None,
                               max_lag_s=lag.max_lag.seconds if lag.max_lag.ms else None,
                               max_lag_bytes=lag.max_lag_bytes.bytes or None)

    # -- the engine's questions (pgshift.runner.engine.StepOwner) ---------------------------
    def failed(self, step: Step, position: int, exc: psycopg.Error, index_left: str | None) -> BaseException:
        if self._lost(exc):
            return self._connection_failed(exc)
        undone = "The step was rolled back."
        if step.kind == "autocommit" and step.index is not None:
            undone = ("The INVALID index the failed build left was dropped, so nothing of the step remains."
                      if index_left is None else f"The failed build left the INVALID index {index_left}: rerunning "
                      "drops it before building again, and `pgshift abort` removes it.")
        statement = step.statements[position].as_string(self.conn)
        return MigrationFailed(
            f"{self.migration.path}: step '{step.label}' of {self.migration.label} failed: "
            f"{server_error_text(exc)} Statement: {statement[:300]}. {undone}",
            hint=self._next_move(), sqlstate=exc.sqlstate, detail=exc.diag.message_detail, statement=statement)

    def exhausted(self, step: Step, attempts: int, exc: psycopg.Error, blocking: str) -> BaseException:
        return gave_up_error(exc)(
            f"Step '{step.label}' of {self.migration.label} {gave_up(exc, attempts, self.ops.lock_timeout)} "
            f"({server_error_text(exc)}) Nothing of the step was committed. {blocking}",
            hint=f"{gave_up_hint(exc, self.conn.info)} {self._next_move()}")

    def backfill_failed(self, step: Step, exc: Exception) -> BaseException:
        if isinstance(exc, BackfillError):
            return MigrationFailed(f"{self.migration.path}: step '{step.label}' of {self.migration.label}: "
                                   f"{exc.message}", hint=f"{exc.hint} Then {self._next_move()}")
        assert isinstance(exc, psycopg.Error)
        if self._lost(exc):
            return self._connection_failed(exc)
        return MigrationFailed(
            f"{self.migration.path}: step '{step.label}' of {self.migration.label} failed: "
            f"{server_error_text(exc)} The failing batch was rolled back; the batches before it are "
            "kept and the backfill resumes after them.", hint=self._next_move())

    @property
    def _running_index(self) -> int:
        """The step the phase's engine is in (it exists before any step can fail)."""
        return self._engine.index if self._engine is not None else 0

    def _session_gone(self) -> bool:
        return self.conn.broken or self.conn.closed

    def _lost(self, exc: BaseException) -> bool:
        """Did ``exc`` end the session (killed, server shut down, network gone), as opposed to a statement failing?"""
        return isinstance(exc, psycopg.OperationalError) and (
            self._session_gone() or (exc.sqlstate or "").startswith(SESSION_ENDED))

    def _connection_failed(self, exc: psycopg.Error) -> ConnectionFailed:
        """A lost session as the SQL runner reports one (exit 4), naming the step it was in and the command that
        continues there. Nothing is written: the session is dead."""
        index = self._running_index
        where = ""
        if index < len(self._steps):
            where = f" at {self._phase} step {index + 1}/{len(self._steps)}: {self._steps[index].label}"
        message = " ".join((exc.diag.message_primary or str(exc)).split())
        sqlstate = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        command = {"expand": "pgshift migrate", "contract": "pgshift contract", "abort": "pgshift abort"}[self._phase]
        return ConnectionFailed(
            f"{self.migration.path}: the connection to the server was lost during {self.migration.label}{where}: "
            f"{message}{sqlstate}. The {self._phase} steps before it stay committed and recorded in "
            f"{self.schema}.ops_state; the running step either committed with its progress or was rolled back (a "
            "CONCURRENTLY step is checked and, if left INVALID, built again; a backfill keeps its committed "
            "batches). No failure could be recorded on the lost session.",
            hint=f"run `{command}` again once the server accepts connections (`pgshift status` shows it): it "
            f"continues the {self._phase} of {self.migration.label} at the first step not recorded as done.")

    def _contract_undoable_yet(self) -> bool:
        """Has the failing contract committed nothing abort cannot undo? Steps before the current one are
        done; the current one, a transaction, was rolled back (a CONCURRENTLY step may have half-run)."""
        index = self._running_index
        kind = self._steps[index].kind if index < len(self._steps) else "tx"
        return index < self._contract_undoable or (index == self._contract_undoable and kind == "tx")

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

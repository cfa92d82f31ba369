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
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgshift.config import Settings, duration_ms
from pgshift.db.history import History
from pgshift.errors import LockTimeoutExhausted, MigrationFailed, ValidationFailed
from pgshift.migrations.model import Migration
from pgshift.ops.backfill import Backfiller, BackfillOptions
from pgshift.ops.model import OpsFile
from pgshift.ops.plan import Phases, Step, capture, plan_phases
from pgshift.runner.retry import RetryPolicy

Notify = Callable[[str], None]
ACTIVE = ("expanding", "expanded", "contracting", "aborting")


class OpsStateError(ValidationFailed):
    """The requested phase does not fit the migration's current expand/contract state."""

    code = "ops-state"
    exit_code = 22


@dataclass
class Blocker:
    pid: int
    application: str
    state: str
    xact_age_s: float
    query: str

    def describe(self) -> str:
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


def _state_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "ops_state")


def load_state(conn: psycopg.Connection[Any], schema: str, version: str) -> dict[str, Any] | None:
    row = conn.execute(sql.SQL("SELECT phase, steps_done, captured, version_schema FROM {} WHERE version = %s")
                       .format(_state_table(schema)), (version,)).fetchone()
    if row is None:
        return None
    return {"phase": row[0], "steps_done": row[1], "captured": row[2], "version_schema": row[3]}


def active_versions(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """version -> phase for every ops migration expanded (or mid-phase) and not yet contracted."""
    exists = conn.execute("SELECT to_regclass(format('%%I.ops_state', %s::text)) IS NOT NULL", (schema,)).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(sql.SQL("SELECT version, phase FROM {} WHERE phase = ANY(%s) ORDER BY version")
                        .format(_state_table(schema)), (list(ACTIVE),)).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def blockers(conn: psycopg.Connection[Any], tables: list[str]) -> list[Blocker]:
    """Sessions holding any lock on these tables: an ACCESS EXCLUSIVE request would queue behind them."""
    rows = conn.execute(
        """
        SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
               coalesce(extract(epoch FROM clock_timestamp() - a.xact_start), 0)::float8,
               left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100)
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.relation = ANY (SELECT to_regclass(t)::oid FROM unnest(%s::text[]) t)
        ORDER BY 4 DESC
        """, (tables,)).fetchall()
    return [Blocker(int(r[0]), r[1], r[2], float(r[3]), r[4]) for r in rows]


class PhaseRunner:
    def __init__(self, conn: psycopg.Connection[Any], history: History, settings: Settings, migration: Migration,
                 notify: Notify | None = None) -> None:
        if not isinstance(migration.ops, OpsFile):
            raise OpsStateError(f"{migration.label} is not an operations migration.")
        self.conn = conn
        self.history = history
        self.settings = settings
        self.migration = migration
        self.ops: OpsFile = migration.ops
        self.schema = settings.history_schema
        self.notify = notify or (lambda _m: None)
        self.retry = RetryPolicy(attempts=self.ops.lock_retries, initial_ms=duration_ms(settings.retry_initial_delay),
                                 max_ms=min(2_000, duration_ms(settings.retry_max_delay)))

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
            captured, start = capture(self.conn, self.ops), 0
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
        result = self._run("contract", phases.contract, start, phases)
        self._set_state("contracted", len(phases.contract))
        self.history.log(self.migration.version, "contracted", {"steps": result.steps})
        return result

    def abort(self) -> PhaseResult:
        state = self._require(("expanding", "expanded", "aborting"), "abort")
        phases = self.phases(state["captured"])
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
        for index in range(start, len(steps)):
            step = steps[index]
            self.notify(f"{phase} {index + 1}/{len(steps)}: {step.label}")
            if step.warning:
                result.warnings.append(step.warning)
                self.notify(f"warning: {step.warning}")
            if step.kind == "backfill":
                assert step.backfill is not None
                options = BackfillOptions(target_ms=self.ops.backfill_target_ms,
                                          initial_batch=self.ops.backfill_batch_size,
                                          max_lock_ms=self.ops.backfill_max_lock_ms or None)
                done = Backfiller(self.conn, self.schema, step.backfill, options, notify=self.notify).run()
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
                self._drop_invalid_index(statement)
                self._execute(step, statement)
        finally:
            self.conn.execute("RESET lock_timeout")

    def _drop_invalid_index(self, statement: sql.Composable) -> None:
        """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would keep."""
        text = statement.as_string(self.conn)
        if "INDEX CONCURRENTLY IF NOT EXISTS" not in text:
            return
        name = text.split("IF NOT EXISTS ", 1)[1].split(" ON ", 1)[0]
        row = self.conn.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (self.ops.schema, name.strip('"').replace('""', '"'))).fetchone()
        if row and row[0]:
            self.notify(f"dropping INVALID index {name} left by an interrupted build")
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(self.ops.schema, name.strip('"').replace('""', '"'))))

    def _execute(self, step: Step, statement: sql.Composable) -> None:
        try:
            self.conn.execute(statement.as_bytes(self.conn))
        except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected):
            raise
        except psycopg.Error as exc:
            raise MigrationFailed(
                f"{self.migration.path}: step '{step.label}' of {self.migration.label} failed: "
                f"{exc.diag.message_primary} (SQLSTATE {exc.sqlstate}). Statement: "
                f"{statement.as_string(self.conn)[:300]}. The step was rolled back; rerun the command to retry "
                "it, or `pgshift abort` to undo the expand.", hint=exc.diag.message_hint) from None

    def _with_retries(self, step: Step, result: PhaseResult, attempt: Callable[[], None]) -> None:
        for retry in range(self.retry.attempts + 1):
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
                    who = "; ".join(b.describe() for b in blockers(self.conn, step.lock_tables)) or "none now"
                    raise LockTimeoutExhausted(
                        f"Step '{step.label}' of {self.migration.label} could not take its lock within "
                        f"lock_timeout {self.ops.lock_timeout} after {retry + 1} attempts "
                        f"({exc.diag.message_primary}). Nothing of the step was committed. Blocking sessions: "
                        f"{who}.", hint="end the blocking transactions or retry later; rerunning the command "
                        "continues at this step.") from None
                delay = self.retry.delay_seconds(retry + 1)
                result.lock_retries += 1
                self.history.log(self.migration.version, "lock-timeout-retry", {
                    "step": step.label, "attempt": retry + 1, "delay_s": round(delay, 3)})
                self.notify(f"lock_timeout on '{step.label}'; retry {retry + 1}/{self.retry.attempts} in {delay:.2f}s")
                time.sleep(delay)

    @property
    def _lock_timeout_ms(self) -> int:
        return duration_ms(self.ops.lock_timeout, key="lock_timeout")

    def _report_blockers(self, step: Step, result: PhaseResult) -> list[Blocker]:
        found = [b for b in blockers(self.conn, step.lock_tables) if b.xact_age_s > 0]
        for b in found:
            text = b.describe()
            if text not in result.blockers_seen:
                result.blockers_seen.append(text)
            self.notify(f"'{step.label}' needs a strong lock on {', '.join(step.lock_tables)}; "
                        f"it would wait behind {text}")
        return found

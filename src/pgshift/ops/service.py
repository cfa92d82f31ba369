"""Library entry points for the ops commands (the CLI in pgshift.cli.ops_cmds is a thin layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from pgshift.config import Settings
from pgshift.db.history import History
from pgshift.errors import server_error_text
from pgshift.migrations.model import Migration
from pgshift.ops.backfill import (
    Backfiller,
    BackfillError,
    BackfillOptions,
    BackfillResult,
    BackfillSpec,
    ProgressCallback,
    reset_job,
)
from pgshift.ops.phases import OpsStateError, PhaseResult, PhaseRunner, active_versions
from pgshift.runner.execute import StatementObserver, StepResult

Notify = Callable[[str], None]


def backfill(settings: Settings, spec: BackfillSpec, options: BackfillOptions | None = None, *,
             progress: ProgressCallback | None = None, notify: Notify | None = None,
             restart: bool = False) -> BackfillResult:
    """Run (or resume) a data backfill under the deploy lock; progress lives in the ledger schema."""
    from pgshift.api import deploy_session

    with deploy_session(settings) as (conn, history):
        if restart:
            reset_job(conn, settings.history_schema, spec.job_name)
        try:
            result = Backfiller(conn, settings.history_schema, spec, options, progress, notify).run()
        except psycopg.Error as exc:  # a row the SET or a constraint rejects
            raise BackfillError(
                f"The backfill of {spec.table} stopped: {server_error_text(exc)} The failing batch was rolled "
                "back; progress up to the last committed batch is saved.",
                hint="fix the cause (the row above) and rerun the same command to resume.") from None
        history.log(spec.version, "backfill", {
            "job": result.job, "table": result.table, "rows": result.rows, "rows_this_run": result.rows_this_run,
            "batches": result.batches, "max_batch_ms": round(result.max_batch_ms, 1), "resumed": result.resumed,
        })
        return result


# -- expand / contract / abort ---------------------------------------------------------------
def expand_migration(settings: Settings, conn: psycopg.Connection[Any], history: History, migration: Migration,
                     notify: Notify | None = None, observer: StatementObserver | None = None) -> StepResult:
    """`pgshift migrate`'s branch for an operations migration: run (or finish) its expand phase."""
    result = PhaseRunner(conn, history, settings, migration, notify, observer).expand()
    return StepResult(migration.version, migration.name, "up", "expand", result.steps, result.duration_ms,
                      retries=result.lock_retries, resumed_at=result.resumed_at)


def _active_migration(settings: Settings, conn: psycopg.Connection[Any], version: str | None,
                      phases: tuple[str, ...], what: str) -> Migration:
    from pgshift.api import load

    active = {v: p for v, p in active_versions(conn, settings.history_schema).items() if p in phases}
    if version is None:
        if not active:
            raise OpsStateError(f"Nothing to {what}: no operations migration is in a state to {what}.")
        version = next(iter(active))
    elif version not in active:
        raise OpsStateError(f"Cannot {what} {version}: it is not expanded (active: {', '.join(active) or 'none'}).")
    _fmt, migrations = load(settings)
    found = next((m for m in migrations if m.version == version and m.ops is not None), None)
    if found is None:
        raise OpsStateError(f"Migration {version} is {active[version]}, but its .ops file is no longer in "
                            f"{settings.migrations_path}.", hint="restore the file; it describes what to undo.")
    return found


def contract(settings: Settings, *, version: str | None = None, notify: Notify | None = None) -> PhaseResult:
    """Finish the active expand: validate constraints, drop old columns, triggers and views."""
    from pgshift.api import deploy_session

    with deploy_session(settings) as (conn, history):
        migration = _active_migration(settings, conn, version, ("expanded", "contracting"), "contract")
        return PhaseRunner(conn, history, settings, migration, notify).contract()


def abort(settings: Settings, *, version: str | None = None, notify: Notify | None = None,
          observer: StatementObserver | None = None) -> PhaseResult:
    """Undo everything the (possibly interrupted) expand did; the migration becomes pending again."""
    from pgshift.api import deploy_session

    with deploy_session(settings) as (conn, history):
        # A contract stopped (crashed) within its validations can still be aborted; the runner checks.
        migration = _active_migration(settings, conn, version, ("expanding", "expanded", "aborting", "contracting"),
                                      "abort")
        return PhaseRunner(conn, history, settings, migration, notify, observer).abort()


def expanded(settings: Settings, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """version -> phase of operations migrations not yet contracted (for `pgshift status`)."""
    return active_versions(conn, settings.history_schema)


def expand_preview(settings: Settings, conn: psycopg.Connection[Any], migration: Migration) -> str:
    """`pgshift migrate --dry-run` for an operations migration: the expand steps exactly as expand would run
    them now (planned from the live catalog, read in a READ ONLY transaction; an interrupted expand from
    the step it continues at), with their transaction mode and timeouts."""
    from psycopg import sql

    from pgshift.ops.model import OpsFile
    from pgshift.ops.phases import load_state
    from pgshift.ops.plan import capture, plan_phases

    ops = migration.ops
    assert isinstance(ops, OpsFile)
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        state = load_state(conn, settings.history_schema, migration.version) \
            if _has_state_table(conn, settings.history_schema) else None
        if state is not None and state["phase"] == "expanding":
            captured, start = state["captured"], int(state["steps_done"])
        else:
            captured, start = capture(conn, ops), 0
    phases = plan_phases(ops, migration.version, captured)
    steps = phases.expand
    lines = [f"-- {migration.label} ({migration.path}): operations, expand phase in {len(steps)} steps; a step that "
             f"hits lock_timeout {ops.lock_timeout} is retried up to {ops.lock_retries} times with backoff"]
    if start:
        lines.append(f"-- an interrupted expand is continued: steps 1-{start} are done")
    for index, step in enumerate(steps[start:], start + 1):
        head = f"-- step {index}/{len(steps)}: {step.label}"
        if step.warning:
            lines.append(f"-- warning: {step.warning}")
        if step.kind == "backfill" and step.backfill is not None:
            spec = step.backfill
            cap = f", a batch holding its row locks over {ops.backfill_max_lock_ms} ms is redone smaller" \
                if ops.backfill_max_lock_ms else ""
            lines += [f"{head} (batches of about {ops.backfill_target_ms} ms, the first {ops.backfill_batch_size} "
                      f"rows, each its own transaction{cap}; resumable)",
                      f"-- UPDATE {spec.table} SET {spec.set_clause}" + (f" WHERE {spec.where}" if spec.where else "")
                      + " -- in keyset batches"]
        elif step.kind == "autocommit":
            lines += [f"{head} (autocommit: cannot run in a transaction)",
                      f"SET lock_timeout = {sql.Literal(ops.lock_timeout).as_string(conn)};",
                      *(f"{s.as_string(conn)};" for s in step.statements), "RESET lock_timeout;"]
        else:
            lines += [f"{head} (one transaction, with its progress)", "BEGIN;",
                      f"SET LOCAL lock_timeout = {sql.Literal(ops.lock_timeout).as_string(conn)};",
                      f"SET LOCAL statement_timeout = {sql.Literal(settings.statement_timeout).as_string(conn)};",
                      *(f"{s.as_string(conn)};" for s in step.statements), "COMMIT;"]
    return "\n".join(lines)


def _has_state_table(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(format('%%I.ops_state', %s::text)) IS NOT NULL", (schema,)).fetchone()
    return bool(row and row[0])

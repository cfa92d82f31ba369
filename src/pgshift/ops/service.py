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

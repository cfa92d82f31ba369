"""Library entry points for the ops commands (the CLI in pgshift.cli.ops_cmds is a thin layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from pgshift.config import Settings
from pgshift.db.connect import server_major
from pgshift.db.history import History
from pgshift.db.session import deploy_session, load
from pgshift.db.styles import in_database_styles
from pgshift.errors import ConnectionFailed, PgshiftError, server_error_text
from pgshift.migrations.model import Migration, OpsMigration, SqlMigration
from pgshift.ops.ledger import active_versions, contract_due
from pgshift.ops.phases import OpsStateError, PhaseResult, PhaseRunner
from pgshift.runner.backfill import (
    Backfiller,
    BackfillError,
    BackfillOptions,
    BackfillResult,
    BackfillSpec,
    ProgressCallback,
    reset_job,
)
from pgshift.runner.execute import SESSION_ENDED, StatementObserver, StepResult
from pgshift.runner.gate import MigrateChecks

Notify = Callable[[str], None]


class SoakNotOver(PgshiftError):
    """`pgshift contract` before the soak `pgshift deploy` recorded (deploy.soak) has passed; --force overrides."""

    code = "soak-not-over"
    exit_code = 41


def backfill(settings: Settings, spec: BackfillSpec, options: BackfillOptions | None = None, *,
             progress: ProgressCallback | None = None, notify: Notify | None = None,
             restart: bool = False, checks: MigrateChecks | None = None, watch: bool = False) -> BackfillResult:
    """Run (or resume) a data backfill under the deploy lock; progress lives in the ledger schema. With
    ``checks`` (the CLI passes them unless --no-backup) it first goes through backup.policy as `migrate`
    does: its batched UPDATE overwrites rows but drops nothing, so only ``always`` takes a backup first.
    With ``watch``, the [watch] thresholds are sampled meanwhile and a breach pauses the batches until it
    clears."""
    if watch:
        from dataclasses import replace

        from pgshift.watch import BreachMonitor

        with BreachMonitor(settings) as monitor:
            return backfill(settings, spec, replace(options or BackfillOptions(), pause_while=monitor.current),
                            progress=progress, notify=notify, restart=restart, checks=checks)
    with deploy_session(settings) as (conn, history):
        if checks is not None and checks.backup:
            from pgshift.runner.gate import apply_backup_policy

            apply_backup_policy(settings, [spec], lambda _spec: False, checks, action="backfill",
                                describe=lambda s: f"the backfill of {s.table}", conn=conn)
        if restart:
            reset_job(conn, settings.history_schema, spec.job_name)
        try:
            with in_database_styles(conn):  # its SET expression computes as the migrations' statements do
                result = Backfiller(conn, settings.history_schema, spec, options, progress, notify).run()
        except psycopg.Error as exc:  # a row the SET or a constraint rejects, or the session is gone
            if conn.broken or conn.closed or (exc.sqlstate or "").startswith(SESSION_ENDED):
                raise ConnectionFailed(
                    f"The connection to the server was lost during the backfill of {spec.table} (job "
                    f"{spec.job_name}): {server_error_text(exc)} The batch then running was rolled back unless its "
                    f"commit reached the server; the batches before it are kept, with their progress in "
                    f"{settings.history_schema}.backfills.",
                    hint="run the same `pgshift backfill` command again (without --restart) once the server "
                    "accepts connections: it resumes after the last committed batch.") from exc
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
def expand_migration(settings: Settings, conn: psycopg.Connection[Any], history: History, migration: OpsMigration,
                     notify: Notify | None = None, observer: StatementObserver | None = None) -> StepResult:
    """`pgshift migrate`'s branch for an operations migration: run (or finish) its expand phase."""
    result = PhaseRunner(conn, history, settings, migration, notify, observer).expand()
    return StepResult(migration.version, migration.name, "up", "expand", result.steps, result.duration_ms,
                      retries=result.lock_retries, resumed_at=result.resumed_at)


def _active_migration(settings: Settings, conn: psycopg.Connection[Any], version: str | None,
                      phases: tuple[str, ...], what: str) -> OpsMigration:
    active = {v: p for v, p in active_versions(conn, settings.history_schema).items() if p in phases}
    if version is None:
        if not active:
            raise OpsStateError(f"Nothing to {what}: no operations migration is in a state to {what}.")
        version = next(iter(active))
    elif version not in active:
        raise OpsStateError(f"Cannot {what} {version}: it is not expanded (active: {', '.join(active) or 'none'}).")
    _fmt, migrations = load(settings)
    found = next((m for m in migrations if m.version == version and isinstance(m, OpsMigration)), None)
    if found is None:
        raise OpsStateError(f"Migration {version} is {active[version]}, but its .ops file is no longer in "
                            f"{settings.migrations_path}.", hint="restore the file; it describes what to undo.")
    return found


def contract(settings: Settings, *, version: str | None = None, notify: Notify | None = None,
             checks: MigrateChecks | None = None, observer: StatementObserver | None = None,
             force: bool = False) -> PhaseResult:
    """Finish the active expand: validate constraints, drop old columns, triggers and views. With ``checks``
    (the CLI passes them unless --no-backup), the contract first goes through backup.policy as `migrate`
    does: a backup under ``always``, and under the other policies when a step still to run drops data. An
    expand `pgshift deploy` recorded a soak for is refused before it ends, unless ``force``."""
    with deploy_session(settings) as (conn, history):
        migration = _active_migration(settings, conn, version, ("expanded", "contracting"), "contract")
        due = contract_due(conn, settings.history_schema).get(migration.version)
        if due is not None and not force:
            now = conn.execute("SELECT now()").fetchone()
            if now is not None and now[0] < due[1]:
                raise SoakNotOver(
                    f"Refusing to contract {migration.label}: `pgshift deploy` expanded it at {due[0]:%Y-%m-%d %H:%M} "
                    f"and recorded a soak (deploy.soak) until {due[1]:%Y-%m-%d %H:%M %Z}; the old application "
                    "version may still need what the contract drops. Nothing was changed.",
                    hint=f"wait until {due[1]:%Y-%m-%d %H:%M %Z}, or pass --force once every instance runs the "
                    "new version.")
        runner = PhaseRunner(conn, history, settings, migration, notify, observer)
        if checks is not None and checks.backup:
            from pgshift.runner.gate import apply_backup_policy

            judge = ContractDrops(conn, runner)
            destroys = migration.is_destructive("contract", judge)
            label = f"the contract of {migration.label} ({'; '.join(judge.contract_drops(migration))})"
            apply_backup_policy(settings, [migration], lambda m: m.is_destructive("contract", judge), checks,
                                action="contract", describe=lambda _m: label, conn=conn)
            if notify and destroys and checks.backup_path is None:
                notify(f"{label} drops data; a verified backup within backup.max_age exists")
        return runner.contract()


class ContractDrops:
    """`pgshift contract`'s judge of data loss (pgshift.migrations.model.DataLossJudge): the contract steps
    still to run that drop or truncate data (a column, a table, a schema other than the version schema of
    views), judged from their SQL as lint judges a migration's."""

    def __init__(self, conn: psycopg.Connection[Any], runner: PhaseRunner) -> None:
        self.conn = conn
        self.runner = runner
        self._found: list[str] | None = None

    def sql_drops(self, migration: SqlMigration) -> bool:
        return False  # contract runs no SQL migration

    def contract_drops(self, migration: OpsMigration) -> list[str]:
        if self._found is None:
            self._found = _destructive_contract_steps(self.conn, self.runner, migration)
        return self._found


def _destructive_contract_steps(conn: psycopg.Connection[Any], runner: PhaseRunner,
                                migration: OpsMigration) -> list[str]:
    from pgshift.migrations.analysis import analyse_all
    from pgshift.ops.phases import load_state
    from pgshift.ops.plan import StepPlanner, version_schema_name

    state = load_state(conn, runner.schema, migration.version)
    assert state is not None
    start = int(state["steps_done"]) if state["phase"] == "contracting" else 0
    # The version schema holds only views of the tables: dropping it loses no data.
    views_only = f"schema {version_schema_name(migration.ops, migration.version)}"
    found: list[str] = []
    for step in migration.steps("contract", StepPlanner(server_major(conn), state["captured"]))[start:]:
        for statement in step.statements:
            facts = analyse_all(statement.as_string(conn))
            if any(lost != views_only for f in facts for lost in f.destroys) and step.label not in found:
                found.append(step.label)
    return found


def abort(settings: Settings, *, version: str | None = None, notify: Notify | None = None,
          observer: StatementObserver | None = None) -> PhaseResult:
    """Undo everything the (possibly interrupted) expand did; the migration becomes pending again."""
    with deploy_session(settings) as (conn, history):
        # A contract stopped (crashed) within its validations can still be aborted; the runner checks.
        migration = _active_migration(settings, conn, version, ("expanding", "expanded", "aborting", "contracting"),
                                      "abort")
        return PhaseRunner(conn, history, settings, migration, notify, observer).abort()


def expanded(settings: Settings, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """version -> phase of operations migrations not yet contracted (for `pgshift status`)."""
    return active_versions(conn, settings.history_schema)


def expand_preview(settings: Settings, conn: psycopg.Connection[Any], migration: OpsMigration) -> str:
    """`pgshift migrate --dry-run` for an operations migration: the expand steps exactly as expand would run
    them now (planned from the live catalog, read in a READ ONLY transaction; an interrupted expand from
    the step it continues at), with their transaction mode and timeouts."""
    from pgshift.ops.phases import load_state
    from pgshift.ops.plan import capture, plan_phases
    from pgshift.runner.steps import render_steps

    ops = migration.ops
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
    for other, phase in active_versions(conn, settings.history_schema).items():
        if other != migration.version:
            lines.append(f"-- refused as things stand: migration {other} is {phase} and not contracted (one "
                         "expand/contract migration is active at a time); contract or abort it first")
    runner = PhaseRunner(conn, History(conn, settings.history_schema), settings, migration)
    lines += render_steps(steps[start:], runner.timeouts, conn, numbered=True, first=start + 1, total=len(steps),
                          backfill=runner.backfill_options, analyze=settings.analyze_after)
    # What contract will lock that no CONCURRENTLY form avoids: said now, before the expand commits to it.
    lines += [f"-- then `pgshift contract` step {n}/{len(phases.contract)} ({s.label}): warning: {s.warning}"
              for n, s in enumerate(phases.contract, 1) if s.warning]
    return "\n".join(lines)


def _has_state_table(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(format('%%I.ops_state', %s::text)) IS NOT NULL", (schema,)).fetchone()
    return bool(row and row[0])


def refuse_rollback(settings: Settings, conn: psycopg.Connection[Any], targets: list[Migration]) -> None:
    """`pgshift rollback` runs down parts; an operations migration has none. Name the command that does undo
    the newest one to roll back, from its expand/contract state (before anything is rolled back)."""
    from pgshift.errors import Irreversible
    from pgshift.ops.phases import load_state
    from pgshift.ops.plan import plan_phases

    position, m = next((n, t) for n, t in enumerate(targets) if isinstance(t, OpsMigration))
    newer = (f" The {position} migration(s) newer than it can be rolled back first with `pgshift rollback --to "
             f"{m.version}`." if position else "")
    state = load_state(conn, settings.history_schema, m.version) if _has_state_table(
        conn, settings.history_schema) else None
    phase = state["phase"] if state else "contracted"
    what = f"Cannot roll back {m.label} ({m.path}): it is an operations migration, which has no down part;"
    abort = m.undo_hint(contracted=False)
    if phase == "contracting" and state is not None:
        undoable = plan_phases(m.ops, m.version, state["captured"]).contract_undoable
        if int(state["steps_done"]) > undoable:
            raise OpsStateError(
                f"{what} its contract stopped part-way after dropping what abort would restore. Nothing was "
                f"rolled back.{newer}", hint="run `pgshift contract` to finish it; to undo the change after that, "
                "write a migration that reverses it.")
    if phase in ("expanded", "contracting", "aborting"):
        done = "its abort stopped part-way" if phase == "aborting" else f"it is {phase} and not contracted"
        first = f"`pgshift rollback --to {m.version}` (the {position} newer migration(s)), then " if position else ""
        raise OpsStateError(
            f"{what} {done}, and {abort} undoes its expand (the migration becomes pending again). Nothing was "
            "rolled back.", hint=f"run {first}{abort}.")
    raise Irreversible(
        f"{what} it is contracted: the contract dropped the old columns, tables or indexes, so neither rollback nor "
        f"`pgshift abort` can undo it. Nothing was rolled back.{newer}",
        hint="write a new migration that reverses it (for example an .ops file with the reverse operations), or "
        "restore a backup taken before the contract with `pgshift restore <backup>` (`pgshift backup list` "
        "names them).")

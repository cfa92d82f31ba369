"""The deploy workflows: init, new, status, validate, migrate, rollback, baseline, adopt, history.

Every function takes a :class:`pgshift.config.Settings` and returns a report dataclass; errors
are :class:`pgshift.errors.PgshiftError` subclasses. No global state. Users import them from
:mod:`pgshift.api` (the public facade); pgshift's own higher layers (rehearsal, check, the demo)
import them from here, so nothing below the facade depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pgshift.config import Settings
from pgshift.db.connect import server_major
from pgshift.db.history import AppliedRow, History
from pgshift.db.lock import lock_holder, lock_key
from pgshift.db.session import deploy_session, load, open_connection
from pgshift.db.standbys import wait_for_replay
from pgshift.errors import Irreversible, MigrationSourceError, PgshiftError, SqlParseError, ValidationFailed
from pgshift.migrations.classify import concurrent_index
from pgshift.migrations.files import broken_link
from pgshift.migrations.formats import native
from pgshift.migrations.model import Migration, OpsMigration, SqlMigration, version_sort_key
from pgshift.runner.execute import (
    Executor,
    StatementObserver,
    StepResult,
    Timeouts,
    needs_steps,
    prefix_checksum,
    transaction_blocks,
)
from pgshift.runner.gate import MigrateChecks, gate
from pgshift.runner.plan import Plan, Problem, build_plan
from pgshift.runner.retry import RetryPolicy
from pgshift.runner.session_settings import check_session_settings
from pgshift.runner.steps import StepTimeouts, render_steps, session_settings, sql_steps

if TYPE_CHECKING:
    from pgshift.db.foreign_history import ForeignApplied

Notify = Callable[[str], None]
BeforeApply = Callable[[psycopg.Connection[Any], list[Migration]], None]


# -- loading and connecting ----------------------------------------------------------------
def file_warnings(migrations: list[Migration]) -> list[str]:
    """One line per file that loads with a problem that blocks only that migration (its run or
    its rollback), so status, migrate and adopt can go on and still say so."""
    warnings: list[str] = []
    for m in migrations:
        if m.error is not None:
            warnings.append(f"{m.error.message.rstrip('.')}; {m.label} cannot be applied or rolled back "
                            "until that file is fixed.")
        elif m.down_error is not None:
            warnings.append(f"{m.down_error.file}:{m.down_error.line}:{m.down_error.column}: the down part of "
                            f"{m.label} does not parse ({m.down_error.reason}); a rollback through it is "
                            "refused until it is fixed.")
    return warnings


def refuse_unusable(plan: Plan, todo: list[Migration], *, suggest_to: bool = True) -> None:
    """A pending file that cannot be used stops migrate before anything runs: its error is known
    without the server, and a deploy that stops half way is worse than one that does not start."""
    broken = next((m for m in todo if m.error is not None), None)
    if broken is None or broken.error is None:
        return
    error = broken.error
    before = [m for m in plan.pending if m.kind == "versioned" and m.sort_key < broken.sort_key]
    hint = "fix that file; nothing was run."
    if before and suggest_to:
        hint += f" `pgshift migrate --to {before[-1].version}` applies the migrations before it."
    if isinstance(error, SqlParseError):
        raise SqlParseError(error.reason, file=error.file, line=error.line, column=error.column, hint=hint)
    raise MigrationSourceError(error.message, hint=hint)


def _mirror(settings: Settings, conn: psycopg.Connection[Any], history: History,
            migrations: list[Migration]) -> Callable[[Migration | None], None]:
    """Keeps ledger.mirror's tool table in step with the ledger: ``sync(m)`` after the ledger row of
    ``m`` was written (same transaction), ``sync(None)`` for every migration (start and end of a run)."""
    if not settings.ledger.mirror:
        return lambda _migration: None
    from pgshift.db.mirror import Mirror

    mirror = Mirror(conn, settings.ledger.mirror, settings.migrations_path, settings.ledger.mirror_schema)

    def sync(migration: Migration | None) -> None:
        mirror.sync(migrations, history.rows(), None if migration is None else [migration])

    return sync


def _executor(settings: Settings, conn: psycopg.Connection[Any], history: History,
              notify: Notify | None, observer: StatementObserver | None = None,
              after_record: Callable[[Migration], None] | None = None) -> Executor:
    return Executor(
        conn, history, server_major=server_major(conn),
        timeouts=Timeouts(settings.lock_timeout, settings.statement_timeout),
        retry=RetryPolicy(
            attempts=settings.lock_retries,
            initial_ms=settings.retry_initial_delay.ms,
            max_ms=settings.retry_max_delay.ms,
        ),
        notify=notify,
        observer=observer,
        after_record=after_record,
        analyze_after=settings.analyze_after,
    )


# -- init / new ----------------------------------------------------------------------------
CONFIG_TEMPLATE = """\
# pgshift settings. Environment variables (DATABASE_URL, PGSHIFT_*) and flags override these.
# database_url = "postgresql://app@db.example.com/app"   # prefer DATABASE_URL for secrets
# migrate_url = "postgresql://app@db-direct.example.com/app"   # when database_url is a PgBouncer in transaction mode
migrations_dir = "{migrations_dir}"
lock_timeout = "2s"        # every statement; lock waits longer than this are retried
lock_retries = 5
statement_timeout = "0"    # 0 = no limit
"""


@dataclass
class InitReport:
    migrations_dir: Path
    config_file: Path | None
    created: list[str] = field(default_factory=list)
    ledger_created: bool = False
    existing: str | None = None  # the migrations folder was already there (perhaps found, not configured)


def init(settings: Settings, *, with_database: bool = True) -> InitReport:
    report = InitReport(settings.migrations_path, None)
    if problem := broken_link(settings.migrations_path):
        raise MigrationSourceError(f"Cannot create the migrations folder {settings.migrations_path}: it {problem}.",
                                   hint="create the folder it points to, or remove the link and run init again.")
    if settings.migrations_path.is_dir():
        report.existing = str(settings.migrations_path)
    elif not settings.migrations_path.exists():
        settings.migrations_path.mkdir(parents=True)
        report.created.append(str(settings.migrations_path))
    config = settings.base_dir / "pgshift.toml"
    if settings.source == "defaults" and not config.exists():
        config.write_text(CONFIG_TEMPLATE.format(migrations_dir=settings.migrations_dir))
        report.config_file = config
        report.created.append(str(config))
    if with_database and settings.database_url:
        with deploy_session(settings):
            report.ledger_created = True
    return report


_NAME = re.compile(r"[^a-z0-9]+")


def new(settings: Settings, name: str, *, now: datetime | None = None) -> Path:
    fmt, existing = load(settings)
    if fmt != "native":
        raise MigrationSourceError(
            f"pgshift new writes pgshift's own format, but {settings.migrations_path} holds {fmt} "
            f"migrations; create the file with {fmt}'s own tool, or point --dir at a new folder."
        )
    slug = _NAME.sub("_", name.lower()).strip("_")
    if not slug:
        raise MigrationSourceError(f"{name!r} is not usable as a migration name; use letters and digits.")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    latest = max((m.version for m in existing), default="0", key=version_sort_key)
    if stamp.isdigit() and latest.isdigit() and int(stamp) <= int(latest):
        stamp = str(int(latest) + 1)  # keep versions increasing even with clock skew
    path = settings.migrations_path / f"{stamp}_{slug}.sql"
    path.write_text(native.TEMPLATE.format(name=name))
    return path


# -- status / validate ---------------------------------------------------------------------
@dataclass
class Interruption:
    """A migration a run did not finish, and what the next `pgshift migrate` does about it."""

    version: str
    name: str
    state: str  # "interrupted" (killed or disconnected) or "failed"
    resume_at: int  # 1-based statement the rerun starts at
    total: int
    detail: str


@dataclass
class MigrationStatus:
    """One migration as `pgshift status` shows it (text and --json alike)."""

    migration: Migration
    state: str  # the ledger's: applied, pending, failed, running, rolled_back, baseline, changed
    display_state: str  # what the text shows: "expanded (not contracted)", "failed (pending)", ...
    expand_phase: str | None  # an operations migration not yet contracted: its phase
    applied_at: datetime | None
    duration_ms: int | None


@dataclass
class StatusReport:
    format: str
    plan: Plan
    server_version: str
    history_exists: bool
    expanded: dict[str, str] = field(default_factory=dict)  # ops migrations not yet contracted: version -> phase
    warnings: list[str] = field(default_factory=list)  # files that block only their own migration
    interrupted: list[Interruption] = field(default_factory=list)
    running_now: str | None = None  # who holds the deploy lock, when someone does
    # expanded by `pgshift deploy` with deploy.contract = "later": version -> (expanded since, contract due after)
    contract_due: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)

    @property
    def pending(self) -> list[Migration]:
        return self.plan.pending

    @property
    def problems(self) -> list[Problem]:
        return self.plan.problems

    @property
    def migrations(self) -> list[MigrationStatus]:
        entries = []
        for m in self.plan.migrations:
            state = shown = self.plan.state_of(m)
            phase = self.expanded.get(m.version)
            if phase is not None:
                shown = "expanded (not contracted)" if phase == "expanded" else f"{phase} (interrupted)"
            if phase == "expanded" and (due := self.contract_due.get(m.version)) is not None:
                shown = f"expanded since {due[0]:%Y-%m-%d %H:%M}, contract due after {due[1]:%Y-%m-%d %H:%M %Z}"
            if m in self.plan.pending and shown in ("failed", "running", "rolled_back"):
                shown = f"{shown} (pending)"
            row = self.plan.rows.get(m.version)
            entries.append(MigrationStatus(m, state, shown, phase, row.finished_at if row else None,
                                           row.duration_ms if row else None))
        return entries

    @property
    def counts(self) -> dict[str, int]:
        """The summary line's numbers."""
        return {"applied": len(self.plan.applied), "pending": len(self.plan.pending),
                "interrupted": sum(i.state == "interrupted" for i in self.interrupted),
                "failed": sum(i.state == "failed" for i in self.interrupted), "problems": len(self.plan.problems)}


def status(settings: Settings) -> StatusReport:
    fmt, migrations = load(settings)
    with open_connection(settings) as conn:
        history = History(conn, settings.history_schema)
        rows = history.rows()
        from pgshift.ops.ledger import active_versions, contract_due

        plan = build_plan(migrations, rows)
        holder = lock_holder(conn, lock_key(settings.history_schema))
        return StatusReport(fmt, plan, conn.info.parameter_status("server_version") or "",
                            history.exists(), active_versions(conn, settings.history_schema),
                            warnings=file_warnings(migrations),
                            interrupted=_interruptions(plan, history, server_major(conn)),
                            running_now=holder.describe() if holder else None,
                            contract_due=contract_due(conn, settings.history_schema))


def _interruptions(plan: Plan, history: History, major: int) -> list[Interruption]:
    """Pending migrations a run started and did not finish: a 'running' or 'failed' row, or (a
    transactional migration, whose row rolls back with it) the first unfinished one of the last
    run's list."""
    found: list[Interruption] = []
    for m in plan.pending:
        row = plan.rows.get(m.version)
        if isinstance(m, SqlMigration) and row is not None and row.direction == "up" \
                and row.status in ("running", "failed"):
            found.append(_interruption(m, row, major))
    started = history.events_named("migrate-started", 1)
    stopped = history.events_named("migrate-stopped", 1)  # stopped on purpose between migrations (--watch)
    if started and stopped and stopped[0]["id"] > started[0]["id"]:
        started = []
    listed = started[0]["detail"].get("pending", []) if started else []
    pending = {m.version: m for m in plan.pending}
    first = next((v for v in listed if v in pending), None)
    # Only a migration run in one transaction leaves no row behind; one run step by step commits its
    # 'running' row before its first statement, so without a row it had not started.
    if first is not None and first not in plan.rows and isinstance(m := pending[first], SqlMigration) \
            and transaction_blocks(m, m.up, major) is None and not needs_steps(m, m.up, major):
        found.append(Interruption(
            m.version, m.name, "interrupted", 1, len(m.up),
            f"{m.label}: the run started {started[0]['at']:%Y-%m-%d %H:%M:%S} by {started[0]['actor']} stopped "
            "before it committed (killed, or its connection was lost); its transaction was rolled back, so "
            "nothing of it is applied. `pgshift migrate` runs it again in one transaction."))
    return found


def _interruption(m: Migration, row: AppliedRow, major: int) -> Interruption:
    when = f"{row.started_at:%Y-%m-%d %H:%M:%S} by {row.applied_by}"
    if row.status == "failed":
        what = f"{m.label} failed (run started {when}): {(row.error or 'no error recorded').rstrip('.')}"
    else:
        what = f"{m.label} was interrupted (run started {when}; killed, or its connection was lost)"
    total = len(m.up)
    if transaction_blocks(m, m.up, major) is None and not needs_steps(m, m.up, major):
        return Interruption(m.version, m.name, row.status if row.status == "failed" else "interrupted", 1, total,
                            f"{what}. Nothing of it is committed; `pgshift migrate` runs it again in one transaction.")
    done = min(row.statements_done, total)
    if done and row.progress_checksum != prefix_checksum(m.up[:done]):
        plan = (f"statements 1-{done} completed then, but the file has changed in them since, so "
                "`pgshift migrate` starts again at statement 1")
        done = 0
    elif done == total:
        plan = f"all {total} statements completed; `pgshift migrate` records it as applied"
    else:
        stmt = m.up[done]
        committed = f"statement 1 of {total} is" if done == 1 else f"statements 1-{done} of {total} are"
        plan = f"{committed} committed" if done else "no statement of it completed"
        plan += f"; `pgshift migrate` resumes at statement {done + 1} ({stmt.where}: {stmt.summary})"
        if concurrent_index(stmt.sql) is not None:
            plan += (", first checking whether the interrupted CONCURRENTLY index build finished (an INVALID "
                     "index it left is dropped and built again)")
    state = "failed" if row.status == "failed" else "interrupted"
    return Interruption(m.version, m.name, state, done + 1, total, f"{what}. {plan[0].upper()}{plan[1:]}.")


@dataclass
class ValidateReport:
    problems: list[Problem]
    repaired: list[str] = field(default_factory=list)
    checked: int = 0


def validate(settings: Settings, *, repair: bool = False) -> ValidateReport:
    _fmt, migrations = load(settings)
    if not repair:
        with open_connection(settings) as conn:
            plan = build_plan(migrations, History(conn, settings.history_schema).rows())
        return ValidateReport(plan.problems, checked=len(plan.applied))
    with deploy_session(settings) as (_conn, history):
        plan = build_plan(migrations, history.rows())
        report = ValidateReport([], checked=len(plan.applied))
        for problem in plan.problems:
            migration = plan.by_version(problem.version)
            if problem.kind == "edited" and migration is not None:
                history.set_checksum(problem.version, migration.checksum)
                history.log(problem.version, "checksum-repaired", {"checksum": migration.checksum})
                report.repaired.append(problem.version)
            else:
                report.problems.append(problem)
        return report


def _refuse_problems(plan: Plan, *, allow_out_of_order: bool) -> None:
    blocking = [p for p in plan.problems if not (p.kind == "out-of-order" and allow_out_of_order)]
    if blocking:
        details = " ".join(p.detail for p in blocking)
        raise ValidationFailed(
            f"Refusing to migrate: {details}",
            hint="restore the original files, or run `pgshift validate --repair` to accept edited "
            "files; new files older than applied ones need --out-of-order (or allow_out_of_order).",
        )


# -- migrate -------------------------------------------------------------------------------
@dataclass
class DryRunStep:
    migration: Migration
    mode: str
    sql: str


@dataclass
class MigrateReport:
    applied: list[StepResult] = field(default_factory=list)
    dry_run: list[DryRunStep] = field(default_factory=list)
    nothing_to_do: bool = False
    waited_for_lock_s: float = 0.0
    warnings: list[str] = field(default_factory=list)  # files that block only their own migration
    standbys_replayed: list[str] = field(default_factory=list)  # with migrate.wait_for_standbys: who replayed it


def _select_pending(plan: Plan, to: str | None) -> list[Migration]:
    if to is None:
        return list(plan.pending)
    target = plan.by_version(to)
    if target is None:
        raise MigrationSourceError(f"--to {to}: no migration with that version in the folder.")
    return [m for m in plan.pending if m.kind == "versioned" and m.sort_key <= target.sort_key]


def migrate(
    settings: Settings,
    *,
    to: str | None = None,
    dry_run: bool = False,
    repair: bool = False,
    out_of_order: bool | None = None,
    notify: Notify | None = None,
    before_apply: BeforeApply | None = None,
    observer: StatementObserver | None = None,
    checks: MigrateChecks | None = None,
) -> MigrateReport:
    """Apply pending migrations under the deploy lock. With ``checks``, lint them against the live
    server and back up according to backup.policy first (the CLI always passes checks)."""
    fmt, migrations = load(settings)
    allow_ooo = settings.allow_out_of_order if out_of_order is None else out_of_order
    if dry_run:
        with open_connection(settings) as conn:
            plan = build_plan(migrations, History(conn, settings.history_schema).rows())
            _refuse_problems(plan, allow_out_of_order=allow_ooo)
            todo = _select_pending(plan, to)
            refuse_unusable(plan, todo)
            major = server_major(conn)
            check_session_settings(conn, todo)  # as migrate refuses them
            steps = [_dry_run_ops(settings, conn, m, todo[:n]) if isinstance(m, OpsMigration)
                     else _dry_run_step(settings, conn, m, major) for n, m in enumerate(todo)]
        return MigrateReport(dry_run=steps, nothing_to_do=not steps, warnings=file_warnings(migrations))
    if repair:
        validate(settings, repair=True)
    report = MigrateReport(warnings=file_warnings(migrations))
    if notify:  # before anything runs, so a refusal or a failure does not hide them
        for warning in report.warnings:
            notify(f"warning: {warning}")
    with deploy_session(settings) as (conn, history):
        mirror = _mirror(settings, conn, history, migrations)
        mirror(None)  # repairs what a run killed between the ledger and the mirror left behind
        plan = build_plan(migrations, history.rows())
        _refuse_problems(plan, allow_out_of_order=allow_ooo)
        todo = _select_pending(plan, to)
        refuse_unusable(plan, todo)
        if not todo:
            report.nothing_to_do = True
            # Also with nothing pending: rerunning migrate after a timeout waits for the standbys again.
            report.standbys_replayed = _wait_for_standbys(settings, conn, notify)
            return report
        for migration in todo:  # a file whose own BEGIN / COMMIT cannot run is refused before anything runs
            transaction_blocks(migration, migration.up, server_major(conn))
        check_session_settings(conn, todo)
        if checks is not None:
            gate(settings, checks, plan.applied)(conn, todo)
        if before_apply is not None:
            before_apply(conn, todo)
        executor = _executor(settings, conn, history, notify, observer, mirror)
        history.log(None, "migrate-started", {"pending": [m.version for m in todo], "format": fmt})
        for migration in todo:
            if notify:
                notify(f"applying {migration.label}")
            if isinstance(migration, OpsMigration):  # zero-downtime operations: run their expand phase
                from pgshift.ops.service import expand_migration

                report.applied.append(expand_migration(settings, conn, history, migration, notify, observer))
            else:
                report.applied.append(executor.run(migration, "up"))
        mirror(None)
        report.standbys_replayed = _wait_for_standbys(settings, conn, notify)
    return report


def _wait_for_standbys(settings: Settings, conn: psycopg.Connection[Any], notify: Notify | None) -> list[str]:
    """With migrate.wait_for_standbys set: until every standby has replayed what is applied."""
    timeout = settings.migrate.wait_for_standbys
    if not timeout.ms:
        return []
    return wait_for_replay(conn, timeout.seconds, limit=str(timeout), notify=notify)


def _dry_run_ops(settings: Settings, conn: psycopg.Connection[Any], m: OpsMigration,
                 before: list[Migration]) -> DryRunStep:
    """The expand steps of an operations migration, planned from the live catalog as expand plans them."""
    from pgshift.ops.service import expand_preview

    try:
        return DryRunStep(m, "operations (expand)", expand_preview(settings, conn, m))
    except MigrationSourceError as exc:
        if not before:
            raise  # expand would stop the same way
        # It may name a table that a migration before it creates: planned from the catalog they leave.
        return DryRunStep(m, "operations (expand)", (
            f"-- {m.label} ({m.path}): operations; its expand steps are planned when `pgshift migrate` reaches it, "
            f"from the catalog the {len(before)} migration(s) before it leave (planned now: {exc.message})"))


def _dry_run_step(settings: Settings, conn: psycopg.Connection[Any], m: Migration, major: int) -> DryRunStep:
    """The steps the engine would run for a SQL migration, rendered as an operations migration's are."""
    timeouts = StepTimeouts(m.lock_timeout or settings.lock_timeout,
                            m.statement_timeout or settings.statement_timeout, settings=session_settings(m))
    plan = sql_steps(m, m.up, major)
    lines = [f"-- {m.label} ({m.path})"]
    if plan.mode == "transaction blocks":
        lines.append(f"-- runs in {plan.blocks} transaction blocks, as its own BEGIN / COMMIT divide it; "
                     "progress is recorded after each")
    elif plan.mode == "statement-by-statement":
        lines.append("-- runs statement by statement; progress is recorded after each")
    lines += render_steps(list(plan.steps), timeouts, conn, analyze=settings.analyze_after)
    return DryRunStep(m, plan.mode, "\n".join(lines))


# -- rollback ------------------------------------------------------------------------------
@dataclass
class RollbackReport:
    reverted: list[StepResult] = field(default_factory=list)
    nothing_to_do: bool = False


def _rollback_targets(plan: Plan, rows: dict[str, AppliedRow], to: str | None, steps: int) -> list[Migration]:
    interrupted = [m for m in plan.migrations if (r := rows.get(m.version)) is not None
                   and r.direction == "down" and r.status in ("running", "failed")]
    applied = [m for m in plan.applied if m.kind == "versioned" and m not in interrupted
               and rows[m.version].status == "applied"]
    applied.sort(key=lambda m: m.sort_key, reverse=True)
    if to is not None:
        target = plan.by_version(to)
        if target is None and to not in rows:
            raise MigrationSourceError(f"--to {to}: no migration with that version.")
        key = target.sort_key if target else version_sort_key(to)
        chosen = [m for m in applied if m.sort_key > key]
    else:
        chosen = applied[: max(0, steps - len(interrupted))]
    return sorted(interrupted, key=lambda m: m.sort_key, reverse=True) + chosen


def _refuse_broken_down(targets: list[Migration]) -> None:
    """Refuse before anything runs when a migration to roll back has a down part that does not
    parse (or a file that cannot be read at all); newer ones can still be rolled back alone."""
    for position, m in enumerate(targets):
        if m.error is None and m.down_error is None:
            continue
        hint = "fix that file, then run the rollback again."
        if position:
            hint += f" `pgshift rollback --to {m.version}` rolls back only the migrations newer than it."
        if m.down_error is not None:
            err = m.down_error
            raise SqlParseError(f"the down part of {m.label} does not parse ({err.reason}); refusing to roll "
                                "back through it. Nothing was rolled back.",
                                file=err.file, line=err.line, column=err.column, hint=hint)
        assert m.error is not None
        if isinstance(m.error, SqlParseError):
            raise SqlParseError(f"{m.error.reason}; cannot roll back {m.label}. Nothing was rolled back.",
                                file=m.error.file, line=m.error.line, column=m.error.column, hint=hint)
        raise MigrationSourceError(f"Cannot roll back {m.label}: {m.error.message.rstrip('.')}. Nothing was "
                                   "rolled back.", hint=hint)


# Where a down part goes in each folder format (Prisma has none: a reverse is a new migration).
_DOWN_PART_HOW = {
    "native": "add a '-- pgshift:down' section to the file",
    "dbmate": "add the rollback SQL under the file's '-- migrate:down' marker",
    "goose": "add a '-- +goose Down' section to the file",
    "golang-migrate": "add a <version>_<name>.down.sql file beside the .up.sql",
    "flyway": "add an undo script U<version>__<description>.sql beside the V script",
    "prisma": "Prisma migrations have no down part: write a new migration that reverses it and run "
              "`pgshift migrate`",
}


def rollback(settings: Settings, *, to: str | None = None, steps: int = 1,
             notify: Notify | None = None, observer: StatementObserver | None = None) -> RollbackReport:
    _fmt, migrations = load(settings)
    report = RollbackReport()
    with deploy_session(settings) as (conn, history):
        mirror = _mirror(settings, conn, history, migrations)
        mirror(None)
        rows = history.rows()
        plan = build_plan(migrations, rows)
        edited = [p for p in plan.problems if p.kind in ("edited", "missing")]
        if edited:
            raise ValidationFailed("Refusing to roll back: " + " ".join(p.detail for p in edited))
        targets = _rollback_targets(plan, rows, to, steps)
        if not targets:
            report.nothing_to_do = True
            return report
        _refuse_broken_down(targets)
        if any(isinstance(m, OpsMigration) for m in targets):  # undone by `pgshift abort`, not by a down part
            from pgshift.ops.service import refuse_rollback

            refuse_rollback(settings, conn, targets)
        missing = [m for m in targets if m.down is None]
        if missing:
            names = ", ".join(f"{m.label} ({m.path})" for m in missing)
            raise Irreversible(
                f"Cannot roll back: {names} has no down part. Nothing was rolled back.",
                hint=f"{_DOWN_PART_HOW.get(missing[0].source_format, _DOWN_PART_HOW['native'])}, or "
                f"{missing[0].undo_hint()}.",
            )
        check_session_settings(conn, targets)
        executor = _executor(settings, conn, history, notify, observer, mirror)
        for migration in targets:
            if notify:
                notify(f"rolling back {migration.label}")
            report.reverted.append(executor.run(migration, "down"))
    return report


# -- baseline / history --------------------------------------------------------------------
def baseline(settings: Settings, version: str) -> Migration | None:
    """Adopt an existing database: record ``version`` as the baseline; files at or below it
    count as applied and are never run."""
    _fmt, migrations = load(settings)
    found = next((m for m in migrations if m.version == version), None)
    with deploy_session(settings) as (_conn, history):
        rows = history.rows()
        applied = [r for r in rows.values() if r.status in ("applied", "baseline")]
        if applied:
            raise ValidationFailed(
                f"Cannot baseline: the history in schema {settings.history_schema} already has "
                f"{len(applied)} applied migration(s). Baseline is for a database pgshift has not run on."
            )
        history.record(version=version, name=found.name if found else "baseline", kind="versioned",
                       checksum=found.checksum if found else "", status="baseline",
                       source_format=found.source_format if found else "native",
                       note="baseline: this and older migrations were applied before pgshift")
        history.log(version, "baseline", {})
    return found


@dataclass
class AdoptReport:
    tool: str
    adopted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # files that block only their own migration
    changed: list[str] = field(default_factory=list)  # repeatables edited since the tool ran them (pending)
    baseline: str | None = None  # the tool's baseline version (Flyway's BASELINE row), recorded as pgshift's
    below_baseline: list[str] = field(default_factory=list)  # files at or below it: applied, never run


def adopt(settings: Settings, tool: str, *, schema: str | None = None, table: str | None = None) -> AdoptReport:
    """Import another tool's history so nothing it applied runs again under pgshift."""
    from pgshift.db.foreign_history import read_foreign_history
    from pgshift.errors import AdoptError

    # adopt runs nothing, so what it records never depends on the SQL parsing; the SQL is parsed
    # only to warn, as status does, about files a later migrate or rollback will refuse.
    _fmt, migrations = load(settings, statements=False)
    report = AdoptReport(tool, warnings=file_warnings(load(settings)[1]))
    with deploy_session(settings) as (conn, history):
        entries = read_foreign_history(conn, tool, schema, table=table)
        failed = [e for e in entries if not e.succeeded]
        if failed:
            versions = ", ".join(e.version for e in failed)
            raise AdoptError(
                f"{tool} records {versions} as failed or dirty; adopting would hide a half-applied "
                f"migration. Repair it with {tool} first, then run pgshift adopt again."
            )
        keys = {version_sort_key(e.version): e for e in entries}
        if tool == "flyway":
            _refuse_flyway_non_sql(settings, migrations, keys)
        if tool == "golang-migrate" and entries:
            # golang-migrate keeps only the current version: everything up to it is applied.
            current = version_sort_key(entries[0].version)
            keys = {m.sort_key: entries[0] for m in migrations if m.sort_key <= current}
        rows = history.rows()
        local = {m.sort_key for m in migrations}
        report.unknown = [e.version for k, e in keys.items()
                          if k not in local and tool != "golang-migrate" and not e.baseline]
        # Flyway treats versions at or below its baseline as applied: record that baseline as
        # pgshift's own, which counts the files at or below it as applied the same way.
        baseline = max((e for e in entries if e.baseline), key=lambda e: version_sort_key(e.version), default=None)
        if baseline is not None:
            baseline_key = version_sort_key(baseline.version)
            report.baseline = baseline.version
            at = next((m for m in migrations if m.sort_key == baseline_key), None)
            version = at.version if at else baseline.version
            if (row := rows.get(version)) is None or row.status != "baseline":
                history.record(version=version, name=at.name if at else baseline.name or "baseline",
                               kind="versioned", checksum=at.checksum if at else "", status="baseline",
                               source_format=at.source_format if at else "native",
                               note=f"baseline adopted from {tool}: this and older migrations count as applied")
                rows = history.rows()
        for m in migrations:
            if baseline is not None and m.kind == "versioned" and m.sort_key <= version_sort_key(baseline.version) \
                    and (m.sort_key not in keys or keys[m.sort_key].baseline):
                report.below_baseline.append(m.version)
                continue
            if m.sort_key not in keys:
                report.pending.append(m.version)
            elif tool == "flyway" and (edit := _flyway_repeatable_edit(m, keys[m.sort_key])):
                report.pending.append(m.version)
                report.changed.append(m.version)
                report.warnings.append(edit)
            elif (row := rows.get(m.version)) is not None and row.status in ("applied", "baseline"):
                report.already.append(m.version)
            else:
                history.record(version=m.version, name=m.name, kind=m.kind, checksum=m.checksum, status="applied",
                               source_format=m.source_format, note=f"adopted from {tool}")
                report.adopted.append(m.version)
        history.log(None, "adopted", {"tool": tool, "versions": report.adopted, "unknown": report.unknown,
                                      "baseline": report.baseline})
    return report


# Flyway row types under which the SQL file of that version counts as run: run as SQL, or covered by a
# baseline (the marker, or a baseline migration of any kind, which stands for every version up to it).
_FLYWAY_SQL_TYPES = ("SQL", "BASELINE", "SQL_BASELINE", "JDBC_BASELINE", "SCRIPT_BASELINE")


def _refuse_flyway_non_sql(settings: Settings, migrations: list[Migration],
                           keys: dict[tuple[object, ...], ForeignApplied]) -> None:
    """A version Flyway applied as a Java (JDBC) or other non-SQL migration, while the folder holds
    an SQL file of that version: the file is not what ran, so neither adopting it nor running it is
    safe to guess."""
    from pgshift.errors import AdoptError

    clashes = [(m, keys[m.sort_key]) for m in migrations
               if m.kind == "versioned" and m.sort_key in keys and keys[m.sort_key].kind not in _FLYWAY_SQL_TYPES]
    if clashes:
        listed = "; ".join(f"version {e.version} ({e.name!r}) was applied as a {e.kind} migration, but "
                           f"{m.path} is an SQL file of that version" for m, e in clashes)
        raise AdoptError(
            f"Flyway's history and {settings.migrations_path} disagree: {listed}. The SQL file is not what Flyway "
            "ran for that version, so pgshift can neither record it as applied nor run it; nothing was adopted.",
            hint="if the SQL file must still run, give it a new version (rename it); if the Java migration already "
            "did its work, delete the file; then run pgshift adopt again.")


def _flyway_repeatable_edit(m: Migration, entry: ForeignApplied) -> str | None:
    """Why a repeatable migration is pending although Flyway ran it: its file changed since (Flyway
    compares its checksum and re-runs it); None when it is unchanged or cannot be compared."""
    from pgshift.migrations.formats.flyway import flyway_file_checksum

    if m.kind != "repeatable" or entry.checksum is None or m.path is None:
        return None
    try:
        current = flyway_file_checksum(m.path)  # read in pieces: a large file is never held
    except (OSError, UnicodeDecodeError):
        return None  # the loader already reports an unreadable file
    if str(current) == entry.checksum:
        return None
    return (f"{m.path}: the repeatable migration {m.version} changed since Flyway last ran it (Flyway checksum "
            f"{current} now, {entry.checksum} in flyway_schema_history), so it was not adopted: the next "
            "`pgshift migrate` runs it again, as Flyway would.")


def history_events(settings: Settings, limit: int = 100) -> tuple[list[AppliedRow], list[dict[str, Any]]]:
    with open_connection(settings) as conn:
        history = History(conn, settings.history_schema)
        return list(history.rows().values()), history.events(limit)


__all__ = [
    "AdoptReport",
    "BeforeApply", "InitReport", "MigrateReport", "MigrationStatus", "PgshiftError", "RollbackReport", "StatusReport",
    "ValidateReport", "adopt", "baseline", "file_warnings", "history_events", "init", "load", "migrate", "new",
    "rollback", "status", "validate",
]

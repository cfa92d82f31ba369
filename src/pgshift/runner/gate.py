"""What `migrate` checks after taking the deploy lock and before running anything.

1. Lint the pending migrations against the live server's version and table sizes (so a risky
   change to an empty table is a note and the same change to a large one is an error; a table an
   earlier pending migration creates is new and empty unless one fills it); refuse when a finding
   reaches ``lint.fail_level``.
2. Back up first according to ``backup.policy`` (always / destructive-only / never); refuse a
   destructive migration without a recent verified backup unless told otherwise. With a physical
   ``backup.provider`` (pgBackRest) no backup is taken: its recent completed backup is required instead.

``contract`` and ``backfill``, the other commands that change data forward, go through the same
:func:`apply_backup_policy`; ``abort`` and ``rollback``, the ways back, never do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from pgshift.config import Settings
from pgshift.errors import MigrationRefused
from pgshift.lint.model import LintReport, lint_verdict
from pgshift.migrations.model import Migration, OpsMigration, SqlMigration

Notify = Callable[[str], None]


@dataclass
class MigrateChecks:
    """Pass to ``api.migrate(checks=...)``; the CLI does so unless --no-lint / --no-backup."""

    lint: bool = True
    backup: bool = True
    notify: Notify | None = None
    # Filled in as the checks run, for the caller's report.
    findings: list[Any] = field(default_factory=list)
    backup_path: str | None = None


def gate(settings: Settings, checks: MigrateChecks, applied: list[Migration]) -> Callable[
    [psycopg.Connection[Any], list[Migration]], None
]:
    def before_apply(conn: psycopg.Connection[Any], todo: list[Migration]) -> None:
        if not (checks.lint or checks.backup):
            return
        # Lint also tells the backup policy which migrations destroy data, so it runs either way.
        report, judged = _lint(settings, conn, todo, applied)
        if checks.lint:
            checks.findings = report.active
            verdict = lint_verdict(report, settings.lint.fail_level)  # as `check` and `lint` judge it
            if verdict.failed:
                count = len(verdict.blocking) + len(verdict.parse_errors)
                raise MigrationRefused(
                    f"Refusing to migrate: lint found {count} problem(s) at or above "
                    f"'{settings.lint.fail_level}': {verdict.describe()}. Nothing was run.",
                    hint="run `pgshift lint` for the safe rewrite of each, suppress a finding with "
                    "`-- pgshift:ignore <rule> -- <reason>`, or pass --no-lint.",
                )
            for f in report.active:
                _say(checks, f"lint {f.severity}: {f.file}:{f.line}: {f.rule} {f.message}")
        if checks.backup:
            judge = LintDrops(judged)
            apply_backup_policy(settings, todo, lambda m: m.is_destructive(m.forward, judge), checks,
                                describe=lambda m: m.label, conn=conn)

    return before_apply


class LintDrops:
    """`migrate`'s judge of data loss (pgshift.migrations.model.DataLossJudge): a SQL migration's destructive
    lint findings, suppressed ones too (a suppression silences the warning, not the data loss). An operations
    migration's expand drops nothing; its contract is judged by `pgshift contract`."""

    def __init__(self, report: LintReport) -> None:
        self.report = report

    def sql_drops(self, migration: SqlMigration) -> bool:
        return self.report.has_destructive(migration.version)

    def contract_drops(self, migration: OpsMigration) -> list[str]:
        return []


def _say(checks: MigrateChecks, message: str) -> None:
    if checks.notify:
        checks.notify(message)


def _lint(settings: Settings, conn: psycopg.Connection[Any], todo: list[Migration],
          applied: list[Migration]) -> tuple[LintReport, LintReport]:
    """(the report lint's verdict and output judge, the report data loss is judged by). The second runs the
    destructive rules even when lint.enable / lint.disable leave them out: turning a rule's warning off
    must not turn backup.policy off for the data that statement drops."""
    import dataclasses

    from pgshift.lint.context import runner_timeouts
    from pgshift.lint.engine import rule_selected
    from pgshift.lint.live import lint_pending, starting_schema
    from pgshift.lint.registry import all_rules

    chosen = settings.lint
    left_out = [r for r in all_rules() if r.destructive and not rule_selected(r, chosen)]
    if left_out:
        names = {n for r in left_out for n in (r.id.lower(), r.name)}
        chosen = dataclasses.replace(
            chosen, enable=[*chosen.enable, *(r.id for r in left_out)] if chosen.enable else [],
            disable=[d for d in chosen.disable if d.lower() not in names])
    judged = lint_pending(conn, chosen, todo, applied, history_schema=settings.history_schema,
                          schema=starting_schema(settings), runner_sets=runner_timeouts(settings))
    off = {r.id for r in left_out}
    shown = dataclasses.replace(judged, findings=[f for f in judged.findings if f.rule not in off])
    return shown, judged


Change = TypeVar("Change")


def apply_backup_policy(settings: Settings, todo: Sequence[Change], destructive: Callable[[Change], bool],
                        checks: MigrateChecks, action: str = "migrate", *, describe: Callable[[Change], str],
                        conn: psycopg.Connection[Any] | None = None) -> None:
    """backup.policy before ``action``, a command changing data forward (migrate's migrations, a contract, a
    backfill): take a verified backup (``always``; ``destructive-only`` when a change is ``destructive``), or
    refuse a destructive change without a recent one (this database's, in backup.directory or, with ``conn``,
    recorded in its ledger wherever it was written)."""
    from pgshift.safety.backup import backup_required, latest_verified_backup, take_backup

    if settings.backup.provider != "pg_dump":
        _require_provided_backup(settings, todo, destructive, checks, action, describe, conn)
        return
    if backup_required(settings.backup.policy, todo, destructive):
        _say(checks, f"taking a backup first (backup.policy = {settings.backup.policy})")
        result = take_backup(settings, settings.deploy_url)  # pg_dump's session must not be pooled either
        checks.backup_path = str(result.backup.path)
        _say(checks, f"backup verified: {result.backup.path}")
        return
    risky = [describe(m) for m in todo if destructive(m)]
    if risky and latest_verified_backup(settings, settings.backup.max_age, conn=conn) is None:
        raise MigrationRefused(
            f"Refusing to {action}: {', '.join(risky)} drops or truncates data, backup.policy is "
            f"{settings.backup.policy!r} and there is no verified backup of this database newer than "
            f"{settings.backup.max_age} in {settings.resolve(settings.backup.directory)} or recorded in the "
            "history ledger. Nothing was run.",
            hint="run `pgshift backup` first, set backup.policy = \"destructive-only\", or pass --no-backup "
            "to accept the risk.",
        )


def _require_provided_backup(settings: Settings, todo: Sequence[Change], destructive: Callable[[Change], bool],
                             checks: MigrateChecks, action: str, describe: Callable[[Change], str],
                             conn: psycopg.Connection[Any] | None) -> None:
    """backup.policy when a physical backup system (backup.provider) takes the backups: pgshift takes none, it
    requires the system's completed backup within backup.max_age wherever it would take or require one."""
    from pgshift.safety.backup import backup_required
    from pgshift.safety.providers import require_recent_backup

    risky = [describe(m) for m in todo if destructive(m)]
    if risky:
        reason = f"{', '.join(risky)} drops or truncates data"
    elif backup_required(settings.backup.policy, todo, destructive):
        reason = f"backup.policy = {settings.backup.policy!r} asks for a backup before every change"
    else:
        return
    found = require_recent_backup(settings, conn, action=action, reason=reason, notify=checks.notify)
    checks.backup_path = found.reference

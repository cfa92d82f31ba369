"""`pgshift rehearse --targets FILE`: the rehearsal (pgshift.rehearsal: migrate, roll back and
re-apply on a clone) of every target, canary first, ``targets.parallel`` at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pgshift.config import Settings
from pgshift.errors import UsageError
from pgshift.fleet import Events, FleetReport, Outcome, Target, read_targets, rollout
from pgshift.rehearsal import RehearsalOptions, rehearse


def rehearse_targets(settings: Settings, targets_file: str | Path, options: RehearsalOptions | None = None, *,
                     events: Events | None = None) -> FleetReport:
    """A rehearsal per target; a target whose verdict is fail is failed, and stops the rollout as a
    failed migrate would (targets.canary, targets.max_failures). Each rehearsal runs on its own
    clone, beside its database on the same server: ``parallel`` targets on one server are
    ``parallel`` clones there at once."""
    options = options or RehearsalOptions()
    if options.from_backup is not None:
        raise UsageError("--from-backup cannot be combined with --targets: the archive is one database's.",
                         hint="rehearse that target alone with `pgshift rehearse --from-backup PATH --database-url "
                         "URL`.")
    targets = read_targets(settings, targets_file)
    settings.migrations_path  # noqa: B018 - a missing or ambiguous folder fails once, before any target

    def one(target_settings: Settings, _target: Target, notify: Callable[[str], None]) -> Outcome:
        report = rehearse(target_settings, options, notify=notify)
        reasons = "; ".join(r.message for r in report.reasons) or None
        return Outcome("passed" if report.passed else "failed", applied=len(report.pending), failed=not report.passed,
                       error=reasons, report=report)

    report = rollout(settings, targets, one, command="rehearse", events=events)
    report.changes = False  # a rehearsal changes clones only: a rerun rehearses every target again
    return report

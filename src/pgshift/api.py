"""The Python API: the public facade, and the only pgshift module the CLI imports. No global state.

Every command a user can run is here as a function that takes a :class:`pgshift.config.Settings`
(+ options) and returns a report dataclass; errors are :class:`pgshift.errors.PgshiftError`
subclasses. The report and option types are here too::

    from pgshift import api
    outcome = api.lint(settings, ["migrations"], api.LintOptions(fail_level="warning"))
    report = api.migrate(settings)

This module only re-exports (see docs/architecture.md): the workflows live in :mod:`pgshift.deploy`,
the other commands in the layer that has what they need. Names load on first use, so
``pgshift lint`` does not pay for the database driver and ``pgshift migrate`` not for the linter.
Nothing inside pgshift imports this module except the CLI, so it can never be part of an import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (module, name there)
_EXPORTS: dict[str, tuple[str, str]] = {}


def _export(module: str, *names: str, **renamed: str) -> None:
    _EXPORTS.update({name: (module, name) for name in names})
    _EXPORTS.update({name: (module, original) for name, original in renamed.items()})


# the deploy workflows: init, new, status, validate, migrate, rollback, baseline, adopt, history
_export("pgshift.deploy", "CONFIG_TEMPLATE", "AdoptReport", "BeforeApply", "DryRunStep", "InitReport", "Interruption",
        "MigrateReport", "MigrationStatus", "Notify", "RollbackReport", "StatusReport", "ValidateReport", "adopt",
        "baseline", "file_warnings", "history_events", "init", "migrate", "new", "refuse_unusable", "rollback",
        "status", "validate")
_export("pgshift.db.session", "deploy_session", "load", "open_connection")
_export("pgshift.db.masking", "mask_password")
_export("pgshift.errors", "PgshiftError")
_export("pgshift.migrations.model", "Migration", "OpsMigration", "SqlMigration")
_export("pgshift.runner.execute", "StatementObserver", "StepResult")
_export("pgshift.runner.gate", "MigrateChecks")
# lint
_export("pgshift.lint.paths", "LintOptions", "LintOutcome", "lint_fix", lint="lint_paths")
_export("pgshift.lint.model", "Finding", "LintReport")
_export("pgshift.lint.fix", "FixResult")
_export("pgshift.lint.reporters", LINT_OUTPUT_FORMATS="FORMATS", render_lint="render")
# backups, restore, the checklist
_export("pgshift.safety.commands", "BackupListing", "Confirm", "backup", "list_backups", "restore_database",
        "restore_table", "verify_backup")
_export("pgshift.safety.backup", "Backup", "BackupResult", "Incomplete", BackupProgress="ProgressFn")
_export("pgshift.safety.catalog", "latest_backup", "resolve_backup")
_export("pgshift.safety.verify", "VerifyReport")
_export("pgshift.safety.restore", "RestoreReport", "TableRestoreReport")
_export("pgshift.safety.checks", "CheckResult", "Checklist", "Thresholds", "check")
# zero-downtime operations: contract, abort, backfill
_export("pgshift.ops.service", "abort", "backfill", "contract")
_export("pgshift.ops.phases", "PhaseResult")
_export("pgshift.runner.backfill", "DEFAULT_LAG_QUERY", "BackfillOptions", "BackfillResult", "BackfillSpec",
        BackfillProgress="Progress", BackfillProgressCallback="ProgressCallback",
        backfill_progress_json="progress_json")
_export("pgshift.ops.backfill_options", "backfill_options", "backfill_spec")
# rehearsal
_export("pgshift.rehearsal", "RehearsalOptions", "RehearsalReport", "rehearse", "render_html", "require_pass",
        "to_json")
_export("pgshift.rehearsal.workload", workload_error_text="error_text")
# many databases: --targets FILE
_export("pgshift.fleet", "FleetFailed", "FleetReport", "Target", "TargetResult", "check_targets", "migrate_targets",
        "read_targets", "status_targets", FleetEvents="Events", FleetOutcome="Outcome", FleetWork="Work",
        fleet_rollout="rollout")
_export("pgshift.fleet.deploy", "FleetDeployFailed", "FleetDeployReport", "deploy_targets")
_export("pgshift.fleet.rehearse", "rehearse_targets")
_export("pgshift.fleet.html", "render_fleet_html")
# a local server, the demo
_export("pgshift.embedded", "EmbeddedCluster")
_export("pgshift.demo", "run_demo")
# the deployment flow
_export("pgshift.rollout", "DeployError", "DeployReport", "RunbookStep", "StepRecord", "deploy", "migrate_watched",
        deploy_plan="plan", render_deploy_html="render_html")
_export("pgshift.ops.service", "SoakNotOver")
# streaming standbys: who streams from the server, waiting until they replayed (migrate.wait_for_standbys)
_export("pgshift.db.standbys", "Standby", "StandbysNotReplayed", "standbys", "wait_for_replay")
# monitoring
_export("pgshift.watch", "WatchBreached", "WatchReport", "Watcher", "watch_flags", WatchSample="Sample",
        watch_json_line="json_line")

if TYPE_CHECKING:  # the same names, for type checkers (kept in step with _EXPORTS by tests/unit/test_architecture.py)
    from pgshift.db.masking import mask_password
    from pgshift.db.session import deploy_session, load, open_connection
    from pgshift.db.standbys import Standby, StandbysNotReplayed, standbys, wait_for_replay
    from pgshift.demo import run_demo
    from pgshift.deploy import (
        CONFIG_TEMPLATE,
        AdoptReport,
        BeforeApply,
        DryRunStep,
        InitReport,
        Interruption,
        MigrateReport,
        MigrationStatus,
        Notify,
        RollbackReport,
        StatusReport,
        ValidateReport,
        adopt,
        baseline,
        file_warnings,
        history_events,
        init,
        migrate,
        new,
        refuse_unusable,
        rollback,
        status,
        validate,
    )
    from pgshift.embedded import EmbeddedCluster
    from pgshift.errors import PgshiftError
    from pgshift.fleet import Events as FleetEvents
    from pgshift.fleet import (
        FleetFailed,
        FleetReport,
        Target,
        TargetResult,
        check_targets,
        migrate_targets,
        read_targets,
        status_targets,
    )
    from pgshift.fleet import Outcome as FleetOutcome
    from pgshift.fleet import Work as FleetWork
    from pgshift.fleet import rollout as fleet_rollout
    from pgshift.fleet.deploy import FleetDeployFailed, FleetDeployReport, deploy_targets
    from pgshift.fleet.html import render_fleet_html
    from pgshift.fleet.rehearse import rehearse_targets
    from pgshift.lint.fix import FixResult
    from pgshift.lint.model import Finding, LintReport
    from pgshift.lint.paths import LintOptions, LintOutcome, lint_fix
    from pgshift.lint.paths import lint_paths as lint
    from pgshift.lint.reporters import FORMATS as LINT_OUTPUT_FORMATS
    from pgshift.lint.reporters import render as render_lint
    from pgshift.migrations.model import Migration, OpsMigration, SqlMigration
    from pgshift.ops.backfill_options import backfill_options, backfill_spec
    from pgshift.ops.phases import PhaseResult
    from pgshift.ops.service import SoakNotOver, abort, backfill, contract
    from pgshift.rehearsal import RehearsalOptions, RehearsalReport, rehearse, render_html, require_pass, to_json
    from pgshift.rehearsal.workload import error_text as workload_error_text
    from pgshift.rollout import DeployError, DeployReport, RunbookStep, StepRecord, deploy, migrate_watched
    from pgshift.rollout import plan as deploy_plan
    from pgshift.rollout import render_html as render_deploy_html
    from pgshift.runner.backfill import (
        DEFAULT_LAG_QUERY,
        BackfillOptions,
        BackfillResult,
        BackfillSpec,
    )
    from pgshift.runner.backfill import Progress as BackfillProgress
    from pgshift.runner.backfill import ProgressCallback as BackfillProgressCallback
    from pgshift.runner.backfill import progress_json as backfill_progress_json
    from pgshift.runner.execute import StatementObserver, StepResult
    from pgshift.runner.gate import MigrateChecks
    from pgshift.safety.backup import Backup, BackupResult, Incomplete
    from pgshift.safety.backup import ProgressFn as BackupProgress
    from pgshift.safety.catalog import latest_backup, resolve_backup
    from pgshift.safety.checks import Checklist, CheckResult, Thresholds, check
    from pgshift.safety.commands import (
        BackupListing,
        Confirm,
        backup,
        list_backups,
        restore_database,
        restore_table,
        verify_backup,
    )
    from pgshift.safety.restore import RestoreReport, TableRestoreReport
    from pgshift.safety.verify import VerifyReport
    from pgshift.watch import Sample as WatchSample
    from pgshift.watch import WatchBreached, Watcher, WatchReport, watch_flags
    from pgshift.watch import json_line as watch_json_line

__all__ = [
    "CONFIG_TEMPLATE", "DEFAULT_LAG_QUERY", "LINT_OUTPUT_FORMATS", "AdoptReport", "BackfillOptions", "BackfillProgress",
    "BackfillProgressCallback", "BackfillResult", "BackfillSpec", "Backup", "BackupListing", "BackupProgress",
    "BackupResult", "BeforeApply", "CheckResult", "Checklist", "Confirm", "DeployError", "DeployReport", "DryRunStep",
    "EmbeddedCluster", "Finding", "FixResult", "FleetDeployFailed", "FleetDeployReport", "FleetEvents", "FleetFailed",
    "FleetOutcome", "FleetReport", "FleetWork", "Incomplete", "InitReport", "Interruption", "LintOptions",
    "LintOutcome", "LintReport", "MigrateChecks", "MigrateReport", "Migration", "MigrationStatus", "Notify",
    "OpsMigration", "PgshiftError", "PhaseResult", "RehearsalOptions", "RehearsalReport", "RestoreReport",
    "RollbackReport", "RunbookStep", "SoakNotOver", "SqlMigration", "Standby", "StandbysNotReplayed",
    "StatementObserver", "StatusReport", "StepRecord", "StepResult", "TableRestoreReport", "Target", "TargetResult",
    "Thresholds", "ValidateReport", "VerifyReport", "WatchBreached", "WatchReport", "WatchSample", "Watcher", "abort",
    "adopt", "backfill", "backfill_options", "backfill_progress_json", "backfill_spec", "backup", "baseline", "check",
    "check_targets", "contract", "deploy", "deploy_plan", "deploy_session", "deploy_targets", "file_warnings",
    "fleet_rollout", "history_events", "init", "latest_backup", "lint", "lint_fix", "list_backups", "load",
    "mask_password", "migrate", "migrate_targets", "migrate_watched", "new", "open_connection", "read_targets",
    "refuse_unusable", "rehearse", "rehearse_targets", "render_deploy_html", "render_fleet_html", "render_html",
    "render_lint", "require_pass", "resolve_backup", "restore_database", "restore_table", "rollback", "run_demo",
    "standbys", "status", "status_targets", "to_json", "validate", "verify_backup", "wait_for_replay", "watch_flags",
    "watch_json_line", "workload_error_text",
]


def __getattr__(name: str) -> Any:
    try:
        module, original = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), original)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

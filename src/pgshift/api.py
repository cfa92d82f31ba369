"""The Python API: the public facade that the CLI wraps. No global state.

Every function takes a :class:`pgshift.config.Settings` and returns a report dataclass; errors
are :class:`pgshift.errors.PgshiftError` subclasses.

This module only re-exports: the workflows live in :mod:`pgshift.deploy` and the connection and
session helpers in :mod:`pgshift.db.session` (see docs/architecture.md). Nothing inside pgshift
imports this module except the CLI, so it can never be part of an import cycle.
"""

from __future__ import annotations

from pgshift.db.session import deploy_session, load, open_connection
from pgshift.deploy import (
    CONFIG_TEMPLATE,
    AdoptReport,
    BeforeApply,
    DryRunStep,
    InitReport,
    Interruption,
    MigrateReport,
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
from pgshift.errors import PgshiftError
from pgshift.runner.execute import StatementObserver, StepResult
from pgshift.runner.gate import MigrateChecks
from pgshift.watch import Sample as WatchSample
from pgshift.watch import WatchBreached, Watcher, WatchReport
from pgshift.watch import json_line as watch_json_line


def json_dumps(data: object) -> str:
    """One compact JSON line (the watch's summary after its samples)."""
    import json

    return json.dumps(data, separators=(",", ":"))

__all__ = [
    "CONFIG_TEMPLATE",
    "AdoptReport",
    "BeforeApply",
    "DryRunStep",
    "InitReport",
    "Interruption",
    "MigrateChecks",
    "MigrateReport",
    "Notify",
    "PgshiftError",
    "RollbackReport",
    "StatementObserver",
    "StatusReport",
    "StepResult",
    "ValidateReport",
    "WatchBreached",
    "WatchReport",
    "WatchSample",
    "Watcher",
    "adopt",
    "baseline",
    "deploy_session",
    "file_warnings",
    "history_events",
    "init",
    "json_dumps",
    "load",
    "migrate",
    "new",
    "open_connection",
    "refuse_unusable",
    "rollback",
    "status",
    "validate",
    "watch_json_line",
]

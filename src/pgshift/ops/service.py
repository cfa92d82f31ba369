"""Library entry points for the ops commands (the CLI in pgshift.cli.ops_cmds is a thin layer)."""

from __future__ import annotations

from collections.abc import Callable

from pgshift.config import Settings
from pgshift.ops.backfill import Backfiller, BackfillOptions, BackfillResult, BackfillSpec, ProgressCallback, reset_job

Notify = Callable[[str], None]


def backfill(settings: Settings, spec: BackfillSpec, options: BackfillOptions | None = None, *,
             progress: ProgressCallback | None = None, notify: Notify | None = None,
             restart: bool = False) -> BackfillResult:
    """Run (or resume) a data backfill under the deploy lock; progress lives in the ledger schema."""
    from pgshift.api import deploy_session

    with deploy_session(settings) as (conn, history):
        if restart:
            reset_job(conn, settings.history_schema, spec.job_name)
        result = Backfiller(conn, settings.history_schema, spec, options, progress, notify).run()
        history.log(spec.version, "backfill", {
            "job": result.job, "table": result.table, "rows": result.rows, "rows_this_run": result.rows_this_run,
            "batches": result.batches, "max_batch_ms": round(result.max_batch_ms, 1), "resumed": result.resumed,
        })
        return result

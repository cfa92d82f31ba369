"""The rehearsal report as JSON (schema in docs/rehearsal.md; ``version`` changes when it does)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pgshift.rehearsal.model import REPORT_VERSION, RehearsalReport


def to_json(report: RehearsalReport, *, samples: bool = True) -> dict[str, Any]:
    options = report.options
    clone = report.clone
    workload: dict[str, Any] | None = None
    if report.workload is not None:
        workload = {"rate": report.workload.rate, "threads": report.workload.threads,
                    "tables": report.workload.tables, **report.workload.summary()}
        if samples:
            workload["samples"] = [[round(s.start, 4), round(s.latency_ms, 3), s.kind, s.error]
                                   for s in report.workload.samples]
    schema = report.schema
    return {
        "version": REPORT_VERSION,
        "verdict": report.verdict,
        "reasons": [r.as_dict() for r in report.reasons],
        "warnings": report.warnings,
        "source": report.source,
        "clone": None if clone is None else {
            "name": clone.name, "method": clone.method, "duration_s": round(clone.duration_s, 3),
            "kept": report.kept, "note": clone.note},
        "started_at": report.started_at,
        "duration_s": round(report.duration_s, 3),
        "budget": {"stall_ms": options.stall_budget_ms, "large_table_rows": options.large_table_rows,
                   "large_table_bytes": options.large_table_bytes},
        "pending": report.pending,
        "phases": {name: {"start_s": round(a, 4), "end_s": round(b, 4)} for name, (a, b) in report.phases.items()},
        "statements": [s.as_dict() for s in report.statements],
        "workload": workload,
        "test": None if report.test is None else asdict(report.test),
        "schema": {
            "before": schema.before, "after_up": schema.after_up, "after_down": schema.after_down,
            "after_up_again": schema.after_up_again, "reversibility": schema.reversibility,
            "migration_changes": [c.as_dict() for c in schema.migration_changes],
            "down_diff": [c.as_dict() for c in schema.down_diff],
            "up_again_diff": [c.as_dict() for c in schema.up_again_diff],
        },
    }

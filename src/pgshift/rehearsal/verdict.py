"""Pass or fail, with one reason per problem found."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgshift.rehearsal.model import Reason as Reason
from pgshift.rehearsal.workload import error_text

if TYPE_CHECKING:
    from pgshift.rehearsal.model import RehearsalReport
    from pgshift.rehearsal.recorder import StatementRecord


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _stall(record: StatementRecord, code: str, prefix: str, measured: bool, budget: float) -> list[Reason]:
    """A stall over budget: seen by the workload when it ran, else inferred from the locks held."""
    if measured and record.worst_latency_ms is not None and record.worst_latency_ms > budget:
        return [Reason(code, (
            f"{prefix}{record.where}: {record.sql} stalled the workload for {record.worst_latency_ms:.0f} ms "
            f"(budget {budget} ms) while holding "
            + (", ".join(f"{lk.mode} on {lk.relation}" for lk in record.blocking_locks) or "its locks")
            + "."), record.where)]
    if not measured and record.blocking_locks and record.duration_ms > budget:
        held = ", ".join(f"{lk.mode} on {lk.relation} (blocks {lk.blocks})" for lk in record.blocking_locks)
        return [Reason(code, (
            f"{prefix}{record.where}: {record.sql} held {held} for {record.duration_ms:.0f} ms "
            f"(budget {budget} ms); traffic would wait that long."), record.where)]
    return []


def judge(report: RehearsalReport) -> list[Reason]:
    large_rows = report.options.large_table_rows or 0
    reasons = list(report.reasons)  # failures recorded while running (migration, down, up-again)
    budget = report.options.stall_budget_ms
    measured = report.workload is not None and bool(report.workload.samples)
    for record in (r for r in report.statements if r.phase == "up"):
        reasons.extend(_stall(record, "stall", "", measured, budget))
        if measured and record.workload_errors:
            errors = "; ".join(error_text(e) for e in record.workload_error_messages)
            reasons.append(Reason("workload-errors", (
                f"{record.where}: {record.workload_errors} workload queries failed because of {record.sql}: "
                f"{errors}."), record.where))
        for rewrite in record.rewrites:
            if rewrite.rows >= large_rows or rewrite.size_bytes >= report.options.large_table_bytes:
                reasons.append(Reason("rewrite", (
                    f"{record.where}: {record.sql} rewrote {rewrite.table} ({rewrite.rows} rows, "
                    f"{size_text(rewrite.size_bytes)}) under an exclusive lock; on production that blocks the "
                    "table for the whole copy."), record.where))
    for record in (r for r in report.statements if r.phase == "down"):  # the rollback, under the same traffic
        reasons.extend(_stall(record, "rollback-stall", "On rollback, ", measured, budget))
    for record in (r for r in report.statements if r.phase == "contract"):  # an operations migration's finish
        reasons.extend(_stall(record, "contract-stall", "On contract, ", measured, budget))
    if report.schema.reversibility == "differs":
        lines = "; ".join(c.line() for c in report.schema.down_diff[:10])
        reasons.append(Reason("down-schema", f"The down parts do not restore the schema: {lines}"))
    if report.schema.up_again_diff:
        lines = "; ".join(c.line() for c in report.schema.up_again_diff[:10])
        reasons.append(Reason("up-again-schema", f"Applying again after the rollback gives another schema: {lines}"))
    if report.test is not None and report.test.exit_code != 0:
        reasons.append(Reason("test-failed", (
            f"The test command {report.test.command!r} "
            + (f"exited with {report.test.exit_code}." if report.test.exit_code is not None
               else report.test.output_tail))))
    return reasons

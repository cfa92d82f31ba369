"""The verdict's own rules: applying again after the rollback must give the same schema, and workload
queries that failed while a statement ran fail the rehearsal. One end-to-end case on a real clone; the
rest call judge() on a report built in the test, so each rule is checked without timing luck."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgshift.config import Settings
from pgshift.rehearsal import RehearsalOptions, rehearse
from pgshift.rehearsal.catalog import Change
from pgshift.rehearsal.model import RehearsalReport, WorkloadReport
from pgshift.rehearsal.model import TestRun as CommandRun  # not a pytest class
from pgshift.rehearsal.recorder import LockRecord, Rewrite, StatementRecord
from pgshift.rehearsal.verdict import judge, size_text
from pgshift.rehearsal.workload import Clock, Sample, Workload, mark_own_errors

Conn = psycopg.Connection[tuple[object, ...]]
MakeSettings = Callable[[dict[str, str]], Settings]

# The up part builds one index or another depending on the row count, and inserts a row the down part
# keeps: the rollback restores the schema, but applying again builds the other index.
DATA_DEPENDENT = {
    "1_idx.sql": "-- pgshift:up\n"
                 "DO $$ BEGIN IF (SELECT count(*) FROM items) > 600 THEN CREATE INDEX items_qty_idx ON items (qty); "
                 "ELSE CREATE INDEX items_name_idx ON items (name); END IF; END $$;\n"
                 "INSERT INTO items (name) VALUES ('added by the migration');\n"
                 "-- pgshift:down\nDROP INDEX IF EXISTS items_qty_idx;\nDROP INDEX IF EXISTS items_name_idx;\n",
}


def test_an_up_part_that_builds_another_schema_the_second_time_fails(
        source: Conn, settings_for: MakeSettings) -> None:
    report = rehearse(settings_for(DATA_DEPENDENT))
    assert report.schema.reversibility == "restored"  # the down part alone is fine
    assert report.schema.after_up_again != report.schema.after_up
    assert report.verdict == "fail"
    assert [r.code for r in report.reasons] == ["up-again-schema"]
    assert "public.items_qty_idx" in report.reasons[0].message and "public.items_name_idx" in report.reasons[0].message


def _report(*, samples: list[Sample] | None = None, errors: int = 0,
            up_again_diff: list[Change] | None = None) -> RehearsalReport:
    record = StatementRecord(phase="up", version="1", migration="1_x.sql", where="1_x.sql:2:1",
                             sql="ALTER TABLE items ADD COLUMN note text", start=1.0, end=1.01,
                             workload_queries=len(samples or []), workload_errors=errors, worst_latency_ms=1.0)
    report = RehearsalReport(source="db", clone=None, kept=False, started_at="", options=RehearsalOptions(),
                             statements=[record])
    if samples is not None:
        report.workload = WorkloadReport(rate=50, threads=1, tables=["public.items"], samples=samples)
    report.schema.up_again_diff = up_again_diff or []
    return report


def test_an_up_again_difference_is_a_reason_naming_the_change() -> None:
    change = Change("index", "public.items_qty_idx", "added", None, "CREATE INDEX items_qty_idx ON items (qty)")
    reasons = judge(_report(up_again_diff=[change]))
    assert [r.code for r in reasons] == ["up-again-schema"]
    assert "public.items_qty_idx" in reasons[0].message
    assert judge(_report(up_again_diff=[])) == []


def test_workload_errors_while_a_statement_ran_fail_it() -> None:
    samples = [Sample(1.0, 1.001, "read", "public.items"), Sample(1.0, 1.002, "update", "public.items", "boom")]
    reasons = judge(_report(samples=samples, errors=1))
    assert [(r.code, r.statement) for r in reasons] == [("workload-errors", "1_x.sql:2:1")]
    assert "1 workload queries failed" in reasons[0].message
    assert judge(_report(samples=samples, errors=0)) == []


def _record(phase: str = "up", *, ms: float = 10.0, worst: float | None = None,
            locks: tuple[str, ...] = ("ACCESS EXCLUSIVE",), rewrites: list[Rewrite] | None = None) -> StatementRecord:
    return StatementRecord(phase=phase, version="1", migration="1_x.sql", where="1_x.sql:2:1", sql="ALTER TABLE items",
                           start=0.0, end=ms / 1000, worst_latency_ms=worst, rewrites=rewrites or [],
                           locks=[LockRecord("public.items", "table", mode, True) for mode in locks])


def _judge(*records: StatementRecord, measured: bool = False, **options: Any) -> list[tuple[str, str]]:
    report = RehearsalReport(source="db", clone=None, kept=False, started_at="",
                             options=RehearsalOptions(**{"large_table_rows": 1000, **options}),
                             statements=list(records))
    if measured:
        report.workload = WorkloadReport(rate=50, threads=1, tables=[], samples=[Sample(1.0, 1.001, "read", "t")])
    return [(r.code, r.message) for r in judge(report)]


def test_a_measured_stall_counts_only_above_the_budget_and_names_the_locks() -> None:
    assert _judge(_record(worst=200.0), measured=True, stall_budget_ms=200) == []
    [(code, message)] = _judge(_record(worst=201.0), measured=True, stall_budget_ms=200)
    assert code == "stall" and "stalled the workload for 201 ms (budget 200 ms)" in message
    assert "ACCESS EXCLUSIVE on public.items." in message
    [(_, message)] = _judge(_record(worst=201.0, locks=()), measured=True, stall_budget_ms=200)
    assert message.endswith("while holding its locks.")
    # Measured: the workload's latency decides, not how long the lock was held.
    assert _judge(_record(ms=5000, worst=1.0), measured=True, stall_budget_ms=200) == []


def test_an_unmeasured_stall_is_inferred_from_a_blocking_lock_held_past_the_budget() -> None:
    assert _judge(_record(ms=200), stall_budget_ms=200) == []  # at the budget is within it
    [(code, message)] = _judge(_record(ms=450), stall_budget_ms=200)
    assert code == "stall" and "held ACCESS EXCLUSIVE on public.items (blocks reads and writes) for 450 ms" in message
    assert _judge(_record(ms=450, locks=("ACCESS SHARE",)), stall_budget_ms=200) == []  # blocks no traffic
    [(code, message)] = _judge(_record("down", ms=450), stall_budget_ms=200)
    assert code == "rollback-stall" and message.startswith("On rollback, 1_x.sql:2:1:")
    [(code, message)] = _judge(_record("contract", ms=450), stall_budget_ms=200)  # an operations migration's finish
    assert code == "contract-stall" and message.startswith("On contract, 1_x.sql:2:1:")
    assert _judge(_record("up-again", ms=450), stall_budget_ms=200) == []  # judged by the schema comparison


def test_a_rewrite_fails_from_the_large_table_threshold_on() -> None:
    small, large = Rewrite("public.items", 10, 999), Rewrite("public.items", 10, 1000)
    assert _judge(_record(rewrites=[small])) == []
    [(code, message)] = _judge(_record(rewrites=[large]))
    assert code == "rewrite" and "rewrote public.items (1000 rows, 10 B)" in message
    big = Rewrite("public.items", 2048, 1)
    assert _judge(_record(rewrites=[big]), large_table_bytes=2049) == []
    assert [c for c, _ in _judge(_record(rewrites=[big]), large_table_bytes=2048)] == ["rewrite"]
    # --large-table-rows 0 (allowed): every rewrite fails, an empty table's too.
    assert [c for c, _ in _judge(_record(rewrites=[Rewrite("public.items", 0, 0)]), large_table_rows=0)] == ["rewrite"]


def test_a_down_schema_difference_and_a_failed_test_command_are_reasons() -> None:
    report = _report()
    report.schema.reversibility = "differs"
    report.schema.down_diff = [Change("index", "public.i", "added", None, "CREATE INDEX i")]
    report.test = CommandRun("make check", 2, 1.0, "")
    assert [(r.code, r.message) for r in judge(report)] == [
        ("down-schema", "The down parts do not restore the schema: + index public.i: CREATE INDEX i"),
        ("test-failed", "The test command 'make check' exited with 2.")]
    report.test = CommandRun("make check", None, 1.0, "timed out after 5s")
    assert judge(report)[-1].message == "The test command 'make check' timed out after 5s"
    report.test = CommandRun("make check", 0, 1.0, "")
    report.schema.reversibility = "restored"
    assert judge(report) == []


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 kB"), (1536, "1.5 kB"),
                                            (1024**2, "1.0 MB"), (1024**3, "1.0 GB"), (5 * 1024**4, "5120.0 GB")])
def test_size_text(size: int, text: str) -> None:
    assert size_text(size) == text


def test_a_schema_reason_lists_the_first_ten_changes() -> None:
    changes = [Change("index", f"public.i{n:02}", "added", None, "x") for n in range(12)]
    report = _report(up_again_diff=changes)
    report.schema.reversibility, report.schema.down_diff = "differs", changes
    for reason in judge(report):
        assert "public.i09" in reason.message and "public.i10" not in reason.message, reason


def test_workload_samples_are_not_walked_by_the_garbage_collector() -> None:
    """A full collection walks every tracked object with the GIL held, and a rehearsal keeps every
    query's sample: tracked, 160,000 of them made a 200-340 ms pause that each query in flight then
    reported as a stall. While the workload runs they are plain tuples, untracked after a collection."""
    import gc

    workload = Workload(url="", targets=[], rate=1, clock=Clock())
    workload.record(1.0, 1.001, "read", "public.items")
    workload.record(1.0, 1.002, "insert", "t", "23505 dup", "23505")
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in workload._recorded)
    samples = workload.samples
    mark_own_errors(samples, migration_start=0.5)
    assert samples[1].own and not samples[0].own  # the insert's integrity error is the workload's own
    assert samples[0].latency_ms == pytest.approx(1.0)

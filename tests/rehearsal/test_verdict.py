"""The verdict's own rules: applying again after the rollback must give the same schema, and workload
queries that failed while a statement ran fail the rehearsal. One end-to-end case on a real clone; the
rest call judge() on a report built in the test, so each rule is checked without timing luck."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from pgshift.config import Settings
from pgshift.rehearsal import RehearsalOptions, rehearse
from pgshift.rehearsal.catalog import Change
from pgshift.rehearsal.recorder import StatementRecord
from pgshift.rehearsal.run import RehearsalReport, WorkloadReport
from pgshift.rehearsal.verdict import judge
from pgshift.rehearsal.workload import Sample

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

"""PS030 index-on-partitioned-table."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    table = relname(ctx.body.get("relation"))
    known = ctx.table(table)
    if known is None or not known.partitioned or not ctx.body.get("relation", {}).get("inh"):
        return
    verb = "fails: CONCURRENTLY is not supported on a partitioned table" if ctx.body.get("concurrent") else (
        "builds the index on every partition while holding SHARE locks on all of them")
    yield Hit(f"CREATE INDEX on the partitioned table {table} {verb}.", table=table, severity="error",
              fix=(f"CREATE INDEX idx ON ONLY {table} (...);  -- invalid parent index, instant\n"
                   "CREATE INDEX CONCURRENTLY idx_p1 ON <partition> (...);  -- per partition, no transaction\n"
                   "ALTER INDEX idx ATTACH PARTITION idx_p1;  -- the parent becomes valid after the last one"))


RULE = Rule(
    id="PS030", name="index-on-partitioned-table",
    summary="CREATE INDEX on a partitioned parent locks every partition; CONCURRENTLY is not supported there.",
    lock="SHARE", blocks=("writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="CREATE INDEX measurements_ts_idx ON measurements (ts);",
    good="CREATE INDEX measurements_ts_idx ON ONLY measurements (ts);",
    safe="CREATE INDEX ON ONLY the parent, CREATE INDEX CONCURRENTLY on each partition, ALTER INDEX ... ATTACH "
    "PARTITION each one.",
    severity="error", kinds=("IndexStmt",), check=check, impact_scaled=True,
    setup="CREATE TABLE measurements (ts timestamptz, v float8) PARTITION BY RANGE (ts);",
)

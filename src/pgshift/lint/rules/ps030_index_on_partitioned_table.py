"""PS030 index-on-partitioned-table."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname
from pgshift.lint.rules._helpers import partitioned_index_table


def check(ctx: Ctx) -> Iterator[Hit]:
    if "removeType" in ctx.body:
        yield from _drop(ctx)
        return
    table = relname(ctx.body.get("relation"))
    known = ctx.table(table)
    if known is None or not known.partitioned or not ctx.body.get("relation", {}).get("inh"):
        return
    verb = "fails: CONCURRENTLY is not supported on a partitioned table" if ctx.body.get("concurrent") else (
        "builds the index on every partition while holding SHARE locks on all of them")
    yield Hit(f"CREATE INDEX on the partitioned table {table} {verb}.", table=table, severity="error",
              scaled=not ctx.body.get("concurrent"),  # a statement that fails does so on a small table too
              fix=(f"CREATE INDEX idx ON ONLY {table} (...);  -- invalid parent index, instant\n"
                   "CREATE INDEX CONCURRENTLY idx_p1 ON <partition> (...);  -- per partition, no transaction\n"
                   "ALTER INDEX idx ATTACH PARTITION idx_p1;  -- the parent becomes valid after the last one"))


def _drop(ctx: Ctx) -> Iterator[Hit]:
    """DROP INDEX of a partitioned table's index: CONCURRENTLY fails at run time; the plain one is the only way,
    and locks the table and every partition (briefly: the catalog only)."""
    if ctx.body.get("removeType") != "OBJECT_INDEX":
        return
    for obj in ctx.body.get("objects") or ():
        found = partitioned_index_table(ctx, obj)
        if found is None:
            continue
        name, table = found
        fix = (f"SET LOCAL lock_timeout = '2s';\nDROP INDEX IF EXISTS {name};  -- in a transaction: every partition's "
               "index goes with it, all or nothing")
        if ctx.body.get("concurrent"):
            yield Hit(f"DROP INDEX CONCURRENTLY {name} fails: it is the index of the partitioned table {table}, and "
                      "PostgreSQL cannot drop a partitioned index concurrently. The plain DROP INDEX takes an ACCESS "
                      f"EXCLUSIVE lock on {table} and each of its partitions for a moment (catalog only, no scan).",
                      table=table, severity="error", fix=fix, lock="ACCESS EXCLUSIVE", scaled=False)
        else:
            yield Hit(f"DROP INDEX {name} drops the index of the partitioned table {table} and every partition's "
                      f"attached to it, under an ACCESS EXCLUSIVE lock on {table} and each partition (catalog only, no "
                      "scan; PostgreSQL has no CONCURRENTLY form for it): queries on them wait while it waits for its "
                      "lock, so run it under a short lock_timeout.", table=table, severity="warning", fix=fix,
                      lock="ACCESS EXCLUSIVE")


RULE = Rule(
    id="PS030", name="index-on-partitioned-table",
    summary="CREATE INDEX on a partitioned parent locks every partition; CONCURRENTLY is not supported there (nor "
    "for DROP INDEX of its index, which locks the table and every partition).",
    lock="SHARE", blocks=("writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="CREATE INDEX measurements_ts_idx ON measurements (ts);",
    good="CREATE INDEX measurements_ts_idx ON ONLY measurements (ts);",
    safe="CREATE INDEX ON ONLY the parent, CREATE INDEX CONCURRENTLY on each partition, ALTER INDEX ... ATTACH "
    "PARTITION each one.",
    severity="error", kinds=("IndexStmt", "DropStmt"), check=check, impact_scaled=True,
    setup="CREATE TABLE measurements (ts timestamptz, v float8) PARTITION BY RANGE (ts);",
)

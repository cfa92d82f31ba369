"""PS001 create-index-non-concurrently."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import AutoFix, Hit, Rule
from pgshift.lint.nodes import relname
from pgshift.lint.rules._helpers import concurrent_index_sql


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("concurrent"):
        return
    table = relname(ctx.body.get("relation"))
    known = ctx.table(table)
    if known is not None and known.partitioned:
        return  # PS030 explains the partitioned case
    fixed = concurrent_index_sql(ctx.statement.sql, bool(ctx.body.get("idxname")))
    autofix = AutoFix("", (fixed,)) if ctx.unit.transactional else AutoFix(fixed)
    yield Hit(f"CREATE INDEX on {table} without CONCURRENTLY holds a SHARE lock for the whole "
              "build: every INSERT, UPDATE and DELETE on the table waits.",
              table=table, fix=fixed + ";  -- in its own migration with -- pgshift:no-transaction",
              autofix=autofix)


RULE = Rule(
    id="PS001", name="create-index-non-concurrently",
    summary="CREATE INDEX without CONCURRENTLY blocks writes for the whole build.",
    lock="SHARE", blocks=("writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="CREATE INDEX orders_user_id_idx ON orders (user_id);",
    good="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);",
    safe="Use CREATE INDEX CONCURRENTLY IF NOT EXISTS in a migration of its own that runs outside "
    "a transaction (-- pgshift:no-transaction). If it fails, drop the INVALID index and retry.",
    severity="error", kinds=("IndexStmt",), check=check, impact_scaled=True,
)

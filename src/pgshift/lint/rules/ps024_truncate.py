"""PS024 truncate."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    cascade = " CASCADE also empties every table referencing it." if ctx.body.get("behavior") == "DROP_CASCADE" else ""
    for rel in ctx.body.get("relations") or ():
        table = relname(rel)
        yield Hit(f"TRUNCATE {table} deletes every row under an ACCESS EXCLUSIVE lock.{cascade}", table=table,
                  fix="Take a backup first; to empty a live table, DELETE in batches instead.")


RULE = Rule(
    id="PS024", name="truncate",
    summary="TRUNCATE destroys all rows (CASCADE: of referencing tables too) under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="TRUNCATE audit_log CASCADE;",
    good="DELETE FROM audit_log WHERE id BETWEEN 1 AND 10000;",
    safe="Back up first; delete in batches on a live table.",
    severity="error", kinds=("TruncateStmt",), check=check, destructive=True, category="destructive",
)

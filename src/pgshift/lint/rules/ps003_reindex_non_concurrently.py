"""PS003 reindex-non-concurrently."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import has_option, relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if has_option(ctx.body.get("params"), "concurrently"):
        return
    name = relname(ctx.body.get("relation")) or str(ctx.body.get("name", ""))
    table = ctx.schema.index_tables.get(name, name)
    what = str(ctx.body.get("kind", "REINDEX_OBJECT_INDEX")).removeprefix("REINDEX_OBJECT_")
    yield Hit(f"REINDEX {what} {name} without CONCURRENTLY blocks writes to {table}, and reads "
              "that would use the index, until the rebuild ends.", table=table,
              fix=f"REINDEX {what} CONCURRENTLY {name};  -- outside a transaction")


RULE = Rule(
    id="PS003", name="reindex-non-concurrently",
    summary="REINDEX without CONCURRENTLY blocks writes (and reads through the index).",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True,
    versions="REINDEX CONCURRENTLY exists from PostgreSQL 12.",
    bad="REINDEX INDEX orders_user_id_idx;",
    good="REINDEX INDEX CONCURRENTLY orders_user_id_idx;",
    safe="REINDEX ... CONCURRENTLY in a non-transactional migration.",
    severity="error", kinds=("ReindexStmt",), check=check, impact_scaled=True,
)

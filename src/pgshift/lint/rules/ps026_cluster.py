"""PS026 cluster."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    table = relname(ctx.body.get("relation")) or None
    yield Hit(f"CLUSTER rewrites {table or 'every clustered table'} under an ACCESS EXCLUSIVE lock.",
              table=table, fix="Use pg_repack --order-by to reorder online.")


RULE = Rule(
    id="PS026", name="cluster",
    summary="CLUSTER rewrites the table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True, versions="",
    bad="CLUSTER orders USING orders_created_at_idx;",
    good="ALTER TABLE orders CLUSTER ON orders_created_at_idx;",
    safe="pg_repack --order-by reorders a table online.",
    severity="error", kinds=("ClusterStmt",), check=check, impact_scaled=True,
)

"""PS027 refresh-matview-non-concurrently."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("concurrent") or ctx.body.get("skipData"):
        return
    view = relname(ctx.body.get("relation"))
    yield Hit(f"REFRESH MATERIALIZED VIEW {view} without CONCURRENTLY blocks every read of the view until the "
              "query finishes.", table=view,
              fix=f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view};  -- needs a unique index on the view")


RULE = Rule(
    id="PS027", name="refresh-matview-non-concurrently",
    summary="REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True, versions="",
    bad="REFRESH MATERIALIZED VIEW daily_totals;",
    good="REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;",
    safe="REFRESH ... CONCURRENTLY (requires a unique index on the view).",
    severity="warning", kinds=("RefreshMatViewStmt",), check=check, impact_scaled=True,
)

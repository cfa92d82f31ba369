"""PS025 vacuum-full."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import has_option, relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if not has_option(ctx.body.get("options"), "full"):
        return
    rels = [relname(r.get("VacuumRelation", {}).get("relation")) for r in ctx.body.get("rels") or ()]
    for table in rels or ["every table"]:
        yield Hit(f"VACUUM FULL rewrites {table} under an ACCESS EXCLUSIVE lock: reads and writes wait for the "
                  "whole rewrite.", table=table if rels else None,
                  fix="Use plain VACUUM, or pg_repack / pg_squeeze to compact online.")


RULE = Rule(
    id="PS025", name="vacuum-full",
    summary="VACUUM FULL rewrites the table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True, versions="",
    bad="VACUUM FULL orders;",
    good="VACUUM (ANALYZE) orders;",
    safe="Plain VACUUM, or pg_repack / pg_squeeze for online compaction.",
    severity="error", kinds=("VacuumStmt",), check=check, impact_scaled=True,
)

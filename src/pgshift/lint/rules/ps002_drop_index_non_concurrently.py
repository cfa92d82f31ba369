"""PS002 drop-index-non-concurrently."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import AutoFix, Hit, Rule
from pgshift.lint.nodes import qualified, quote_qualified, strings
from pgshift.lint.rules._helpers import partitioned_index_table


def check(ctx: Ctx) -> Iterator[Hit]:
    b = ctx.body
    if b.get("removeType") != "OBJECT_INDEX" or b.get("concurrent"):
        return
    for obj in b.get("objects") or ():
        if partitioned_index_table(ctx, obj) is not None:
            continue  # no CONCURRENTLY form for a partitioned index: PS030 says what the plain DROP locks
        name = qualified(strings(obj.get("List", {}).get("items")))
        table = ctx.schema.index_tables.get(name)
        fixed = f"DROP INDEX CONCURRENTLY IF EXISTS {quote_qualified(name)}"
        autofix = AutoFix("", (fixed,)) if ctx.unit.transactional else AutoFix(fixed)
        yield Hit(f"DROP INDEX {name} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on "
                  f"{table or 'its table'}: reads and writes wait, and so does everything queued behind it.",
                  table=table, fix=fixed + ";", autofix=autofix if len(b["objects"]) == 1 else None)


RULE = Rule(
    id="PS002", name="drop-index-non-concurrently",
    summary="DROP INDEX without CONCURRENTLY blocks reads and writes on the table.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="DROP INDEX orders_user_id_idx;",
    good="DROP INDEX CONCURRENTLY IF EXISTS orders_user_id_idx;",
    safe="DROP INDEX CONCURRENTLY IF EXISTS in its own non-transactional migration.",
    severity="error", kinds=("DropStmt",), check=check, impact_scaled=True,
)

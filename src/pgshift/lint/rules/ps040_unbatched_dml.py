"""PS040 unbatched-dml."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import Node, relname, strings, walk

_RANGE_OPS = frozenset({"<", "<=", ">", ">="})


def is_batched(where: Node) -> bool:
    """A key range (id BETWEEN / < / >) or a LIMITed subquery bounds the work per statement."""
    for node in walk(where):
        select = node.get("SelectStmt")
        if isinstance(select, dict) and select.get("limitCount"):
            return True
        expr = node.get("A_Expr")
        if isinstance(expr, dict):
            if expr.get("kind") == "AEXPR_BETWEEN":
                return True
            if expr.get("kind") == "AEXPR_OP" and set(strings(expr.get("name"))) & _RANGE_OPS:
                cols = strings(expr.get("lexpr", {}).get("ColumnRef", {}).get("fields"))
                if cols and (cols[-1] in ("id", "ctid") or cols[-1].endswith("_id")):
                    return True
            if expr.get("kind") == "AEXPR_OP" and strings(expr.get("name")) == ["="]:
                cols = strings(expr.get("lexpr", {}).get("ColumnRef", {}).get("fields"))
                if cols and cols[-1] == "id":
                    return True
    return False


def check(ctx: Ctx) -> Iterator[Hit]:
    where = ctx.body.get("whereClause")
    if not where or is_batched(where):
        return
    table = relname(ctx.body.get("relation"))
    verb = "UPDATE" if ctx.kind == "UpdateStmt" else "DELETE"
    yield Hit(f"{verb} on {table} touches every matching row in one statement: row locks are held to commit, "
              "replicas lag and dead rows pile up on a big table.", table=table,
              fix=(f"Batch by key range, committing between batches:\n{verb} ... WHERE id >= $1 AND id < $1 + 10000 "
                   "AND <condition>;  -- or: WHERE id IN (SELECT id FROM ... WHERE <condition> LIMIT 10000)"))


RULE = Rule(
    id="PS040", name="unbatched-dml",
    summary="UPDATE/DELETE of an unbounded set of rows in one statement (batch it on big tables).",
    lock="ROW EXCLUSIVE", blocks=(), rewrites=False, scans=True, versions="",
    bad="UPDATE users SET phone = '0000000000' WHERE phone IS NULL;",
    good="UPDATE users SET phone = '0000000000' WHERE id IN (SELECT id FROM users WHERE phone IS NULL LIMIT 10000);",
    safe="Update in batches of a few thousand rows by key range, committing between batches.",
    severity="warning", kinds=("UpdateStmt", "DeleteStmt"), check=check, impact_scaled=True, category="dml",
)

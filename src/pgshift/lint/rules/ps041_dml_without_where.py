"""PS041 dml-without-where."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("whereClause"):
        return
    table = relname(ctx.body.get("relation"))
    verb = "UPDATE" if ctx.kind == "UpdateStmt" else "DELETE"
    yield Hit(f"{verb} {table} without WHERE {'rewrites' if verb == 'UPDATE' else 'deletes'} every row in one "
              "transaction.", table=table,
              fix=f"Add the intended WHERE, and batch it by key range ({verb} ... WHERE id BETWEEN $1 AND $2).")


RULE = Rule(
    id="PS041", name="dml-without-where",
    summary="UPDATE or DELETE without WHERE touches every row.",
    lock="ROW EXCLUSIVE", blocks=(), rewrites=False, scans=True, versions="",
    bad="UPDATE users SET email_address = email;",
    good="UPDATE users SET email_address = email WHERE id BETWEEN 1 AND 10000;",
    safe="Always bound DML in migrations with WHERE, in batches.",
    severity="error", kinds=("UpdateStmt", "DeleteStmt"), check=check, impact_scaled=True, category="dml",
)

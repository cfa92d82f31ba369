"""PS063 dynamic-sql."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint import plpgsql
from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind == "DoStmt":
        source = plpgsql.do_body(ctx.body)
    else:
        found = plpgsql.function_body(ctx.body)
        source = found[1] if found else None
    if source is None:
        return
    start = ctx.statement.sql.find(source)
    base = ctx.statement.line + (ctx.statement.sql[:start].count("\n") if start >= 0 else 0)
    for item in plpgsql.embedded(source) or []:
        if item.dynamic:
            text = " ".join(item.sql.split())[:80]
            yield Hit(f"EXECUTE at line {base + item.line - 1} builds its SQL at run time ({text}): pgshift cannot "
                      "see which tables it locks, rewrites or drops, so nothing of it was checked.",
                      fix="Write the statement out in the migration (generate the migration file instead of the SQL), "
                          "or review its locks by hand and suppress this with a reason.")


RULE = Rule(
    id="PS063", name="dynamic-sql",
    summary="EXECUTE of SQL built at run time in a DO block or function cannot be analysed.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="DO $$ BEGIN\n  EXECUTE format('ALTER TABLE %I ADD COLUMN note text', 'orders');\nEND $$;",
    good="ALTER TABLE orders ADD COLUMN note text;",
    safe="Write the statements out in the migration so they can be checked; generate the file, not the SQL.",
    severity="warning", kinds=("DoStmt", "CreateFunctionStmt"), check=check, applies_to_new_tables=True,
    category="transactions",
)

"""PS021 drop-schema-or-database."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import strings


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind == "DropdbStmt":
        yield Hit(f"DROP DATABASE {ctx.body.get('dbname')} deletes a whole database.")
    elif ctx.body.get("removeType") == "OBJECT_SCHEMA":
        names = ", ".join(s for obj in ctx.body.get("objects") or () for s in strings([obj]))
        yield Hit(f"DROP SCHEMA {names} deletes every object in it"
                  + (" (CASCADE)." if ctx.body.get("behavior") == "DROP_CASCADE" else "."))


RULE = Rule(
    id="PS021", name="drop-schema-or-database",
    summary="DROP SCHEMA / DROP DATABASE destroys everything in it.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="DROP SCHEMA reporting CASCADE;",
    good="ALTER SCHEMA reporting RENAME TO reporting_old;",
    safe="Back up, drop objects one by one after the app stopped using them.",
    severity="error", kinds=("DropStmt", "DropdbStmt"), check=check, destructive=True,
    applies_to_new_tables=True, category="destructive",
)

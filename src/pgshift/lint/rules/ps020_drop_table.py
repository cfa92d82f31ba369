"""PS020 drop-table."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import qualified, strings


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("removeType") != "OBJECT_TABLE":
        return
    cascade = ""
    if ctx.body.get("behavior") == "DROP_CASCADE":
        cascade = " CASCADE also drops dependent views and foreign keys."
    for obj in ctx.body.get("objects") or ():
        table = qualified(strings(obj.get("List", {}).get("items")))
        yield Hit(f"DROP TABLE {table} deletes its data and breaks any app version still using it.{cascade}",
                  table=table, fix="Stop using the table in a released app version, back it up (pgshift backup), "
                  "or rename it aside and drop it a release later.")


RULE = Rule(
    id="PS020", name="drop-table",
    summary="DROP TABLE destroys data and breaks app versions that still use the table.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="DROP TABLE legacy_sessions;",
    good="COMMENT ON TABLE legacy_sessions IS 'deprecated: drop after 2025-01';",
    safe="Stop using the table in a released app version, take a backup, then drop it.",
    severity="error", kinds=("DropStmt",), check=check, destructive=True, category="destructive",
)

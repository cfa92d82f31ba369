"""PS017 rename-column."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("renameType") != "OBJECT_COLUMN" or ctx.body.get("relationType") not in (None, "OBJECT_TABLE"):
        return
    table = relname(ctx.body.get("relation"))
    old, new = ctx.body.get("subname"), ctx.body.get("newname")
    yield Hit(f"RENAME COLUMN {old} TO {new} on {table} breaks the application version still running: its "
              f"queries name {old} until every instance is redeployed.", table=table,
              fix=(f"ALTER TABLE {table} ADD COLUMN {new} <type>;  -- 1. new column\n-- 2. write both columns "
                   f"from the app\n-- 3. backfill {new} from {old} in batches\n-- 4. read {new}\n-- 5. later "
                   f"migration: ALTER TABLE {table} DROP COLUMN {old};"))


RULE = Rule(
    id="PS017", name="rename-column",
    summary="Renaming a column breaks the running application version.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users RENAME COLUMN email TO email_address;",
    good="ALTER TABLE users ADD COLUMN email_address text;",
    safe="Expand and contract: add the new column, dual-write, backfill in batches, switch reads, drop the old "
    "column in a later release (playbook pattern 4).",
    severity="error", kinds=("RenameStmt",), check=check, category="compatibility",
)

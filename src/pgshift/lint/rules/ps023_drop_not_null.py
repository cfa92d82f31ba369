"""PS023 drop-not-null."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_DropNotNull"):
        yield Hit(f"DROP NOT NULL on {table}.{cmd.get('name')}: app versions that assume a value break on NULLs, "
                  "and restoring NOT NULL later needs a full scan.", table=table,
                  fix="Make sure every running app version handles NULL first.")


RULE = Rule(
    id="PS023", name="drop-not-null",
    summary="DROP NOT NULL lets NULLs in that running code may not handle; undoing it needs a scan.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
    good="ALTER TABLE users ALTER COLUMN email SET DEFAULT '';",
    safe="Ship code that tolerates NULL first.",
    severity="warning", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_DropNotNull",), category="compatibility",
)

"""PS019 drop-column."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_DropColumn"):
        col = cmd.get("name")
        yield Hit(f"DROP COLUMN {col} on {table} deletes its data, and breaks any running application version "
                  f"that still selects or writes {col}.", table=table,
                  fix=("1. deploy code that no longer reads or writes the column (ORMs: mark it ignored)\n"
                       "2. wait until no old instance runs\n3. take a backup, then drop it in a later migration"))


RULE = Rule(
    id="PS019", name="drop-column",
    summary="DROP COLUMN destroys data and breaks app versions that still use the column.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users DROP COLUMN deprecated_phone;",
    good="ALTER TABLE users ALTER COLUMN deprecated_phone DROP DEFAULT;",
    safe="Stop using the column in a released app version first (playbook pattern 3), back up, then drop.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_DropColumn",), destructive=True, category="destructive",
)

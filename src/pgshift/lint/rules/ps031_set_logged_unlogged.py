"""PS031 set-logged-unlogged."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_SetLogged", "AT_SetUnLogged"):
        what = "LOGGED" if cmd.get("subtype") == "AT_SetLogged" else "UNLOGGED"
        extra = " An UNLOGGED table is emptied after a crash and is not replicated." if what == "UNLOGGED" else ""
        yield Hit(f"SET {what} rewrites {table} under an ACCESS EXCLUSIVE lock.{extra}", table=table,
                  fix="Create a new table with the wanted persistence and copy in batches, or accept downtime.")


RULE = Rule(
    id="PS031", name="set-logged-unlogged",
    summary="SET LOGGED / SET UNLOGGED rewrites the table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True, versions="",
    bad="ALTER TABLE import_rows SET LOGGED;",
    good="CREATE TABLE import_rows_logged (LIKE import_rows INCLUDING ALL);",
    safe="Copy into a new table in batches, then swap names.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_SetLogged", "AT_SetUnLogged"), impact_scaled=True,
)

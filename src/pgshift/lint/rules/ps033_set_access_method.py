"""PS033 set-access-method."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_SetAccessMethod"):
        if ctx.pg_version < 15:
            yield Hit("ALTER TABLE ... SET ACCESS METHOD does not exist before PostgreSQL 15: the migration fails.",
                      table=table, severity="error")
            continue
        yield Hit(f"SET ACCESS METHOD {cmd.get('name')} rewrites {table} under an ACCESS EXCLUSIVE lock.",
                  table=table, fix="Create a new table with the access method and copy in batches.")


RULE = Rule(
    id="PS033", name="set-access-method",
    summary="SET ACCESS METHOD rewrites the table under ACCESS EXCLUSIVE (PG 15+ only).",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True,
    versions="SET ACCESS METHOD exists from PG 15.",
    bad="ALTER TABLE events SET ACCESS METHOD heap2;",
    good="CREATE TABLE events_new (LIKE events) USING heap2;",
    safe="Copy into a new table using the access method, then swap names.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_SetAccessMethod",), impact_scaled=True,
)

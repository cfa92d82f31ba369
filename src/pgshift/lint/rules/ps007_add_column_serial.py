"""PS007 add-column-serial."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import alter_cmds
from pgshift.lint.rules.ps005_add_column_volatile_default import SERIALS


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddColumn"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        if type_of(coldef.get("typeName"))[0] in SERIALS:
            yield Hit(f"ADD COLUMN {coldef.get('colname')} {type_of(coldef.get('typeName'))[0]} fills every "
                      f"row from a sequence (a volatile nextval() default): {table} is rewritten under an "
                      "ACCESS EXCLUSIVE lock.", table=table,
                      fix="Add a nullable bigint column, backfill it in batches from a sequence, then set "
                      "the default and NOT NULL (via a validated CHECK).")


RULE = Rule(
    id="PS007", name="add-column-serial",
    summary="Adding a serial/bigserial column rewrites the table.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=False, versions="",
    bad="ALTER TABLE events ADD COLUMN seq bigserial;",
    good="ALTER TABLE events ADD COLUMN seq bigint;",
    safe="Add a nullable bigint, backfill in batches, then attach a sequence default.",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",), impact_scaled=True,
)

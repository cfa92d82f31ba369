"""PS006 add-column-not-null-without-default."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import column_constraints, type_of
from pgshift.lint.rules._helpers import alter_cmds

_FILLED = ("CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED")


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddColumn"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        kinds = {c.get("contype") for c in column_constraints(coldef)}
        not_null = coldef.get("is_not_null") or "CONSTR_NOTNULL" in kinds or "CONSTR_PRIMARY" in kinds
        if not not_null or kinds & set(_FILLED) or type_of(coldef.get("typeName"))[0].endswith("serial"):
            continue
        size = ctx.size(table)
        col = coldef.get("colname")
        yield Hit(f"ADD COLUMN {col} NOT NULL without a DEFAULT fails as soon as {table} has a row "
                  "(existing rows would be NULL).", table=table,
                  severity="note" if size is not None and size.rows == 0 else None,
                  fix=(f"ALTER TABLE {table} ADD COLUMN {col} <type> DEFAULT <value> NOT NULL;  -- PG 11+: "
                       "no rewrite for a constant default\n-- or: add it nullable, backfill in batches, then "
                       "the CHECK ... NOT VALID / VALIDATE / SET NOT NULL sequence"))


RULE = Rule(
    id="PS006", name="add-column-not-null-without-default",
    summary="ADD COLUMN ... NOT NULL without a DEFAULT fails on a table with rows.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users ADD COLUMN phone varchar(20) NOT NULL;",
    good="ALTER TABLE users ADD COLUMN phone text NOT NULL DEFAULT '';",
    safe="Give it a constant DEFAULT (no rewrite on PG 11+), or add it nullable, backfill in batches, "
    "and add NOT NULL through a validated CHECK (playbook pattern 2, done safely).",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",),
)

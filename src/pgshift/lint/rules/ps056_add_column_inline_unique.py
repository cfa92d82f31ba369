"""PS056 add-column-inline-unique."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import column_constraints
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddColumn"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        for con in column_constraints(coldef):
            kind = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE"}.get(str(con.get("contype")))
            if kind:
                yield Hit(f"ADD COLUMN {coldef.get('colname')} {kind} builds a unique index on {table} under an "
                          "ACCESS EXCLUSIVE lock.", table=table,
                          fix="Add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX.")


RULE = Rule(
    id="PS056", name="add-column-inline-unique",
    summary="ADD COLUMN ... UNIQUE / PRIMARY KEY builds an index under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE users ADD COLUMN external_id bigint UNIQUE;",
    good="ALTER TABLE users ADD COLUMN external_id bigint;",
    safe="Add the column, build the unique index concurrently, attach it with USING INDEX.",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",), impact_scaled=True,
)

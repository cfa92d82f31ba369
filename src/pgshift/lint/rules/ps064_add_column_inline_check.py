"""PS064 add-column-inline-check."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import column_constraints
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddColumn"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        column = coldef.get("colname")
        for con in column_constraints(coldef):
            if con.get("contype") == "CONSTR_CHECK":
                name = con.get("conname") or f"{table}_{column}_check"
                yield Hit(f"ADD COLUMN {column} with an inline CHECK makes PostgreSQL check every row of {table} "
                          "while it holds ACCESS EXCLUSIVE: reads and writes wait for the whole scan, even though "
                          "the new column is empty.", table=table,
                          fix=f"ALTER TABLE {table} ADD COLUMN {column} ...;  -- without the CHECK\n"
                              f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (...) NOT VALID;\n"
                              f"ALTER TABLE {table} VALIDATE CONSTRAINT {name};  -- SHARE UPDATE EXCLUSIVE: no "
                              "reader or writer waits")


RULE = Rule(
    id="PS064", name="add-column-inline-check",
    summary="ADD COLUMN ... CHECK scans the whole table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE orders ADD COLUMN discount numeric CHECK (discount >= 0);",
    good="ALTER TABLE orders ADD COLUMN discount numeric;\n"
         "ALTER TABLE orders ADD CONSTRAINT orders_discount_check CHECK (discount >= 0) NOT VALID;",
    safe="Add the column without the CHECK, add the constraint NOT VALID, then VALIDATE it separately.",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",), impact_scaled=True,
)

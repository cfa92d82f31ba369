"""PS013 add-check-without-not-valid."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import AutoFix, Hit, Rule
from pgshift.lint.nodes import quote_ident
from pgshift.lint.rules._helpers import alone, alter_cmds, constraint_of, table_sql


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddConstraint"):
        con = constraint_of(cmd)
        if con.get("contype") != "CONSTR_CHECK" or con.get("skip_validation"):
            continue
        name = con.get("conname")
        autofix = None
        fix = "ADD CONSTRAINT <name> CHECK (...) NOT VALID; then in a later transaction: VALIDATE CONSTRAINT <name>;"
        if name and alone(ctx):
            first = ctx.statement.sql.rstrip().rstrip(";") + " NOT VALID"
            later = f"ALTER TABLE {table_sql(table)} VALIDATE CONSTRAINT {quote_ident(str(name))}"
            autofix, fix = AutoFix(first, (later,)), f"{first};\n{later};  -- separate transaction"
        yield Hit(f"Adding a CHECK constraint on {table} without NOT VALID scans every row under an ACCESS "
                  "EXCLUSIVE lock: reads and writes wait.", table=table, fix=fix, autofix=autofix)


RULE = Rule(
    id="PS013", name="add-check-without-not-valid",
    summary="A CHECK constraint added without NOT VALID scans the table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0);",
    good="ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;",
    safe="ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a separate transaction.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AddConstraint",), impact_scaled=True,
)

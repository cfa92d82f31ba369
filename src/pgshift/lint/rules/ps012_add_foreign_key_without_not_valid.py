"""PS012 add-foreign-key-without-not-valid."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import AutoFix, Hit, Rule
from pgshift.lint.nodes import column_constraints, quote_ident, relname
from pgshift.lint.rules._helpers import alone, alter_cmds, constraint_of, table_sql


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddConstraint", "AT_AddColumn"):
        if cmd.get("subtype") == "AT_AddColumn":
            coldef = (cmd.get("def") or {}).get("ColumnDef", {})
            cons = [c for c in column_constraints(coldef) if c.get("contype") == "CONSTR_FOREIGN"]
        else:
            cons = [constraint_of(cmd)] if constraint_of(cmd).get("contype") == "CONSTR_FOREIGN" else []
        for con in cons:
            if con.get("skip_validation"):
                continue
            ref = relname(con.get("pktable"))
            name = con.get("conname")
            autofix = None
            fix = "ADD CONSTRAINT ... NOT VALID; then in a later transaction: VALIDATE CONSTRAINT <name>;"
            if name and alone(ctx) and cmd.get("subtype") == "AT_AddConstraint":
                first = ctx.statement.sql.rstrip().rstrip(";") + " NOT VALID"
                later = f"ALTER TABLE {table_sql(table)} VALIDATE CONSTRAINT {quote_ident(str(name))}"
                autofix, fix = AutoFix(first, (later,)), f"{first};\n{later};  -- separate transaction"
            yield Hit(f"Adding a foreign key on {table} without NOT VALID checks every row while holding "
                      f"SHARE ROW EXCLUSIVE locks on {table} and {ref}: writes to both wait.",
                      table=table, fix=fix, autofix=autofix)


RULE = Rule(
    id="PS012", name="add-foreign-key-without-not-valid",
    summary="A foreign key added without NOT VALID scans the table and blocks writes on both tables.",
    lock="SHARE ROW EXCLUSIVE", blocks=("writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE trades ADD CONSTRAINT fk_trades_user_id FOREIGN KEY (user_id) REFERENCES users (id);",
    good="ALTER TABLE trades ADD CONSTRAINT fk_trades_user_id FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
    safe="ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a separate transaction "
    "(SHARE UPDATE EXCLUSIVE: reads and writes go on).",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AddConstraint", "AT_AddColumn"), impact_scaled=True,
)

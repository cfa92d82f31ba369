"""PS014 validate-in-same-transaction."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    if not ctx.tx.active:
        return
    for table, cmd in alter_cmds(ctx, "AT_ValidateConstraint"):
        name = str(cmd.get("name", ""))
        if (table, name) in ctx.tx.added_constraints:
            yield Hit(f"VALIDATE CONSTRAINT {name} runs in the same transaction as the ADD CONSTRAINT ... "
                      f"NOT VALID: the ADD's lock on {table} is still held during the scan, so NOT VALID "
                      "gains nothing.", table=table,
                      fix="Move VALIDATE CONSTRAINT to a later migration (or a -- pgshift:no-transaction one).")


RULE = Rule(
    id="PS014", name="validate-in-same-transaction",
    summary="VALIDATE CONSTRAINT in the same transaction as its ADD ... NOT VALID keeps the strong lock.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="BEGIN;\nALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;\nCOMMIT;",
    good="ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;",
    safe="Commit the NOT VALID constraint first; validate it in a later transaction.",
    severity="error", kinds=("AlterTableStmt",), check=check, in_transaction=True,
    subtypes=("AT_ValidateConstraint",), impact_scaled=True, category="transactions",
)

"""PS009 add-column-generated-stored."""

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
            if con.get("contype") == "CONSTR_GENERATED" and con.get("generated_kind", "s") == "s":
                hint = ("use GENERATED ALWAYS AS (...) VIRTUAL (PG 18+: computed on read, no rewrite), or "
                        if ctx.pg_version >= 18 else "")
                yield Hit(f"ADD COLUMN {coldef.get('colname')} GENERATED ALWAYS AS (...) STORED computes "
                          f"every row: {table} is rewritten under an ACCESS EXCLUSIVE lock.", table=table,
                          fix=f"{hint.capitalize()}add a plain column kept up to date by the application or a "
                          "trigger, backfilled in batches.")


RULE = Rule(
    id="PS009", name="add-column-generated-stored",
    summary="Adding a STORED generated column rewrites the table.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=False,
    versions="PG 18 adds VIRTUAL generated columns, which do not rewrite.",
    bad="ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED;",
    good="ALTER TABLE orders ADD COLUMN total numeric;",
    safe="Add a plain column and fill it in batches (or a VIRTUAL generated column on PG 18+).",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",), impact_scaled=True,
)

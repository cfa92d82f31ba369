"""PS005 add-column-volatile-default."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import column_constraints, type_of, volatility
from pgshift.lint.rules._helpers import alter_cmds

SERIALS = ("serial", "bigserial", "smallserial", "serial2", "serial4", "serial8")


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddColumn"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        if type_of(coldef.get("typeName"))[0] in SERIALS:
            continue  # PS007
        for con in column_constraints(coldef):
            if con.get("contype") != "CONSTR_DEFAULT":
                continue
            verdict = volatility(con.get("raw_expr"))
            col = coldef.get("colname")
            fix = (f"ALTER TABLE {table} ADD COLUMN {col} <type>;\nALTER TABLE {table} ALTER COLUMN {col} "
                   "SET DEFAULT <expr>;\n-- then backfill existing rows in batches")
            if ctx.pg_version < 11:
                yield Hit(f"Before PostgreSQL 11 ADD COLUMN {col} with any DEFAULT rewrites {table} under "
                          "an ACCESS EXCLUSIVE lock.", table=table, fix=fix, severity="error")
            elif verdict == "volatile":
                yield Hit(f"ADD COLUMN {col} with a volatile DEFAULT rewrites {table} under an ACCESS "
                          "EXCLUSIVE lock: reads and writes wait for the whole rewrite.", table=table, fix=fix)
            elif verdict == "unknown":
                yield Hit(f"ADD COLUMN {col} DEFAULT calls a function pgshift cannot classify; if it is "
                          f"VOLATILE, {table} is rewritten under an ACCESS EXCLUSIVE lock.", table=table,
                          fix=fix, severity="warning")


RULE = Rule(
    id="PS005", name="add-column-volatile-default",
    summary="ADD COLUMN with a volatile default (any default before PG 11) rewrites the table.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=False,
    versions="PG 11+: a non-volatile default is stored in the catalog (no rewrite); before 11 any default rewrites.",
    bad="ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    good="ALTER TABLE users ADD COLUMN last_login_at timestamptz DEFAULT now();",
    safe="Add the column without a default, SET DEFAULT separately, then backfill existing rows in batches.",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_AddColumn",), impact_scaled=True,
)

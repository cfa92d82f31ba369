"""PS011 set-not-null."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import AutoFix, Hit, Rule
from pgshift.lint.nodes import quote_ident
from pgshift.lint.rules._helpers import alone, alter_cmds, table_sql


def safe_sequence(table: str, col: str) -> tuple[str, tuple[str, ...]]:
    """(statement for this migration, statements for a follow-up migration)."""
    name = quote_ident(f"{table.rsplit('.', 1)[-1]}_{col}_not_null"[:63])
    t, c = table_sql(table), quote_ident(col)
    return (f"ALTER TABLE {t} ADD CONSTRAINT {name} CHECK ({c} IS NOT NULL) NOT VALID",
            (f"ALTER TABLE {t} VALIDATE CONSTRAINT {name}",
             f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL",
             f"ALTER TABLE {t} DROP CONSTRAINT {name}"))


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_SetNotNull"):
        col = str(cmd.get("name", ""))
        known = ctx.table(table)
        column = known.columns.get(col) if known else None
        if column is not None and column.not_null:
            continue
        if known is not None and known.not_null_check(col) is not None:
            if ctx.pg_version >= 12:
                continue
            yield Hit(f"SET NOT NULL on {table}.{col}: before PG 12 the validated CHECK is not used and the "
                      "whole table is scanned under an ACCESS EXCLUSIVE lock.", table=table)
            continue
        first, rest = safe_sequence(table, col)
        fix = ";\n".join((first, *rest)) + ";"
        if ctx.pg_version >= 18:
            fix = (f"ALTER TABLE {table_sql(table)} ADD CONSTRAINT {quote_ident(col + '_not_null')} NOT NULL "
                   f"{quote_ident(col)} NOT VALID;  -- PG 18+\n-- then, in a later migration: VALIDATE CONSTRAINT\n"
                   f"-- or on any version:\n{fix}")
        yield Hit(f"SET NOT NULL on {table}.{col} scans the whole table under an ACCESS EXCLUSIVE lock: reads "
                  "and writes wait for the scan.", table=table, fix=fix,
                  autofix=AutoFix(first, rest) if alone(ctx) else None)


RULE = Rule(
    id="PS011", name="set-not-null",
    summary="SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated CHECK proves it (PG 12+).",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True,
    versions="PG 12+ skips the scan when a validated CHECK (col IS NOT NULL) exists; "
    "PG 18+ can add NOT NULL as NOT VALID directly.",
    bad="ALTER TABLE users ALTER COLUMN phone SET NOT NULL;",
    good="ALTER TABLE users ADD CONSTRAINT users_phone_not_null CHECK (phone IS NOT NULL) NOT VALID;",
    safe="ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID; then in a later transaction VALIDATE "
    "CONSTRAINT; SET NOT NULL (no scan on PG 12+); DROP CONSTRAINT the check.",
    severity="error", kinds=("AlterTableStmt",), check=check, subtypes=("AT_SetNotNull",), impact_scaled=True,
)

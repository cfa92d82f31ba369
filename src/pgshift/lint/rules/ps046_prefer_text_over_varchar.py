"""PS046 prefer-text-over-varchar."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import new_columns


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, coldef in new_columns(ctx):
        type_name, mods, _ = type_of(coldef.get("typeName"))
        if type_name == "varchar" and mods:
            name = coldef.get("colname")
            yield Hit(f"{table}.{name} is varchar({mods[0]}): raising the limit later is cheap, but lowering it "
                      "rewrites the table; text with a CHECK (length(...) <= n) NOT VALID is easier to change.",
                      table=table, fix=f"{name} text CHECK (char_length({name}) <= {mods[0]})")


RULE = Rule(
    id="PS046", name="prefer-text-over-varchar",
    summary="varchar(n) limits are awkward to change; prefer text with a CHECK.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE users (email varchar(255));",
    good="CREATE TABLE users (email text CHECK (char_length(email) <= 255));",
    safe="text plus a CHECK constraint (which can be replaced NOT VALID without a rewrite).",
    severity="note", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddColumn",), applies_to_new_tables=True,
    category="types",
)

"""PS050 prefer-identity."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import new_columns
from pgshift.lint.rules.ps005_add_column_volatile_default import SERIALS


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind != "CreateStmt":
        return  # ADD COLUMN serial is PS007
    for table, coldef in new_columns(ctx):
        type_name = type_of(coldef.get("typeName"))[0]
        if type_name in SERIALS:
            yield Hit(f"{table}.{coldef.get('colname')} is {type_name}: the sequence's ownership and permissions are "
                      "separate from the table, and explicit inserts silently desynchronise it.", table=table,
                      fix=f"{coldef.get('colname')} bigint GENERATED ALWAYS AS IDENTITY")


RULE = Rule(
    id="PS050", name="prefer-identity",
    summary="serial columns: prefer GENERATED ... AS IDENTITY.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE tags (id bigserial PRIMARY KEY);",
    good="CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);",
    safe="bigint GENERATED ALWAYS AS IDENTITY.",
    severity="note", kinds=("CreateStmt",), check=check, applies_to_new_tables=True, category="types",
)

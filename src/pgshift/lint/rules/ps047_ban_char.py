"""PS047 ban-char."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import new_columns


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, coldef in new_columns(ctx):
        if type_of(coldef.get("typeName"))[0] in ("bpchar", "char", "character"):
            yield Hit(f"{table}.{coldef.get('colname')} is char(n): values are blank-padded, comparisons ignore "
                      "trailing spaces and it is no faster than text.", table=table,
                      fix=f"{coldef.get('colname')} text (with a CHECK on the length if needed)")


RULE = Rule(
    id="PS047", name="ban-char",
    summary="char(n) pads with blanks and surprises comparisons; use text.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE countries (code char(2));",
    good="CREATE TABLE countries (code text CHECK (char_length(code) = 2));",
    safe="text with a CHECK constraint.",
    severity="warning", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddColumn",), applies_to_new_tables=True,
    category="types",
)

"""PS049 prefer-jsonb."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import new_columns


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, coldef in new_columns(ctx):
        if type_of(coldef.get("typeName"))[0] == "json":
            yield Hit(f"{table}.{coldef.get('colname')} is json: it has no equality operator (breaks DISTINCT, "
                      "UNION, GROUP BY), no GIN indexing, and is re-parsed on every access.", table=table,
                      fix=f"{coldef.get('colname')} jsonb")


RULE = Rule(
    id="PS049", name="prefer-jsonb",
    summary="json lacks equality and indexing; use jsonb.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE events (payload json);",
    good="CREATE TABLE events (payload jsonb);",
    safe="jsonb (unless you must keep key order and duplicate keys verbatim).",
    severity="note", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddColumn",), applies_to_new_tables=True,
    category="types",
)

"""PS048 prefer-timestamptz."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import new_columns


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, coldef in new_columns(ctx):
        if type_of(coldef.get("typeName"))[0] == "timestamp":
            yield Hit(f"{table}.{coldef.get('colname')} is timestamp without time zone: the instant it means depends "
                      "on the writer's time zone.", table=table, fix=f"{coldef.get('colname')} timestamptz")


RULE = Rule(
    id="PS048", name="prefer-timestamptz",
    summary="timestamp without time zone loses the instant; use timestamptz.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users ADD COLUMN last_login_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP;",
    good="ALTER TABLE users ADD COLUMN last_login_at timestamptz DEFAULT now();",
    safe="timestamptz stores an instant; convert on display.",
    severity="warning", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddColumn",), applies_to_new_tables=True,
    category="types",
)

"""Small helpers shared by rule modules (not a rule: no ``RULE``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.nodes import Node, cmds, quote_qualified

_CREATE_INDEX = re.compile(r"(?is)^\s*create\s+(unique\s+)?index\s+(concurrently\s+)?(if\s+not\s+exists\s+)?")


def alter_cmds(ctx: Ctx, *subtypes: str) -> Iterator[tuple[str, Node]]:
    """(table, cmd) for the ALTER TABLE commands of the given subtypes."""
    for subtype, table, cmd in ctx.alter_cmds:
        if subtype in subtypes:
            yield table, cmd


def constraint_of(cmd: Node) -> Node:
    con: Node = (cmd.get("def") or {}).get("Constraint", {})
    return con


def concurrent_index_sql(sql: str, named: bool) -> str:
    """``CREATE [UNIQUE] INDEX`` rewritten as ``CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS]``."""
    def repl(match: re.Match[str]) -> str:
        unique = "UNIQUE " if match.group(1) else ""
        guard = "IF NOT EXISTS " if named else ""
        return f"CREATE {unique}INDEX CONCURRENTLY {guard}"
    return _CREATE_INDEX.sub(repl, sql, count=1)


def table_sql(table: str) -> str:
    return quote_qualified(table)


def alone(ctx: Ctx) -> bool:
    """The ALTER TABLE has a single command, so its text can be rewritten mechanically."""
    return len(cmds(ctx.body)) == 1


def new_columns(ctx: Ctx) -> list[tuple[str, Node]]:
    """(table, ColumnDef) for columns defined by CREATE TABLE or ALTER TABLE ADD COLUMN."""
    return ctx.new_columns

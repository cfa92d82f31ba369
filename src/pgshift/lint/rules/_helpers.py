"""Small helpers shared by rule modules (not a rule: no ``RULE``)."""

from __future__ import annotations

import re

from pgshift.lint.context import Ctx
from pgshift.lint.nodes import Node, cmds, qualified, quote_qualified, strings

_CREATE_INDEX = re.compile(r"(?is)^\s*create\s+(unique\s+)?index\s+(concurrently\s+)?(if\s+not\s+exists\s+)?")


def alter_cmds(ctx: Ctx, *subtypes: str) -> list[tuple[str, Node]]:
    """(table, cmd) for the ALTER TABLE commands of the given subtypes, in the statement's order."""
    if len(subtypes) == 1:
        return ctx.cmds_of(subtypes[0])
    return [(table, cmd) for subtype, table, cmd in ctx.alter_cmds if subtype in subtypes]


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


def partitioned_index_table(ctx: Ctx, obj: Node) -> tuple[str, str] | None:
    """(index, its table) when the schema model knows the index a DROP INDEX names is a partitioned table's."""
    name = qualified(strings(obj.get("List", {}).get("items")))
    table = ctx.schema.index_tables.get(name)
    known = ctx.table(table) if table else None
    return (name, table) if table and known is not None and known.partitioned else None

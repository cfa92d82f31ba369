"""Which tables does a statement touch? One answer for ``pgshift check`` (the tables it changes or
rewrites) and ``pgshift rehearse`` (every table it names, for the workload).

Decided from pglast's AST, one statement at a time, keeping no tree. An ``INSERT ... VALUES``
(most of a data migration, and its largest statements) is not parsed whole: only its head up to
VALUES is, completed with a one-row VALUES list, and the rows are screened by one regular
expression for the only words that can bring in another table (a subquery's SELECT or TABLE).
The statement is parsed whole whenever that shortcut cannot vouch for its answer.
"""

from __future__ import annotations

import re
from typing import Any

from pglast import ast, parser
from pglast.enums import AlterTableType
from pglast.visitors import Visitor

from pgshift.migrations.splitter import first_word

TableName = tuple[str | None, str]  # (schema or None, name)

_REWRITING = frozenset({AlterTableType.AT_AlterColumnType, AlterTableType.AT_SetTableSpace,
                        AlterTableType.AT_SetLogged, AlterTableType.AT_SetUnLogged})
_VALUES = re.compile(r"\bvalues\b", re.I)
# A table can appear in an INSERT's rows (or its ON CONFLICT / RETURNING) only inside a subquery.
_SUBQUERY_WORD = re.compile(r"\b(?:select|table)\b", re.I)
_ONE_ROW = " VALUES (NULL)"


def _name(relation: Any) -> TableName:
    return relation.schemaname, relation.relname


def _insert_head(sql: str) -> tuple[ast.InsertStmt, int] | None:
    """The tree of ``INSERT INTO t (cols) VALUES (NULL)`` built from ``sql``'s text before its first
    VALUES, and where the rest starts; None when that is not an INSERT ... VALUES at top level.

    A first VALUES inside a string, quoted name, comment or parentheses leaves that head unterminated
    or unbalanced, so it either fails to parse or does not parse to the one NULL row appended."""
    if first_word(sql) != "INSERT":
        return None
    match = _VALUES.search(sql)
    if match is None:
        return None
    try:
        stmts = parser.parse_sql(sql[:match.start()] + _ONE_ROW)
    except Exception:  # the whole statement is parsed instead
        return None
    node = stmts[0].stmt if len(stmts) == 1 else None
    if not isinstance(node, ast.InsertStmt) or node.relation is None or node.withClause is not None:
        return None
    select = node.selectStmt
    rows = select.valuesLists if isinstance(select, ast.SelectStmt) else None
    if not rows or len(rows) != 1 or len(rows[0]) != 1 or not isinstance(rows[0][0], ast.A_Const) \
            or not rows[0][0].isnull:
        return None
    return node, match.end()


def _statements(sql: str) -> tuple[Any, ...]:
    try:
        return tuple(raw.stmt for raw in parser.parse_sql(sql))
    except Exception:  # lint reports parse errors; a statement that does not parse names no table
        return ()


def changed_tables(sql: str) -> tuple[set[TableName], set[TableName]]:
    """(tables the statement changes: its target relation, or the ones VACUUM names; those of them it
    rewrites or copies while building: ALTER TABLE ... TYPE / SET TABLESPACE / SET [UN]LOGGED,
    CREATE INDEX, CLUSTER, VACUUM FULL)."""
    head = _insert_head(sql)
    nodes: tuple[Any, ...] = (head[0],) if head is not None else _statements(sql)
    changed: set[TableName] = set()
    rewritten: set[TableName] = set()
    for node in nodes:
        relations: list[Any] = [node.relation] if getattr(node, "relation", None) is not None else []
        if isinstance(node, ast.VacuumStmt):
            relations = [r.relation for r in node.rels or () if getattr(r, "relation", None) is not None]
            if any(o.defname == "full" for o in node.options or ()):
                rewritten.update(_name(r) for r in relations)
        names = {_name(r) for r in relations}
        changed |= names
        if isinstance(node, (ast.IndexStmt, ast.ClusterStmt)) or (
            isinstance(node, ast.AlterTableStmt)
            and any(getattr(c, "subtype", None) in _REWRITING for c in node.cmds or ())
        ):
            rewritten |= names
    return changed, rewritten


class _RangeVars(Visitor):
    def __init__(self) -> None:
        self.found: set[TableName] = set()

    def visit_RangeVar(self, _ancestors: Any, node: Any) -> None:
        self.found.add(_name(node))


def named_tables(sql: str) -> set[TableName]:
    """Every relation the statement names anywhere (targets, FROM lists, subqueries)."""
    visitor = _RangeVars()
    head = _insert_head(sql)
    if head is not None and _SUBQUERY_WORD.search(sql, head[1]) is None:
        visitor(head[0])
    else:
        visitor(_statements(sql))
    return visitor.found

"""What an operations migration does to the schema, for the linter's model.

An ``.ops`` migration is planned, not linted, but the SQL migrations after it must be judged against the
schema it leaves: its expand (columns, tables, indexes, constraints it adds) and, once contracted, its
contract (dropped columns and tables, renames, new types, NOT NULL). The statements here are never run;
they only replay those effects into :class:`pgshift.lint.schema.Schema`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg import sql

from pgshift.lint.schema import Schema
from pgshift.migrations.splitter import split_sql
from pgshift.ops.model import Op, OpsFile, column_definition, is_constant


def replay_ops(model: Schema, ops: OpsFile, origin: str, *, contracted: bool) -> list[str]:
    """Apply ``ops``' expand (and its contract when ``contracted``) to ``model``; the tables it creates."""
    created: list[str] = []
    for o in ops.operations:
        if o.kind == "rename_column" and not contracted:
            _copy_column(model, _key(ops, str(o.get("table"))), str(o.get("from")), str(o.get("to")))
            continue
        for statement in _statements(ops, o, contracted):
            model.load_sql(statement if isinstance(statement, str) else statement.as_string(), origin)
        if o.kind == "create_table":
            created.append(_key(ops, str(o.get("table"))))
    return created


def _key(ops: OpsFile, table: str) -> str:
    """The model's name for a table: unqualified in public, as the linter compares names."""
    return table if ops.schema == "public" else f"{ops.schema}.{table}"


def _copy_column(model: Schema, table: str, old: str, new: str) -> None:
    """Expanded rename_column: the new column exists beside the old one, of the same type."""
    known = model.table(table)
    if known is not None and old in known.columns:
        known.columns[new] = dataclasses.replace(known.columns[old], name=new)


def _statements(ops: OpsFile, o: Op, contracted: bool) -> list[sql.Composable | str]:
    def t(name: Any) -> sql.Identifier:
        return sql.Identifier(ops.schema, str(name))

    def ids(names: Any) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(str(n)) for n in names)

    table = t(o.get("table")) if o.get("table") else None
    out: list[sql.Composable | str] = []
    if o.kind == "create_table":
        parts = [column_definition(c) for c in o.get("columns")]
        if o.get("primary_key"):
            parts.append(sql.SQL("PRIMARY KEY ({})").format(ids(o.get("primary_key"))))
        out.append(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(parts)))
    elif o.kind == "drop_table" and contracted:
        out.append(sql.SQL("DROP TABLE {}").format(table))
    elif o.kind == "rename_table":
        out.append(sql.SQL("ALTER TABLE {} RENAME TO {}").format(t(o.get("from")), sql.Identifier(str(o.get("to")))))
    elif o.kind == "add_column":
        column = o.get("column")
        default, up = column.get("default"), o.get("up")
        # NOT NULL at once only on the metadata-only path; otherwise through contract's validated check.
        not_null = column.get("nullable") is False and (
            contracted or (up is None and (default is None or is_constant(default))))
        out.append(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(
            table, sql.Identifier(str(column["name"])), sql.SQL(str(column["type"])),
            sql.SQL(" NOT NULL" if not_null else "")))
    elif o.kind == "drop_column" and contracted:
        out.append(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table, sql.Identifier(str(o.get("column")))))
    elif o.kind == "rename_column":  # contracted (expanded: _copy_column)
        out.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            table, sql.Identifier(str(o.get("from"))), sql.Identifier(str(o.get("to")))))
    elif o.kind == "change_column_type" and contracted:  # expanded: the column keeps its type
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
            table, sql.Identifier(str(o.get("column"))), sql.SQL(str(o.get("type")))))
    elif o.kind == "set_not_null" and contracted:
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(
            table, sql.Identifier(str(o.get("column")))))
    elif o.kind == "drop_not_null":
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
            table, sql.Identifier(str(o.get("column")))))
    elif o.kind == "add_check":
        name = sql.Identifier(str(o.get("name")))
        out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
            table, name, sql.SQL(str(o.get("check")))))
        if contracted:
            out.append(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, name))
    elif o.kind in ("add_unique", "create_index"):
        unique = o.kind == "add_unique" or bool(o.get("unique"))
        statement = sql.SQL("CREATE {}INDEX {} ON {} {}({})").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(str(o.get("name"))), table,
            sql.SQL("USING {} ").format(sql.Identifier(str(o.get("method")))) if o.get("method") else sql.SQL(""),
            ids(o.get("columns")))
        if o.get("where"):
            statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(str(o.get("where"))))
        out.append(statement)
    elif o.kind == "drop_index" and contracted:
        out.append(sql.SQL("DROP INDEX {}").format(t(o.get("name"))))
    elif o.kind == "sql":
        for part in ("up", "contract") if contracted else ("up",):
            if o.get(part):
                out += [s.sql for s in split_sql(str(o.get(part)), file=f"{o.where}.{part}")]
    return out

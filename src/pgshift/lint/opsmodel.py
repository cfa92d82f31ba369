"""What an operations migration does to the schema, for the linter's model.

An ``.ops`` migration is planned, not linted, but the SQL migrations after it must be judged against the
schema it leaves: its expand (columns, tables, indexes, constraints it adds) and, once contracted, its
contract (dropped columns and tables, renames, new types, NOT NULL). The statements here are never run;
they only replay those effects into :class:`pgshift.lint.schema.Schema`.
"""

from __future__ import annotations

import dataclasses

from psycopg import sql

from pgshift.lint.schema import Schema
from pgshift.migrations.splitter import split_sql
from pgshift.ops.model import OpsFile, column_definition, is_constant
from pgshift.ops.operations._base import Operation, ids
from pgshift.ops.operations.add_check import AddCheck
from pgshift.ops.operations.add_column import AddColumn
from pgshift.ops.operations.add_unique import AddUnique
from pgshift.ops.operations.change_column_type import ChangeColumnType
from pgshift.ops.operations.create_index import CreateIndex
from pgshift.ops.operations.create_table import CreateTable
from pgshift.ops.operations.drop_column import DropColumn
from pgshift.ops.operations.drop_index import DropIndex
from pgshift.ops.operations.drop_not_null import DropNotNull
from pgshift.ops.operations.drop_table import DropTable
from pgshift.ops.operations.rename_column import RenameColumn
from pgshift.ops.operations.rename_table import RenameTable
from pgshift.ops.operations.set_not_null import SetNotNull
from pgshift.ops.operations.sql import Sql


def replay_ops(model: Schema, ops: OpsFile, origin: str, *, contracted: bool) -> list[str]:
    """Apply ``ops``' expand (and its contract when ``contracted``) to ``model``; the tables it creates."""
    created: list[str] = []
    for o in ops.operations:
        if isinstance(o, RenameColumn) and not contracted:
            _copy_column(model, _key(ops, o.table), o.from_, o.to)
            continue
        for statement in _statements(ops, o, contracted):
            model.load_sql(statement if isinstance(statement, str) else statement.as_string(), origin)
        if isinstance(o, CreateTable):
            created.append(_key(ops, o.table))
    return created


def _key(ops: OpsFile, table: str) -> str:
    """The model's name for a table: unqualified in public, as the linter compares names."""
    return table if ops.schema == "public" else f"{ops.schema}.{table}"


def _copy_column(model: Schema, table: str, old: str, new: str) -> None:
    """Expanded rename_column: the new column exists beside the old one, of the same type."""
    known = model.table(table)
    if known is not None and old in known.columns:
        known.columns[new] = dataclasses.replace(known.columns[old], name=new)


def _statements(ops: OpsFile, o: Operation, contracted: bool) -> list[sql.Composable | str]:
    def t(name: str) -> sql.Identifier:
        return sql.Identifier(ops.schema, name)

    table = t(o.target) if o.target else None
    out: list[sql.Composable | str] = []
    if isinstance(o, CreateTable):
        parts = [column_definition(c) for c in o.columns]
        if o.primary_key:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(ids(o.primary_key)))
        out.append(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(parts)))
    elif isinstance(o, DropTable) and contracted:
        out.append(sql.SQL("DROP TABLE {}").format(table))
    elif isinstance(o, RenameTable):
        out.append(sql.SQL("ALTER TABLE {} RENAME TO {}").format(t(o.from_), sql.Identifier(o.to)))
    elif isinstance(o, AddColumn):
        column = o.column
        # NOT NULL at once only on the metadata-only path; otherwise through contract's validated check.
        not_null = not column.nullable and (
            contracted or (o.up is None and (column.default is None or is_constant(column.default))))
        out.append(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(
            table, sql.Identifier(column.name), sql.SQL(column.type), sql.SQL(" NOT NULL" if not_null else "")))
    elif isinstance(o, DropColumn) and contracted:
        out.append(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table, sql.Identifier(o.column)))
    elif isinstance(o, RenameColumn):  # contracted (expanded: _copy_column)
        out.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            table, sql.Identifier(o.from_), sql.Identifier(o.to)))
    elif isinstance(o, ChangeColumnType) and contracted:  # expanded: the column keeps its type
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
            table, sql.Identifier(o.column), sql.SQL(o.type)))
    elif isinstance(o, SetNotNull) and contracted:
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(table, sql.Identifier(o.column)))
    elif isinstance(o, DropNotNull):
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(table, sql.Identifier(o.column)))
    elif isinstance(o, AddCheck):
        name = sql.Identifier(o.name)
        out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
            table, name, sql.SQL(o.check)))
        if contracted:
            out.append(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, name))
    elif isinstance(o, (AddUnique, CreateIndex)):
        method = o.method if isinstance(o, CreateIndex) else None
        predicate = o.predicate if isinstance(o, CreateIndex) else None
        unique = isinstance(o, AddUnique) or o.unique
        statement = sql.SQL("CREATE {}INDEX {} ON {} {}({})").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(o.name), table,
            sql.SQL("USING {} ").format(sql.Identifier(method)) if method else sql.SQL(""), ids(o.columns))
        if predicate:
            statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(predicate))
        out.append(statement)
    elif isinstance(o, DropIndex) and contracted:
        out.append(sql.SQL("DROP INDEX {}").format(t(o.name)))
    elif isinstance(o, Sql):
        for part, text in (("up", o.up), ("contract", o.contract_sql if contracted else None)):
            if text:
                out += [s.sql for s in split_sql(text, file=f"{o.origin}.{part}")]
    return out

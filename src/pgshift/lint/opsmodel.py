"""What an operations migration does to the schema, for the linter's model.

An ``.ops`` migration is planned, not linted, but the SQL migrations after it must be judged against the
schema it leaves: its expand (columns, tables, indexes, constraints it adds) and, once contracted, its
contract (dropped columns and tables, renames, new types, NOT NULL). The statements here are never run;
they only replay those effects into :class:`pgshift.lint.schema.Schema`.
"""

from __future__ import annotations

import dataclasses

from pgshift.lint.schema import Schema
from pgshift.ops.model import OpsFile
from pgshift.ops.operations.create_table import CreateTable
from pgshift.ops.operations.rename_column import RenameColumn


def replay_ops(model: Schema, ops: OpsFile, origin: str, *, contracted: bool) -> list[str]:
    """Apply ``ops``' expand (and its contract when ``contracted``) to ``model``; the tables it creates.
    Each operation says what it leaves in the schema (``schema_sql``)."""
    created: list[str] = []
    for o in ops.operations:
        if isinstance(o, RenameColumn) and not contracted:
            _copy_column(model, _key(ops, o.table), o.from_, o.to)
            continue
        for statement in o.schema_sql(ops.schema, contracted):
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

"""create_table: a new table (nothing uses it yet, so it is created at once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Column, Operation, Plan, column_definition, ids


@dataclass(frozen=True)
class CreateTable(Operation):
    kind = "create_table"
    summary = "Create a table; abort drops it."
    example = ("create_table: {table: events, columns: [{name: id, type: bigint, primary_key: true}, "
               "{name: at, type: timestamptz}]}")
    setup = ""

    table: Annotated[str, "The new table, in the file's `schema`."]
    columns: Annotated[tuple[Column, ...], "Its columns (see Columns)."]
    primary_key: Annotated[tuple[str, ...] | None, "Columns of a composite primary key."] = None

    def expand(self, plan: Plan, index: int) -> None:
        parts = [column_definition(c) for c in self.columns]
        if self.primary_key:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(ids(self.primary_key)))
        plan.expand(f"create table {self.table}", "tx", [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(plan.t(self.table), sql.SQL(", ").join(parts))])
        plan.layout[self.table] = [(c.name, c.name) for c in self.columns]

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"drop table {self.table}", "tx", [sql.SQL("DROP TABLE IF EXISTS {}").format(plan.t(self.table))])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        parts = [column_definition(c) for c in self.columns]
        if self.primary_key:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(ids(self.primary_key)))
        return [sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, self.table), sql.SQL(", ").join(parts))]


OPERATION = CreateTable

"""change_column_type: a shadow column of the new type, kept in sync with the old one both ways
(``up`` / ``down`` convert), backfilled, and renamed into the old one's place at contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.names import fit
from pgshift.ops.operations import _copy
from pgshift.ops.operations._base import Plan, quote


@dataclass(frozen=True)
class ChangeColumnType(_copy.CopiedColumn):
    kind = "change_column_type"
    summary = "Change a column's type without rewriting the table under a lock: a shadow column swapped in at contract."
    example = "change_column_type: {table: orders, column: amount, type: \"numeric(12,2)\"}"
    setup = ("CREATE TABLE orders (id bigint PRIMARY KEY, amount integer NOT NULL); "
             "INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g;")

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[str, "The column."]
    type: Annotated[str, "The new type (SQL)."]
    up: Annotated[str | None, "SQL expression converting the old value to the new type (default: a CAST)."] = None
    down: Annotated[str | None, "SQL expression converting a new value back, for the old version (default: a "
                               "CAST)."] = None
    default: Annotated[str | None, "The new column's default (default: the old column's)."] = None

    def shape(self, plan: Plan) -> _copy.Copy:
        info = plan.column(self, self.column)
        name = self.column
        return _copy.Copy(self.table, name, fit("_pgshift", plan.version, name), name, self.type,
                          self.up or f"CAST({quote(name)} AS {self.type})",
                          self.down or f"CAST({quote(name)} AS {info.type})", self.default or info.default, True)

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        # expanded, the column keeps its type
        return [sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.column), sql.SQL(self.type))] if contracted else []


OPERATION = ChangeColumnType

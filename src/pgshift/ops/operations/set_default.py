"""set_default: at expand; abort restores the default captured before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan


@dataclass(frozen=True)
class SetDefault(Operation):
    kind = "set_default"
    summary = "Set (or, without `default`, drop) a column's default."
    example = "set_default: {table: users, column: plan, default: \"'free'\"}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, plan text DEFAULT 'trial');"

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[str, "The column."]
    default: Annotated[str | None, "SQL expression; left out: the default is dropped."] = None

    def _to(self, plan: Plan, default: str | None) -> sql.Composable:
        return self._set(plan.t(self.table), default)

    def _set(self, table: sql.Identifier, default: str | None) -> sql.Composable:
        column = sql.Identifier(self.column)
        if default is None:
            return sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(table, column)
        return sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(table, column, sql.SQL(default))

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [self._set(sql.Identifier(schema, self.table), self.default)]

    def expand(self, plan: Plan, index: int) -> None:
        plan.column(self, self.column)
        plan.expand(f"set default of {self.table}.{self.column}", "tx", [self._to(plan, self.default)],
                    [plan.label(self.table)])

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"restore default of {self.table}.{self.column}", "tx",
                   [self._to(plan, plan.column(self, self.column).default)], [plan.label(self.table)])


OPERATION = SetDefault

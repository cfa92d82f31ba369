"""drop_not_null: instant at expand; abort restores NOT NULL through a validated check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, add_not_null_check, drop_constraint


@dataclass(frozen=True)
class DropNotNull(Operation):
    kind = "drop_not_null"
    summary = "Allow NULL in a column (at expand); abort makes it NOT NULL again."
    example = "drop_not_null: {table: users, column: phone}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, phone text NOT NULL);"

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[str, "The column."]

    def expand(self, plan: Plan, index: int) -> None:
        plan.column(self, self.column)
        plan.expand(f"drop NOT NULL on {self.table}.{self.column}", "tx", [
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                plan.t(self.table), sql.Identifier(self.column))], [plan.label(self.table)])

    def abort(self, plan: Plan, index: int) -> None:
        table, name = self.table, self.column
        if not plan.column(self, name).notnull:
            return
        check = plan.not_null_check(table, name)
        plan.abort(f"restore NOT NULL on {table}.{name}", "tx", [
            drop_constraint(plan, table, check),
            add_not_null_check(plan, table, check, name),
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(plan.t(table), sql.Identifier(check)),
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(plan.t(table), sql.Identifier(name)),
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(plan.t(table), sql.Identifier(check)),
        ], [plan.label(table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.column))]


OPERATION = DropNotNull

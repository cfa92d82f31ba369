"""set_not_null: a NOT VALID check at expand (new rows checked at once), validated with a weak lock
and turned into NOT NULL at contract; ``up`` fills the NULLs first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, add_not_null_check, drop_constraint, quote
from pgshift.ops.sync import SyncRule


@dataclass(frozen=True)
class SetNotNull(Operation):
    kind = "set_not_null"
    summary = "Make a column NOT NULL without a long lock: a NOT VALID check validated at contract."
    example = "set_not_null: {table: users, column: email, up: \"'unknown@example.com'\"}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, email text); INSERT INTO users VALUES (1, NULL);"

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[str, "The column."]
    up: Annotated[str | None, "SQL expression filling the NULLs (existing rows, and the old version's writes)."] = None

    def expand(self, plan: Plan, index: int) -> None:
        table, name = self.table, self.column
        plan.column(self, name)
        check = plan.not_null_check(table, name)
        statements = [drop_constraint(plan, table, check), add_not_null_check(plan, table, check, name)]
        if self.up:
            statements += plan.sync(index, table, SyncRule("fill", name, None, self.up, None,
                                                           plan.old_namespace(table), {}, only_null=True))
            plan.backfill(index, table, name, f"{quote(name)} IS NULL")
        plan.expand(f"add NOT NULL check on {table}.{name} (NOT VALID)", "tx", statements, [plan.label(table)])

    def _drop(self, plan: Plan, index: int) -> list[sql.Composable]:
        return plan.drop_sync(index, self.table) if self.up else []

    def contract(self, plan: Plan, index: int) -> None:
        plan.contract_not_null(self.table, self.column, plan.not_null_check(self.table, self.column),
                               self._drop(plan, index))

    def abort(self, plan: Plan, index: int) -> None:
        check = plan.not_null_check(self.table, self.column)
        plan.abort(f"drop NOT NULL check on {self.table}.{self.column}", "tx",
                   [*self._drop(plan, index), drop_constraint(plan, self.table, check)], [plan.label(self.table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.column))] if contracted else []


OPERATION = SetNotNull

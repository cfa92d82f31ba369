"""add_check: NOT VALID at expand (new rows checked at once), validated with a weak lock at contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, drop_constraint


@dataclass(frozen=True)
class AddCheck(Operation):
    kind = "add_check"
    summary = "Add a CHECK constraint: NOT VALID at expand, validated at contract."
    example = "add_check: {table: orders, name: orders_amount_positive, check: \"amount > 0\"}"
    setup = "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric); INSERT INTO orders VALUES (1, 5);"

    table: Annotated[str, "The table, in the file's `schema`."]
    name: Annotated[str, "The constraint's name."]
    check: Annotated[str, "The CHECK expression (SQL)."]

    def expand(self, plan: Plan, index: int) -> None:
        plan.expand(f"add check {self.name} (NOT VALID)", "tx", [
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
                plan.t(self.table), sql.Identifier(self.name), sql.SQL(self.check))], [plan.label(self.table)])

    def contract(self, plan: Plan, index: int) -> None:
        plan.validate(f"validate {self.name}", self.table, self.name)

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"drop constraint {self.name}", "tx", [drop_constraint(plan, self.table, self.name)],
                   [plan.label(self.table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        table, name = sql.Identifier(schema, self.table), sql.Identifier(self.name)
        out: list[sql.Composable | str] = [sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
            table, name, sql.SQL(self.check))]
        if contracted:
            out.append(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, name))
        return out


OPERATION = AddCheck

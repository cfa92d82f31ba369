"""drop_index: concurrently, at contract (the old version's queries may still use it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, drop_index


@dataclass(frozen=True)
class DropIndex(Operation):
    kind = "drop_index"
    summary = "Drop an index concurrently at contract."
    example = "drop_index: {name: orders_old_idx}"
    setup = "CREATE TABLE orders (id bigint PRIMARY KEY, note text); CREATE INDEX orders_old_idx ON orders (note);"

    name: Annotated[str, "The index, in the file's `schema`."]

    def contract(self, plan: Plan, index: int) -> None:
        plan.contract(f"drop index {self.name}", "autocommit", [drop_index(plan, self.name)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, self.name))] if contracted else []


OPERATION = DropIndex

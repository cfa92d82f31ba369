"""create_index: built CONCURRENTLY IF NOT EXISTS at expand (a failed build's INVALID index is dropped
by name before the retry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, build_index, drop_index, ids, key


@dataclass(frozen=True)
class CreateIndex(Operation):
    kind = "create_index"
    summary = "Build an index concurrently at expand; abort drops it."
    example = "create_index: {table: orders, name: orders_created_idx, columns: [created_at], where: \"paid\"}"
    setup = "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz, paid boolean);"

    table: Annotated[str, "The table, in the file's `schema`."]
    name: Annotated[str, "The index's name."]
    columns: Annotated[tuple[str, ...], "The indexed columns."]
    unique: Annotated[bool, "A unique index."] = False
    method: Annotated[str | None, "Index access method (btree, hash, gin, gist, brin, ...)."] = None
    predicate: Annotated[str | None, "Predicate of a partial index."] = key("where", None)

    def expand(self, plan: Plan, index: int) -> None:
        plan.expand(f"build index {self.name} concurrently", "autocommit", [
            build_index(plan, self.table, self.name, self.columns, self.unique, self.method, self.predicate)],
            weak_lock_tables=[plan.label(self.table)], index=self.name)

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"drop index {self.name}", "autocommit", [drop_index(plan, self.name)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        statement = sql.SQL("CREATE {}INDEX {} ON {} {}({})").format(
            sql.SQL("UNIQUE " if self.unique else ""), sql.Identifier(self.name), sql.Identifier(schema, self.table),
            sql.SQL("USING {} ").format(sql.Identifier(self.method)) if self.method else sql.SQL(""), ids(self.columns))
        if self.predicate:
            statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(self.predicate))
        return [statement]


OPERATION = CreateIndex

"""add_unique: its index built concurrently at expand, the constraint added on it at contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.operations._base import Operation, Plan, build_index, drop_index, ids, partitions


@dataclass(frozen=True)
class AddUnique(Operation):
    kind = "add_unique"
    summary = "Add a UNIQUE constraint: its index built concurrently at expand, the constraint added at contract."
    example = "add_unique: {table: users, name: users_email_key, columns: [email]}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@x');"

    table: Annotated[str, "The table, in the file's `schema`."]
    name: Annotated[str, "The constraint's name (and its index's)."]
    columns: Annotated[tuple[str, ...], "The columns unique together."]

    def expand(self, plan: Plan, index: int) -> None:
        if partitions(plan, self.table):
            raise MigrationSourceError(
                f"{self.origin}: {plan.label(self.table)} is partitioned: PostgreSQL cannot add a UNIQUE constraint "
                "there on an index built beforehand (ADD CONSTRAINT ... USING INDEX), and adding it directly builds "
                "every partition's index while holding writes back.",
                hint=f"use create_index with unique: true on {self.table} (its columns must include the partition "
                "key): it is built partition by partition and enforces the same uniqueness.")
        plan.expand(f"build unique index {self.name} concurrently", "autocommit", [
            build_index(plan, self.table, self.name, self.columns, True, None, None)],
            weak_lock_tables=[plan.label(self.table)], index=self.name)

    def contract(self, plan: Plan, index: int) -> None:
        plan.contract(f"add unique constraint {self.name} using its index", "tx", [
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                plan.t(self.table), sql.Identifier(self.name), sql.Identifier(self.name))], [plan.label(self.table)])

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"drop index {self.name}", "autocommit", [drop_index(plan, self.name)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        table, name = sql.Identifier(schema, self.table), sql.Identifier(self.name)
        out: list[sql.Composable | str] = [sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            name, table, ids(self.columns))]
        if contracted:
            out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(table, name, name))
        return out


OPERATION = AddUnique

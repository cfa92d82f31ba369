"""add_foreign_key: NOT VALID at expand (new rows checked at once), validated with a weak lock at contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan, drop_constraint, ids


@dataclass(frozen=True)
class AddForeignKey(Operation):
    kind = "add_foreign_key"
    summary = "Add a foreign key: NOT VALID at expand, validated at contract."
    example = ("add_foreign_key: {table: orders, name: orders_user_fk, columns: [user_id], references_table: users, "
               "references_columns: [id], on_delete: cascade}")
    setup = ("CREATE TABLE users (id bigint PRIMARY KEY); CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint); "
             "INSERT INTO users VALUES (1); INSERT INTO orders VALUES (1, 1);")

    table: Annotated[str, "The table, in the file's `schema`."]
    name: Annotated[str, "The constraint's name."]
    columns: Annotated[tuple[str, ...], "The referencing columns."]
    references_table: Annotated[str, "The referenced table, in the file's `schema`."]
    references_columns: Annotated[tuple[str, ...], "The referenced columns."]
    on_delete: Annotated[Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] | None,
                         "What deleting a referenced row does (any case)."] = None

    def _add(self, table: sql.Identifier, references: sql.Identifier) -> sql.Composable:
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
            table, sql.Identifier(self.name), ids(self.columns), references, ids(self.references_columns))
        if self.on_delete:
            statement = sql.SQL("{} ON DELETE {}").format(statement, sql.SQL(self.on_delete))
        return sql.SQL("{} NOT VALID").format(statement)

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        table = sql.Identifier(schema, self.table)
        out: list[sql.Composable | str] = [self._add(table, sql.Identifier(schema, self.references_table))]
        if contracted:
            out.append(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, sql.Identifier(self.name)))
        return out

    def expand(self, plan: Plan, index: int) -> None:
        statement = self._add(plan.t(self.table), plan.t(self.references_table))
        plan.expand(f"add foreign key {self.name} (NOT VALID)", "tx", [statement],
                    [plan.label(self.table), plan.label(self.references_table)])

    def contract(self, plan: Plan, index: int) -> None:
        plan.validate(f"validate {self.name}", self.table, self.name)

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"drop constraint {self.name}", "tx", [drop_constraint(plan, self.table, self.name)],
                   [plan.label(self.table)])


OPERATION = AddForeignKey

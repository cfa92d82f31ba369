"""add_foreign_key: NOT VALID at expand (new rows checked at once), validated with a weak lock at contract;
on a partitioned table before PostgreSQL 18 (which refuses NOT VALID there), on each partition, and
added to the table at contract once every partition's is valid (PostgreSQL attaches them: no scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from psycopg import sql

from pgshift.ops.operations._base import (
    Operation,
    Plan,
    drop_constraint,
    ids,
    partition_ident,
    partition_label,
    partitions,
)

# PostgreSQL 18 adds NOT VALID foreign keys on partitioned tables.
NOT_VALID_ON_PARTITIONED = 180000


@dataclass(frozen=True)
class AddForeignKey(Operation):
    kind = "add_foreign_key"
    summary = ("Add a foreign key: NOT VALID at expand, validated at contract (a partitioned table's before "
               "PostgreSQL 18: on each partition, then on the table).")
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

    def _per_partition(self, plan: Plan) -> bool:
        return bool(partitions(plan, self.table)) and plan.facts.server_version < NOT_VALID_ON_PARTITIONED

    def _statement(self, table: sql.Composable, references: sql.Composable, *, valid: bool) -> sql.Composable:
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
            table, sql.Identifier(self.name), ids(self.columns), references, ids(self.references_columns))
        if self.on_delete:
            statement = sql.SQL("{} ON DELETE {}").format(statement, sql.SQL(self.on_delete))
        return statement if valid else sql.SQL("{} NOT VALID").format(statement)

    def _add(self, plan: Plan, table: sql.Composable, *, valid: bool) -> sql.Composable:
        return self._statement(table, plan.t(self.references_table), valid=valid)

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        # Contracted, the key is valid: added as such in one statement (a NOT VALID key on a partitioned
        # table is refused before PostgreSQL 18).
        return [self._statement(sql.Identifier(schema, self.table), sql.Identifier(schema, self.references_table),
                                valid=contracted)]

    def expand(self, plan: Plan, index: int) -> None:
        if not self._per_partition(plan):
            plan.expand(f"add foreign key {self.name} (NOT VALID)", "tx", [self._add(plan, plan.t(self.table),
                                                                                     valid=False)],
                        [plan.label(self.table), plan.label(self.references_table)])
            return
        for p in partitions(plan, self.table):
            if p.leaf:
                plan.expand(f"add foreign key {self.name} on partition {partition_label(p)} (NOT VALID)", "tx",
                            [self._add(plan, partition_ident(p), valid=False)],
                            [partition_label(p), plan.label(self.references_table)])

    def contract(self, plan: Plan, index: int) -> None:
        if not self._per_partition(plan):
            plan.validate(f"validate {self.name}", self.table, self.name)
            return
        for p in partitions(plan, self.table):
            if p.leaf:
                plan.validate(f"validate {self.name} on partition {partition_label(p)}", p, self.name)
        # Every leaf's is valid: PostgreSQL attaches each one instead of adding and checking its own (a
        # partition created since expand gets a new one, checked under the lock).
        plan.contract(f"add foreign key {self.name} on {plan.label(self.table)} (attaches its partitions')", "tx",
                      [self._add(plan, plan.t(self.table), valid=True)],
                      [plan.label(self.table), plan.label(self.references_table)])

    def abort(self, plan: Plan, index: int) -> None:
        if not self._per_partition(plan):
            plan.abort(f"drop constraint {self.name}", "tx", [drop_constraint(plan, self.table, self.name)],
                       [plan.label(self.table)])
            return
        for p in partitions(plan, self.table):
            if p.leaf:
                plan.abort(f"drop constraint {self.name} on partition {partition_label(p)}", "tx", [
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                        partition_ident(p), sql.Identifier(self.name))], [partition_label(p)])


OPERATION = AddForeignKey

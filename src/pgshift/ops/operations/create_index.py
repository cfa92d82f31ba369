"""create_index: built CONCURRENTLY IF NOT EXISTS at expand (a failed build's INVALID index is dropped
by name before the retry); on a partitioned table, partition by partition under an index ``ON ONLY``
the parent, each attached as it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.facts import PartitionFacts
from pgshift.ops.names import qualified
from pgshift.ops.operations._base import (
    Operation,
    Plan,
    StepKind,
    build_index,
    drop_index,
    ids,
    key,
    partition_child_name,
    partition_label,
    partitioned_index_steps,
    partitions,
)


@dataclass(frozen=True)
class CreateIndex(Operation):
    kind = "create_index"
    summary = ("Build an index concurrently at expand (on a partitioned table: on each partition, attached to an "
               "index ON ONLY the parent); abort drops it.")
    example = "create_index: {table: orders, name: orders_created_idx, columns: [created_at], where: \"paid\"}"
    setup = "CREATE TABLE orders (id bigint PRIMARY KEY, created_at timestamptz, paid boolean);"

    table: Annotated[str, "The table, in the file's `schema`."]
    name: Annotated[str, "The index's name."]
    columns: Annotated[tuple[str, ...], "The indexed columns."]
    unique: Annotated[bool, "A unique index."] = False
    method: Annotated[str | None, "Index access method (btree, hash, gin, gist, brin, ...)."] = None
    predicate: Annotated[str | None, "Predicate of a partial index."] = key("where", None)

    def expand(self, plan: Plan, index: int) -> None:
        if partitions(plan, self.table):
            self._expand_partitioned(plan)
            return
        plan.expand(f"build index {self.name} concurrently", "autocommit", [
            build_index(plan, self.table, self.name, self.columns, self.unique, self.method, self.predicate)],
            weak_lock_tables=[plan.label(self.table)], index=self.name)

    def _index_of(self, plan: Plan, p: PartitionFacts | None) -> sql.Identifier:
        """The index on the table itself (None) or on partition ``p``, schema-qualified."""
        if p is None:
            return sql.Identifier(plan.schema, self.name)
        return sql.Identifier(p.schema, partition_child_name(self.name, p))

    def _index_label(self, plan: Plan, p: PartitionFacts) -> str:
        return qualified(p.schema, partition_child_name(self.name, p))

    def _expand_partitioned(self, plan: Plan) -> None:
        def build(schema: str, table: str, name: str, how: str) -> sql.Composable:
            return build_index(plan, sql.Identifier(schema, table), name, self.columns, self.unique, self.method,
                               self.predicate, how=how)

        for step in partitioned_index_steps(plan, self.table, self.name, build):
            plan.expand(step.label, step.kind, step.statements, step.lock_tables,
                        weak_lock_tables=step.weak_lock_tables, index=step.index_name, index_schema=step.index_schema)

    def abort(self, plan: Plan, index: int) -> None:
        parts = partitions(plan, self.table)
        if not parts:
            plan.abort(f"drop index {self.name}", "autocommit", [drop_index(plan, self.name)])
            return
        # Abort steps run in reverse: this runs last, dropping what an expand stopped part-way left unattached.
        for p in reversed(parts):
            child = self._index_of(plan, p)
            kind: StepKind = "autocommit" if p.leaf else "tx"
            plan.abort(f"drop index {self._index_label(plan, p)} if left unattached", kind, [
                sql.SQL("DROP INDEX {}IF EXISTS {}").format(sql.SQL("CONCURRENTLY " if p.leaf else ""), child)],
                [] if p.leaf else [partition_label(p)], weak_lock_tables=[partition_label(p)] if p.leaf else [])
        # A partitioned index cannot be dropped CONCURRENTLY; dropping it drops every attached partition's
        # index, taking ACCESS EXCLUSIVE on the table and its partitions for a moment (no scan).
        plan.abort(f"drop index {self.name} and its partitions' indexes", "tx", [
            sql.SQL("DROP INDEX IF EXISTS {}").format(self._index_of(plan, None))],
            [plan.label(self.table), *(partition_label(p) for p in parts)],
            warning=f"{plan.label(self.table)} is partitioned: PostgreSQL cannot drop its index {self.name} "
            "CONCURRENTLY, so abort drops it with a brief ACCESS EXCLUSIVE lock on the table and its partitions "
            "(under lock_timeout, retried).")

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        statement = sql.SQL("CREATE {}INDEX {} ON {} {}({})").format(
            sql.SQL("UNIQUE " if self.unique else ""), sql.Identifier(self.name), sql.Identifier(schema, self.table),
            sql.SQL("USING {} ").format(sql.Identifier(self.method)) if self.method else sql.SQL(""), ids(self.columns))
        if self.predicate:
            statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(self.predicate))
        return [statement]


OPERATION = CreateIndex

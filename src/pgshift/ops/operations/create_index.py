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
    partition_ident,
    partition_label,
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
        parts = partitions(plan, self.table)
        if parts:
            self._expand_partitioned(plan, parts)
            return
        plan.expand(f"build index {self.name} concurrently", "autocommit", [
            build_index(plan, self.table, self.name, self.columns, self.unique, self.method, self.predicate)],
            weak_lock_tables=[plan.label(self.table)], index=self.name)

    def _index_of(self, plan: Plan, p: PartitionFacts | None) -> sql.Identifier:
        """The index on the table itself (None) or on partition ``p``, schema-qualified."""
        if p is None:
            return sql.Identifier(plan.schema, self.name)
        return sql.Identifier(p.schema, partition_child_name(self.name, p))

    def _index_label(self, plan: Plan, p: PartitionFacts | None) -> str:
        if p is None:
            return qualified(plan.schema, self.name)
        return qualified(p.schema, partition_child_name(self.name, p))

    def _parent(self, plan: Plan, p: PartitionFacts) -> PartitionFacts | None:
        return next((q for q in partitions(plan, self.table) if (q.schema, q.name) == (p.parent_schema, p.parent)),
                    None)

    def _expand_partitioned(self, plan: Plan, parts: tuple[PartitionFacts, ...]) -> None:
        """CREATE INDEX on a partitioned table builds every partition's index under a SHARE lock (writes
        wait for the whole build), and CONCURRENTLY is refused there. So: an empty index ON ONLY the
        table (and each partition that is partitioned again), each leaf's built CONCURRENTLY and attached;
        the parent's index becomes valid once every partition's is attached."""
        parents = [p for p in parts if not p.leaf]
        plan.expand(f"create index {self.name} ON ONLY {plan.label(self.table)} (valid once every partition's is "
                    "attached)", "tx", [
                        build_index(plan, self.table, self.name, self.columns, self.unique, self.method,
                                    self.predicate, how="ONLY"),
                        *(build_index(plan, partition_ident(p), partition_child_name(self.name, p), self.columns,
                                      self.unique, self.method, self.predicate, how="ONLY") for p in parents)],
                    [plan.label(self.table), *(partition_label(p) for p in parents)])
        for p in parts:
            if not p.leaf:
                continue
            child = partition_child_name(self.name, p)
            plan.expand(f"build index {child} on partition {partition_label(p)} concurrently", "autocommit", [
                build_index(plan, partition_ident(p), child, self.columns, self.unique, self.method,
                            self.predicate)], weak_lock_tables=[partition_label(p)], index=child, index_schema=p.schema)
            self._attach(plan, p)
        for p in reversed(parents):  # the deepest first: a partitioned partition's index is valid once its own are
            self._attach(plan, p)

    def _attach(self, plan: Plan, p: PartitionFacts) -> None:
        """ALTER INDEX ... ATTACH PARTITION: no scan; a no-op when a rerun finds it attached."""
        parent = self._parent(plan, p)
        plan.expand(f"attach index {self._index_label(plan, p)} to {self._index_label(plan, parent)}", "tx", [
            sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(self._index_of(plan, parent),
                                                                 self._index_of(plan, p))],
            [partition_label(p)])

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

"""drop_index: concurrently, at contract (the old version's queries may still use it). A partitioned table's
index cannot be dropped CONCURRENTLY: it is dropped in one transaction, with every partition's index attached
to it, under a brief ACCESS EXCLUSIVE lock (lock_timeout, retried)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.names import qualified
from pgshift.ops.operations._base import Operation, Plan, drop_index


@dataclass(frozen=True)
class DropIndex(Operation):
    kind = "drop_index"
    summary = ("Drop an index concurrently at contract (a partitioned table's index: in one transaction, with a "
               "brief ACCESS EXCLUSIVE lock on the table and its partitions).")
    example = "drop_index: {name: orders_old_idx}"
    setup = "CREATE TABLE orders (id bigint PRIMARY KEY, note text); CREATE INDEX orders_old_idx ON orders (note);"

    name: Annotated[str, "The index, in the file's `schema`."]

    def contract(self, plan: Plan, index: int) -> None:
        found = plan.facts.indexes.get(self.name)
        shown = qualified(plan.schema, self.name)
        if found is not None and found.owner is not None:
            raise MigrationSourceError(
                f"{self.origin}: {shown} is a partition's index attached to the partitioned index {found.owner}: "
                "PostgreSQL drops it only with that index (it refuses to drop a partition's attached index on its "
                "own).", hint=f"name {found.owner} in drop_index to drop it with every partition's index.")
        if found is None or not found.partitioned:
            plan.contract(f"drop index {self.name}", "autocommit", [drop_index(plan, self.name)])
            return
        # PostgreSQL refuses DROP INDEX CONCURRENTLY on a partitioned index, and there is no way to detach a
        # partition's index from it: the plain DROP is the only one. It changes the catalog only (no scan).
        partitions = len(found.tables) - 1
        plan.contract(
            f"drop partitioned index {shown} and its partitions' indexes", "tx",
            [sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(plan.schema, self.name))], list(found.tables),
            warning=f"{shown} is the index of the partitioned table {found.table}: PostgreSQL cannot drop it "
            f"CONCURRENTLY, so contract drops it (and the indexes of {partitions} partitions attached to it) in one "
            f"transaction, taking an ACCESS EXCLUSIVE lock on {found.table} and those partitions for a moment "
            "(catalog only, no scan): every query on them waits that long. It gives up after lock_timeout and is "
            "retried; all or nothing.")

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, self.name))] if contracted else []


OPERATION = DropIndex

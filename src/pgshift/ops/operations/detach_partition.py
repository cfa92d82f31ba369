"""detach_partition: DETACH PARTITION ... CONCURRENTLY at expand where the server allows it (PostgreSQL
14+, no DEFAULT partition): no lock that holds queries back; otherwise a plain DETACH under a brief ACCESS
EXCLUSIVE lock on the table, with lock_timeout and retries. Abort attaches it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.facts import PartitionFacts
from pgshift.ops.operations._base import Operation, Plan, partition_ident, partition_label, partitions

DETACH_CONCURRENTLY = 140000  # PostgreSQL 14


@dataclass(frozen=True)
class DetachPartition(Operation):
    kind = "detach_partition"
    summary = ("Detach a partition from its table at expand, CONCURRENTLY where the server allows it (14+, no "
               "DEFAULT partition); abort attaches it again.")
    example = "detach_partition: {table: events, partition: events_2020}"
    setup = ("CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at); "
             "CREATE TABLE events_2020 PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2021-01-01'); "
             "CREATE TABLE events_2021 PARTITION OF events FOR VALUES FROM ('2021-01-01') TO ('2022-01-01'); "
             "INSERT INTO events VALUES (1, '2020-05-01'), (2, '2021-05-01');")

    table: Annotated[str, "The partitioned table, in the file's `schema`."]
    partition: Annotated[str, "The partition to detach, one of the table's own (in the file's `schema`)."]

    def _partition(self, plan: Plan) -> PartitionFacts:
        if self.table not in plan.facts.tables:
            raise MigrationSourceError(f"{self.origin}: table {self.table!r} does not exist.")
        mine = [p for p in partitions(plan, self.table) if (p.parent_schema, p.parent) == (plan.schema, self.table)]
        found = next((p for p in mine if (p.schema, p.name) == (plan.schema, self.partition)), None)
        if found is None:
            listed = ", ".join(partition_label(p) for p in mine) or "none"
            raise MigrationSourceError(f"{self.origin}: {self.partition!r} is not a partition of "
                                       f"{plan.label(self.table)} (its partitions: {listed}).")
        return found

    def concurrently(self, plan: Plan) -> bool:
        info = plan.facts.tables[self.table]
        return plan.facts.server_version >= DETACH_CONCURRENTLY and info.default_partition is None

    def expand(self, plan: Plan, index: int) -> None:
        p = self._partition(plan)
        detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(plan.t(self.table), partition_ident(p))
        if not self.concurrently(plan):
            info = plan.facts.tables[self.table]
            why = (f"it has a DEFAULT partition ({info.default_partition})" if info.default_partition is not None
                   else f"PostgreSQL {plan.facts.server_version // 10000} has no DETACH ... CONCURRENTLY (14+)")
            plan.expand(f"detach partition {partition_label(p)}", "tx", [detach],
                        [plan.label(self.table), partition_label(p)],
                        warning=f"{plan.label(self.table)} cannot detach {partition_label(p)} CONCURRENTLY: {why}. "
                        "The plain DETACH takes an ACCESS EXCLUSIVE lock on the table (every query on it waits) for "
                        "as long as it takes, which is short (no scan); it gives up after lock_timeout and retries.")
            return
        # The partition is either attached, pending (an interrupted DETACH CONCURRENTLY, which cannot simply be run
        # again), or detached.
        part, parent = sql.Literal(partition_label(p)), sql.Literal(plan.label(self.table))
        plan.expand(f"detach partition {partition_label(p)} concurrently", "autocommit",
                    [sql.SQL("{} CONCURRENTLY").format(detach)],
                    weak_lock_tables=[plan.label(self.table), partition_label(p)],
                    skip_if=sql.SQL("SELECT NOT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = {}::regclass AND "
                                    "inhparent = {}::regclass AND NOT inhdetachpending)").format(part, parent))
        plan.expand(f"finish a detach of {partition_label(p)} an interruption left pending", "tx", [sql.SQL(
            "DO $pgshift$ BEGIN IF EXISTS (SELECT FROM pg_inherits WHERE inhrelid = {}::regclass AND inhparent = "
            "{}::regclass AND inhdetachpending) THEN EXECUTE {}; END IF; END $pgshift$").format(
                part, parent, sql.Literal(sql.SQL("{} FINALIZE").format(detach).as_string()))],
                    weak_lock_tables=[plan.label(self.table), partition_label(p)])

    def abort(self, plan: Plan, index: int) -> None:
        p = self._partition(plan)
        part = partition_ident(p)
        statements: list[sql.Composable] = [sql.SQL(
            "DO $pgshift$ BEGIN IF NOT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = {}::regclass) THEN "
            "EXECUTE {}; END IF; END $pgshift$").format(
                sql.Literal(partition_label(p)), sql.Literal(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                    plan.t(self.table), part, sql.SQL(p.bound or "DEFAULT")).as_string()))]
        if self.concurrently(plan):
            # DETACH CONCURRENTLY left a CHECK copying the partition constraint (so that attaching it again needs
            # no scan); attached, the partition constraint says the same.
            statements.append(sql.SQL(
                "DO $pgshift$ DECLARE c name; BEGIN FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = "
                "{}::regclass AND contype = 'c' AND pg_get_constraintdef(oid) = format('CHECK (%s)', "
                "pg_get_partition_constraintdef({}::regclass)) LOOP "
                "EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {}, c); END LOOP; END $pgshift$").format(
                    sql.Literal(partition_label(p)), sql.Literal(partition_label(p)), sql.Literal(partition_label(p))))
        plan.abort(f"attach partition {partition_label(p)} again", "tx", statements,
                   [plan.label(self.table), partition_label(p)],
                   warning=None if self.concurrently(plan) else
                   f"attaching {partition_label(p)} again scans it (and the DEFAULT partition) to check its bounds, "
                   "under an ACCESS EXCLUSIVE lock on those two.")

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        # Run in a transaction, so the DETACH is a plain one; where expand detaches CONCURRENTLY (14+, no
        # DEFAULT partition) PostgreSQL also leaves a CHECK copying the partition constraint: declared here too.
        table, part = sql.Identifier(schema, self.table), sql.Identifier(schema, self.partition)
        detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(table, part).as_string()
        add_check = f"ALTER TABLE {part.as_string().replace('%', '%%')} ADD CHECK (%s)"  # a format() pattern
        return [sql.SQL(
            "DO $pgshift$ DECLARE bound text := pg_get_partition_constraintdef({part}::regclass); "
            "concurrent boolean := current_setting('server_version_num')::int >= {version} AND NOT EXISTS ("
            "SELECT FROM pg_partitioned_table WHERE partrelid = {table}::regclass AND partdefid <> 0); "
            "BEGIN EXECUTE {detach}; IF concurrent AND bound IS NOT NULL THEN EXECUTE format({add_check}, bound); "
            "END IF; END $pgshift$").format(
                part=sql.Literal(part.as_string()), table=sql.Literal(table.as_string()),
                version=sql.Literal(DETACH_CONCURRENTLY), detach=sql.Literal(detach), add_check=sql.Literal(add_check))]


OPERATION = DetachPartition

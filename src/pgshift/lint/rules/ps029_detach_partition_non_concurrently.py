"""PS029 detach-partition-non-concurrently."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_DetachPartition"):
        part = (cmd.get("def") or {}).get("PartitionCmd", {})
        if part.get("concurrent"):
            if ctx.pg_version < 14:
                yield Hit("DETACH PARTITION CONCURRENTLY does not exist before PostgreSQL 14: the statement fails.",
                          table=table, severity="error")
            continue
        name = relname(part.get("name"))
        if ctx.pg_version >= 14:
            yield Hit(f"DETACH PARTITION {name} takes an ACCESS EXCLUSIVE lock on {table}: reads and writes of "
                      "the whole partitioned table wait.", table=table,
                      fix=f"ALTER TABLE {table} DETACH PARTITION {name} CONCURRENTLY;  -- PG 14+, no transaction")
        else:
            yield Hit(f"DETACH PARTITION {name} locks {table} ACCESS EXCLUSIVE; PostgreSQL < 14 has no "
                      "CONCURRENTLY form, so run it at a quiet time with a short lock_timeout.", table=table,
                      severity="note")


RULE = Rule(
    id="PS029", name="detach-partition-non-concurrently",
    summary="DETACH PARTITION without CONCURRENTLY locks the parent ACCESS EXCLUSIVE (PG 14+ has a safe form).",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False,
    versions="DETACH PARTITION ... CONCURRENTLY exists from PG 14.",
    bad="ALTER TABLE measurements DETACH PARTITION measurements_2020;",
    good="ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;",
    safe="DETACH PARTITION ... CONCURRENTLY (PG 14+) in a non-transactional migration.",
    severity="warning", kinds=("AlterTableStmt",), check=check, subtypes=("AT_DetachPartition",),
)

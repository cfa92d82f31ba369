"""PS057 attach-partition-without-check."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for _table, cmd in alter_cmds(ctx, "AT_AttachPartition"):
        part = relname((cmd.get("def") or {}).get("PartitionCmd", {}).get("name"))
        known = ctx.table(part)
        if part in ctx.unit.created or (known is not None and any(c.validated for c in known.checks.values())):
            continue
        yield Hit(f"ATTACH PARTITION {part} scans {part} under an ACCESS EXCLUSIVE lock to prove every row fits the "
                  "partition bound.", table=part,
                  fix=(f"ALTER TABLE {part} ADD CONSTRAINT {part}_bound CHECK (<bound expression>) NOT VALID;\n"
                       f"ALTER TABLE {part} VALIDATE CONSTRAINT {part}_bound;  -- then ATTACH skips the scan"))


RULE = Rule(
    id="PS057", name="attach-partition-without-check",
    summary="ATTACH PARTITION scans the partition unless a validated CHECK already proves the bound.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True,
    versions="Since PG 12 the parent takes only SHARE UPDATE EXCLUSIVE; the partition still gets ACCESS EXCLUSIVE.",
    bad="ALTER TABLE measurements ATTACH PARTITION measurements_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    good="ALTER TABLE measurements_2024 ADD CONSTRAINT m2024_bound CHECK (ts >= '2024-01-01' AND ts < '2025-01-01') "
    "NOT VALID;",
    safe="Add a CHECK matching the bound NOT VALID, VALIDATE it, then ATTACH (no scan).",
    severity="warning", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AttachPartition",), impact_scaled=True,
)

"""PS036 lock-table."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.locks import BLOCKS
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, level in ctx.locks:
        blocked = ", ".join(BLOCKS[level]) or "only conflicting DDL"
        yield Hit(f"LOCK TABLE {table} IN {level} MODE blocks {blocked} until the transaction ends.",
                  table=table, lock=level,
                  severity="warning" if BLOCKS[level] else "note",
                  fix="Take the weakest lock the change needs, as late as possible, with a short lock_timeout.")


RULE = Rule(
    id="PS036", name="lock-table",
    summary="An explicit LOCK TABLE holds its lock to the end of the transaction.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;",
    good="SET lock_timeout = '2s';",
    safe="Avoid explicit locks; if one is needed, use the weakest mode and a short lock_timeout.",
    severity="warning", kinds=("LockStmt",), check=check, impact_scaled=True,
)

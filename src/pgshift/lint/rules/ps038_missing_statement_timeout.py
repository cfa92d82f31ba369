"""PS038 missing-statement-timeout."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.locks import BLOCKS
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.unit.statement_timeout or ctx.timeouts_managed or "statement_timeout" in ctx.unit.flags:
        return
    for table, level in ctx.locks_existing():
        if "reads" in BLOCKS[level] or "writes" in BLOCKS[level]:
            ctx.unit.flags.add("statement_timeout")
            yield Hit(f"{level} lock on {table} is held with no statement_timeout: if the statement runs longer "
                      "than expected nothing stops it while traffic waits.", table=table, lock=level,
                      fix="SET statement_timeout = '5min';  -- an upper bound you can afford to block for")
            return


RULE = Rule(
    id="PS038", name="missing-statement-timeout",
    summary="A blocking statement runs with no statement_timeout bounding how long traffic waits.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN note text;",
    good="SET lock_timeout = '2s';\nSET statement_timeout = '1min';\nALTER TABLE users ADD COLUMN note text;",
    safe="SET statement_timeout to the longest blocking time you accept.",
    severity="note", kinds=("*",), check=check, done_when="statement_timeout", category="timeouts",
)

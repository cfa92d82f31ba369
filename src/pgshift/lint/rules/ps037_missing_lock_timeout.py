"""PS037 missing-lock-timeout."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.locks import BLOCKS
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.unit.lock_timeout or ctx.timeouts_managed or "lock_timeout" in ctx.unit.flags:
        return
    for table, level in ctx.locks_existing():
        if BLOCKS[level] and level != "SHARE UPDATE EXCLUSIVE":
            ctx.unit.flags.add("lock_timeout")
            yield Hit(f"{level} lock on {table} requested without lock_timeout: while it waits behind a long "
                      "query, every read and write queued after it waits too.", table=table, lock=level,
                      fix="SET lock_timeout = '2s';  -- first statement of the migration (pgshift migrate sets "
                      "it for you: lint.runner_timeouts = true)")
            return


RULE = Rule(
    id="PS037", name="missing-lock-timeout",
    summary="A blocking lock is requested without lock_timeout, so a lock queue can stall all traffic.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users ADD COLUMN note text;",
    good="SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN note text;",
    safe="SET lock_timeout (and retry) before statements that take strong locks, or let pgshift migrate set it.",
    severity="warning", kinds=("*",), check=check, done_when="lock_timeout", category="timeouts",
)

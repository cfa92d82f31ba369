"""PS039 statements-after-access-exclusive."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule

_QUIET = frozenset({"VariableSetStmt", "TransactionStmt", "CommentStmt"})


def check(ctx: Ctx) -> Iterator[Hit]:
    held = ctx.tx.access_exclusive
    if not ctx.tx.active or held is None or ctx.kind in _QUIET or "after_ae" in ctx.tx.flags:
        return
    ctx.tx.flags.add("after_ae")
    table, where = held
    yield Hit(f"This statement runs while the ACCESS EXCLUSIVE lock on {table} (taken at {where}) is still held: "
              f"reads and writes of {table} wait for it too.", table=table,
              fix="Put the ACCESS EXCLUSIVE statement last in its transaction, or in a migration of its own.")


RULE = Rule(
    id="PS039", name="statements-after-access-exclusive",
    summary="More work after an ACCESS EXCLUSIVE lock in the same transaction prolongs the outage.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="BEGIN;\nALTER TABLE users ADD COLUMN note text;\nUPDATE accounts SET flag = true WHERE id = 1;\nCOMMIT;",
    good="BEGIN;\nUPDATE accounts SET flag = true WHERE id = 1;\nALTER TABLE users ADD COLUMN note text;\nCOMMIT;",
    safe="Take the strongest lock last, and commit right after it.",
    severity="warning", kinds=("*",), check=check, in_transaction=True, category="transactions",
)

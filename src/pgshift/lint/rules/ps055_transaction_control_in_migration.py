"""PS055 transaction-control-in-migration."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.unit.label is None or not ctx.unit.transactional:
        return  # a plain SQL file manages its own transactions
    what = str(ctx.body.get("kind", "")).removeprefix("TRANS_STMT_")
    if what in ("BEGIN", "START", "COMMIT", "ROLLBACK"):
        yield Hit(f"{what} inside a migration that pgshift already runs in a transaction: "
                  + ("a nested BEGIN only warns, and the COMMIT below ends the runner's transaction early."
                     if what in ("BEGIN", "START") else "it ends the runner's transaction, so the rest is not atomic."),
                  fix="Remove transaction control; use -- pgshift:no-transaction if you need several transactions.")


RULE = Rule(
    id="PS055", name="transaction-control-in-migration",
    summary="BEGIN/COMMIT inside a migration the runner already wraps in a transaction.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="COMMIT;",
    good="SELECT 1;",
    safe="Let the runner own the transaction, or mark the migration -- pgshift:no-transaction.",
    severity="error", kinds=("TransactionStmt",), check=check, applies_to_new_tables=True, category="transactions",
)

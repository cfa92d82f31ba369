"""PS055 transaction-control-in-migration."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.unit.label is None or not (ctx.unit.transactional or ctx.unit.boundaries):
        return  # a plain SQL file manages its own transactions
    what = str(ctx.body.get("kind", "")).removeprefix("TRANS_STMT_")
    if what == "ROLLBACK":
        yield Hit("ROLLBACK inside a migration: pgshift refuses to run it (it manages the transaction itself).",
                  fix="Remove it; a migration that fails is rolled back by the runner.")
    elif what in ("BEGIN", "START", "COMMIT") and ctx.unit.boundaries is None:
        # pgshift's runner skips these and runs the whole migration in one transaction; other tools
        # running the same file would end their transaction here.
        yield Hit(f"{what} inside a migration that runs in one transaction: pgshift skips it, so a COMMIT here "
                  "does not make the statements before it permanent on their own.",
                  fix="Remove transaction control; split the migration, or mark it -- pgshift:no-transaction, "
                      "if you need separate transactions.", severity="warning")


RULE = Rule(
    id="PS055", name="transaction-control-in-migration",
    summary="BEGIN/COMMIT/ROLLBACK inside a migration the runner already wraps in a transaction "
    "(BEGIN/COMMIT in another tool's files divide them into transactions, as that tool ran them).",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="ROLLBACK;",
    good="SELECT 1;",
    safe="Let the runner own the transaction, or mark the migration -- pgshift:no-transaction.",
    severity="error", kinds=("TransactionStmt",), check=check, applies_to_new_tables=True, category="transactions",
)

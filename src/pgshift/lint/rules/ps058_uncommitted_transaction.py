"""PS058 uncommitted-transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule

_END = re.compile(r"^\s*(commit|rollback|end|abort)\b", re.I)


def check(ctx: Ctx) -> Iterator[Hit]:
    if str(ctx.body.get("kind")) not in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        return
    if not any(_END.match(sql) for sql in ctx.rest):
        yield Hit("BEGIN without a matching COMMIT: the transaction stays open, holding every lock it took until "
                  "the session ends (or everything is rolled back).", fix="End the transaction with COMMIT;")


RULE = Rule(
    id="PS058", name="uncommitted-transaction",
    summary="A BEGIN that is never committed keeps its locks until the session ends.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="BEGIN;\nALTER TABLE users ADD COLUMN note text;",
    good="BEGIN;\nALTER TABLE users ADD COLUMN note text;\nCOMMIT;",
    safe="Close every explicit transaction with COMMIT.",
    severity="error", kinds=("TransactionStmt",), check=check, applies_to_new_tables=True,
    category="transactions",
)

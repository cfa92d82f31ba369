"""PS054 concurrent-index-not-robust."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    b = ctx.body
    if ctx.kind == "IndexStmt" and b.get("concurrent") and not b.get("if_not_exists"):
        yield Hit("A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind, and the retry then fails "
                  "with 'already exists'.", fix="CREATE INDEX CONCURRENTLY IF NOT EXISTS ... (and drop an INVALID "
                  "leftover before retrying)" if b.get("idxname") else "Name the index and use IF NOT EXISTS.")
    elif ctx.kind == "DropStmt" and b.get("concurrent") and not b.get("missing_ok"):
        yield Hit("DROP INDEX CONCURRENTLY without IF EXISTS fails on a retry after a partial run.",
                  fix="DROP INDEX CONCURRENTLY IF EXISTS ...")


RULE = Rule(
    id="PS054", name="concurrent-index-not-robust",
    summary="CONCURRENTLY index builds/drops should be retryable (IF NOT EXISTS / IF EXISTS).",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);",
    good="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);",
    safe="Use IF NOT EXISTS / IF EXISTS so a failed non-transactional migration can be re-run.",
    severity="note", kinds=("IndexStmt", "DropStmt"), check=check, category="transactions",
)

"""PS004 concurrently-in-transaction."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import cmds, has_option


def _concurrent_kind(ctx: Ctx) -> str | None:
    b = ctx.body
    if ctx.kind == "IndexStmt" and b.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if ctx.kind == "DropStmt" and b.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if ctx.kind == "ReindexStmt" and has_option(b.get("params"), "concurrently"):
        return "REINDEX CONCURRENTLY"
    if ctx.kind == "VacuumStmt" and b.get("is_vacuumcmd"):
        return "VACUUM"
    if ctx.kind == "AlterTableStmt":
        for cmd in cmds(b):
            part = (cmd.get("def") or {}).get("PartitionCmd", {})
            if cmd.get("subtype") == "AT_DetachPartition" and part.get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY"
    return None


def check(ctx: Ctx) -> Iterator[Hit]:
    what = _concurrent_kind(ctx)
    if what is None or not ctx.tx.active:
        return
    if ctx.tx.explicit or ctx.settings.assume_in_transaction:
        yield Hit(f"{what} cannot run inside a transaction block: the migration fails with "
                  "'cannot run inside a transaction block'.", severity="error",
                  fix="Move it to its own migration marked -- pgshift:no-transaction.")
    elif ctx.unit.has_other_statements:
        yield Hit(f"{what} shares a transactional migration with other statements: it cannot run in "
                  "the migration's transaction, so the migration is no longer atomic.", severity="warning",
                  fix="Move it to its own migration marked -- pgshift:no-transaction.")


RULE = Rule(
    id="PS004", name="concurrently-in-transaction",
    summary="CONCURRENTLY operations (and VACUUM) cannot run inside a transaction block.",
    lock="", blocks=(), rewrites=False, scans=False, versions="DETACH PARTITION CONCURRENTLY exists from 14.",
    bad="BEGIN;\nCREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);\nCOMMIT;",
    good="-- pgshift:no-transaction\nCREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);",
    safe="Put each CONCURRENTLY statement in its own migration with -- pgshift:no-transaction.",
    severity="error",
    kinds=("IndexStmt", "DropStmt", "ReindexStmt", "VacuumStmt", "AlterTableStmt"), check=check,
    applies_to_new_tables=True, category="transactions",
)

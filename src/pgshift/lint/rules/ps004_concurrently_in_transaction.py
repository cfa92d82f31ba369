"""PS004 concurrently-in-transaction."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    if not ctx.tx.active:  # first: an auto-committed statement need not have its facts decided
        return
    # The runner's own answer (pgshift.migrations.analysis): what it will run outside a transaction.
    what = ctx.facts.autocommit_reason(ctx.pg_version)
    if what is None:
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
    summary="CONCURRENTLY operations, VACUUM, ALTER SYSTEM and CREATE / DROP DATABASE or TABLESPACE cannot "
    "run inside a transaction block.",
    lock="", blocks=(), rewrites=False, scans=False,
    versions="DETACH PARTITION CONCURRENTLY exists from 14.",
    bad="BEGIN;\nCREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);\nCOMMIT;",
    good="-- pgshift:no-transaction\nCREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);",
    safe="Put each such statement in its own migration with -- pgshift:no-transaction.",
    severity="error",
    # ALTER TYPE ... ADD VALUE before 12 is PS028's.
    kinds=("IndexStmt", "DropStmt", "ReindexStmt", "VacuumStmt", "AlterTableStmt", "AlterSystemStmt",
           "CreatedbStmt", "DropdbStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt"),
    check=check, in_transaction=True, applies_to_new_tables=True, category="transactions",
)

"""PS028 enum-add-value-in-transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import qualified, strings


def check(ctx: Ctx) -> Iterator[Hit]:
    value = ctx.body.get("newVal")
    if not value or ctx.body.get("oldVal") or not ctx.tx.active:
        return
    enum = qualified(strings(ctx.body.get("typeName")))
    if ctx.pg_version < 12:
        yield Hit(f"ALTER TYPE {enum} ADD VALUE cannot run inside a transaction block before PostgreSQL 12: the "
                  "migration fails.", severity="error",
                  fix="Put it in its own migration marked -- pgshift:no-transaction.")
        return
    literal = re.compile(r"'" + re.escape(str(value).replace("'", "''")) + r"'")
    if any(literal.search(sql) for sql in ctx.rest):
        yield Hit(f"The new {enum} value '{value}' is used later in the same transaction: PostgreSQL refuses "
                  "('unsafe use of new value') until the ADD VALUE commits.", severity="error",
                  fix="Add the value in its own migration (or -- pgshift:no-transaction) before the one using it.")


RULE = Rule(
    id="PS028", name="enum-add-value-in-transaction",
    summary="ALTER TYPE ... ADD VALUE in a transaction: fails before PG 12, value unusable until commit after.",
    lock="", blocks=(), rewrites=False, scans=False,
    versions="Before PG 12 ADD VALUE cannot run in a transaction block; from 12 it can, but the new value "
    "cannot be used until commit.",
    bad="BEGIN;\nALTER TYPE trade_status ADD VALUE 'EXPIRED';\n"
    "UPDATE trades SET status = 'EXPIRED' WHERE id = 1;\nCOMMIT;",
    good="ALTER TYPE trade_status ADD VALUE IF NOT EXISTS 'EXPIRED';",
    safe="Add enum values in a migration of their own; use them from the next migration on.",
    severity="error", kinds=("AlterEnumStmt",), check=check, in_transaction=True,
    applies_to_new_tables=True, category="transactions",
)

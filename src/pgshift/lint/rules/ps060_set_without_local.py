"""PS060 set-without-local."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule

_SETS = ("VAR_SET_VALUE", "VAR_SET_DEFAULT", "VAR_SET_CURRENT")
_TIMEOUTS = ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")


def check(ctx: Ctx) -> Iterator[Hit]:
    body = ctx.body
    if body.get("is_local") or str(body.get("kind")) not in _SETS or not ctx.in_transaction:
        return
    name = body.get("name") or "the setting"
    if name in ("transaction_isolation", "transaction_read_only", "transaction_deferrable"):
        return  # SET TRANSACTION ...: only ever for the current transaction
    if name in _TIMEOUTS:
        return  # what PS037/PS038 advise at the top of a migration; a runner sets its own for each migration
    yield Hit(f"SET {name} without LOCAL outlives the migration's transaction: it stays on the connection for "
              "the migrations after this one, and behind a connection pool for the next client that gets it.",
              fix=f"SET LOCAL {name} = ...;  -- ends with the transaction (or: -- pgshift:set {name}=...)")


RULE = Rule(
    id="PS060", name="set-without-local",
    summary="SET without LOCAL in a transactional migration leaks to the next migration or pooled client.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="SET work_mem = '256MB';\nUPDATE orders SET total = price * quantity WHERE total IS NULL;",
    good="SET LOCAL work_mem = '256MB';\nUPDATE orders SET total = price * quantity WHERE total IS NULL;",
    safe="Use SET LOCAL inside a transaction; around a non-transactional statement, SET then RESET; or the "
         "`-- pgshift:set name=value` directive, which does both for every statement of the migration.",
    severity="warning", kinds=("VariableSetStmt",), check=check, in_transaction=True, applies_to_new_tables=True,
    category="transactions",
)

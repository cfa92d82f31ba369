"""PS042 dml-with-ddl-in-transaction."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname

_DML = ("UpdateStmt", "DeleteStmt", "InsertStmt")


def check(ctx: Ctx) -> Iterator[Hit]:
    tx = ctx.tx
    if not tx.active or "dml_ddl" in tx.flags:
        return
    created = ctx.unit.created
    if ctx.kind in _DML:
        target = relname(ctx.body.get("relation"))
        locked = [t for t in tx.ddl if t not in created]
        if locked and target not in created:
            tx.flags.add("dml_ddl")
            yield Hit(f"DML on {target} runs in the same transaction as DDL on {locked[0]}: the DDL's lock is held "
                      "for as long as the data change takes.", table=target,
                      fix="Commit the DDL first (separate migration), then change data in batches.")
    elif ctx.locks_existing() and any(t not in created for t in tx.dml):
        table = ctx.locks_existing()[0][0]
        tx.flags.add("dml_ddl")
        yield Hit(f"DDL on {table} after DML in the same transaction: the DML's row locks and the DDL lock are "
                  "held together until commit.", table=table,
                  fix="Split data changes and schema changes into separate migrations.")


RULE = Rule(
    id="PS042", name="dml-with-ddl-in-transaction",
    summary="Data changes and schema changes in one transaction hold the DDL lock for the data change.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="BEGIN;\nALTER TABLE users ADD COLUMN phone text;\nUPDATE users SET phone = '' WHERE id = 1;\nCOMMIT;",
    good="BEGIN;\nUPDATE users SET phone = '' WHERE id = 1;\nCOMMIT;",
    safe="Separate schema migrations from data migrations; run data changes in batches.",
    severity="warning", kinds=("*",), check=check, in_transaction=True, category="dml",
)

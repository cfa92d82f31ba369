"""PS044 batch-loop-single-transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import walk

_LOOP = re.compile(r"\b(loop|while|for)\b", re.I)
_DML = re.compile(r"\b(update|delete)\b", re.I)
_COMMIT = re.compile(r"\bcommit\b", re.I)


def check(ctx: Ctx) -> Iterator[Hit]:
    for node in walk(ctx.body.get("args") or []):
        text = node.get("String", {}).get("sval") if "String" in node else None
        if not isinstance(text, str) or not (_LOOP.search(text) and _DML.search(text)):
            continue
        if not _COMMIT.search(text):
            yield Hit("This DO block updates in a loop but never commits: every batch runs in ONE transaction, so "
                      "row locks, WAL and dead rows accumulate exactly as in a single big UPDATE.",
                      fix="Run batches from the client (one transaction each), or use a PROCEDURE / DO block with "
                      "COMMIT after each batch in a -- pgshift:no-transaction migration.")
        elif ctx.tx.active:
            yield Hit("COMMIT inside a DO block fails ('invalid transaction termination') when the migration runs "
                      "in a transaction.", severity="error",
                      fix="Mark the migration -- pgshift:no-transaction.")
        return


RULE = Rule(
    id="PS044", name="batch-loop-single-transaction",
    summary="A batching loop in a DO block without COMMIT is still one big transaction.",
    lock="ROW EXCLUSIVE", blocks=(), rewrites=False, scans=True, versions="COMMIT inside DO works from PG 11, outside "
    "a transaction block only.",
    bad="DO $$ BEGIN LOOP UPDATE t SET c = 1 WHERE id IN (SELECT id FROM t WHERE c = 0 LIMIT 1000); "
    "EXIT WHEN NOT FOUND; END LOOP; END $$;",
    good="-- pgshift:no-transaction\n"
    "DO $$ BEGIN LOOP UPDATE t SET c = 1 WHERE id IN (SELECT id FROM t WHERE c = 0 LIMIT 1000); "
    "EXIT WHEN NOT FOUND; COMMIT; END LOOP; END $$;",
    safe="Commit after each batch (procedure or non-transactional DO), or drive batches from the client.",
    severity="warning", kinds=("DoStmt",), check=check, applies_to_new_tables=True, category="dml",
)

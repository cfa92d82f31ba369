"""PS043 update-limit: ``UPDATE/DELETE ... LIMIT`` is not PostgreSQL (the playbook's own mistake)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import walk

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_DML_LIMIT = re.compile(r"\b(update|delete)\b[^;]*?\blimit\b", re.I | re.S)
_FIX = ("UPDATE t SET ... WHERE id IN (SELECT id FROM t WHERE <condition> LIMIT 10000);  -- LIMIT belongs in a "
        "subquery\n-- or WHERE ctid = ANY (ARRAY(SELECT ctid FROM t WHERE <condition> LIMIT 10000))")


def scan(sql: str) -> Iterator[Hit]:
    for part in _COMMENTS.sub(" ", sql).split(";"):
        match = _DML_LIMIT.search(part)
        if match and "select" not in part[match.start():].lower():
            verb = match.group(1).upper()
            yield Hit(f"{verb} ... LIMIT is not valid PostgreSQL: the statement fails with a syntax error "
                      "(inside a function body only when it runs).", fix=_FIX)
            return


def check(ctx: Ctx) -> Iterator[Hit]:
    for node in walk(ctx.body.get("args") or ctx.body.get("options") or []):
        text = node.get("String", {}).get("sval") if "String" in node else None
        if isinstance(text, str) and "limit" in text.lower():
            yield from scan(text)


RULE = Rule(
    id="PS043", name="update-limit",
    summary="UPDATE/DELETE ... LIMIT does not exist in PostgreSQL (also caught inside DO and function bodies).",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="DO $$ BEGIN UPDATE huge_table SET col = 1 WHERE cond LIMIT 10000; END $$;",
    good="DO $$ BEGIN UPDATE huge_table SET col = 1 WHERE id IN (SELECT id FROM huge_table WHERE cond LIMIT 10000); "
    "END $$;",
    safe="Put LIMIT in a subquery that selects the keys (or ctids) of the batch.",
    severity="error", kinds=("DoStmt", "CreateFunctionStmt"), check=check, applies_to_new_tables=True,
    category="dml", on_parse_error=scan,
)

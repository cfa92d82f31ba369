"""PS051 identifier-too-long."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pglast import parser

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule

# The parser already truncated long names in the tree, so look at the statement's tokens. A run of name
# characters is only tried from its first one (the lookbehind), not again from each character inside it.
_LONG = re.compile(r'(?<![\w$])[\w$]{64,}|"[^"]{62,}"')


def check(ctx: Ctx) -> Iterator[Hit]:
    sql = ctx.statement.sql
    if sql.isascii() and not _LONG.search(sql):
        return
    seen: set[str] = set()
    for token in parser.scan(sql):
        if token.name != "IDENT":
            continue
        value = sql[token.start: token.end + 1].strip('"')
        if len(value.encode()) > 63 and value not in seen:
            seen.add(value)
            yield Hit(f"The identifier {value!r} is {len(value.encode())} bytes: PostgreSQL silently truncates it "
                      f"to 63 ({value.encode()[:63].decode(errors='ignore')!r}), so later references by the full "
                      "name fail or collide.", fix="Shorten it to at most 63 bytes.")


RULE = Rule(
    id="PS051", name="identifier-too-long",
    summary="Identifiers over 63 bytes are silently truncated.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE INDEX index_on_orders_customer_id_and_created_at_and_status_for_reporting ON orders "
    "(customer_id, created_at, status);",
    good="CREATE INDEX CONCURRENTLY orders_customer_created_status_idx ON orders (customer_id, created_at, status);",
    safe="Keep names within 63 bytes.",
    severity="error", kinds=("CreateStmt", "AlterTableStmt", "IndexStmt", "RenameStmt", "CreateTrigStmt"),
    check=check, applies_to_new_tables=True, category="types",
)

"""PS061 index-before-bulk-load."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def _bulk_target(ctx: Ctx) -> tuple[str, str] | None:
    """(table, what) for a statement that writes many rows at once: INSERT ... SELECT, COPY FROM, an
    UPDATE of every row."""
    body = ctx.body
    if ctx.facts.bulk_loaded:  # the one statement analysis's bulk loads (migrate ANALYZEs them afterwards)
        return relname(body.get("relation")), "INSERT ... SELECT" if ctx.kind == "InsertStmt" else "COPY FROM"
    if ctx.kind == "UpdateStmt" and not body.get("whereClause"):
        return relname(body.get("relation")), "UPDATE of every row"
    return None


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind == "IndexStmt":
        ctx.unit.flags.add(f"PS061:{relname(ctx.body.get('relation'))}")  # seen by the writes after it
        return
    target = _bulk_target(ctx)
    if target is None or f"PS061:{target[0]}" not in ctx.unit.flags:
        return
    table, what = target
    yield Hit(f"{what} into {table} after this migration created an index on it: every row updates the index "
              "as it is written, slower than building the index once over the loaded rows.", table=table,
              fix=f"Load the data first, then create the index on {table}.")


RULE = Rule(
    id="PS061", name="index-before-bulk-load",
    summary="An index created before a bulk load into the same table makes the load slower.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE events_archive (id bigint, at timestamptz);\n"
        "CREATE INDEX events_archive_at ON events_archive (at);\n"
        "INSERT INTO events_archive SELECT id, at FROM events WHERE at < '2024-01-01';",
    good="CREATE TABLE events_archive (id bigint, at timestamptz);\n"
         "INSERT INTO events_archive SELECT id, at FROM events WHERE at < '2024-01-01';\n"
         "CREATE INDEX events_archive_at ON events_archive (at);",
    safe="Create indexes after data operations: load or rewrite the rows, then build the index once.",
    severity="note", kinds=("IndexStmt", "InsertStmt", "CopyStmt", "UpdateStmt"), check=check,
    applies_to_new_tables=True, category="dml",
)

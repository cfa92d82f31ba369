"""Live context from a server: table sizes (for impact ranking) and the major version.

Sizes come from pg_total_relation_size, which takes a lock on each table: behind a session that
holds an ACCESS EXCLUSIVE lock (a stuck migration, say) it would wait for as long as that lasts.
So it is asked with a short lock_timeout, and a table held that long gets the catalog's estimate
(its pages as of the last VACUUM or ANALYZE) instead: lint and the checklist never hang on it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgshift.db.connect import connect, server_major
from pgshift.lint.model import TableSize

LOCK_WAIT = "500ms"
_TABLES = """
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
"""
# Pages of the table, its TOAST table and its indexes, as the catalog last recorded them.
_ESTIMATE = """
(c.relpages::bigint + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0)
 + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = c.oid), 0)) * current_setting('block_size')::bigint
"""
_SIZES = f"SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) {_TABLES}"
_ESTIMATES = f"SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, {_ESTIMATE} {_TABLES}"


def _without_waiting(conn: psycopg.Connection[Any], exact: str, estimate: str,
                     params: tuple[Any, ...] = ()) -> list[Any]:
    """``exact``'s rows, or ``estimate``'s when a table stays locked past LOCK_WAIT."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_WAIT,))
            return conn.execute(exact, params or None).fetchall()
    except psycopg.errors.LockNotAvailable:
        return conn.execute(estimate, params or None).fetchall()


def read_sizes(conn: psycopg.Connection[Any]) -> dict[str, TableSize]:
    """Rows (planner estimate, reltuples) and total bytes per table, keyed like the linter's names.

    A never-analysed table has reltuples -1 (PG 14+) or 0: its size on disk still ranks it."""
    sizes: dict[str, TableSize] = {}
    for schema, name, rows, total in _without_waiting(conn, _SIZES, _ESTIMATES):
        key = name if schema == "public" else f"{schema}.{name}"
        sizes[key] = TableSize(int(rows), int(total))
    return sizes


def table_bytes(conn: psycopg.Connection[Any], table: str) -> int:
    """Total bytes of ``table`` (a name as SQL would resolve it; 0 if there is none)."""
    rows = _without_waiting(
        conn, "SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
        f"SELECT coalesce((SELECT {_ESTIMATE} FROM pg_class c WHERE c.oid = to_regclass(%s)), 0)", (table,))
    return int(rows[0][0]) if rows else 0


def live_context(url: str) -> tuple[int, dict[str, TableSize]]:
    """(server major version, table sizes) for ``url``."""
    with connect(url, application_name="pgshift-lint") as conn:
        return server_major(conn), read_sizes(conn)

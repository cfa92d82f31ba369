"""Table sizes that never wait behind another session's lock.

pg_total_relation_size takes a lock on each table: behind a session that holds an ACCESS
EXCLUSIVE lock (a stuck migration, say) it would wait for as long as that lasts. So it is asked
with a short lock_timeout, and a table held that long gets the catalog's estimate instead (its
pages as of the last VACUUM or ANALYZE).
"""

from __future__ import annotations

from typing import Any

import psycopg

LOCK_WAIT = "500ms"
# Pages of table c, its TOAST table and its indexes, as the catalog last recorded them.
ESTIMATE = """
(c.relpages::bigint + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0)
 + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = c.oid), 0)) * current_setting('block_size')::bigint
"""


def without_waiting(conn: psycopg.Connection[Any], exact: str, estimate: str,
                    params: tuple[Any, ...] = ()) -> list[Any]:
    """``exact``'s rows, or ``estimate``'s when a table stays locked past LOCK_WAIT."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_WAIT,))
            return conn.execute(exact, params or None).fetchall()
    except psycopg.errors.LockNotAvailable:
        return conn.execute(estimate, params or None).fetchall()


def table_bytes(conn: psycopg.Connection[Any], table: str) -> int:
    """Total bytes of ``table`` (a name as SQL would resolve it; 0 if there is none)."""
    rows = without_waiting(
        conn, "SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
        f"SELECT coalesce((SELECT {ESTIMATE} FROM pg_class c WHERE c.oid = to_regclass(%s)), 0)", (table,))
    return int(rows[0][0]) if rows else 0

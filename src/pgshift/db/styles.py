"""How dates print in pgshift's sessions, and in the migrations' own statements.

psycopg reads a ``timestamptz`` only in DateStyle ISO. A database (or role) whose default is another
(``ALTER DATABASE app SET DateStyle = 'SQL, DMY'``) made every pgshift query that returns one fail
with a traceback. Each pgshift session therefore prints dates as ISO, keeping the database's
day/month order, which decides how a date typed in a statement is read. A migration's own statements
run under the database's DateStyle again (:class:`pgshift.runner.engine.StepEngine`), so what they
compute, ``created_at::text`` say, is what psql would have computed.

psycopg reads an interval only in IntervalStyle postgres, but pgshift's queries return durations as
numbers (``extract(epoch FROM ...)``), never intervals, so IntervalStyle is left alone: a session
``SET`` of it through a pooler in transaction mode would stay on the server connection for the
application's next client (PgBouncer restores DateStyle per client, and IntervalStyle only from 1.20
when configured to).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import psycopg


@dataclass(frozen=True, slots=True)
class Style:
    name: str  # DateStyle
    database: str  # the session's default: the database's, the role's or the server's
    pinned: str  # what pgshift's own queries run under


_PINNED: WeakKeyDictionary[psycopg.Connection[Any], tuple[Style, ...]] = WeakKeyDictionary()


def pin_output_styles(conn: psycopg.Connection[Any]) -> None:
    """Print dates as psycopg reads them, for the life of ``conn``'s session. Costs nothing in the
    usual case: the server reports DateStyle when the session starts."""
    datestyle = conn.info.parameter_status("DateStyle") or "ISO, MDY"
    if datestyle.upper().startswith("ISO"):
        return
    order = datestyle.split(",")[-1].strip() if "," in datestyle else "MDY"
    _PINNED[conn] = (Style("DateStyle", datestyle, f"ISO, {order}"),)
    use_pinned_styles(conn)
    if not conn.autocommit:
        conn.commit()  # a session setting made in a transaction that rolls back is undone


def database_styles(conn: psycopg.Connection[Any]) -> tuple[Style, ...]:
    """The styles pgshift changed on ``conn`` (none when the session's DateStyle was already ISO)."""
    return _PINNED.get(conn, ())


def use_pinned_styles(conn: psycopg.Connection[Any]) -> None:
    """pgshift's styles again for the session, after the database's were set for user statements."""
    if not (conn.broken or conn.closed):
        for style in database_styles(conn):
            conn.execute("SELECT set_config(%s, %s, false)", (style.name, style.pinned))


@contextmanager
def in_database_styles(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """User statements (a backfill's SET expression) run meanwhile under the database's own DateStyle,
    pgshift's again after; for a connection in autocommit, outside the step engine (which sets them
    with each migration's own settings)."""
    for style in database_styles(conn):
        conn.execute("SELECT set_config(%s, %s, false)", (style.name, style.database))
    try:
        yield
    finally:
        use_pinned_styles(conn)

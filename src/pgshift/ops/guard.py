"""The rewrite guard: stop any statement that would rewrite a table larger than ``rewrite_guard``.

PostgreSQL fires the ``table_rewrite`` event trigger after ALTER TABLE / ALTER TYPE has decided to
rewrite a table and before it copies a single row, so raising there rolls the statement back having
touched no data. The trigger is database-wide, but it only acts in sessions that set the custom
setting ``pgshift.rewrite_guard_bytes`` -- pgshift sets it on its own deploy connection, so the
application's sessions (and other tools) are never stopped by it.

Only a superuser (or, on some managed services, their admin role) may create an event trigger. When
the runner's role may not and the trigger is not installed yet, the guard is unavailable and pgshift
warns instead of failing; a superuser can install it once with :func:`install`, or by running
``pgshift migrate`` with the guard set (the trigger then guards every later pgshift run).
"""

from __future__ import annotations

import warnings
from typing import Any

import psycopg
from psycopg import sql

from pgshift.units import Size
from pgshift.units import parse_size as parse_size

GUC = "pgshift.rewrite_guard_bytes"
TRIGGER = "pgshift_rewrite_guard"
FUNCTION = "rewrite_guard"
SQLSTATE = "PGRWG"  # raised by the trigger; any statement failing with it was stopped by the guard

_FUNCTION_BODY = """
DECLARE
    limit_bytes bigint := nullif(current_setting('pgshift.rewrite_guard_bytes', true), '')::bigint;
    rel oid := pg_event_trigger_table_rewrite_oid();
    size bigint;
    name text;
BEGIN
    IF limit_bytes IS NULL OR limit_bytes <= 0 THEN
        RETURN;  -- not a guarded pgshift session
    END IF;
    size := pg_total_relation_size(rel);
    IF size > limit_bytes THEN
        SELECT format('%I.%I', n.nspname, c.relname) INTO name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
        RAISE EXCEPTION USING ERRCODE = 'PGRWG',
            MESSAGE = format('pgshift rewrite guard: %s would rewrite table %s of %s (%s bytes, with indexes '
                             'and TOAST), over the limit rewrite_guard = %s (%s bytes)', tg_tag,
                             name, pg_size_pretty(size), size, pg_size_pretty(limit_bytes), limit_bytes),
            HINT = 'The statement was stopped before it touched data. Use an expand/contract operation '
                   '(for example change_column_type) or raise rewrite_guard for this run.';
    END IF;
END
"""


class RewriteGuardUnavailable(UserWarning):
    """The rewrite guard is configured but cannot work for this role (no event trigger)."""


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT evtenabled <> 'D' FROM pg_event_trigger WHERE evtname = %s", (TRIGGER,)).fetchone()
    return bool(row and row[0])


def install(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create (or update) the guard function in ``schema`` and the event trigger; needs a superuser."""
    function = sql.Identifier(schema, FUNCTION)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS event_trigger LANGUAGE plpgsql AS {}")
                     .format(function, sql.Literal(_FUNCTION_BODY)))
        conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(TRIGGER)))
        conn.execute(sql.SQL("CREATE EVENT TRIGGER {} ON table_rewrite EXECUTE FUNCTION {}()").format(
            sql.Identifier(TRIGGER), function))


def enable(conn: psycopg.Connection[Any], schema: str, limit: Size | str | int) -> str | None:
    """Arm the guard for this session (the runner's own connection). Returns a warning, also issued
    as a :class:`RewriteGuardUnavailable`, when the guard cannot work; None when armed or off."""
    limit_bytes = limit.bytes if isinstance(limit, Size) else parse_size(limit)
    if limit_bytes == 0:
        return None  # off: not even a round trip
    if not _installed(conn):
        try:
            install(conn, schema)
        except psycopg.errors.InsufficientPrivilege:
            # Not rolsuper alone: some managed services let their admin role create event triggers.
            message = (f"rewrite_guard = {limit} is set, but the guard is unavailable: role {conn.info.user!r} is not "
                       "a superuser, and only a superuser may create the table_rewrite event trigger the guard "
                       "needs, so statements that rewrite large tables will NOT be stopped. A superuser can "
                       "install it once by running `pgshift migrate` with rewrite_guard set (it then guards every "
                       "later run, whatever the role); where there is none (a managed service), set "
                       "rewrite_guard = 0 to silence this warning and rely on `pgshift lint` and `pgshift "
                       "rehearse` to catch table rewrites.")
            warnings.warn(message, RewriteGuardUnavailable, stacklevel=2)
            return message
    conn.execute("SELECT set_config(%s, %s, false)", (GUC, str(limit_bytes)))
    return None


def disable(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT set_config(%s, '0', false)", (GUC,))

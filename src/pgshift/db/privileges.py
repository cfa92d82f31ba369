"""Role privileges that some commands need beyond owning the database (docs/managed.md).

On a managed service the role in database_url owns its database but is no superuser, and may
lack CREATEDB. Commands that need more ask up front, before they change anything, so that a
missing privilege ends in one paragraph naming it and nothing left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgshift.errors import PgshiftError


class PrivilegeMissing(PgshiftError):
    """The role in database_url lacks a privilege the command needs (CREATEDB); nothing was changed."""

    code = "privilege"
    exit_code = 27


def can_create_databases(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def require_createdb(conn: psycopg.Connection[Any], needs: str, *, instead: str) -> None:
    """Raise :class:`PrivilegeMissing` unless the connection's role may CREATE DATABASE.

    ``needs`` says what the command creates the database for; ``instead`` is what the user can do
    without the privilege (a command that works as this role)."""
    if can_create_databases(conn):
        return
    role = conn.info.user
    raise PrivilegeMissing(
        f"{needs} needs the CREATEDB privilege, which role {role!r} (the user in database_url) does not have; "
        "nothing was created or changed.",
        hint=f"have an administrator run ALTER ROLE {sql.Identifier(role).as_string(conn)} CREATEDB (a managed "
        f"service's admin role may grant it), or {instead}.",
    )


# Tables and sequences pg_dump reads (extension members are the extension's to recreate).
_UNREADABLE = r"""
SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner),
       has_schema_privilege(n.oid, 'USAGE') AS schema_usage
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
  AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))
ORDER BY 1
"""


# Tables whose rows row-level security would filter for this role: pg_dump turns row_security off
# and then refuses to dump them at all, rather than dump part of them.
_ROW_FILTERED = r"""
SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner), c.relforcerowsecurity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
  AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
ORDER BY 1
"""


@dataclass(frozen=True)
class DumpPurpose:
    """What a pg_dump of the whole database is for, as the refusals below say it."""

    reads: str  # the sentence's subject: what reads every table
    outcome: str  # what did not happen
    again: str  # what to run after the fix
    command: str  # the command whose database_url may name another role


BACKUP = DumpPurpose("A backup", "no backup was written", "back up again", "`pgshift backup`")
REHEARSAL_COPY = DumpPurpose(
    "The rehearsal's copy of the database (pg_dump | pg_restore: another session is connected, or the role "
    "does not own the database)", "no clone was made", "rehearse again", "`pgshift rehearse`")


def require_readable_tables(conn: psycopg.Connection[Any], purpose: DumpPurpose = BACKUP) -> None:
    """Raise :class:`PrivilegeMissing` naming the tables and sequences pg_dump could not read, or whose
    rows row-level security would hide from it."""
    rows = conn.execute(_UNREADABLE).fetchall()
    if not rows:
        _require_unfiltered_rows(conn, purpose)
        return
    role = conn.info.user
    shown = ", ".join(f"{name} (owner {owner}{'' if usage else ', schema without USAGE'})"
                      for name, owner, usage in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    first = rows[0][0]
    raise PrivilegeMissing(
        f"{purpose.reads} reads every table and sequence of the database, and role {role!r} (the user in "
        f"database_url) lacks the SELECT privilege on {len(rows)} of them: {shown}; {purpose.outcome}.",
        hint=f"have their owner (or an administrator) run GRANT SELECT ON {first} TO "
        f"{sql.Identifier(role).as_string(conn)} (and GRANT USAGE ON the schema where it lacks USAGE), then "
        f"{purpose.again}.",
    )


def _require_unfiltered_rows(conn: psycopg.Connection[Any], purpose: DumpPurpose) -> None:
    rows = conn.execute(_ROW_FILTERED).fetchall()
    if not rows:
        return
    role = conn.info.user
    shown = ", ".join(f"{name} (owner {owner}{', FORCE ROW LEVEL SECURITY' if forced else ''})"
                      for name, owner, forced in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    raise PrivilegeMissing(
        f"{purpose.reads} reads every row of every table, and row-level security policies would hide rows of "
        f"{len(rows)} table(s) from role {role!r} (the user in database_url): {shown}. pg_dump refuses to dump "
        f"such a table rather than dump part of it; {purpose.outcome}.",
        hint=f"use a role that bypasses row-level security: have an administrator run ALTER ROLE "
        f"{sql.Identifier(role).as_string(conn)} BYPASSRLS, or set database_url to a role that has it (or a "
        f"superuser) for {purpose.command}.",
    )


def require_database_owner(conn: psycopg.Connection[Any], needs: str) -> None:
    """Raise :class:`PrivilegeMissing` unless the role owns the connection's database (or is a
    member of its owner role, which PostgreSQL counts as owning it)."""
    row = conn.execute("SELECT current_database(), pg_get_userbyid(datdba), pg_has_role(datdba, 'MEMBER') "
                       "FROM pg_database WHERE datname = current_database()").fetchone()
    if row is None or row[2]:
        return
    database, owner, _ = row
    role = conn.info.user
    raise PrivilegeMissing(
        f"{needs} needs ownership of database {database}, which belongs to role {owner!r}, not to role {role!r} "
        "(the user in database_url); nothing was created or changed.",
        hint=f"run it with database_url naming {owner!r}, or have an administrator run GRANT "
        f"{sql.Identifier(owner).as_string(conn)} TO {sql.Identifier(role).as_string(conn)}.",
    )

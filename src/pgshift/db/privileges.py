"""Role privileges that some commands need beyond owning the database (docs/managed.md).

On a managed service the role in database_url owns its database but is no superuser, and may
lack CREATEDB. Commands that need more ask up front, before they change anything, so that a
missing privilege ends in one paragraph naming it and nothing left behind.
"""

from __future__ import annotations

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

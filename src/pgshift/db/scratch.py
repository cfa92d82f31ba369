"""Databases pgshift makes for a while (rehearse's clones, ``--restore-test``'s scratch copies), and how
the next run finds the ones a killed run (kill -9, a crash, a lost machine) left behind.

A run marks its database with a comment while it works and holds a claim on its name (a session
advisory lock, gone with the session that holds it). The next run drops a database that is marked,
whose name matches its kind, that nobody claims and that nobody is connected to (no FORCE); a database
a person keeps, or one whose run is alive, is left alone. An advisory lock conflicts only with locks
taken in the same database, so a sweep also reads pg_locks, which lists every database's: a claim made
from a connection to another database (a second verification given another --database-url) counts too.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

CLAIM_CLASS = 0x70677368  # advisory-lock class id of the claims ("pgsh")


def claim(holder: psycopg.Connection[Any], name: str) -> None:
    """Claim ``name`` for as long as ``holder``'s session lasts."""
    holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (CLAIM_CLASS, name))


def mark(admin: psycopg.Connection[Any], name: str, comment: str) -> None:
    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def sweep_marked(admin: psycopg.Connection[Any], comment: str, pattern: re.Pattern[str], *,
                 own: str | None = None) -> list[str]:
    """Drop the databases marked ``comment`` whose names match ``pattern``, but ``own``, that no live
    session claims and nobody is connected to; their names."""
    dropped: list[str] = []
    rows = admin.execute(
        "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') = %s", (comment,)).fetchall()
    for (name,) in rows:
        if name == own or not pattern.fullmatch(name):
            continue
        row = admin.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CLAIM_CLASS, name)).fetchone()
        if not (row and row[0]):
            continue  # its run is still going
        if _claimed_elsewhere(admin, name):
            admin.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_CLASS, name))
            continue
        try:
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))  # no FORCE: in use is not left
            dropped.append(name)
        except (pgerrors.ObjectInUse, pgerrors.InsufficientPrivilege, pgerrors.InvalidCatalogName):
            pass
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_CLASS, name))
    return dropped


def _claimed_elsewhere(admin: psycopg.Connection[Any], name: str) -> bool:
    """Whether a session of another database claims ``name`` (pg_advisory_lock(int4, int4) shows in
    pg_locks as classid, objid and objsubid 2, the keys read as oids)."""
    row = admin.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = %s::int4::oid AND objid = hashtext(%s)::oid AND objsubid = 2 AND pid <> pg_backend_pid())",
        (CLAIM_CLASS, name)).fetchone()
    return bool(row and row[0])

"""Is the deploy connection really one server session? A transaction-mode pooler (PgBouncer with
``pool_mode = transaction``, and the like) hands each transaction whatever server connection is
free: the deploy lock (a session advisory lock) and the session settings would stay behind on a
connection another client then uses, and the next statement would run without them.

Judged by behaviour, not by product: one setting is set in a transaction, a second connection to
the same URL opens a transaction, and the first connection looks again. A pooler that reuses
server connections (PgBouncer's default is last in, first out) gives the second connection the
server session the first just released; a direct connection never shares its session, so on one
the probe cannot misfire.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import psycopg
from psycopg import sql

from pgshift.db.connect import connect, describe_target
from pgshift.errors import AuthenticationFailed, ConfigError, ConnectionFailed, PgshiftError

PROBE_SETTING = "pgshift.session_probe"
_LOOKS = 3  # transactions of the deploy connection checked while the second one holds its own


class PooledSession(PgshiftError):
    """The deploy connection goes through a transaction-mode pooler (set migrate_url to a direct one)."""

    code = "pooled-session"
    exit_code = 35


def pooled_session_evidence(conn: psycopg.Connection[Any], url: str, application_name: str) -> str | None:
    """What shows that ``conn`` (autocommit) does not keep one server session, or None when it does."""
    token = secrets.token_hex(8)
    row = conn.execute("SELECT pg_backend_pid(), set_config(%s, %s, false)", (PROBE_SETTING, token)).fetchone()
    assert row is not None
    pid = int(row[0])
    try:
        try:
            other = connect(url, application_name=f"{application_name} session probe", autocommit=False)
        except (ConnectionFailed, AuthenticationFailed):
            # No second connection (a role's CONNECTION LIMIT, max_connections): the deploy connection's own
            # transactions are still checked, only the pooler's reuse is not provoked.
            return _look_again(conn, pid, token)
        with other:
            held = other.execute("SELECT pg_backend_pid()").fetchone()  # its transaction holds a server session
            assert held is not None
            if int(held[0]) == pid:
                return (f"a second connection to the same URL was served by the same server session (backend pid "
                        f"{pid}) while the first was idle")
            return _look_again(conn, pid, token)
    finally:
        with contextlib.suppress(psycopg.Error):  # not left behind on a pooled server session either
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(*PROBE_SETTING.split("."))))


def _look_again(conn: psycopg.Connection[Any], pid: int, token: str) -> str | None:
    for _ in range(_LOOKS):
        again = conn.execute("SELECT pg_backend_pid(), current_setting(%s, true)", (PROBE_SETTING,)).fetchone()
        assert again is not None
        if int(again[0]) != pid:
            return f"the backend pid changed from {pid} to {again[0]} between two transactions"
        if again[1] != token:
            return f"the session setting {PROBE_SETTING}, set in one transaction, was gone in the next"
    return None


def refuse_pooled_session(conn: psycopg.Connection[Any], url: str, setting: str, application_name: str) -> None:
    """Raise PooledSession when the deploy connection ``conn`` (opened from ``setting``) is pooled per transaction."""
    evidence = pooled_session_evidence(conn, url, application_name)
    if evidence is None:
        return
    target = describe_target(url)
    if setting == "migrate_url":
        hint = ("point migrate_url at the PostgreSQL server itself (its host and port, not the pooler's), or at a "
                "pooler database in session mode.")
    else:
        hint = ("set migrate_url (in pgshift.toml, or PGSHIFT_MIGRATE_URL) to a direct connection to the PostgreSQL "
                "server (its own host and port, not the pooler's): pgshift then runs its deploy session there, "
                "and database_url can stay on the pooler.")
    raise PooledSession(
        f"Refusing to deploy through {target} ({setting}): it behaves like a connection pooler in transaction mode "
        f"(such as PgBouncer with pool_mode = transaction): {evidence}. pgshift's deploy lock is a session "
        "advisory lock and its lock_timeout, statement_timeout and rewrite guard are session settings; through "
        "such a pooler they would be silently lost between transactions or left on a server connection other "
        "clients use. Nothing was changed.",
        hint=hint,
    )


_IDENTITY = ("SELECT current_database(), (SELECT oid FROM pg_database WHERE datname = current_database()), "
             "pg_postmaster_start_time()")


def refuse_another_database(conn: psycopg.Connection[Any], migrate_url: str, database_url: str,
                            application_name: str) -> None:
    """The deploy connection (from migrate_url) must reach the database database_url names: same database on
    the same running server (name, oid, postmaster start). Skipped when database_url cannot be reached from here."""
    try:
        other = connect(database_url, application_name=f"{application_name} identity check", prepare_threshold=None)
    except (ConnectionFailed, AuthenticationFailed):
        return
    with other:
        theirs = other.execute(_IDENTITY).fetchone()
    ours = conn.execute(_IDENTITY).fetchone()
    if ours is None or theirs is None or tuple(ours) == tuple(theirs):
        return
    raise ConfigError(
        f"migrate_url and database_url reach different databases: migrate_url reaches {describe_target(migrate_url)} "
        f"(database {ours[0]}, server started {ours[2]:%Y-%m-%d %H:%M:%S}), database_url reaches "
        f"{describe_target(database_url)} (database {theirs[0]}, server started {theirs[2]:%Y-%m-%d %H:%M:%S}). "
        "migrate_url is the direct connection to the database the application uses through database_url; "
        "nothing was changed.",
        hint="point migrate_url at the same database on the same server as database_url.",
    )

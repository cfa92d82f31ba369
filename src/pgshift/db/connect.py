"""Connections with clear errors and masked passwords."""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg import conninfo

from pgshift.db.masking import _KV_PASSWORD, _QUERY_PASSWORD, _URL_PASSWORD
from pgshift.db.masking import mask_password as mask_password
from pgshift.db.styles import pin_output_styles
from pgshift.errors import AuthenticationFailed, ConfigError, ConnectionFailed, DatabaseClosed

# libpq rejects a bad option value before connecting; that is the setting's fault, not the server's.
_BAD_VALUE = re.compile(r'invalid (?:(?P<option>\w+) value: "(?P<value>[^"]*)"'
                        r'|integer value "(?P<int_value>[^"]*)" for connection option "(?P<int_option>\w+)")')
_ALLOWED = {
    "sslmode": "disable, allow, prefer, require, verify-ca, verify-full",
    "gssencmode": "disable, prefer, require",
    "channel_binding": "disable, prefer, require",
    "target_session_attrs": "any, read-write, read-only, primary, standby, prefer-standby",
    "load_balance_hosts": "disable, random",
    "sslnegotiation": "postgres, direct",
}
# Where each connection setting can be set, for messages.
_WHERE = {"database_url": "database_url / DATABASE_URL / --database-url",
          "migrate_url": "migrate_url / PGSHIFT_MIGRATE_URL"}
_AUTH_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "role \"",  # role "x" does not exist
    "pg_hba.conf rejects",
)


def _mask_secrets_of(url: str, text: str) -> str:
    """``text`` masked, and any piece of ``url``'s password removed: libpq's parse errors quote tokens of it."""
    pieces: set[str] = set()
    for pattern in (_URL_PASSWORD, _QUERY_PASSWORD, _KV_PASSWORD):
        for match in pattern.finditer(url):
            password = match.group("pw").strip("'\"")
            pieces.update({password, unquote(password), *password.split(), *unquote(password).split()})
    for piece in sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True):
        text = text.replace(piece, "***")
    return mask_password(text)


def require_url(url: str | None) -> str:
    if not url:
        raise ConfigError(
            "No database to connect to: set database_url in pgshift.toml, the DATABASE_URL "
            "environment variable, or pass --database-url."
        )
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"database_url {mask_password(url)} is not a valid connection string: "
                          f"{_mask_secrets_of(url, str(exc))}") from None
    return url


def describe_target(url: str) -> str:
    """'db on host:port' without credentials, for messages."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return mask_password(url)
    host = str(params.get("host") or "local socket")
    port = params.get("port")
    dbname = params.get("dbname") or params.get("user") or "(default)"
    return f"database {dbname} on {host}{':' + str(port) if port else ''}"


# psycopg logs a failed rollback on a connection the server already ended ("error ignored in
# rollback ..."); with no logging configured Python would print it bare beside pgshift's own message
# about that failure. A program that configures logging still receives it.
logging.getLogger("psycopg").addHandler(logging.NullHandler())


def connect(
    url: str | None,
    *,
    application_name: str = "pgshift",
    autocommit: bool = True,
    connect_timeout: int = 10,
    setting: str = "database_url",
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a connection or raise ConnectionFailed / AuthenticationFailed naming the target and the
    ``setting`` the URL came from (database_url, or migrate_url for the deploy session)."""
    target_url = require_url(url)
    where = _WHERE.get(setting, setting)
    # pgshift reads every file as UTF-8 and sends text: a client_encoding a database or role sets for
    # its sessions (or PGCLIENTENCODING) could not encode it. The server converts to the database's own.
    kwargs.setdefault("client_encoding", "UTF8")
    try:
        conn = psycopg.connect(
            target_url,
            autocommit=autocommit,
            application_name=application_name,
            connect_timeout=connect_timeout,
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        # libpq splits its messages over lines; keep the error one paragraph. Not chained (`from None`):
        # libpq's own text can carry the connection string, password included, into a traceback.
        message = " ".join(mask_password(str(exc)).split())
        target = describe_target(target_url)
        if bad := _BAD_VALUE.search(message):
            raise _bad_option(target_url, bad.group("option") or bad.group("int_option"),
                              bad.group("value") if bad.group("option") else bad.group("int_value"),
                              where) from None
        if "too many connections" in message:  # names the role, but the login was right
            raise ConnectionFailed(
                f"The server accepted no more connections for {target}: {message}",
                hint="wait for other sessions to end, or raise the role's CONNECTION LIMIT (ALTER ROLE ... "
                "CONNECTION LIMIT) or the server's max_connections; pgshift needs up to two connections at once.",
            ) from None
        if "is not currently accepting connections" in message:
            raise DatabaseClosed(
                f"Cannot connect to {target}: {message}",
                hint="the database is closed to new sessions (ALTER DATABASE ... ALLOW_CONNECTIONS false). If a "
                "`pgshift restore` (or a deploy's restore) was killed during its swap, run the same command again: "
                "it re-opens the database after checking; otherwise an administrator runs `ALTER DATABASE ... "
                "WITH ALLOW_CONNECTIONS true` from another database.",
            ) from None
        if any(marker in message for marker in _AUTH_MARKERS):
            raise AuthenticationFailed(
                f"The server rejected the login for {target}: {message}",
                hint=f"check the user name and password in {where} (or ~/.pgpass).",
            ) from None
        raise ConnectionFailed(
            f"Cannot connect to {target}: {message}",
            hint=f"check that the server is running and that host, port and database name in {where} are right.",
        ) from None
    try:
        pin_output_styles(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _bad_option(url: str, option: str, value: str, where_set: str = "database_url / DATABASE_URL / --database-url"
                ) -> ConfigError:
    in_url = option in conninfo.conninfo_to_dict(url)
    env = {"sslmode": "PGSSLMODE", "gssencmode": "PGGSSENCMODE", "channel_binding": "PGCHANNELBINDING",
           "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
           "sslnegotiation": "PGSSLNEGOTIATION", "port": "PGPORT", "connect_timeout": "PGCONNECT_TIMEOUT"}.get(option)
    where = f"in {where_set}" if in_url or not env or env not in os.environ \
        else f"in the {env} environment variable"
    allowed = f"; use one of: {_ALLOWED[option]}" if option in _ALLOWED else "; it must be a whole number"
    return ConfigError(f"The connection option {option} = {value!r} {where} is not valid{allowed}.",
                       hint=f"fix {option} there; pgshift did not reach the server.")


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database (scratch, clone and maintenance dbs)."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def dbname_in(url: str) -> str | None:
    """The database a connection string names (libpq's default: the user name, or PGDATABASE)."""
    params = conninfo.conninfo_to_dict(url)
    name = params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE")
    return str(name) if name else None


def drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop ``name`` (a scratch, clone or copy database) even if sessions are still connected."""
    from psycopg import sql

    if conn.info.server_version >= 130000:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def server_version_num(conn: psycopg.Connection[Any]) -> int:
    """e.g. 150004; decided from the server, never assumed."""
    return int(conn.info.server_version)


def server_major(conn: psycopg.Connection[Any]) -> int:
    return server_version_num(conn) // 10000

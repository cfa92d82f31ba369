"""The server settings migrations ask to run under (``-- pgshift:set``, an ops file's ``settings:``),
checked against the target server before anything runs: the name must exist, be settable in a session
by this role, and take the value. A setting that only a restart or a reload changes
(``pg_settings.context`` postmaster / sighup / ...) cannot be set for one migration at all."""

from __future__ import annotations

from typing import Any

import psycopg

from pgshift.errors import MigrationSourceError
from pgshift.migrations.model import Migration, SessionSetting

# pg_settings.context values a session cannot SET: what each needs instead.
_NOT_SETTABLE = {
    "internal": "cannot be changed at all (it is fixed when the server is built or initialised)",
    "postmaster": "needs a server restart",
    "sighup": "is read from the server's configuration on reload, for every session",
    "backend": "can only be set when a connection starts",
    "superuser-backend": "can only be set when a connection starts",
}


def check_session_settings(conn: psycopg.Connection[Any], migrations: list[Migration]) -> None:
    """Refuse, naming file and line, every setting the server would not take; runs nothing."""
    asked = [s for m in migrations for s in m.settings]
    if not asked:
        return
    rows = conn.execute("SELECT name, context FROM pg_settings WHERE name = ANY (%s)",
                        ([s.name for s in asked],)).fetchall()
    contexts = {str(name): str(context) for name, context in rows}
    superuser = conn.info.parameter_status("is_superuser") == "on"
    problems: list[str] = []
    # set_config tries each value as SET would (units, ranges, enum values, permissions), in a
    # transaction that is rolled back, so nothing stays set.
    with conn.transaction(force_rollback=True):
        for setting in asked:
            problem = _problem(conn, setting, contexts.get(setting.name), superuser)
            if problem:
                problems.append(f"{setting.where}: {problem}")
    if problems:
        raise MigrationSourceError(
            f"{len(problems)} setting(s) the migrations ask for cannot be used on this server: "
            + " ".join(problems) + " Nothing was run.",
            hint="fix or remove the `-- pgshift:set` directive (or the settings: key); `SHOW ALL` on the "
            "server lists the settings and their units.")


def _problem(conn: psycopg.Connection[Any], setting: SessionSetting, context: str | None,
             superuser: bool) -> str | None:
    name, value = setting.name, setting.value
    if context is None and "." not in name:  # a dotted name is a custom setting, which any value creates
        return f"{name} is not a setting of this server (PostgreSQL {conn.info.server_version // 10000})."
    if context in _NOT_SETTABLE:
        return (f"{name} {_NOT_SETTABLE[context]} (context {context}), so it cannot be set for one "
                "migration; change it in the server's configuration instead.")
    try:
        with conn.transaction():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    except psycopg.errors.InsufficientPrivilege:
        who = "" if superuser else f" and role {conn.info.user} is not one"
        return f"{name} can only be set by a superuser{who} (context {context})."
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc)
        hint = f" {exc.diag.message_hint}" if exc.diag.message_hint else ""
        return f"{name}={value!r} is refused by the server: {message}.{hint}"
    return None

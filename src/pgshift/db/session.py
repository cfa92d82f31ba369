"""What every command opens from its settings: the migrations of the configured folder, a
connection, and the deploy session (the deploy lock, the ledger, the rewrite guard) on migrate_url
when set, else database_url, never through a transaction-mode pooler."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from pgshift.config import Settings
from pgshift.db.connect import connect, server_major
from pgshift.db.history import History
from pgshift.db.lock import AdvisoryLock
from pgshift.db.pooler import refuse_another_database, refuse_pooled_session
from pgshift.migrations.loader import load_migrations
from pgshift.migrations.model import Migration
from pgshift.ops.guard import enable as arm_rewrite_guard


def load(settings: Settings, *, statements: bool = True) -> tuple[str, list[Migration]]:
    return load_migrations(settings.migrations_path, settings.format, statements=statements)


@contextlib.contextmanager
def open_connection(settings: Settings, *, deploy: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection to database_url; with ``deploy``, to migrate_url when set, refused when it is pooled per
    transaction (pgshift.db.pooler), before any session setting is made on it."""
    url, setting = (settings.deploy_url, settings.deploy_url_setting) if deploy else (settings.database_url,
                                                                                      "database_url")
    conn = connect(url, application_name=settings.application_name, setting=setting)
    try:
        if deploy:
            refuse_pooled_session(conn, str(url), setting, settings.application_name)
            if settings.migrate_url and settings.database_url and settings.migrate_url != settings.database_url:
                refuse_another_database(conn, settings.migrate_url, settings.database_url, settings.application_name)
        if server_major(conn) >= 14:
            # A killed runner's backend notices the dead client within a second and ends,
            # releasing its locks, instead of finishing a long statement first.
            conn.execute("SET client_connection_check_interval = '1s'")
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def deploy_session(settings: Settings) -> Iterator[tuple[psycopg.Connection[Any], History]]:
    """A connection holding the deploy lock, with the ledger created or upgraded."""
    with open_connection(settings, deploy=True) as conn:
        lock = AdvisoryLock(conn, settings.history_schema, settings.lock_wait.seconds)
        with lock:
            history = History(conn, settings.history_schema)
            history.ensure()
            arm_rewrite_guard(conn, settings.history_schema, settings.rewrite_guard)
            yield conn, history

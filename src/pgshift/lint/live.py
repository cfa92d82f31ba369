"""Live context from a server: table sizes (for impact ranking) and the major version.

Sizes never wait behind a locked table (pgshift.db.sizes): a table another session holds is ranked
by the catalog's estimate, so lint and the migrate gate do not hang on it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgshift.config import LintSettings
from pgshift.db.connect import connect, server_major
from pgshift.db.history import History
from pgshift.db.sizes import ESTIMATE, without_waiting
from pgshift.lint.model import LintReport, TableSize
from pgshift.migrations.model import Migration

_TABLES = """
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
"""
_SIZES = f"SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) {_TABLES}"
_ESTIMATES = f"SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, {ESTIMATE} {_TABLES}"


def read_sizes(conn: psycopg.Connection[Any]) -> dict[str, TableSize]:
    """Rows (planner estimate, reltuples) and total bytes per table, keyed like the linter's names.

    A never-analysed table has reltuples -1 (PG 14+) or 0: its size on disk still ranks it."""
    sizes: dict[str, TableSize] = {}
    for schema, name, rows, total in without_waiting(conn, _SIZES, _ESTIMATES):
        key = name if schema == "public" else f"{schema}.{name}"
        sizes[key] = TableSize(int(rows), int(total))
    return sizes


def live_context(url: str) -> tuple[int, dict[str, TableSize]]:
    """(server major version, table sizes) for ``url``."""
    with connect(url, application_name="pgshift-lint") as conn:
        return server_major(conn), read_sizes(conn)


def split_by_ledger(url: str, history_schema: str,
                    migrations: list[Migration]) -> tuple[list[Migration], list[Migration]]:
    """(applied, pending) of ``migrations`` by the ledger of the database at ``url``: what
    `lint --database` must treat as history, as the migrate gate does (no ledger: all pending)."""
    with connect(url, application_name="pgshift-lint") as conn:
        rows = History(conn, history_schema).rows()
    applied: list[Migration] = []
    pending: list[Migration] = []
    for m in migrations:
        row = rows.get(m.version)
        done = row is not None and row.status in ("applied", "baseline") and (
            m.kind != "repeatable" or row.checksum == m.checksum)
        (applied if done else pending).append(m)
    return applied, pending


def lint_pending(conn: psycopg.Connection[Any], settings: LintSettings, pending: list[Migration],
                 applied: list[Migration]) -> LintReport:
    """Lint ``pending`` as `migrate` will run them on ``conn``'s server (the migrate gate and
    `check` both call this, so they agree): against its version and table sizes, after replaying
    ``applied``. A table an earlier pending migration creates is new and empty until one fills it.
    Operations migrations (YAML) are planned, not linted."""
    from pgshift.lint.engine import lint_migrations

    return lint_migrations([m for m in pending if m.ops is None], settings=settings, pg_version=server_major(conn),
                           history=[m for m in applied if m.ops is None], sizes=read_sizes(conn), live=True)

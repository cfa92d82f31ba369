"""Live context from a server: table sizes (for impact ranking) and the major version.

Sizes never wait behind a locked table (pgshift.db.sizes): a table another session holds is ranked
by the catalog's estimate, so lint and the migrate gate do not hang on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from pgshift.config import LintSettings, Settings
from pgshift.db.connect import connect, server_major
from pgshift.db.history import History
from pgshift.db.sizes import ESTIMATE, without_waiting
from pgshift.lint.model import LintReport, TableSize
from pgshift.migrations.model import Migration, OpsMigration

if TYPE_CHECKING:
    from pgshift.lint.context import RunState
    from pgshift.lint.schema import Schema

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


def split_by_ledger(conn: psycopg.Connection[Any], history_schema: str,
                    migrations: list[Migration]) -> tuple[list[Migration], list[Migration]]:
    """(applied, pending) of ``migrations`` by the ledger of ``conn``'s database: what
    `lint --database` must treat as history, as the migrate gate does (no ledger: all pending)."""
    rows = History(conn, history_schema).rows()
    applied: list[Migration] = []
    pending: list[Migration] = []
    for m in migrations:
        row = rows.get(m.version)
        done = row is not None and row.status in ("applied", "baseline") and (
            m.kind != "repeatable" or row.checksum == m.checksum)
        (applied if done else pending).append(m)
    return applied, pending


def starting_schema(settings: Settings) -> Schema:
    """The schema model lint starts from: ``lint.schema_file`` (a ``pg_dump --schema-only``), else empty."""
    from pgshift.lint.schema import Schema, schema_from_dump

    path = settings.lint.schema_file
    return schema_from_dump(str(settings.resolve(path))) if path else Schema()


def lint_pending(conn: psycopg.Connection[Any], settings: LintSettings, pending: list[Migration],
                 applied: list[Migration], *, history_schema: str = "pgshift", schema: Schema | None = None,
                 pg_version: int | None = None, rollback: bool = False, collect_locks: bool = False,
                 run: RunState | None = None, runner_sets: frozenset[str] = frozenset()) -> LintReport:
    """Lint ``pending`` as `migrate` will run them on ``conn``'s server (the migrate gate, `check` and
    `lint --database` all call this, so they agree): against its version and table sizes, after
    replaying ``applied`` into ``schema`` (see :func:`starting_schema`). A table an earlier pending
    migration creates is new and empty until one fills it. Operations migrations (YAML) are planned,
    not linted, but what they do is in the schema model the SQL migrations after them are judged by:
    their expand, and their contract once contracted (which ones are still expanded is read from
    ``history_schema``). ``pg_version`` (`lint --pg-version`) overrides the server's; ``rollback``
    and ``collect_locks`` are :func:`~pgshift.lint.engine.lint_migrations`'s (`lint`'s down parts
    and ``--locks``); ``run`` carries what earlier paths of one `lint` run did to tables; ``runner_sets``
    are the timeouts `migrate` will set (:func:`pgshift.lint.context.runner_timeouts`), which no
    migration then lacks."""
    from pgshift.lint.context import RunState
    from pgshift.lint.opsmodel import lint_in_order

    major, sizes = pg_version or server_major(conn), read_sizes(conn)
    run = run or RunState(dict(sizes), True, runner_sets=runner_sets)
    expanded: dict[str, str] = {}
    if any(isinstance(m, OpsMigration) for m in applied):  # which applied operations migrations are not yet contracted
        from pgshift.ops.ledger import active_versions

        expanded = active_versions(conn, history_schema)
    return lint_in_order(pending, applied, expanded=expanded, settings=settings, pg_version=major, sizes=sizes,
                         schema=schema, run=run, rollback=rollback, collect_locks=collect_locks)

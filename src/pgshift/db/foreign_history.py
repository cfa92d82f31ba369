"""Read another migration tool's history table, so a team can switch to pgshift without
re-running anything (``pgshift adopt``).

Each tool keeps its own table, found in ``schema`` or, when no schema is given, through the
connection's ``search_path`` (as the tools themselves do):

- prisma: ``_prisma_migrations``; per ``migration_name``, a row finished and not rolled back
  means applied, a row neither finished nor rolled back means failed, otherwise rolled back;
- flyway: ``flyway_schema_history`` (Flyway < 5: ``schema_version``), replayed in
  ``installed_rank`` order: undo and ``DELETE`` rows remove a version, the ``SCHEMA`` marker row
  is skipped, ``BASELINE`` counts as applied, repeatables (``version`` NULL) are keyed
  ``R__<description with spaces as underscores>`` and their latest row wins; each entry keeps
  its row's ``type``, so adopt can tell a Java (JDBC) migration from the SQL file of the same version;
- dbmate: ``schema_migrations (version varchar)``: every row is an applied version;
- golang-migrate: ``schema_migrations (version bigint, dirty boolean)``: ONE row, the current
  version; every migration up to it is applied; ``dirty`` means that version failed part-way;
- goose: ``goose_db_version``: the latest row per ``version_id`` wins; version 0 is goose's own
  bootstrap row and is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from pgshift.errors import AdoptError, server_message
from pgshift.migrations.model import version_sort_key

Row = tuple[Any, ...]

TABLES = {
    "prisma": "_prisma_migrations",
    "flyway": "flyway_schema_history",
    "dbmate": "schema_migrations",
    "golang-migrate": "schema_migrations",
    "goose": "goose_db_version",
}
LEGACY_TABLES = {"flyway": "schema_version"}
# Columns each tool's table must have; a table missing one belongs to something else.
COLUMNS = {
    "prisma": ("migration_name", "checksum", "finished_at", "rolled_back_at", "started_at"),
    "flyway": ("installed_rank", "version", "description", "type", "checksum", "installed_on", "success"),
    "dbmate": ("version",),
    "golang-migrate": ("version", "dirty"),
    "goose": ("id", "version_id", "is_applied", "tstamp"),
}
_PRISMA_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+)$")
_FLYWAY_UNDO = ("UNDO_SQL", "UNDO_JDBC", "UNDO_SCRIPT")


@dataclass(frozen=True)
class ForeignApplied:
    """One migration as another tool recorded it.

    ``version`` uses the same spelling as pgshift's reader for that tool's folder (goose and
    golang-migrate versions are plain numbers, Prisma's is the folder name's timestamp,
    Flyway's is as Flyway displays it, repeatables ``R__<description>``). ``checksum`` is the
    tool's own (Prisma: sha256 hex of migration.sql; Flyway: CRC32 as a decimal string;
    others: None) and is not comparable with pgshift's checksums.
    """

    version: str
    name: str | None
    applied_at: datetime | None
    succeeded: bool
    checksum: str | None
    kind: str | None = None  # Flyway's type of the row that counts (SQL, JDBC, BASELINE ...); others None
    # Flyway's BASELINE row: this version and every lower one count as applied (Flyway never runs them).
    baseline: bool = False


def read_foreign_history(
    conn: psycopg.Connection[Any], tool: str, schema: str | None = None, *, table: str | None = None
) -> list[ForeignApplied]:
    """The migrations ``tool`` has applied (or left failed) in this database, sorted by version.

    Returns one ForeignApplied per version the tool considers applied (``succeeded`` True) or
    failed part-way (``succeeded`` False: a Prisma migration neither finished nor rolled back, a
    failed Flyway row, a dirty golang-migrate version). Rolled-back, undone and deleted
    migrations are left out. For golang-migrate the list has at most one entry, the current
    version: every migration with a lower version is applied too. ``table`` overrides the
    tool's default table name (e.g. dbmate's ``--migrations-table``).

    Raises AdoptError when the tool is unknown, the table does not exist, or its columns are
    not the tool's.
    """
    key = tool.replace("_", "-").lower()
    if key not in TABLES:
        raise AdoptError(f"Unknown migration tool {tool!r}; choose one of {', '.join(TABLES)}.")
    names = [table] if table else [TABLES[key], *([LEGACY_TABLES[key]] if key in LEGACY_TABLES else [])]
    found = _locate(conn, names, schema)
    if found is None:
        raise _missing(conn, key, names[0], schema)
    located = sql.Identifier(*found)
    _require_columns(conn, key, found)
    rows = _query(conn, key, located, ".".join(found))
    entries = READERS[key](rows)
    return sorted(entries, key=lambda e: version_sort_key(e.version))


def _locate(conn: psycopg.Connection[Any], names: Sequence[str], schema: str | None) -> tuple[str, str] | None:
    """(schema, table) of the first of ``names`` that exists, resolved like the tools do."""
    with conn.cursor(row_factory=tuple_row) as cur:
        for name in names:
            qualified = sql.Identifier(schema, name) if schema else sql.Identifier(name)
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s)",
                (qualified.as_string(conn),),
            )
            row = cur.fetchone()
            if row is not None:
                return str(row[0]), str(row[1])
    return None


def _missing(conn: psycopg.Connection[Any], tool: str, table: str, schema: str | None) -> AdoptError:
    if schema:
        where = f"schema {schema}"
    else:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT current_setting('search_path')")
            row = cur.fetchone()
        where = f"the search_path ({row[0] if row else ''})"
    return AdoptError(
        f"No {tool} history table {table} in {where} of this database, so there is nothing to adopt.",
        hint="check the database URL and --schema, or pass the table name if the tool was "
        "configured with another one.",
    )


def _require_columns(conn: psycopg.Connection[Any], tool: str, found: tuple[str, str]) -> None:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped",
            (sql.Identifier(*found).as_string(conn),),
        )
        present = {str(r[0]) for r in cur.fetchall()}
    missing = [c for c in COLUMNS[tool] if c not in present]
    owner = "golang-migrate" if tool == "dbmate" and "dirty" in present else None
    if missing or owner:
        detail = f"it has a dirty column, so it looks like {owner}'s" if owner else f"missing {', '.join(missing)}"
        raise AdoptError(
            f"The table {'.'.join(found)} is not {tool}'s migration history ({detail}).",
            hint="name the tool that created it, or the right table.",
        )


_QUERIES = {
    "prisma": "SELECT migration_name, checksum, finished_at, rolled_back_at, started_at FROM {} "
    "ORDER BY started_at, migration_name",
    "flyway": "SELECT version, description, type, checksum, success, installed_on::timestamptz FROM {} "
    "ORDER BY installed_rank",
    "dbmate": "SELECT version::text FROM {}",
    "golang-migrate": "SELECT version, dirty FROM {}",
    "goose": "SELECT DISTINCT ON (version_id) version_id, is_applied, tstamp::timestamptz FROM {} "
    "ORDER BY version_id, id DESC",
}


def _query(conn: psycopg.Connection[Any], tool: str, table: sql.Identifier, label: str) -> list[Row]:
    try:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql.SQL(_QUERIES[tool]).format(table))
            return cur.fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise AdoptError(
            f"Cannot read {tool}'s history table {label}: {server_message(exc)}.",
            hint="grant SELECT on it to the user pgshift connects as.",
        ) from exc


def _prisma(rows: list[Row]) -> list[ForeignApplied]:
    by_name: dict[str, ForeignApplied] = {}
    for migration_name, checksum, finished_at, rolled_back_at, started_at in rows:
        match = _PRISMA_NAME.match(migration_name)
        version, name = (match.group("version"), match.group("name")) if match else (migration_name, None)
        if rolled_back_at is not None:
            continue
        applied = finished_at is not None
        earlier = by_name.get(migration_name)
        if earlier is not None and earlier.succeeded and not applied:
            continue  # an applied row outranks a later failed attempt, as in Prisma
        by_name[migration_name] = ForeignApplied(
            version, name, finished_at if applied else started_at, applied, checksum
        )
    return list(by_name.values())


def _flyway(rows: list[Row]) -> list[ForeignApplied]:
    state: dict[str, ForeignApplied] = {}
    for version, description, kind, checksum, success, installed_on in rows:
        if kind == "SCHEMA":
            continue
        key = str(version) if version is not None else "R__" + str(description).replace(" ", "_")
        if (kind in _FLYWAY_UNDO and success) or kind == "DELETE":
            state.pop(key, None)
            continue
        text_checksum = None if checksum is None else str(checksum)
        state[key] = ForeignApplied(key, description, installed_on, bool(success), text_checksum, str(kind),
                                    baseline=kind == "BASELINE")
    return list(state.values())


def _dbmate(rows: list[Row]) -> list[ForeignApplied]:
    return [ForeignApplied(str(version), None, None, True, None) for (version,) in rows]


def _golang_migrate(rows: list[Row]) -> list[ForeignApplied]:
    entries: list[ForeignApplied] = []
    for version, dirty in rows:
        if int(version) < 0:
            raise AdoptError(
                "golang-migrate's schema_migrations says a migration failed with no version "
                "recorded (version -1, dirty), so the database state is unknown.",
                hint="repair it with golang-migrate first (`migrate force <version>`), then adopt.",
            )
        entries.append(ForeignApplied(str(version), None, None, not dirty, None))
    return entries


def _goose(rows: list[Row]) -> list[ForeignApplied]:
    return [
        ForeignApplied(str(version_id), None, tstamp, True, None)
        for version_id, is_applied, tstamp in rows
        if version_id != 0 and is_applied
    ]


READERS: dict[str, Callable[[list[Row]], list[ForeignApplied]]] = {
    "prisma": _prisma,
    "flyway": _flyway,
    "dbmate": _dbmate,
    "golang-migrate": _golang_migrate,
    "goose": _goose,
}

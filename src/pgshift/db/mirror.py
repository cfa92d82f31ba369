"""Keep another migration tool's own history table in step with pgshift's ledger
(setting ``ledger.mirror``), so a team can keep that tool next to pgshift: its next ``deploy`` /
``status`` sees what pgshift applied, and nothing is applied twice.

Every table is written exactly as the tool writes it, taken from the tool's source at a pinned
version (each class names the file):

- prisma: ``_prisma_migrations``; one row per attempt, checksum SHA-256 hex of the raw bytes of
  ``migration.sql`` (BOM and line endings included), ``applied_steps_count`` 1; a failed attempt
  is a row with ``finished_at`` NULL and the error in ``logs``, and retrying it marks that row
  ``rolled_back_at`` first, as ``prisma migrate resolve --rolled-back`` does. Prisma has no down
  migrations: a rollback deletes the migration's rows, so Prisma sees it pending.
- flyway: ``flyway_schema_history``, append-only, ``installed_rank`` MAX+1; checksum CRC32 over
  the lines without their line breaks (BOM dropped), as a signed int32; a failed
  non-transactional migration leaves a ``success = false`` row (a transactional one leaves none on
  PostgreSQL), removed before the retry as ``flyway repair`` does; a rollback appends an
  ``UNDO_SQL`` row for the ``U`` script, as Flyway's undo records it.
- dbmate: ``schema_migrations (version varchar primary key)``, a row per applied version.
- goose: ``goose_db_version`` with its version-0 bootstrap row; a row (is_applied true) per
  applied version, deleted on rollback as goose v3 does.
- golang-migrate: ``schema_migrations (version bigint, dirty boolean)``, ONE row: the current
  version, dirty while a migration runs or after it failed; empty when nothing is applied.

How: ``sync`` reconciles the tool's table with the ledger, idempotently: it changes only the
rows that differ, only for migrations in the folder that pgshift's ledger knows (rows the tool
wrote itself for other migrations are left alone). The runner calls it inside each migration's
own transaction right after the ledger row is written, so both commit together, and again at the
start of every migrate and rollback, which repairs whatever a killed run left between the two.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from pgshift.db.foreign_history import COLUMNS
from pgshift.db.history import AppliedRow
from pgshift.errors import PgshiftError
from pgshift.migrations.formats.flyway import flyway_checksum as _flyway_text_checksum
from pgshift.migrations.formats.flyway import flyway_file_checksum
from pgshift.migrations.model import Migration

TOOLS = ("prisma", "flyway", "dbmate", "goose", "golang-migrate")


class MirrorFailed(PgshiftError):
    """The history table of the tool named by ledger.mirror could not be created or written."""

    code = "mirror"
    exit_code = 29


# -- checksums -----------------------------------------------------------------------------
def prisma_checksum(data: bytes) -> str:
    """prisma-engines schema-engine/connectors/schema-connector/src/checksum.rs (commit
    48784dc4): SHA-256 of the script exactly as read (``read_to_string``: BOM and CRLF kept),
    rendered as zero-padded lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def flyway_checksum(data: bytes) -> int:
    """Flyway's checksum of a script's bytes (the one algorithm, with its source, is
    :func:`pgshift.migrations.formats.flyway.flyway_checksum`)."""
    return _flyway_text_checksum(data.decode("utf-8", errors="replace"))


# -- the tools -----------------------------------------------------------------------------
Rows = dict[str, AppliedRow]


class _Tool:
    tool: ClassVar[str]
    table: ClassVar[str]

    def __init__(self, conn: psycopg.Connection[Any], schema: str, folder: Path) -> None:
        self.conn = conn
        self.schema = schema
        self.folder = folder
        self.qualified = sql.Identifier(schema, self.table)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(table=self.qualified, schema=sql.Identifier(self.schema))

    def exec(self, template: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql(template), params)
            return cur.fetchall() if cur.description else []

    def create_table(self) -> None:  # pragma: no cover - each tool defines it
        raise NotImplementedError

    def ensure_table(self) -> None:
        """Create the table (and schema) as the tool does when missing; refuse someone else's."""
        exists = self.exec("SELECT to_regclass(%s) IS NOT NULL", (self.qualified.as_string(self.conn),))
        if exists[0][0]:
            present = {r[0] for r in self.exec(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                "AND NOT attisdropped", (self.qualified.as_string(self.conn),))}
            missing = [c for c in COLUMNS[self.tool] if c not in present]
            if missing or (self.tool == "dbmate" and "dirty" in present):
                detail = "it has a dirty column, like golang-migrate's" if not missing else \
                    f"it has no {', '.join(missing)} column"
                raise MirrorFailed(
                    f"ledger.mirror = {self.tool!r}, but the table {self.label} is not {self.tool}'s history "
                    f"({detail}); nothing was changed in it.",
                    hint="set ledger.mirror to the tool that owns that table, or ledger.mirror_schema to "
                    "another schema.")
            return
        schema_exists = self.exec("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (self.schema,))[0][0]
        if not schema_exists:
            self.exec("CREATE SCHEMA IF NOT EXISTS {schema}")
        self.create_table()
        if not schema_exists:
            self.schema_created()

    def schema_created(self) -> None:
        """What the tool records when it had to create the schema (Flyway's marker row)."""

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        raise NotImplementedError  # pragma: no cover


def _desired(row: AppliedRow | None) -> str | None:
    """What the tool would show for this ledger row: applied / failed / pending, or None (leave it).

    A failed or interrupted DOWN leaves the migration applied for every tool that records a
    down only after it succeeds."""
    if row is None or row.status == "baseline":
        return None
    if row.status == "applied":
        return "applied"
    if row.status == "rolled_back":
        return "pending"
    return "applied" if row.direction == "down" else "failed"


def _tracked(migrations: list[Migration], rows: Rows,
             only: Iterable[Migration] | None) -> list[tuple[Migration, AppliedRow, str]]:
    chosen = list(only) if only is not None else migrations
    out = []
    for m in chosen:
        row = rows.get(m.version)
        state = _desired(row)
        if row is not None and state is not None:
            out.append((m, row, state))
    return out


def _unreadable(path: Path, exc: OSError) -> MirrorFailed:
    return MirrorFailed(f"Cannot read {path} to compute its checksum for the mirrored history: {exc.strerror}.")


def _prisma_file_checksum(path: Path) -> str:
    """:func:`prisma_checksum` of the file, read a megabyte at a time (a large one is never held)."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _flyway_file_checksum(path: Path) -> int:
    """:func:`flyway_checksum` of the file, read a megabyte at a time (a large one is never held)."""
    try:
        return flyway_file_checksum(path, errors="replace")
    except OSError as exc:
        raise _unreadable(path, exc) from exc


class Dbmate(_Tool):
    """dbmate v2.36 pkg/driver/postgres/postgres.go (CreateMigrationsTable, InsertMigration,
    DeleteMigration); its version column is an unbounded ``varchar`` (older releases:
    varchar(255)), checked against the real binary in the tests. dbmate records a version after
    its up part ran (in the same transaction unless ``transaction:false``), so a failed
    migration leaves no row."""

    tool, table = "dbmate", "schema_migrations"

    def create_table(self) -> None:
        self.exec("create table if not exists {table} (version varchar primary key)")

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        present = {r[0] for r in self.exec("SELECT version FROM {table}")}
        for m, _row, state in _tracked(migrations, rows, only):
            if state == "applied" and m.version not in present:
                self.exec("insert into {table} (version) values (%s)", (m.version,))
            elif state != "applied" and m.version in present:
                self.exec("delete from {table} where version = %s", (m.version,))


def _int_version(tool: str, m: Migration) -> int:
    if not m.version.isdigit():
        raise MirrorFailed(
            f"ledger.mirror = {tool!r} records integer versions, but {m.path} has version {m.version!r}.",
            hint=f"mirror to a tool whose versions fit the folder, or rename the file for {tool}.")
    return int(m.version)


class Goose(_Tool):
    """goose v3 (current: internal/dialects/postgres.go, commit 24c7f76e; CreateTable,
    InsertVersion, DeleteVersion): the table starts with goose's bootstrap row (version 0), an
    applied migration inserts ``(version, true)`` and a down deletes its rows. (Older goose
    releases created ``id serial`` and a nullable ``tstamp``; such a table is used as it is.)"""

    tool, table = "goose", "goose_db_version"

    def create_table(self) -> None:
        self.exec(
            "CREATE TABLE {table} (\n\t\tid integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,\n"
            "\t\tversion_id bigint NOT NULL,\n\t\tis_applied boolean NOT NULL,\n"
            "\t\ttstamp timestamp NOT NULL DEFAULT now()\n\t)"
        )
        self.exec("INSERT INTO {table} (version_id, is_applied) VALUES (%s, %s)", (0, True))

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        latest = {int(v): bool(a) for v, a in self.exec(
            "SELECT DISTINCT ON (version_id) version_id, is_applied FROM {table} ORDER BY version_id, id DESC")}
        for m, _row, state in _tracked(migrations, rows, only):
            version = _int_version(self.tool, m)
            applied = latest.get(version, False)
            if state == "applied" and not applied:
                self.exec("INSERT INTO {table} (version_id, is_applied) VALUES (%s, %s)", (version, True))
            elif state != "applied" and applied:
                self.exec("DELETE FROM {table} WHERE version_id=%s", (version,))


class GolangMigrate(_Tool):
    """golang-migrate v4 database/postgres/postgres.go (ensureVersionTable, SetVersion: TRUNCATE
    then INSERT, and no row for NilVersion unless dirty) with migrate.go's order: SetVersion(v,
    dirty=true), run, SetVersion(v, false); a down of version v sets the previous file's version
    (or -1, NilVersion, when there is none)."""

    tool, table = "golang-migrate", "schema_migrations"

    def create_table(self) -> None:
        self.exec("CREATE TABLE IF NOT EXISTS {table} (version bigint not null primary key, dirty boolean not null)")

    def _state(self, migrations: list[Migration], rows: Rows) -> tuple[int, bool] | None:
        versioned = sorted((m for m in migrations if m.kind == "versioned"), key=lambda m: m.sort_key)
        for index, m in enumerate(versioned):
            row = rows.get(m.version)
            if row is not None and row.status in ("running", "failed"):
                if row.direction == "up":
                    return _int_version(self.tool, m), True
                return (_int_version(self.tool, versioned[index - 1]) if index else -1), True
        applied = [_int_version(self.tool, m) for m in versioned
                   if (r := rows.get(m.version)) is not None and r.status in ("applied", "baseline")]
        return (max(applied), False) if applied else None

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        if not _tracked(migrations, rows, None):
            return  # pgshift has run none of these: the table is the tool's alone
        wanted = self._state(migrations, rows)
        current = [(int(v), bool(d)) for v, d in self.exec("SELECT version, dirty FROM {table}")]
        if current == ([wanted] if wanted else []):
            return
        self.exec("TRUNCATE {table}")
        if wanted is not None:
            self.exec("INSERT INTO {table} (version, dirty) VALUES (%s, %s)", wanted)


class Prisma(_Tool):
    """prisma-engines schema-engine (commit 48784dc4): the postgres flavour's
    ``create_migrations_table`` DDL, and apply_migrations' record_migration_started /
    record_successful_step / record_migration_finished (one step per migration.sql)."""

    tool, table = "prisma", "_prisma_migrations"

    def create_table(self) -> None:
        self.exec(
            "CREATE TABLE {table} (\n"
            "    id                      VARCHAR(36) PRIMARY KEY NOT NULL,\n"
            "    checksum                VARCHAR(64) NOT NULL,\n"
            "    finished_at             TIMESTAMPTZ,\n"
            "    migration_name          VARCHAR(255) NOT NULL,\n"
            "    logs                    TEXT,\n"
            "    rolled_back_at          TIMESTAMPTZ,\n"
            "    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),\n"
            "    applied_steps_count     INTEGER NOT NULL DEFAULT 0\n"
            ")"
        )

    @staticmethod
    def migration_name(m: Migration) -> str:
        return m.path.parent.name if m.source_format == "prisma" else m.path.stem

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        found: dict[str, list[tuple[str, Any, Any, Any]]] = {}
        for id_, name, finished, rolled_back, logs in self.exec(
                "SELECT id, migration_name, finished_at, rolled_back_at, logs FROM {table} ORDER BY started_at"):
            found.setdefault(name, []).append((id_, finished, rolled_back, logs))
        for m, row, state in _tracked(migrations, rows, only):
            name = self.migration_name(m)
            active = [r for r in found.get(name, []) if r[2] is None]
            done = [r for r in active if r[1] is not None]
            unfinished = [r for r in active if r[1] is None]
            if state == "pending":
                if found.get(name):
                    self.exec("DELETE FROM {table} WHERE migration_name = %s", (name,))
            elif state == "applied" and not done:
                for id_, *_ in unfinished:  # what `prisma migrate resolve --rolled-back` does
                    self.exec("UPDATE {table} SET rolled_back_at = now() WHERE id = %s", (id_,))
                self.exec(
                    "INSERT INTO {table} (id, checksum, finished_at, migration_name, logs, rolled_back_at, "
                    "started_at, applied_steps_count) VALUES (%s, %s, coalesce(%s, now()), %s, NULL, NULL, %s, 1)",
                    (str(uuid.uuid4()), _prisma_file_checksum(m.path), row.finished_at, name, row.started_at))
            elif state == "failed" and not done:
                if not unfinished:
                    self.exec(
                        "INSERT INTO {table} (id, checksum, finished_at, migration_name, logs, rolled_back_at, "
                        "started_at, applied_steps_count) VALUES (%s, %s, NULL, %s, %s, NULL, %s, 0)",
                        (str(uuid.uuid4()), _prisma_file_checksum(m.path), name, row.error, row.started_at))
                elif unfinished[-1][3] != row.error:
                    self.exec("UPDATE {table} SET logs = %s WHERE id = %s", (row.error, unfinished[-1][0]))


class Flyway(_Tool):
    """Flyway 10: flyway-database-postgresql PostgreSQLDatabase.getRawCreateScript (no
    tablespace) and doGetCurrentUser (installed_by is ``current_user``), flyway-core
    JdbcTableSchemaHistory (installed_rank MAX+1, rank 0 for the SCHEMA marker, repair deletes
    ``success = false`` rows)."""

    tool, table = "flyway", "flyway_schema_history"

    def create_table(self) -> None:
        self.exec(
            "CREATE TABLE {table} (\n"
            '    "installed_rank" INT NOT NULL,\n'
            '    "version" VARCHAR(50),\n'
            '    "description" VARCHAR(200) NOT NULL,\n'
            '    "type" VARCHAR(20) NOT NULL,\n'
            '    "script" VARCHAR(1000) NOT NULL,\n'
            '    "checksum" INTEGER,\n'
            '    "installed_by" VARCHAR(100) NOT NULL,\n'
            '    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),\n'
            '    "execution_time" INTEGER NOT NULL,\n'
            '    "success" BOOLEAN NOT NULL\n'
            ")"
        )
        self.exec(sql.SQL('ALTER TABLE {{table}} ADD CONSTRAINT {} PRIMARY KEY ("installed_rank")').format(
            sql.Identifier(f"{self.table}_pk")).as_string(self.conn))
        self.exec(sql.SQL('CREATE INDEX {} ON {{table}} ("success")').format(
            sql.Identifier(f"{self.table}_s_idx")).as_string(self.conn))

    def schema_created(self) -> None:
        self._insert(0, None, "<< Flyway Schema Creation >>", "SCHEMA",
                     sql.Identifier(self.schema).as_string(self.conn), None, 0, True)

    def _insert(self, rank: int | None, version: str | None, description: str, kind: str, script: str,
                checksum: int | None, execution_time: int, success: bool) -> None:
        self.exec(
            'INSERT INTO {table} ("installed_rank", "version", "description", "type", "script", "checksum", '
            '"installed_by", "execution_time", "success") VALUES ('
            'coalesce(%s, (SELECT coalesce(max("installed_rank"), 0) + 1 FROM {table})), '
            "%s, %s, %s, %s, %s, current_user, %s, %s)",
            (rank, version, description, kind, script, checksum, execution_time, success))

    def _script(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return path.name

    def _undo_script(self, m: Migration) -> Path | None:
        from pgshift.migrations.formats.flyway import VERSIONED, _numeric

        for path in sorted(self.folder.rglob("U*__*.sql")):
            match = VERSIONED.match(path.name)
            if match and match.group("prefix") == "U" and \
                    _numeric(match.group("version").replace("_", ".")) == _numeric(m.version):
                return path
        return None

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        # Replay the history as Flyway reads it: the latest row per key, undo rows removing it.
        latest: dict[str, tuple[str, int | None, bool]] = {}
        for version, description, kind, checksum, success in self.exec(
                'SELECT "version", "description", "type", "checksum", "success" FROM {table} '
                'ORDER BY "installed_rank"'):
            if kind == "SCHEMA":
                continue
            key = version if version is not None else f"R__{description}"
            if (kind.startswith("UNDO_") and success) or kind == "DELETE":
                latest.pop(key, None)
            else:
                latest[key] = (kind, checksum, bool(success))
        for m, row, state in _tracked(migrations, rows, only):
            repeatable = m.kind == "repeatable"
            description = m.name if m.source_format == "flyway" else m.name.replace("_", " ")
            key = f"R__{description}" if repeatable else m.version
            version = None if repeatable else m.version
            current = latest.get(key)
            checksum = _flyway_file_checksum(m.path)
            if state == "applied":
                if current is not None and current[2] and (not repeatable or current[1] == checksum):
                    continue
                self._repair(version, description)
                self._insert(None, version, description, "SQL", self._script(m.path), checksum,
                             row.duration_ms or 0, True)
            elif state == "failed":
                if row.transactional or row.status == "running" or (current is not None and not current[2]):
                    continue  # PostgreSQL rolled a transactional one back: Flyway records nothing
                self._insert(None, version, description, "SQL", self._script(m.path), checksum,
                             row.duration_ms or 0, False)
            elif current is not None:
                undo = self._undo_script(m)
                if undo is None:  # no undo script (not a Flyway folder): forget it, so Flyway sees it pending
                    self.exec('DELETE FROM {table} WHERE "version" = %s', (version,))
                else:
                    self._insert(None, version, description, "UNDO_SQL", self._script(undo),
                                 _flyway_file_checksum(undo), row.duration_ms or 0, True)

    def _repair(self, version: str | None, description: str) -> None:
        """``flyway repair`` before a retry: drop this migration's failed rows."""
        if version is None:
            self.exec('DELETE FROM {table} WHERE "version" IS NULL AND "description" = %s AND NOT "success"',
                      (description,))
        else:
            self.exec('DELETE FROM {table} WHERE "version" = %s AND NOT "success"', (version,))


CLASSES: dict[str, type[_Tool]] = {
    "prisma": Prisma, "flyway": Flyway, "dbmate": Dbmate, "goose": Goose, "golang-migrate": GolangMigrate,
}


class Mirror:
    """The ledger's mirror into ``tool``'s own table, on the runner's connection."""

    def __init__(self, conn: psycopg.Connection[Any], tool: str, folder: Path, schema: str | None = None) -> None:
        if tool not in CLASSES:
            raise MirrorFailed(f"ledger.mirror must be one of {', '.join(TOOLS)}, not {tool!r}.")
        if schema is None:
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute("SELECT current_schema()")
                found = cur.fetchone()
            if found is None or found[0] is None:
                raise MirrorFailed(
                    f"ledger.mirror = {tool!r} puts {tool}'s table in the first schema of the search_path, "
                    "as the tool does, but no schema on the search_path exists.",
                    hint="set ledger.mirror_schema, or fix the search_path of the user pgshift connects as.")
            schema = str(found[0])
        self.impl = CLASSES[tool](conn, schema, folder)
        self.conn = conn

    @property
    def label(self) -> str:
        return self.impl.label

    def sync(self, migrations: list[Migration], rows: Rows, only: Iterable[Migration] | None = None) -> None:
        """Make the tool's table say what the ledger says, in one transaction (a savepoint
        inside the migration's own transaction)."""
        ordered = sorted(migrations, key=lambda m: m.sort_key)
        try:
            with self.conn.transaction():
                self.impl.ensure_table()
                self.impl.sync(ordered, rows, only)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            raise  # the runner retries these with the migration
        except psycopg.Error as exc:
            raise MirrorFailed(
                f"Could not write {self.impl.tool}'s history table {self.label} (ledger.mirror): "
                f"{exc.diag.message_primary or exc}.",
                hint=f"grant the user pgshift connects as CREATE on schema {self.impl.schema} and write access "
                "to the table, or set ledger.mirror_schema; the next migrate or rollback brings it up to date.",
            ) from exc


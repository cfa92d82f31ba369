"""The manifest written beside every dump, and the verification log kept with it.

Each table gets an exact row count and an order-independent content hash: the sum over all rows
of ``hash_record(row)`` on PostgreSQL 14+ when every column type can be hashed (``"check":
"record-hash"``; it hashes the binary values, several times cheaper than converting each row to
text), else of ``hashtext(row::text)`` (``"check": "hash"``), summed as numeric so it cannot
overflow. Row order and physical layout do not change it, so it can be recomputed on a restored
copy and compared. The text form of a row depends on a few settings, so every session that
computes it pins them (``PINNED_SETTINGS``).
Tables larger than ``backup.hash_max_mb`` are not read a second time on the server by default
(``"check": "archive"``): their exact row count is taken from the archive when the backup is first
verified, and a full verification compares their restored rows with the archive's byte for byte.
``backup.large_tables = "count"`` counts them in pg_dump's snapshot instead (``"check": "count"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgshift.errors import BackupFailed

MANIFEST = "manifest.json"
VERIFICATIONS = "verifications.json"
RESTORES = "restores.json"
MANIFEST_VERSION = 1
PINNED_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}
# How a row prints depends on these too, and pg_dump leaves them as the session has them (it pins
# DateStyle, IntervalStyle and extra_float_digits, and TimeZone through PGTZ): a database's or a
# role's default for them shapes the archive's COPY text, so the backup records them and the
# restored copy is read back with the same.
DUMP_OUTPUT_SETTINGS = ("bytea_output", "lc_monetary")

# Names only: pg_total_relation_size takes a lock on the table, so it is asked per table, where a
# table held by another session can be named.
_TABLES = """
SELECT n.nspname, c.relname, c.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


@dataclass
class TableStat:
    schema: str
    name: str
    rows: int | None  # None only for an "archive" table until the backup's first verification
    content_hash: str | None  # None when only the count was checked
    size_bytes: int
    check: str = "hash"  # record-hash | hash | count | archive
    # A large table's rows as the archive holds them (sha256 of their COPY text), taken by the backup's
    # read-back; --restore-test compares the restored copy with it instead of reading the archive again.
    copy_sha256: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class FileEntry:
    path: str  # relative to the backup folder
    size: int
    sha256: str


@dataclass
class Manifest:
    database: str
    server_version: str
    server_major: int
    history_head: str | None
    format: str  # custom | directory
    dump: str  # file or folder name inside the backup folder
    jobs: int
    started_at: str
    finished_at: str
    database_size_bytes: int
    tables: list[TableStat]
    files: list[FileEntry]
    tools: dict[str, str]
    host: str
    version: int = MANIFEST_VERSION
    notes: list[str] = field(default_factory=list)
    snapshot_shared: bool = True  # the counts were read in pg_dump's own snapshot
    dump_timezone: str | None = None  # TimeZone of pg_dump's session (how timestamptz rows print)
    encoding: str | None = None  # the database's encoding: a scratch copy is made in the same one
    dump_settings: dict[str, str] | None = None  # DUMP_OUTPUT_SETTINGS as pg_dump's session had them
    large_objects: int | None = None  # how many pg_dump's snapshot held (None: not recorded, older backups)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["tables"] = [TableStat(**t) for t in data["tables"]]
        data["files"] = [FileEntry(**f) for f in data["files"]]
        return cls(**data)

    def table(self, qualified: str) -> TableStat | None:
        return next((t for t in self.tables if t.qualified == qualified), None)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read, created 0600 (never briefly wider). The text goes
    to a temporary file first and replaces ``path`` in one rename, so a reader never sees half of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise BackupFailed(
            f"{folder} has no {MANIFEST}: without it nothing proves what the dump contains.",
            hint="take a new backup with `pgshift backup`.",
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackupFailed(f"{path} is unreadable or not a pgshift manifest: {exc}") from exc


def pin_settings(conn: psycopg.Connection[Any]) -> None:
    for name, value in PINNED_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def table_stats(conn: psycopg.Connection[Any], *, hash_max_bytes: int | None = None,
                large: str = "count") -> list[TableStat]:
    """Exact count and content hash of every user table, read in ``conn``'s snapshot; tables over
    ``hash_max_bytes`` are counted (``large="count"``) or left to the archive (``"archive"``)."""
    pin_settings(conn)
    stats: list[TableStat] = []
    for schema, name, oid in conn.execute(_TABLES).fetchall():
        try:
            row = conn.execute("SELECT pg_total_relation_size(%s::oid)", (oid,)).fetchone()
            size = int(row[0]) if row and row[0] is not None else 0
            stats.append(table_stat(conn, schema, name, size, hash_max_bytes=hash_max_bytes, large=large))
        except psycopg.errors.LockNotAvailable:
            raise TableLocked(f"{schema}.{name}") from None
    return stats


class TableLocked(Exception):
    """A table could not be read within the session's lock_timeout: another session holds it."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table


HASHED = ("record-hash", "hash")
LARGE = ("count", "archive")  # no content hash at backup time: compared with the archive instead
# Types whose hash depends only on the value, so a restored copy hashes the same. Enums (hashed by
# their label's OID, which a restore changes), OID types, json (no hash function), arrays and
# composites fall back to hashing the row's text form.
_VALUE_HASHED_TYPES = (
    "bool", "int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar", "bpchar", "char", "name",
    "bytea", "uuid", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "jsonb", "inet",
    "cidr", "macaddr", "macaddr8", "money",
)


def _record_hashable(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """Whether hash_record (PG 14+) gives a value-only hash for every column of the table."""
    if conn.info.server_version < 140000:
        return False
    row = conn.execute(
        """
        SELECT coalesce(bool_and(bt.typname = ANY (%s) AND btn.nspname = 'pg_catalog'), false)
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        JOIN pg_namespace btn ON btn.oid = bt.typnamespace
        WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass AND a.attnum > 0
          AND NOT a.attisdropped
        """,
        (list(_VALUE_HASHED_TYPES), schema, name),
    ).fetchone()
    return bool(row and row[0])


def table_stat(
    conn: psycopg.Connection[Any], schema: str, name: str, size: int, *, hash_max_bytes: int | None = None,
    method: str | None = None, large: str = "count",
) -> TableStat:
    """Count and hash one table. ``method`` repeats a manifest's method when verifying; None picks
    the cheapest one that works for the table. A table over ``hash_max_bytes`` is only counted, or
    with ``large="archive"`` not read at all (its count comes from the archive later)."""
    table = sql.Identifier(schema, name)
    if hash_max_bytes is not None and size > hash_max_bytes:
        if large == "archive":
            return TableStat(schema, name, None, None, size, "archive")
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        assert row is not None
        return TableStat(schema, name, int(row[0]), None, size, "count")
    # t.* is the whole row; a bare t would be a column of that name, if the table has one.
    if method == "record-hash" or (method is None and _record_hashable(conn, schema, name)):
        row = conn.execute(
            sql.SQL("SELECT count(*), coalesce(sum(hash_record(t.*)), 0)::text FROM {} AS t").format(table)
        ).fetchone()
        assert row is not None
        return TableStat(schema, name, int(row[0]), str(row[1]), size, "record-hash")
    row = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum(hashtext((t.*)::text)::numeric), 0)::text FROM {} AS t")
        .format(table)
    ).fetchone()
    assert row is not None
    return TableStat(schema, name, int(row[0]), str(row[1]), size, "hash")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: Path, dump: str) -> list[FileEntry]:
    root = folder / dump
    paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return [FileEntry(str(p.relative_to(folder)), p.stat().st_size, sha256_file(p)) for p in paths]


def _append_json(path: Path, record: dict[str, Any]) -> None:
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = []
    records.append(record)
    write_private(path, json.dumps(records, indent=2, default=str))


def record_verification(folder: Path, record: dict[str, Any]) -> None:
    _append_json(folder / VERIFICATIONS, record)


def record_restore(folder: Path, record: dict[str, Any]) -> None:
    _append_json(folder / RESTORES, record)


def verifications(folder: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((folder / VERIFICATIONS).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict)]


def count_large_objects(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata").fetchone()
    return int(row[0]) if row else 0

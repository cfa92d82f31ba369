"""The history ledger in the ``pgshift`` schema (name configurable).

Tables:
- ``ledger``: one row holding the ledger's own format version, so later releases can upgrade.
- ``migrations``: one row per migration version with checksum, status, who/when/how long and,
  for non-transactional migrations, how many statements have completed.
- ``events``: append-only log of everything the runner did.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgshift import __version__
from pgshift.errors import HistoryTooNew

LEDGER_VERSION = 2
STATUSES = ("running", "applied", "failed", "rolled_back", "baseline")

# Each entry upgrades the ledger from version i to i + 1. Never edit a released entry.
_UPGRADES: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS {schema}.ledger (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL,
        upgraded_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS {schema}.migrations (
        version text PRIMARY KEY,
        name text NOT NULL,
        kind text NOT NULL DEFAULT 'versioned',
        checksum text NOT NULL,
        status text NOT NULL CHECK (status IN ('running', 'applied', 'failed', 'rolled_back', 'baseline')),
        transactional boolean NOT NULL DEFAULT true,
        statements_done integer NOT NULL DEFAULT 0,
        statements_total integer NOT NULL DEFAULT 0,
        source_format text NOT NULL DEFAULT 'native',
        applied_by text NOT NULL,
        client_host text,
        pgshift_version text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        duration_ms bigint,
        error text,
        direction text NOT NULL DEFAULT 'up' CHECK (direction IN ('up', 'down')),
        progress_checksum text
    );
    CREATE TABLE IF NOT EXISTS {schema}.events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        version text,
        event text NOT NULL,
        actor text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{{}}'
    );
    """,
    # 2: expand/contract phases of `ops` migrations, and resumable backfill progress (pgshift.ops).
    """
    CREATE TABLE IF NOT EXISTS {schema}.ops_state (
        version text PRIMARY KEY,
        phase text NOT NULL CHECK (phase IN ('expanding', 'expanded', 'contracting', 'contracted',
                                             'aborting', 'aborted')),
        steps_done integer NOT NULL DEFAULT 0,
        captured jsonb NOT NULL DEFAULT '{{}}',
        version_schema text,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS {schema}.backfills (
        job text PRIMARY KEY,
        table_name text NOT NULL,
        set_clause text NOT NULL,
        where_clause text,
        key_columns text[] NOT NULL,
        last_key text[],
        end_page bigint,
        rows_done bigint NOT NULL DEFAULT 0,
        batches bigint NOT NULL DEFAULT 0,
        batch_size integer,
        total_estimate bigint,
        status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
        version text,
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
    );
    """,
]


@dataclass(frozen=True)
class AppliedRow:
    version: str
    name: str
    kind: str
    checksum: str
    status: str
    transactional: bool
    statements_done: int
    statements_total: int
    source_format: str
    applied_by: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None
    direction: str
    progress_checksum: str | None


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class History:
    """Reads and writes the ledger through ``conn`` (which the runner owns)."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str = "pgshift") -> None:
        self.conn = conn
        self.schema = schema
        self._schema_id = sql.Identifier(schema)

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(schema=self._schema_id)

    # -- set-up ----------------------------------------------------------------------------
    def exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(format('%%I.ledger', %s::text)) IS NOT NULL", (self.schema,)
        ).fetchone()
        return bool(row and row[0])

    def version(self) -> int:
        if not self.exists():
            return 0
        row = self.conn.execute(self._sql("SELECT version FROM {schema}.ledger")).fetchone()
        return int(row[0]) if row else 0

    def ensure(self) -> None:
        """Create or upgrade the ledger. Safe to call concurrently under the advisory lock."""
        current = self.version()
        if current > LEDGER_VERSION:
            raise HistoryTooNew(
                f"The history in schema {self.schema} was written by a newer pgshift (ledger "
                f"version {current}, this pgshift knows {LEDGER_VERSION}).",
                hint="upgrade pgshift (pip install -U pgshift) to the version that wrote it or later.",
            )
        if current == LEDGER_VERSION:
            return
        with self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema_id))
            for step in _UPGRADES[current:]:
                self.conn.execute(self._sql(step))
            self.conn.execute(
                self._sql(
                    "INSERT INTO {schema}.ledger (version) VALUES (%s) "
                    "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, "
                    "upgraded_at = now()"
                ),
                (LEDGER_VERSION,),
            )
            self.log(None, "ledger-upgraded", {"from": current, "to": LEDGER_VERSION})

    # -- reads -----------------------------------------------------------------------------
    def rows(self) -> dict[str, AppliedRow]:
        if not self.exists():
            return {}
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql(
                    "SELECT version, name, kind, checksum, status, transactional, statements_done, "
                    "statements_total, source_format, applied_by, started_at, finished_at, "
                    "duration_ms, error, direction, progress_checksum FROM {schema}.migrations "
                    "ORDER BY started_at, version"
                )
            )
            return {r["version"]: AppliedRow(**r) for r in cur.fetchall()}

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first."""
        return list(reversed(self.events_named(None, limit)))

    def events_named(self, event: str | None, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` events called ``event`` (any event when None), newest first."""
        if not self.exists():
            return []
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql(
                    "SELECT id, at, version, event, actor, detail FROM {schema}.events "
                    "WHERE %s::text IS NULL OR event = %s ORDER BY id DESC LIMIT %s"
                ),
                (event, event, limit),
            )
            return cur.fetchall()

    def head(self) -> str | None:
        """The highest applied version, or None."""
        applied = [r for r in self.rows().values() if r.status in ("applied", "baseline") and r.kind == "versioned"]
        if not applied:
            return None
        from pgshift.migrations.model import version_sort_key

        return max(applied, key=lambda r: version_sort_key(r.version)).version

    # -- writes ----------------------------------------------------------------------------
    def start(
        self, *, version: str, name: str, kind: str, checksum: str, transactional: bool,
        total: int, source_format: str, direction: str = "up", resume_from: int = 0,
    ) -> None:
        """Mark a migration running (kept on crash so the next run knows what happened).

        ``resume_from`` keeps the progress of an interrupted statement-by-statement run.
        """
        self.conn.execute(
            self._sql(
                """
                INSERT INTO {schema}.migrations (version, name, kind, checksum, status, transactional,
                    statements_done, statements_total, source_format, applied_by, client_host,
                    pgshift_version, started_at, finished_at, duration_ms, error, direction)
                VALUES (%(version)s, %(name)s, %(kind)s, %(checksum)s, 'running', %(transactional)s,
                    %(resume_from)s, %(total)s, %(format)s, %(actor)s, inet_client_addr()::text, %(pv)s,
                    clock_timestamp(), NULL, NULL, NULL, %(direction)s)
                ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                    checksum = EXCLUDED.checksum, status = 'running',
                    transactional = EXCLUDED.transactional,
                    statements_done = EXCLUDED.statements_done,
                    statements_total = EXCLUDED.statements_total,
                    source_format = EXCLUDED.source_format, applied_by = EXCLUDED.applied_by,
                    client_host = EXCLUDED.client_host, pgshift_version = EXCLUDED.pgshift_version,
                    started_at = EXCLUDED.started_at, finished_at = NULL, duration_ms = NULL,
                    error = NULL, direction = EXCLUDED.direction
                """
            ),
            {
                "version": version, "name": name, "kind": kind, "checksum": checksum,
                "transactional": transactional, "total": total, "format": source_format,
                "actor": actor(), "pv": __version__, "direction": direction,
                "resume_from": resume_from,
            },
        )

    def statements_done(self, version: str) -> int:
        row = self.conn.execute(
            self._sql("SELECT statements_done FROM {schema}.migrations WHERE version = %s"),
            (version,),
        ).fetchone()
        return int(row[0]) if row else 0

    def row(self, version: str) -> AppliedRow | None:
        return self.rows().get(version)

    def progress(self, version: str, done: int, prefix_checksum: str) -> None:
        """Record that the first ``done`` statements (whose texts hash to ``prefix_checksum``) ran."""
        self.conn.execute(
            self._sql(
                "UPDATE {schema}.migrations SET statements_done = %s, progress_checksum = %s WHERE version = %s"
            ),
            (done, prefix_checksum, version),
        )

    def complete(
        self, *, version: str, name: str, kind: str, checksum: str, transactional: bool, total: int,
        source_format: str, direction: str, duration_ms: int, detail: dict[str, Any],
    ) -> None:
        """Record a finished run and its event in one statement.

        Run inside a transactional migration's own transaction, so the ledger commits with the
        DDL: one commit per migration, and a crash leaves neither.
        """
        status, event = ("applied", "applied") if direction == "up" else ("rolled_back", "rolled-back")
        self.conn.execute(
            self._sql(
                """
                WITH saved AS (
                    INSERT INTO {schema}.migrations AS m (version, name, kind, checksum, status, transactional,
                        statements_done, statements_total, source_format, applied_by, client_host,
                        pgshift_version, started_at, finished_at, duration_ms, error, direction)
                    VALUES (%(version)s, %(name)s, %(kind)s, %(checksum)s, %(status)s, %(transactional)s,
                        %(done)s, %(total)s, %(format)s, %(actor)s, inet_client_addr()::text, %(pv)s,
                        now(), clock_timestamp(), %(duration)s, NULL, %(direction)s)
                    ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                        checksum = EXCLUDED.checksum, status = EXCLUDED.status,
                        transactional = EXCLUDED.transactional, statements_done = EXCLUDED.statements_done,
                        statements_total = EXCLUDED.statements_total, source_format = EXCLUDED.source_format,
                        applied_by = EXCLUDED.applied_by, client_host = EXCLUDED.client_host,
                        pgshift_version = EXCLUDED.pgshift_version,
                        started_at = CASE WHEN EXCLUDED.transactional THEN EXCLUDED.started_at
                                          ELSE m.started_at END,
                        finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
                        error = NULL, direction = EXCLUDED.direction
                    RETURNING version
                )
                INSERT INTO {schema}.events (version, event, actor, detail)
                SELECT version, %(event)s, %(actor)s, %(detail)s FROM saved
                """
            ),
            {
                "version": version, "name": name, "kind": kind, "checksum": checksum, "status": status,
                "transactional": transactional, "done": total if direction == "up" else 0, "total": total,
                "format": source_format, "actor": actor(), "pv": __version__, "duration": duration_ms,
                "direction": direction, "event": event, "detail": json.dumps(detail, default=str),
            },
        )

    def fail(
        self, *, version: str, name: str, kind: str, checksum: str, transactional: bool, total: int,
        source_format: str, direction: str, error: str,
    ) -> None:
        """Mark a run failed, creating the row when the failed attempt's own row was rolled back."""
        if self.row(version) is None or transactional:
            self.start(version=version, name=name, kind=kind, checksum=checksum, transactional=transactional,
                       total=total, source_format=source_format, direction=direction)
        self.finish(version, "failed", error=error)
        self.log(version, "failed", {"direction": direction, "error": error})

    def finish(self, version: str, status: str, *, error: str | None = None) -> None:
        self.conn.execute(
            self._sql(
                """
                UPDATE {schema}.migrations SET status = %s, error = %s, finished_at = clock_timestamp(),
                    duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint,
                    statements_done = CASE WHEN %s = 'applied' THEN statements_total
                                           ELSE statements_done END
                WHERE version = %s
                """
            ),
            (status, error, status, version),
        )

    def mark_rolled_back(self, version: str) -> None:
        self.conn.execute(
            self._sql(
                "UPDATE {schema}.migrations SET status = 'rolled_back', finished_at = clock_timestamp(), "
                "duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint, "
                "statements_done = 0, direction = 'down', error = NULL WHERE version = %s"
            ),
            (version,),
        )

    def record(
        self, *, version: str, name: str, kind: str, checksum: str, status: str,
        source_format: str, applied_by: str | None = None, note: str | None = None,
    ) -> None:
        """Write a finished row directly (baseline, adopt, repair)."""
        self.conn.execute(
            self._sql(
                """
                INSERT INTO {schema}.migrations (version, name, kind, checksum, status, source_format,
                    applied_by, pgshift_version, finished_at, duration_ms, error)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), 0, %s)
                ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,
                    status = EXCLUDED.status, name = EXCLUDED.name, error = EXCLUDED.error
                """
            ),
            (version, name, kind, checksum, status, source_format, applied_by or actor(),
             __version__, note),
        )

    def set_checksum(self, version: str, checksum: str) -> None:
        self.conn.execute(
            self._sql("UPDATE {schema}.migrations SET checksum = %s WHERE version = %s"),
            (checksum, version),
        )

    def log(self, version: str | None, event: str, detail: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            self._sql(
                "INSERT INTO {schema}.events (version, event, actor, detail) VALUES (%s, %s, %s, %s)"
            ),
            (version, event, actor(), json.dumps(detail or {}, default=str)),
        )

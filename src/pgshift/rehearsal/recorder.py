"""Records what every migration statement did on the clone: timing, locks, rewrites, rows.

The executor calls :class:`Recorder` around each statement on the migrating connection. Locks
are sampled from ``pg_locks`` by a second connection while the statement runs (a CREATE INDEX
CONCURRENTLY commits before ``after`` is called) and read once more in ``after`` (a statement
in a transaction still holds its locks there).
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgshift.db.connect import connect
from pgshift.lint.locks import BLOCKS
from pgshift.migrations.model import Migration, Statement
from pgshift.rehearsal.workload import Clock


def app_traffic_blocked(mode: str) -> str:
    """What of the application's traffic a lock mode blocks ('reads and writes', 'writes' or ''),
    from the lint rules' lock table, so rehearsal and lint describe locks the same way."""
    return " and ".join(what for what in BLOCKS.get(mode, ()) if what != "ddl")

_LOCKS = """
    SELECT l.relation, l.mode, l.granted, n.nspname, c.relname, c.relkind
    FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE l.pid = %s AND l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database
                                                                  WHERE datname = current_database())
"""
_STORAGE = """
    SELECT c.oid, n.nspname || '.' || c.relname, c.relfilenode, pg_relation_size(c.oid), c.reltuples::bigint
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
      AND n.nspname NOT LIKE 'pg\\_%%'
"""
_ROWS = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_xact_user_tables"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def lock_level(mode: str) -> str:
    """pg_locks' 'AccessExclusiveLock' as the documentation's 'ACCESS EXCLUSIVE'."""
    return _CAMEL.sub(" ", mode.removesuffix("Lock")).upper()


_KINDS = {"r": "table", "i": "index", "S": "sequence", "m": "materialized view", "p": "table", "I": "index",
          "t": "toast", "v": "view"}


@dataclass(frozen=True)
class LockRecord:
    relation: str
    kind: str
    mode: str
    granted: bool

    @property
    def blocks(self) -> str:
        return app_traffic_blocked(self.mode)


@dataclass
class Rewrite:
    table: str
    size_bytes: int
    rows: int


@dataclass
class StatementRecord:
    phase: str  # up | down | up-again | contract
    version: str
    migration: str
    where: str
    sql: str
    start: float
    end: float = 0.0
    locks: list[LockRecord] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    rows_affected: int | None = None
    error: str | None = None
    # Filled in from the workload once the phase is over.
    workload_queries: int = 0
    workload_errors: int = 0  # queries this statement made fail (the workload's own errors are not)
    worst_latency_ms: float | None = None
    workload_error_messages: list[dict[str, Any]] = field(default_factory=list)  # first few, distinct

    @property
    def duration_ms(self) -> float:
        return max(0.0, (self.end - self.start) * 1000)

    @property
    def blocking_locks(self) -> list[LockRecord]:
        return [lock for lock in self.locks if lock.blocks and lock.kind in ("table", "materialized view")]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_ms"] = round(self.duration_ms, 1)
        data["locks"] = [{**asdict(lock), "blocks": lock.blocks} for lock in self.locks]
        return data


class Recorder:
    """A :class:`pgshift.runner.execute.StatementObserver` that fills ``records``."""

    def __init__(self, clone_url: str, clock: Clock, *, history_schema: str, poll_s: float = 0.005) -> None:
        self.clone_url = clone_url
        self.clock = clock
        self.history_schema = history_schema
        self.poll_s = poll_s
        self.phase = "up"
        self.records: list[StatementRecord] = []
        self._current: StatementRecord | None = None
        self._held_before: set[tuple[int, str]] = set()
        self._seen: dict[tuple[int, str], LockRecord] = {}
        self._storage: dict[int, tuple[str, int, int, int]] = {}
        self._rows_before = 0
        self._pid = 0
        self._active = threading.Event()
        self._closing = threading.Event()
        self._mutex = threading.Lock()
        self._sampler: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        conn = connect(self.clone_url, application_name="pgshift-rehearse-locks")
        self._sampler = threading.Thread(target=self._sample_loop, args=(conn,), daemon=True,
                                         name="rehearse-lock-sampler")
        self._sampler.start()

    def close(self) -> None:
        self._closing.set()
        self._active.set()
        if self._sampler is not None:
            self._sampler.join(5)

    # -- StatementObserver -----------------------------------------------------------------
    def before(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement) -> None:
        self._pid = conn.info.backend_pid
        held = conn.execute(_LOCKS, (self._pid,)).fetchall()
        self._held_before = {(oid, lock_level(mode)) for oid, mode, *_rest in held}
        self._storage = {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(_STORAGE, (self.history_schema,))}
        row = conn.execute(_ROWS).fetchone()
        self._rows_before = int(row[0]) if row else 0
        with self._mutex:
            self._seen = {}
        self._current = StatementRecord(self.phase, migration.version, migration.label, stmt.where, stmt.summary,
                                        self.clock.now())
        self._active.set()

    def after(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement,
              error: BaseException | None) -> None:
        record = self._current
        if record is None:
            return
        record.end = self.clock.now()
        self._active.clear()
        if error is not None:
            record.error = str(error).split("\n")[0][:300]
        if conn.info.transaction_status != TransactionStatus.INERROR and not conn.closed:
            self._take(conn.execute(_LOCKS, (self._pid,)).fetchall())
            self._rewrites(conn, record)
            row = conn.execute(_ROWS).fetchone()
            record.rows_affected = max(0, (int(row[0]) if row else 0) - self._rows_before)
            self._resolve(conn)
        # An ops backfill commits batch by batch, so the transaction's counters miss its rows: it tells them.
        rows = getattr(stmt, "rows", None)
        if rows is not None:
            record.rows_affected, record.sql = int(rows), stmt.summary
        with self._mutex:
            unique = {(lock.relation, lock.mode): lock for lock in self._seen.values()}
        record.locks = sorted(unique.values(), key=lambda lock: (lock.relation, lock.mode))
        self.records.append(record)
        self._current = None

    # -- internals -------------------------------------------------------------------------
    def _rewrites(self, conn: psycopg.Connection[Any], record: StatementRecord) -> None:
        for oid, _name, filenode, _size, _rows in conn.execute(_STORAGE, (self.history_schema,)).fetchall():
            old = self._storage.get(oid)
            if old is not None and old[1] != filenode:
                record.rewrites.append(Rewrite(old[0], int(old[2]), max(0, int(old[3]))))

    def _resolve(self, conn: psycopg.Connection[Any]) -> None:
        """Name relations the sampler saw before they were visible to it (created in the same
        transaction), now that the migrating connection can see them."""
        with self._mutex:
            missing = [key for key, lock in self._seen.items() if lock.relation == str(key[0])]
        if not missing:
            return
        rows = conn.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY (%s)",
            ([oid for oid, _mode in missing],)).fetchall()
        names = {int(oid): (str(schema), str(name), str(kind)) for oid, schema, name, kind in rows}
        with self._mutex:
            for oid, mode in missing:
                lock = self._seen.pop((oid, mode))
                if oid not in names or self._ignored(names[oid][0]):
                    continue  # a transient heap of a rewrite, already gone, or a system relation
                schema, name, kind = names[oid]
                self._seen[(oid, mode)] = LockRecord(f"{schema}.{name}", _KINDS.get(kind, "relation"), mode,
                                                     lock.granted)

    def _ignored(self, schema: str | None) -> bool:
        return schema is not None and (schema.startswith("pg_") or schema in ("information_schema",
                                                                                self.history_schema))

    def _take(self, rows: list[tuple[Any, ...]]) -> None:
        with self._mutex:
            for oid, pg_mode, granted, schema, name, relkind in rows:
                mode = lock_level(pg_mode)
                if (oid, mode) in self._held_before or self._ignored(schema):
                    continue
                known = self._seen.get((oid, mode))
                if known is not None and known.relation != str(oid):
                    # keep a resolved name; a lock granted once counts as acquired
                    self._seen[(oid, mode)] = LockRecord(known.relation, known.kind, mode, known.granted or granted)
                    continue
                relation = f"{schema}.{name}" if name else str(oid)
                self._seen[(oid, mode)] = LockRecord(relation, _KINDS.get(relkind or "", "relation"), mode,
                                                     granted or bool(known and known.granted))

    def _sample_loop(self, conn: psycopg.Connection[Any]) -> None:
        try:
            while not self._closing.is_set():
                if not self._active.wait(0.5):
                    continue
                if self._closing.is_set():
                    return
                try:
                    rows = conn.execute(_LOCKS, (self._pid,)).fetchall()
                except psycopg.Error:
                    return
                if self._active.is_set():
                    self._take(rows)
                self._closing.wait(self.poll_s)
        finally:
            conn.close()

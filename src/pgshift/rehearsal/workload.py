"""A synthetic workload: point reads, updates and inserts against the tables the pending
migrations touch, at a fixed rate, recording every query's latency and error.

Queries are derived from each table's key (primary key, else a unique index on NOT NULL columns,
else the row's ctid) and columns, so nothing has to be written by hand. Every query is tried once
inside a rolled-back transaction before the run and left out (or replaced by a weaker form) when it
fails: an update sets a column that is not generated, not an identity and not part of the key to
itself, else locks the row with SELECT ... FOR UPDATE. Inserts copy an existing row and are rolled
back, so they never leave duplicates a migration's new unique index would trip over.

Errors the workload would have had anyway are its own (:func:`mark_own_errors`): the same query
kind on the same table failing with the same SQLSTATE before the migration started, and an insert's
integrity error (it copies a row, so a new unique index rejects it). Only the others count against
the migration.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from pgshift.db.connect import connect
from pgshift.migrations.analysis import TableName, named_tables
from pgshift.migrations.model import Migration, OpsMigration


class Clock:
    """Seconds since the rehearsal started; shared by the workload and the recorder."""

    def __init__(self) -> None:
        self.origin = time.monotonic()
        self.wall = time.time()

    def now(self) -> float:
        return time.monotonic() - self.origin


class Sample(NamedTuple):
    """One workload query (recorded as a plain tuple while the workload runs: see Workload.samples)."""

    start: float
    end: float
    kind: str  # read | update | insert
    table: str
    error: str | None = None  # "SQLSTATE message"
    sqlstate: str | None = None
    own: bool = False  # an error of the workload itself, not caused by the migration

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass
class Target:
    table: str  # schema.name, for reports
    ident: sql.Identifier
    pk: list[str]
    keys: list[tuple[Any, ...]]
    read: sql.Composed
    update: sql.Composed | None  # None: the table gets reads (and inserts) only
    insert: sql.Composed | None = None
    next_key: int | None = None  # for inserts into an integer key without a default
    update_kind: str = "update"  # "lock" when it is a SELECT ... FOR UPDATE


def touched_tables(migrations: Iterable[Migration]) -> set[TableName]:
    """Every relation named in the migrations' up and down parts: the workload runs through the
    rollback too (tables the migrations create do not exist yet and drop out when the workload
    looks them up)."""
    found: set[TableName] = set()
    for migration in migrations:
        for statement in chain(migration.up, migration.down or []):  # one at a time: a large part is not held
            found |= named_tables(statement.sql)
        texts: list[str] = []
        if isinstance(migration, OpsMigration):  # an operations migration names its tables in its operations
            for o in migration.ops.operations:
                for key in ("table", "references_table", "from", "to"):
                    if o.get(key) and (key in ("table", "references_table") or o.kind == "rename_table"):
                        found.add((migration.ops.schema, str(o.get(key))))
                texts += [str(o.get(part)) for part in ("up", "down", "contract") if o.kind == "sql" and o.get(part)]
        for text in texts:
            found |= named_tables(text)
    return found


def discover(conn: psycopg.Connection[Any], tables: Iterable[TableName], *, sample: int = 1000) -> list[Target]:
    targets: list[Target] = []
    for schema, name in sorted(tables, key=lambda t: (t[0] or "", t[1])):
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        row = conn.execute("SELECT to_regclass(%s)", (ident.as_string(conn),)).fetchone()
        if row is None or row[0] is None:
            continue
        target = _target(conn, row[0], sample)
        if target is not None:
            targets.append(target)
    return targets


_UNIQUE_KEYS = """
SELECT array_agg(a.attname ORDER BY k.ord), bool_and(a.attnotnull)
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC, count(*), i.indexrelid
"""
# Columns an update can set to themselves: not generated, not an identity (GENERATED ALWAYS refuses
# any value but DEFAULT), updatable by this role; unindexed ones first (a HOT update, like an app's).
_UPDATABLE = """
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity = ''
  AND has_column_privilege(a.attrelid, a.attnum, 'UPDATE')
ORDER BY EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND a.attnum = ANY (i.indkey)), a.attnum
"""
CTID = "ctid"


def _key(conn: psycopg.Connection[Any], oid: int) -> list[str]:
    """The primary key, else the smallest unique index on NOT NULL columns, else the row's ctid."""
    for columns, not_null in conn.execute(_UNIQUE_KEYS, (oid,)).fetchall():
        if not_null:
            return [str(c) for c in columns]
    return [CTID]


def _works(conn: psycopg.Connection[Any], query: sql.Composed, params: list[Any]) -> bool:
    """Whether ``query`` runs here, tried once and rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(query, params)
    except psycopg.Error:
        return False
    return True


def _target(conn: psycopg.Connection[Any], regclass: Any, sample: int) -> Target | None:
    oid = conn.execute("SELECT %s::regclass::oid", (str(regclass),)).fetchone()
    assert oid is not None
    rel = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s", (oid[0],)).fetchone()
    assert rel is not None
    if rel[2] not in ("r", "p"):
        return None
    pk = _key(conn, oid[0])
    ident = sql.Identifier(rel[0], rel[1])
    if pk == [CTID]:  # no key: rows are addressed where they lie (an updated row moves, then is missed)
        cols: sql.Composable = sql.SQL("ctid::text")
        where: sql.Composable = sql.SQL("ctid = %s::tid")
    else:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in pk)
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in pk)
    keys = [tuple(r) for r in conn.execute(
        sql.SQL("SELECT {} FROM {} LIMIT {}").format(cols, ident, sql.Literal(sample))).fetchall()]
    if not keys:
        return None
    read = sql.SQL("SELECT * FROM {} WHERE {}").format(ident, where)
    if not _works(conn, read, list(keys[0])):
        return None  # not even readable by this role
    target = Target(f"{rel[0]}.{rel[1]}", ident, pk, keys, read=read, update=None)
    _derive_update(conn, oid[0], target, where)
    _derive_insert(conn, oid[0], target, where)
    return target


def _derive_update(conn: psycopg.Connection[Any], oid: int, target: Target, where: sql.Composable) -> None:
    """An update that changes nothing (a column set to itself), else a row lock, tried on a real row."""
    params = list(target.keys[0])
    for (column,) in conn.execute(_UPDATABLE, (oid,)).fetchall()[:3]:
        update = sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
            target.ident, sql.Identifier(column), sql.Identifier(column), where)
        if _works(conn, update, params):
            target.update = update
            return
    lock = sql.SQL("SELECT 1 FROM {} WHERE {} FOR UPDATE").format(target.ident, where)
    if _works(conn, lock, params):
        target.update, target.update_kind = lock, "lock"


def _derive_insert(conn: psycopg.Connection[Any], oid: int, target: Target, where: sql.Composable) -> None:
    """INSERT ... SELECT a copy of an existing row, the key from its default or a counter."""
    columns = conn.execute(
        "SELECT a.attname, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', "
        "format_type(a.atttypid, NULL) FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum", (oid,)).fetchall()
    key = [] if target.pk == [CTID] else target.pk  # a ctid is no column: every column is copied
    copy = [c for c, defaulted, _t in columns if not defaulted and c not in key]
    key_defaults = {c: defaulted for c, defaulted, _t in columns if c in key}
    key_types = {c: t for c, _d, t in columns if c in key}
    values: list[sql.Composable]
    if all(key_defaults.values()):
        names, values = copy, [sql.Identifier(c) for c in copy]
    elif len(key) == 1 and key_types[key[0]] in ("integer", "bigint", "smallint"):
        top = conn.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
            sql.Identifier(key[0]), target.ident)).fetchone()
        target.next_key = int(top[0] if top else 0) + 1_000_000
        names, values = [key[0], *copy], [sql.Placeholder(), *(sql.Identifier(c) for c in copy)]
    else:
        return
    if not names:
        statement = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(target.ident)
    else:
        statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {}").format(
            target.ident, sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(values), target.ident, where)
    if _works(conn, statement, _insert_params(target, statement, probe=True)):
        target.insert = statement  # else (e.g. a unique column) this table gets reads and updates only


def _insert_params(target: Target, statement: sql.Composed, *, probe: bool = False) -> list[Any]:
    key = list(random.choice(target.keys))
    if "DEFAULT VALUES" in repr(statement):
        return []
    if target.next_key is None:
        return key
    value = target.next_key
    if not probe:
        target.next_key += 1
    return [value, *key]


@dataclass
class Workload:
    url: str
    targets: list[Target]
    rate: float
    clock: Clock
    threads: int = 4
    max_seconds: float = 600.0
    # Plain tuples while the workload runs, which the garbage collector stops tracking: a rehearsal
    # records hundreds a second, and a full collection walking 160,000 tracked samples held the GIL
    # 200-340 ms, which every query in flight then showed as a stall the migration never caused.
    _recorded: list[tuple[float, float, str, str, str | None, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slot: int = 0
    _workers: list[threading.Thread] = field(default_factory=list)
    _connections: list[psycopg.Connection[Any]] = field(default_factory=list)
    _started: float = 0.0
    startup_errors: list[str] = field(default_factory=list)

    def open(self) -> None:
        """Connect every worker now, like an application's warm pool; queries start with start()."""
        if self._connections:
            return
        # No server-side prepared statements: a prepared SELECT * fails with "cached plan must not
        # change result type" after ADD COLUMN, which is the client's problem, not the migration's.
        self._connections = [connect(self.url, application_name="pgshift-rehearse-load", prepare_threshold=None)
                             for _ in range(self.threads)]
        for conn in self._connections:
            conn.execute("SET statement_timeout = '60s'")

    def start(self) -> None:
        self.open()
        # The schedule starts once connected: slots missed while connecting would otherwise all be
        # sent at once, a burst the migration did not cause.
        self._started = self.clock.now()
        for index, conn in enumerate(self._connections):
            worker = threading.Thread(target=self._run, args=(conn,), name=f"rehearse-load-{index}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def stop(self, timeout: float = 65.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout)
        if not self._workers:  # opened but never started: no worker will close them
            for conn in self._connections:
                conn.close()

    def _next_slot(self) -> float:
        with self._lock:
            slot = self._slot
            self._slot += 1
        return self._started + slot / self.rate

    def _run(self, conn: psycopg.Connection[Any]) -> None:
        rng = random.Random()
        try:
            while not self._stop.is_set():
                due = self._next_slot()
                if due - self._started > self.max_seconds:
                    return  # bounded: the workload ends by itself
                delay = due - self.clock.now()
                if delay > 0 and self._stop.wait(delay):
                    return
                self._one(conn, rng)
        finally:
            conn.close()

    def _one(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        target = rng.choice(self.targets)
        roll = rng.random()
        if roll < 0.1 and target.insert is not None:
            kind, query = "insert", target.insert
            with self._lock:
                params = _insert_params(target, query)
        elif roll < 0.4 and target.update is not None:
            kind, query, params = target.update_kind, target.update, list(rng.choice(target.keys))
        else:
            kind, query, params = "read", target.read, list(rng.choice(target.keys))
        started = self.clock.now()
        error = sqlstate = None
        try:
            if kind == "insert":  # rolled back: no copies left for a new unique index to trip over
                with conn.transaction(force_rollback=True):
                    conn.execute(query, params)
            else:
                conn.execute(query, params).fetchall() if kind != "update" else conn.execute(query, params)
        except psycopg.Error as exc:
            sqlstate = exc.sqlstate
            error = f"{exc.sqlstate or ''} {(exc.diag.message_primary or str(exc)).strip()}".strip()
            if conn.broken:
                self._stop.set()
        self.record(started, self.clock.now(), kind, target.table, error, sqlstate)

    def record(self, start: float, end: float, kind: str, table: str, error: str | None = None,
               sqlstate: str | None = None) -> None:
        with self._lock:
            self._recorded.append((start, end, kind, table, error, sqlstate))

    @property
    def samples(self) -> list[Sample]:
        """Every query so far, in the order they ended."""
        with self._lock:
            return [Sample(*entry) for entry in self._recorded]


# Errors a running statement causes while it holds or waits for locks; any other error the
# migration causes comes from what it changed (a renamed column, a dropped table...).
WAIT_ERRORS = frozenset({"55P03", "57014", "40P01", "40001"})


def mark_own_errors(samples: list[Sample], migration_start: float) -> None:
    """Set :attr:`Sample.own` on the errors the workload causes itself: the same kind of query on
    the same table failing with the same SQLSTATE before ``migration_start`` (the baseline), and an
    insert's integrity error (class 23: it copies an existing row, which a new unique index rejects
    though an application's own rows would not)."""
    baseline = {(s.kind, s.table, s.sqlstate) for s in samples if s.error and s.end <= migration_start}
    for index, sample in enumerate(samples):
        if sample.error:
            own = (sample.kind, sample.table, sample.sqlstate) in baseline or (
                sample.kind == "insert" and (sample.sqlstate or "").startswith("23"))
            samples[index] = sample._replace(own=own)


def error_messages(samples: Iterable[Sample], limit: int = 5) -> list[dict[str, Any]]:
    """The first ``limit`` distinct errors (by SQLSTATE and message), most frequent first, with how
    often each happened and whether the migration or the workload itself caused it."""
    counts: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for sample in samples:
        if not sample.error:
            continue
        state = sample.sqlstate or ""
        message = sample.error.removeprefix(state).strip() if state else sample.error
        entry = counts.setdefault((state, message, sample.own), {
            "sqlstate": state, "message": message, "count": 0,
            "cause": "workload" if sample.own else "migration", "queries": []})
        entry["count"] += 1
        if f"{sample.kind} {sample.table}" not in entry["queries"]:
            entry["queries"].append(f"{sample.kind} {sample.table}")
    return sorted(counts.values(), key=lambda e: (e["cause"] != "migration", -e["count"]))[:limit]


def error_text(entry: dict[str, Any]) -> str:
    """One error of :func:`error_messages` as text: ``42703 column "x" does not exist (12x)``."""
    return f"{entry['sqlstate']} {entry['message']} ({entry['count']}x)".strip()

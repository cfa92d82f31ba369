"""Who holds the locks a step needs: the one blocker report of every lock wait and every
LockTimeoutExhausted message, and the autovacuum workers the step engine cancels when in the way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from pgshift.db.prepared import how_to_end, quoted_gid
from pgshift.errors import server_error_text
from pgshift.units import Duration

# The lock modes that conflict with SHARE UPDATE EXCLUSIVE (VALIDATE, CREATE INDEX CONCURRENTLY).
WEAK_LOCK_CONFLICTS = ["ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock",
                       "AccessExclusiveLock"]


# What pg_stat_activity shows as the query of another role's session to a role without pg_read_all_stats.
_NOT_ALLOWED = "<insufficient privilege>"


@dataclass
class Blocker:
    pid: int  # 0 for a prepared transaction, which no session holds
    application: str
    state: str
    xact_age_s: float
    query: str
    autovacuum: bool = False  # an autovacuum worker (pg_stat_activity.backend_type)
    wraparound: bool = False  # ... vacuuming to prevent transaction ID wraparound: never to be cancelled
    transaction: str = ""  # pg_locks.virtualtransaction: one running transaction, visible to every role
    role: str = ""
    hidden: bool = False  # a session whose transaction's age reads as NULL (another role's, without
    # pg_read_all_stats; or one with track_activities off)
    prepared: str | None = None  # the gid of a prepared transaction (PREPARE TRANSACTION), which holds its locks
    seen_s: float = 0.0  # how long pgshift has seen this transaction hold a lock here (the caller's count)

    @property
    def age_s(self) -> float:
        """How old the transaction is known to be: its real age, or where that is hidden, at least as
        long as it has been seen holding the lock."""
        return self.seen_s if self.hidden else self.xact_age_s

    def describe(self) -> str:
        if self.prepared is not None:
            return (f"prepared transaction {quoted_gid(self.prepared)} of role {self.role}, prepared "
                    f"{self.xact_age_s:.1f}s ago; it keeps its locks until someone runs {how_to_end(self.prepared)}")
        if self.autovacuum:
            return f"pid {self.pid} (autovacuum worker, running {self.xact_age_s:.1f}s: {self.query})"
        if self.hidden:
            seen = f", seen holding it for {self.seen_s:.1f}s" if self.seen_s else ""
            why = ("this role lacks pg_read_all_stats, part of pg_monitor" if self.query == _NOT_ALLOWED
                   else "track_activities is off for it")
            return f"pid {self.pid} of role {self.role} (state and age hidden: {why}{seen})"
        return (f"pid {self.pid} ({self.application or 'no name'}, {self.state}, transaction open "
                f"{self.xact_age_s:.1f}s: {self.query})")


def blockers(conn: psycopg.Connection[Any], tables: list[str], modes: list[str] | None = None) -> list[Blocker]:
    """Sessions and prepared transactions holding any lock (or one of ``modes``) on these tables or
    their partitions: an ACCESS EXCLUSIVE request would queue behind them."""
    if not tables:
        return []
    rows = conn.execute(
        """
        SELECT DISTINCT coalesce(l.pid, 0), coalesce(a.application_name, ''), coalesce(a.state, ''),
               coalesce(extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, p.prepared)), 0)::float8,
               coalesce(left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100), ''),
               -- a role without pg_read_all_stats sees no backend_type: a vacuum without a user is autovacuum
               coalesce(a.backend_type = 'autovacuum worker', a.usesysid IS NULL AND a.pid IN (
                   SELECT pid FROM pg_stat_progress_vacuum UNION SELECT pid FROM pg_stat_progress_analyze), false),
               coalesce(a.query LIKE '%%(to prevent wraparound)%%', false),
               l.virtualtransaction, coalesce(a.usename::text, p.owner::text, ''),
               a.usesysid IS NOT NULL AND a.xact_start IS NULL, p.gid
        FROM pg_locks l
        LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        -- a prepared transaction's locks have no pid; its own transaction ID lock names it (db/prepared.py)
        LEFT JOIN pg_locks x ON l.pid IS NULL AND x.pid IS NULL AND x.locktype = 'transactionid'
                            AND x.virtualtransaction = l.virtualtransaction
        LEFT JOIN pg_prepared_xacts p ON p.transaction = x.transactionid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())  -- oids are per database
          AND (l.pid IS NOT NULL OR p.gid IS NOT NULL)
          AND l.relation IN (  -- a partitioned table's statement locks its partitions too (autovacuum works on those)
              SELECT to_regclass(t)::oid FROM unnest(%s::text[]) t
              UNION ALL SELECT p.relid FROM unnest(%s::text[]) t, pg_partition_tree(to_regclass(t)) p)
          AND (%s::text[] IS NULL OR l.mode = ANY (%s::text[]))
        ORDER BY 4 DESC
        """, (tables, tables, modes, modes)).fetchall()
    return [Blocker(int(r[0]), r[1], r[2], float(r[3]), r[4], bool(r[5]), bool(r[6]), str(r[7]), str(r[8]),
                    bool(r[9]), r[10]) for r in rows]


def open_transactions(conn: psycopg.Connection[Any], limit: int = 3) -> list[Blocker]:
    """The oldest open transactions of the database: who may block a step whose tables are not known.
    Another role's session counts too where its age is hidden (this role lacks pg_read_all_stats): its
    own transaction lock (virtualxid, in pg_locks for every role) shows it has one open; so do the
    prepared transactions, which no session holds. Known ages first, oldest first."""
    rows = conn.execute(
        """
        SELECT * FROM (
            SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                   extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS age,
                   coalesce(left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100), ''),
                   l.virtualtransaction, coalesce(a.usename::text, ''), NULL::text AS gid
            FROM pg_stat_activity a
            JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'virtualxid' AND l.granted
            WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
              AND (a.xact_start IS NOT NULL OR a.usesysid IS NOT NULL)
            UNION ALL
            SELECT 0, '', '', extract(epoch FROM clock_timestamp() - p.prepared)::float8, '', '', p.owner::text, p.gid
            FROM pg_prepared_xacts p WHERE p.database = current_database()
        ) open ORDER BY age DESC NULLS LAST LIMIT %s
        """, (limit,)).fetchall()
    return [Blocker(int(r[0]), r[1], r[2], float(r[3] or 0), r[4], transaction=str(r[5]), role=str(r[6]),
                    hidden=r[3] is None and r[7] is None, prepared=r[7]) for r in rows]


def step_blockers(conn: psycopg.Connection[Any], strong: list[str], weak: list[str]) -> list[Blocker]:
    """Sessions in the way of a step taking a strong lock on ``strong`` and SHARE UPDATE EXCLUSIVE on ``weak``."""
    found = {b.transaction: b for b in [*blockers(conn, strong), *blockers(conn, weak, WEAK_LOCK_CONFLICTS)]}
    return list(found.values())


class Autovacuums:
    """Cancels an autovacuum holding a lock a step needs. PostgreSQL cancels one itself only for a
    lock request that has waited deadlock_timeout (1s by default), far longer than lock_timeout, so
    left alone it would hold the step back for the whole retry budget. It restarts later on its own.
    Not one vacuuming to prevent wraparound, and only where the role may (superuser; on PostgreSQL
    18 pg_signal_autovacuum_worker): otherwise the reason is kept for the failure message."""

    def __init__(self, conn: psycopg.Connection[Any], notify: Callable[[str], None]) -> None:
        self.conn = conn
        self.notify = notify
        self.notes: dict[int, str] = {}  # pid -> why that autovacuum is still in the way
        self.cancelled: list[int] = []

    def clear(self, strong: list[str], weak: list[str], lock_timeout: Duration, label: str,
              log: Callable[[int, str], None]) -> None:
        for b in step_blockers(self.conn, strong, weak):
            if not b.autovacuum:
                continue
            if b.wraparound:
                self.notes[b.pid] = (
                    f"pid {b.pid} is an autovacuum to prevent transaction ID wraparound; PostgreSQL never cancels "
                    "one for a lock request, and pgshift does not either (the table must be frozen): run the "
                    "command again once it has finished.")
                continue
            try:
                row = self.conn.execute("SELECT pg_cancel_backend(%s)", (b.pid,)).fetchone()
            except psycopg.Error as exc:
                waited = self.conn.execute("SELECT current_setting('deadlock_timeout')").fetchone()
                self.notes[b.pid] = (
                    f"pid {b.pid} is an autovacuum worker; PostgreSQL cancels one only for a lock request that has "
                    f"waited deadlock_timeout ({waited[0] if waited else '1s'}), longer than this step's lock_timeout "
                    f"{lock_timeout}, so it holds the step back until it ends. Role {self.conn.info.user!r} "
                    f"may not cancel it ({server_error_text(exc)}) A superuser (on PostgreSQL 18 also a member of "
                    f"pg_signal_autovacuum_worker) can run SELECT pg_cancel_backend({b.pid}); or run the command "
                    "again once it has finished.")
                self.notify(self.notes[b.pid])
                continue
            if not (row and row[0]):
                continue  # it ended meanwhile
            self.cancelled.append(b.pid)
            log(b.pid, b.query)
            self.notify(f"cancelled autovacuum pid {b.pid} ({b.query}) holding a lock '{label}' needs; "
                        "it will run again later")
            self._wait_until_gone(b.pid)

    def _wait_until_gone(self, pid: int, timeout_s: float = 2.0) -> None:
        """A cancelled autovacuum releases its locks a moment after the signal: do not spend an attempt on it."""
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            row = self.conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND granted AND "
                                    "locktype = 'relation'", (pid,)).fetchone()
            if not row or not row[0]:
                return
            time.sleep(0.01)

"""One deployer at a time: a session-level advisory lock, polled up to a wait limit.

Session-level, so the server releases it when the session dies: a killed runner never leaves a
stale lock behind (yoyo's lock *row* can). When it is held, the message says who holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgshift.errors import LockHeld


def lock_key(schema: str) -> int:
    """A stable signed 64-bit key per history schema, so two projects in one database don't clash."""
    digest = hashlib.sha256(f"pgshift:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str
    user: str
    client: str
    backend_start: datetime | None
    state: str | None

    def describe(self) -> str:
        since = self.backend_start.isoformat(timespec="seconds") if self.backend_start else "unknown"
        app = self.application_name or "(no application_name)"
        return f"pid {self.pid} ({app}, user {self.user}, client {self.client}, connected since {since})"


def lock_holder(conn: psycopg.Connection[Any], key: int) -> LockHolder | None:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        """
        SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
               coalesce(host(a.client_addr), 'local socket'), a.backend_start, a.state
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.database = (
              SELECT oid FROM pg_database WHERE datname = current_database())
        LIMIT 1
        """,
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    return LockHolder(*row) if row else None


class AdvisoryLock:
    """``with AdvisoryLock(conn, schema, wait_s): ...`` holds the deploy lock for the block."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, wait_seconds: float,
                 poll_seconds: float = 0.25) -> None:
        self.conn = conn
        self.key = lock_key(schema)
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.waited = 0.0

    def try_acquire(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def acquire(self) -> None:
        started = time.monotonic()
        while not self.try_acquire():
            self.waited = time.monotonic() - started
            if self.waited >= self.wait_seconds:
                holder = lock_holder(self.conn, self.key)
                who = holder.describe() if holder else "a session that has just ended"
                raise LockHeld(
                    f"Another pgshift run holds the deploy lock: {who}. Waited "
                    f"{self.waited:.1f}s (lock_wait).",
                    hint="wait for it to finish, raise lock_wait, or end that session with "
                    "pg_terminate_backend(pid) if it is stuck.",
                )
            time.sleep(self.poll_seconds)
        self.waited = time.monotonic() - started

    def release(self) -> None:
        if self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):  # the session is gone, and the lock with it
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))

    def __enter__(self) -> AdvisoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

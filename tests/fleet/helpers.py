"""What the `--targets` tests share: a statement that hangs where a marker table exists, and SIGKILL of the
orchestrator once the chosen targets hang in it (then waiting for the killed run's backends to end)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from urllib.parse import unquote, urlsplit

from tests.fleet.conftest import Member


def sleep_if_marked(marker: str = "sleep_marker") -> str:
    """A statement that sleeps 60 s on a target holding the table ``marker`` (and does nothing elsewhere)."""
    return (f"DO $$ BEGIN IF to_regclass('public.{marker}') IS NOT NULL THEN PERFORM pg_sleep(60); END IF; "
            "END $$;")


SLEEP_IF_MARKED = sleep_if_marked()


def mark(members: list[Member], marker: str = "sleep_marker") -> None:
    for m in members:
        with m.connect() as conn:
            conn.execute(f"CREATE TABLE {marker} ()")


def sleeping(member: Member) -> bool:
    """Whether a session other than this one is in the 60 s sleep on the target's database: waiting in
    pg_sleep now, not merely showing the statement's text (an idle session's last query, or the same DO
    block run where the marker is absent, shows it too)."""
    with member.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND query LIKE '%pg_sleep(60)%' AND state = 'active' AND wait_event = 'PgSleep' "
                           "AND pid <> pg_backend_pid()").fetchone()
        return row == (1,)


def wait_until_idle(member: Member) -> None:
    deadline = time.monotonic() + 30
    while sleeping(member):
        assert time.monotonic() < deadline, "the killed run's backend did not end"
        time.sleep(0.1)


def kill_when_sleeping(proc: subprocess.Popen[str], members: list[Member], *, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once every one of ``members`` sleeps in its migration; return when their backends are
    gone (the server ends them once it sees the client is), so the test can drop the markers."""
    try:
        deadline = time.monotonic() + timeout
        while not all(sleeping(m) for m in members):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for m in members:
        wait_until_idle(m)


def password(url: str) -> str:
    return unquote(urlsplit(url).password or "")

"""The primary's streaming standbys, as ``pg_stat_replication`` shows them, and waiting until every one
has replayed a WAL position (``migrate.wait_for_standbys``): an application reading from a standby
must not see the old schema after `migrate` returned.

Only standbys connected to this server are seen: a disconnected one, or one that replays from another
standby (cascading), is not in ``pg_stat_replication``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from pgshift.errors import PgshiftError


class StandbysNotReplayed(PgshiftError):
    """A standby had not replayed what `migrate` applied within `migrate.wait_for_standbys`."""

    code = "standby-not-replayed"
    exit_code = 33


@dataclass(frozen=True)
class Standby:
    pid: int
    name: str  # application_name (cluster_name, or "walreceiver")
    client: str  # client address, or "local" for a Unix socket
    state: str
    replay_lsn: str | None
    lag_s: float | None  # the replay (else write) lag the standby's replies give; None: caught up or unknown
    lag_bytes: int | None  # WAL written on the primary and not yet replayed by the standby
    xmin: int | None  # backend_xmin: set when the standby runs with hot_standby_feedback = on
    sync_state: str

    @property
    def label(self) -> str:
        return f"{self.name or '?'} ({self.client}, walsender pid {self.pid})"


_STANDBYS = """
SELECT pid, coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''),
       replay_lsn::text,
       CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN NULL
            ELSE extract(epoch FROM coalesce(replay_lag, write_lag))::float8 END,
       pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn, sent_lsn))::bigint,
       backend_xmin::text::bigint, coalesce(sync_state, '')
FROM pg_stat_replication ORDER BY application_name, client_addr, pid
"""


def standbys(conn: psycopg.Connection[Any]) -> list[Standby]:
    """The standbys streaming from this server now (none on a standby itself, or without any)."""
    return [Standby(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], None if r[6] is None else int(r[6]),
                    None if r[7] is None else int(r[7]), str(r[8]))
            for r in conn.execute(_STANDBYS).fetchall()]


def positions_hidden(conn: psycopg.Connection[Any]) -> str | None:
    """The role, when it cannot see the standbys' positions: pg_stat_replication shows other roles'
    walsenders with NULL positions and lags unless the role has pg_read_all_stats (pg_monitor has it)."""
    row = conn.execute("SELECT pg_has_role('pg_read_all_stats', 'USAGE'), current_user::text").fetchone()
    return None if row is None or row[0] else str(row[1])


# The end of everything written so far, as a byte position. pg_current_wal_lsn() may stop short of a
# commit made with synchronous_commit = off, so the insert position; where that is just past a page
# header (nothing written on the new page yet), the last record ended at the page boundary.
_TARGET = """
WITH p AS (SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0') AS pos,
                  (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_segment_size') AS seg,
                  (SELECT setting::numeric FROM pg_settings WHERE name = 'wal_block_size') AS blk)
SELECT CASE WHEN pos % seg = 40 THEN pos - 40 WHEN pos % blk = 24 THEN pos - 24 ELSE pos END::bigint FROM p
"""
_BEHIND = """
SELECT pid, coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''),
       coalesce(replay_lsn::text, 'none'), (%(target)s - coalesce(pg_wal_lsn_diff(replay_lsn, '0/0'), 0))::bigint
FROM pg_stat_replication
WHERE replay_lsn IS NULL OR pg_wal_lsn_diff(replay_lsn, '0/0') < %(target)s
ORDER BY 6 DESC
"""


def _lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def wait_for_replay(conn: psycopg.Connection[Any], timeout_s: float, *, what: str = "the migrations",
                    setting: str = "migrate.wait_for_standbys = {}", limit: str | None = None,
                    notify: Callable[[str], None] | None = None, poll_s: float = 0.1) -> list[str]:
    """Wait until every standby streaming from this server has replayed all WAL written so far (``what``
    names it in messages); the standbys' labels. Raises :class:`StandbysNotReplayed` naming each one
    still behind at ``timeout_s``."""
    role = positions_hidden(conn)
    if role is not None:
        raise StandbysNotReplayed(
            f"{setting.format(limit or f'{timeout_s:g}s')} asks to wait until every standby replayed {what}, but the "
            f"role {role} cannot see the standbys' positions (pg_stat_replication shows them only to roles with "
            "pg_read_all_stats). What was applied stays applied and is recorded in the ledger.",
            hint=f"GRANT pg_monitor TO {role} (as a superuser or the service's admin role), then run `pgshift "
            "migrate` again (with nothing pending it only waits for the standbys); or turn the setting off.")
    row = conn.execute(_TARGET).fetchone()
    target = int(row[0]) if row else 0
    deadline = time.monotonic() + timeout_s
    everyone = [s.label for s in standbys(conn)]
    if notify:
        notify(f"waiting up to {timeout_s:g}s for {len(everyone)} standby(s) to replay {_lsn(target)}" if everyone
               else "no standby streams from this server now: nothing to wait for")
    while True:
        behind = conn.execute(_BEHIND, {"target": target}).fetchall()
        if not behind:
            return everyone
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    lines = [f"{name or '?'} ({client}, walsender pid {pid}, {state}) has replayed up to {replay}, {missing} bytes "
             f"short" for pid, name, client, state, replay, missing in behind]
    raise StandbysNotReplayed(
        f"{len(behind)} standby(s) had not replayed {what} (WAL position {_lsn(target)}) within "
        f"{setting.format(limit or f'{timeout_s:g}s')}: {'; '.join(lines)}. What was applied stays applied and "
        "is recorded in the ledger; an application reading from that standby still sees the old schema.",
        hint="look at the standby: `SELECT pg_is_wal_replay_paused()` there (resume with pg_wal_replay_resume()), "
        "its log for replay conflicts, and pg_stat_replication on the primary; once it caught up, run `pgshift "
        "migrate` again (with nothing pending it only waits for the standbys) before switching the application.")

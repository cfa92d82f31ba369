"""Watch a database while (and after) a change runs: the playbook's "monitor during and after".

Every ``watch.interval`` the watcher takes one sample from the server (one query for the database's
own figures, one for the standbys) and, when configured, probes the application's health URL and
runs the user's metric commands. Counters of ``pg_stat_database`` and the WAL position become rates
between samples. Each sample is checked against the ``[watch]`` thresholds; a breach ends the watch
(``WatchBreached``) unless the caller only wants to know (a backfill pauses instead).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgshift.config import Settings, WatchSettings
from pgshift.db.connect import connect, mask_password, server_major
from pgshift.errors import ConfigError, PgshiftError
from pgshift.safety.hooks import probe
from pgshift.units import Duration


class WatchBreached(PgshiftError):
    """A watched figure crossed its threshold (`[watch]` settings)."""

    code = "watch-threshold"
    exit_code = 30


@dataclass(frozen=True)
class Blocked:
    pid: int
    blocked_by: tuple[int, ...]
    waiting_ms: float
    query: str


@dataclass(frozen=True)
class Standby:
    name: str
    client: str
    state: str
    replay_lag_s: float
    lag_bytes: int


@dataclass(frozen=True)
class Health:
    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    at: str  # ISO time
    elapsed_s: float
    blocked_sessions: int
    blocked: tuple[Blocked, ...]
    longest_lock_wait_ms: float
    longest_transaction_s: float
    commits_per_s: float
    rollbacks_per_s: float
    deadlocks_per_s: float
    temp_files_per_s: float
    wal_bytes_per_s: float | None  # None on a standby
    database_bytes: int
    database_growth_bytes_per_s: float
    standbys: tuple[Standby, ...]
    health: Health | None
    metrics: dict[str, float | None]
    breaches: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatchReport:
    samples: int = 0
    seconds: float = 0.0
    peak: dict[str, float] = field(default_factory=dict)
    deadlocks: int = 0
    breach: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Counters:
    at: float
    commits: int
    rollbacks: int
    deadlocks: int
    temp_files: int
    wal: int | None
    size: int


_DATABASE = """
SELECT d.xact_commit, d.xact_rollback, d.deadlocks, d.temp_files, pg_database_size(current_database()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END,
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)::float8
          FROM pg_stat_activity a
         WHERE a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend')
FROM pg_stat_database d WHERE d.datname = current_database()
"""
# Waiting since: pg_locks.waitstart (PostgreSQL 14+), else the start of the waiting query.
_BLOCKED = """
SELECT a.pid, pg_blocking_pids(a.pid),
       coalesce(extract(epoch FROM clock_timestamp() - {since}) * 1000, 0)::float8,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100)
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(a.pid)) > 0
ORDER BY 3 DESC
"""
_WAITSTART = "(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
_STANDBYS = """
SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''),
       coalesce(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)), 0)::float8,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn, sent_lsn)), 0)::bigint
FROM pg_stat_replication ORDER BY 1, 2
"""


class Watcher:
    """Samples one database. ``sample()`` once; ``watch()`` for a while, raising on a breach."""

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.settings = settings
        self.options: WatchSettings = settings.watch
        self.conn = connect(url or settings.database_url, application_name=f"{settings.application_name} watch")
        self.version = server_major(self.conn)
        self.started = time.monotonic()
        self._last: _Counters | None = None
        self._health_failures = 0
        self._blocked_sql = _BLOCKED.format(since=_WAITSTART if self.version >= 14 else "a.query_start")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one sample ------------------------------------------------------------------------
    def sample(self) -> Sample:
        with self.conn.transaction():  # one commit of its own per sample, taken off the commit rate
            row = self.conn.execute(_DATABASE).fetchone()
            assert row is not None
            blocked_rows = self.conn.execute(self._blocked_sql.encode()).fetchall()
            standby_rows = self.conn.execute(_STANDBYS).fetchall()
        now = time.monotonic()
        counters = _Counters(now, int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                             None if row[5] is None else int(row[5]), int(row[4]))
        blocked = tuple(Blocked(int(r[0]), tuple(int(p) for p in r[1]), float(r[2]), str(r[3])) for r in blocked_rows)
        standbys = tuple(Standby(str(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4])) for r in standby_rows)
        last, self._last = self._last, counters
        span = (now - last.at) if last else 0.0

        def rate(new: int | None, old: int | None) -> float:
            return 0.0 if last is None or span <= 0 or new is None or old is None else max(0.0, (new - old) / span)

        sample = Sample(
            at=datetime.now(UTC).isoformat(timespec="milliseconds"), elapsed_s=round(now - self.started, 3),
            blocked_sessions=len(blocked), blocked=blocked,
            longest_lock_wait_ms=max((b.waiting_ms for b in blocked), default=0.0),
            longest_transaction_s=float(row[6]),
            commits_per_s=max(0.0, rate(counters.commits, last.commits if last else None) - (1 / span if span else 0)),
            rollbacks_per_s=rate(counters.rollbacks, last.rollbacks if last else None),
            deadlocks_per_s=rate(counters.deadlocks, last.deadlocks if last else None),
            temp_files_per_s=rate(counters.temp_files, last.temp_files if last else None),
            wal_bytes_per_s=None if counters.wal is None else rate(counters.wal, last.wal if last else None),
            database_bytes=counters.size,
            database_growth_bytes_per_s=(counters.size - last.size) / span if last and span > 0 else 0.0,
            standbys=standbys, health=self._probe(), metrics=self._metrics(),
        )
        return Sample(**{**sample.__dict__, "breaches": tuple(self.breaches(sample))})

    def _probe(self) -> Health | None:
        url = self.settings.app.health_url
        if not url:
            return None
        timeout = max(0.1, self.options.interval.seconds)
        started = time.monotonic()
        status, error = probe(url, timeout=timeout)
        ok = status is not None and 200 <= status < 300
        health = Health(ok, status, (time.monotonic() - started) * 1000, None if ok else error or f"HTTP {status}")
        self._health_failures = 0 if health.ok else self._health_failures + 1
        return health

    def _metrics(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        timeout = max(1.0, self.options.interval.seconds)
        for name, command in self.options.metric_commands.items():
            try:
                done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout,
                                      check=False)
                values[name] = float(done.stdout.strip().split()[-1]) if done.returncode == 0 else None
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                values[name] = None
        return values

    # -- thresholds ------------------------------------------------------------------------
    def breaches(self, sample: Sample) -> Iterator[str]:
        o = self.options
        if o.max_blocked_ms and sample.longest_lock_wait_ms > o.max_blocked_ms:
            worst = sample.blocked[0]
            yield (f"a session waited {sample.longest_lock_wait_ms:.0f} ms for a lock (watch.max_blocked_ms = "
                   f"{o.max_blocked_ms}): pid {worst.pid}, blocked by {', '.join(map(str, worst.blocked_by))}: "
                   f"{worst.query}")
        if o.max_blocked_sessions and sample.blocked_sessions > o.max_blocked_sessions:
            yield (f"{sample.blocked_sessions} sessions waited for locks at once (watch.max_blocked_sessions = "
                   f"{o.max_blocked_sessions})")
        if o.max_rollback_rate and sample.rollbacks_per_s > o.max_rollback_rate:
            yield (f"{sample.rollbacks_per_s:.1f} transactions rolled back per second (watch.max_rollback_rate = "
                   f"{o.max_rollback_rate})")
        if (longest_ms := o.max_transaction.ms) and sample.longest_transaction_s * 1000 > longest_ms:
            yield (f"a transaction has been open {sample.longest_transaction_s:.1f}s (watch.max_transaction = "
                   f"{o.max_transaction})")
        lag_ms, lag_bytes = o.max_lag.ms, o.max_lag_bytes.bytes
        for standby in sample.standbys:
            name = standby.name or standby.client
            if lag_ms and standby.replay_lag_s * 1000 > lag_ms:
                yield f"standby {name} is {standby.replay_lag_s:.1f}s behind (watch.max_lag = {o.max_lag})"
            if lag_bytes and standby.lag_bytes > lag_bytes:
                yield (f"standby {name} has {standby.lag_bytes} bytes of WAL not yet replayed "
                       f"(watch.max_lag_bytes = {o.max_lag_bytes})")
        if sample.health is not None and o.max_health_failures and self._health_failures >= o.max_health_failures:
            yield (f"the application's health check failed {self._health_failures} times in a row "
                   f"(watch.max_health_failures = {o.max_health_failures}): {sample.health.error}")
        for metric, highest in o.metric_limits.items():
            value = sample.metrics.get(metric)
            if value is not None and value > highest:
                yield f"metric {metric} is {value:g} (watch.metric_limits.{metric} = {highest:g})"

    # -- a watch ---------------------------------------------------------------------------
    def watch(self, seconds: float, on_sample: Callable[[Sample], None] | None = None, *,
              stop_on_breach: bool = True) -> WatchReport:
        """Sample every interval for ``seconds`` (0: until interrupted); raise WatchBreached on a breach."""
        report = WatchReport()
        interval = self.options.interval.seconds
        deadline = time.monotonic() + seconds if seconds else None
        started = time.monotonic()
        first_deadlocks: int | None = None
        while True:
            tick = time.monotonic()
            sample = self.sample()
            report.samples += 1
            assert self._last is not None
            first_deadlocks = self._last.deadlocks if first_deadlocks is None else first_deadlocks
            report.deadlocks = self._last.deadlocks - first_deadlocks
            for key in ("longest_lock_wait_ms", "longest_transaction_s", "rollbacks_per_s", "commits_per_s"):
                report.peak[key] = max(report.peak.get(key, 0.0), float(getattr(sample, key)))
            report.peak["standby_lag_bytes"] = max(report.peak.get("standby_lag_bytes", 0.0),
                                                   *(float(s.lag_bytes) for s in sample.standbys), 0.0)
            if on_sample is not None:
                on_sample(sample)
            report.seconds = round(time.monotonic() - started, 3)
            if sample.breaches and stop_on_breach:
                report.breach = sample.breaches[0]
                raise WatchBreached(
                    f"The watch of {mask_password(self.conn.info.dbname)} stopped after {report.seconds:.1f}s: "
                    + "; ".join(sample.breaches) + ".",
                    hint="find the cause in the samples above; raise the threshold in [watch] of pgshift.toml only "
                         "if this level is acceptable for your application.")
            if deadline is not None and time.monotonic() >= deadline:
                return report
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))


class BreachMonitor:
    """A watcher sampling in a thread; ``current()`` is the newest sample's first breach, None while clear
    (what a backfill pauses on). The first sample is taken before ``with`` returns."""

    def __init__(self, settings: Settings) -> None:
        self.watcher = Watcher(settings)
        self.samples = 0
        self.error: str | None = None
        self._current: str | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._interval = settings.watch.interval.seconds
        self._thread = threading.Thread(target=self._run, name="pgshift-watch", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                sample = self.watcher.sample()
                self.samples += 1
                self._current = sample.breaches[0] if sample.breaches else None
                self._first.set()
                self._stop.wait(self._interval)
        except Exception as exc:  # a watcher that cannot sample must not stop the work it watches
            self._current = None
            self.error = str(exc)
            self._first.set()

    def current(self) -> str | None:
        return self._current

    def __enter__(self) -> BreachMonitor:
        self._thread.start()
        self._first.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.watcher.close()


def json_line(sample: Sample) -> str:
    return json.dumps(sample.to_json(), separators=(",", ":"))



def watch_flags(settings: Settings, *, for_: str, interval: str | None) -> tuple[Settings, float]:
    """`pgshift watch --for/--interval`, checked and applied: the settings to watch with, and the seconds
    to watch (0: until stopped)."""
    seconds = Duration.parse(for_, key="--for").seconds
    if interval is not None:
        every = Duration.parse(interval, key="--interval")
        if every.ms < 100:
            raise ConfigError(f"--interval must be at least 100ms, not {interval!r}.")
        settings = dataclasses.replace(settings, watch=dataclasses.replace(settings.watch, interval=every))
    return settings, seconds

"""`pgshift watch` on real servers: lock waits, long transactions, a real streaming standby's lag,
the application's health over HTTP and the user's metric commands, each against its threshold."""

from __future__ import annotations

import http.server
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgshift.config import AppSettings, Settings, WatchSettings, load_settings
from pgshift.embedded import EmbeddedCluster
from pgshift.errors import ConfigError
from pgshift.units import Duration, Size
from pgshift.watch import WatchBreached, Watcher
from tests.helpers import run_pgshift


@pytest.fixture(scope="module")
def replicated() -> Iterator[tuple[EmbeddedCluster, EmbeddedCluster]]:
    """A primary and its streaming standby (pg_basebackup -R on a second port), for this module only."""
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-replicated-"))
    primary = EmbeddedCluster(root / "primary")
    primary.start(tcp=False)
    standby = primary.start_standby(root / "standby", tcp=False)
    try:
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def _settings(url: str, health_url: str | None = None, **watch: object) -> Settings:
    return Settings(database_url=url, app=AppSettings(health_url=health_url),
                    watch=WatchSettings(**{"interval": Duration.parse("100ms"), **watch}))  # type: ignore[arg-type]


def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_paused_standby_shows_its_lag_and_crosses_max_lag_bytes(
        replicated: tuple[EmbeddedCluster, EmbeddedCluster]) -> None:
    primary, standby = replicated
    with psycopg.connect(standby.socket_dsn(), autocommit=True) as on_standby, \
            psycopg.connect(primary.socket_dsn(), autocommit=True) as on_primary:
        on_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            on_primary.execute("CREATE TABLE IF NOT EXISTS filler (x text)")
            on_primary.execute("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
            with Watcher(_settings(primary.socket_dsn(), max_lag_bytes=Size.parse("500kB"))) as watcher:
                sample = watcher.sample()
                (lagging,) = sample.standbys
                assert lagging.state == "streaming" and lagging.lag_bytes > 500 * 1024
                assert any("watch.max_lag_bytes = 500kB" in b for b in sample.breaches), sample.breaches
                with pytest.raises(WatchBreached, match="not yet replayed") as caught:
                    watcher.watch(5)
                assert caught.value.exit_code == 30
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")
        with Watcher(_settings(primary.socket_dsn(), max_lag_bytes=Size.parse("500kB"))) as watcher:
            _until(lambda: watcher.sample().standbys[0].lag_bytes < 500 * 1024)
            assert watcher.watch(0.3).breach is None


def test_a_session_waiting_for_a_lock_is_named_with_its_blocker(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as holder, psycopg.connect(db_url, autocommit=True) as waiter:
        holder.execute("CREATE TABLE accounts (id int)")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        holder_pid = holder.info.backend_pid
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM accounts"), daemon=True)
        blocked.start()
        try:
            with Watcher(_settings(db_url, max_blocked_ms=300)) as watcher:
                _until(lambda: watcher.sample().blocked_sessions == 1)
                sample = watcher.sample()
                assert sample.blocked[0].pid == waiter.info.backend_pid
                assert sample.blocked[0].blocked_by == (holder_pid,)
                assert "SELECT count(*) FROM accounts" in sample.blocked[0].query
                assert sample.longest_transaction_s > 0
                with pytest.raises(WatchBreached, match=rf"watch.max_blocked_ms = 300\): pid \d+, blocked by "
                                                        rf"{holder_pid}"):
                    watcher.watch(10)
        finally:
            holder.execute("ROLLBACK")
            blocked.join(5)


def test_a_long_transaction_and_a_rollback_storm_cross_their_thresholds(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as idle:
        idle.execute("BEGIN")
        idle.execute("SELECT 1")
        with Watcher(_settings(db_url, max_transaction=Duration.parse("300ms"))) as watcher, \
                pytest.raises(WatchBreached, match=r"a transaction has been open [\d.]+s \(watch.max_transaction"):
            watcher.watch(10)
        idle.execute("ROLLBACK")

    stop = threading.Event()

    def roll_back() -> None:
        with psycopg.connect(db_url) as conn:
            while not stop.is_set():
                conn.execute("SELECT 1")
                conn.rollback()

    storm = threading.Thread(target=roll_back, daemon=True)
    storm.start()
    try:
        with Watcher(_settings(db_url, max_rollback_rate=20, interval=Duration.parse("500ms"))) as watcher, \
                pytest.raises(WatchBreached, match=r"transactions rolled back per second \(watch.max_rollback_rate"):
            watcher.watch(15)
    finally:
        stop.set()
        storm.join(5)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        return None


def test_the_applications_health_and_metric_commands(db_url: str, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        count = tmp_path / "errors.txt"
        count.write_text("2\n")
        settings = _settings(db_url, f"http://127.0.0.1:{server.server_port}/health", max_health_failures=2,
                             metric_commands={"errors": f"cat {count}"}, metric_limits={"errors": 5})
        with Watcher(settings) as watcher:
            sample = watcher.sample()
            assert sample.health is not None and sample.health.ok and sample.health.status == 200
            assert sample.metrics == {"errors": 2.0} and sample.breaches == ()
            count.write_text("7\n")
            assert watcher.sample().breaches == ("metric errors is 7 (watch.metric_limits.errors = 5)",)
            count.write_text("0\n")
            _Health.status = 503
            first = watcher.sample()
            assert first.health is not None and not first.health.ok and first.breaches == ()  # one failure
            assert any("health check failed 2 times in a row" in b for b in watcher.sample().breaches)
    finally:
        _Health.status = 200
        server.shutdown()
        server.server_close()


def test_the_cli_prints_json_lines_and_exits_30_on_a_breach(db_url: str, tmp_path: Path) -> None:
    done = run_pgshift(["watch", "--for", "1s", "--interval", "200ms", "--json"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    samples, summary = lines[:-1], lines[-1]["summary"]
    assert len(samples) >= 4 and summary["samples"] == len(samples) and summary["breach"] is None
    assert {"blocked_sessions", "commits_per_s", "standbys", "wal_bytes_per_s"} <= set(samples[0])

    (tmp_path / "pgshift.toml").write_text('[watch]\nmax_transaction = "200ms"\ninterval = "100ms"\n')
    with psycopg.connect(db_url, autocommit=True) as idle:
        idle.execute("BEGIN")
        idle.execute("SELECT 1")
        breached = run_pgshift(["watch", "--for", "10s"], cwd=tmp_path, url=db_url)
        idle.execute("ROLLBACK")
    assert breached.returncode == 30, breached.stdout + breached.stderr
    assert "watch.max_transaction = 200ms" in breached.stderr
    assert len(breached.stderr.strip().splitlines()) <= 2  # one paragraph (and its hint)


def test_bad_watch_input_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text('[watch]\nmax_lag_bytes = "lots"\n')
    with pytest.raises(ConfigError, match=r"watch.max_lag_bytes in .*pgshift.toml must be a size"):
        load_settings(cwd=tmp_path)
    (tmp_path / "pgshift.toml").write_text('[watch]\nmetric_limits = { errors = "ten" }\n')
    with pytest.raises(ConfigError, match=r"watch.metric_limits.errors in .* must be a number"):
        load_settings(cwd=tmp_path)
    (tmp_path / "pgshift.toml").unlink()
    bad_for = run_pgshift(["watch", "--for", "soon"], cwd=tmp_path, url=db_url)
    assert bad_for.returncode == 3 and "--for must be a duration" in bad_for.stderr
    unreachable = run_pgshift(["watch", "--for", "1s"], cwd=tmp_path,
                              url="postgresql://nobody:secret@127.0.0.1:1/none")
    assert unreachable.returncode == 4 and "secret" not in unreachable.stderr

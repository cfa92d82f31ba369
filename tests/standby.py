"""A real streaming standby for tests: a primary and its hot standby (``pg_basebackup -R`` on a port of
its own, pgshift.embedded), started once per test module that asks for ``replicated``.

Each test takes a fresh database on the primary with ``replicated_db`` (it is on the standby as soon as
the standby has replayed its creation) and may stop the standby's replay with ``paused_replay``.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from pgshift.embedded import EmbeddedCluster


@dataclass
class Replicated:
    primary: EmbeddedCluster
    standby: EmbeddedCluster

    def primary_url(self, dbname: str = "postgres") -> str:
        return self.primary.socket_dsn(dbname)

    def standby_url(self, dbname: str = "postgres") -> str:
        return self.standby.socket_dsn(dbname)

    @contextmanager
    def paused_replay(self) -> Iterator[Callable[[], None]]:
        """The standby receives WAL but replays none of it until the block ends or ``resume()`` is called."""
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            resumed = False

            def resume() -> None:
                nonlocal resumed
                if not resumed:
                    resumed = True
                    conn.execute("SELECT pg_wal_replay_resume()")

            try:
                yield resume
            finally:
                resume()

    @contextmanager
    def standby_settings(self, **values: str) -> Iterator[None]:
        """These settings on the standby itself (ALTER SYSTEM there, reloaded) until the block ends."""
        self._set(values)
        try:
            yield
        finally:
            self._set({key: None for key in values})

    def _set(self, values: Mapping[str, str | None]) -> None:
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            for key, value in values.items():
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(key)) if value is None else
                             sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(key), sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")
            until(lambda: all(value is None or conn.execute("SELECT current_setting(%s)", (key,)).fetchone()
                              == (value,) for key, value in values.items()), 10)

    @contextmanager
    def plain_role(self, dbname: str) -> Iterator[str]:
        """A role without superuser or pg_monitor that owns ``dbname`` (and may create in it); its URL."""
        role = f"plain_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
        with psycopg.connect(self.primary_url(dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
        try:
            yield conninfo.make_conninfo(self.primary_url(dbname), user=role)
        finally:
            with psycopg.connect(self.primary_url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            until(lambda: bool(conn.execute(
                "SELECT coalesce(bool_and(replay_lsn >= %s::pg_lsn), false) FROM pg_stat_replication",
                (target,)).fetchone()[0]), timeout)  # type: ignore[index]


def until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    """A primary and its streaming standby, for the module that asks (each is a real server)."""
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-standby-"))
    primary = EmbeddedCluster(root / "primary")
    primary.start(tcp=False)
    try:
        standby = primary.start_standby(root / "standby", tcp=False)
    except BaseException:
        primary.destroy()
        raise
    try:
        yield Replicated(primary, standby)
    finally:
        standby.destroy()
        primary.destroy()


@pytest.fixture
def replicated_db(replicated: Replicated) -> Iterator[str]:
    """A fresh database on the primary, already replayed on the standby; its name."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(replicated.primary_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    replicated.wait_replayed()
    try:
        yield name
    finally:
        with psycopg.connect(replicated.primary_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
